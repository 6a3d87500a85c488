//! The measurement of `memory.rs` and `memory_jit.rs` (see `memory.rs`).

/// Host bytes per idle VM beyond its private guest pages, for VMs with engines from `engine`.
pub fn idle_vm_overhead(name: &str, engine: &dyn Fn() -> Box<dyn denali_engine::Engine>) -> u64 {
    use std::sync::Arc;

    use denali_engine::residency::PageMap;
    use denali_kernel::{BootImage, HostClock, Image, Quantum, Switch, Vm};

    const VMS: usize = 2000;
    const PAGE: usize = 4096;
    let idle = denali_examples::find("idle").expect("idle is bundled");
    let image = Image::from_elf(idle.elf).unwrap();
    let boot = BootImage::new(&image, 64 << 10).unwrap();
    let switch = Switch::new();
    let clock = Arc::new(HostClock::new());
    let pagemap = PageMap::open().unwrap();
    // Warm up what every fleet pays once (shared code, allocator arenas) with a first batch.
    let make = |id: u32| {
        let mut vm = Vm::from_boot_image(&boot, id, engine(), Box::new(std::io::sink())).unwrap();
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
        "{name}: {VMS} idle VMs: anonymous resident +{} KiB, guest pages {} private ({} per VM) + {} shared; host overhead {} bytes per VM",
        (after - before) / 1024,
        private,
        private as f64 / VMS as f64,
        shared,
        overhead
    );
    drop(warm);
    overhead
}

/// `RssAnon` of `/proc/self/status`.
fn anonymous_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("RssAnon:")).unwrap();
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}
