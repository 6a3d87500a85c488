//! What an idle VM costs the host beyond the guest pages it touched (issue #5's target: at
//! most 16 KiB), measured the way a fleet holds its VMs: 2,000 `idle` guests of 64 KiB booted
//! from one laid-out image, with the fleet's shared decoded code, each plugged into one switch
//! and run until its first idle. Their private guest pages are counted from
//! `/proc/self/pagemap`; the rest of the growth of the process's anonymous resident memory
//! (`RssAnon`) is host overhead. `VmRSS` would count each shared image page once per VM that
//! maps it, though it is one page of the page cache. Linux only; alone in its file so no other
//! test shares the process.

#[cfg(target_os = "linux")]
#[test]
fn an_idle_vm_costs_at_most_16_kib_beyond_its_guest_pages() {
    use std::sync::Arc;

    use denali_engine::residency::PageMap;
    use denali_engine::{Interpreter, SharedCode};
    use denali_kernel::{BootImage, HostClock, Image, Quantum, Switch, Vm};

    const VMS: usize = 2000;
    const PAGE: usize = 4096;
    let idle = denali_examples::find("idle").expect("idle is bundled");
    let image = Image::from_elf(idle.elf).unwrap();
    let boot = BootImage::new(&image, 64 << 10).unwrap();
    let code = SharedCode::new();
    let switch = Switch::new();
    let clock = Arc::new(HostClock::new());
    let pagemap = PageMap::open().unwrap();
    // Warm up what every fleet pays once (shared code, allocator arenas) with a first batch.
    let make = |id: u32| {
        let mut vm = Vm::from_boot_image(
            &boot,
            id,
            Box::new(Interpreter::sharing(Arc::clone(&code))),
            Box::new(std::io::sink()),
        )
        .unwrap();
        vm.set_clock(clock.clone());
        vm.connect_switch(&switch);
        vm.doorbell().set_waker(Arc::new(|| {}));
        assert!(matches!(vm.run_quantum(1_000_000).unwrap(), Quantum::Idle { .. }));
        Box::new(vm)
    };
    let warm: Vec<Box<Vm>> = (0..200).map(make).collect();
    let before = anonymous_resident_bytes();
    let vms: Vec<Box<Vm>> = (1000..1000 + VMS as u32).map(make).collect();
    let after = anonymous_resident_bytes();
    let (mut private, mut shared) = (0, 0);
    for vm in &vms {
        let r = pagemap.residency(vm.memory()).unwrap();
        private += r.private;
        shared = shared.max(r.shared);
    }
    let guest = private * PAGE;
    let overhead = (after - before).saturating_sub(guest as u64) / VMS as u64;
    eprintln!(
        "{VMS} idle VMs: anonymous resident +{} KiB, guest pages {} private ({} per VM) + {} shared; host overhead {} bytes per VM",
        (after - before) / 1024,
        private,
        private as f64 / VMS as f64,
        shared,
        overhead
    );
    assert!(overhead <= 16 * 1024, "host overhead {overhead} bytes per idle VM");
    drop(warm);
}

/// `RssAnon` of `/proc/self/status`.
#[cfg(target_os = "linux")]
fn anonymous_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("RssAnon:")).unwrap();
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}
