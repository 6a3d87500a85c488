//! The JIT against the interpreter on random straight-line blocks (every register, all of
//! EFLAGS, memory, instruction counts and exits), whole and in small budget slices, and on
//! loops.

#![cfg(target_arch = "x86_64")]

mod common;

use common::{flat, same};
use denali_conformance::case::MEMORY_SIZE;
use denali_conformance::generate::{Rng, block, block_forms};
use denali_engine::{Cpu, GuestMemory};

#[test]
fn random_blocks_agree_with_the_interpreter() {
    let forms = block_forms();
    let mut rng = Rng::new(0x1D1F_F00D);
    let mut translated = 0;
    for round in 0..120 {
        let len = 1 + (round % 24);
        let b = block(&forms, len, &mut rng);
        let case = b.case;
        let setup = |mem: &mut GuestMemory| {
            for region in &case.memory {
                mem.write(region.addr, &region.data).unwrap();
            }
            let mut code = case.code.clone();
            code.extend_from_slice(&[0xCD, 0xD0]); // terminate
            mem.write(case.init.eip, &code).unwrap();
            let s = &case.init;
            let mut cpu = Cpu::new(s.eip, s.esp);
            cpu.regs = [s.eax, s.ecx, s.edx, s.ebx, s.esp, s.ebp, s.esi, s.edi];
            cpu.eflags = s.eflags;
            cpu
        };
        for slice in [1_000_000, 1, 3] {
            let (_, jit) = same(u64::from(MEMORY_SIZE), &setup, slice, 10_000);
            translated += jit.stats().translations;
        }
    }
    assert!(translated > 300, "the JIT translated only {translated} blocks");
}

/// `mov ecx, N; l: add eax, ecx; imul edx, eax, 3; xor ebx, edx; shl ebx, 1; adc esi, ebx;
/// push eax; pop edi; mov [0x3000+...], ...; dec ecx; jnz l; int 0xd0`
#[test]
fn loops_agree_with_the_interpreter_and_are_translated() {
    let code = [
        0xB9, 0x10, 0x27, 0x00, 0x00, // mov ecx, 10000
        0x01, 0xC8, // l: add eax, ecx
        0x6B, 0xD0, 0x03, // imul edx, eax, 3
        0x31, 0xD3, // xor ebx, edx
        0xD1, 0xE3, // shl ebx, 1
        0x11, 0xDE, // adc esi, ebx
        0x50, // push eax
        0x5F, // pop edi
        0x89, 0x3C, 0x8D, 0x00, 0x30, 0x00, 0x00, // mov [ecx*4+0x3000], edi
        0x03, 0x2C, 0x8D, 0x00, 0x30, 0x00, 0x00, // add ebp, [ecx*4+0x3000]
        0x49, // dec ecx
        0x75, 0xE2, // jnz l
        0xCD, 0xD0, // int 0xd0
    ];
    for slice in [u64::MAX, 7, 1] {
        let (run, jit) = same(0x10_0000, &flat(&code), slice, 1_000_000);
        assert_eq!(run.cpu.instructions, 1 + 11 * 10_000);
        if slice > 7 {
            // Translated code ran the loop, not the interpreter.
            assert!(jit.stats().interpreted < 100, "{:?}", jit.stats());
        }
        if slice == 7 {
            // The 11-instruction loop never fits a slice of 7: each entry is refused once.
            assert!(jit.stats().budget_exits > 0, "{:?}", jit.stats());
        }
    }
}

/// MOVs with an absolute `moffs` operand (what compilers emit for `mov eax, [global]`) are
/// translated, in every width, loads and stores, and one at 2^31 or above faults exactly.
#[test]
fn absolute_moves_are_translated() {
    let code = [
        0xB9, 0x64, 0x00, 0x00, 0x00, // mov ecx, 100
        0xA1, 0x00, 0x30, 0x00, 0x00, // l: mov eax, [0x3000]
        0x01, 0xC8, // add eax, ecx
        0xA3, 0x00, 0x30, 0x00, 0x00, // mov [0x3000], eax
        0xA0, 0x04, 0x30, 0x00, 0x00, // mov al, [0x3004]
        0x00, 0xC8, // add al, cl
        0xA2, 0x05, 0x30, 0x00, 0x00, // mov [0x3005], al
        0x66, 0xA1, 0x06, 0x30, 0x00, 0x00, // mov ax, [0x3006]
        0x66, 0x01, 0xC8, // add ax, cx
        0x66, 0xA3, 0x07, 0x30, 0x00, 0x00, // mov [0x3007], ax
        0x49, // dec ecx
        0x75, 0xD6, // jnz l
        0xA1, 0x00, 0x00, 0x00, 0x80, // mov eax, [0x80000000]: outside memory
        0xCD, 0xD0, // int 0xd0
    ];
    for slice in [u64::MAX, 5] {
        let (run, jit) = same(0x10_0000, &flat(&code), slice, 1_000_000);
        assert_eq!(run.cpu.instructions, 1 + 11 * 100);
        if slice > 5 {
            assert!(jit.stats().interpreted < 10, "{:?}", jit.stats());
        }
    }
}

/// Accesses to one address share the `lea` that forms it, but only while r8 still holds it:
/// a change of the address's register (even by a constant, which merges the two accesses'
/// checks into one), or SHR's fixup (which keeps its operand in r8), forms it again.
#[test]
fn an_address_is_formed_again_after_its_register_or_r8_changes() {
    #[rustfmt::skip]
    let code = [
        0xBB, 0x00, 0x30, 0x00, 0x00, // mov ebx, 0x3000
        0xBE, 0x55, 0x00, 0x00, 0x00, // mov esi, 0x55
        0xC7, 0x03, 0x78, 0x56, 0x34, 0x12, // mov dword [ebx], 0x12345678
        0x8B, 0x03, // mov eax, [ebx]
        0x83, 0xC3, 0x04, // add ebx, 4
        0x89, 0x33, // mov [ebx], esi: at 0x3004
        0x8B, 0x13, // mov edx, [ebx]
        0xD1, 0xEE, // shr esi, 1 (its flags are live at the block's end: fixed up at once)
        0x89, 0x13, // mov [ebx], edx: at 0x3004 (SHR's fixup used r8)
        0xCD, 0xD0, // int 0xd0
    ];
    let (run, jit) = same(0x10_0000, &flat(&code), u64::MAX, 1_000);
    assert_eq!(run.cpu.instructions, 9);
    assert!(jit.stats().translations > 0, "{:?}", jit.stats());
}
