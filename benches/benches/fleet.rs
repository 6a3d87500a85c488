//! What a fleet costs per VM: booting a VM from an image already loaded, and switching
//! between VMs.
//!
//! - `boot/from_boot_image`: `Vm::from_boot_image` for the `idle` example in 64 KiB (the
//!   `denali fleet` path: memory is a copy-on-write view of the laid-out image), drop excluded;
//!   `boot/new` is `Vm::new` from the parsed image (map, copy, check) for comparison.
//! - `switch/quantum_1_N_vms`: N VMs (1,000 or 10) that each loop on `jmp $` run round-robin
//!   on one worker with a quantum of one instruction; one element is one quantum, so the time
//!   per element is a VM switch plus one guest instruction. With 1,000 VMs the next VM's
//!   state is out of the CPU's caches and TLB at every switch; with 10 it is in them.
//!   `switch/jit_quantum_1_N_vms`: the same under the fleets' tiered JIT.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use denali_engine::Interpreter;
use denali_fleet::{EngineFactory, Fleet, FleetConfig, VmSpec};
use denali_jit::Jit;
use denali_kernel::{BootImage, Image, Vm, VmConfig};

const MEM: u32 = 64 << 10;

fn idle_image() -> Image {
    let idle = denali_examples::find("idle").expect("idle is bundled");
    Image::from_elf(idle.elf).expect("bundled example is a valid image")
}

fn boot(c: &mut Criterion) {
    let image = idle_image();
    let boot_image = BootImage::new(&image, MEM).expect("idle fits 64 KiB");
    let mut group = c.benchmark_group("boot");
    group.warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(3));
    group.bench_function("from_boot_image", |b| {
        b.iter_with_large_drop(|| {
            Vm::from_boot_image(&boot_image, 1, Box::new(Interpreter::new()), Box::new(std::io::sink())).unwrap()
        });
    });
    group.bench_function("new", |b| {
        b.iter_with_large_drop(|| {
            let config = VmConfig { mem_size: MEM, vm_id: 1 };
            Vm::new(&image, config, Box::new(Interpreter::new()), Box::new(std::io::sink())).unwrap()
        });
    });
    group.finish();
}

fn switch(c: &mut Criterion) {
    // 0x1000: jmp $ (EB FE).
    let spin = Arc::new(Image::flat(&[0xEB, 0xFE], 0x1000, None).unwrap());
    let quanta = 2_000_000;
    let mut group = c.benchmark_group("switch");
    group.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(quanta));
    // 1,000 VMs: each switch finds the next VM's state out of the cache; 10: in it. The
    // interpreter, and the fleets' tiered JIT (the default engine of `denali fleet`), whose
    // `jmp $` is translated after its first runs.
    let tiered: EngineFactory = Arc::new(denali_jit::fleet_engines());
    let engines = [("", None), ("jit_", Jit::available().then_some(tiered))];
    for (prefix, engine) in engines.iter().filter(|(prefix, engine)| prefix.is_empty() || engine.is_some()) {
        for vms in [1000, 10] {
            let specs = vec![VmSpec::new(Arc::clone(&spin), MEM); vms];
            group.bench_function(format!("{prefix}quantum_1_{vms}_vms"), |b| {
                b.iter(|| {
                    let mut config = FleetConfig::new();
                    config.threads = 1;
                    config.quantum = 1;
                    config.instruction_limit = Some(quanta);
                    if let Some(engine) = engine {
                        config.engine = Arc::clone(engine);
                    }
                    let report = Fleet::new(config).run(&specs);
                    assert!(report.quanta >= quanta);
                    report
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, boot, switch);
criterion_main!(benches);
