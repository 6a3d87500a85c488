//! The tiered JIT of fleets: cold blocks run in the interpreter, a block is translated once
//! it has run `TIER_UP` times, and the guest cannot tell: registers, flags, memory, counts and
//! exits are the interpreter's under every budget slice, across the switch from interpreted
//! to translated code, and when code is rewritten around it.

#![cfg(target_arch = "x86_64")]

mod common;

use common::{flat, in_mode, memories, run};
use denali_engine::{Cpu, ExceptionKind, Exit, GuestMemory, Interpreter, SharedCode};
use denali_jit::{Jit, TIER_UP};

const MEM: u64 = 0x10_0000;

/// Budget slices: 1 stops before every block, odd sizes stop inside blocks.
const SLICES: [u64; 7] = [1, 3, 7, 11, 64, 1000, u64::MAX];

/// Runs `setup` on the interpreter and on a tiered JIT under every slice, asserts they agree,
/// and returns the tiered JIT's exits and statistics of the unsliced run.
fn agree(setup: &dyn Fn(&mut GuestMemory) -> Cpu, limit: u64) -> (Vec<Exit>, denali_jit::JitStats) {
    let mut last = None;
    for slice in SLICES {
        let mut mem_i = GuestMemory::new(MEM).unwrap();
        let cpu = setup(&mut mem_i);
        let want = run(&mut Interpreter::new(), cpu, &mut mem_i, slice, limit);
        // In the checked mode of fleets, and in guard-region mode.
        for (mode, mut mem) in memories(MEM) {
            let cpu = setup(&mut mem);
            let mut jit = in_mode(mode, Jit::tiered(SharedCode::new()).expect("x86-64 host with BMI2"));
            let got = run(&mut jit, cpu, &mut mem, slice, limit);
            assert_eq!(got, want, "tiered JIT (left, {mode}) differs from the interpreter (right), slice {slice}");
            if mode == "checked" {
                last = Some((got.exits, jit.stats()));
            }
        }
    }
    last.expect("at least one slice")
}

/// `mov ecx, n; L: add eax, ecx; xor ebx, eax; dec ecx; jnz L; terminate`.
fn counted_loop(n: u32) -> Vec<u8> {
    let mut code = vec![0xB9];
    code.extend_from_slice(&n.to_le_bytes());
    code.extend_from_slice(&[0x01, 0xC8, 0x31, 0xC3, 0x49, 0x75, 0xF9, 0xCD, 0xD0]);
    code
}

#[test]
fn a_loop_runs_interpreted_until_hot_then_translated() {
    let code = counted_loop(10_000);
    let (exits, stats) = agree(&flat(&code), 1_000_000);
    assert!(matches!(exits.last(), Some(Exit::Terminate { .. })), "{exits:?}");
    assert!(stats.translations >= 1, "{stats:?}");
    // The first pass (with the `mov`: 5 instructions) and TIER_UP passes of the loop's own
    // block (4) ran in the interpreter; the 129th entry was the translation's.
    assert_eq!(stats.interpreted, 5 + 4 * u64::from(TIER_UP), "{stats:?}");
}

#[test]
fn code_that_stays_cold_is_never_translated() {
    let code = counted_loop(TIER_UP / 2);
    let (exits, stats) = agree(&flat(&code), 1_000_000);
    assert!(matches!(exits.last(), Some(Exit::Terminate { .. })), "{exits:?}");
    assert_eq!(stats.translations, 0, "{stats:?}");
    assert_eq!(stats.block_runs, 0, "{stats:?}");
}

/// A loop that reads a dword 4 bytes further on each pass and runs off the end of memory on
/// its 1001st: the fault comes from translated code and must carry the interpreter's EIP,
/// address and state.
#[test]
fn a_fault_in_code_that_tiered_up_is_exact() {
    let start = (MEM as u32) - 4 * 999 - 4;
    let mut code = vec![0xBB];
    code.extend_from_slice(&start.to_le_bytes()); // 0x1000 mov ebx, start
    code.extend_from_slice(&[
        0x8B, 0x03, // 0x1005 L: mov eax, [ebx]
        0x83, 0xC3, 0x04, // 0x1007 add ebx, 4
        0xEB, 0xF9, // 0x100A jmp L
    ]);
    let (exits, stats) = agree(&flat(&code), 1_000_000);
    match exits.last() {
        Some(Exit::Exception(e)) => assert_eq!((e.kind, e.eip, e.addr), (ExceptionKind::Memory, 0x1005, MEM as u32)),
        other => panic!("expected a memory fault, got {other:?}"),
    }
    assert!(stats.translations >= 1, "{stats:?}");
}

/// A function called from a hot loop, so translated, is rewritten (`inc eax` into `inc ebx`)
/// and called from a second hot loop, then rewritten into `cli` and called once more: each new
/// byte takes effect at once (the stale translation is dropped), and the excluded instruction
/// faults as INVALID where the interpreter faults. (Code rewritten on every pass of its own
/// loop never gets hot: each write drops its decoded block, and with it the count.)
#[test]
fn code_rewritten_after_the_tier_up_takes_effect_at_once() {
    let setup = |mem: &mut GuestMemory| {
        mem.write(
            0x1000,
            &[
                0xB9, 0x2C, 0x01, 0x00, 0x00, // 0x1000 mov ecx, 300
                0xE8, 0xF6, 0x0F, 0x00, 0x00, // 0x1005 L1: call F
                0x49, // 0x100A dec ecx
                0x75, 0xF8, // 0x100B jnz L1
                0xC6, 0x05, 0x00, 0x20, 0x00, 0x00, 0x43, // 0x100D mov byte [F], 0x43 (inc ebx)
                0xB9, 0x2C, 0x01, 0x00, 0x00, // 0x1014 mov ecx, 300
                0xE8, 0xE2, 0x0F, 0x00, 0x00, // 0x1019 L2: call F
                0x49, // 0x101E dec ecx
                0x75, 0xF8, // 0x101F jnz L2
                0xC6, 0x05, 0x00, 0x20, 0x00, 0x00, 0xFA, // 0x1021 mov byte [F], 0xFA (cli)
                0xE8, 0xD3, 0x0F, 0x00, 0x00, // 0x1028 call F
                0xCD, 0xD0, // 0x102D terminate (not reached)
            ],
        )
        .unwrap();
        mem.write(0x2000, &[0x40, 0xC3]).unwrap(); // F: inc eax; ret
        Cpu::new(0x1000, mem.size())
    };
    let (exits, stats) = agree(&setup, 1_000_000);
    match exits.last() {
        Some(Exit::Exception(e)) => assert_eq!((e.kind, e.eip), (ExceptionKind::Invalid, 0x2000)),
        other => panic!("expected INVALID, got {other:?}"),
    }
    assert!(stats.translations >= 2, "{stats:?}");
    assert!(stats.invalidations >= 1, "{stats:?}");
}

/// A store to a translated block's page that the interpreter runs (here after CLD, which is
/// never translated), followed in the same interpreted run by code on that page: the
/// interpreter decodes the page anew (marking it again), and the JIT must still drop its
/// translation of the old bytes (F gives back what it added: 0, not 1800).
#[test]
fn code_rewritten_by_interpreted_code_takes_effect_at_once() {
    let setup = |mem: &mut GuestMemory| {
        mem.write(
            0x1000,
            &[
                0xB9, 0x2C, 0x01, 0x00, 0x00, // 0x1000 mov ecx, 300
                0xE8, 0xF6, 0x0F, 0x00, 0x00, // 0x1005 L1: call F
                0x49, // 0x100A dec ecx
                0x75, 0xF8, // 0x100B jnz L1
                0xFC, // 0x100D cld
                0xC6, 0x05, 0x00, 0x20, 0x00, 0x00, 0x2D, // 0x100E mov byte [F], 0x2D (sub)
                0xB9, 0x2C, 0x01, 0x00, 0x00, // 0x1015 mov ecx, 300
                0xE8, 0xE1, 0x0F, 0x00, 0x00, // 0x101A L2: call F
                0x49, // 0x101F dec ecx
                0x75, 0xF8, // 0x1020 jnz L2
                0xCD, 0xD0, // 0x1022 terminate
            ],
        )
        .unwrap();
        mem.write(0x2000, &[0x05, 0x03, 0x00, 0x00, 0x00, 0xC3]).unwrap(); // F: add eax, 3; ret
        Cpu::new(0x1000, mem.size())
    };
    let (exits, stats) = agree(&setup, 1_000_000);
    assert!(matches!(exits.last(), Some(Exit::Terminate { status: 0, .. })), "{exits:?}");
    assert!(stats.invalidations >= 1, "{stats:?}");
}
