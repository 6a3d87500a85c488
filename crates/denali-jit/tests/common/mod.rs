//! Helpers shared by the JIT tests: run the same guest on the interpreter and on the JIT.

#![allow(dead_code, reason = "each test file uses a part")]

use denali_engine::{Cpu, Engine, Exit, GuestMemory, Interpreter};
use denali_jit::Jit;

/// The outcome of running a guest: the exits in order, the final CPU and a digest of memory.
#[derive(Debug, PartialEq, Eq)]
pub struct Run {
    pub exits: Vec<Exit>,
    pub cpu: Cpu,
    pub memory: u64,
}

pub fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// Runs `engine` from `cpu` in slices of `slice` instructions until a non-budget exit or
/// `limit` instructions, retiring I/O exits as the kernel would (IN reads 0); asserts that
/// each slice retires no more than its budget, and all of it when the budget is the exit.
pub fn run(engine: &mut dyn Engine, mut cpu: Cpu, mem: &mut GuestMemory, slice: u64, limit: u64) -> Run {
    let mut exits = Vec::new();
    while cpu.instructions < limit {
        let budget = slice.min(limit - cpu.instructions);
        let before = cpu.instructions;
        let exit = engine.run(&mut cpu, mem, budget);
        // The engine contract: never more than the budget, and all of it when it says so.
        let retired = cpu.instructions - before;
        assert!(retired <= budget, "retired {retired} of a budget of {budget}");
        assert!(exit != Exit::BudgetExhausted || retired == budget, "budget exhausted after {retired} of {budget}");
        match exit {
            Exit::BudgetExhausted => continue,
            Exit::PortOut { len, .. } => {
                exits.push(exit);
                cpu.retire(len);
            }
            Exit::PortIn { len, .. } => {
                exits.push(exit);
                cpu.regs[0] = 0;
                cpu.retire(len);
            }
            _ => {
                exits.push(exit);
                break;
            }
        }
    }
    Run { exits, cpu, memory: digest(mem.as_slice()) }
}

/// The memories the JIT runs on in the tests, by mode: the checked mode's, and where the host
/// has it a guarded one (guard-region mode) twice: `"guarded, lea"` (addresses formed by `lea`,
/// as on hosts that cannot set the GS base) and `"guarded"` (as `denali run` gives it).
pub fn memories(mem_size: u64) -> Vec<(&'static str, GuestMemory)> {
    let mut out = vec![("checked", GuestMemory::new(mem_size).unwrap())];
    if cfg!(target_os = "linux") {
        for mode in ["guarded, lea", "guarded"] {
            out.push((mode, GuestMemory::guarded(mem_size).expect("a guarded memory on Linux x86-64")));
        }
    }
    out
}

/// Sets `jit` up for `mode` (of [`memories`]).
pub fn in_mode(mode: &str, mut jit: Jit) -> Jit {
    jit.set_segment_addressing(mode != "guarded, lea");
    jit
}

/// Runs the guest that `setup` builds on the interpreter and on the JIT in each mode
/// ([`memories`]) and returns the interpreter's outcome and the JIT's of each mode (the memories
/// must be equal), the guarded one last.
pub fn each(
    mem_size: u64,
    setup: &dyn Fn(&mut GuestMemory) -> Cpu,
    slice: u64,
    limit: u64,
) -> (Run, Vec<(&'static str, Run, Jit)>) {
    let mut mem_i = GuestMemory::new(mem_size).unwrap();
    let cpu = setup(&mut mem_i);
    let want = run(&mut Interpreter::new(), cpu, &mut mem_i, slice, limit);
    let mut out = Vec::new();
    for (mode, mut mem) in memories(mem_size) {
        let cpu = setup(&mut mem);
        let mut jit = in_mode(mode, Jit::new().expect("x86-64 host with BMI2"));
        let got = run(&mut jit, cpu, &mut mem, slice, limit);
        if let Some(at) = mem.as_slice().iter().zip(mem_i.as_slice()).position(|(a, b)| a != b) {
            let (a, b) = (&mem.as_slice()[at..at + 8], &mem_i.as_slice()[at..at + 8]);
            panic!("{mode}: memory differs at {at:#x}: JIT {a:02x?}, interpreter {b:02x?}; {got:?}");
        }
        out.push((mode, got, jit));
    }
    (want, out)
}

/// Runs the guest that `setup` builds on both engines (the JIT in each mode) and returns the
/// interpreter's outcome and the JIT's last (guarded where the host has it).
pub fn both(mem_size: u64, setup: &dyn Fn(&mut GuestMemory) -> Cpu, slice: u64, limit: u64) -> (Run, Run, Jit) {
    let (want, mut runs) = each(mem_size, setup, slice, limit);
    let (_, got, jit) = runs.pop().expect("at least the checked mode");
    (want, got, jit)
}

/// Asserts that the JIT, in each mode, and the interpreter agree on the guest `setup` builds;
/// returns the JIT's run (guarded where the host has it).
pub fn same(mem_size: u64, setup: &dyn Fn(&mut GuestMemory) -> Cpu, slice: u64, limit: u64) -> (Run, Jit) {
    let (want, runs) = each(mem_size, setup, slice, limit);
    let mut last = None;
    for (mode, got, jit) in runs {
        assert_eq!(got, want, "JIT (left, {mode} mode) differs from the interpreter (right)");
        last = Some((got, jit));
    }
    last.expect("at least the checked mode")
}

/// A flat guest: `code` at 0x1000, stack at the top of memory.
pub fn flat(code: &[u8]) -> impl Fn(&mut GuestMemory) -> Cpu + '_ {
    move |mem: &mut GuestMemory| {
        mem.write(0x1000, code).unwrap();
        Cpu::new(0x1000, mem.size())
    }
}

/// A guest that translates the function at 0x3000 (`inc eax; nop; ret`) by calling it, then
/// stores a dword at 0x2FFE that starts on a page without code and ends on the function's,
/// writing `cli` at 0x3000, and calls it again: the store must drop the cached code.
pub fn straddling_store_into_code(mem: &mut GuestMemory) -> Cpu {
    mem.write(
        0x1000,
        &[
            0xE8, 0xFB, 0x1F, 0x00, 0x00, // 0x1000 call 0x3000 (translates it)
            0xB8, 0x00, 0x00, 0xFA, 0x90, // 0x1005 mov eax, 0x90FA0000
            0xBB, 0xFE, 0x2F, 0x00, 0x00, // 0x100A mov ebx, 0x2FFE
            0x89, 0x03, // 0x100F mov [ebx], eax: cli at 0x3000
            0xE8, 0xEA, 0x1F, 0x00, 0x00, // 0x1011 call 0x3000
            0xCD, 0xD0, // 0x1016 terminate
        ],
    )
    .unwrap();
    mem.write(0x3000, &[0x40, 0x90, 0xC3]).unwrap(); // inc eax; nop; ret
    Cpu::new(0x1000, mem.size())
}
