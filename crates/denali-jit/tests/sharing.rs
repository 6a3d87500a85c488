//! Translations shared by a fleet's JITs (`Jit::sharing`): a VM runs a block another VM
//! translated without translating it, only where its own memory holds the same bytes for the
//! same memory size, and a VM that rewrites its code runs its new code while the others run
//! the original; under every engine the guest sees what the interpreter gives it.

#![cfg(target_arch = "x86_64")]

mod common;

use common::run;
use denali_engine::{Cpu, Exit, GuestMemory, Interpreter, SharedCode};
use denali_jit::{Jit, JitStats, SharedJit};
use std::sync::Arc;

const MEM: u64 = 0x10_0000;

/// `add eax, 3; ret` at 0x2000 (F), called 300 times from a loop, then, when `rewrite`, its
/// `add` rewritten into `sub` (so F gives back what it added), then called 300 times again;
/// terminates with EAX = 1800 (or 0 when rewritten). Without `rewrite` a 7-byte NOP stands
/// where the store is, so the two programs differ only in the bytes of that instruction.
fn program(rewrite: bool) -> impl Fn(&mut GuestMemory) -> Cpu {
    move |mem: &mut GuestMemory| {
        let store: [u8; 7] =
            if rewrite { [0xC6, 0x05, 0x00, 0x20, 0x00, 0x00, 0x2D] } else { [0x0F, 0x1F, 0x80, 0, 0, 0, 0] };
        let mut code = vec![
            0xB9, 0x2C, 0x01, 0x00, 0x00, // 0x1000 mov ecx, 300
            0xE8, 0xF6, 0x0F, 0x00, 0x00, // 0x1005 L1: call F
            0x49, // 0x100A dec ecx
            0x75, 0xF8, // 0x100B jnz L1
        ];
        code.extend_from_slice(&store); // 0x100D mov byte [F], 0x2D (sub eax, imm32), or nop
        code.extend_from_slice(&[
            0xB9, 0x2C, 0x01, 0x00, 0x00, // 0x1014 mov ecx, 300
            0xE8, 0xE2, 0x0F, 0x00, 0x00, // 0x1019 L2: call F
            0x49, // 0x101E dec ecx
            0x75, 0xF8, // 0x101F jnz L2
            0xCD, 0xD0, // 0x1021 terminate
        ]);
        mem.write(0x1000, &code).unwrap();
        mem.write(0x2000, &[0x05, 0x03, 0x00, 0x00, 0x00, 0xC3]).unwrap(); // F: add eax, 3; ret
        Cpu::new(0x1000, mem.size())
    }
}

/// `mov ecx, n; L: add eax, ecx; xor ebx, eax; dec ecx; jnz L; terminate`.
fn counted_loop(mem: &mut GuestMemory) -> Cpu {
    let mut code = vec![0xB9];
    code.extend_from_slice(&1000u32.to_le_bytes());
    code.extend_from_slice(&[0x01, 0xC8, 0x31, 0xC3, 0x49, 0x75, 0xF9, 0xCD, 0xD0]);
    mem.write(0x1000, &code).unwrap();
    Cpu::new(0x1000, mem.size())
}

/// Runs the guest `setup` builds on `jit` (in slices of `slice`) and on the interpreter,
/// asserts they agree, and returns the JIT's exits and statistics.
fn agree(jit: &mut Jit, mem_size: u64, setup: &dyn Fn(&mut GuestMemory) -> Cpu, slice: u64) -> (Vec<Exit>, JitStats) {
    let mut mem_i = GuestMemory::new(mem_size).unwrap();
    let cpu = setup(&mut mem_i);
    let want = run(&mut Interpreter::new(), cpu, &mut mem_i, slice, 1_000_000);
    let mut mem = GuestMemory::new(mem_size).unwrap();
    let cpu = setup(&mut mem);
    let got = run(jit, cpu, &mut mem, slice, 1_000_000);
    assert_eq!(got, want, "shared JIT (left) differs from the interpreter (right), slice {slice}");
    (got.exits, jit.stats())
}

fn fleet() -> (Arc<SharedCode>, Arc<SharedJit>) {
    (SharedCode::new(), SharedJit::new())
}

fn vm((code, jit): &(Arc<SharedCode>, Arc<SharedJit>)) -> Jit {
    Jit::sharing(Arc::clone(code), Arc::clone(jit)).expect("x86-64 host with BMI2")
}

fn terminated(exits: &[Exit], status: u32) -> bool {
    matches!(exits.last(), Some(Exit::Terminate { status: s, .. }) if *s == status)
}

#[test]
fn a_second_vm_runs_what_the_first_translated_without_translating() {
    for slice in [1, 7, 1000, u64::MAX] {
        let group = fleet();
        let (exits, first) = agree(&mut vm(&group), MEM, &program(false), slice);
        assert!(terminated(&exits, 1800), "{exits:?}");
        assert!(first.translations >= 2, "slice {slice}: {first:?}");
        assert_eq!(first.shared_hits, 0, "slice {slice}: {first:?}");
        let published = group.1.blocks();
        assert_eq!(published as u64, first.translations, "slice {slice}");
        let (exits, second) = agree(&mut vm(&group), MEM, &program(false), slice);
        assert!(terminated(&exits, 1800), "{exits:?}");
        // Short slices stop it at other places than the first (it runs translated code
        // sooner): a few other blocks may get hot there.
        assert!(second.shared_hits >= 2 * second.translations.max(1), "slice {slice}: {second:?}");
        if slice >= 1000 {
            assert_eq!(second.translations, 0, "slice {slice}: {second:?}");
            assert_eq!(group.1.blocks(), published, "slice {slice}");
        }
        assert!(second.block_runs > 500, "slice {slice}: {second:?}");
    }
}

#[test]
fn a_vm_that_rewrites_shared_code_runs_its_new_code_and_the_others_the_original() {
    for slice in [1, 7, 1000, u64::MAX] {
        let group = fleet();
        let (_, first) = agree(&mut vm(&group), MEM, &program(false), slice);
        assert!(first.translations >= 2, "slice {slice}: {first:?}");
        // F is shared; this VM takes it, rewrites its `add` into `sub` and calls it again: a
        // run of the shared translation of the old bytes would end with 1800, not 0.
        let (exits, wrote) = agree(&mut vm(&group), MEM, &program(true), slice);
        assert!(terminated(&exits, 0), "slice {slice}: {exits:?}");
        assert!(wrote.shared_hits >= 1, "slice {slice}: {wrote:?}");
        assert!(wrote.invalidations >= 1, "slice {slice}: {wrote:?}");
        // Another VM still runs the original F, shared.
        let (exits, other) = agree(&mut vm(&group), MEM, &program(false), slice);
        assert!(terminated(&exits, 1800), "slice {slice}: {exits:?}");
        assert!(other.shared_hits >= 2 * other.translations.max(1), "slice {slice}: {other:?}");
        // And a second writer, which may take the rewritten F the first one published.
        let (exits, _) = agree(&mut vm(&group), MEM, &program(true), slice);
        assert!(terminated(&exits, 0), "slice {slice}: {exits:?}");
    }
}

#[test]
fn other_bytes_or_another_memory_size_do_not_take_a_shared_translation() {
    for slice in [1, 1000, u64::MAX] {
        let group = fleet();
        let (_, first) = agree(&mut vm(&group), MEM, &program(false), slice);
        assert!(first.translations >= 2, "{first:?}");
        // Another program at the same addresses: its loop at 0x1005 has other bytes.
        let (exits, other) = agree(&mut vm(&group), MEM, &counted_loop, slice);
        assert!(matches!(exits.last(), Some(Exit::Terminate { .. })), "{exits:?}");
        assert_eq!(other.shared_hits, 0, "slice {slice}: {other:?}");
        assert!(other.translations >= 1, "slice {slice}: {other:?}");
        // The same program in a memory of another size: its bounds checks differ.
        let (exits, bigger) = agree(&mut vm(&group), 2 * MEM, &program(false), slice);
        assert!(terminated(&exits, 1800), "{exits:?}");
        assert_eq!(bigger.shared_hits, 0, "slice {slice}: {bigger:?}");
        assert!(bigger.translations >= 2, "slice {slice}: {bigger:?}");
        // Each published its own variants; a VM of the first kind still takes the first's.
        let (_, again) = agree(&mut vm(&group), MEM, &program(false), slice);
        assert!(again.shared_hits >= 2 * again.translations.max(1), "slice {slice}: {again:?}");
    }
}

/// Many VMs of a few programs (one of which rewrites its code) on several threads at once,
/// each with its own memory, all sharing one cache: each ends as under the interpreter.
#[test]
fn vms_on_several_threads_share_translations_and_agree_with_the_interpreter() {
    let group = fleet();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let group = &group;
            s.spawn(move || {
                for i in 0..6u64 {
                    let rewrite = (t + i) % 3 == 0;
                    let slice = [1, 5, 64, 1000][usize::try_from((t * 7 + i) % 4).unwrap()];
                    let (exits, _) = agree(&mut vm(group), MEM, &program(rewrite), slice);
                    assert!(terminated(&exits, if rewrite { 0 } else { 1800 }), "{exits:?}");
                }
            });
        }
    });
    assert!(group.1.blocks() >= 2);
}

/// A loop that jumps to F (`add eax, k; jmp back`, at 0x2000): the loop's blocks are the same
/// for every `k`, F is not.
fn jump_loop(k: u32) -> impl Fn(&mut GuestMemory) -> Cpu {
    move |mem: &mut GuestMemory| {
        mem.write(
            0x1000,
            &[
                0xB9, 0x2C, 0x01, 0x00, 0x00, // 0x1000 mov ecx, 300
                0xE9, 0xF6, 0x0F, 0x00, 0x00, // 0x1005 L: jmp F
                0x49, // 0x100A B: dec ecx
                0x75, 0xF8, // 0x100B jnz L
                0xCD, 0xD0, // 0x100D terminate
            ],
        )
        .unwrap();
        let mut f = vec![0x05];
        f.extend_from_slice(&k.to_le_bytes()); // 0x2000 add eax, k
        f.extend_from_slice(&[0xE9, 0x00, 0xF0, 0xFF, 0xFF]); // 0x2005 jmp B
        mem.write(0x2000, &f).unwrap();
        Cpu::new(0x1000, mem.size())
    }
}

/// Once an address holds as many variants as are kept, a VM with yet other bytes there keeps
/// its translation to itself, and that private block's direct exit into a shared block goes
/// through the chaining table (a rel32 between the arenas would land anywhere).
#[test]
fn a_block_that_cannot_be_shared_stays_private_and_reaches_shared_code_through_the_table() {
    for slice in [1, 7, u64::MAX] {
        let group = fleet();
        for k in 1..=4 {
            let (exits, _) = agree(&mut vm(&group), MEM, &jump_loop(k), slice);
            assert!(terminated(&exits, 300 * k), "slice {slice}: {exits:?}");
        }
        let published = group.1.blocks();
        let (exits, fifth) = agree(&mut vm(&group), MEM, &jump_loop(5), slice);
        assert!(terminated(&exits, 1500), "slice {slice}: {exits:?}");
        // Its F is its own; the loop's blocks are the fleet's.
        assert_eq!(group.1.blocks(), published, "slice {slice}");
        assert!(fifth.translations >= 1, "slice {slice}: {fifth:?}");
        assert!(fifth.shared_hits >= 1, "slice {slice}: {fifth:?}");
        if slice > 1 {
            assert!(fifth.chain_hits > 100, "slice {slice}: {fifth:?}");
        }
    }
}

/// Shared translations are checked-mode code: guard-region code has fault sites only its own
/// JIT's handler knows, so a JIT on a guarded memory publishes nothing; nor does it take a
/// shared block (correct there, but slower than its own translation).
#[cfg(target_os = "linux")]
#[test]
fn a_jit_on_a_guarded_memory_neither_takes_nor_publishes_shared_blocks() {
    let on_guarded = |jit: &mut Jit| {
        let mut mem = GuestMemory::guarded(MEM).expect("a 4 GiB reservation on a 64-bit host");
        let cpu = counted_loop(&mut mem);
        let mut mem_i = GuestMemory::new(MEM).unwrap();
        let want = run(&mut Interpreter::new(), counted_loop(&mut mem_i), &mut mem_i, 1000, 1_000_000);
        assert_eq!(run(jit, cpu, &mut mem, 1000, 1_000_000), want);
        jit.stats()
    };
    let fleet = fleet();
    let published = on_guarded(&mut vm(&fleet));
    assert!(published.translations > 0, "{published:?}");
    assert_eq!(fleet.1.blocks(), 0, "a guarded JIT published its blocks");
    // A checked VM publishes the loop; a guarded one still translates its own.
    let (_, checked) = agree(&mut vm(&fleet), MEM, &counted_loop, 1000);
    assert!(fleet.1.blocks() > 0, "{checked:?}");
    let taken = on_guarded(&mut vm(&fleet));
    assert_eq!(taken.shared_hits, 0, "{taken:?}");
    assert!(taken.translations > 0, "{taken:?}");
}
