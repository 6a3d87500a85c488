//! Returns and indirect branches chained in generated code, linked direct exits, merged checks
//! and deferred flag fixups: each guest runs on both engines, under many budget slices, and the
//! JIT must match the interpreter exactly (registers, flags, memory, counts, exits).

#![cfg(target_arch = "x86_64")]

mod common;

use common::{flat, same};
use denali_engine::{Cpu, ExceptionKind, Exit, GuestMemory};

const MEM: u64 = 0x10_0000;

/// Budget slices: 1 stops before every block, odd sizes stop inside chained runs.
const SLICES: [u64; 9] = [1, 2, 3, 5, 7, 11, 64, 1000, u64::MAX];

/// Runs `setup` on both engines under every slice; returns the exits of the last run and the
/// JIT's statistics for the unsliced run.
fn agree(setup: &dyn Fn(&mut GuestMemory) -> Cpu, limit: u64) -> (Vec<Exit>, denali_jit::JitStats) {
    let mut last = None;
    for slice in SLICES {
        let (run, jit) = same(MEM, setup, slice, limit);
        last = Some((run.exits, jit.stats()));
    }
    last.expect("at least one slice")
}

fn last_exception(exits: &[Exit]) -> (ExceptionKind, u32) {
    match exits.last() {
        Some(Exit::Exception(e)) => (e.kind, e.eip),
        other => panic!("expected an exception, got {other:?}"),
    }
}

fn terminated(exits: &[Exit]) -> bool {
    matches!(exits.last(), Some(Exit::Terminate { .. }))
}

/// A loop of 1000 calls whose callee returns two bytes past the call (a CALL/RET mismatch the
/// return lookup must follow): the skipped bytes are `cli`, so a wrong return faults.
#[test]
fn returns_to_another_address_than_the_call_chain_exactly() {
    let code = [
        0xB9, 0xE8, 0x03, 0x00, 0x00, // 0x1000 mov ecx, 1000
        0xE8, 0x07, 0x00, 0x00, 0x00, // 0x1005 call 0x1011
        0xFA, 0xFA, // 0x100A cli; cli (skipped)
        0x49, // 0x100C dec ecx
        0x75, 0xF6, // 0x100D jnz 0x1005
        0xCD, 0xD0, // 0x100F terminate
        0x83, 0x04, 0x24, 0x02, // 0x1011 add dword [esp], 2
        0x40, // 0x1015 inc eax
        0xC3, // 0x1016 ret
    ];
    let (exits, stats) = agree(&flat(&code), 100_000);
    assert!(terminated(&exits), "{exits:?}");
    // The returns were found in the chaining table, not by the runtime.
    assert!(stats.chain_hits > 1500, "{stats:?}");
    assert!(stats.lookups < 100, "{stats:?}");
}

#[test]
fn a_corrupted_return_address_faults_like_the_interpreter() {
    // call 0x1005; mov dword [esp], 0x200000 (outside memory); ret
    let code = [0xE8, 0, 0, 0, 0, 0xC7, 0x04, 0x24, 0x00, 0x00, 0x20, 0x00, 0xC3];
    let (exits, _) = agree(&flat(&code), 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Memory, 0x20_0000));
    // call 0x1005; mov dword [esp], 0x100D (a cli); ret
    let code = [0xE8, 0, 0, 0, 0, 0xC7, 0x04, 0x24, 0x0D, 0x10, 0x00, 0x00, 0xC3, 0xFA];
    let (exits, _) = agree(&flat(&code), 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Invalid, 0x100D));
}

#[test]
fn returning_into_the_middle_of_an_instruction_runs_what_is_there() {
    let code = [
        0x68, 0x07, 0x10, 0x00, 0x00, // 0x1000 push 0x1007
        0xC3, // 0x1005 ret
        0xB8, 0x40, 0x43, 0xCD, 0xD0, // 0x1006 mov eax, 0xD0CD4340: inc eax; inc ebx; terminate
    ];
    let (exits, _) = agree(&flat(&code), 1000);
    assert!(terminated(&exits), "{exits:?}");
}

#[test]
fn indirect_jumps_and_calls_reach_untranslated_and_invalid_targets_exactly() {
    // mov eax, 0x1010; jmp eax; ... 0x1010: inc ebx; terminate
    let mut code = vec![0xB8, 0x10, 0x10, 0x00, 0x00, 0xFF, 0xE0];
    code.resize(0x10, 0x90);
    code.extend([0x43, 0xCD, 0xD0]);
    let (exits, _) = agree(&flat(&code), 1000);
    assert!(terminated(&exits), "{exits:?}");
    // The same target holding cli.
    code[0x10] = 0xFA;
    let (exits, _) = agree(&flat(&code), 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Invalid, 0x1010));
    // mov eax, 0x70000000; call eax: the target is outside memory.
    let (exits, _) = agree(&flat(&[0xB8, 0x00, 0x00, 0x00, 0x70, 0xFF, 0xD0]), 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Memory, 0x7000_0000));
    // mov ebx, 0x100000; jmp [ebx]: the pointer is outside memory.
    let (exits, _) = agree(&flat(&[0xBB, 0x00, 0x00, 0x10, 0x00, 0xFF, 0x23]), 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Memory, 0x1005));
    // mov esp, 2; mov eax, 0x1000; call eax: the push faults, before the jump.
    let (exits, _) = agree(&flat(&[0xBC, 0x02, 0, 0, 0, 0xB8, 0x00, 0x10, 0, 0, 0xFF, 0xD0]), 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Memory, 0x100A));
}

/// A loop calling through a pointer in memory: `call [ebx]` chains to the callee and the
/// callee's RET back, under every slice.
#[test]
fn calls_through_memory_chain_in_a_loop() {
    let code = [
        0xC7, 0x05, 0x00, 0x80, 0x00, 0x00, 0x20, 0x10, 0x00, 0x00, // 0x1000 mov dword [0x8000], 0x1020
        0xBB, 0x00, 0x80, 0x00, 0x00, // 0x100A mov ebx, 0x8000
        0xB9, 0x64, 0x00, 0x00, 0x00, // 0x100F mov ecx, 100
        0xFF, 0x13, // 0x1014 call [ebx]
        0x49, // 0x1016 dec ecx
        0x75, 0xFB, // 0x1017 jnz 0x1014
        0xCD, 0xD0, // 0x1019 terminate
        0x90, 0x90, 0x90, 0x90, 0x90, // 0x101B padding
        0x01, 0xC8, // 0x1020 add eax, ecx
        0xC3, // 0x1022 ret
    ];
    let (exits, stats) = agree(&flat(&code), 100_000);
    assert!(terminated(&exits), "{exits:?}");
    assert!(stats.chain_hits > 150, "{stats:?}");
}

/// Pushes and pops share one bounds check; when a later one would fault, the block leaves
/// before the first and the interpreter reaches the faulting one with the exact state.
#[test]
fn merged_stack_checks_fault_at_the_right_instruction() {
    // mov esp, 9; mov eax, 1; push eax; push ebx; push ecx (ESP 1: wraps, faults)
    let code = [0xBC, 0x09, 0, 0, 0, 0xB8, 1, 0, 0, 0, 0x50, 0x53, 0x51, 0xCD, 0xD0];
    let (exits, _) = agree(&flat(&code), 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Memory, 0x100C));
    // mov esp, 0xFFFF8; pop eax; pop ebx; pop ecx (runs off the end)
    let code = [0xBC, 0xF8, 0xFF, 0x0F, 0x00, 0x58, 0x5B, 0x59, 0xCD, 0xD0];
    let (exits, _) = agree(&flat(&code), 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Memory, 0x1007));
    // mov ebx, 0xFFFF0; mov [ebx], eax; add ebx, 8; mov [ebx+4], eax; mov [ebx+8], eax (faults)
    let code =
        [0xBB, 0xF0, 0xFF, 0x0F, 0x00, 0x89, 0x03, 0x83, 0xC3, 0x08, 0x89, 0x43, 0x04, 0x89, 0x43, 0x08, 0xCD, 0xD0];
    let (exits, _) = agree(&flat(&code), 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Memory, 0x100D));
}

/// Flags an instruction leaves undefined are fixed up only on the exits that can observe them:
/// a fault right after a multiply or a shift must show the interpreter's values.
#[test]
fn deferred_flag_fixups_show_the_interpreters_flags_at_a_fault() {
    // mov ecx, 0x12345; mov eax, 0x7FFF; mov ebx, 0x100000; imul eax, ecx; add [ebx], eax
    let code = [
        0xB9, 0x45, 0x23, 0x01, 0x00, 0xB8, 0xFF, 0x7F, 0, 0, 0xBB, 0x00, 0x00, 0x10, 0x00, 0x0F, 0xAF, 0xC1, 0x01,
        0x03,
    ];
    let (exits, _) = agree(&flat(&code), 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Memory, 0x1012));
    // mov eax, 0x80000001; mov ebx, 0x100000; shr eax, 8; xor eax, [ebx]
    let code = [0xB8, 0x01, 0x00, 0x00, 0x80, 0xBB, 0x00, 0x00, 0x10, 0x00, 0xC1, 0xE8, 0x08, 0x33, 0x03];
    let (exits, _) = agree(&flat(&code), 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Memory, 0x100D));
    // The same shifts and multiplies where nothing faults: the fast path skips the fixups.
    let code = [
        0xB9, 0x45, 0x23, 0x01, 0x00, // mov ecx, 0x12345
        0xBB, 0x00, 0x80, 0x00, 0x00, // mov ebx, 0x8000
        0x0F, 0xAF, 0xC1, // imul eax, ecx
        0x01, 0x03, // add [ebx], eax
        0xC1, 0xE8, 0x03, // shr eax, 3
        0x33, 0x03, // xor eax, [ebx]
        0x49, // dec ecx
        0x75, 0xF3, // jnz imul
        0xCD, 0xD0, // terminate
    ];
    let (exits, _) = agree(&flat(&code), 500_000);
    assert!(terminated(&exits), "{exits:?}");
}

/// Block L, on page 1, jumps to block M on page 2 (a linked jump). M then overwrites its own
/// first byte with `cli`: M is dropped while L stays cached, so L's link must be undone and
/// the new byte validated (INVALID at M), never the stale translation run.
#[test]
fn dropping_a_block_unlinks_the_jumps_to_it() {
    let setup = |patch: u8| {
        move |mem: &mut GuestMemory| {
            mem.write(
                0x1000,
                &[
                    0xB9, 0x03, 0x00, 0x00, 0x00, // 0x1000 mov ecx, 3
                    0xE9, 0xF6, 0x0F, 0x00, 0x00, // 0x1005 L: jmp 0x2000
                ],
            )
            .unwrap();
            mem.write(
                0x2000,
                &[
                    0x40, // 0x2000 M: inc eax
                    0x49, // 0x2001 dec ecx
                    0x0F, 0x85, 0xFD, 0xEF, 0xFF, 0xFF, // 0x2002 jnz 0x1005
                    0xC6, 0x05, 0x00, 0x20, 0x00, 0x00, patch, // 0x2008 mov byte [0x2000], patch
                    0xB9, 0x02, 0x00, 0x00, 0x00, // 0x200F mov ecx, 2
                    0xE9, 0xEC, 0xEF, 0xFF, 0xFF, // 0x2014 jmp 0x1005
                ],
            )
            .unwrap();
            Cpu::new(0x1000, mem.size())
        }
    };
    let (exits, _) = agree(&setup(0xFA), 10_000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Invalid, 0x2000));
    // inc eax -> inc ebx: the new code runs, twice more, and the loop goes on patching.
    let (run, jit) = same(MEM, &setup(0x43), u64::MAX, 200);
    assert!(jit.stats().invalidations > 0, "{:?}", jit.stats());
    assert_ne!(run.cpu.regs[3], 0, "the patched inc ebx ran");
}

/// A store that starts on a page without code and ends on the next, which holds code: the one
/// code-page look a translated store makes (at its first page) must still see the code.
#[test]
fn a_store_straddling_into_a_code_page_drops_its_code() {
    let (exits, _) = agree(&common::straddling_store_into_code, 1000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Invalid, 0x3000));
}

/// A JCC inside a block is a side exit: taken, it gives back the instructions after it and
/// chains; not taken, the block goes on. Counts must stay exact under every slice, and a check
/// after the JCC must not be made before it (the access may never run).
#[test]
fn side_exits_give_back_the_rest_of_the_block() {
    let code = [
        0xB9, 0x32, 0x00, 0x00, 0x00, // 0x1000 mov ecx, 50
        0x40, // 0x1005 L: inc eax
        0x49, // 0x1006 dec ecx
        0x74, 0x04, // 0x1007 jz 0x100D
        0x01, 0xC3, // 0x1009 add ebx, eax
        0xEB, 0xF8, // 0x100B jmp L
        0xCD, 0xD0, // 0x100D terminate
    ];
    let (exits, _) = agree(&flat(&code), 10_000);
    assert!(terminated(&exits), "{exits:?}");
    // mov ebx, 0x100000; mov ecx, 1; dec ecx; jz 0x100F; mov eax, [ebx] (outside, never runs)
    let code = [
        0xBB, 0x00, 0x00, 0x10, 0x00, // 0x1000 mov ebx, 0x100000
        0xB9, 0x01, 0x00, 0x00, 0x00, // 0x1005 mov ecx, 1
        0x49, // 0x100A dec ecx
        0x74, 0x02, // 0x100B jz 0x100F
        0x8B, 0x03, // 0x100D mov eax, [ebx]
        0xCD, 0xD0, // 0x100F terminate
    ];
    let (exits, _) = agree(&flat(&code), 10_000);
    assert!(terminated(&exits), "{exits:?}");
}

/// A loop whose JCC back to the block's start is followed by more of the block (the taken arm
/// runs inline and takes the next pass's count net of the rest's refund), with a store in it
/// and after it.
#[test]
fn loops_back_from_inside_a_block_count_exactly() {
    let code = [
        0xB9, 0x2C, 0x01, 0x00, 0x00, // 0x1000 mov ecx, 300
        0x01, 0xC8, // 0x1005 l: add eax, ecx
        0x89, 0x04, 0x8D, 0x00, 0x30, 0x00, 0x00, // mov [ecx*4+0x3000], eax
        0x49, // dec ecx
        0x75, 0xF4, // jnz l
        0x83, 0xC0, 0x05, // add eax, 5
        0x89, 0x05, 0x00, 0x20, 0x00, 0x00, // mov [0x2000], eax
        0x43, // inc ebx
        0xCD, 0xD0, // terminate
    ];
    let (exits, stats) = agree(&flat(&code), 100_000);
    assert!(terminated(&exits), "{exits:?}");
    assert!(stats.lookups < 10, "{stats:?}");
}

/// A loop back to the block's start whose flags come from an access that faults: the pass
/// count may be taken early only before an instruction that cannot exit (else the refund of
/// the failed check would miss it), so the fault comes with the interpreter's count and state.
#[test]
fn a_loop_whose_compare_faults_counts_exactly() {
    let code = [
        0xBE, 0xC0, 0xFF, 0x0F, 0x00, // 0x1000 mov esi, 0xFFFC0
        0x83, 0xC0, 0x01, // 0x1005 l: add eax, 1
        0x83, 0xC6, 0x04, // add esi, 4
        0x39, 0x06, // cmp [esi], eax (memory is 0: never equal, until esi reaches the end)
        0x75, 0xF6, // jne l
        0x43, // inc ebx
        0xCD, 0xD0, // terminate
    ];
    let (exits, _) = agree(&flat(&code), 100_000);
    assert_eq!(last_exception(&exits), (ExceptionKind::Memory, 0x100B));
}

/// Straight-line blocks of 24 stores, each through a base register moved by another register
/// (so each has its own check), where the k-th store is the first outside memory: the branches
/// of failed checks reach their exits through trampolines placed inside the block (or, for the
/// first check, before the block's inner entry when that is within reach: not after a long
/// prefix of register instructions), and the fault must be the interpreter's, at that store,
/// with the flags of the `add` before it.
#[test]
fn long_blocks_fault_at_each_of_their_accesses() {
    for prefix in [0u32, 8, 30] {
        for k in 0..24u32 {
            let start = (MEM as u32).wrapping_sub(0x100 * k);
            let mut code = Vec::new();
            for _ in 0..prefix {
                code.extend([0x05, 0x78, 0x56, 0x34, 0x12]); // add eax, 0x12345678
            }
            code.extend([0xB9, 0x00, 0x01, 0x00, 0x00]); // mov ecx, 0x100
            code.push(0xBB); // mov ebx, start
            code.extend(start.to_le_bytes());
            code.push(0xF9); // stc
            for _ in 0..24 {
                code.extend([0x89, 0x03]); // mov [ebx], eax
                code.extend([0x01, 0xCB]); // add ebx, ecx
            }
            code.extend([0xCD, 0xD0]);
            let (exits, _) = agree(&flat(&code), 1000);
            let (kind, eip) = last_exception(&exits);
            assert_eq!((kind, eip), (ExceptionKind::Memory, 0x100B + 5 * prefix + 4 * k));
        }
    }
}

/// REP STOS (dword, byte, word; ECX from 0 to 148; a value that is not one repeated byte)
/// inside a translated loop, under every budget slice: the iterations retire one by one, so a
/// slice may end inside one (the JIT then leaves it to the interpreter).
#[test]
fn rep_stos_in_translated_code_counts_every_iteration() {
    let code = [
        0xBB, 0x04, 0x00, 0x00, 0x00, // 0x1000 mov ebx, 4
        0xBF, 0x00, 0x30, 0x00, 0x00, // 0x1005 l: mov edi, 0x3000
        0x6B, 0xCB, 0x25, // imul ecx, ebx, 37
        0xB8, 0x78, 0x56, 0x34, 0x12, // mov eax, 0x12345678
        0xF3, 0xAB, // rep stosd
        0x03, 0x05, 0x00, 0x30, 0x00, 0x00, // add eax, [0x3000]
        0x89, 0xD9, // mov ecx, ebx
        0xF3, 0xAA, // rep stosb
        0xB9, 0x00, 0x00, 0x00, 0x00, // mov ecx, 0
        0xF3, 0xAB, // rep stosd (ECX = 0: retires once)
        0x8D, 0x4B, 0x03, // lea ecx, [ebx+3]
        0x66, 0xF3, 0xAB, // rep stosw
        0x4B, // dec ebx
        0x75, 0xD7, // jnz l
        0xCD, 0xD0, // terminate
    ];
    let (exits, stats) = agree(&flat(&code), 100_000);
    assert!(terminated(&exits), "{exits:?}");
    assert!(stats.interpreted < 20, "{stats:?}");
}

/// With DF set (STD, which the interpreter runs) a translated REP STOS leaves it to the
/// interpreter, which stores downwards; and one that would overwrite cached code (here the
/// first instruction of its own loop, `inc esi` patched to `inc edi`) leaves the store to the
/// interpreter, which drops that code, so the new instruction runs on the next pass.
#[test]
fn rep_stos_backwards_or_over_code_is_the_interpreters() {
    let backwards = [
        0xFD, // std
        0xBF, 0x00, 0x31, 0x00, 0x00, // mov edi, 0x3100
        0xB9, 0x05, 0x00, 0x00, 0x00, // mov ecx, 5
        0xB8, 0x78, 0x56, 0x34, 0x12, // mov eax, 0x12345678
        0xF3, 0xAB, // rep stosd
        0xFC, // cld
        0xCD, 0xD0, // terminate
    ];
    let (exits, _) = agree(&flat(&backwards), 1000);
    assert!(terminated(&exits), "{exits:?}");
    let over_code = [
        0xBB, 0x02, 0x00, 0x00, 0x00, // 0x1000 mov ebx, 2
        0x46, // 0x1005 l: inc esi, becomes inc edi
        0xBF, 0x05, 0x10, 0x00, 0x00, // 0x1006 mov edi, 0x1005
        0xB9, 0x01, 0x00, 0x00, 0x00, // 0x100B mov ecx, 1
        0xB0, 0x47, // 0x1010 mov al, 0x47
        0xF3, 0xAA, // 0x1012 rep stosb
        0x4B, // 0x1014 dec ebx
        0x75, 0xEE, // 0x1015 jnz l
        0xCD, 0xD0, // terminate
    ];
    let (exits, _) = agree(&flat(&over_code), 1000);
    assert!(terminated(&exits), "{exits:?}");
}

/// Quanta of two instructions stop at the same loop head every time, so the runtime enters the
/// same block at every quantum (and may remember it between quanta); a write to that block's
/// code between two quanta (by the kernel, say) must take effect in the very next quantum.
#[test]
fn a_write_to_the_block_every_quantum_starts_at_takes_effect_in_the_next() {
    use denali_engine::Engine;
    for tiered in [false, true] {
        let mut mem = GuestMemory::new(MEM).unwrap();
        mem.write(0x1000, &[0x40, 0xEB, 0xFD]).unwrap(); // 0x1000 L: inc eax; jmp L
        let mut cpu = Cpu::new(0x1000, mem.size());
        let mut jit =
            if tiered { denali_jit::Jit::tiered(denali_engine::SharedCode::new()) } else { denali_jit::Jit::new() }
                .expect("the tests run on hosts with the JIT");
        let quanta = 2 * denali_jit::TIER_UP;
        for _ in 0..quanta {
            assert_eq!(jit.run(&mut cpu, &mut mem, 2), Exit::BudgetExhausted);
        }
        assert_eq!((cpu.eip, cpu.regs[0]), (0x1000, quanta));
        assert!(jit.stats().translations > 0, "{:?}", jit.stats());
        mem.write(0x1000, &[0x43]).unwrap(); // inc ebx
        assert_eq!(jit.run(&mut cpu, &mut mem, 2), Exit::BudgetExhausted);
        assert_eq!((cpu.regs[0], cpu.regs[3]), (quanta, 1), "tiered: {tiered}");
    }
}
