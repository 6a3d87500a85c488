//! `denali run`: boots a guest in a new VM and runs it to the end.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use denali_engine::{Engine, Interpreter};
use denali_kernel::{Outcome, Vm, VmConfig, VmError};

use crate::args::{EngineKind, RunArgs};
use crate::dump;
use crate::error::Failure;
use crate::source::{self, io_reason};

/// Exit status when --max-instructions stopped the guest.
pub const EXIT_LIMIT: u8 = 124;
/// Exit status when the guest faulted.
pub const EXIT_FAULT: u8 = 125;

pub fn run(args: &RunArgs) -> Result<u8, Failure> {
    let source = source::load(&args.source)?;
    // Open output files before running, so a bad path fails at once and not after a long run.
    let dump_file = args.dump_state.as_deref().map(create).transpose()?;
    let trace: Option<Box<dyn Write>> = match &args.trace_file {
        Some(path) => Some(Box::new(BufWriter::new(create(path)?))),
        None if args.trace => Some(Box::new(io::stderr())),
        None => None,
    };
    let engine: Box<dyn Engine> = match args.engine {
        EngineKind::Interp => Box::new(Interpreter::new()),
    };
    let config = VmConfig { mem_size: args.mem, vm_id: 0 };
    let mut vm = Vm::new(&source.image, config, engine, Box::new(io::stdout())).map_err(|e| match e {
        VmError::Load(e) => Failure::input(format!("{}: {e}", source.name)),
        VmError::Memory(e) => Failure::host(e),
    })?;
    if let Some(trace) = trace {
        vm.set_trace(trace);
    }
    let outcome = vm.run(args.max_instructions).map_err(|e| Failure::host(format!("writing guest output: {e}")))?;
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

fn create(path: &Path) -> Result<File, Failure> {
    File::create(path).map_err(|e| Failure::input(format!("{}: cannot create: {}", path.display(), io_reason(&e))))
}
