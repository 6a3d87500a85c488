//! `denali experiment`: the paper's three experiments (README.md, "Experiments"), each a series
//! of `pingpong` fleets. The variants of one fleet size run one after the other, so they see
//! the same machine; the result is a Markdown table on stdout.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use denali_fleet::{EngineFactory, Fleet, FleetConfig, FleetReport, InterruptMode, VmEnd, VmSpec};
use denali_kernel::Image;

use crate::args::{ExperimentArgs, ExperimentKind};
use crate::commands::fleet::plan::engine_factory;
use crate::error::Failure;

/// Guest memory of every VM: the pingpong guests fit in 64 KiB.
const MEM_SIZE: u32 = 64 << 10;
/// Each fleet may retire at least this many instructions, so small fleets run long enough to
/// time.
const MIN_INSTRUCTIONS: u64 = 50_000_000;
/// The compute example `--busy` adds, and its memory.
const BUSY_EXAMPLE: &str = "fib";
const BUSY_MEM_SIZE: u32 = 1 << 20;

/// One fleet of an experiment: a label, the example it runs, the interrupt mode.
struct Variant {
    label: &'static str,
    example: &'static str,
    interrupts: InterruptMode,
}

const BATCHED: Variant = Variant { label: "batched", example: "pingpong", interrupts: InterruptMode::Batched };
const SYNCHRONOUS: Variant =
    Variant { label: "synchronous", example: "pingpong", interrupts: InterruptMode::Synchronous };
const IDLE: Variant = Variant { label: "idle-with-timeout", example: "pingpong", interrupts: InterruptMode::Batched };
const BUSY: Variant = Variant { label: "busy-idle loop", example: "pingpong-busy", interrupts: InterruptMode::Batched };
const PAIRS: Variant = Variant { label: "pingpong", example: "pingpong", interrupts: InterruptMode::Batched };

pub fn experiment(args: &ExperimentArgs) -> Result<u8, Failure> {
    let (variants, default_counts, default_per_vm): (&[Variant], &[u64], u64) = match args.name {
        ExperimentKind::Interrupts => (&[BATCHED, SYNCHRONOUS], &[2, 20, 200, 2000], 1_000_000),
        ExperimentKind::Idle => (&[IDLE, BUSY], &[2, 20, 200], 1_000_000),
        ExperimentKind::Switch => (&[PAIRS], &[2, 20, 200, 2000, 20_000], 100_000),
    };
    let counts = args.counts.as_deref().unwrap_or(default_counts);
    if let Some(odd) = counts.iter().find(|&&n| n % 2 == 1) {
        return Err(Failure::input(format!("--counts: {odd} is odd; pingpong VMs come in pairs")));
    }
    let per_vm = args.instructions_per_vm.unwrap_or(default_per_vm);
    let engine = engine_factory(args.engine)?;
    let busy = usize::try_from(args.busy).map_err(|_| Failure::input("--busy: too large for this host"))?;
    let threads = match args.threads {
        Some(threads) => usize::try_from(threads).unwrap_or(usize::MAX),
        None => FleetConfig::new().threads,
    };
    let mut out = io::stdout().lock();
    let write_err = |e: io::Error| Failure::host(format!("writing to stdout: {e}"));
    writeln!(
        out,
        "{:?} engine, {threads} worker threads, {} KiB per VM, at most {per_vm} instructions per VM \
         (at least {MIN_INSTRUCTIONS} per fleet), {busy} busy {BUSY_EXAMPLE} VMs per fleet\n",
        args.engine,
        MEM_SIZE >> 10
    )
    .and_then(|()| writeln!(out, "{}", HEADER))
    .map_err(write_err)?;
    for &count in counts {
        let count = usize::try_from(count).map_err(|_| Failure::input("--counts: too large for this host"))?;
        let limit = ((count + busy) as u64).saturating_mul(per_vm).max(MIN_INSTRUCTIONS);
        for variant in variants {
            let outcome = run(variant, count, busy, threads, limit, &engine)?;
            writeln!(out, "{}", row(variant, count, &outcome)).and_then(|()| out.flush()).map_err(write_err)?;
        }
    }
    Ok(0)
}

fn image(name: &str) -> Result<Arc<Image>, Failure> {
    let example =
        denali_examples::find(name).ok_or_else(|| Failure::host(format!("the {name} example is not bundled")))?;
    let image = Image::from_elf(example.elf).map_err(|e| Failure::host(format!("{name}: {e}")))?;
    Ok(Arc::new(image))
}

/// Runs `count` VMs of the variant's example (ids 0 to count-1, so pairs form as usual)
/// followed by `busy` compute VMs.
fn run(
    variant: &Variant,
    count: usize,
    busy: usize,
    threads: usize,
    limit: u64,
    engine: &EngineFactory,
) -> Result<Outcome, Failure> {
    let consoles: Arc<Vec<Mutex<Vec<u8>>>> = Arc::new((0..count).map(|_| Mutex::default()).collect());
    let sinks = Arc::clone(&consoles);
    let config = FleetConfig {
        console: Arc::new(move |id| {
            let own = usize::try_from(id).is_ok_and(|id| id < sinks.len());
            Ok(if own {
                Box::new(Console { id, consoles: Arc::clone(&sinks) }) as Box<dyn Write + Send>
            } else {
                Box::new(io::sink())
            })
        }),
        threads,
        interrupts: variant.interrupts,
        instruction_limit: Some(limit),
        engine: Arc::clone(engine),
        ..FleetConfig::new()
    };
    let mut specs = vec![VmSpec::new(image(variant.example)?, MEM_SIZE); count];
    // The compute kernels need more room than pingpong.
    specs.extend(vec![VmSpec::new(image(BUSY_EXAMPLE)?, BUSY_MEM_SIZE); busy]);
    let report = Fleet::new(config).run(&specs);
    // A faulting VM means something is broken: no figures. A VM that gave up (its peer was
    // not scheduled for 10 s) is a result, shown in the `pairs done` column.
    if report.faulted > 0 {
        return Err(Failure::host(format!(
            "{count} VMs of {} ({}): {} faulted",
            variant.example, variant.label, report.faulted
        )));
    }
    // What each starting VM reports on its own clock: how long its rounds after the first took.
    let took_us = consoles
        .iter()
        .filter_map(|c| {
            let text = String::from_utf8_lossy(&c.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
            text.split(" after the first in ").nth(1)?.split(" us").next()?.parse::<u64>().ok()
        })
        .collect();
    Ok(Outcome { report, took_us })
}

/// A fleet's report and the time each completed pair took for its rounds (guest clocks).
struct Outcome {
    report: FleetReport,
    took_us: Vec<u64>,
}

/// A pingpong VM's console, kept for parsing.
struct Console {
    id: u32,
    consoles: Arc<Vec<Mutex<Vec<u8>>>>,
}

impl Write for Console {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if let Some(console) = usize::try_from(self.id).ok().and_then(|id| self.consoles.get(id)) {
            console.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const HEADER: &str = "\
| VMs | variant | pairs done | packets switched | packets/s | round trip us | context switches/s | pingpong CPU s | CPU us per packet | wall s | busy VMs instructions/s |
|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

/// One table row. `packets/s` is over the fleet's wall time (boot included); `round trip` is
/// the mean over completed pairs of the time a round took on the starting VM's clock; the CPU
/// columns count the pingpong VMs only.
fn row(variant: &Variant, count: usize, outcome: &Outcome) -> String {
    let report = &outcome.report;
    let pingpong = report.vms.get(..count).unwrap_or_default();
    let pairs = count / 2;
    let done = pingpong.iter().filter(|v| v.end == VmEnd::Terminated(0)).count() / 2;
    let cpu: f64 = pingpong.iter().map(|v| v.cpu_time.as_secs_f64()).sum();
    let per_packet = if report.packets_switched == 0 { 0.0 } else { cpu * 1e6 / report.packets_switched as f64 };
    let round_trip = if outcome.took_us.is_empty() {
        "-".to_owned()
    } else {
        // The starting VMs time every round but the first (which waits for the peer to boot).
        let rounds = outcome.took_us.len() as f64 * f64::from(denali_examples::PINGPONG_DEFAULT_ROUNDS - 1);
        format!("{:.1}", outcome.took_us.iter().sum::<u64>() as f64 / rounds)
    };
    let busy: u64 = report.vms.get(count..).unwrap_or_default().iter().map(|v| v.instructions).sum();
    format!(
        "| {count} | {} | {done} of {pairs} | {} | {:.0} | {round_trip} | {:.0} | {cpu:.2} | {per_packet:.1} | {:.2} | {:.0} |",
        variant.label,
        report.packets_switched,
        report.per_second(report.packets_switched),
        report.per_second(report.quanta),
        report.wall.as_secs_f64(),
        report.per_second(busy)
    )
}
