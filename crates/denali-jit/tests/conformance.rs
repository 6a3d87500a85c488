//! The whole conformance suite (every vector of every form) on the JIT.

#![cfg(target_arch = "x86_64")]

use std::path::Path;

use denali_conformance::runner::run_suite;
use denali_engine::Engine;
use denali_jit::Jit;

#[test]
fn the_jit_passes_every_conformance_vector() {
    let Some(_) = Jit::new() else {
        eprintln!("no JIT on this host (BMI2 missing): skipped");
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors");
    let factory = || -> Box<dyn Engine> { Box::new(Jit::new().expect("checked above")) };
    let report = run_suite(&factory, &dir, None, None).unwrap_or_else(|e| panic!("{e}"));
    let failures = report.failure_details();
    println!("{}", report.summary());
    assert!(report.failures() == 0, "{}{failures}", report.summary());
    assert_eq!(report.coverage_permille(), 1000, "{}", report.summary());
}
