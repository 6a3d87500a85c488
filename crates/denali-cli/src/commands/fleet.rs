//! `denali fleet`: boots COUNT VMs of one image under the fleet scheduler and prints a
//! summary (for humans, or one JSON object with `--json`).

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use denali_engine::{Engine, Interpreter};
use denali_fleet::{ConsoleFactory, EngineFactory, Fleet, FleetConfig, FleetReport, InterruptMode, VmEnd, VmSpec};

use crate::args::{ConsoleMode, EngineKind, FleetArgs};
use crate::commands::run::{EXIT_FAULT, NO_JIT};
use crate::error::Failure;
use crate::source::{self, io_reason};

pub fn fleet(args: &FleetArgs) -> Result<u8, Failure> {
    let source = source::load(&args.source)?;
    // Every VM would fail to boot the same way: say so once.
    source.image.check_fits(args.mem).map_err(|e| Failure::input(format!("{}: {e}", source.name)))?;
    let engine = engine_factory(args.engine)?;
    let mut config = FleetConfig::new();
    if let Some(threads) = args.threads {
        config.threads = usize::try_from(threads).unwrap_or(usize::MAX);
    }
    config.quantum = args.quantum;
    config.interrupts = if args.sync_interrupts { InterruptMode::Synchronous } else { InterruptMode::Batched };
    config.mem_budget = args.mem_budget;
    config.instruction_limit = args.max_instructions;
    config.engine = engine;
    config.console = console_factory(&args.console)?;
    let count = usize::try_from(args.count).map_err(|_| Failure::input("--count is too large for this host"))?;
    let image = Arc::new(source.image);
    let specs = vec![VmSpec { image, mem_size: args.mem }; count];
    let fleet = Fleet::new(config);
    let progress = (args.progress || io::stderr().is_terminal()).then(|| spawn_progress(&fleet));
    let report = fleet.run(&specs);
    if let Some((stop, handle)) = progress {
        stop.store(true, Ordering::SeqCst);
        let _ = handle.join();
        eprint!("\r\x1b[K");
    }
    for vm in &report.vms {
        match &vm.end {
            VmEnd::Fault(fault) => eprintln!("denali: vm {}: {fault}", vm.id),
            VmEnd::BootFailed(why) => eprintln!("denali: vm {}: cannot boot: {why}", vm.id),
            VmEnd::HostError(why) => eprintln!("denali: vm {}: {why}", vm.id),
            _ => {}
        }
    }
    let summary = if args.json { json(&report) } else { human(&report) };
    writeln!(io::stdout().lock(), "{summary}").map_err(|e| Failure::host(format!("writing to stdout: {e}")))?;
    let failed = report.vms.iter().any(|v| matches!(v.end, VmEnd::Fault(_) | VmEnd::BootFailed(_)));
    let host = report.vms.iter().any(|v| matches!(v.end, VmEnd::HostError(_)));
    Ok(if failed {
        EXIT_FAULT
    } else if host {
        1
    } else {
        0
    })
}

/// Makes each VM's engine; fails before anything boots if this host cannot run the JIT.
pub fn engine_factory(kind: EngineKind) -> Result<EngineFactory, Failure> {
    Ok(match kind {
        EngineKind::Interp => Arc::new(|| Box::new(Interpreter::new()) as Box<dyn Engine>),
        EngineKind::Jit => {
            denali_jit::Jit::new().ok_or_else(|| Failure::host(NO_JIT))?;
            Arc::new(|| match denali_jit::Jit::new() {
                Some(jit) => Box::new(jit) as Box<dyn Engine>,
                None => Box::new(Interpreter::new()),
            })
        }
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

fn console_factory(mode: &ConsoleMode) -> Result<ConsoleFactory, Failure> {
    Ok(match mode {
        ConsoleMode::None => Arc::new(|_| Ok(Box::new(io::sink()) as Box<dyn Write>)),
        ConsoleMode::Prefix => Arc::new(|id| Ok(Box::new(Prefixed { id, line: Vec::new() }) as Box<dyn Write>)),
        ConsoleMode::Files(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::input(format!("{}: cannot create: {}", dir.display(), io_reason(&e))))?;
            let dir = dir.clone();
            Arc::new(move |id| open(&dir, id))
        }
    })
}

fn open(dir: &Path, id: u32) -> io::Result<Box<dyn Write>> {
    Ok(Box::new(BufWriter::new(File::create(dir.join(format!("vm-{id}.txt")))?)))
}

/// A console that writes whole lines to stdout, each prefixed with the VM id, so the output
/// of many VMs interleaves by line and not by byte.
struct Prefixed {
    id: u32,
    line: Vec<u8>,
}

impl Prefixed {
    fn emit(&mut self) -> io::Result<()> {
        let mut out = format!("[vm {}] ", self.id).into_bytes();
        out.append(&mut self.line);
        if out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        io::stdout().lock().write_all(&out)
    }
}

impl Write for Prefixed {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        for &b in bytes {
            self.line.push(b);
            if b == b'\n' {
                self.emit()?;
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

impl Drop for Prefixed {
    fn drop(&mut self) {
        // A last line without a newline is still shown when the VM ends.
        if !self.line.is_empty() {
            let _ = self.emit();
        }
    }
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
