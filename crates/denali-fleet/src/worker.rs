//! The scheduler: one run queue, one heap of idle deadlines and one table of VMs for the whole
//! fleet ([`Sched`], behind one lock), served by every worker thread. A worker takes the next
//! VM, runs one quantum of it without the lock, and files it again; so a VM runs on one thread
//! at a time but on whichever thread is free.
//!
//! Round robin with catch-up: each VM has a virtual time, the instructions it retired while
//! runnable. The ready queue is FIFO, except that a VM filed with a virtual time below that of
//! the VM last taken from the queue goes to its front: a VM whose quantum was slow because the
//! host preempted its worker thread (the other workers meanwhile cycling the rest) runs again
//! at once until it has caught up. So N busy VMs get equal shares whatever the thread count and
//! however the host schedules the workers, at O(1) per switch. A VM's virtual time does not
//! advance while it idles; when it wakes it is raised to that of the VM last taken, so
//! sleeping earns no credit.
//!
//! Idle compensation: a VM whose idle ended goes to the front of the run queue, ahead of the
//! virtual-time order, so a VM that gave up the CPU gets it back first, as in the paper. A VM
//! just booted has waited since its admission and has never had the CPU: it joins the same
//! queue (`first_come`). Otherwise, during a boot storm (the workers boot a batch, run one
//! quantum, boot the next), VMs waking from idle would keep overtaking the thousands of booted
//! VMs still waiting for their first instruction, and the first VMs would finish before the
//! last ones start. In batched mode doorbell wake-ups are taken once per round of the run
//! queue; in synchronous mode after every slice, and a ring cuts running quanta at the next
//! slice boundary.
//!
//! Deadlock: when no VM runs or is runnable, none has a deadline and no wake-up is pending,
//! the idle VMs wait for something no one can send (only a VM can ring another's doorbell in
//! a fleet); they are ended as [`VmEnd::Deadlocked`] rather than left to hang.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use denali_kernel::{Outcome, Quantum, SLICE, Vm, VmError};

use crate::config::InterruptMode;
use crate::fleet::Shared;
use crate::report::{VmEnd, VmReport};

/// VMs a worker boots before it runs a quantum, so that a long boot queue does not starve
/// the guests already running.
const BOOT_BATCH: usize = 256;

/// The scheduler's state and what other threads use to reach it: doorbell wakers hold it, so
/// it outlives the fleet's borrowed data.
#[derive(Default)]
pub(crate) struct Hub {
    pub sched: Mutex<Sched>,
    /// Signalled when work appears or the fleet is done.
    pub ready: Condvar,
    /// A doorbell rang since a worker last looked (cuts a synchronous-mode quantum).
    pub rung: AtomicBool,
}

impl Hub {
    pub fn lock(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called by the doorbell of the VM in `slot`, on the ringing thread.
    fn ring(&self, slot: usize) {
        self.lock().woken.push(slot);
        self.rung.store(true, Ordering::SeqCst);
        self.ready.notify_one();
    }

    /// Wakes every worker to re-check the fleet's state. Taking the lock first means a worker
    /// between its check and its wait cannot miss this.
    pub fn notify_all(&self) {
        drop(self.lock());
        self.ready.notify_all();
    }
}

/// One VM and its account.
pub(crate) struct Slot {
    /// `None` while a worker runs it.
    vm: Option<Box<Vm>>,
    index: usize,
    seq: u64,
    /// Inside an idle: parked in the heap or waiting for its doorbell.
    idle: bool,
    /// Bumped at every idle, so heap entries of earlier idles are recognised as stale.
    generation: u64,
    /// Instructions retired while runnable, the run queue's order.
    vtime: u64,
    cpu_time: Duration,
    quanta: u64,
}

/// The fleet's scheduling state.
#[derive(Default)]
pub(crate) struct Sched {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// VMs whose idle just ended (idle compensation) and VMs just booted, in the order they
    /// became ready: they run first.
    first_come: VecDeque<usize>,
    /// The other ready VMs, in round-robin order.
    ready: VecDeque<usize>,
    /// The virtual time of the VM last taken from `ready`: a VM filed below it has fallen
    /// behind, and a waking VM starts no lower.
    min_vtime: u64,
    /// Idle deadlines: (clock time, generation, slot), earliest first.
    timers: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    /// Slots whose doorbell rang, not yet acted on.
    woken: Vec<usize>,
    /// Admitted VMs to boot: (index, admission sequence).
    to_boot: VecDeque<(usize, u64)>,
    /// VMs still to run in the current round (the ready VMs when it began).
    round_left: usize,
    /// VMs a worker holds outside the table: being booted or running a quantum.
    in_flight: usize,
}

impl Sched {
    /// Queues VMs the gatekeeper admitted.
    pub fn admit(&mut self, index: usize, seq: u64) {
        self.to_boot.push_back((index, seq));
    }

    /// Ends the idle of `slot` if it is idle (and, for a timer, still in the same idle).
    fn wake(&mut self, slot: usize, generation: Option<u64>) {
        let min_vtime = self.min_vtime;
        let Some(Some(s)) = self.slots.get_mut(slot) else { return };
        if !s.idle || generation.is_some_and(|g| g != s.generation) {
            return;
        }
        s.idle = false;
        s.vtime = s.vtime.max(min_vtime);
        // Idle compensation: the VM gave up the CPU, so it goes first.
        self.first_come.push_back(slot);
    }

    /// Queues a runnable VM: at the back, or at the front if it has fallen behind.
    fn make_ready(&mut self, slot: usize, vtime: u64) {
        if vtime < self.min_vtime {
            self.ready.push_front(slot);
        } else {
            self.ready.push_back(slot);
        }
    }

    fn runnable(&self) -> usize {
        self.first_come.len() + self.ready.len()
    }

    fn expire_timers(&mut self, now: Duration) {
        while let Some(&Reverse((at, generation, slot))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.wake(slot, Some(generation));
        }
    }

    /// Acts on doorbell rings when the interrupt mode says so: after every slice in
    /// synchronous mode, at the end of a round of the run queue in batched mode.
    fn take_wakes(&mut self, sync: bool) {
        if sync || self.round_left == 0 || self.runnable() == 0 {
            for slot in std::mem::take(&mut self.woken) {
                self.wake(slot, None);
            }
        }
    }

    /// Takes the next VM to run out of the table: a woken one, else the head of the ready
    /// queue.
    fn next_to_run(&mut self) -> Option<(usize, Box<Vm>)> {
        if self.round_left == 0 {
            self.round_left = self.runnable();
        }
        loop {
            let (slot, from_ready) = match self.first_come.pop_front() {
                Some(slot) => (slot, false),
                None => (self.ready.pop_front()?, true),
            };
            self.round_left = self.round_left.saturating_sub(1);
            // Every queued slot holds its VM (it is taken out only here); skip one that does
            // not rather than lose the rest of the queue.
            let Some(s) = self.slots.get_mut(slot).and_then(Option::as_mut) else { continue };
            if from_ready {
                self.min_vtime = s.vtime;
            }
            let Some(vm) = s.vm.take() else { continue };
            self.in_flight += 1;
            return Some((slot, vm));
        }
    }

    /// Every VM still in the table, and every admitted VM not booted: the fleet has stopped.
    pub fn drain(&mut self) -> Vec<VmReport> {
        let mut reports: Vec<VmReport> =
            self.slots.drain(..).flatten().map(|s| report(&s, s.vm.as_deref(), VmEnd::Stopped)).collect();
        for (index, seq) in self.to_boot.drain(..) {
            reports.push(VmReport {
                id: u32::try_from(index).unwrap_or(u32::MAX),
                end: VmEnd::Stopped,
                instructions: 0,
                cpu_time: Duration::ZERO,
                quanta: 0,
                admitted: Some(seq),
            });
        }
        reports
    }
}

fn report(slot: &Slot, vm: Option<&Vm>, end: VmEnd) -> VmReport {
    VmReport {
        id: u32::try_from(slot.index).unwrap_or(u32::MAX),
        end,
        instructions: vm.map_or(0, |vm| vm.cpu().instructions),
        cpu_time: slot.cpu_time,
        quanta: slot.quanta,
        admitted: Some(slot.seq),
    }
}

/// A worker's totals.
#[derive(Debug, Default)]
pub(crate) struct WorkerTotals {
    pub boot_time: Duration,
    pub quanta: u64,
    pub busy: Duration,
}

/// What a worker does next, decided under the lock.
enum Task {
    Boot(Vec<(usize, u64)>),
    /// Run this VM; the fleet clock read when it was picked starts its CPU time.
    Run(usize, Box<Vm>, Duration),
    /// Every live VM idles with nothing that could wake it: these slots.
    Deadlock(Vec<Slot>),
    Done,
}

/// What a quantum left the VM doing. At most 16 bytes, so that it travels in registers:
/// a larger value is copied through memory with wide loads just after it was written with
/// narrow stores, a store-forwarding stall at every switch.
enum Filed {
    Ready,
    Idle(Option<Duration>),
    Ended(Box<VmEnd>),
}

const _: () = assert!(std::mem::size_of::<Filed>() <= 16);

/// A VM that ended, out of the table, to be reported and dropped outside the lock. Boxed
/// where it is returned, for the reason of [`Filed`].
struct Ended(Slot, Box<Vm>, VmEnd);

/// A VM back from a quantum, to be filed at the worker's next lock.
struct Ran {
    slot: usize,
    vm: Box<Vm>,
    filed: Filed,
    /// Fleet clock time when the quantum began.
    started: Duration,
    /// Instructions the quantum retired.
    retired: u64,
}

struct Worker<'s, 'a> {
    shared: &'s Shared<'a>,
    reports: Vec<VmReport>,
    totals: WorkerTotals,
    /// Booted VMs since the last quantum this worker ran.
    booted_since_run: usize,
}

/// Runs a worker until the fleet is done; returns the reports of the VMs that ended on it and
/// its totals.
pub(crate) fn run(shared: &Shared<'_>) -> (Vec<VmReport>, WorkerTotals) {
    let mut worker = Worker { shared, reports: Vec::new(), totals: WorkerTotals::default(), booted_since_run: 0 };
    worker.run();
    (worker.reports, worker.totals)
}

impl Worker<'_, '_> {
    fn sync(&self) -> bool {
        self.shared.config.interrupts == InterruptMode::Synchronous
    }

    fn lock(&self) -> MutexGuard<'_, Sched> {
        self.shared.hub.lock()
    }

    fn run(&mut self) {
        let busy_since = Instant::now();
        let mut idle_time = Duration::ZERO;
        let mut next = self.next_task(None);
        loop {
            let (task, waited) = next;
            idle_time += waited;
            next = match task {
                Task::Done => break,
                Task::Boot(batch) => {
                    self.boot(batch);
                    self.next_task(None)
                }
                Task::Run(slot, mut vm, started) => {
                    self.booted_since_run = 0;
                    let before = vm.cpu().instructions;
                    self.shared.clock.hand(Some(started));
                    let filed = self.run_quantum(&mut vm);
                    self.shared.clock.hand(None);
                    let retired = vm.cpu().instructions - before;
                    self.next_task(Some(Ran { slot, vm, filed, started, retired }))
                }
                Task::Deadlock(slots) => {
                    for s in slots {
                        self.end(s, VmEnd::Deadlocked);
                    }
                    self.next_task(None)
                }
            };
        }
        self.totals.busy += busy_since.elapsed().saturating_sub(idle_time);
    }

    /// Files the VM of the last quantum and picks the next task, sleeping while there is
    /// none. Returns the task and how long the worker slept.
    fn next_task(&mut self, last: Option<Ran>) -> (Task, Duration) {
        let shared = self.shared;
        let hub = &*shared.hub;
        let sync = self.sync();
        let mut ended = None;
        let mut sched = self.lock();
        // One clock read per switch ends the last quantum, expires timers and starts the next
        // quantum: reading the host clock is a large part of a switch.
        let mut now = shared.clock.read();
        if let Some(ran) = last {
            sched.in_flight -= 1;
            ended = file(&mut sched, ran, now, shared.done.load(Ordering::SeqCst));
        }
        if let Some(ended) = ended {
            let Ended(s, vm, end) = *ended;
            // Dropping a VM detaches its NIC from the switch: never under the scheduler lock.
            drop(sched);
            let (report, mem) = (report(&s, Some(&vm), end), u64::from(vm.memory().size()));
            drop(vm);
            self.retire(report, mem, true);
            sched = self.lock();
            now = shared.clock.read();
        }
        let mut waited = Duration::ZERO;
        loop {
            if shared.done.load(Ordering::SeqCst) {
                return (Task::Done, waited);
            }
            // Cleared only when set: an atomic store is a full barrier, which every switch
            // paid. (A ring's store may land just after this, as before; it cuts one more
            // slice in synchronous mode, and its wake-up is in `woken` already.)
            if hub.rung.load(Ordering::Relaxed) {
                hub.rung.store(false, Ordering::SeqCst);
            }
            sched.take_wakes(sync);
            sched.expire_timers(now);
            let boot_first = self.booted_since_run < BOOT_BATCH || sched.runnable() == 0;
            if !sched.to_boot.is_empty() && boot_first {
                let take = (BOOT_BATCH - self.booted_since_run.min(BOOT_BATCH - 1)).min(sched.to_boot.len());
                let batch: Vec<(usize, u64)> = sched.to_boot.drain(..take).collect();
                sched.in_flight += batch.len();
                return (Task::Boot(batch), waited);
            }
            if let Some((slot, vm)) = sched.next_to_run() {
                return (Task::Run(slot, vm, now), waited);
            }
            if !sched.woken.is_empty() {
                now = shared.clock.read();
                continue;
            }
            let deadline = sched.timers.peek().map(|Reverse((at, _, _))| *at);
            if deadline.is_none() && sched.in_flight == 0 {
                let live: Vec<Slot> = sched.slots.iter_mut().filter_map(Option::take).collect();
                if !live.is_empty() {
                    sched.free.clear();
                    sched.slots.clear();
                    return (Task::Deadlock(live), waited);
                }
            }
            let timeout = deadline.map(|at| at.saturating_sub(now));
            if timeout == Some(Duration::ZERO) {
                now = shared.clock.read();
                continue;
            }
            // Spurious or early returns are harmless: the loop re-checks everything.
            let started = Instant::now();
            sched = match timeout {
                Some(timeout) => hub.ready.wait_timeout(sched, timeout).unwrap_or_else(PoisonError::into_inner).0,
                None => hub.ready.wait(sched).unwrap_or_else(PoisonError::into_inner),
            };
            waited += started.elapsed();
            now = shared.clock.read();
        }
    }

    /// Boots admitted VMs outside the lock, then files them as ready to run.
    fn boot(&mut self, batch: Vec<(usize, u64)>) {
        let shared = self.shared;
        let mut booted = Vec::with_capacity(batch.len());
        let mut failed = Vec::new();
        // One pair of clock reads per batch: the boot figure is the batch's time per VM.
        let started = Instant::now();
        for (index, seq) in batch {
            match self.build(index) {
                Ok(vm) => booted.push((index, seq, vm)),
                Err(message) => failed.push((index, seq, message)),
            }
        }
        self.totals.boot_time += started.elapsed();
        for (index, seq, message) in failed {
            let mem = shared.specs.get(index).map_or(0, |s| u64::from(s.mem_size));
            let report = VmReport {
                id: u32::try_from(index).unwrap_or(u32::MAX),
                end: VmEnd::BootFailed(message),
                instructions: 0,
                cpu_time: Duration::ZERO,
                quanta: 0,
                admitted: Some(seq),
            };
            self.lock().in_flight -= 1;
            self.retire(report, mem, false);
        }
        self.booted_since_run += booted.len();
        let count = booted.len() as u64;
        {
            let mut sched = self.lock();
            for (index, seq, vm) in booted {
                let slot = sched.free.pop().unwrap_or(sched.slots.len());
                let hub = Arc::clone(&shared.hub);
                vm.doorbell().set_waker(Arc::new(move || hub.ring(slot)));
                let new = Slot {
                    vm: Some(vm),
                    index,
                    seq,
                    idle: false,
                    generation: 0,
                    vtime: sched.min_vtime,
                    cpu_time: Duration::ZERO,
                    quanta: 0,
                };
                if slot == sched.slots.len() {
                    sched.slots.push(Some(new));
                } else {
                    sched.slots[slot] = Some(new);
                }
                // Waiting since admission: first come, with the VMs whose idle ended.
                sched.first_come.push_back(slot);
                sched.in_flight -= 1;
            }
        }
        shared.hub.ready.notify_all();
        let counters = shared.counters;
        counters.booted.fetch_add(count, Ordering::Relaxed);
        let live = counters.live.fetch_add(count, Ordering::SeqCst) + count;
        counters.peak_live.fetch_max(live, Ordering::SeqCst);
    }

    fn build(&self, index: usize) -> Result<Box<Vm>, String> {
        let shared = self.shared;
        let id = u32::try_from(index).unwrap_or(u32::MAX);
        let boot_image = shared.boot_images.get(index).ok_or("no image")?;
        let boot_image = boot_image.as_ref().as_ref().map_err(String::clone)?;
        let console = (shared.config.console)(id).map_err(|e| format!("cannot open the console: {e}"))?;
        let spec = shared.specs.get(index).ok_or("no spec")?;
        let engine = spec.engine.as_ref().unwrap_or(&shared.config.engine)();
        let mut vm = Vm::from_boot_image(boot_image, id, engine, console).map_err(|e| match e {
            VmError::Load(e) => e.to_string(),
            VmError::Memory(e) => e.to_string(),
        })?;
        vm.set_clock(shared.clock.clone());
        spec.devices.attach(&mut vm, &shared.config.switch);
        Ok(Box::new(vm))
    }

    /// Runs one quantum of `vm` and says what it left the VM doing.
    fn run_quantum(&mut self, vm: &mut Vm) -> Filed {
        let shared = self.shared;
        let sync = self.sync();
        let quantum = shared.config.quantum.max(1).min(shared.remaining());
        if quantum == 0 {
            return Filed::Ready;
        }
        let before = vm.cpu().instructions;
        let result = loop {
            let retired = vm.cpu().instructions - before;
            let left = quantum.saturating_sub(retired);
            let step = if sync { left.min(SLICE) } else { left };
            match vm.run_quantum(step) {
                // Synchronous delivery: a wake-up cuts the quantum at the slice boundary.
                Ok(Quantum::Ran)
                    if vm.cpu().instructions - before < quantum
                        && !(sync && shared.hub.rung.load(Ordering::SeqCst)) => {}
                other => break other,
            }
        };
        self.totals.quanta += 1;
        shared.add_retired(vm.cpu().instructions - before);
        match result {
            Ok(Quantum::Ran) => Filed::Ready,
            Ok(Quantum::Idle { until }) => Filed::Idle(until),
            Ok(Quantum::Stopped(Outcome::Terminated(status))) => Filed::Ended(Box::new(VmEnd::Terminated(status))),
            Ok(Quantum::Stopped(Outcome::Fault(fault))) => Filed::Ended(Box::new(VmEnd::Fault(fault))),
            // run_quantum never reports the limit of `Vm::run`; treat it as ready.
            Ok(Quantum::Stopped(Outcome::Limit)) => Filed::Ready,
            Err(e) => Filed::Ended(Box::new(VmEnd::HostError(format!("writing guest output: {e}")))),
        }
    }

    /// Reports an ended VM (already dropped; `live` if it had booted) and lets the
    /// gatekeeper admit.
    fn retire(&mut self, report: VmReport, mem: u64, live: bool) {
        if live {
            self.shared.counters.live.fetch_sub(1, Ordering::SeqCst);
        }
        self.reports.push(report);
        self.shared.release(mem);
        self.shared.vm_ended();
    }

    /// Ends a VM taken out of the table.
    fn end(&mut self, slot: Slot, end: VmEnd) {
        let mem = slot.vm.as_ref().map_or(0, |vm| u64::from(vm.memory().size()));
        let report = report(&slot, slot.vm.as_deref(), end);
        drop(slot);
        self.retire(report, mem, true);
    }
}

/// Puts a VM back after its quantum: in the run queue, the deadline heap, or out of the
/// table when it ended (or the fleet is done), returned to be dropped outside the lock.
/// Reads `ran` field by field, never copying it whole (see [`Filed`]).
fn file(sched: &mut Sched, ran: Ran, now: Duration, done: bool) -> Option<Box<Ended>> {
    let Ran { slot, vm, filed, started, retired } = ran;
    let s = sched.slots.get_mut(slot)?.as_mut()?;
    s.cpu_time += now.saturating_sub(started);
    s.quanta += 1;
    s.vtime += retired;
    let vtime = s.vtime;
    let until = match filed {
        Filed::Ended(end) => return take(sched, slot, vm, *end),
        _ if done => return take(sched, slot, vm, VmEnd::Stopped),
        Filed::Idle(until) => Some(until),
        Filed::Ready => None,
    };
    let s = sched.slots.get_mut(slot)?.as_mut()?;
    s.vm = Some(vm);
    match until {
        Some(until) => {
            s.idle = true;
            s.generation += 1;
            let generation = s.generation;
            if let Some(at) = until {
                sched.timers.push(Reverse((at, generation, slot)));
            }
        }
        None => sched.make_ready(slot, vtime),
    }
    None
}

/// Takes an ended VM's slot out of the table.
fn take(sched: &mut Sched, slot: usize, vm: Box<Vm>, end: VmEnd) -> Option<Box<Ended>> {
    let s = sched.slots.get_mut(slot)?.take()?;
    sched.free.push(slot);
    Some(Box::new(Ended(s, vm, end)))
}
