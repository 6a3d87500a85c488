//! Each engine's speed in guest instructions per second on the compute suite: every bundled
//! compute guest runs to completion per iteration, under the interpreter and under the JIT
//! (where this host can run it), and criterion reports throughput in elements (guest
//! instructions) per second. One group per kernel, one function per engine, so criterion's
//! report puts the engines side by side.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use denali_engine::{Engine, Interpreter};
use denali_kernel::{Image, Outcome, Vm, VmConfig};
use std::time::Duration;

/// Makes a fresh engine, or `None` when this host cannot run it.
type MakeEngine = fn() -> Option<Box<dyn Engine>>;

/// The engines to compare, by name.
const ENGINES: &[(&str, MakeEngine)] = &[
    ("interp", || Some(Box::new(Interpreter::new()))),
    ("jit", || denali_jit::Jit::new().map(|jit| Box::new(jit) as Box<dyn Engine>)),
];

/// Runs an example to completion on `engine` and returns the instructions it retired.
fn run(elf: &[u8], engine: Box<dyn Engine>) -> u64 {
    let image = Image::from_elf(elf).expect("bundled example is a valid image");
    let mut vm = Vm::new(&image, VmConfig::default(), engine, Box::new(std::io::sink()))
        .expect("bundled example fits the default memory");
    let outcome = vm.run(None).expect("console sink cannot fail");
    assert_eq!(outcome, Outcome::Terminated(0), "example must terminate cleanly");
    vm.cpu().instructions
}

fn compute_suite(c: &mut Criterion) {
    for example in denali_examples::ALL.iter().filter(|e| e.name != "hello") {
        let mut group = c.benchmark_group(example.name);
        group.sample_size(10).warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_secs(10));
        group.throughput(Throughput::Elements(run(example.elf, Box::new(Interpreter::new()))));
        for (name, make) in ENGINES {
            if make().is_none() {
                continue;
            }
            group.bench_function(*name, |b| b.iter(|| run(example.elf, make().expect("checked above"))));
        }
        group.finish();
    }
}

criterion_group!(benches, compute_suite);
criterion_main!(benches);
