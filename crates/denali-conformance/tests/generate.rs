//! The case generator: every v1 form gets its cases, every case is a valid instance of its
//! form in a sound memory layout, and the coverage the generator promises (shift counts,
//! division faults, REP counts and directions) is there.

use denali_conformance::case::{Case, FIRST_CASE_ADDR, MEMORY_SIZE, State};
use denali_conformance::generate::{self, CODE_PAGE_SIZE};
use denali_isa::validate;
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};
use std::collections::HashSet;
use std::sync::OnceLock;

const SEED: u64 = 0x00DE_7A11;

/// Every form's cases, generated once for all the tests.
fn all_cases() -> &'static [(Code, Vec<Case>)] {
    static ALL: OnceLock<Vec<(Code, Vec<Case>)>> = OnceLock::new();
    ALL.get_or_init(|| {
        generate::all_forms().into_iter().map(|f| (f, generate::cases(f, generate::cases_per_form(f), SEED))).collect()
    })
}

fn decode(case: &Case) -> Instruction {
    validate::decoder(&case.code, case.init.eip).decode()
}

fn reg(state: &State, reg: Register) -> u32 {
    let value = state.regs()[reg.full_register32().number()];
    match reg {
        Register::AH | Register::CH | Register::DH | Register::BH => (value >> 8) & 0xFF,
        _ if reg.size() == 1 => value & 0xFF,
        _ if reg.size() == 2 => value & 0xFFFF,
        _ => value,
    }
}

fn effective_address(case: &Case, ins: &Instruction) -> u32 {
    let part = |r: Register| if r == Register::None { 0 } else { reg(&case.init, r) };
    part(ins.memory_base())
        .wrapping_add(part(ins.memory_index()).wrapping_mul(ins.memory_index_scale()))
        .wrapping_add(ins.memory_displacement32())
}

/// Little-endian bytes at `addr` from the case's regions (None when any is not placed).
fn read(case: &Case, addr: u32, size: u32) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..size {
        let a = addr.wrapping_add(i);
        let region = case.memory.iter().find(|r| a >= r.addr && a - r.addr < r.data.len() as u32)?;
        value |= u64::from(region.data[(a - region.addr) as usize]) << (8 * i);
    }
    Some(value)
}

#[test]
fn every_v1_form_yields_its_cases_and_every_case_is_its_form() {
    let forms = generate::all_forms();
    assert_eq!(forms.len(), 436);
    for (form, cases) in all_cases() {
        assert_eq!(cases.len(), generate::cases_per_form(*form), "{form:?}");
        assert!(generate::cases_per_form(*form) >= 500);
        for case in cases {
            let ins = decode(case);
            assert_eq!(ins.code(), *form, "{case:?}");
            assert_eq!(ins.len(), case.code.len(), "{case:?}");
            assert_eq!(validate::check(&ins), Ok(()), "{case:?}");
            assert_eq!(case.form, format!("{form:?}"));
            assert_eq!(case.init.eflags & 0x202, 0x202, "{case:?}");
        }
    }
}

#[test]
fn cases_are_deterministic_for_a_seed() {
    for form in [Code::Add_rm32_r32, Code::Shl_rm8_CL, Code::Movsd_m32_m32, Code::Enterd_imm16_imm8] {
        let a = generate::cases(form, 200, 7);
        assert_eq!(a, generate::cases(form, 200, 7), "{form:?}");
        assert_ne!(a, generate::cases(form, 200, 8), "{form:?}");
    }
}

#[test]
fn code_and_regions_lie_in_memory_apart_from_each_other() {
    for (form, cases) in all_cases() {
        for case in cases {
            let page = case.init.eip & !(CODE_PAGE_SIZE - 1);
            let end = case.init.eip + case.code.len() as u32;
            assert!(page >= FIRST_CASE_ADDR && end <= page + CODE_PAGE_SIZE, "{form:?}: code at {:#x}", case.init.eip);
            let mut spans: Vec<(u32, u32)> =
                case.memory.iter().map(|r| (r.addr, r.addr + r.data.len() as u32)).collect();
            spans.sort_unstable();
            for &(lo, hi) in &spans {
                assert!(lo >= FIRST_CASE_ADDR && hi <= MEMORY_SIZE && lo < hi, "{form:?}: region {lo:#x}..{hi:#x}");
                assert!(
                    hi <= page || lo >= page + CODE_PAGE_SIZE,
                    "{form:?}: region {lo:#x}..{hi:#x} on the code page"
                );
            }
            for pair in spans.windows(2) {
                assert!(pair[0].1 <= pair[1].0, "{form:?}: regions {pair:x?} overlap");
            }
        }
    }
}

#[test]
fn branch_targets_stay_on_the_code_page_off_the_instruction() {
    for (form, cases) in all_cases() {
        for case in cases {
            let ins = decode(case);
            if matches!(ins.op0_kind(), OpKind::NearBranch32) {
                let target = ins.near_branch32();
                let page = case.init.eip & !(CODE_PAGE_SIZE - 1);
                assert!((page..page + CODE_PAGE_SIZE).contains(&target), "{form:?}: {target:#x}");
                assert!(!(case.init.eip..case.init.eip + case.code.len() as u32).contains(&target), "{form:?}");
            }
        }
    }
}

#[test]
fn shift_forms_cover_every_count() {
    for (form, cases) in all_cases() {
        let name = format!("{form:?}");
        if validate::form_class(*form) != Some("shift") || name.ends_with("_1") {
            continue;
        }
        let counts: HashSet<u32> = cases
            .iter()
            .map(|case| {
                let ins = decode(case);
                let last = ins.op_count() - 1;
                if ins.op_kind(last) == OpKind::Register { case.init.ecx & 0xFF } else { u32::from(ins.immediate8()) }
            })
            .collect();
        // A 16-bit SHLD/SHRD by more than 16 has an undefined result: those counts are left out.
        let wanted = |c: &u32| !(name.starts_with("Shld_rm16") || name.starts_with("Shrd_rm16")) || c & 31 <= 16;
        for count in (0..=63).filter(wanted) {
            assert!(counts.contains(&count), "{form:?} never shifts by {count}");
        }
    }
}

#[test]
fn division_forms_include_divide_by_zero_and_overflow() {
    for (form, cases) in all_cases() {
        if !matches!(form.mnemonic(), Mnemonic::Div | Mnemonic::Idiv) {
            continue;
        }
        let signed = form.mnemonic() == Mnemonic::Idiv;
        let (mut zero, mut overflow, mut normal) = (0, 0, 0);
        for case in cases {
            let ins = decode(case);
            let size =
                if ins.op0_kind() == OpKind::Register { ins.op0_register().size() } else { ins.memory_size().size() };
            let size = size as u32;
            let divisor = if ins.op0_kind() == OpKind::Register {
                u64::from(reg(&case.init, ins.op0_register()))
            } else {
                let Some(value) = read(case, effective_address(case, &ins), size) else { continue };
                value
            };
            let bits = 8 * size;
            let (high, low) = match size {
                1 => (u64::from(case.init.eax >> 8 & 0xFF), u64::from(case.init.eax & 0xFF)),
                2 => (u64::from(case.init.edx & 0xFFFF), u64::from(case.init.eax & 0xFFFF)),
                _ => (u64::from(case.init.edx), u64::from(case.init.eax)),
            };
            let dividend = (high << bits) | low;
            if divisor == 0 {
                zero += 1;
                continue;
            }
            let fits = if signed {
                let sext = |v: u64, b: u32| {
                    let v = i128::from(v) & ((1i128 << b) - 1);
                    if v >> (b - 1) & 1 == 1 { v - (1i128 << b) } else { v }
                };
                let q = sext(dividend, 2 * bits) / sext(divisor, bits);
                let limit = 1i128 << (bits - 1);
                (-limit..limit).contains(&q)
            } else {
                dividend / divisor < 1 << bits
            };
            if fits { normal += 1 } else { overflow += 1 }
        }
        assert!(
            zero > 0 && overflow > 0 && normal > 0,
            "{form:?}: {zero} by zero, {overflow} overflow, {normal} normal"
        );
    }
}

#[test]
fn string_forms_include_rep_counts_zero_and_one_and_both_directions() {
    for (form, cases) in all_cases() {
        if validate::form_class(*form) != Some("string") {
            continue;
        }
        let mut seen = HashSet::new();
        for case in cases {
            let ins = decode(case);
            let rep = ins.has_rep_prefix() || ins.has_repne_prefix();
            let df = case.init.eflags & 0x400 != 0;
            seen.insert((rep, if rep { case.init.ecx.min(2) } else { 2 }, df));
        }
        for df in [false, true] {
            for count in [0, 1, 2] {
                assert!(seen.contains(&(true, count, df)), "{form:?}: no rep case with ECX {count} and DF {df}");
            }
            assert!(seen.contains(&(false, 2, df)), "{form:?}: no unprefixed case with DF {df}");
        }
    }
}

#[test]
fn memory_forms_include_faulting_accesses() {
    for (form, cases) in all_cases() {
        let touches = matches!(form.mnemonic(), Mnemonic::Lea | Mnemonic::Nop);
        let memory_form = form.op_code().op_kinds().iter().any(|k| {
            use iced_x86::OpCodeOperandKind as K;
            matches!(k, K::mem | K::mem_offs | K::r8_or_mem | K::r16_or_mem | K::r32_or_mem)
        });
        if touches || !memory_form {
            continue;
        }
        let faults = cases
            .iter()
            .filter(|case| {
                let ins = decode(case);
                (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory)
                    && effective_address(case, &ins).wrapping_add(ins.memory_size().size() as u32) > MEMORY_SIZE
            })
            .count();
        assert!(faults > 0, "{form:?} has no faulting memory case");
    }
}

#[test]
fn spec_defined_forms_stop_at_the_instruction() {
    use denali_conformance::case::Stop;
    for (form, cases) in all_cases() {
        if !generate::spec_defined(*form) {
            continue;
        }
        for case in cases.iter().take(50) {
            let expected = generate::spec_expected(case);
            assert_eq!(expected.state, case.init);
            assert_eq!(expected.final_memory, case.memory);
            match (form, expected.stop) {
                (Code::Hlt, Some(Stop::Idle)) | (Code::Int_imm8, Some(Stop::Terminate)) => {}
                (Code::In_EAX_DX, Some(Stop::PortIn { port })) => assert_eq!(u32::from(port), case.init.edx & 0xFFFF),
                (Code::Out_DX_EAX, Some(Stop::PortOut { port, value })) => {
                    assert_eq!(u32::from(port), case.init.edx & 0xFFFF);
                    assert_eq!(value, case.init.eax);
                }
                (Code::In_EAX_imm8, Some(Stop::PortIn { .. })) | (Code::Out_imm8_EAX, Some(Stop::PortOut { .. })) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(!generate::spec_defined(Code::Int3));
}
