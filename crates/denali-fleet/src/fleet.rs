//! A fleet run: queues every VM at the gatekeeper, starts the worker threads, hands admitted
//! VMs to the scheduler they share and gathers the report when every VM has ended or the
//! instruction limit stopped the fleet.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use denali_kernel::{BootImage, VmError};

use crate::clock::FleetClock;
use crate::config::{FleetConfig, VmSpec};
use crate::gatekeeper::{Admission, Gatekeeper};
use crate::report::{FleetReport, VmEnd, VmReport};
use crate::worker::{self, Hub, WorkerTotals};

/// Live counts another thread may read while the fleet runs (for a progress display).
#[derive(Debug, Default)]
pub struct FleetCounters {
    /// VMs in the fleet.
    pub total: AtomicU64,
    pub booted: AtomicU64,
    pub live: AtomicU64,
    pub peak_live: AtomicU64,
    /// VMs that ended in any way (including refused and failed boots).
    pub ended: AtomicU64,
}

/// A fleet of VMs run by one scheduler.
pub struct Fleet {
    config: FleetConfig,
    counters: Arc<FleetCounters>,
}

/// The gatekeeper with the admission sequence and the VMs it refused.
pub(crate) struct Gate {
    keeper: Gatekeeper,
    next_seq: u64,
    refused: Vec<usize>,
}

/// What the workers share.
pub(crate) struct Shared<'a> {
    pub specs: &'a [VmSpec],
    /// For each spec, its image laid out once (shared by every VM of the same image and memory
    /// size), or why it cannot boot.
    pub boot_images: Vec<SharedBoot>,
    pub config: &'a FleetConfig,
    pub counters: &'a FleetCounters,
    pub clock: Arc<FleetClock>,
    /// The scheduler every worker serves.
    pub hub: Arc<Hub>,
    gate: Mutex<Gate>,
    /// Guest instructions retired by the whole fleet.
    pub retired: AtomicU64,
    /// Set when every VM ended or the instruction limit was reached.
    pub done: AtomicBool,
}

impl Shared<'_> {
    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits what fits and queues the admitted VMs for booting.
    pub fn admit(&self) {
        let mut gate = self.gate();
        let decisions = gate.keeper.admit();
        if decisions.is_empty() {
            return;
        }
        let mut refused = 0;
        {
            let mut sched = self.hub.lock();
            for decision in decisions {
                match decision {
                    Admission::Admit(index) => {
                        sched.admit(index, gate.next_seq);
                        gate.next_seq += 1;
                    }
                    Admission::Refuse(index) => {
                        gate.refused.push(index);
                        refused += 1;
                    }
                }
            }
        }
        drop(gate);
        self.hub.ready.notify_all();
        for _ in 0..refused {
            self.vm_ended();
        }
    }

    /// Returns an ended VM's memory to the gatekeeper and admits what now fits.
    pub fn release(&self, mem: u64) {
        self.gate().keeper.release(mem);
        self.admit();
    }

    /// Counts a VM that ended; the last one ends the fleet.
    pub fn vm_ended(&self) {
        let ended = self.counters.ended.fetch_add(1, Ordering::SeqCst) + 1;
        if ended >= self.counters.total.load(Ordering::SeqCst) {
            self.finish();
        }
    }

    /// Adds a quantum's instructions; reaching the fleet's limit ends the fleet.
    pub fn add_retired(&self, count: u64) {
        let total = self.retired.fetch_add(count, Ordering::SeqCst) + count;
        if self.config.instruction_limit.is_some_and(|limit| total >= limit) {
            self.finish();
        }
    }

    /// Instructions the fleet may still retire.
    pub fn remaining(&self) -> u64 {
        self.config
            .instruction_limit
            .map_or(u64::MAX, |limit| limit.saturating_sub(self.retired.load(Ordering::SeqCst)))
    }

    pub fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.hub.notify_all();
    }
}

/// An image laid out for VMs of one memory size, or why it cannot boot.
pub(crate) type SharedBoot = Arc<Result<BootImage, String>>;

/// Lays out each distinct (image, memory size) of `specs` once.
fn boot_images(specs: &[VmSpec]) -> Vec<SharedBoot> {
    let mut made: Vec<(*const denali_kernel::Image, u32, SharedBoot)> = Vec::new();
    specs
        .iter()
        .map(|spec| {
            let key = Arc::as_ptr(&spec.image);
            if let Some((_, _, boot)) = made.iter().find(|(image, size, _)| *image == key && *size == spec.mem_size) {
                return Arc::clone(boot);
            }
            let boot = Arc::new(BootImage::new(&spec.image, spec.mem_size).map_err(|e| match e {
                VmError::Load(e) => e.to_string(),
                VmError::Memory(e) => e.to_string(),
            }));
            made.push((key, spec.mem_size, Arc::clone(&boot)));
            boot
        })
        .collect()
}

impl Fleet {
    pub fn new(config: FleetConfig) -> Fleet {
        Fleet { config, counters: Arc::new(FleetCounters::default()) }
    }

    /// Counters that another thread can watch while [`Fleet::run`] runs.
    pub fn counters(&self) -> Arc<FleetCounters> {
        Arc::clone(&self.counters)
    }

    /// Runs `specs` (VM `i` is `specs[i]`, with id `i`) until every VM ended or the
    /// instruction limit was reached.
    pub fn run(&self, specs: &[VmSpec]) -> FleetReport {
        let start = Instant::now();
        let switched_before = self.config.switch.frames_switched();
        let dropped_before = self.config.switch.frames_dropped();
        self.counters.total.store(specs.len() as u64, Ordering::SeqCst);
        if specs.is_empty() {
            return FleetReport::default();
        }
        let threads = self.config.threads.clamp(1, specs.len());
        let mut keeper = Gatekeeper::new(self.config.mem_budget);
        for (index, spec) in specs.iter().enumerate() {
            keeper.enqueue(index, u64::from(spec.mem_size));
        }
        let shared = Shared {
            specs,
            boot_images: boot_images(specs),
            config: &self.config,
            counters: &self.counters,
            clock: Arc::new(FleetClock::new()),
            hub: Arc::new(Hub::default()),
            gate: Mutex::new(Gate { keeper, next_seq: 0, refused: Vec::new() }),
            retired: AtomicU64::new(0),
            done: AtomicBool::new(false),
        };
        shared.admit();
        let mut results: Vec<(Vec<VmReport>, WorkerTotals)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn({
                        let shared = &shared;
                        move || worker::run(shared)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        // VMs alive or admitted when the fleet stopped.
        // Taken out of the lock first: dropping VMs detaches their NICs from the switch.
        let mut left = std::mem::take(&mut *shared.hub.lock());
        results.push((left.drain(), WorkerTotals::default()));
        let mut vms: Vec<Option<VmReport>> = vec![None; specs.len()];
        let mut report = FleetReport::default();
        for (reports, totals) in results {
            report.boot_time += totals.boot_time;
            report.quanta += totals.quanta;
            report.worker_busy += totals.busy;
            for vm in reports {
                let id = vm.id as usize;
                if let Some(slot) = vms.get_mut(id) {
                    *slot = Some(vm);
                }
            }
        }
        report.vms = vms
            .into_iter()
            .enumerate()
            .map(|(id, vm)| {
                vm.unwrap_or(VmReport {
                    id: u32::try_from(id).unwrap_or(u32::MAX),
                    end: VmEnd::NotAdmitted,
                    instructions: 0,
                    cpu_time: Duration::ZERO,
                    quanta: 0,
                    admitted: None,
                })
            })
            .collect();
        report.booted = self.counters.booted.load(Ordering::SeqCst);
        report.peak_live = self.counters.peak_live.load(Ordering::SeqCst);
        report.completed = report.vms.iter().filter(|v| matches!(v.end, VmEnd::Terminated(_))).count() as u64;
        report.faulted = report.vms.iter().filter(|v| matches!(v.end, VmEnd::Fault(_))).count() as u64;
        report.instructions = report.vms.iter().map(|v| v.instructions).sum();
        report.packets_switched = self.config.switch.frames_switched().saturating_sub(switched_before);
        report.packets_dropped = self.config.switch.frames_dropped().saturating_sub(dropped_before);
        report.wall = start.elapsed();
        report
    }
}
