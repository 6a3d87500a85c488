//! End-to-end: small guests assembled with iced-x86 run on the real interpreter.

mod common;

use common::Output;
use denali_engine::{ExceptionKind, Interpreter, reg};
use denali_kernel::{FaultCause, Image, Outcome, Vm, VmConfig};
use iced_x86::code_asm::*;

const BASE: u32 = 0x1000;

/// Where the tests put a handler: code at `BASE` stays below it.
const HANDLER: u32 = BASE + 0x100;
/// Where the tests put data.
const DATA: u32 = BASE + 0x200;

fn assemble(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    assemble_at(BASE, build)
}

fn assemble_at(addr: u32, build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    build(&mut a).unwrap();
    a.assemble(u64::from(addr)).unwrap()
}

/// A flat image from BASE with `parts` at their addresses, zeros between them.
fn layout(parts: &[(u32, &[u8])]) -> Vec<u8> {
    let mut image = Vec::new();
    for (addr, bytes) in parts {
        let at = (addr - BASE) as usize;
        assert!(image.len() <= at, "parts overlap");
        image.resize(at, 0);
        image.extend_from_slice(bytes);
    }
    image
}

/// Main code that installs `handler_code` at HANDLER as the exception handler, then runs `body`.
fn with_handler(
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
    handler_code: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Vec<u8> {
    let main = assemble(|a| {
        a.mov(dword_ptr(0x28), HANDLER)?;
        body(a)
    });
    let handler = assemble_at(HANDLER, handler_code);
    layout(&[(BASE, &main), (HANDLER, &handler)])
}

fn boot(code: &[u8]) -> (Vm, Output) {
    let out = Output::default();
    let image = Image::flat(code, BASE, None).unwrap();
    let config = VmConfig { mem_size: 1 << 20, vm_id: 0 };
    (Vm::new(&image, config, Box::new(Interpreter::new()), Box::new(out.clone())).unwrap(), out)
}

#[test]
fn terminate_with_status() {
    let (mut vm, _) = boot(&assemble(|a| {
        a.mov(eax, 7u32)?;
        a.int(0xD0)
    }));
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(7));
    assert_eq!(vm.cpu().instructions, 2);
}

#[test]
fn console_through_both_ports() {
    let code = assemble(|a| {
        a.mov(eax, u32::from(b'>'))?;
        a.out(0x10, eax)?;
        a.mov(eax, DATA)?;
        a.out(0x11, eax)?;
        a.mov(eax, dword_ptr(DATA + 8))?; // the status: OK is 0
        a.int(0xD0)
    });
    let mut block = Vec::new();
    for field in [DATA + 0x10, 3, 0xFFFF] {
        block.extend_from_slice(&u32::to_le_bytes(field));
    }
    let (mut vm, out) = boot(&layout(&[(BASE, &code), (DATA, &block), (DATA + 0x10, b"hi\n")]));
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0));
    assert_eq!(out.text(), ">hi\n");
}

#[test]
fn unknown_port_faults() {
    // Through DX: the validator already rejects `out 0x99,eax`, whose port is in the encoding.
    let (mut vm, _) = boot(&assemble(|a| {
        a.mov(edx, 0x99u32)?;
        a.out(dx, eax)
    }));
    match vm.run(None).unwrap() {
        Outcome::Fault(f) => {
            assert_eq!(f.exception().unwrap().kind, ExceptionKind::Port);
            assert_eq!(f.disasm, "out dx,eax");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn exception_handler_sees_the_frame() {
    let (mut vm, _) = boot(&with_handler(
        |a| a.mov(eax, dword_ptr(0xFFFF_FFF0u32)),
        |a| {
            a.mov(eax, dword_ptr(esp))?; // kind
            a.add(eax, dword_ptr(esp + 4))?; // + fault address
            a.int(0xD0)
        },
    ));
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(3u32.wrapping_add(0xFFFF_FFF0)));
}

#[test]
fn breakpoint_handler_returns_after_int3() {
    let (mut vm, _) = boot(&with_handler(
        |a| {
            a.mov(ebx, 40u32)?;
            a.int3()?;
            a.lea(eax, dword_ptr(ebx + 2))?;
            a.int(0xD0)
        },
        |a| {
            a.add(esp, 8)?;
            a.popfd()?;
            a.ret()
        },
    ));
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(42));
}

#[test]
fn fault_without_handler_is_fatal() {
    let (mut vm, _) = boot(&assemble(|a| {
        a.mov(ecx, 5u32)?;
        a.mov(eax, dword_ptr(0xFFFF_FFF0u32))
    }));
    match vm.run(None).unwrap() {
        Outcome::Fault(f) => {
            let e = f.exception().unwrap();
            assert_eq!((e.kind, e.eip, e.addr), (ExceptionKind::Memory, BASE + 5, 0xFFFF_FFF0));
            assert_eq!(f.cpu.regs[reg::ECX], 5);
            assert_eq!(f.cpu.instructions, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn double_fault_when_the_stack_is_gone() {
    let (mut vm, _) = boot(&with_handler(
        |a| {
            a.mov(esp, 0xFFFF_0000u32)?;
            a.ud2()
        },
        |a| a.int(0xD0),
    ));
    match vm.run(None).unwrap() {
        Outcome::Fault(f) => assert!(matches!(f.cause, FaultCause::DoubleFault { .. }), "{f}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn interrupt_handler_gets_the_mask() {
    let main = assemble(|a| {
        let mut spin = a.create_label();
        a.mov(dword_ptr(0x24), HANDLER)?;
        a.mov(dword_ptr(0x1C), 1u32)?;
        a.set_label(&mut spin)?;
        a.jmp(spin)
    });
    let handler = assemble_at(HANDLER, |a| {
        a.mov(eax, dword_ptr(esp))?;
        a.int(0xD0)
    });
    let (mut vm, _) = boot(&layout(&[(BASE, &main), (HANDLER, &handler)]));
    vm.raise_interrupts(0b0100);
    assert_eq!(vm.run(Some(10_000_000)).unwrap(), Outcome::Terminated(0b0100));
}

#[test]
fn max_instructions_stops_a_spinning_guest() {
    let (mut vm, _) = boot(&assemble(|a| {
        let mut spin = a.create_label();
        a.set_label(&mut spin)?;
        a.jmp(spin)
    }));
    assert_eq!(vm.run(Some(1000)).unwrap(), Outcome::Limit);
    assert_eq!(vm.cpu().instructions, 1000);
    assert_eq!(vm.cpu().eip, BASE);
}
