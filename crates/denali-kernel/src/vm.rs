//! One virtual machine: memory, CPU, engine and devices, and the run loop that serves the
//! engine's exits.
//!
//! The loop runs the engine in slices of at most [`SLICE`] instructions. At the start of each
//! slice the kernel refreshes `TIME_US` and delivers pending interrupts; between slices it
//! performs what the engine exited for (I/O, idle, terminate, exceptions).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use denali_abi::vreg;
use denali_engine::{Cpu, Engine, Exception, ExceptionKind, Exit, GuestMemory, MemoryError, OutOfBounds, reg};

use crate::console::Console;
use crate::diagnostic::{Fault, FaultCause};
use crate::image::{Image, LoadError};
use crate::ports::{self, PortAction};
use crate::{delivery, disasm, trace, vregs};

/// Instructions per slice: one millisecond at the nominal `CPU_KHZ`, so `TIME_US` and
/// interrupt delivery lag the guest by at most that much.
pub const SLICE: u64 = vregs::NOMINAL_CPU_KHZ as u64;

/// How a VM is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmConfig {
    /// Guest memory size in bytes: a multiple of the page size, from `MIN_MEM_SIZE` to
    /// `MAX_MEM_SIZE`.
    pub mem_size: u32,
    /// The VM's id within its kernel, shown to the guest as `VM_ID` and in its MAC address.
    pub vm_id: u32,
}

impl Default for VmConfig {
    fn default() -> VmConfig {
        VmConfig { mem_size: 16 << 20, vm_id: 0 }
    }
}

/// Why a VM could not be created.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest executed TERMINATE with this status.
    Terminated(u32),
    /// The guest stopped on a fatal fault.
    Fault(Box<Fault>),
    /// The instruction limit given to [`Vm::run`] was reached; running again continues.
    Limit,
}

/// A Denali virtual machine.
pub struct Vm {
    memory: GuestMemory,
    cpu: Cpu,
    engine: Box<dyn Engine>,
    console: Console,
    trace: Option<Box<dyn Write>>,
    id: u32,
    boot: Instant,
    /// The retired-instruction count right after the last exception delivery: an exception
    /// raised while it is unchanged came from the handler's first instruction, which would
    /// loop forever (each attempt pushing another frame) rather than make progress.
    delivered_at: Option<u64>,
    /// Set once the guest terminated or faulted: a stopped VM stays stopped.
    stopped: Option<Outcome>,
}

impl Vm {
    /// Creates guest memory, writes the register page, loads `image` and points the CPU at its
    /// entry with the stack at the top of memory.
    pub fn new(
        image: &Image,
        config: VmConfig,
        engine: Box<dyn Engine>,
        console: Box<dyn Write>,
    ) -> Result<Vm, VmError> {
        // Check placement before mapping memory, so a bad image fails without the cost.
        image.check_fits(config.mem_size)?;
        let mut memory = GuestMemory::new(u64::from(config.mem_size))?;
        vregs::init(&mut memory, config.vm_id);
        image.load_into(&mut memory)?;
        let cpu = Cpu::new(image.entry, memory.size());
        Ok(Vm {
            memory,
            cpu,
            engine,
            console: Console::new(console),
            trace: None,
            id: config.vm_id,
            boot: Instant::now(),
            delivered_at: None,
            stopped: None,
        })
    }

    /// Sends a trace line for every instruction to `out`. Tracing runs the engine one
    /// instruction at a time, so it is slow.
    pub fn set_trace(&mut self, out: Box<dyn Write>) {
        self.trace = Some(out);
    }

    pub fn cpu(&self) -> &Cpu {
        &self.cpu
    }

    pub fn cpu_mut(&mut self) -> &mut Cpu {
        &mut self.cpu
    }

    pub fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    pub fn memory_mut(&mut self) -> &mut GuestMemory {
        &mut self.memory
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// Marks interrupt sources pending (a mask of `1 << denali_abi::irq::*` bits). They are
    /// delivered at the next slice start once the guest enables interrupts.
    pub fn raise_interrupts(&mut self, mask: u32) {
        let pending = vregs::read(&self.memory, vreg::IRQ_PENDING);
        vregs::write_u32(&mut self.memory, vreg::IRQ_PENDING, pending | mask);
    }

    /// Runs the guest until it terminates, faults, or has retired `max_instructions`
    /// instructions in total since boot. Errors are host I/O errors of the console or trace.
    pub fn run(&mut self, max_instructions: Option<u64>) -> io::Result<Outcome> {
        if let Some(outcome) = &self.stopped {
            return Ok(outcome.clone());
        }
        let result = self.run_slices(max_instructions);
        // Flush even when the run failed, so that output written before the error is kept.
        let flushed = self.console.flush();
        let trace_flushed = self.trace.as_mut().map_or(Ok(()), |t| t.flush());
        let outcome = result?;
        flushed?;
        trace_flushed?;
        if outcome != Outcome::Limit {
            self.stopped = Some(outcome.clone());
        }
        Ok(outcome)
    }

    fn run_slices(&mut self, max_instructions: Option<u64>) -> io::Result<Outcome> {
        loop {
            let remaining = match max_instructions {
                Some(max) if self.cpu.instructions >= max => return Ok(Outcome::Limit),
                Some(max) => max - self.cpu.instructions,
                None => u64::MAX,
            };
            self.refresh_time();
            if let Err(OutOfBounds(stack_addr)) = delivery::deliver_interrupts(&mut self.cpu, &mut self.memory) {
                return Ok(self.fault(FaultCause::InterruptFrame { stack_addr }));
            }
            let budget = match &mut self.trace {
                Some(out) => {
                    trace::write_line(out, &self.cpu, &self.memory)?;
                    1
                }
                None => SLICE.min(remaining),
            };
            let exit = self.engine.run(&mut self.cpu, &mut self.memory, budget);
            if let Some(outcome) = self.serve(exit)? {
                return Ok(outcome);
            }
        }
    }

    /// Performs what the engine exited for; `Some` when the VM stops.
    fn serve(&mut self, exit: Exit) -> io::Result<Option<Outcome>> {
        match exit {
            Exit::BudgetExhausted => Ok(None),
            Exit::PortIn { port, width, len } => {
                let action = ports::port_in(port, width, &mut self.console)?;
                Ok(self.complete_io(action, true, len))
            }
            Exit::PortOut { port, width, value, len } => {
                let action = ports::port_out(port, width, value, &mut self.memory, &mut self.console)?;
                Ok(self.complete_io(action, false, len))
            }
            Exit::Idle { timeout_us, len } => self.idle(timeout_us, len),
            Exit::Terminate { status, len } => {
                self.cpu.retire(len);
                Ok(Some(Outcome::Terminated(status)))
            }
            Exit::Exception(exception) => Ok(self.exception(exception)),
        }
    }

    fn complete_io(&mut self, action: PortAction, is_in: bool, len: u8) -> Option<Outcome> {
        match action {
            PortAction::Done(value) => {
                if is_in {
                    self.cpu.regs[reg::EAX] = value;
                }
                self.cpu.retire(len);
                self.refresh_time();
                None
            }
            PortAction::Fault => self.exception(Exception { kind: ExceptionKind::Port, eip: self.cpu.eip, addr: 0 }),
        }
    }

    /// The virtual IDLE instruction. No device raises interrupts yet, so an idle either finds
    /// an interrupt already pending and enabled, or sleeps out its timeout.
    fn idle(&mut self, timeout_us: u32, len: u8) -> io::Result<Option<Outcome>> {
        let wake =
            vregs::read(&self.memory, vreg::IRQ_ENABLE) != 0 && vregs::read(&self.memory, vreg::IRQ_PENDING) != 0;
        let eax = if wake {
            1
        } else if timeout_us == u32::MAX {
            return Ok(Some(self.fault(FaultCause::IdleForever)));
        } else {
            // The guest may be waiting for a user to read what it wrote.
            self.console.flush()?;
            std::thread::sleep(Duration::from_micros(u64::from(timeout_us)));
            0
        };
        self.cpu.regs[reg::EAX] = eax;
        self.cpu.retire(len);
        self.refresh_time();
        Ok(None)
    }

    fn exception(&mut self, exception: Exception) -> Option<Outcome> {
        if self.delivered_at == Some(self.cpu.instructions) && self.cpu.eip == exception.eip {
            vregs::record_fault(&mut self.memory, &exception);
            return Some(self.fault(FaultCause::DoubleFault { exception, stack_addr: None }));
        }
        match delivery::deliver_exception(&mut self.cpu, &mut self.memory, &exception) {
            Ok(true) => {
                self.delivered_at = Some(self.cpu.instructions);
                None
            }
            Ok(false) => Some(self.fault(FaultCause::Unhandled(exception))),
            Err(OutOfBounds(stack_addr)) => {
                Some(self.fault(FaultCause::DoubleFault { exception, stack_addr: Some(stack_addr) }))
            }
        }
    }

    fn fault(&self, cause: FaultCause) -> Outcome {
        let (bytes, disasm) = disasm::at(&self.memory, self.cpu.eip);
        Outcome::Fault(Box::new(Fault { cause, cpu: self.cpu, bytes, disasm }))
    }

    fn refresh_time(&mut self) {
        let micros = u64::try_from(self.boot.elapsed().as_micros()).unwrap_or(u64::MAX);
        vregs::set_time(&mut self.memory, micros);
    }
}
