//! The fleet scheduler end to end, on small flat guests assembled here: a 1,000-VM smoke
//! test, idle VMs costing no CPU, fault isolation and the gatekeeper's FIFO admission under
//! a memory budget. Fairness has its own test binary (tests/fairness.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use denali_fleet::{Fleet, FleetConfig, InterruptMode, VmEnd, VmSpec};
use denali_kernel::Image;
use iced_x86::code_asm::*;

const LOAD: u32 = 0x1000;

fn image(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Arc<Image> {
    let mut a = CodeAssembler::new(32).unwrap();
    build(&mut a).unwrap();
    let bytes = a.assemble(u64::from(LOAD)).unwrap();
    Arc::new(Image::flat(&bytes, LOAD, None).unwrap())
}

/// Idles `micros` (interrupts disabled: only the timeout ends it), then terminates with 7.
fn idler(micros: u32) -> Arc<Image> {
    image(|a| {
        a.mov(eax, micros)?;
        a.hlt()?;
        a.mov(eax, 7u32)?;
        a.int(0xd0)
    })
}

/// Reads past the end of memory with no handler.
fn faulter() -> Arc<Image> {
    image(|a| a.mov(eax, dword_ptr(0xFFFF_FFF0u32)))
}

fn specs(image: &Arc<Image>, count: usize) -> Vec<VmSpec> {
    vec![VmSpec::new(Arc::clone(image), 64 << 10); count]
}

#[test]
fn a_thousand_vms_boot_idle_and_terminate() {
    let fleet = Fleet::new(FleetConfig::new());
    let start = Instant::now();
    let report = fleet.run(&specs(&idler(20_000), 1000));
    assert_eq!(report.booted, 1000);
    assert_eq!(report.completed, 1000);
    assert_eq!(report.faulted, 0);
    assert!(report.vms.iter().all(|v| v.end == VmEnd::Terminated(7)));
    assert!(report.peak_live > 1, "{}", report.peak_live);
    assert!(start.elapsed() < Duration::from_secs(20), "{:?}", start.elapsed());
}

/// Idles 1 us `times` times (interrupts disabled: only the timeout ends each), then terminates
/// with 7.
fn napper(times: u32) -> Arc<Image> {
    image(|a| {
        for _ in 0..times {
            a.mov(eax, 1u32)?;
            a.hlt()?;
        }
        a.mov(eax, 7u32)?;
        a.int(0xd0)
    })
}

#[test]
fn vms_waking_from_idle_do_not_overtake_booted_vms_waiting_for_their_first_quantum() {
    // One worker boots 256 VMs, runs one quantum, boots the next 256, and so on. The first VM
    // wakes long before the storm ends; had it gone ahead of the booted VMs that never ran, it
    // would finish its four quanta (and leave) before the last VMs boot. A quantum of three
    // instructions runs from one idle to the next (the idle retires when it ends): with a
    // longer one, a worker preempted by the host for a microsecond inside a quantum let the
    // first VM's idles expire there and run all its code in its first quantum (1 run in 25 on a
    // loaded 2-core host).
    let config = FleetConfig { threads: 1, quantum: 3, ..FleetConfig::new() };
    let count = 1500;
    let report = Fleet::new(config).run(&specs(&napper(3), count));
    assert_eq!(report.completed, count as u64);
    assert!(report.vms.iter().all(|v| v.end == VmEnd::Terminated(7)));
    assert_eq!(report.peak_live, count as u64, "a VM ended before the last one booted");
}

#[test]
fn idle_vms_cost_no_cpu() {
    let report = Fleet::new(FleetConfig::new()).run(&specs(&idler(500_000), 100));
    assert_eq!(report.completed, 100);
    assert!(report.wall >= Duration::from_millis(500), "{:?}", report.wall);
    let cpu: Duration = report.vms.iter().map(|v| v.cpu_time).sum();
    // Each VM runs a handful of instructions around its one idle.
    assert!(cpu < Duration::from_millis(100), "VM CPU time {cpu:?}");
    assert!(report.worker_busy < Duration::from_millis(200), "workers busy {:?}", report.worker_busy);
    assert!(report.vms.iter().all(|v| v.quanta <= 3), "{:?}", report.vms.iter().map(|v| v.quanta).max());
}

/// Idles with interrupts enabled and no timeout or timer: only a frame for its NIC could end
/// the idle, and only another VM could send one.
fn waiter() -> Arc<Image> {
    image(|a| {
        a.mov(dword_ptr(denali_abi::vreg::IRQ_ENABLE), 1u32)?;
        a.mov(eax, u32::MAX)?;
        a.hlt()?;
        a.mov(eax, 7u32)?;
        a.int(0xd0)
    })
}

#[test]
fn a_fleet_whose_vms_all_wait_for_each_other_ends_them_as_deadlocked() {
    let mut fleet = specs(&waiter(), 5);
    fleet.extend(specs(&idler(20_000), 3));
    let start = Instant::now();
    let report = Fleet::new(FleetConfig::new()).run(&fleet);
    assert!(start.elapsed() < Duration::from_secs(20), "{:?}", start.elapsed());
    let ends: Vec<&VmEnd> = report.vms.iter().map(|v| &v.end).collect();
    assert!(ends[..5].iter().all(|e| **e == VmEnd::Deadlocked), "{ends:?}");
    // The idlers had a timeout: they were never counted as stuck.
    assert!(ends[5..].iter().all(|e| **e == VmEnd::Terminated(7)), "{ends:?}");
}

#[test]
fn a_faulting_vm_is_reported_and_the_others_complete() {
    let idle = idler(10_000);
    let mut fleet = specs(&idle, 10);
    fleet[3].image = faulter();
    let report = Fleet::new(FleetConfig::new()).run(&fleet);
    assert_eq!(report.faulted, 1);
    assert_eq!(report.completed, 9);
    assert!(matches!(report.vms[3].end, VmEnd::Fault(_)));
}

#[test]
fn gatekeeper_admits_in_fifo_order_under_the_budget() {
    // Room for two 64 KiB VMs at a time.
    let config = FleetConfig { mem_budget: Some(128 << 10), ..FleetConfig::new() };
    let report = Fleet::new(config).run(&specs(&idler(5_000), 8));
    assert_eq!(report.completed, 8);
    assert!(report.peak_live <= 2, "{}", report.peak_live);
    let order: Vec<Option<u64>> = report.vms.iter().map(|v| v.admitted).collect();
    assert_eq!(order, (0..8).map(Some).collect::<Vec<_>>());
}

#[test]
fn a_vm_larger_than_the_budget_is_refused_and_the_rest_run() {
    let config = FleetConfig { mem_budget: Some(64 << 10), ..FleetConfig::new() };
    let idle = idler(1_000);
    let mut fleet = specs(&idle, 3);
    fleet[0].mem_size = 128 << 10;
    let report = Fleet::new(config).run(&fleet);
    assert_eq!(report.vms[0].end, VmEnd::NotAdmitted);
    assert_eq!(report.completed, 2);
}

#[test]
fn synchronous_mode_runs_the_same_fleet() {
    let config = FleetConfig { interrupts: InterruptMode::Synchronous, ..FleetConfig::new() };
    let report = Fleet::new(config).run(&specs(&idler(1_000), 50));
    assert_eq!(report.completed, 50);
}
