//! One scheduler thread: boots the VMs routed to it, runs them round-robin in instruction
//! quanta, parks idle VMs in a deadline heap, and wakes them on their deadline or doorbell.
//!
//! Idle compensation: a VM whose idle ended goes to the front of the run queue, so a VM that
//! gave up the CPU gets it back first, as in the paper. In batched mode doorbell wake-ups are
//! taken once per round of the run queue; in synchronous mode after every slice.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use denali_kernel::{Clock, Outcome, Quantum, SLICE, Vm, VmConfig, VmError};

use crate::config::InterruptMode;
use crate::fleet::Shared;
use crate::report::{VmEnd, VmReport};

/// VMs booted between two quanta, so a worker with a long boot queue still runs its guests.
const BOOT_BATCH: usize = 256;

/// What other threads hand a worker.
#[derive(Default)]
struct Inbox {
    /// Admitted VMs to boot: (index, admission sequence).
    admitted: Vec<(usize, u64)>,
    /// Slots whose doorbell rang.
    woken: Vec<usize>,
}

/// A worker's inbox and the condition variable it sleeps on.
#[derive(Default)]
pub(crate) struct Mailbox {
    inbox: Mutex<Inbox>,
    ready: Condvar,
    /// A doorbell rang since the worker last looked (cuts a synchronous-mode quantum).
    rung: AtomicBool,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn admit(&self, index: usize, seq: u64) {
        self.lock().admitted.push((index, seq));
        self.ready.notify_one();
    }

    fn wake(&self, slot: usize) {
        self.lock().woken.push(slot);
        self.rung.store(true, Ordering::SeqCst);
        self.ready.notify_one();
    }

    /// Wakes the worker to re-check the fleet's state. Taking the lock first means a worker
    /// between its check and its wait cannot miss this.
    pub fn notify(&self) {
        drop(self.lock());
        self.ready.notify_one();
    }
}

/// A worker's totals.
#[derive(Debug, Default)]
pub(crate) struct WorkerTotals {
    pub boot_time: Duration,
    pub quanta: u64,
    pub busy: Duration,
}

struct Slot {
    vm: Vm,
    index: usize,
    seq: u64,
    /// Inside an idle, parked in the heap or waiting for its doorbell.
    idle: bool,
    /// Bumped at every idle, so heap entries of earlier idles are recognised as stale.
    generation: u64,
    cpu_time: Duration,
    quanta: u64,
}

struct Worker<'s, 'a> {
    shared: &'s Shared<'a>,
    me: usize,
    mailbox: Arc<Mailbox>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    run_queue: VecDeque<usize>,
    /// Idle deadlines: (clock time, generation, slot), earliest first.
    timers: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    to_boot: VecDeque<(usize, u64)>,
    /// VMs still to run in the current round of the run queue.
    round_left: usize,
    reports: Vec<VmReport>,
    totals: WorkerTotals,
}

/// Runs worker `me` until the fleet is done; returns its VMs' reports and its totals.
pub(crate) fn run(shared: &Shared<'_>, me: usize) -> (Vec<VmReport>, WorkerTotals) {
    let Some(mailbox) = shared.mailboxes.get(me).cloned() else { return (Vec::new(), WorkerTotals::default()) };
    let mut worker = Worker {
        shared,
        me,
        mailbox,
        slots: Vec::new(),
        free: Vec::new(),
        run_queue: VecDeque::new(),
        timers: BinaryHeap::new(),
        to_boot: VecDeque::new(),
        round_left: 0,
        reports: Vec::new(),
        totals: WorkerTotals::default(),
    };
    worker.run();
    worker.stop_all();
    (worker.reports, worker.totals)
}

impl Worker<'_, '_> {
    fn sync(&self) -> bool {
        self.shared.config.interrupts == InterruptMode::Synchronous
    }

    fn run(&mut self) {
        let mut busy_since = Instant::now();
        while !self.shared.done.load(Ordering::SeqCst) {
            self.take_inbox();
            for _ in 0..BOOT_BATCH {
                let Some((index, seq)) = self.to_boot.pop_front() else { break };
                self.boot(index, seq);
            }
            self.expire_timers();
            if self.round_left == 0 {
                self.round_left = self.run_queue.len();
            }
            if let Some(slot) = self.run_queue.pop_front() {
                self.round_left = self.round_left.saturating_sub(1);
                self.run_slot(slot);
                continue;
            }
            if !self.to_boot.is_empty() {
                continue;
            }
            // Nothing to run: sleep until the earliest deadline or a message.
            self.totals.busy += busy_since.elapsed();
            self.wait();
            busy_since = Instant::now();
        }
        self.totals.busy += busy_since.elapsed();
    }

    fn wait(&self) {
        let timeout = self.timers.peek().map(|Reverse((at, _, _))| at.saturating_sub(self.shared.clock.now()));
        if timeout == Some(Duration::ZERO) {
            return;
        }
        let inbox = self.mailbox.lock();
        if self.shared.done.load(Ordering::SeqCst) || !inbox.admitted.is_empty() || !inbox.woken.is_empty() {
            return;
        }
        // Spurious or early returns are harmless: the loop re-checks everything.
        match timeout {
            Some(timeout) => drop(self.mailbox.ready.wait_timeout(inbox, timeout)),
            None => drop(self.mailbox.ready.wait(inbox)),
        }
    }

    /// Takes admitted VMs always, and doorbell wake-ups when the interrupt mode says so.
    fn take_inbox(&mut self) {
        let take_wakes = self.sync() || self.round_left == 0 || self.run_queue.is_empty();
        let (admitted, woken) = {
            let mut inbox = self.mailbox.lock();
            let woken = if take_wakes {
                self.mailbox.rung.store(false, Ordering::SeqCst);
                std::mem::take(&mut inbox.woken)
            } else {
                Vec::new()
            };
            (std::mem::take(&mut inbox.admitted), woken)
        };
        self.to_boot.extend(admitted);
        for slot in woken {
            self.wake(slot, None);
        }
    }

    /// Ends the idle of `slot` if it is idle (and, for a timer, still in the same idle).
    fn wake(&mut self, slot: usize, generation: Option<u64>) {
        let Some(Some(s)) = self.slots.get_mut(slot) else { return };
        if !s.idle || generation.is_some_and(|g| g != s.generation) {
            return;
        }
        s.idle = false;
        // Idle compensation: the VM gave up the CPU, so it goes first.
        self.run_queue.push_front(slot);
    }

    fn expire_timers(&mut self) {
        let now = self.shared.clock.now();
        while let Some(&Reverse((at, generation, slot))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.wake(slot, Some(generation));
        }
    }

    fn boot(&mut self, index: usize, seq: u64) {
        let shared = self.shared;
        let Some(spec) = shared.specs.get(index) else { return };
        let started = Instant::now();
        let id = u32::try_from(index).unwrap_or(u32::MAX);
        let slot = self.free.pop().unwrap_or(self.slots.len());
        let console = (shared.config.console)(id).map_err(|e| format!("cannot open the console: {e}"));
        let vm = console.and_then(|console| {
            let engine = spec.engine.as_ref().unwrap_or(&shared.config.engine)();
            Vm::new(&spec.image, VmConfig { mem_size: spec.mem_size, vm_id: id }, engine, console).map_err(
                |e| match e {
                    VmError::Load(e) => e.to_string(),
                    VmError::Memory(e) => e.to_string(),
                },
            )
        });
        let mut vm = match vm {
            Ok(vm) => vm,
            Err(message) => {
                self.free.push(slot);
                self.totals.boot_time += started.elapsed();
                self.reports.push(VmReport {
                    id,
                    end: VmEnd::BootFailed(message),
                    instructions: 0,
                    cpu_time: Duration::ZERO,
                    quanta: 0,
                    admitted: Some(seq),
                });
                self.retire_load(u64::from(spec.mem_size));
                return;
            }
        };
        vm.set_clock(shared.clock.clone());
        spec.devices.attach(&mut vm, &shared.config.switch);
        let mailbox = Arc::clone(&self.mailbox);
        vm.doorbell().set_waker(Arc::new(move || mailbox.wake(slot)));
        let new = Slot { vm, index, seq, idle: false, generation: 0, cpu_time: Duration::ZERO, quanta: 0 };
        if slot == self.slots.len() {
            self.slots.push(Some(new));
        } else if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(new);
        }
        self.run_queue.push_back(slot);
        self.totals.boot_time += started.elapsed();
        let counters = shared.counters;
        counters.booted.fetch_add(1, Ordering::Relaxed);
        let live = counters.live.fetch_add(1, Ordering::SeqCst) + 1;
        counters.peak_live.fetch_max(live, Ordering::SeqCst);
    }

    /// Runs one quantum of `slot` and files the VM by what it did.
    fn run_slot(&mut self, slot: usize) {
        let sync = self.sync();
        let quantum = self.shared.config.quantum.max(1).min(self.shared.remaining());
        if quantum == 0 {
            self.run_queue.push_front(slot);
            return;
        }
        let mailbox = Arc::clone(&self.mailbox);
        let Some(Some(s)) = self.slots.get_mut(slot) else { return };
        let started = Instant::now();
        let before = s.vm.cpu().instructions;
        let result = loop {
            let retired = s.vm.cpu().instructions - before;
            let left = quantum.saturating_sub(retired);
            let step = if sync { left.min(SLICE) } else { left };
            match s.vm.run_quantum(step) {
                // Synchronous delivery: a wake-up cuts the quantum at the slice boundary.
                Ok(Quantum::Ran)
                    if s.vm.cpu().instructions - before < quantum && !(sync && mailbox.rung.load(Ordering::SeqCst)) => {
                }
                other => break other,
            }
        };
        s.cpu_time += started.elapsed();
        s.quanta += 1;
        let retired = s.vm.cpu().instructions - before;
        self.totals.quanta += 1;
        match result {
            Ok(Quantum::Ran) => self.run_queue.push_back(slot),
            Ok(Quantum::Idle { until }) => {
                s.idle = true;
                s.generation += 1;
                if let Some(at) = until {
                    self.timers.push(Reverse((at, s.generation, slot)));
                }
            }
            Ok(Quantum::Stopped(Outcome::Terminated(status))) => self.end(slot, VmEnd::Terminated(status)),
            Ok(Quantum::Stopped(Outcome::Fault(fault))) => self.end(slot, VmEnd::Fault(fault)),
            // run_quantum never reports the limit of `Vm::run`; treat it as ready.
            Ok(Quantum::Stopped(Outcome::Limit)) => self.run_queue.push_back(slot),
            Err(e) => self.end(slot, VmEnd::HostError(format!("writing guest output: {e}"))),
        }
        self.shared.add_retired(retired);
    }

    /// Drops the VM in `slot` (freeing its memory), reports it and lets the gatekeeper admit.
    fn end(&mut self, slot: usize, end: VmEnd) {
        let Some(s) = self.slots.get_mut(slot).and_then(Option::take) else { return };
        self.free.push(slot);
        let mem = u64::from(s.vm.memory().size());
        self.reports.push(VmReport {
            id: u32::try_from(s.index).unwrap_or(u32::MAX),
            end,
            instructions: s.vm.cpu().instructions,
            cpu_time: s.cpu_time,
            quanta: s.quanta,
            admitted: Some(s.seq),
        });
        drop(s);
        self.shared.counters.live.fetch_sub(1, Ordering::SeqCst);
        self.retire_load(mem);
    }

    fn retire_load(&self, mem: u64) {
        if let Some(load) = self.shared.loads.get(self.me) {
            load.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared.release(mem);
        self.shared.vm_ended();
    }

    /// The fleet is done: reports every VM still here as stopped.
    fn stop_all(&mut self) {
        for slot in 0..self.slots.len() {
            if matches!(self.slots.get(slot), Some(Some(_))) {
                self.end(slot, VmEnd::Stopped);
            }
        }
        // Admitted but never booted: the fleet stopped first.
        let inbox = std::mem::take(&mut self.mailbox.lock().admitted);
        for (index, seq) in self.to_boot.drain(..).chain(inbox) {
            self.reports.push(VmReport {
                id: u32::try_from(index).unwrap_or(u32::MAX),
                end: VmEnd::Stopped,
                instructions: 0,
                cpu_time: Duration::ZERO,
                quanta: 0,
                admitted: Some(seq),
            });
        }
    }
}
