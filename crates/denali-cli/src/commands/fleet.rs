//! `denali fleet`: boots a fleet of VMs under the scheduler and prints a summary (for humans,
//! or one JSON object with `--json`). The fleet is COUNT VMs of one image, or the mixed fleet a
//! manifest describes (`crate::manifest`); either way it becomes a [`plan::Plan`] first.

pub mod console;
pub mod plan;

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use denali_fleet::{Fleet, FleetReport, InterruptMode, VmEnd};

use crate::args::{ConsoleMode, EngineKind, FleetArgs};
use crate::commands::run::EXIT_FAULT;
use crate::error::Failure;
use crate::manifest;
use crate::source::{self, io_reason};
use plan::{DiskPlan, GroupPlan, Located, Plan};

/// Memory of each VM when neither `--mem` nor the manifest says.
pub const DEFAULT_MEM: u32 = 16 << 20;
/// Instructions per quantum when neither `--quantum` nor the manifest says.
pub const DEFAULT_QUANTUM: u64 = 10_000;

pub fn fleet(args: &FleetArgs) -> Result<u8, Failure> {
    let plan = match manifest_path(args) {
        Some(path) => {
            refuse_group_options(args)?;
            let mut plan = manifest::load(path)?;
            override_settings(&mut plan, args);
            plan
        }
        None => plan_from_args(args)?,
    };
    let built = plan.build()?;
    let switch = Arc::clone(&built.config.switch);
    let fleet = Fleet::new(built.config);
    let progress = (args.progress || io::stderr().is_terminal()).then(|| spawn_progress(&fleet));
    let report = fleet.run(&built.specs);
    if let Some((stop, handle)) = progress {
        stop.store(true, Ordering::SeqCst);
        let _ = handle.join();
        eprint!("\r\x1b[K");
    }
    if let Some(path) = &built.pcap {
        switch
            .finish_capture()
            .map_err(|e| Failure::host(format!("{}: cannot write: {}", path.display(), io_reason(&e))))?;
    }
    for vm in &report.vms {
        match &vm.end {
            VmEnd::Fault(fault) => eprintln!("denali: vm {}: {fault}", vm.id),
            VmEnd::BootFailed(why) => eprintln!("denali: vm {}: cannot boot: {why}", vm.id),
            VmEnd::HostError(why) => eprintln!("denali: vm {}: {why}", vm.id),
            VmEnd::Deadlocked => eprintln!(
                "denali: vm {}: idles forever: no timeout, no timer, and no VM left running that could wake it",
                vm.id
            ),
            _ => {}
        }
    }
    // The VMs' last lines come before the summary; a failed stdout is a host error (exit 1),
    // as when a VM's own console write fails.
    let console = built.console_lines.finish();
    let summary = if args.json { json(&report) } else { human(&report) };
    writeln!(io::stdout().lock(), "{summary}").map_err(|e| Failure::host(format!("writing to stdout: {e}")))?;
    let failed = report.vms.iter().any(|v| matches!(v.end, VmEnd::Fault(_) | VmEnd::BootFailed(_) | VmEnd::Deadlocked));
    if let Err(e) = &console {
        eprintln!("denali: writing the console output to stdout: {e}");
    }
    let host = console.is_err() || report.vms.iter().any(|v| matches!(v.end, VmEnd::HostError(_)));
    Ok(if failed {
        EXIT_FAULT
    } else if host {
        1
    } else {
        0
    })
}

/// The manifest named by IMAGE, if its name ends in `.toml`.
fn manifest_path(args: &FleetArgs) -> Option<&Path> {
    args.source.image.as_deref().filter(|path| path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("toml")))
}

/// Options that describe the VMs themselves belong in the manifest's groups.
fn refuse_group_options(args: &FleetArgs) -> Result<(), Failure> {
    let given = [
        ("--count", args.count.is_some()),
        ("--mem", args.mem.is_some()),
        ("--disk", !args.disk.is_empty()),
        ("--keyboard-script", args.keyboard_script.is_some()),
    ];
    match given.iter().find(|(_, given)| *given) {
        Some((option, _)) => Err(Failure::input(format!(
            "{option} cannot be used with a manifest: set it in the manifest's [[group]] tables"
        ))),
        None => Ok(()),
    }
}

/// Command-line options override the manifest's fleet-wide settings.
fn override_settings(plan: &mut Plan, args: &FleetArgs) {
    if args.threads.is_some() {
        plan.threads = args.threads;
    }
    if let Some(quantum) = args.quantum {
        plan.quantum = quantum;
    }
    if args.sync_interrupts {
        plan.interrupts = InterruptMode::Synchronous;
    }
    if args.mem_budget.is_some() {
        plan.mem_budget = args.mem_budget;
    }
    if args.max_instructions.is_some() {
        plan.max_instructions = args.max_instructions;
    }
    if let Some(engine) = args.engine {
        plan.engine = engine;
    }
    if let Some(console) = &args.console {
        // The command line's choice is for every VM.
        plan.console = Located::new(console.clone(), "--console");
        for group in &mut plan.groups {
            group.console = None;
        }
    }
    if let Some(pcap) = &args.pcap {
        plan.pcap = Some(Located::new(pcap.clone(), "--pcap"));
    }
    if let Some(id) = args.keyboard_stdin {
        plan.keyboard_stdin = Some(Located::new(id, "--keyboard-stdin"));
    }
}

/// COUNT VMs of the image the options name.
fn plan_from_args(args: &FleetArgs) -> Result<Plan, Failure> {
    let count = args.count.ok_or_else(|| Failure::input("--count N is needed (or give a MANIFEST.toml)"))?;
    let count = u32::try_from(count).map_err(|_| Failure::input("--count is more than 32-bit VM ids can number"))?;
    let mem = args.mem.unwrap_or(DEFAULT_MEM);
    let source = source::load(&args.source)?;
    // Every VM would fail to boot the same way: say so once.
    source.image.check_fits(mem).map_err(|e| Failure::input(format!("{}: {e}", source.name)))?;
    let keyboard_script = match &args.keyboard_script {
        Some(path) => Some(Arc::from(
            std::fs::read(path)
                .map_err(|e| Failure::input(format!("{}: cannot read: {}", path.display(), io_reason(&e))))?,
        )),
        None => None,
    };
    let disks = args
        .disk
        .iter()
        .map(|d| Located::new(DiskPlan { path: d.path.clone(), read_only: d.read_only, create_size: None }, "--disk"))
        .collect();
    let group = GroupPlan {
        image: Arc::new(source.image),
        count,
        mem,
        engine: None,
        disks,
        keyboard_script,
        console: None,
        network: true,
    };
    Ok(Plan {
        groups: vec![group],
        threads: args.threads,
        quantum: args.quantum.unwrap_or(DEFAULT_QUANTUM),
        interrupts: if args.sync_interrupts { InterruptMode::Synchronous } else { InterruptMode::Batched },
        mem_budget: args.mem_budget,
        max_instructions: args.max_instructions,
        engine: args.engine.unwrap_or_else(EngineKind::host_default),
        console: Located::new(args.console.clone().unwrap_or(ConsoleMode::Prefix), "--console"),
        pcap: args.pcap.clone().map(|p| Located::new(p, "--pcap")),
        keyboard_stdin: args.keyboard_stdin.map(|id| Located::new(id, "--keyboard-stdin")),
    })
}

/// Prints booted/live counts on stderr every 100 ms until told to stop.
fn spawn_progress(fleet: &Fleet) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let counters = fleet.counters();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            let c = &counters;
            eprint!(
                "\r\x1b[Kbooted {}/{}, live {}, ended {}",
                c.booted.load(Ordering::Relaxed),
                c.total.load(Ordering::Relaxed),
                c.live.load(Ordering::Relaxed),
                c.ended.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (stop, handle)
}

fn boot_us_per_vm(report: &FleetReport) -> f64 {
    if report.booted == 0 { 0.0 } else { report.boot_time.as_secs_f64() * 1e6 / report.booted as f64 }
}

fn json(report: &FleetReport) -> String {
    serde_json::json!({
        "vms_booted": report.booted,
        "vms_completed": report.completed,
        "vms_faulted": report.faulted,
        "peak_live_vms": report.peak_live,
        "boot_us_per_vm": boot_us_per_vm(report),
        "wall_s": report.wall.as_secs_f64(),
        "peak_rss_bytes": denali_fleet::peak_rss_bytes(),
        "context_switches_per_s": report.per_second(report.quanta),
        "guest_instructions_per_s": report.per_second(report.instructions),
        "packets_switched": report.packets_switched,
        "packets_per_s": report.per_second(report.packets_switched),
        "packets_dropped": report.packets_dropped,
        "vms_exit_nonzero": report.exited_nonzero(),
        "vm_cpu_s": report.vm_cpu_time().as_secs_f64(),
        "max_vm_cpu_s": report.max_vm_cpu_time().as_secs_f64(),
        "quanta": report.quanta,
        "guest_instructions": report.instructions,
        "worker_busy_s": report.worker_busy.as_secs_f64(),
    })
    .to_string()
}

fn human(report: &FleetReport) -> String {
    format!(
        "fleet: {} booted, {} completed, {} faulted, peak {} live\n\
         boot {:.1} us per VM; wall {:.3} s; workers busy {:.3} s; peak RSS {} KiB\n\
         {} quanta ({:.0}/s), {} guest instructions ({:.0}/s), {} packets switched ({:.0}/s), {} dropped\n\
         VM CPU {:.3} s in all; {} VMs exited with a non-zero status",
        report.booted,
        report.completed,
        report.faulted,
        report.peak_live,
        boot_us_per_vm(report),
        report.wall.as_secs_f64(),
        report.worker_busy.as_secs_f64(),
        denali_fleet::peak_rss_bytes() / 1024,
        report.quanta,
        report.per_second(report.quanta),
        report.instructions,
        report.per_second(report.instructions),
        report.packets_switched,
        report.per_second(report.packets_switched),
        report.packets_dropped,
        report.vm_cpu_time().as_secs_f64(),
        report.exited_nonzero()
    )
}
