//! `denali experiment`: the paper's three experiments (README.md, "Experiments"), each a series
//! of `pingpong` fleets. The variants of one fleet size run one after the other, so they see
//! the same machine; the result is a Markdown table on stdout.

use std::io::{self, Write};
use std::sync::Arc;

use denali_fleet::{EngineFactory, Fleet, FleetConfig, FleetReport, InterruptMode, VmEnd, VmSpec};
use denali_kernel::Image;

use crate::args::{ExperimentArgs, ExperimentKind};
use crate::commands::fleet::engine_factory;
use crate::error::Failure;

/// Guest memory of every VM: the pingpong guests fit in 64 KiB.
const MEM_SIZE: u32 = 64 << 10;
/// Each fleet may retire at least this many instructions, so small fleets run long enough to
/// time.
const MIN_INSTRUCTIONS: u64 = 50_000_000;

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
    let threads = match args.threads {
        Some(threads) => usize::try_from(threads).unwrap_or(usize::MAX),
        None => FleetConfig::new().threads,
    };
    let mut out = io::stdout().lock();
    let write_err = |e: io::Error| Failure::host(format!("writing to stdout: {e}"));
    writeln!(
        out,
        "{:?} engine, {threads} worker threads, {} KiB per VM, at most {per_vm} instructions per VM \
         (at least {MIN_INSTRUCTIONS} per fleet)\n",
        args.engine,
        MEM_SIZE >> 10
    )
    .and_then(|()| writeln!(out, "{}", HEADER))
    .map_err(write_err)?;
    for &count in counts {
        let count = usize::try_from(count).map_err(|_| Failure::input("--counts: too large for this host"))?;
        let limit = (count as u64).saturating_mul(per_vm).max(MIN_INSTRUCTIONS);
        for variant in variants {
            let report = run(variant, count, threads, limit, &engine)?;
            writeln!(out, "{}", row(variant, count, &report)).and_then(|()| out.flush()).map_err(write_err)?;
        }
    }
    Ok(0)
}

fn run(
    variant: &Variant,
    count: usize,
    threads: usize,
    limit: u64,
    engine: &EngineFactory,
) -> Result<FleetReport, Failure> {
    let example = denali_examples::find(variant.example)
        .ok_or_else(|| Failure::host(format!("the {} example is not bundled", variant.example)))?;
    let image = Image::from_elf(example.elf).map_err(|e| Failure::host(format!("{}: {e}", example.name)))?;
    let config = FleetConfig {
        threads,
        interrupts: variant.interrupts,
        instruction_limit: Some(limit),
        engine: Arc::clone(engine),
        ..FleetConfig::new()
    };
    let specs = vec![VmSpec { image: Arc::new(image), mem_size: MEM_SIZE }; count];
    let report = Fleet::new(config).run(&specs);
    // A VM that faulted or gave up would make the figures meaningless: say so, loudly.
    if report.faulted > 0 || report.exited_nonzero() > 0 {
        return Err(Failure::host(format!(
            "{} VMs of {} ({}): {} faulted, {} exited with a non-zero status",
            count,
            variant.example,
            variant.label,
            report.faulted,
            report.exited_nonzero()
        )));
    }
    Ok(report)
}

const HEADER: &str = "\
| VMs | variant | packets switched | packets/s | context switches/s | VM CPU s | CPU us per packet | wall s | pairs done |
|---:|---|---:|---:|---:|---:|---:|---:|---:|";

fn row(variant: &Variant, count: usize, report: &FleetReport) -> String {
    let cpu = report.vm_cpu_time().as_secs_f64();
    let per_packet = if report.packets_switched == 0 { 0.0 } else { cpu * 1e6 / report.packets_switched as f64 };
    let done = report.vms.iter().filter(|v| v.end == VmEnd::Terminated(0)).count() / 2;
    format!(
        "| {count} | {} | {} | {:.0} | {:.0} | {cpu:.2} | {per_packet:.1} | {:.2} | {done} of {} |",
        variant.label,
        report.packets_switched,
        report.per_second(report.packets_switched),
        report.per_second(report.quanta),
        report.wall.as_secs_f64(),
        count / 2
    )
}
