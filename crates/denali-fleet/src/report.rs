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
    /// Frames the switch dropped during the run: for an unknown address (e.g. a VM that has
    /// not booted yet, or has ended) or at a full receive queue.
    pub packets_dropped: u64,
}

impl FleetReport {
    /// VMs that terminated with a status other than 0 (the guest's own verdict of failure).
    pub fn exited_nonzero(&self) -> u64 {
        self.vms.iter().filter(|v| matches!(v.end, VmEnd::Terminated(status) if status != 0)).count() as u64
    }

    /// CPU time of every VM together: host time spent running their quanta (scheduling and
    /// idle time excluded).
    pub fn vm_cpu_time(&self) -> Duration {
        self.vms.iter().map(|v| v.cpu_time).sum()
    }

    /// The largest CPU time of one VM: with [`Self::vm_cpu_time`], how evenly VMs were served.
    pub fn max_vm_cpu_time(&self) -> Duration {
        self.vms.iter().map(|v| v.cpu_time).max().unwrap_or_default()
    }

    /// `count` per second of wall time; 0 for a run that took no time.
    pub fn per_second(&self, count: u64) -> f64 {
        let secs = self.wall.as_secs_f64();
        if secs > 0.0 { count as f64 / secs } else { 0.0 }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(id: u32, end: VmEnd, cpu_ms: u64) -> VmReport {
        VmReport {
            id,
            end,
            instructions: 0,
            cpu_time: Duration::from_millis(cpu_ms),
            quanta: 1,
            admitted: Some(u64::from(id)),
        }
    }

    #[test]
    fn summaries_over_the_vms() {
        let report = FleetReport {
            vms: vec![
                vm(0, VmEnd::Terminated(0), 5),
                vm(1, VmEnd::Terminated(2), 7),
                vm(2, VmEnd::Stopped, 1),
                vm(3, VmEnd::Terminated(1), 0),
            ],
            wall: Duration::from_millis(500),
            ..FleetReport::default()
        };
        assert_eq!(report.exited_nonzero(), 2);
        assert_eq!(report.vm_cpu_time(), Duration::from_millis(13));
        assert_eq!(report.max_vm_cpu_time(), Duration::from_millis(7));
        assert_eq!(report.per_second(1000), 2000.0);
        assert_eq!(FleetReport::default().per_second(5), 0.0);
        assert_eq!(FleetReport::default().max_vm_cpu_time(), Duration::ZERO);
    }
}
