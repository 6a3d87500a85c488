//! Exits and precise exceptions: virtual instructions, I/O, INT3, invalid code, memory faults.
mod common;
use common::*;
use denali_engine::{Exception, ExceptionKind, Exit, reg::*};
use iced_x86::code_asm::*;

fn exception(kind: ExceptionKind, eip: u32, addr: u32) -> Exit {
    Exit::Exception(Exception { kind, eip, addr })
}

#[test]
fn virtual_instructions_and_ports_exit_without_retiring() {
    let mut vm = Vm::asm(|a| {
        a.mov(eax, 500)?;
        a.hlt()?;
        a.mov(edx, 0x20)?;
        a.in_(eax, dx)?;
        a.out(0x10, eax)?;
        a.int3()?;
        a.int(0xd0)
    });
    assert_eq!(vm.run(100), Exit::Idle { timeout_us: 500, len: 1 });
    assert_eq!((vm.cpu.eip, vm.cpu.instructions), (CODE + 5, 1));
    vm.cpu.retire(1);
    assert_eq!(vm.run(100), Exit::PortIn { port: 0x20, width: 4, len: 1 });
    assert_eq!(vm.cpu.eip, CODE + 11);
    vm.cpu.regs[EAX] = 0x41;
    vm.cpu.retire(1);
    assert_eq!(vm.run(100), Exit::PortOut { port: 0x10, width: 4, value: 0x41, len: 2 });
    vm.cpu.retire(2);
    assert_eq!(vm.run(100), exception(ExceptionKind::Breakpoint, CODE + 14, 0));
    assert_eq!(vm.cpu.eip, CODE + 14);
    vm.cpu.retire(1);
    assert_eq!(vm.run(100), Exit::Terminate { status: 0x41, len: 2 });
}

#[test]
fn excluded_and_undecodable_instructions_are_invalid_where_reached() {
    // mov eax, 1; cli; ...
    let mut vm = Vm::new(&[0xB8, 1, 0, 0, 0, 0xFA, 0xCD, 0xD0]);
    assert_eq!(vm.run(100), exception(ExceptionKind::Invalid, CODE + 5, 0));
    assert_eq!((vm.reg(EAX), vm.cpu.instructions), (1, 1));
    // ud2
    let mut vm = Vm::new(&[0x90, 0x0F, 0x0B]);
    assert_eq!(vm.run(100), exception(ExceptionKind::Invalid, CODE + 1, 0));
    // int 0x80 is not the terminate instruction.
    let mut vm = Vm::new(&[0xCD, 0x80]);
    assert_eq!(vm.run(100), exception(ExceptionKind::Invalid, CODE, 0));
    // An invalid instruction never reached raises nothing.
    let mut vm = Vm::new(&[0xEB, 0x01, 0xFA, 0xCD, 0xD0]);
    assert!(matches!(vm.run(100), Exit::Terminate { .. }));
}

#[test]
fn faulting_store_changes_nothing() {
    let mut vm = Vm::asm(|a| {
        a.mov(eax, 7)?;
        a.mov(ebx, (MEM_SIZE - 2) as u32)?;
        a.stc()?;
        a.add(dword_ptr(ebx), eax)?;
        a.int(0xd0)
    });
    let exit = vm.run(100);
    assert_eq!(exit, exception(ExceptionKind::Memory, CODE + 11, MEM_SIZE as u32));
    assert_eq!(vm.cpu.eip, CODE + 11);
    assert_eq!(vm.mem.read_u16((MEM_SIZE - 2) as u32).unwrap(), 0);
    assert_eq!(vm.flags() & CF, CF);
    assert_eq!(vm.cpu.instructions, 3);
}

#[test]
fn push_that_wraps_below_zero_faults_without_moving_esp() {
    let mut vm = Vm::asm(|a| {
        a.mov(esp, 2)?;
        a.push(eax)?;
        a.int(0xd0)
    });
    assert_eq!(vm.run(100), exception(ExceptionKind::Memory, CODE + 5, 0xFFFF_FFFE));
    assert_eq!(vm.reg(ESP), 2);
}

#[test]
fn rep_fault_keeps_the_iterations_before_it() {
    let mut vm = Vm::asm(|a| {
        a.mov(edi, (MEM_SIZE - 8) as u32)?;
        a.mov(ecx, 5)?;
        a.mov(eax, 0xAABB_CCDDu32)?;
        a.rep().stosd()?;
        a.int(0xd0)
    });
    assert_eq!(vm.run(100), exception(ExceptionKind::Memory, CODE + 15, MEM_SIZE as u32));
    assert_eq!((vm.reg(ECX), vm.reg(EDI)), (3, MEM_SIZE as u32));
    assert_eq!(vm.u32_at((MEM_SIZE - 4) as u32), 0xAABB_CCDD);
    assert_eq!(vm.cpu.instructions, 3 + 2);
}

#[test]
fn jumping_outside_memory_and_straddling_the_end() {
    let mut vm = Vm::asm(|a| {
        a.mov(eax, 0x4000_0000)?;
        a.jmp(eax)
    });
    assert_eq!(vm.run(100), exception(ExceptionKind::Memory, 0x4000_0000, 0x4000_0000));
    assert_eq!(vm.cpu.instructions, 2);
    // mov eax, imm32 whose last two bytes lie beyond the end of memory.
    let mut vm = Vm::new(&[0xB8, 0, 0, 0, 0]);
    let start = (MEM_SIZE - 3) as u32;
    vm.mem.write(start, &[0xB8, 1, 2]).unwrap();
    vm.cpu.eip = start;
    assert_eq!(vm.run(100), exception(ExceptionKind::Memory, start, MEM_SIZE as u32));
}
