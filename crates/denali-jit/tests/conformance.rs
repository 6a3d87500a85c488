//! The whole conformance suite (every vector of every form) on the JIT, in the checked mode and
//! in guard-region mode.

#![cfg(target_arch = "x86_64")]

use std::path::Path;

use denali_conformance::runner::{NewMemory, run_suite_in};
use denali_engine::{Engine, GuestMemory};
use denali_jit::Jit;

#[test]
fn the_jit_passes_every_conformance_vector() {
    suite(&GuestMemory::new);
}

#[cfg(target_os = "linux")]
#[test]
fn the_jit_passes_every_conformance_vector_in_guard_region_mode() {
    suite(&GuestMemory::guarded);
}

fn suite(memory: &NewMemory) {
    let Some(_) = Jit::new() else {
        eprintln!("no JIT on this host (BMI2 missing): skipped");
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors");
    let factory = || -> Box<dyn Engine> { Box::new(Jit::new().expect("checked above")) };
    let report = run_suite_in(&factory, &dir, None, None, memory).unwrap_or_else(|e| panic!("{e}"));
    let failures = report.failure_details();
    println!("{}", report.summary());
    assert!(report.failures() == 0, "{}{failures}", report.summary());
    assert_eq!(report.coverage_permille(), 1000, "{}", report.summary());
}
