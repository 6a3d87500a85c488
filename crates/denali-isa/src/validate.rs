//! The validator: checks one decoded instruction against the v1 subset.
//!
//! An instruction is in the subset when its iced-x86 `Code` is a v1 row of `isa-spec/forms.txt`
//! and its prefixes and immediates obey the rules of section 1.2 of the spec. Everything else is
//! rejected with a class of `isa-spec/excluded.txt` and a one-line rule naming what is wrong, so
//! that `denali check`, the engines and the kernel's diagnostics all say the same thing.
//!
//! What `check` cannot see: iced's `Instruction` keeps no record of an address-size prefix on
//! an instruction without a memory operand, so a redundant 0x67 there (which the CPU ignores)
//! is accepted; every 0x67 that changes behaviour shows up as 16-bit addressing or as a
//! `_CX`/`Jcxz` form and is rejected as ADDR16.

use crate::disasm;
use crate::spec;
use iced_x86::{Code, CpuidFeature, Decoder, DecoderOptions, EncodingKind, Instruction, Mnemonic, OpKind, Register};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The classes of `isa-spec/excluded.txt`, as the validator names them.
pub mod class {
    pub const SEGMENT: &str = "SEGMENT";
    pub const FAR: &str = "FAR";
    pub const SYSTEM: &str = "SYSTEM";
    pub const INT: &str = "INT";
    pub const IO: &str = "IO";
    pub const X87: &str = "X87";
    pub const SIMD: &str = "SIMD";
    pub const ADDR16: &str = "ADDR16";
    pub const LEGACY: &str = "LEGACY";
    pub const NEWER: &str = "NEWER";
    pub const UNDECODABLE: &str = "UNDECODABLE";
    /// Every class above; a test checks each is a row of `excluded.txt`.
    pub const ALL: &[&str] = &[SEGMENT, FAR, SYSTEM, INT, IO, X87, SIMD, ADDR16, LEGACY, NEWER, UNDECODABLE];
}

/// Why an instruction is outside the subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {rule}")]
pub struct Violation {
    /// The class of `isa-spec/excluded.txt` the instruction belongs to.
    pub class: &'static str,
    /// One line naming the rule broken, for diagnostics.
    pub rule: String,
}

fn violation(class: &'static str, rule: String) -> Result<(), Violation> {
    Err(Violation { class, rule })
}

/// A 32-bit-mode decoder over guest code at guest address `ip`. It uses iced's default checks,
/// so a LOCK prefix the architecture forbids, and other encodings a CPU rejects with #UD,
/// decode as `Code::INVALID`.
pub fn decoder(bytes: &[u8], ip: u32) -> Decoder<'_> {
    Decoder::with_ip(32, bytes, u64::from(ip), DecoderOptions::NONE)
}

/// The iced `Code` whose `Debug` name is `name` (the `form` column of `forms.txt`).
pub fn code_by_name(name: &str) -> Option<Code> {
    static NAMES: OnceLock<HashMap<String, Code>> = OnceLock::new();
    NAMES.get_or_init(|| Code::values().map(|code| (format!("{code:?}"), code)).collect()).get(name).copied()
}

/// The `class` column of the v1 row of `forms.txt` for `code`, or `None` if `code` is not a
/// v1 form.
pub fn form_class(code: Code) -> Option<&'static str> {
    static TABLE: OnceLock<Vec<Option<&'static str>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = vec![None; Code::values().len()];
        // A row naming no iced Code is a spec defect that the forms tests report; skipping it
        // here keeps the validator total.
        for row in spec::FORMS.rows().into_iter().filter(|row| row.cells[3] == "y") {
            if let Some(code) = code_by_name(row.cells[0]) {
                table[code as usize] = Some(row.cells[1]);
            }
        }
        table
    });
    table.get(code as usize).copied().flatten()
}

/// The EFLAGS status bit a flag name of the `undefined` column of `forms.txt` stands for.
pub fn flag_bit(name: &str) -> Option<u32> {
    Some(match name {
        "CF" => 0x001,
        "PF" => 0x004,
        "AF" => 0x010,
        "ZF" => 0x040,
        "SF" => 0x080,
        "OF" => 0x800,
        _ => return None,
    })
}

/// Parses a cell of the `undefined` column: `-`, or flag names separated by commas.
pub fn parse_flags(cell: &str) -> Result<u32, String> {
    if cell == "-" {
        return Ok(0);
    }
    cell.split(',').try_fold(0, |mask, name| match flag_bit(name) {
        Some(bit) if mask & bit == 0 => Ok(mask | bit),
        Some(_) => Err(format!("flag {name} is listed twice in {cell:?}")),
        None => Err(format!("{name:?} is not a status flag (CF PF AF ZF SF OF) in {cell:?}")),
    })
}

/// The EFLAGS status bits the architecture leaves undefined after `code` (the `undefined`
/// column of `forms.txt`); 0 for a form that is not in the table. The conformance suite
/// leaves these bits out when it compares flags.
pub fn undefined_flags(code: Code) -> u32 {
    static TABLE: OnceLock<Vec<u32>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = vec![0; Code::values().len()];
        // A malformed cell is a spec defect that the forms tests report; reading it as "none"
        // keeps this total.
        for row in spec::FORMS.rows() {
            if let Some(code) = code_by_name(row.cells[0]) {
                table[code as usize] = parse_flags(row.cells[2]).unwrap_or(0);
            }
        }
        table
    });
    table.get(code as usize).copied().unwrap_or(0)
}

/// Checks a decoded instruction (decoded in 32-bit mode by `decoder`) against the v1 subset.
/// Returns `Ok` exactly when engines may run it.
pub fn check(instruction: &Instruction) -> Result<(), Violation> {
    let code = instruction.code();
    if code == Code::INVALID {
        return violation(
            class::UNDECODABLE,
            "undecodable byte sequence (no such instruction, or a prefix the architecture forbids)".to_owned(),
        );
    }
    let Some(form) = form_class(code) else {
        let (class, rule) = classify(instruction);
        return violation(class, rule);
    };
    let text = || disasm::format(instruction);

    if uses_16bit_addressing(instruction) {
        return violation(class::ADDR16, format!("{} uses 16-bit addressing (address-size prefix 0x67)", text()));
    }
    let segment = instruction.segment_prefix();
    if segment != Register::None && !segment_prefix_tolerated(instruction, segment) {
        return violation(class::SEGMENT, format!("segment-override prefix {} on {}", register_name(segment), text()));
    }
    if instruction.has_lock_prefix() && !lock_allowed(instruction) {
        return violation(
            class::LEGACY,
            format!("lock prefix on {}, which the architecture does not allow", mnemonic_name(instruction)),
        );
    }
    if let Some(result) = check_rep(instruction, form) {
        return result;
    }
    match code {
        Code::Int_imm8 if instruction.immediate8() != TERMINATE_VECTOR => {
            violation(class::INT, format!("{}: the only software interrupt is int 0xd0 (TERMINATE)", text()))
        }
        Code::In_EAX_imm8 | Code::Out_imm8_EAX => check_port(instruction, code == Code::In_EAX_imm8),
        _ => Ok(()),
    }
}

/// The vector of the TERMINATE virtual instruction, `int 0xd0`.
const TERMINATE_VECTOR: u8 = 0xD0;

fn check_rep(instruction: &Instruction, form: &str) -> Option<Result<(), Violation>> {
    let rep = instruction.has_rep_prefix();
    let repne = instruction.has_repne_prefix();
    if !(rep || repne) || form == "string" {
        return None;
    }
    // gcc emits `rep ret` (F3 C3) as a branch-predictor workaround for old AMD CPUs; the F3
    // has no effect.
    if instruction.code() == Code::Retnd && rep && !repne {
        return None;
    }
    let name = mnemonic_name(instruction);
    Some(if instruction.has_xacquire_prefix() || instruction.has_xrelease_prefix() {
        violation(class::NEWER, format!("xacquire/xrelease (TSX HLE) prefix on {name}"))
    } else if repne && is_near_branch(instruction) {
        violation(class::NEWER, format!("bnd (MPX) prefix on {name}"))
    } else {
        let prefix = if repne { "repne" } else { "rep" };
        violation(class::LEGACY, format!("{prefix} prefix on {name}, which is not a string instruction"))
    })
}

fn check_port(instruction: &Instruction, is_in: bool) -> Result<(), Violation> {
    let port = u16::from(instruction.immediate8());
    let listed = denali_abi::port::ALL.iter().any(|&(_, p, reads)| p == port && reads == is_in);
    if listed {
        return Ok(());
    }
    let dir = if is_in { "IN" } else { "OUT" };
    violation(class::IO, format!("{}: port {port:#04x} is not an {dir} port of ports.txt", disasm::format(instruction)))
}

fn uses_16bit_addressing(instruction: &Instruction) -> bool {
    (0..instruction.op_count()).any(|i| match instruction.op_kind(i) {
        OpKind::Memory => {
            let (base, index) = (instruction.memory_base(), instruction.memory_index());
            base.is_gpr16()
                || index.is_gpr16()
                || (base == Register::None && index == Register::None && instruction.memory_displ_size() == 2)
        }
        OpKind::MemorySegSI | OpKind::MemorySegDI | OpKind::MemoryESDI => true,
        _ => false,
    })
}

fn segment_prefix_tolerated(instruction: &Instruction, segment: Register) -> bool {
    match instruction.code() {
        // gas pads with `cs nopw 0x0(%eax,%eax,1)`; a NOP reads no memory, so the prefix is inert.
        Code::Nop_rm16 | Code::Nop_rm32 => true,
        // 3E on an indirect near branch is CET's `notrack` (gcc -fcf-protection jump tables); DS
        // is the flat default segment, so it changes nothing on Denali.
        Code::Jmp_rm32 | Code::Call_rm32 => segment == Register::DS,
        _ => false,
    }
}

fn lock_allowed(instruction: &Instruction) -> bool {
    let lockable = matches!(
        instruction.mnemonic(),
        Mnemonic::Add
            | Mnemonic::Adc
            | Mnemonic::And
            | Mnemonic::Btc
            | Mnemonic::Btr
            | Mnemonic::Bts
            | Mnemonic::Cmpxchg
            | Mnemonic::Cmpxchg8b
            | Mnemonic::Dec
            | Mnemonic::Inc
            | Mnemonic::Neg
            | Mnemonic::Not
            | Mnemonic::Or
            | Mnemonic::Sbb
            | Mnemonic::Sub
            | Mnemonic::Xor
            | Mnemonic::Xadd
            | Mnemonic::Xchg
    );
    lockable && instruction.op_count() > 0 && instruction.op0_kind() == OpKind::Memory
}

fn is_near_branch(instruction: &Instruction) -> bool {
    instruction.is_jcc_short_or_near()
        || matches!(instruction.mnemonic(), Mnemonic::Call | Mnemonic::Jmp | Mnemonic::Ret)
}

fn mnemonic_name(instruction: &Instruction) -> String {
    format!("{:?}", instruction.mnemonic()).to_lowercase()
}

fn register_name(register: Register) -> String {
    format!("{register:?}").to_lowercase()
}

fn has_feature(instruction: &Instruction, wanted: &[CpuidFeature]) -> bool {
    instruction.cpuid_features().iter().any(|f| wanted.contains(f))
}

fn any_register(instruction: &Instruction, test: impl Fn(Register) -> bool) -> bool {
    (0..instruction.op_count()).any(|i| instruction.op_kind(i) == OpKind::Register && test(instruction.op_register(i)))
}

const X87_FEATURES: &[CpuidFeature] = &[
    CpuidFeature::FPU,
    CpuidFeature::FPU287,
    CpuidFeature::FPU287XL_ONLY,
    CpuidFeature::FPU387,
    CpuidFeature::FPU387SL_ONLY,
    CpuidFeature::CYRIX_FPU,
];

/// Features that mean a vector register file or its state, by `Debug` name prefix: iced has
/// dozens of SSE/AVX/AVX-512 variants and new ones appear with each release.
const SIMD_FEATURE_PREFIXES: &[&str] = &[
    "SSE",
    "SSSE3",
    "AVX",
    "MMX",
    "D3NOW",
    "CYRIX_D3NOW",
    "AES",
    "VAES",
    "SHA",
    "PCLMULQDQ",
    "VPCLMULQDQ",
    "GFNI",
    "F16C",
    "FMA",
    "FXSR",
    "XSAVE",
    "AMX",
    "KNC",
    "CYRIX_EMMI",
    "KL",
    "WIDE_KL",
];

const SYSTEM_FEATURES: &[CpuidFeature] = &[
    CpuidFeature::CPUID,
    CpuidFeature::TSC,
    CpuidFeature::RDTSCP,
    CpuidFeature::RDPMC,
    CpuidFeature::RDPID,
    CpuidFeature::RDPRU,
    CpuidFeature::MSR,
    CpuidFeature::SEP,
    CpuidFeature::SYSCALL,
    CpuidFeature::SMM,
    CpuidFeature::CYRIX_SMM,
    CpuidFeature::CYRIX_SMINT,
    CpuidFeature::CYRIX_SMINT_0F7E,
    CpuidFeature::VMX,
    CpuidFeature::SVM,
    CpuidFeature::SMX,
    CpuidFeature::SKINIT,
    CpuidFeature::INVEPT,
    CpuidFeature::INVPCID,
    CpuidFeature::INVVPID,
    CpuidFeature::MONITOR,
    CpuidFeature::MONITORX,
    CpuidFeature::SGX1,
    CpuidFeature::SEV_ES,
    CpuidFeature::SEV_SNP,
    CpuidFeature::TDX,
    CpuidFeature::PCONFIG,
    CpuidFeature::SMAP,
    CpuidFeature::MOV_TR,
    CpuidFeature::UMOV,
    CpuidFeature::INVLPGB,
    CpuidFeature::FRED,
    CpuidFeature::LKGS,
    CpuidFeature::MSRLIST,
    CpuidFeature::WRMSRNS,
    CpuidFeature::WBNOINVD,
    CpuidFeature::UINTR,
    CpuidFeature::HRESET,
    CpuidFeature::UDBG,
    CpuidFeature::FSGSBASE,
];

/// The IA-32 general-purpose base: a form with only these features that is not in `forms.txt`
/// was left out on purpose (an alias, a 16-bit branch, ...), not because it is newer.
const BASE_FEATURES: &[CpuidFeature] = &[
    CpuidFeature::INTEL8086,
    CpuidFeature::INTEL8086_ONLY,
    CpuidFeature::INTEL186,
    CpuidFeature::INTEL286,
    CpuidFeature::INTEL286_ONLY,
    CpuidFeature::INTEL386,
    CpuidFeature::INTEL386_ONLY,
    CpuidFeature::INTEL386_A0_ONLY,
    CpuidFeature::INTEL486,
    CpuidFeature::INTEL486_A_ONLY,
    CpuidFeature::CMOV,
    CpuidFeature::CX8,
    CpuidFeature::MULTIBYTENOP,
    CpuidFeature::PAUSE,
];

/// The class and rule for an instruction whose Code is not a v1 form. The order matters: the
/// first matching class is the most specific reason (a far call through a 16-bit address is
/// FAR before it is ADDR16; an x87 store is X87 whatever its prefixes).
fn classify(instruction: &Instruction) -> (&'static str, String) {
    let code = instruction.code();
    let mnemonic = instruction.mnemonic();
    let text = disasm::format(instruction);
    let name = mnemonic_name(instruction);
    let features = instruction.cpuid_features();

    if matches!(mnemonic, Mnemonic::Ud0 | Mnemonic::Ud1 | Mnemonic::Ud2) {
        return (class::UNDECODABLE, format!("{name} is an undefined instruction"));
    }
    if has_feature(instruction, X87_FEATURES)
        || matches!(mnemonic, Mnemonic::Wait)
        || any_register(instruction, Register::is_st)
    {
        return (class::X87, format!("{text} is an x87 instruction"));
    }
    let simd_feature = features.iter().any(|f| {
        let f = format!("{f:?}");
        SIMD_FEATURE_PREFIXES.iter().any(|p| f.starts_with(p))
    });
    let vector_register = any_register(instruction, |r| r.is_vector_register() || r.is_mm() || r.is_k() || r.is_tmm());
    if simd_feature || vector_register {
        return (class::SIMD, format!("{text} is an MMX/SSE/AVX-family instruction ({})", feature_names(features)));
    }
    if matches!(mnemonic, Mnemonic::Lds | Mnemonic::Les | Mnemonic::Lfs | Mnemonic::Lgs | Mnemonic::Lss) {
        return (class::SEGMENT, format!("{text} loads a segment register"));
    }
    if any_register(instruction, Register::is_segment_register) {
        let rule = match mnemonic {
            Mnemonic::Push => "pushes a segment register",
            Mnemonic::Pop => "pops a segment register",
            _ if instruction.op0_kind() == OpKind::Register && instruction.op0_register().is_segment_register() => {
                "loads a segment register"
            }
            _ => "stores a segment register",
        };
        return (class::SEGMENT, format!("{text} {rule}"));
    }
    if instruction.is_call_far()
        || instruction.is_jmp_far()
        || instruction.is_call_far_indirect()
        || instruction.is_jmp_far_indirect()
        || matches!(mnemonic, Mnemonic::Retf | Mnemonic::Iret | Mnemonic::Iretd | Mnemonic::Iretq)
    {
        return (class::FAR, format!("{text} is a far control transfer"));
    }
    if matches!(mnemonic, Mnemonic::Into | Mnemonic::Int1 | Mnemonic::Int | Mnemonic::Bound) {
        return (class::INT, format!("{text}: there is no interrupt-descriptor table"));
    }
    if matches!(
        mnemonic,
        Mnemonic::In
            | Mnemonic::Out
            | Mnemonic::Insb
            | Mnemonic::Insw
            | Mnemonic::Insd
            | Mnemonic::Outsb
            | Mnemonic::Outsw
            | Mnemonic::Outsd
    ) {
        return (class::IO, format!("{text}: only 32-bit in and out through eax are allowed"));
    }
    if code.op_code().address_size() == 16 || uses_16bit_addressing(instruction) {
        return (class::ADDR16, format!("{text} uses 16-bit addressing (address-size prefix 0x67)"));
    }
    if instruction.is_privileged() || has_feature(instruction, SYSTEM_FEATURES) || is_system_mnemonic(mnemonic) {
        let why = if instruction.is_privileged() { "is a privileged instruction" } else { "is a system instruction" };
        return (class::SYSTEM, format!("{text} {why}"));
    }
    if matches!(mnemonic, Mnemonic::Aaa | Mnemonic::Aas | Mnemonic::Aad | Mnemonic::Aam | Mnemonic::Daa | Mnemonic::Das)
    {
        return (class::LEGACY, format!("{name} is BCD arithmetic"));
    }
    if instruction.code().op_code().encoding() != EncodingKind::Legacy {
        return (class::NEWER, format!("{text} belongs to a later extension ({})", feature_names(features)));
    }
    if features.iter().all(|f| BASE_FEATURES.contains(f)) {
        return (class::LEGACY, legacy_rule(instruction, &text));
    }
    (class::NEWER, format!("{text} belongs to a later extension ({})", feature_names(features)))
}

fn is_system_mnemonic(mnemonic: Mnemonic) -> bool {
    matches!(
        mnemonic,
        Mnemonic::Sgdt
            | Mnemonic::Sidt
            | Mnemonic::Sldt
            | Mnemonic::Smsw
            | Mnemonic::Str
            | Mnemonic::Lar
            | Mnemonic::Lsl
            | Mnemonic::Verr
            | Mnemonic::Verw
            | Mnemonic::Arpl
            | Mnemonic::Rsm
            | Mnemonic::Loadall
            | Mnemonic::Storeall
    )
}

/// The rule for a base IA-32 form left out of v1, by why it was left out.
fn legacy_rule(instruction: &Instruction, text: &str) -> String {
    let code = instruction.code();
    let branch_or_frame = code.op_code().operand_size() == 16
        && (instruction.is_jcc_short_or_near()
            || instruction.is_loop()
            || instruction.is_loopcc()
            || instruction.is_jcx_short()
            || matches!(
                instruction.mnemonic(),
                Mnemonic::Call
                    | Mnemonic::Jmp
                    | Mnemonic::Ret
                    | Mnemonic::Enter
                    | Mnemonic::Leave
                    | Mnemonic::Pusha
                    | Mnemonic::Popa
                    | Mnemonic::Pushf
                    | Mnemonic::Popf
            ));
    if branch_or_frame {
        return format!("{text}: operand-size prefix on a branch or frame instruction (16-bit IP or frame)");
    }
    match code {
        Code::Salc => format!("{text} is undocumented"),
        Code::Bswap_r16 => format!("{text} has an undefined result"),
        _ if format!("{code:?}").starts_with("Reservednop") => format!("{text} is a reserved-NOP encoding"),
        _ => format!("{text} uses {}, an alias encoding outside the v1 forms", code.op_code().op_code_string()),
    }
}

fn feature_names(features: &[CpuidFeature]) -> String {
    let names: Vec<String> = features.iter().map(|f| format!("{f:?}").to_lowercase()).collect();
    names.join(", ")
}
