//! The runner: runs vectors on an engine and compares the result with what the CPU (or the
//! spec) says, one case ([`run_vector`]) or a whole vectors directory ([`run_suite`]).
//!
//! A case runs on a fresh `GuestMemory` of `MEMORY_SIZE` bytes and a fresh engine: the
//! `Engine` contract is one engine per VM, and an engine caches code decoded from its memory
//! by address, which a case at the same address with other bytes must never see.
//!
//! The engine runs one instruction per `Engine::run` call: memory outside the case's code is
//! zero (not INT3 as under the native oracle), so an engine given a larger budget would carry
//! on past the code into `add [eax],al`s before the runner could see that EIP had left.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use denali_engine::{Cpu, Engine, ExceptionKind, Exit, GuestMemory, MemoryError, reg};
use denali_isa::{disasm, spec, validate};

use crate::case::{MEMORY_SIZE, Region, State, Stop, Vector};
use crate::vector::{self, VectorError};

/// Instructions a case may retire before the runner gives up on it (a REP string instruction
/// counts one per iteration; no generated case comes near this).
pub const INSTRUCTION_LIMIT: u64 = 100_000_000;

/// How a run ended, as the runner saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// EIP left the case's code.
    Left,
    /// The machine stopped.
    Stopped(Stop),
    /// The engine exited in a way no vector can expect (a PORT exception, which only the
    /// kernel raises).
    Unexpected(Exit),
    /// EIP was still inside the code after `INSTRUCTION_LIMIT` instructions.
    Unfinished,
}

impl Ending {
    fn of(stop: Option<Stop>) -> Ending {
        stop.map_or(Ending::Left, Ending::Stopped)
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Left => f.write_str("none (EIP left the code)"),
            Ending::Stopped(stop) => match stop {
                Stop::Memory { addr } => write!(f, "memory fault at 0x{addr:08x}"),
                Stop::Divide => f.write_str("divide fault"),
                Stop::Breakpoint => f.write_str("breakpoint"),
                Stop::Invalid => f.write_str("invalid instruction"),
                Stop::Idle => f.write_str("idle"),
                Stop::Terminate => f.write_str("terminate"),
                Stop::PortIn { port } => write!(f, "in from port 0x{port:04x}"),
                Stop::PortOut { port, value } => write!(f, "out to port 0x{port:04x} of 0x{value:08x}"),
            },
            Ending::Unexpected(exit) => write!(f, "unexpected engine exit {exit:?}"),
            Ending::Unfinished => {
                write!(f, "did not finish: EIP still in the code after {INSTRUCTION_LIMIT} instructions")
            }
        }
    }
}

/// One item where the engine disagreed with the vector (or why the case could not run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// A general register; `index` in encoding order (`reg::EAX`...).
    Register {
        index: usize,
        expected: u32,
        got: u32,
    },
    Eip {
        expected: u32,
        got: u32,
    },
    /// EFLAGS; `expected` and `got` are already masked with `mask`.
    Eflags {
        expected: u32,
        got: u32,
        mask: u32,
    },
    /// A region of `final_memory`; `got` holds what memory held there.
    Memory {
        addr: u32,
        expected: Vec<u8>,
        got: Vec<u8>,
    },
    Ending {
        expected: Ending,
        got: Ending,
    },
    /// The vector cannot be set up (a region outside memory) or the host failed.
    Setup(String),
}

/// A case whose result differs from its vector. `Display` renders it as a readable diff: the
/// form, the code with its disassembly, the initial state, then one line per difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub vector: Box<Vector>,
    pub differences: Vec<Difference>,
}

/// Runs one case on `engine` and compares the result with the vector's expected result.
pub fn run_vector(engine: &mut dyn Engine, vector: &Vector) -> Result<(), Mismatch> {
    run_vector_in(engine, vector, &GuestMemory::new)
}

/// Makes a case's memory of the given size: [`GuestMemory::new`] or [`GuestMemory::guarded`].
pub type NewMemory = dyn Fn(u64) -> Result<GuestMemory, MemoryError>;

/// [`run_vector`] on a memory `memory` makes (a guarded one, for the JIT's guard-region mode).
pub fn run_vector_in(engine: &mut dyn Engine, vector: &Vector, memory: &NewMemory) -> Result<(), Mismatch> {
    let differences = differences(engine, vector, memory);
    if differences.is_empty() { Ok(()) } else { Err(Mismatch { vector: Box::new(vector.clone()), differences }) }
}

fn differences(engine: &mut dyn Engine, vector: &Vector, memory: &NewMemory) -> Vec<Difference> {
    let (case, expected) = (&vector.case, &vector.expected);
    let mut mem = match memory(u64::from(MEMORY_SIZE)) {
        Ok(mem) => mem,
        Err(error) => return vec![Difference::Setup(format!("cannot create guest memory: {error}"))],
    };
    for region in case.memory.iter().chain([&Region { addr: case.init.eip, data: case.code.clone() }]) {
        if mem.write(region.addr, &region.data).is_err() {
            return vec![Difference::Setup(format!(
                "the vector's {} bytes at 0x{:08x} lie outside the {MEMORY_SIZE:#x}-byte memory",
                region.data.len(),
                region.addr
            ))];
        }
    }

    let init = &case.init;
    let mut cpu = Cpu { regs: init.regs(), eip: init.eip, eflags: init.eflags, instructions: 0 };
    let code_end = u64::from(init.eip) + case.code.len() as u64;
    let in_code = |eip: u32| (init.eip..).contains(&eip) && u64::from(eip) < code_end;
    let ending = loop {
        if !in_code(cpu.eip) {
            break Ending::Left;
        }
        if cpu.instructions >= INSTRUCTION_LIMIT {
            break Ending::Unfinished;
        }
        let before = cpu.instructions;
        match engine.run(&mut cpu, &mut mem, 1) {
            // An engine that returns without retiring anything would loop here for ever.
            Exit::BudgetExhausted if cpu.instructions == before => cpu.instructions += 1,
            Exit::BudgetExhausted => {}
            exit => break ending_of(exit),
        }
    };

    let mut found = Vec::new();
    let expected_ending = Ending::of(expected.stop);
    if ending == Ending::Unfinished || matches!(ending, Ending::Unexpected(_)) {
        // The state is meaningless then; the ending says everything.
        found.push(Difference::Ending { expected: expected_ending, got: ending });
        return found;
    }
    let want = &expected.state;
    for (index, (&expected, &got)) in want.regs().iter().zip(&cpu.regs).enumerate() {
        if expected != got {
            found.push(Difference::Register { index, expected, got });
        }
    }
    if want.eip != cpu.eip {
        found.push(Difference::Eip { expected: want.eip, got: cpu.eip });
    }
    let mask = expected.flags_mask;
    if want.eflags & mask != cpu.eflags & mask {
        found.push(Difference::Eflags { expected: want.eflags & mask, got: cpu.eflags & mask, mask });
    }
    for region in &expected.final_memory {
        let got = match mem.bytes(region.addr, region.data.len()) {
            Ok(bytes) => bytes,
            Err(_) => {
                found.push(Difference::Setup(format!(
                    "the vector's final memory at 0x{:08x} lies outside memory",
                    region.addr
                )));
                continue;
            }
        };
        if got != region.data.as_slice() {
            found.push(Difference::Memory { addr: region.addr, expected: region.data.clone(), got: got.to_vec() });
        }
    }
    if ending != expected_ending {
        found.push(Difference::Ending { expected: expected_ending, got: ending });
    }
    found
}

/// The `Stop` an engine exit means. The engine leaves EIP at the stopping instruction and
/// retires nothing of it, which is the vectors' convention too.
fn ending_of(exit: Exit) -> Ending {
    let stop = match exit {
        Exit::Exception(e) => match e.kind {
            ExceptionKind::Memory => Stop::Memory { addr: e.addr },
            ExceptionKind::Divide => Stop::Divide,
            ExceptionKind::Breakpoint => Stop::Breakpoint,
            ExceptionKind::Invalid => Stop::Invalid,
            ExceptionKind::Port => return Ending::Unexpected(exit),
        },
        Exit::Idle { .. } => Stop::Idle,
        Exit::Terminate { .. } => Stop::Terminate,
        Exit::PortIn { port, .. } => Stop::PortIn { port },
        Exit::PortOut { port, value, .. } => Stop::PortOut { port, value },
        Exit::BudgetExhausted => return Ending::Unexpected(exit),
    };
    Ending::Stopped(stop)
}

/// EFLAGS bits by name, lowest first. Bits without a name print as `bitN`.
const FLAG_NAMES: [(u32, &str); 10] =
    [(0, "CF"), (1, "bit1"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"), (10, "DF"), (11, "OF")];

/// `CF ZF`, or `none` when no bit is set.
pub fn flag_names(eflags: u32) -> String {
    let names: Vec<String> = (0..32)
        .filter(|bit| eflags & (1 << bit) != 0)
        .map(|bit| match FLAG_NAMES.iter().find(|(b, _)| *b == bit) {
            Some((_, name)) => (*name).to_owned(),
            None => format!("bit{bit}"),
        })
        .collect();
    if names.is_empty() { "none".to_owned() } else { names.join(" ") }
}

fn spaced_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// Regions longer than this print only their differing bytes.
const SHORT_REGION: usize = 32;
/// At most this many differing bytes of a long region are listed.
const LISTED_OFFSETS: usize = 8;

fn region_text(data: &[u8]) -> String {
    if data.len() <= SHORT_REGION {
        spaced_hex(data)
    } else {
        format!("{} ... ({} bytes)", spaced_hex(&data[..SHORT_REGION]), data.len())
    }
}

fn state_text(state: &State) -> String {
    let regs: Vec<String> =
        reg::NAMES.iter().zip(state.regs()).map(|(name, value)| format!("{name}={value:08x}")).collect();
    format!("{} eip={:08x} eflags={:08x} ({})", regs.join(" "), state.eip, state.eflags, flag_names(state.eflags))
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Register { index, expected, got } => {
                let name = reg::NAMES.get(*index).copied().unwrap_or("register");
                write!(f, "{name}: expected 0x{expected:08x}, got 0x{got:08x}")
            }
            Difference::Eip { expected, got } => write!(f, "eip: expected 0x{expected:08x}, got 0x{got:08x}"),
            Difference::Eflags { expected, got, mask } => write!(
                f,
                "eflags: expected {}, got {} (compared: {})",
                flag_names(*expected),
                flag_names(*got),
                flag_names(*mask)
            ),
            Difference::Memory { addr, expected, got } => {
                let offsets: Vec<usize> = (0..expected.len()).filter(|&i| expected.get(i) != got.get(i)).collect();
                if expected.len() <= SHORT_REGION {
                    let at: Vec<String> = offsets.iter().map(|o| format!("+{o:#x}")).collect();
                    write!(
                        f,
                        "memory 0x{addr:08x}: expected {}, got {} (differs at {})",
                        spaced_hex(expected),
                        spaced_hex(got),
                        at.join(" ")
                    )
                } else {
                    let listed: Vec<String> = offsets
                        .iter()
                        .take(LISTED_OFFSETS)
                        .map(|&o| {
                            format!("+{o:#x} expected {:02x} got {:02x}", expected[o], got.get(o).copied().unwrap_or(0))
                        })
                        .collect();
                    write!(f, "memory 0x{addr:08x} ({} bytes): {}", expected.len(), listed.join(", "))?;
                    if offsets.len() > LISTED_OFFSETS {
                        write!(f, ", and {} more differing bytes", offsets.len() - LISTED_OFFSETS)?;
                    }
                    Ok(())
                }
            }
            Difference::Ending { expected, got } => write!(f, "stop: expected {expected}, got {got}"),
            Difference::Setup(message) => write!(f, "cannot run: {message}"),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let case = &self.vector.case;
        writeln!(f, "form {}", case.form)?;
        for line in disasm::sweep(&case.code, case.init.eip) {
            writeln!(f, "code 0x{:08x}: {}  {}", line.addr, spaced_hex(&line.bytes), line.text)?;
        }
        if case.code.is_empty() {
            writeln!(f, "code 0x{:08x}: (none)", case.init.eip)?;
        }
        writeln!(f, "init {}", state_text(&case.init))?;
        for region in &case.memory {
            writeln!(f, "init memory 0x{:08x}: {}", region.addr, region_text(&region.data))?;
        }
        let mut first = true;
        for difference in &self.differences {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{difference}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Mismatch {}

/// The first failing case of a form.
#[derive(Debug, Clone)]
pub struct CaseFailure {
    /// 1-based position of the case in the form's file (its line, when the file has no blank
    /// lines).
    pub case: usize,
    pub mismatch: Mismatch,
}

/// One form's result.
#[derive(Debug, Clone)]
pub struct FormReport {
    pub form: String,
    /// Cases in the form's file.
    pub total: usize,
    /// Cases run (all of them, or the sample).
    pub cases: usize,
    /// Cases whose result differed.
    pub failures: usize,
    pub first_failure: Option<CaseFailure>,
    /// Why the form's file could not be used; such a form counts as one failure.
    pub error: Option<String>,
}

impl FormReport {
    pub fn failed(&self) -> bool {
        self.failures > 0 || self.error.is_some()
    }
}

/// The result of a suite run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The forms run, sorted by name.
    pub forms: Vec<FormReport>,
    /// The v1 forms of `isa-spec/forms.txt` the run covers (all, or those the filter selects).
    pub subset_forms: usize,
    /// Those of them with at least one vector.
    pub covered_forms: usize,
    /// Those of them without a vector, sorted.
    pub uncovered: Vec<String>,
}

impl Report {
    pub fn cases(&self) -> usize {
        self.forms.iter().map(|f| f.cases).sum()
    }

    /// Failing cases, plus one for each form whose file could not be read.
    pub fn failures(&self) -> usize {
        self.forms.iter().map(|f| f.failures + usize::from(f.error.is_some())).sum()
    }

    /// Percentage of the subset forms with vectors, rounded down to one decimal, so that 100.0
    /// means every one (100% of nothing is 100%: nothing is missing).
    pub fn coverage_permille(&self) -> usize {
        (self.covered_forms * 1000).checked_div(self.subset_forms).unwrap_or(1000)
    }

    /// The coverage as printed: one decimal, e.g. `97.4`.
    pub fn coverage_text(&self) -> String {
        let permille = self.coverage_permille();
        format!("{}.{}", permille / 10, permille % 10)
    }

    /// Whether every case passed and every subset form has vectors.
    pub fn passed(&self) -> bool {
        self.failures() == 0 && self.uncovered.is_empty()
    }

    /// Every failing form with its first failing case, indented, for test assertions.
    pub fn failure_details(&self) -> String {
        let mut text = String::new();
        for form in self.forms.iter().filter(|f| f.failed()) {
            text.push_str(&format!("\n{}: {} of {} cases failed", form.form, form.failures, form.cases));
            if let Some(error) = &form.error {
                text.push_str(&format!("\n  {error}"));
            }
            if let Some(first) = &form.first_failure {
                text.push_str(&format!("\n  case {}:", first.case));
                for line in first.mismatch.to_string().lines() {
                    text.push_str(&format!("\n    {line}"));
                }
            }
        }
        text
    }

    /// The summary line: `conformance: F forms, C cases, X failures, coverage P% of subset forms`.
    pub fn summary(&self) -> String {
        format!(
            "conformance: {} forms, {} cases, {} failures, coverage {}% of subset forms",
            self.forms.len(),
            self.cases(),
            self.failures(),
            self.coverage_text()
        )
    }
}

/// The v1 forms of `isa-spec/forms.txt`. Column 0 is the form; whether a row is in v1 is
/// asked of the validator (`form_class`), so this does not depend on the table's other columns.
pub fn subset_forms() -> Vec<String> {
    spec::FORMS
        .rows()
        .into_iter()
        .map(|row| row.cells[0])
        .filter(|name| validate::code_by_name(name).and_then(validate::form_class).is_some())
        .map(str::to_owned)
        .collect()
}

/// Whether `form` is selected by `filter` (a case-insensitive substring).
pub fn matches(form: &str, filter: Option<&str>) -> bool {
    filter.is_none_or(|filter| form.to_ascii_lowercase().contains(&filter.to_ascii_lowercase()))
}

/// `n` cases spread evenly over `total`: generators tend to write special values first and
/// random ones after, and an even spread samples both.
fn sample_indices(total: usize, n: Option<usize>) -> Vec<usize> {
    match n {
        Some(n) if n < total => (0..n).map(|k| k * total / n).collect(),
        _ => (0..total).collect(),
    }
}

/// Runs the vectors of `dir` on fresh engines from `engine_factory` (one per case): every form
/// with a file or a `MANIFEST.json` entry whose name contains `filter`, all cases or an even
/// `sample` of each form. A form's file that cannot be read, or whose case count disagrees
/// with the manifest, is a failing form; a directory or manifest that cannot be read is an
/// error.
pub fn run_suite(
    engine_factory: &dyn Fn() -> Box<dyn Engine>,
    dir: &Path,
    filter: Option<&str>,
    sample: Option<usize>,
) -> Result<Report, VectorError> {
    run_suite_in(engine_factory, dir, filter, sample, &GuestMemory::new)
}

/// [`run_suite`] with each case's memory made by `memory`.
pub fn run_suite_in(
    engine_factory: &dyn Fn() -> Box<dyn Engine>,
    dir: &Path,
    filter: Option<&str>,
    sample: Option<usize>,
    memory: &NewMemory,
) -> Result<Report, VectorError> {
    let files = vector::list_forms(dir)?;
    let manifest = vector::read_manifest(dir)?;
    let mut forms: BTreeSet<String> = files.iter().cloned().collect();
    if let Some(manifest) = &manifest {
        forms.extend(manifest.forms.keys().cloned());
    }

    let mut report = Report::default();
    let mut covered = BTreeSet::new();
    for form in forms.into_iter().filter(|f| matches(f, filter)) {
        let mut result =
            FormReport { form: form.clone(), total: 0, cases: 0, failures: 0, first_failure: None, error: None };
        let listed = manifest.as_ref().and_then(|m| m.forms.get(&form)).map(|entry| entry.cases);
        let path = vector::form_path(dir, &form);
        if files.binary_search(&form).is_err() {
            result.error = Some(format!("listed in {} but {} is missing", vector::MANIFEST_FILE, path.display()));
            report.forms.push(result);
            continue;
        }
        let vectors = match vector::read_form(&path) {
            Ok(vectors) => vectors,
            Err(error) => {
                result.error = Some(error.to_string());
                report.forms.push(result);
                continue;
            }
        };
        result.total = vectors.len();
        if listed.is_some_and(|n| n != vectors.len()) {
            result.error = Some(format!(
                "{} has {} cases, but {} lists {}",
                path.display(),
                vectors.len(),
                vector::MANIFEST_FILE,
                listed.unwrap_or(0)
            ));
        }
        if !vectors.is_empty() {
            covered.insert(form.clone());
        }
        for index in sample_indices(vectors.len(), sample) {
            result.cases += 1;
            let mut engine = engine_factory();
            if let Err(mismatch) = run_vector_in(engine.as_mut(), &vectors[index], memory) {
                result.failures += 1;
                if result.first_failure.is_none() {
                    result.first_failure = Some(CaseFailure { case: index + 1, mismatch });
                }
            }
        }
        report.forms.push(result);
    }

    for form in subset_forms().into_iter().filter(|f| matches(f, filter)) {
        report.subset_forms += 1;
        if covered.contains(&form) {
            report.covered_forms += 1;
        } else {
            report.uncovered.push(form);
        }
    }
    report.uncovered.sort();
    Ok(report)
}
