//! `denali bench`: times the compute example suite under every engine, natively and under
//! `qemu-i386`, and prints a table of times and guest instructions per second.
//!
//! The parties, for each compute example (every bundled example but `hello`):
//! - each engine, in this process: a fresh VM per run, built as `denali run` builds one (16 MiB,
//!   VM 0), with its console captured and checked against the example's expected output;
//! - `native`: the same kernel built as a static i386 Linux program (`guests/native`, same
//!   target, flags and profile as the guests), written to a temporary file and run directly;
//! - `qemu-i386`: that same program under QEMU's user-mode emulator, when it is on PATH.
//!
//! Each time is the best of `--repeat` runs and covers a run's whole life: creating and loading
//! the VM and running the guest to its end, or spawning the program and waiting for it. A party
//! that prints the wrong output or exits with the wrong status is an error, never a time: the
//! table says `error`, a note says why, and the command exits with status 1 after printing
//! everything. The very last line of standard output is always
//! `geomean time ratio vs native: interp=A jit=B qemu-i386=C` (geometric mean over the kernels
//! of the party's time over native time; `n/a` for a party that was not measured on every
//! kernel, or when native could not run).
//!
//! Adding an engine: give it an arm in [`new_engine`]. Engines are found through
//! [`EngineKind`]'s values, so an engine with an arm is measured without further change, and
//! its statistics (for example a JIT's compile time and cache counters) are printed in a table
//! of their own when its probe returns any.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use denali_engine::{Cpu, Engine, Exit, GuestMemory, Interpreter};
use denali_examples::Example;
use denali_kernel::{Image, Outcome, Vm, VmConfig, VmError};

use crate::args::{BenchArgs, EngineKind, MemoryKind};
use crate::error::Failure;
use crate::source::io_reason;

/// The name of QEMU's i386 user-mode emulator, looked up on PATH.
const QEMU: &str = "qemu-i386";

/// `execve`'s error for a file format the kernel cannot run (the same number on every Linux
/// architecture).
const ENOEXEC: i32 = 8;

/// binfmt_misc's entry for i386 programs, if one is registered: the kernel then hands them to
/// an emulator (usually qemu-i386) instead of running them, and "native" is not native.
const BINFMT_I386: &str = "/proc/sys/fs/binfmt_misc/qemu-i386";

/// How to get [`QEMU`] when it is missing.
const QEMU_INSTALL: &str = "qemu-i386 is not on PATH: install Debian's qemu-user package \
(`apt-get install qemu-user`) to measure it";

/// Rows of an engine's statistics after one run: (column label, value).
pub type Stats = Vec<(String, String)>;

/// An engine for one timed run, and a way to read its statistics once the VM is done with it.
///
/// The VM owns its engine as a `Box<dyn Engine>` and does not hand it back, so the engine is
/// shared through an `Arc`; the `Mutex` is locked once per call of `Engine::run` (a slice of
/// up to a millisecond of guest time, or an exit), which costs nothing measurable.
pub struct Probed {
    engine: Box<dyn Engine>,
    stats: Box<dyn Fn() -> Stats>,
}

impl Probed {
    /// Wraps `engine`; `stats` reads its counters after the run.
    pub fn new<E: Engine + 'static>(engine: E, stats: fn(&E) -> Stats) -> Probed {
        let shared = Arc::new(Mutex::new(engine));
        let probe = Arc::clone(&shared);
        Probed {
            engine: Box::new(Shared(shared)),
            stats: Box::new(move || stats(&probe.lock().unwrap_or_else(PoisonError::into_inner))),
        }
    }
}

/// An engine the bench can still read after lending it to a VM.
struct Shared<E>(Arc<Mutex<E>>);

impl<E: Engine> Engine for Shared<E> {
    fn run(&mut self, cpu: &mut Cpu, memory: &mut GuestMemory, budget: u64) -> Exit {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).run(cpu, memory, budget)
    }
}

/// A new engine of `kind` for one run, or why this build cannot make one.
///
/// This is the hook for new engines: an engine gets an arm here, with a probe that returns its
/// statistics (an empty list for none).
#[allow(unreachable_patterns, reason = "an engine added to EngineKind before it has an arm here")]
fn new_engine(kind: EngineKind) -> Result<Probed, String> {
    match kind {
        EngineKind::Interp => Ok(Probed::new(Interpreter::new(), |_| Vec::new())),
        EngineKind::Jit => denali_jit::Jit::new()
            .map(|jit| Probed::new(jit, jit_stats))
            .ok_or_else(|| "this host cannot run the JIT (it needs x86-64 with BMI2)".to_owned()),
        _ => Err(format!("engine {} has no constructor in denali bench yet", engine_name(kind))),
    }
}

/// The JIT's counters, one column per field of its statistics.
///
/// They are read from the `Debug` form of `JitStats` (`JitStats { translations: 12, ... }`)
/// so that counters the JIT adds or renames show up here without a change to this file.
/// Then the compile time per translated guest instruction, which the issue asks for.
#[cfg(target_arch = "x86_64")]
fn jit_stats(jit: &denali_jit::Jit) -> Stats {
    let stats = jit.stats();
    let mut rows = debug_fields(&format!("{stats:?}"));
    if stats.translated_instructions > 0 {
        #[allow(clippy::cast_precision_loss, reason = "a displayed ratio")]
        let per = stats.compile_ns as f64 / stats.translated_instructions as f64;
        rows.push(("compile ns/instr".to_owned(), format!("{per:.0}")));
    }
    rows
}

/// Hosts without a JIT backend never construct one, so there is nothing to read.
#[cfg(not(target_arch = "x86_64"))]
fn jit_stats(_: &denali_jit::Jit) -> Stats {
    Vec::new()
}

/// The fields of a struct's derived `Debug` form, `Name { a: 1, b: 2 }`, as (name, value)
/// pairs; anything else, or a nested value, as one `stats` column with the whole text.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code, reason = "used by jit_stats on x86-64"))]
fn debug_fields(text: &str) -> Stats {
    let fields = text.split_once(" { ").and_then(|(_, rest)| rest.strip_suffix(" }")).and_then(|body| {
        body.split(", ")
            .map(|field| {
                let (name, value) = field.split_once(": ")?;
                let simple = !value.contains(['{', '}', '(', ')', '[', ']', ':']);
                simple.then(|| (name.to_owned(), value.to_owned()))
            })
            .collect::<Option<Stats>>()
    });
    fields.unwrap_or_else(|| vec![("stats".to_owned(), text.to_owned())])
}

/// The engine's name on the command line (`interp`, `jit`).
fn engine_name(kind: EngineKind) -> String {
    kind.to_possible_value().map_or_else(|| format!("{kind:?}").to_lowercase(), |v| v.get_name().to_owned())
}

/// The engine parties: the engines of this build (or those `--engine` names), then, when this
/// build has no JIT engine, an empty `jit` column, so that the table shows what is missing.
#[derive(Debug, Clone)]
struct EngineColumn {
    name: String,
    kind: Option<EngineKind>,
}

/// The JIT's name on the command line, whether or not this build has one.
const JIT: &str = "jit";

fn engine_columns(requested: &[EngineKind], notes: &mut Notes) -> Vec<EngineColumn> {
    let kinds = if requested.is_empty() { EngineKind::value_variants().to_vec() } else { dedup(requested) };
    let mut columns: Vec<EngineColumn> =
        kinds.iter().map(|&kind| EngineColumn { name: engine_name(kind), kind: Some(kind) }).collect();
    if requested.is_empty() && !columns.iter().any(|c| c.name == JIT) {
        notes.note(format!("{JIT}: n/a: this build has no JIT engine"));
        columns.push(EngineColumn { name: JIT.to_owned(), kind: None });
    }
    columns
}

/// What one party measured on one kernel.
#[derive(Debug, Clone)]
enum Cell {
    /// Best time of the runs.
    Time(Duration),
    /// The party could not run here (no engine, no qemu-i386, no 32-bit support).
    Missing,
    /// The party ran and gave a wrong answer, or failed in a way that is not the host's lack.
    Error,
}

impl Cell {
    fn time(&self) -> Option<Duration> {
        match self {
            Cell::Time(t) => Some(*t),
            _ => None,
        }
    }

    fn show(&self) -> String {
        match self {
            Cell::Time(t) => format_time(*t),
            Cell::Missing => "n/a".to_owned(),
            Cell::Error => "error".to_owned(),
        }
    }
}

/// One kernel's row.
struct Row {
    name: &'static str,
    /// Guest instructions of a run (the same under every engine), if an engine ran it.
    instructions: Option<u64>,
    /// One cell per engine, in the order of `engines`.
    engines: Vec<Cell>,
    native: Cell,
    qemu: Cell,
    /// Each engine's statistics after its last run, in the order of `engines`.
    stats: Vec<Stats>,
}

/// Notes printed under the table: each distinct one once, in order.
#[derive(Default)]
struct Notes {
    lines: Vec<String>,
    errors: usize,
}

impl Notes {
    fn note(&mut self, line: String) {
        if !self.lines.contains(&line) {
            self.lines.push(line);
        }
    }

    fn error(&mut self, line: String) {
        self.errors += 1;
        self.note(format!("error: {line}"));
    }
}

pub fn bench(args: &BenchArgs) -> Result<u8, Failure> {
    let examples = select(args.filter.as_deref())?;
    let repeat = (args.repeat.max(1), args.memory);
    let mut notes = Notes::default();
    let engines = engine_columns(&args.engine, &mut notes);
    let progress = io::stderr().is_terminal();

    let dir = TempDir::new().map_err(|e| Failure::host(format!("cannot create a temporary directory: {e}")))?;
    if std::fs::read_to_string(BINFMT_I386).is_ok_and(|s| s.starts_with("enabled")) {
        notes.note(format!(
            "native: {BINFMT_I386} is enabled, so i386 programs may run under an emulator: native \
             times are only native if this kernel runs them itself"
        ));
    }
    let qemu = find_on_path(QEMU);
    if qemu.is_none() {
        notes.note(QEMU_INSTALL.to_owned());
    }

    let mut rows = Vec::new();
    for example in &examples {
        if progress {
            eprint!("bench: {} ...\r", example.name);
        }
        rows.push(bench_example(example, &engines, repeat, qemu.as_deref(), &dir.path, &mut notes)?);
    }
    if progress {
        eprint!("\x1b[2K");
    }

    let report = render(&rows, &engines, &notes);
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(report.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::host(format!("writing the report: {}", io_reason(&e))))?;
    match notes.errors {
        0 => Ok(0),
        1 => Err(Failure::host("a party gave a wrong answer (see the notes above)")),
        n => Err(Failure::host(format!("{n} wrong answers (see the notes above)"))),
    }
}

/// The compute examples `filter` selects (a case-insensitive substring of the name).
fn select(filter: Option<&str>) -> Result<Vec<&'static Example>, Failure> {
    let compute = denali_examples::ALL.iter().filter(|e| e.native.is_some());
    let selected: Vec<_> = match filter {
        Some(f) => compute.filter(|e| e.name.to_lowercase().contains(&f.to_lowercase())).collect(),
        None => compute.collect(),
    };
    if selected.is_empty() {
        let known: Vec<&str> = denali_examples::ALL.iter().filter(|e| e.native.is_some()).map(|e| e.name).collect();
        return Err(Failure::input(format!(
            "no compute example matches '{}' (they are: {})",
            filter.unwrap_or_default(),
            known.join(", ")
        )));
    }
    Ok(selected)
}

fn dedup(kinds: &[EngineKind]) -> Vec<EngineKind> {
    let mut out = Vec::new();
    for kind in kinds {
        if !out.contains(kind) {
            out.push(*kind);
        }
    }
    out
}

/// Measures every party on one example.
fn bench_example(
    example: &Example,
    engines: &[EngineColumn],
    (repeat, memory): (u32, MemoryKind),
    qemu: Option<&Path>,
    dir: &Path,
    notes: &mut Notes,
) -> Result<Row, Failure> {
    let expected = example.expected_output.map(|f| f()).unwrap_or_default();
    let image = Image::from_elf(example.elf).map_err(|e| Failure::host(format!("example {}: {e}", example.name)))?;
    let mut row = Row {
        name: example.name,
        instructions: None,
        engines: Vec::new(),
        native: Cell::Missing,
        qemu: Cell::Missing,
        stats: Vec::new(),
    };

    for column in engines {
        let (cell, stats) = match column.kind {
            Some(kind) => {
                bench_engine(example, &image, &expected, kind, (repeat, memory), &mut row.instructions, notes)
            }
            None => (Cell::Missing, Stats::new()),
        };
        row.engines.push(cell);
        row.stats.push(stats);
    }

    let Some(native) = example.native else { return Ok(row) };
    let path = dir.join(format!("native-{}", example.name));
    write_executable(&path, native)
        .map_err(|e| Failure::host(format!("{}: cannot write: {}", path.display(), io_reason(&e))))?;
    row.native = bench_program("native", example, &expected, (&path, None), repeat, notes);
    if let Some(qemu) = qemu {
        row.qemu = bench_program(QEMU, example, &expected, (qemu, Some(&path)), repeat, notes);
    }
    Ok(row)
}

/// Times `repeat` runs of `example` on a fresh VM (in a `memory` memory: guarded or checked,
/// for the JIT) with a fresh engine of `kind` each; returns the
/// best time (or why there is none) and the engine's statistics after the last run.
/// `instructions` is the count every engine must agree on: the first engine to run sets it.
fn bench_engine(
    example: &Example,
    image: &Image,
    expected: &str,
    kind: EngineKind,
    (repeat, memory): (u32, MemoryKind),
    instructions: &mut Option<u64>,
    notes: &mut Notes,
) -> (Cell, Stats) {
    let name = engine_name(kind);
    let mut best: Option<Duration> = None;
    let mut stats = Stats::new();
    for _ in 0..repeat {
        let probed = match new_engine(kind) {
            Ok(probed) => probed,
            Err(reason) => {
                notes.note(format!("{name}: n/a: {reason}"));
                return (Cell::Missing, stats);
            }
        };
        let console = Capture::default();
        let start = Instant::now();
        let config = VmConfig::default();
        let run = memory
            .new_memory(kind, config.mem_size)
            .map_err(VmError::from)
            .and_then(|m| Vm::new_in(image, m, config.vm_id, probed.engine, Box::new(console.clone())))
            .map_err(|e| e.to_string())
            .and_then(|mut vm| {
                let outcome = vm.run(None).map_err(|e| e.to_string())?;
                Ok((outcome, vm.cpu().instructions))
            });
        let elapsed = start.elapsed();
        stats = (probed.stats)();
        let (outcome, count) = match run {
            Ok(done) => done,
            Err(e) => {
                notes.error(format!("{} under {name}: {e}", example.name));
                return (Cell::Error, stats);
            }
        };
        let output = console.text();
        if let Err(wrong) = check(&outcome, &output, example, expected) {
            notes.error(format!("{} under {name}: {wrong}", example.name));
            return (Cell::Error, stats);
        }
        match *instructions {
            None => *instructions = Some(count),
            Some(other) if other != count => {
                notes.error(format!(
                    "{} under {name}: {count} instructions retired, but another engine retired {other}",
                    example.name
                ));
                return (Cell::Error, stats);
            }
            Some(_) => {}
        }
        best = Some(best.map_or(elapsed, |b| b.min(elapsed)));
    }
    (best.map_or(Cell::Missing, Cell::Time), stats)
}

/// Whether a VM run ended as the example's correct run does.
fn check(outcome: &Outcome, output: &str, example: &Example, expected: &str) -> Result<(), String> {
    match outcome {
        Outcome::Terminated(status) if *status == example.expected_exit => {}
        Outcome::Terminated(status) => {
            return Err(format!("exit status {status}, expected {}", example.expected_exit));
        }
        Outcome::Fault(fault) => return Err(format!("fault: {fault}")),
        Outcome::Limit => return Err("stopped at an instruction limit".to_owned()),
    }
    check_output(output, expected)
}

fn check_output(output: &str, expected: &str) -> Result<(), String> {
    if output == expected {
        Ok(())
    } else {
        Err(format!("printed {:?}, expected {:?}", output.trim_end(), expected.trim_end()))
    }
}

/// Times `repeat` runs of a host program (the native build, directly or under qemu-i386) and
/// checks each one's output and exit status.
fn bench_program(
    party: &str,
    example: &Example,
    expected: &str,
    command: (&Path, Option<&Path>),
    repeat: u32,
    notes: &mut Notes,
) -> Cell {
    let mut best: Option<Duration> = None;
    for _ in 0..repeat {
        let start = Instant::now();
        let output = run_program(command);
        let elapsed = start.elapsed();
        let output = match output {
            Ok(output) => output,
            // ENOEXEC: the kernel does not know 32-bit x86 programs.
            Err(e) if party == "native" && e.raw_os_error() == Some(ENOEXEC) => {
                notes.note(format!(
                    "native: n/a: this host cannot run 32-bit x86 programs ({}); the native column \
                     needs a Linux kernel with IA-32 emulation (CONFIG_IA32_EMULATION)",
                    io_reason(&e)
                ));
                return Cell::Missing;
            }
            Err(e) => {
                notes.note(format!("{party}: n/a: cannot run {}: {}", command.0.display(), io_reason(&e)));
                return Cell::Missing;
            }
        };
        if let Err(wrong) = check_program(&output, example, expected) {
            notes.error(format!("{} under {party}: {wrong}", example.name));
            return Cell::Error;
        }
        best = Some(best.map_or(elapsed, |b| b.min(elapsed)));
    }
    best.map_or(Cell::Missing, Cell::Time)
}

/// Runs a program, with an optional argument, to its end and captures its output. A program
/// just written may still be open for writing in a child that another thread forked meanwhile
/// (exec fails with ETXTBSY); that passes, so retry a little.
fn run_program((program, arg): (&Path, Option<&Path>)) -> io::Result<Output> {
    let mut attempts = 0;
    loop {
        match Command::new(program).args(arg).output() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempts < 10 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

fn check_program(output: &Output, example: &Example, expected: &str) -> Result<(), String> {
    let status = output.status.code();
    if status != i32::try_from(example.expected_exit).ok() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = stderr.lines().next().map(|l| format!(": {l}")).unwrap_or_default();
        return Err(format!("{}, expected exit status {}{said}", output.status, example.expected_exit));
    }
    check_output(&String::from_utf8_lossy(&output.stdout), expected)
}

/// Writes `bytes` to `path` as an executable file.
fn write_executable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o755);
    // The file is closed before anything runs it: an open writer makes exec fail with ETXTBSY.
    options.open(path)?.write_all(bytes)
}

/// The first executable called `name` on PATH.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    meta.is_file()
}

/// A guest console that the bench can read after the VM is done with it.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A directory for the native programs, removed when the bench ends.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("denali-bench-{}", std::process::id()));
        // A leftover of an earlier process with the same id is stale.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The whole report: the table, the ratios, the notes, the engines' statistics, and the
/// geomean line last.
fn render(rows: &[Row], engines: &[EngineColumn], notes: &Notes) -> String {
    let names: Vec<String> = engines.iter().map(|c| c.name.clone()).collect();
    let mut out = String::new();

    // Times and rates.
    let mut header = vec!["kernel".to_owned(), "instructions".to_owned()];
    header.extend(names.iter().cloned());
    header.extend(["native".to_owned(), QEMU.to_owned()]);
    header.extend(names.iter().map(|n| format!("{n} instr/s")));
    let mut table = vec![header];
    for row in rows {
        let mut line = vec![row.name.to_owned(), row.instructions.map_or_else(|| "n/a".to_owned(), group_digits)];
        line.extend(row.engines.iter().map(Cell::show));
        line.extend([row.native.show(), row.qemu.show()]);
        line.extend(row.engines.iter().map(|cell| match (cell.time(), row.instructions) {
            (Some(t), Some(n)) => format_rate(n, t),
            _ => "n/a".to_owned(),
        }));
        table.push(line);
    }
    out.push_str(&format_table(&table));

    // Ratios to native, per kernel; the geomean of each column is the last line.
    let mut parties: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        parties.push((name.clone(), rows.iter().map(|r| ratio(r.engines[i].time(), r.native.time())).collect()));
    }
    parties.push((QEMU.to_owned(), rows.iter().map(|r| ratio(r.qemu.time(), r.native.time())).collect()));
    let mut header = vec!["time / native".to_owned()];
    header.extend(parties.iter().map(|(n, _)| n.clone()));
    let mut table = vec![header];
    for (k, row) in rows.iter().enumerate() {
        let mut line = vec![row.name.to_owned()];
        line.extend(parties.iter().map(|(_, r)| format_ratio(r[k])));
        table.push(line);
    }
    out.push('\n');
    out.push_str(&format_table(&table));

    // Statistics of the engines that report any, one table per engine.
    for (i, name) in names.iter().enumerate() {
        let mut columns: Vec<&str> = Vec::new();
        for row in rows {
            for (label, _) in &row.stats[i] {
                if !columns.contains(&label.as_str()) {
                    columns.push(label);
                }
            }
        }
        if columns.is_empty() {
            continue;
        }
        let mut header = vec![format!("{name} statistics")];
        header.extend(columns.iter().map(|c| (*c).to_owned()));
        let mut table = vec![header];
        for row in rows {
            let values: BTreeMap<&str, &String> = row.stats[i].iter().map(|(l, v)| (l.as_str(), v)).collect();
            let mut line = vec![row.name.to_owned()];
            line.extend(columns.iter().map(|c| values.get(c).map_or_else(|| "n/a".to_owned(), |v| (*v).clone())));
            table.push(line);
        }
        out.push('\n');
        out.push_str(&format_table(&table));
    }

    if !notes.lines.is_empty() {
        out.push('\n');
        for line in &notes.lines {
            let _ = writeln!(out, "{line}");
        }
    }
    out.push('\n');
    let _ = writeln!(out, "{}", geomean_line(&parties));
    out
}

/// `geomean time ratio vs native: interp=A jit=B qemu-i386=C`: always these three parties, in
/// this order, whatever was measured, so that scripts can read it.
fn geomean_line(parties: &[(String, Vec<Option<f64>>)]) -> String {
    let fields: Vec<String> = ["interp", JIT, QEMU]
        .iter()
        .map(|party| {
            let mean = parties.iter().find(|(n, _)| n == party).and_then(|(_, r)| geomean(r));
            format!("{party}={}", mean.map_or_else(|| "n/a".to_owned(), |m| format!("{m:.2}")))
        })
        .collect();
    format!("geomean time ratio vs native: {}", fields.join(" "))
}

/// The geometric mean, if every kernel has a ratio.
fn geomean(ratios: &[Option<f64>]) -> Option<f64> {
    if ratios.is_empty() {
        return None;
    }
    let logs: Option<Vec<f64>> = ratios.iter().map(|r| r.map(f64::ln)).collect();
    let logs = logs?;
    #[allow(clippy::cast_precision_loss, reason = "a handful of kernels")]
    Some((logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

fn ratio(party: Option<Duration>, native: Option<Duration>) -> Option<f64> {
    let (party, native) = (party?, native?);
    (!native.is_zero()).then(|| party.as_secs_f64() / native.as_secs_f64())
}

fn format_ratio(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}"))
}

fn format_time(t: Duration) -> String {
    format!("{:.1} ms", t.as_secs_f64() * 1e3)
}

/// Instructions per second, in millions.
fn format_rate(instructions: u64, t: Duration) -> String {
    let secs = t.as_secs_f64();
    if secs == 0.0 {
        return "n/a".to_owned();
    }
    #[allow(clippy::cast_precision_loss, reason = "a rate to four significant digits")]
    let rate = instructions as f64 / secs;
    format!("{:.1} M", rate / 1e6)
}

/// `247617106` as `247,617,106`.
fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Left-aligns the first column and right-aligns the others, two spaces apart.
fn format_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                let _ = write!(line, "{cell:<width$}", width = widths[c]);
            } else {
                let _ = write!(line, "  {cell:>width$}", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(247_617_106), "247,617,106");
    }

    #[test]
    fn a_wrong_answer_is_an_error() {
        assert_eq!(check_output("fib: 8a8b04f3\n", "fib: 8a8b04f3\n"), Ok(()));
        let wrong = check_output("fib: 00000000\n", "fib: 8a8b04f3\n").unwrap_err();
        assert!(wrong.contains("fib: 00000000") && wrong.contains("fib: 8a8b04f3"), "{wrong}");
        let example = denali_examples::find("fib").unwrap();
        let fault = check(&Outcome::Limit, "", example, "fib: 8a8b04f3\n").unwrap_err();
        assert!(fault.contains("limit"), "{fault}");
        let status = check(&Outcome::Terminated(3), "fib: 8a8b04f3\n", example, "fib: 8a8b04f3\n");
        assert!(status.unwrap_err().contains("exit status 3"));
    }

    #[test]
    fn statistics_from_debug() {
        let pairs =
            |v: &[(&str, &str)]| -> Stats { v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect() };
        assert_eq!(debug_fields("S { a: 1, bb: 2.5ms }"), pairs(&[("a", "1"), ("bb", "2.5ms")]));
        assert_eq!(debug_fields("S { a: T { b: 1 } }"), pairs(&[("stats", "S { a: T { b: 1 } }")]));
        assert_eq!(debug_fields("S"), pairs(&[("stats", "S")]));
    }

    #[test]
    fn geomean_needs_every_kernel() {
        assert_eq!(geomean(&[]), None);
        assert_eq!(geomean(&[Some(2.0), None]), None);
        let m = geomean(&[Some(2.0), Some(8.0)]).unwrap();
        assert!((m - 4.0).abs() < 1e-9);
    }

    #[test]
    fn last_line_names_every_party() {
        let parties = vec![("interp".to_owned(), vec![Some(40.0)]), (QEMU.to_owned(), vec![None])];
        assert_eq!(geomean_line(&parties), "geomean time ratio vs native: interp=40.00 jit=n/a qemu-i386=n/a");
    }
}
