//! `denali run`: boots a guest in a new VM and runs it to the end.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use denali_engine::{Engine, Interpreter};
use denali_kernel::devices::pcap::Capture;
use denali_kernel::{DiskImage, Outcome, Switch, Vm, VmConfig, VmError};

use crate::args::{EngineKind, RunArgs};
use crate::dump;
use crate::error::Failure;
use crate::source::{self, io_reason};

/// Exit status when --max-instructions stopped the guest.
pub const EXIT_LIMIT: u8 = 124;
/// Exit status when the guest faulted.
pub const EXIT_FAULT: u8 = 125;

/// Why `--engine jit` cannot run here.
pub(crate) const NO_JIT: &str = "the JIT needs an x86-64 host with BMI2; use --engine interp";

pub fn run(args: &RunArgs) -> Result<u8, Failure> {
    let source = source::load(&args.source)?;
    // Open output files before running, so a bad path fails at once and not after a long run.
    let dump_file = args.dump_state.as_deref().map(create).transpose()?;
    let trace: Option<Box<dyn Write + Send>> = match &args.trace_file {
        Some(path) => Some(Box::new(BufWriter::new(create(path)?))),
        None if args.trace => Some(Box::new(io::stderr())),
        None => None,
    };
    let engine: Box<dyn Engine> = match args.engine {
        EngineKind::Interp => Box::new(Interpreter::new()),
        EngineKind::Jit => Box::new(denali_jit::Jit::new().ok_or_else(|| Failure::host(NO_JIT))?),
    };
    // Placement first, so that a bad image fails before memory is reserved.
    let config = VmConfig { mem_size: args.mem, vm_id: 0 };
    let vm = source.image.check_fits(config.mem_size).map_err(VmError::Load).and_then(|()| {
        let memory = args.memory.new_memory(args.engine, config.mem_size)?;
        Vm::new_in(&source.image, memory, config.vm_id, engine, Box::new(io::stdout()))
    });
    let mut vm = vm.map_err(|e| match e {
        VmError::Load(e) => Failure::input(format!("{}: {e}", source.name)),
        VmError::Memory(e) => Failure::host(e),
    })?;
    if let Some(trace) = trace {
        vm.set_trace(trace);
    }
    let switch = attach_devices(&mut vm, args)?;
    let outcome = vm.run(args.max_instructions).map_err(|e| Failure::host(format!("writing guest output: {e}")))?;
    if let (Some(switch), Some(path)) = (switch, &args.pcap) {
        switch
            .finish_capture()
            .map_err(|e| Failure::host(format!("{}: cannot write: {}", path.display(), io_reason(&e))))?;
    }
    if let (Some(mut file), Some(path)) = (dump_file, &args.dump_state) {
        file.write_all(dump::render(&outcome, vm.cpu()).as_bytes())
            .map_err(|e| Failure::host(format!("{}: cannot write: {}", path.display(), io_reason(&e))))?;
    }
    Ok(match outcome {
        #[allow(clippy::cast_possible_truncation, reason = "a process exit status is the low 8 bits")]
        Outcome::Terminated(status) => (status & 0xFF) as u8,
        Outcome::Fault(fault) => {
            eprintln!("denali: {fault}");
            EXIT_FAULT
        }
        Outcome::Limit => {
            eprintln!("denali: stopped after {} instructions (--max-instructions)", vm.cpu().instructions);
            EXIT_LIMIT
        }
    })
}

/// Attaches the disks, keyboard input and capturing switch the options ask for; returns the
/// switch when there is a capture to finish.
fn attach_devices(vm: &mut Vm, args: &RunArgs) -> Result<Option<std::sync::Arc<Switch>>, Failure> {
    for disk in &args.disk {
        let image = DiskImage::open(&disk.path, disk.read_only).map_err(|e| Failure::input(e.to_string()))?;
        vm.attach_disk(image);
    }
    if let Some(path) = &args.keyboard_script {
        let script = std::fs::read(path)
            .map_err(|e| Failure::input(format!("{}: cannot read: {}", path.display(), io_reason(&e))))?;
        vm.add_keyboard_script(&script);
    }
    if args.keyboard_stdin {
        // The reader thread blocks on stdin for as long as the process lives; it ends with it.
        drop(vm.keyboard_input().spawn_reader(io::stdin()));
    }
    let Some(path) = &args.pcap else { return Ok(None) };
    let capture = Capture::create(path)
        .map_err(|e| Failure::input(format!("{}: cannot create: {}", path.display(), io_reason(&e))))?;
    let switch = Switch::with_capture(capture);
    vm.connect_switch(&switch);
    Ok(Some(switch))
}

fn create(path: &Path) -> Result<File, Failure> {
    File::create(path).map_err(|e| Failure::input(format!("{}: cannot create: {}", path.display(), io_reason(&e))))
}
