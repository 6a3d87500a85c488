//! One virtual machine: memory, CPU, engine and devices, and the run loop that serves the
//! engine's exits.
//!
//! The loop runs the engine in slices of at most [`SLICE`] instructions. At the start of each
//! slice the kernel polls the devices (completing disk requests, expiring the timer, taking in
//! input and frames), refreshes `TIME_US` and delivers pending interrupts; between slices it
//! performs what the engine exited for (I/O, idle, terminate, exceptions). Time comes from the
//! VM's [`Clock`], so tests and schedulers can drive it.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use denali_abi::vreg;
use denali_engine::{Cpu, Engine, Exception, ExceptionKind, Exit, GuestMemory, MemoryError, OutOfBounds, reg};

use crate::boot_image::BootImage;
use crate::console::Console;
use crate::devices::Devices;
use crate::devices::clock::{Clock, Doorbell, HostClock};
use crate::devices::disk::DiskImage;
use crate::devices::keyboard::KeyboardInput;
use crate::devices::switch::{PortId, Switch};
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
    trace: Option<Box<dyn Write + Send>>,
    id: u32,
    devices: Devices,
    clock: Arc<dyn Clock>,
    /// The clock's time at boot: the origin of `TIME_US` and of device times.
    boot: Duration,
    /// The latest time the VM was given, in microseconds since boot: its time never goes
    /// back, even if two threads' readings of a clock disagree by a little.
    time_us: u64,
    /// Devices are polled at slice boundaries: when the engine used up a slice budget, after
    /// an idle, or once a slice's worth of instructions retired through other exits. Not after
    /// every I/O exit, so requests really are asynchronous and queues can fill.
    poll_due: bool,
    /// The retired-instruction count at the last poll.
    polled_at: u64,
    /// The retired-instruction count right after the last exception delivery: an exception
    /// raised while it is unchanged came from the handler's first instruction, which would
    /// loop forever (each attempt pushing another frame) rather than make progress.
    delivered_at: Option<u64>,
    /// Set once the guest terminated or faulted: a stopped VM stays stopped.
    stopped: Option<Outcome>,
    /// Set while the guest is inside an IDLE instruction: it retires when the idle ends.
    idling: Option<Idling>,
}

/// What one call of [`Vm::run_quantum`] left the VM doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quantum {
    /// The budget ran out; the VM is ready to run again.
    Ran,
    /// The guest idles: run it again at `until` (a time on the VM's [`Clock`]), or when its
    /// doorbell rings; `None`: only the doorbell can end the idle.
    Idle { until: Option<Duration> },
    /// The guest terminated or faulted (never [`Outcome::Limit`]); every later call says so.
    Stopped(Outcome),
}

/// An IDLE instruction in progress.
#[derive(Debug, Clone, Copy)]
struct Idling {
    /// When the timeout passes, in microseconds since boot; `None`: no timeout.
    deadline: Option<u64>,
    /// The instruction's length, retired when the idle ends.
    len: u8,
}

/// What [`Vm::idle_step`] decided.
enum IdleStep {
    /// The idle ended; EAX holds why.
    Done,
    /// The idle goes on, until this clock time at the latest.
    Wait(Option<Duration>),
    /// The idle can never end.
    Stop(Outcome),
}

impl Vm {
    /// Creates guest memory, writes the register page, loads `image` and points the CPU at its
    /// entry with the stack at the top of memory.
    pub fn new(
        image: &Image,
        config: VmConfig,
        engine: Box<dyn Engine>,
        console: Box<dyn Write + Send>,
    ) -> Result<Vm, VmError> {
        // Check placement before mapping memory, so a bad image fails without the cost.
        image.check_fits(config.mem_size)?;
        let memory = GuestMemory::new(u64::from(config.mem_size))?;
        Vm::new_in(image, memory, config.vm_id, engine, console)
    }

    /// Like [`Vm::new`], in `memory` (fresh, zeroed; its size is the VM's): e.g. a guarded
    /// memory (`GuestMemory::guarded`), in which the JIT runs without inline bounds checks.
    pub fn new_in(
        image: &Image,
        mut memory: GuestMemory,
        vm_id: u32,
        engine: Box<dyn Engine>,
        console: Box<dyn Write + Send>,
    ) -> Result<Vm, VmError> {
        image.check_fits(memory.size())?;
        image.load_into(&mut memory)?;
        Ok(Vm::boot(memory, image.entry, vm_id, engine, console))
    }

    /// Boots a VM from an image laid out once ([`BootImage`]): its memory starts as the
    /// template's (sharing the pages it does not write where the host allows), so nothing is
    /// parsed, checked or copied per VM.
    pub fn from_boot_image(
        boot: &BootImage,
        vm_id: u32,
        engine: Box<dyn Engine>,
        console: Box<dyn Write + Send>,
    ) -> Result<Vm, VmError> {
        let memory = GuestMemory::from_template(boot.memory())?;
        Ok(Vm::boot(memory, boot.entry(), vm_id, engine, console))
    }

    /// Writes the register page and sets up the CPU and devices over loaded memory.
    fn boot(
        mut memory: GuestMemory,
        entry: u32,
        id: u32,
        engine: Box<dyn Engine>,
        console: Box<dyn Write + Send>,
    ) -> Vm {
        vregs::init(&mut memory, id);
        let cpu = Cpu::new(entry, memory.size());
        let clock: Arc<dyn Clock> = Arc::new(HostClock::new());
        Vm {
            memory,
            cpu,
            engine,
            console: Console::new(console),
            trace: None,
            id,
            devices: Devices::new(vregs::mac_address(id)),
            boot: clock.now(),
            time_us: 0,
            clock,
            poll_due: true,
            polled_at: 0,
            delivered_at: None,
            stopped: None,
            idling: None,
        }
    }

    /// Sends a trace line for every instruction to `out`. Tracing runs the engine one
    /// instruction at a time, so it is slow.
    pub fn set_trace(&mut self, out: Box<dyn Write + Send>) {
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

    /// Makes `clock` the VM's time source; boot time restarts at its present time. Set it
    /// before running.
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.boot = clock.now();
        self.time_us = 0;
        self.clock = clock;
    }

    /// Attaches `disk` as the next disk index (the first is 0); returns its index.
    pub fn attach_disk(&mut self, disk: Arc<DiskImage>) -> u32 {
        self.devices.disks.attach(disk)
    }

    /// Plugs the VM's NIC into `switch` instead of the private switch it starts on.
    pub fn connect_switch(&mut self, switch: &Arc<Switch>) {
        self.devices.connect(switch, vregs::mac_address(self.id));
    }

    /// The switch the VM's NIC is on, and its port there.
    pub fn switch_port(&self) -> (&Arc<Switch>, PortId) {
        (self.devices.nic.switch(), self.devices.nic.port())
    }

    /// Queues `script` as keyboard input, typed in as the guest reads it.
    pub fn add_keyboard_script(&mut self, script: &[u8]) {
        self.devices.keyboard.add_script(script);
    }

    /// A handle through which another thread (e.g. a reader of stdin) types into the VM's
    /// keyboard; input may arrive until every handle is dropped.
    pub fn keyboard_input(&mut self) -> KeyboardInput {
        self.devices.keyboard.connect(self.devices.bell.clone())
    }

    /// The doorbell that wakes this VM from idle.
    pub fn doorbell(&self) -> Doorbell {
        self.devices.bell.clone()
    }

    /// Whether the guest is inside an IDLE instruction (see [`Quantum::Idle`]).
    pub fn is_idle(&self) -> bool {
        self.idling.is_some()
    }

    /// Marks interrupt sources pending (a mask of `1 << denali_abi::irq::*` bits). They are
    /// delivered at the next slice start once the guest enables interrupts.
    pub fn raise_interrupts(&mut self, mask: u32) {
        let pending = vregs::read(&self.memory, vreg::IRQ_PENDING);
        vregs::write_u32(&mut self.memory, vreg::IRQ_PENDING, pending | mask);
    }

    /// Runs the guest until it terminates, faults, or has retired `max_instructions`
    /// instructions in total since boot. Errors are host I/O errors of the console or trace.
    ///
    /// This is [`Vm::run_quantum`] in a loop that sleeps on the VM's clock whenever the guest
    /// idles, so a single VM and a fleet's scheduler serve exits the same way.
    pub fn run(&mut self, max_instructions: Option<u64>) -> io::Result<Outcome> {
        if let Some(outcome) = &self.stopped {
            return Ok(outcome.clone());
        }
        loop {
            let budget = match max_instructions {
                Some(max) if self.cpu.instructions >= max => return Ok(Outcome::Limit),
                Some(max) => max - self.cpu.instructions,
                None => u64::MAX,
            };
            match self.run_quantum(budget)? {
                Quantum::Ran => {}
                Quantum::Idle { until } => self.clock.wait(until, &self.devices.bell),
                Quantum::Stopped(outcome) => return Ok(outcome),
            }
        }
    }

    /// Runs the guest for at most `budget` instructions (a scheduler's quantum) and says what
    /// it should do next: run again, wait until the guest's idle may end, or forget the VM.
    /// It never sleeps: an idling guest stays inside its IDLE instruction, and the next call
    /// re-checks whether the idle ended (so a spurious call is harmless). Errors are host I/O
    /// errors of the console or trace; output is flushed when the guest idles or stops.
    pub fn run_quantum(&mut self, budget: u64) -> io::Result<Quantum> {
        if let Some(outcome) = &self.stopped {
            return Ok(Quantum::Stopped(outcome.clone()));
        }
        let result = self.run_slices(budget);
        let ended = !matches!(result, Ok(Quantum::Ran));
        // Flush even when the run failed, so that output written before the error is kept;
        // not after every quantum, so a chatty guest still costs few host writes.
        let (flushed, trace_flushed) = if ended {
            (self.console.flush(), self.trace.as_mut().map_or(Ok(()), |t| t.flush()))
        } else {
            (Ok(()), Ok(()))
        };
        let quantum = result?;
        flushed?;
        trace_flushed?;
        if let Quantum::Stopped(outcome) = &quantum {
            self.stopped = Some(outcome.clone());
        }
        Ok(quantum)
    }

    fn run_slices(&mut self, budget: u64) -> io::Result<Quantum> {
        let end = self.cpu.instructions.saturating_add(budget);
        loop {
            if let Some(idling) = self.idling {
                match self.idle_step(idling) {
                    IdleStep::Done => {}
                    IdleStep::Wait(until) => return Ok(Quantum::Idle { until }),
                    IdleStep::Stop(outcome) => return Ok(Quantum::Stopped(outcome)),
                }
            }
            if self.cpu.instructions >= end {
                return Ok(Quantum::Ran);
            }
            let remaining = end - self.cpu.instructions;
            // One clock read serves the poll and TIME_US: reading the host clock is a large
            // part of a VM switch.
            let now = self.now_us();
            if self.poll_due || self.cpu.instructions.saturating_sub(self.polled_at) >= SLICE {
                self.poll_devices_at(now);
            }
            vregs::set_time(&mut self.memory, now);
            if let Err(OutOfBounds(stack_addr)) = delivery::deliver_interrupts(&mut self.cpu, &mut self.memory) {
                return Ok(Quantum::Stopped(self.fault(FaultCause::InterruptFrame { stack_addr })));
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
                return Ok(Quantum::Stopped(outcome));
            }
        }
    }

    /// Performs what the engine exited for; `Some` when the VM stops.
    fn serve(&mut self, exit: Exit) -> io::Result<Option<Outcome>> {
        match exit {
            Exit::BudgetExhausted => {
                self.poll_due = true;
                Ok(None)
            }
            Exit::PortIn { port, width, len } => {
                let action = ports::port_in(port, width, &mut self.console, &mut self.devices)?;
                Ok(self.complete_io(action, true, len))
            }
            Exit::PortOut { port, width, value, len } => {
                let now = self.now_us();
                let action =
                    ports::port_out(port, width, value, &mut self.memory, &mut self.console, &mut self.devices, now)?;
                Ok(self.complete_io(action, false, len))
            }
            Exit::Idle { timeout_us, len } => {
                // The guest may be waiting for a user to read what it wrote.
                self.console.flush()?;
                let start = self.now_us();
                let deadline = (timeout_us != u32::MAX).then(|| start.saturating_add(u64::from(timeout_us)));
                self.idling = Some(Idling { deadline, len });
                Ok(None)
            }
            Exit::Terminate { status, len } => {
                self.cpu.retire(len);
                // Frames the guest queued are sent, as its console output is written: dropping
                // the VM detaches its NIC, which would otherwise discard them.
                self.devices.nic.switch().pump();
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

    /// The virtual IDLE instruction: it ends when an enabled interrupt is pending (EAX = 1)
    /// or the timeout passes (EAX = 0). Polls the devices and decides; if the idle goes on,
    /// says until when: the earliest of the timeout and the next device event (a timer
    /// expiry, a disk completion), `None` when only the doorbell (input, a frame) can end it.
    fn idle_step(&mut self, idling: Idling) -> IdleStep {
        let woken = loop {
            self.poll_devices();
            let enabled = vregs::read(&self.memory, vreg::IRQ_ENABLE) != 0;
            if enabled && vregs::read(&self.memory, vreg::IRQ_PENDING) != 0 {
                break true;
            }
            let now = self.now_us();
            if idling.deadline.is_some_and(|d| now >= d) {
                break false;
            }
            // With interrupts disabled no device event can end the idle: only the timeout.
            let event = if enabled { self.devices.next_event(now) } else { None };
            let wake_at = match (idling.deadline, event) {
                (Some(d), Some(e)) => Some(d.min(e)),
                (d, e) => d.or(e),
            };
            if wake_at.is_none() && !(enabled && self.devices.may_be_woken()) {
                self.idling = None;
                return IdleStep::Stop(self.fault(FaultCause::IdleForever));
            }
            if wake_at.is_some_and(|t| t <= now) {
                continue;
            }
            return IdleStep::Wait(wake_at.map(|t| self.boot + Duration::from_micros(t)));
        };
        self.idling = None;
        self.cpu.regs[reg::EAX] = u32::from(woken);
        self.cpu.retire(idling.len);
        self.refresh_time();
        IdleStep::Done
    }

    /// Polls the devices and raises the interrupts they report.
    fn poll_devices(&mut self) {
        let now = self.now_us();
        self.poll_devices_at(now);
    }

    /// Polls the devices as of `now` (microseconds since boot).
    fn poll_devices_at(&mut self, now: u64) {
        self.poll_due = false;
        self.polled_at = self.cpu.instructions;
        let mask = self.devices.poll(&mut self.memory, now);
        if mask != 0 {
            self.raise_interrupts(mask);
        }
    }

    /// Microseconds since boot on the VM's clock.
    fn now_us(&mut self) -> u64 {
        let now = u64::try_from(self.clock.now().saturating_sub(self.boot).as_micros()).unwrap_or(u64::MAX);
        self.time_us = self.time_us.max(now);
        self.time_us
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
        let micros = self.now_us();
        vregs::set_time(&mut self.memory, micros);
    }
}
