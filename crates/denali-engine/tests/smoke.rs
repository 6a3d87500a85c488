//! End-to-end smoke tests: a loop, a call, memory, termination.
mod common;
use common::*;
use denali_engine::{Exit, reg};
use iced_x86::code_asm::*;

#[test]
fn sums_a_loop_and_terminates_with_eax() {
    let mut vm = Vm::asm(|a| {
        let mut top = a.create_label();
        a.xor(eax, eax)?;
        a.mov(ecx, 10)?;
        a.set_label(&mut top)?;
        a.add(eax, ecx)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.int(0xd0)
    });
    let exit = vm.run(1000);
    assert_eq!(exit, Exit::Terminate { status: 55, len: 2 });
    assert_eq!(vm.reg(reg::EAX), 55);
    // xor, mov, 10 * (add, dec, jnz): the terminate itself is not retired.
    assert_eq!(vm.cpu.instructions, 32);
    assert_eq!(vm.cpu.eip, CODE + 2 + 5 + 2 + 1 + 2);
}
