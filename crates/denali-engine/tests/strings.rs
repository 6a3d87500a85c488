//! String instructions with and without REP, both directions, REPE/REPNE termination.
mod common;
use common::*;
use denali_engine::reg::*;
use iced_x86::code_asm::*;

#[test]
fn rep_movsb_forward_and_counts_each_iteration() {
    let mut vm = Vm::asm(|a| {
        a.mov(esi, DATA)?;
        a.mov(edi, DATA + 0x100)?;
        a.mov(ecx, 5)?;
        a.rep().movsb()?;
        a.int(0xd0)
    });
    vm.mem.write(DATA, b"hello").unwrap();
    vm.finish();
    assert_eq!(vm.mem.bytes(DATA + 0x100, 5).unwrap(), b"hello");
    assert_eq!((vm.reg(ESI), vm.reg(EDI), vm.reg(ECX)), (DATA + 5, DATA + 0x105, 0));
    assert_eq!(vm.cpu.instructions, 3 + 5);
}

#[test]
fn rep_with_zero_count_retires_once_and_does_nothing() {
    let vm = run(|a| {
        a.mov(edi, DATA)?;
        a.xor(ecx, ecx)?;
        a.mov(eax, 0xFFFF_FFFFu32)?;
        a.rep().stosd()?;
        a.int(0xd0)
    });
    assert_eq!(vm.u32_at(DATA), 0);
    assert_eq!(vm.reg(EDI), DATA);
    assert_eq!(vm.cpu.instructions, 4);
}

#[test]
fn stos_lods_backwards_with_df() {
    let vm = run(|a| {
        a.std()?;
        a.mov(edi, DATA + 8)?;
        a.mov(ecx, 3)?;
        a.mov(eax, 0x1122_3344)?;
        a.rep().stosd()?; // DATA+8, +4, +0
        a.mov(esi, DATA + 4)?;
        a.lodsw()?; // AX = 0x3344, ESI = DATA + 2
        a.cld()?;
        a.stosb()?; // single: [EDI = DATA - 4] = 0x44
        a.int(0xd0)
    });
    assert_eq!(vm.u32_at(DATA), 0x1122_3344);
    assert_eq!(vm.u32_at(DATA + 8), 0x1122_3344);
    assert_eq!(vm.reg(ESI), DATA + 2);
    assert_eq!(vm.reg(EDI), DATA - 3);
    assert_eq!(vm.mem.read_u8(DATA - 4).unwrap(), 0x44);
}

#[test]
fn repe_cmpsb_stops_at_the_first_difference() {
    let mut vm = Vm::asm(|a| {
        a.mov(esi, DATA)?;
        a.mov(edi, DATA + 0x100)?;
        a.mov(ecx, 10)?;
        a.repe().cmpsb()?;
        a.int(0xd0)
    });
    vm.mem.write(DATA, b"abcdXfghij").unwrap();
    vm.mem.write(DATA + 0x100, b"abcdYfghij").unwrap();
    vm.finish();
    // Five comparisons, the last unequal ('X' - 'Y' borrows).
    assert_eq!((vm.reg(ECX), vm.reg(ESI)), (5, DATA + 5));
    assert_eq!(vm.flags() & (ZF | CF), CF);
    assert_eq!(vm.cpu.instructions, 3 + 5);
}

#[test]
fn repne_scasb_finds_a_byte() {
    let mut vm = Vm::asm(|a| {
        a.mov(edi, DATA)?;
        a.mov(ecx, 100)?;
        a.mov(al, 0)?;
        a.repne().scasb()?;
        a.int(0xd0)
    });
    vm.mem.write(DATA, b"strlen\0").unwrap();
    vm.finish();
    assert_eq!((vm.reg(ECX), vm.reg(EDI)), (93, DATA + 7));
    assert_ne!(vm.flags() & ZF, 0);
}

/// When both operands are outside memory, CMPS faults on [EDI] and MOVS on [ESI], as the CPU
/// does (found by the live differential test against the host CPU).
#[test]
fn cmps_reads_edi_first_and_movs_reads_esi_first() {
    use denali_engine::{Exception, ExceptionKind, Exit};
    let (esi_addr, edi_addr) = (0x1b72_d54e_u32, 0xf1aa_17d8_u32);
    for (movs, fault_at) in [(false, edi_addr), (true, esi_addr)] {
        let mut vm = Vm::asm(|a| {
            a.mov(esi, esi_addr)?;
            a.mov(edi, edi_addr)?;
            if movs { a.movsb() } else { a.cmpsb() }
        });
        let exit = vm.run(100);
        assert_eq!(
            exit,
            Exit::Exception(Exception { kind: ExceptionKind::Memory, eip: CODE + 10, addr: fault_at }),
            "movs: {movs}"
        );
    }
}

/// REP STOS of a repeated byte (`memset`) is done in one fill for the iterations the budget
/// allows: stopped by any budget, it must leave ECX, EDI, memory and the count exactly as that
/// many single iterations would; a value that is not a repeated byte, and a range that runs off
/// the end, go one iteration at a time (the fault then keeps the iterations before it).
#[test]
fn rep_stos_fills_exactly_the_iterations_the_budget_allows() {
    for (value, repeated) in [(0u32, true), (0x7F7F_7F7F, true), (0x0102_0304, false)] {
        for budget in [1u64, 2, 3, 17, 99, 100, 101, 1000] {
            let mut vm = Vm::asm(|a| {
                a.mov(eax, value)?;
                a.mov(edi, DATA)?;
                a.mov(ecx, 100)?;
                a.rep().stosd()?;
                a.int(0xd0)
            });
            vm.mem.fill(DATA, 0x400, 0xEE).unwrap();
            vm.run(3); // the three movs
            let exit = vm.run(budget);
            let done = budget.min(100);
            assert_eq!(u64::from(100 - vm.reg(ECX)), done, "{value:#x} budget {budget}");
            #[allow(clippy::cast_possible_truncation, reason = "at most 100")]
            let bytes = 4 * done as u32;
            assert_eq!(vm.reg(EDI), DATA + bytes);
            assert_eq!(vm.cpu.instructions, 3 + done);
            assert_eq!(vm.u32_at(DATA + bytes - 4), value, "{repeated}");
            assert_eq!(vm.u32_at(DATA + bytes), 0xEEEE_EEEE);
            let finished = budget > 100;
            assert_eq!(matches!(exit, denali_engine::Exit::Terminate { .. }), finished);
            assert_eq!(vm.cpu.eip == CODE + 15, budget < 100, "stopped inside the REP exactly when the budget ran out");
        }
    }
    // Off the end of memory: the iterations inside are done, then MEMORY at the first outside.
    let mut vm = Vm::asm(|a| {
        a.xor(eax, eax)?;
        a.mov(edi, (MEM_SIZE - 8) as u32)?;
        a.mov(ecx, 4)?;
        a.rep().stosd()
    });
    let exit = vm.run(100);
    assert!(matches!(exit, denali_engine::Exit::Exception(e) if e.addr == MEM_SIZE as u32), "{exit:?}");
    assert_eq!((vm.reg(ECX), vm.reg(EDI)), (2, MEM_SIZE as u32));
}
