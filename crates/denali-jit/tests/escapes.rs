//! Guests that try to leave their memory, or to run code that was not validated, are contained
//! with the exception the interpreter raises, in the same state: the JIT in its checked mode
//! and in guard-region mode (a guarded memory; `common::same` runs both and compares each
//! with the interpreter: registers, flags, EIP, instruction count, exits and memory).

#![cfg(target_arch = "x86_64")]

mod common;

use common::{each, flat, same};
use denali_engine::{Cpu, Exception, ExceptionKind, Exit, GuestMemory};

const MEM: u64 = 0x10_0000;

fn fault(code: &[u8], kind: ExceptionKind) -> Exception {
    fault_in(&flat(code), kind, u64::MAX).0
}

/// Runs `setup` under `slice`, expects the exception `kind` (the same in every mode), and
/// returns it with the number of guest faults the handler resumed in the guarded run that
/// resumed fewest (0 without a guarded mode on this host).
fn fault_in(setup: &dyn Fn(&mut GuestMemory) -> Cpu, kind: ExceptionKind, slice: u64) -> (Exception, u64) {
    let (want, runs) = each(MEM, setup, slice, 1_000_000);
    let mut resumed = u64::MAX;
    for (mode, got, jit) in runs {
        assert_eq!(got, want, "JIT (left, {mode} mode) differs from the interpreter (right)");
        if mode.starts_with("guarded") {
            // The fewest of the guarded modes'.
            resumed = resumed.min(jit.stats().guard_faults);
        } else {
            assert_eq!(jit.stats().guard_faults, 0);
        }
    }
    let resumed = if resumed == u64::MAX { 0 } else { resumed };
    match want.exits.last() {
        Some(Exit::Exception(e)) if e.kind == kind => (*e, resumed),
        other => panic!("expected a {kind} exception, got {other:?}"),
    }
}

/// Asserts that the guarded run resumed a guest fault from generated code (the access was
/// translated and not checked inline), where this host has the mode.
fn resumed_by_the_guard(resumed: u64) {
    if cfg!(target_os = "linux") {
        assert!(resumed > 0, "no guest fault reached the handler");
    }
}

/// A flat guest with `code` at 0x1000 and the registers `regs` (EAX..EDI order) and flags.
fn with_regs(code: &[u8], regs: [u32; 8], eflags: u32) -> impl Fn(&mut GuestMemory) -> Cpu + '_ {
    move |mem: &mut GuestMemory| {
        mem.write(0x1000, code).unwrap();
        let mut cpu = Cpu::new(0x1000, regs[4]);
        cpu.regs = regs;
        cpu.eflags = eflags;
        cpu
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
    let (e, resumed) = fault_in(&flat(&code), ExceptionKind::Invalid, u64::MAX);
    assert_eq!(e.eip, 0x1005);
    // Guarded, the translated store found the code by faulting on its protected page.
    resumed_by_the_guard(resumed);
    // The same with a harmless patch (inc eax -> inc ebx) runs the new code.
    let mut patched = code;
    patched[15] = 0x43;
    let (run, jit) = same(MEM, &flat(&patched), u64::MAX, 60);
    assert!(jit.stats().invalidations > 0, "{:?}", jit.stats());
    assert_eq!(run.cpu.instructions, 60);
}

#[test]
fn guarded_loads_and_stores_outside_memory_resume_precisely() {
    // mov eax, 1; mov ebx, [0x100000]: the load faults in generated code.
    let (e, n) =
        fault_in(&flat(&[0xB8, 1, 0, 0, 0, 0x8B, 0x1D, 0x00, 0x00, 0x10, 0x00]), ExceptionKind::Memory, u64::MAX);
    assert_eq!((e.eip, e.addr), (0x1005, 0x10_0000));
    resumed_by_the_guard(n);
    // A store straddling the end: nothing of it lands (memory compared).
    // mov eax, 0xFFFFE; mov ebx, 0x11223344; mov [eax], ebx
    let code = [0xB8, 0xFE, 0xFF, 0x0F, 0x00, 0xBB, 0x44, 0x33, 0x22, 0x11, 0x89, 0x18];
    let (e, n) = fault_in(&flat(&code), ExceptionKind::Memory, u64::MAX);
    assert_eq!((e.eip, e.addr), (0x100A, 0x10_0000));
    resumed_by_the_guard(n);
    // A read-modify-write straddling the end: add [eax], ebx after a flag-setting add.
    let code = [0xB8, 0xFE, 0xFF, 0x0F, 0x00, 0x83, 0xC3, 0xFF, 0x01, 0x18];
    let (e, n) = fault_in(&flat(&code), ExceptionKind::Memory, u64::MAX);
    assert_eq!(e.eip, 0x1008);
    resumed_by_the_guard(n);
    // The highest addresses: a dword at 0xFFFFFFFF reaches 3 bytes past 4 GiB (the high
    // guard). mov esi, -1; mov eax, [esi]; and a byte store at 0xFFFFFFFF.
    let (e, n) = fault_in(&flat(&[0xBE, 0xFF, 0xFF, 0xFF, 0xFF, 0x8B, 0x06]), ExceptionKind::Memory, u64::MAX);
    assert_eq!((e.eip, e.addr), (0x1005, 0xFFFF_FFFF));
    resumed_by_the_guard(n);
    let (_, n) = fault_in(&flat(&[0xBE, 0xFF, 0xFF, 0xFF, 0xFF, 0x88, 0x06]), ExceptionKind::Memory, u64::MAX);
    resumed_by_the_guard(n);
    // Huge displacement wrapping at 4 GiB to just below memory's end... and to 0 - 4.
    // mov esi, 0x2000; mov ecx, [esi-0x2004] (0xFFFFFFFC)
    let (e, n) =
        fault_in(&flat(&[0xBE, 0x00, 0x20, 0, 0, 0x8B, 0x8E, 0xFC, 0xDF, 0xFF, 0xFF]), ExceptionKind::Memory, u64::MAX);
    assert_eq!((e.eip, e.addr), (0x1005, 0xFFFF_FFFC));
    resumed_by_the_guard(n);
    // Indirect jumps and calls through memory outside it: jmp [0x7000_0000]; call [ebx+8].
    let (_, n) = fault_in(&flat(&[0xFF, 0x25, 0, 0, 0, 0x70]), ExceptionKind::Memory, u64::MAX);
    resumed_by_the_guard(n);
    let (_, n) = fault_in(
        &with_regs(&[0xFF, 0x53, 0x08], [0, 0, 0, 0xFFFF_FFF0, 0x8000, 0, 0, 0], 0x2),
        ExceptionKind::Memory,
        u64::MAX,
    );
    resumed_by_the_guard(n);
}

#[test]
fn guarded_stack_accesses_at_both_ends_of_the_address_space_resume_precisely() {
    // ESP below 4: the slot lies below guest address 0 in the host (the low guard).
    for esp in [0, 1, 2, 3] {
        // push ebx; push 7; call; with distinct registers and flags.
        for code in [&[0x53][..], &[0x6A, 0x07], &[0xE8, 0, 0, 0, 0]] {
            let regs = [1, 2, 3, 4, esp, 6, 7, 8];
            let (e, n) = fault_in(&with_regs(code, regs, 0x8D7), ExceptionKind::Memory, u64::MAX);
            assert_eq!(e.eip, 0x1000);
            resumed_by_the_guard(n);
        }
    }
    // ESP near 4 GiB: pop and ret read up to 3 bytes past 2^32 (the high guard).
    for esp in [0xFFFF_FFFC, 0xFFFF_FFFD, 0xFFFF_FFFF, 0xFFFF_F000] {
        for code in [&[0x58][..], &[0xC3], &[0x5C], &[0xC2, 0x08, 0x00]] {
            let regs = [1, 2, 3, 4, esp, 6, 7, 8];
            let (e, n) = fault_in(&with_regs(code, regs, 0x8D7), ExceptionKind::Memory, u64::MAX);
            assert_eq!(e.eip, 0x1000);
            resumed_by_the_guard(n);
        }
    }
}

/// A fault in a block entered by chaining (a loop walking off the end of memory), under
/// several budget slices, and in the middle of a block after instructions whose flag fixups
/// were deferred to its exits (SHR, then IMUL, then a faulting access): registers, flags,
/// EIP and count are the interpreter's.
#[test]
fn guarded_faults_in_chained_blocks_and_after_deferred_fixups_are_exact() {
    // mov esi, 0xFF000; l: add eax, [esi]; add esi, 4; cmp esi, 0 ; jne l2 ; l2: jmp l
    let code = [
        0xBE, 0x00, 0xF0, 0x0F, 0x00, // mov esi, 0xFF000
        0x03, 0x06, // l: add eax, [esi]
        0x83, 0xC6, 0x04, // add esi, 4
        0x83, 0xFE, 0x00, // cmp esi, 0
        0x75, 0x00, // jne l2 (a block boundary)
        0xEB, 0xF4, // l2: jmp l
    ];
    for slice in [u64::MAX, 1000, 7, 1] {
        let (e, n) = fault_in(&flat(&code), ExceptionKind::Memory, slice);
        assert_eq!((e.eip, e.addr), (0x1005, 0x10_0000));
        if slice > 7 {
            resumed_by_the_guard(n);
        }
    }
    // mov eax, 0x80000001; mov edx, 3; shr eax, 1 (OF = 1 from the original operand, fixed
    // at exits only); imul edx, eax (SF ZF PF fixed at exits only); mov ecx, [eax*2 + 0x1000]
    // (0x1000 + 0x80000000: outside) overwrites nothing before it faults.
    let code = [
        0xB8, 0x01, 0x00, 0x00, 0x80, // mov eax, 0x80000001
        0xBA, 0x03, 0x00, 0x00, 0x00, // mov edx, 3
        0xD1, 0xE8, // shr eax, 1
        0x8B, 0x0C, 0x45, 0x00, 0x10, 0x00, 0x00, // mov ecx, [eax*2 + 0x1000]
        0x0F, 0xAF, 0xD0, // imul edx, eax
        0x8B, 0x1C, 0x45, 0x00, 0x10, 0x00, 0x00, // mov ebx, [eax*2 + 0x1000]
        0x31, 0xC0, // xor eax, eax (overwrites the flags)
        0xCD, 0xD0,
    ];
    let (e, n) = fault_in(&flat(&code), ExceptionKind::Memory, u64::MAX);
    assert_eq!(e.eip, 0x100C);
    resumed_by_the_guard(n);
    // The same with the first access in memory: the fault is at the second, after IMUL.
    let mut later = code;
    later[1] = 0x00; // mov eax, 0x80000000: shr gives 0x40000000, [eax*2+0x1000] = 0x80001000
    later[15] = 0x00;
    later[16] = 0x00;
    later[17] = 0x00;
    later[18] = 0x80; // mov ecx, [eax*2 - 0x80000000] = 0
    let (e, n) = fault_in(&flat(&later), ExceptionKind::Memory, u64::MAX);
    assert_eq!(e.eip, 0x1016);
    resumed_by_the_guard(n);
}

#[test]
fn guarded_shifts_of_memory_by_cl_keep_their_check() {
    // xor ecx, ecx; shl dword [0x200000], cl (a zero count skips the host instruction, so
    // its bounds are checked inline), then with a count of 3.
    for count in [0u8, 3] {
        let code = [0xB1, count, 0xD3, 0x25, 0x00, 0x00, 0x20, 0x00, 0xCD, 0xD0];
        let (want, runs) = each(MEM, &flat(&code), u64::MAX, 100);
        for (mode, got, _) in runs {
            assert_eq!(got, want, "{mode}");
        }
    }
}

/// Several threads fault in their own guarded guests at once: each handler invocation finds
/// the arena its own thread runs (a thread-local), never another thread's.
#[test]
fn guarded_faults_on_several_threads_at_once_are_each_exact() {
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            std::thread::spawn(move || {
                for round in 0..25u8 {
                    // mov esi, 0xFF000 + t*4; l: add eax, [esi]; add esi, 4; jmp l (walks off
                    // the end of memory, in a loop of chained block entries).
                    let code = [0xBE, 4 * t, 0xF0, 0x0F, 0x00, 0x03, 0x06, 0x83, 0xC6, 0x04, 0xEB, 0xF9];
                    let slice = [u64::MAX, 1000, 13][usize::from(round % 3)];
                    let (e, n) = fault_in(&flat(&code), ExceptionKind::Memory, slice);
                    assert_eq!((e.eip, e.addr), (0x1005, 0x10_0000));
                    if slice > 13 {
                        resumed_by_the_guard(n);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Addresses whose 32-bit sum wraps at 4 GiB back into memory run in generated code as the
/// guest computes them: in guard-region mode no fault is resumed (an access through GS sums
/// with the address-size prefix, which wraps; a 64-bit sum would land past the memory).
#[test]
fn guarded_addresses_wrapping_into_memory_need_no_fault() {
    let code = [
        0xB8, 0x00, 0x00, 0xFF, 0xFF, // mov eax, 0xFFFF0000
        0xC7, 0x80, 0x00, 0x20, 0x01, 0x00, 0x55, 0x00, 0x00, 0x00, // mov dword [eax + 0x12000], 0x55 (0x2000)
        0x03, 0x88, 0x00, 0x20, 0x01, 0x00, // add ecx, [eax + 0x12000]
        0xBE, 0x00, 0x80, 0x00, 0x00, // mov esi, 0x8000
        0x8B, 0x14, 0xB5, 0x00, 0x80, 0xFE, 0xFF, // mov edx, [esi*4 + 0xFFFE8000] (0x8000)
        0xCD, 0xD0,
    ];
    let setup = |mem: &mut GuestMemory| {
        mem.write(0x8000, &0x1234_5678u32.to_le_bytes()).unwrap();
        flat(&code)(mem)
    };
    let (want, runs) = each(MEM, &setup, u64::MAX, 100);
    assert_eq!((want.cpu.regs[1], want.cpu.regs[2]), (0x55, 0x1234_5678));
    for (mode, got, jit) in runs {
        assert_eq!(got, want, "{mode}");
        assert_eq!(jit.stats().guard_faults, 0, "{mode}");
    }
}

/// Absolute addresses of 2^31 and more: a 32-bit displacement alone would be sign-extended
/// below memory (and below its reservation) if it were not formed as a 32-bit address.
#[test]
fn absolute_addresses_in_the_upper_half_fault_exactly() {
    for code in [
        [0x8B, 0x05, 0x00, 0x00, 0x00, 0x80], // mov eax, [0x80000000]
        [0x8B, 0x1D, 0xF0, 0xFF, 0xFF, 0xFF], // mov ebx, [0xFFFFFFF0]
        [0x01, 0x35, 0x00, 0x00, 0x00, 0xC0], // add [0xC0000000], esi
    ] {
        let e = fault(&code, ExceptionKind::Memory);
        assert_eq!(e.eip, 0x1000);
        assert!(e.addr >= 0x8000_0000, "{e:?}");
    }
}

/// Two guarded memories whose guests take turns on one thread, in short slices: each
/// translated block addresses its own memory (the GS base is set at every entry from the
/// runtime, not once per thread), so each ends as the interpreter leaves it.
#[test]
fn guarded_memories_taking_turns_on_one_thread_stay_apart() {
    // mov eax, k; mov ebx, 0x3000; xor ecx, ecx; l: mov [ebx + ecx*4], eax; add edx, [ebx + ecx*4];
    // add eax, 3; inc ecx; cmp ecx, 1000; jne l; int 0xD0
    let program = |k: u8| {
        vec![
            0xB8, k, 0, 0, 0, 0xBB, 0x00, 0x30, 0x00, 0x00, 0x31, 0xC9, 0x89, 0x04, 0x8B, 0x03, 0x14, 0x8B, 0x83, 0xC0,
            0x03, 0x41, 0x81, 0xF9, 0xE8, 0x03, 0x00, 0x00, 0x75, 0xEE, 0xCD, 0xD0,
        ]
    };
    let (a, b) = (program(1), program(200));
    let interpreted = |code: &[u8]| {
        let mut mem = GuestMemory::new(MEM).unwrap();
        let cpu = flat(code)(&mut mem);
        common::run(&mut denali_engine::Interpreter::new(), cpu, &mut mem, u64::MAX, 100_000)
    };
    let (want_a, want_b) = (interpreted(&a), interpreted(&b));
    for mode in ["guarded, lea", "guarded"] {
        let Ok(mut mem_a) = GuestMemory::guarded(MEM) else { return };
        let mut mem_b = GuestMemory::guarded(MEM).unwrap();
        let (mut cpu_a, mut cpu_b) = (flat(&a)(&mut mem_a), flat(&b)(&mut mem_b));
        let jit = || common::in_mode(mode, denali_jit::Jit::new().expect("x86-64 host with BMI2"));
        let (mut jit_a, mut jit_b) = (jit(), jit());
        use denali_engine::Engine;
        let mut ends = (None, None);
        while ends.0.is_none() || ends.1.is_none() {
            for (jit, cpu, mem, end) in
                [(&mut jit_a, &mut cpu_a, &mut mem_a, &mut ends.0), (&mut jit_b, &mut cpu_b, &mut mem_b, &mut ends.1)]
            {
                if end.is_none() {
                    let exit = jit.run(cpu, mem, 37);
                    if exit != Exit::BudgetExhausted {
                        *end = Some(exit);
                    }
                }
            }
        }
        for (name, want, cpu, mem, end) in
            [("a", &want_a, &cpu_a, &mem_a, ends.0), ("b", &want_b, &cpu_b, &mem_b, ends.1)]
        {
            assert_eq!(cpu, &want.cpu, "{mode}: guest {name}'s registers");
            assert_eq!(end.as_ref(), want.exits.last(), "{mode}: guest {name}'s exit");
            assert_eq!(common::digest(mem.as_slice()), want.memory, "{mode}: guest {name}'s memory");
        }
    }
}
