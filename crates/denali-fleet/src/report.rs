//! What a fleet run produced: one [`VmReport`] per VM and the fleet's totals.

use std::time::Duration;

use denali_kernel::Fault;

/// How one VM of the fleet ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEnd {
    /// The guest executed TERMINATE with this status.
    Terminated(u32),
    /// The guest faulted; the VM was terminated.
    Fault(Box<Fault>),
    /// The VM could not be created (the image does not fit, memory could not be mapped, the
    /// console could not be opened).
    BootFailed(String),
    /// Writing the VM's console failed; the VM was terminated.
    HostError(String),
    /// The fleet stopped (its instruction limit) while the VM was alive.
    Stopped,
    /// The VM idled with no timeout and no timer while nothing else in the fleet could wake
    /// it: every live VM idled so, none ran and no wake-up was pending. Ended rather than
    /// left to hang.
    Deadlocked,
    /// The gatekeeper never admitted the VM: it needs more memory than the whole budget, or
    /// the fleet stopped first.
    NotAdmitted,
}

/// One VM's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmReport {
    /// The VM's id: its index in the fleet.
    pub id: u32,
    pub end: VmEnd,
    /// Guest instructions retired.
    pub instructions: u64,
    /// Host time spent running the VM's quanta (its CPU time; an idle VM accrues none).
    pub cpu_time: Duration,
    /// Quanta the VM was scheduled for.
    pub quanta: u64,
    /// The VM's place in the order of admission (0 first), if it was admitted.
    pub admitted: Option<u64>,
}

/// The fleet's totals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetReport {
    /// Indexed by VM id.
    pub vms: Vec<VmReport>,
    pub booted: u64,
    /// VMs that terminated.
    pub completed: u64,
    pub faulted: u64,
    /// The most VMs alive at once.
    pub peak_live: u64,
    /// Host time spent creating VMs, summed over workers.
    pub boot_time: Duration,
    pub wall: Duration,
    /// Quanta run: each is a switch to a VM.
    pub quanta: u64,
    pub instructions: u64,
    /// Time the workers were not blocked waiting for work, summed.
    pub worker_busy: Duration,
    /// Frames the switch forwarded during the run.
    pub packets_switched: u64,
}

/// The process's peak resident set (`VmHWM` of `/proc/self/status`); 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb.saturating_mul(1024))
}
