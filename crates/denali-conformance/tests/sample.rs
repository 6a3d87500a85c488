//! The `cargo test` sample of the committed conformance vectors: 25 cases of every form, spread
//! evenly over each file, run on the interpreter. `denali conformance` runs them all.

use std::path::Path;

use denali_conformance::runner::run_suite;
use denali_engine::{Engine, Interpreter};

/// Cases run per form.
const SAMPLE: usize = 25;

#[test]
fn the_interpreter_passes_a_sample_of_the_vectors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors");
    assert!(
        dir.join("MANIFEST.json").is_file(),
        "{} has no MANIFEST.json: generate the vectors (see conformance/README.md)",
        dir.display()
    );
    let factory = || -> Box<dyn Engine> { Box::new(Interpreter::new()) };
    let report = run_suite(&factory, &dir, None, Some(SAMPLE)).unwrap_or_else(|e| panic!("{e}"));
    let failures = report.failure_details();
    println!("{}", report.summary());
    assert!(report.failures() == 0, "{}{failures}", report.summary());
    assert_eq!(report.coverage_permille(), 1000, "every subset form must have vectors: {}", report.summary());
}
