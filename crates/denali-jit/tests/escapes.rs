//! Guests that try to leave their memory, or to run code that was not validated, are contained
//! with the exception the interpreter raises, in the same state.

#![cfg(target_arch = "x86_64")]

mod common;

use common::{flat, same};
use denali_engine::{Exception, ExceptionKind, Exit};

const MEM: u64 = 0x10_0000;

fn fault(code: &[u8], kind: ExceptionKind) -> Exception {
    let (run, _) = same(MEM, &flat(code), u64::MAX, 1_000_000);
    match run.exits.last() {
        Some(Exit::Exception(e)) if e.kind == kind => *e,
        other => panic!("expected a {kind} exception, got {other:?}"),
    }
}

#[test]
fn loads_and_stores_outside_memory_fault_precisely() {
    // mov eax, 1; mov ebx, [0x100000]
    let e = fault(&[0xB8, 1, 0, 0, 0, 0x8B, 0x1D, 0x00, 0x00, 0x10, 0x00], ExceptionKind::Memory);
    assert_eq!((e.eip, e.addr), (0x1005, 0x10_0000));
    // mov eax, 0xFFFFE; add eax, 1; mov [eax+1], eax (straddles the end)
    let e = fault(&[0xB8, 0xFE, 0xFF, 0x0F, 0x00, 0x83, 0xC0, 0x01, 0x89, 0x40, 0x01], ExceptionKind::Memory);
    assert_eq!((e.eip, e.addr), (0x1008, 0x10_0000));
    // huge displacement wrapping at 4 GiB: mov esi, 0x2000; mov ecx, [esi-0x3000]
    let e = fault(&[0xBE, 0x00, 0x20, 0, 0, 0x8B, 0x8E, 0x00, 0xD0, 0xFF, 0xFF], ExceptionKind::Memory);
    assert_eq!((e.eip, e.addr), (0x1005, 0xFFFF_F000));
    // wraparound making an in-range address: mov edi, 0xFFFFFFFF; mov [edi+0x2001], edi
    let (run, _) =
        same(MEM, &flat(&[0xBF, 0xFF, 0xFF, 0xFF, 0xFF, 0x89, 0xBF, 0x01, 0x20, 0, 0, 0xCD, 0xD0]), u64::MAX, 100);
    assert!(matches!(run.exits.last(), Some(Exit::Terminate { .. })));
}

#[test]
fn stack_and_jumps_outside_memory_fault() {
    // mov esp, 2; push eax
    fault(&[0xBC, 2, 0, 0, 0, 0x50], ExceptionKind::Memory);
    // mov esp, 0xFFFFE; pop eax
    fault(&[0xBC, 0xFE, 0xFF, 0x0F, 0x00, 0x58], ExceptionKind::Memory);
    // jmp to 0x7000_0000
    let e = fault(&[0xE9, 0xFB, 0xEF, 0xFF, 0x6F], ExceptionKind::Memory);
    assert_eq!(e.eip, 0x7000_0000);
    // ret to an address past the end: push 0x200000; ret
    fault(&[0x68, 0x00, 0x00, 0x20, 0x00, 0xC3], ExceptionKind::Memory);
}

#[test]
fn jumping_into_the_middle_of_an_instruction_runs_what_is_there() {
    // mov eax, 0x90FA9090 (bytes 90 90 FA 90 inside); jmp into its immediate: nop nop cli
    let e = fault(&[0xB8, 0x90, 0x90, 0xFA, 0x90, 0xEB, 0xFA], ExceptionKind::Invalid);
    assert_eq!(e.eip, 0x1003);
}

#[test]
fn rep_string_ops_running_off_the_end_fault() {
    // mov edi, 0xFFF00; mov ecx, 0x1000; rep stosb
    let e = fault(&[0xBF, 0x00, 0xFF, 0x0F, 0x00, 0xB9, 0x00, 0x10, 0, 0, 0xF3, 0xAA], ExceptionKind::Memory);
    assert_eq!(e.addr, 0x10_0000);
}

/// A translated loop overwrites its own code with `cli` (excluded) and jumps to it: the store
/// drops the translation and the new bytes are validated before they run.
#[test]
fn self_modifying_code_cannot_smuggle_an_excluded_instruction() {
    let code = [
        0xB9, 0x03, 0x00, 0x00, 0x00, // 0x1000 mov ecx, 3
        0x40, // 0x1005 l: inc eax
        0x49, // 0x1006 dec ecx
        0x75, 0xFC, // 0x1007 jnz l
        0xC6, 0x05, 0x05, 0x10, 0x00, 0x00, 0xFA, // 0x1009 mov byte [0x1005], 0xFA (cli)
        0xE9, 0xF0, 0xFF, 0xFF, 0xFF, // 0x1010 jmp 0x1005
    ];
    let e = fault(&code, ExceptionKind::Invalid);
    assert_eq!(e.eip, 0x1005);
    // The same with a harmless patch (inc eax -> inc ebx) runs the new code.
    let mut patched = code;
    patched[15] = 0x43;
    let (run, jit) = same(MEM, &flat(&patched), u64::MAX, 60);
    assert!(jit.stats().invalidations > 0, "{:?}", jit.stats());
    assert_eq!(run.cpu.instructions, 60);
}
