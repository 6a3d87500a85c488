//! The interpreter's speed in guest instructions per second on the compute suite: every
//! bundled compute guest runs to completion per iteration, and criterion reports throughput in
//! elements (guest instructions) per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use denali_engine::Interpreter;
use denali_kernel::{Image, Outcome, Vm, VmConfig};
use std::time::Duration;

/// Runs an example to completion and returns the instructions it retired.
fn run(elf: &[u8]) -> u64 {
    let image = Image::from_elf(elf).expect("bundled example is a valid image");
    let mut vm = Vm::new(&image, VmConfig::default(), Box::new(Interpreter::new()), Box::new(std::io::sink()))
        .expect("bundled example fits the default memory");
    let outcome = vm.run(None).expect("console sink cannot fail");
    assert_eq!(outcome, Outcome::Terminated(0), "example must terminate cleanly");
    vm.cpu().instructions
}

fn compute_suite(c: &mut Criterion) {
    let mut group = c.benchmark_group("interp");
    group.sample_size(10).warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_secs(20));
    for example in denali_examples::ALL.iter().filter(|e| e.name != "hello") {
        group.throughput(Throughput::Elements(run(example.elf)));
        group.bench_function(example.name, |b| b.iter(|| run(example.elf)));
    }
    group.finish();
}

criterion_group!(benches, compute_suite);
criterion_main!(benches);
