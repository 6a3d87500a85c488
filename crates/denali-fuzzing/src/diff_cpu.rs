//! Live differential testing against the host CPU: random straight-line blocks of subset
//! instructions, with random registers, flags and memory, run natively by the conformance
//! oracle and by every engine the host has (the interpreter, and the JIT on x86-64); registers, EIP, the defined flags, memory and the way the
//! block ended must agree.

use denali_conformance::case::{Case, Expected, MEMORY_SIZE, Region, Stop, Vector};
use denali_conformance::generate::{CODE_PAGE, CODE_PAGE_SIZE, Rng, block, block_forms};
use denali_conformance::oracle::{HELPER_BASE, HELPER_END, Oracle, OracleError};
use denali_conformance::runner::{Difference, Ending, Mismatch, NewMemory, run_vector_in};
use denali_engine::{Cpu, Engine, Exit, GuestMemory, Interpreter};
use iced_x86::Code;

/// What one comparison found.
#[derive(Debug)]
pub enum Verdict {
    Agreed,
    /// The CPU could not run the block (it looped past the timeout, touched the lowest 64 KiB
    /// that the native process cannot map, ...): no verdict.
    Skipped(String),
    /// An engine (named) and the CPU disagree: a bug.
    Diverged(&'static str, Box<Mismatch>),
}

/// The CPU side and the block generator, set up once.
pub struct DiffCpu {
    oracle: Oracle,
    forms: Vec<Code>,
}

impl DiffCpu {
    /// `Err` with the reason when the host CPU cannot serve as the oracle (another OS or
    /// architecture, or a kernel without 32-bit support).
    pub fn new() -> Result<DiffCpu, String> {
        match Oracle::start() {
            Ok(oracle) => Ok(DiffCpu { oracle, forms: block_forms() }),
            Err(OracleError::Unavailable(why)) => Err(why),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Builds the block of `len` instructions that `seed` selects and compares the two.
    pub fn check(&mut self, seed: u64, len: usize) -> Verdict {
        let mut rng = Rng::new(seed);
        let mut block = block(&self.forms, len, &mut rng);
        // Natively the rest of the code page is INT3; give the interpreter the same bytes, so a
        // block that reads its code page sees what the CPU sees.
        let case = &mut block.case;
        let code_end = case.init.eip + u32::try_from(case.code.len()).unwrap_or(0);
        for (start, end) in [(CODE_PAGE, case.init.eip), (code_end, CODE_PAGE + CODE_PAGE_SIZE)] {
            if start < end {
                case.memory.push(Region { addr: start, data: vec![0xCC; (end - start) as usize] });
            }
        }
        let observed = match self.oracle.run(&block.case) {
            Ok(o) => o,
            Err(e) => return Verdict::Skipped(e.to_string()),
        };
        // A stop leaves the flags of the instructions before the stopping one.
        let flags_mask = match observed.stop {
            Some(_) => block.flags_mask_at(observed.state.eip),
            None => block.final_flags_mask(),
        };
        let case = block.case;
        let expected =
            Expected { state: observed.state, final_memory: observed.memory, stop: observed.stop, flags_mask };
        let vector = Vector { case, expected };
        // Every engine this host has must agree with the CPU: the interpreter, and the JIT
        // where there is one, in each of its memory modes (checked; guard-region on a guarded
        // memory, where the host has those, with addresses formed through GS where the host
        // allows it and with `lea`, as elsewhere).
        let checked: &NewMemory = &GuestMemory::new;
        let guarded: &NewMemory = &GuestMemory::guarded;
        let mut engines: Vec<(&str, Box<dyn Engine>, &NewMemory)> =
            vec![("interp", Box::new(Interpreter::new()), checked)];
        if let Some(jit) = denali_jit::Jit::new() {
            engines.push(("jit", Box::new(jit), checked));
        }
        if let Some(jit) = denali_jit::Jit::new().filter(|_| guarded_memory_available()) {
            engines.push(("jit (guarded memory)", Box::new(jit), guarded));
        }
        if let Some(mut jit) = denali_jit::Jit::new().filter(|_| guarded_memory_available()) {
            jit.set_segment_addressing(false);
            engines.push(("jit (guarded memory, lea)", Box::new(jit), guarded));
        }
        for (name, mut engine, memory) in engines {
            match run_vector_in(engine.as_mut(), &vector, memory) {
                Ok(()) => {}
                Err(mismatch) if touched_the_oracle(&mismatch) => {
                    return Verdict::Skipped("the block reached the oracle's own pages, mapped only natively".into());
                }
                Err(mismatch) if partial_effects_before_a_fault(&mismatch) => {
                    return Verdict::Skipped("the CPU kept effects of a faulting instruction".into());
                }
                Err(mismatch) if wrote_its_code_page(&mismatch) => {
                    return Verdict::Skipped("the block stored into its own code page".into());
                }
                Err(mismatch) if enter_reads_its_own_pushes(&mismatch.vector.case) => {
                    return Verdict::Skipped("a nested ENTER read frame pointers it had just overwritten".into());
                }
                Err(mismatch) => return Verdict::Diverged(name, Box::new(mismatch)),
            }
        }
        Verdict::Agreed
    }
}

/// Whether this host can make guarded memories (asked once: each is a 4 GiB reservation).
fn guarded_memory_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| GuestMemory::guarded(u64::from(MEMORY_SIZE)).is_ok())
}

/// The native process has its own code and data at `HELPER_BASE..HELPER_END`, above guest
/// memory: an access there faults in Denali but not natively. Only the first instruction is
/// kept away from them by the oracle, so a later one may reach them.
fn touched_the_oracle(mismatch: &Mismatch) -> bool {
    mismatch.differences.iter().any(|d| {
        matches!(d, Difference::Ending { got: Ending::Stopped(Stop::Memory { addr }), .. }
            if (HELPER_BASE.saturating_sub(16)..HELPER_END).contains(addr))
    })
}

/// An instruction that makes several accesses and faults part-way: the CPU may keep the
/// stores it made before the fault (ENTER with a nesting level, PUSHAD) or even registers it
/// loaded (POPAD on AMD), while Denali's precise exceptions leave everything as it was
/// (`isa-spec/README.md` section 2). Both stopped with the same memory fault; only the partial
/// effects differ.
fn partial_effects_before_a_fault(mismatch: &Mismatch) -> bool {
    use iced_x86::Mnemonic;
    let vector = &mismatch.vector;
    if !matches!(vector.expected.stop, Some(Stop::Memory { .. })) {
        return false;
    }
    if mismatch.differences.iter().any(|d| matches!(d, Difference::Ending { .. } | Difference::Eip { .. })) {
        return false;
    }
    let only_memory = mismatch.differences.iter().all(|d| matches!(d, Difference::Memory { .. }));
    let offset = vector.expected.state.eip.wrapping_sub(vector.case.init.eip) as usize;
    let faulting = vector
        .case
        .code
        .get(offset..)
        .map(|bytes| denali_isa::validate::decoder(bytes, vector.expected.state.eip).decode().mnemonic());
    only_memory || matches!(faulting, Some(Mnemonic::Popad | Mnemonic::Popa | Mnemonic::Pushad | Mnemonic::Enter))
}

/// A block that stores into its own code page. Denali sees a store over the code at the next
/// instruction fetch, even between two iterations of a REP store (`isa-spec/README.md` 1.5); a
/// CPU may finish a string instruction first, at an iteration of its own choosing. That
/// difference is the spec's, not a bug. Whether Denali's run stored there is asked of guest
/// memory's code-write counter (the stored value may well be the INT3 already there); the
/// native run stored there if the page holds anything but INT3 afterwards.
fn wrote_its_code_page(mismatch: &Mismatch) -> bool {
    let code = CODE_PAGE..CODE_PAGE + CODE_PAGE_SIZE;
    let native_wrote = mismatch
        .vector
        .expected
        .final_memory
        .iter()
        .any(|r| code.contains(&r.addr) && r.data.iter().any(|&b| b != 0xCC));
    native_wrote || denali_stores_into_code_page(&mismatch.vector.case)
}

fn denali_stores_into_code_page(case: &Case) -> bool {
    let Some(mut replay) = Replay::new(case) else { return false };
    // Running decodes the block, which marks its page as code: every store there is counted.
    for _ in 0..64 {
        if !replay.step(1 << 20) {
            break;
        }
    }
    replay.memory.code_write_count() != 0
}

/// A nested ENTER (level 2 or more) copies frame pointers from `[EBP - 4]`, `[EBP - 8]`, ...
/// while pushing onto the stack at ESP; when the two ranges overlap (a stack pointer just above
/// or inside the frame chain), Denali reads each pointer after the pushes before it, in the
/// order of the architecture's definition (`isa-spec/README.md` section 2), while AMD CPUs
/// copy in an order of their own for larger levels. Replays the case in the interpreter, one
/// instruction at a time, and asks whether such an ENTER ran.
fn enter_reads_its_own_pushes(case: &Case) -> bool {
    let Some(mut replay) = Replay::new(case) else { return false };
    for _ in 0..64 {
        let cpu = &replay.cpu;
        let Some(bytes) = case.code.get(cpu.eip.wrapping_sub(case.init.eip) as usize..) else { return false };
        let instruction = denali_isa::validate::decoder(bytes, cpu.eip).decode();
        if instruction.code() == Code::Enterd_imm16_imm8 {
            let level = u64::from(instruction.immediate8_2nd() % 32);
            if level >= 2 {
                let (sp, bp) = (u64::from(cpu.regs[4]), u64::from(cpu.regs[5]));
                // Pushes cover [sp - 4 (level + 1), sp); reads [bp - 4 (level - 1), bp).
                let (push_start, read_start) = (sp.wrapping_sub(4 * (level + 1)), bp.wrapping_sub(4 * (level - 1)));
                if push_start < bp && read_start < sp {
                    return true;
                }
            }
        }
        if !replay.step(1) {
            break;
        }
    }
    false
}

/// Denali's run of a case, replayed in a fresh interpreter to ask what it did.
struct Replay {
    memory: GuestMemory,
    cpu: Cpu,
    interpreter: Interpreter,
    code: std::ops::Range<u32>,
}

impl Replay {
    fn new(case: &Case) -> Option<Replay> {
        let mut memory = GuestMemory::new(u64::from(MEMORY_SIZE)).ok()?;
        for region in &case.memory {
            let _ = memory.write(region.addr, &region.data);
        }
        let _ = memory.write(case.init.eip, &case.code);
        let end = case.init.eip + u32::try_from(case.code.len()).unwrap_or(0);
        let cpu = Cpu { regs: case.init.regs(), eip: case.init.eip, eflags: case.init.eflags, instructions: 0 };
        Some(Replay { memory, cpu, interpreter: Interpreter::new(), code: case.init.eip..end })
    }

    /// Runs up to `budget` instructions; false once execution has left the code or stopped.
    fn step(&mut self, budget: u64) -> bool {
        self.code.contains(&self.cpu.eip)
            && self.interpreter.run(&mut self.cpu, &mut self.memory, budget) == Exit::BudgetExhausted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Blocks per `cargo test` run; the long runs are `cargo test --release -p denali-fuzzing
    /// -- --ignored live_differential_soak` and the `diff_cpu` fuzz target.
    const CASES: u32 = 300;

    fn oracle() -> Option<DiffCpu> {
        match DiffCpu::new() {
            Ok(d) => Some(d),
            Err(why) => {
                println!("note: the host CPU cannot serve as the oracle here ({why}); skipping");
                None
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]
        #[test]
        fn the_interpreter_agrees_with_the_cpu_on_random_blocks(seed in any::<u64>(), len in 1usize..8) {
            thread_local!(static DIFF: std::cell::RefCell<Option<Option<DiffCpu>>> = const { std::cell::RefCell::new(None) });
            DIFF.with(|cell| {
                let mut cell = cell.borrow_mut();
                let Some(diff) = cell.get_or_insert_with(oracle) else { return Ok(()) };
                match diff.check(seed, len) {
                    Verdict::Diverged(engine, m) => Err(TestCaseError::fail(format!("{engine}: seed {seed:#x}, {len} instructions:\n{m}"))),
                    Verdict::Agreed | Verdict::Skipped(_) => Ok(()),
                }
            })?;
        }
    }

    /// The soak run: `DENALI_SOAK_SECS` seconds (default 60) of random blocks.
    /// The block the `diff_cpu` fuzz target found (AMD EPYC): `enter 0xfff3, 6` with ESP three
    /// bytes above EBP, after a `mov` that does not touch either.
    #[test]
    fn a_nested_enter_over_its_own_frame_chain_is_recognised() {
        let case = |code: &[u8], esp: u32, ebp: u32| Case {
            form: "block".into(),
            code: code.to_vec(),
            init: denali_conformance::case::State::with_regs([0, 0, 0, 0, esp, ebp, 0, 0], CODE_PAGE, 0x202),
            memory: vec![],
        };
        let enter6 = [0xB4, 0xFE, 0xC8, 0xF3, 0xFF, 0x06];
        assert!(enter_reads_its_own_pushes(&case(&enter6, 0x009B_A52B, 0x009B_A528)));
        // An ordinary frame: the chain lies above the pushes.
        assert!(!enter_reads_its_own_pushes(&case(&enter6, 0x0090_0000, 0x0090_0100)));
        // Level 1 copies no frame pointer.
        assert!(!enter_reads_its_own_pushes(&case(&[0xC8, 0xF3, 0xFF, 0x01], 0x009B_A52B, 0x009B_A528)));
    }

    #[test]
    #[ignore = "long-running; run explicitly"]
    fn live_differential_soak() {
        let Some(mut diff) = oracle() else { return };
        // DENALI_SOAK_REPLAY=SEED,LEN re-runs one reported block.
        if let Some((seed, len)) = std::env::var("DENALI_SOAK_REPLAY").ok().and_then(|v| {
            let (seed, len) = v.split_once(',')?;
            Some((u64::from_str_radix(seed.trim_start_matches("0x"), 16).ok()?, len.parse().ok()?))
        }) {
            match diff.check(seed, len) {
                Verdict::Diverged(engine, m) => panic!("{engine}: seed {seed:#x}, {len} instructions:\n{m}"),
                verdict => println!("{verdict:?}"),
            }
            return;
        }
        let secs: u64 = std::env::var("DENALI_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
        let start = std::time::Instant::now();
        let (mut agreed, mut skipped) = (0u64, 0u64);
        let mut seed = std::env::var("DENALI_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1u64);
        while start.elapsed().as_secs() < secs {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = 1 + (seed >> 60) as usize % 8;
            match diff.check(seed, len) {
                Verdict::Agreed => agreed += 1,
                Verdict::Skipped(_) => skipped += 1,
                Verdict::Diverged(engine, m) => panic!("{engine}: seed {seed:#x}, {len} instructions:\n{m}"),
            }
        }
        println!("live differential: {agreed} blocks agreed, {skipped} skipped, in {secs} s");
        assert!(agreed > skipped, "too many skipped blocks: {agreed} agreed, {skipped} skipped");
    }
}
