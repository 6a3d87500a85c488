//! Budget exactness (single-stepping equals one long run, REP included) and self-modifying code.
mod common;
use common::*;
use denali_engine::{Exception, ExceptionKind, Exit, reg::*};
use iced_x86::code_asm::*;

fn program() -> Vec<u8> {
    assemble(|a| {
        let mut top = a.create_label();
        a.mov(esi, DATA)?;
        a.mov(edi, DATA + 0x100)?;
        a.mov(ebx, 4)?;
        a.set_label(&mut top)?;
        a.mov(ecx, 7)?;
        a.rep().movsb()?;
        a.mov(ecx, 3)?;
        a.mov(al, 0x5A)?;
        a.rep().stosb()?;
        a.xor(ecx, ecx)?;
        a.rep().stosd()?; // zero count: one retirement
        a.dec(ebx)?;
        a.jnz(top)?;
        a.int(0xd0)
    })
}

#[test]
fn budget_one_at_a_time_matches_one_long_run() {
    let code = program();
    let mut long = Vm::new(&code);
    long.finish();
    // 3 + 4 * (1 + 7 + 1 + 1 + 3 + 1 + 1 + 1 + 1)
    assert_eq!(long.cpu.instructions, 3 + 4 * 17);

    let mut step = Vm::new(&code);
    let mut runs = 0;
    loop {
        let before = step.cpu.instructions;
        match step.run(1) {
            Exit::BudgetExhausted => assert_eq!(step.cpu.instructions, before + 1),
            Exit::Terminate { .. } => break,
            other => panic!("{other:?}"),
        }
        runs += 1;
    }
    assert_eq!(runs, long.cpu.instructions);
    assert_eq!(step.cpu, long.cpu);
    assert_eq!(step.mem.bytes(DATA, 0x200).unwrap(), long.mem.bytes(DATA, 0x200).unwrap());

    // Odd budgets split REP instructions at other points.
    for budget in [2, 3, 5, 13] {
        let mut vm = Vm::new(&code);
        while vm.run(budget) == Exit::BudgetExhausted {}
        assert_eq!(vm.cpu, long.cpu, "budget {budget}");
    }
}

#[test]
fn store_to_the_next_instruction_in_the_same_block_is_seen() {
    // mov byte [CODE + 9], 0x42 (7 bytes: C6 05 addr imm8)... patch "inc eax" (0x40) into "inc edx" (0x42).
    let code = assemble(|a| {
        a.mov(byte_ptr(CODE + 9), 0x42)?; // 7 bytes
        a.xor(eax, eax)?; // 2 bytes, at CODE + 7
        a.inc(eax)?; // at CODE + 9
        a.int(0xd0)
    });
    assert_eq!(code[9], 0x40);
    let mut vm = Vm::new(&code);
    vm.finish();
    assert_eq!((vm.reg(EAX), vm.reg(EDX)), (0, 1));

    // Run it once more after the kernel rewrites the code: the cached block must be dropped.
    let mut vm = Vm::new(&code);
    vm.finish();
    vm.mem.write(CODE, &code).unwrap();
    vm.mem.write(CODE + 9, &[0x43]).unwrap(); // inc ebx; the store in the program writes 0x42 again
    vm.cpu.eip = CODE;
    vm.cpu.regs = [0; 8];
    vm.finish();
    assert_eq!(vm.reg(EDX), 1);
}

#[test]
fn writing_an_excluded_instruction_gives_invalid_not_execution() {
    let code = assemble(|a| {
        a.mov(byte_ptr(CODE + 8), 0xFA)?; // cli over the nop below
        a.nop()?; // CODE + 7
        a.nop()?; // CODE + 8
        a.mov(eax, 1)?;
        a.int(0xd0)
    });
    let mut vm = Vm::new(&code);
    // Warm the cache with the original code first.
    assert_eq!(vm.run(2), Exit::BudgetExhausted);
    vm.cpu.eip = CODE;
    assert_eq!(vm.run(100), Exit::Exception(Exception { kind: ExceptionKind::Invalid, eip: CODE + 8, addr: 0 }));
    assert_eq!(vm.reg(EAX), 0);
}

#[test]
fn code_patched_in_a_loop_is_redecoded_each_time() {
    // The loop body's "add eax, imm8" immediate is rewritten every iteration.
    let code = assemble(|a| {
        let mut top = a.create_label();
        a.mov(ecx, 1)?;
        a.set_label(&mut top)?; // CODE + 5
        a.mov(byte_ptr(CODE + 13), cl)?; // 6 bytes: 88 0D addr
        a.add(ebx, 0x7F)?; // CODE + 11: 83 C3 imm8 (imm at CODE + 13)
        a.inc(ecx)?;
        a.cmp(ecx, 5)?;
        a.jne(top)?;
        a.int(0xd0)
    });
    assert_eq!(code[11..13], [0x83, 0xC3]);
    let mut vm = Vm::new(&code);
    vm.finish();
    assert_eq!(vm.reg(EBX), 1 + 2 + 3 + 4);
}
