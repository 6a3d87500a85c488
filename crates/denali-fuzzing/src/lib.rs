//! Oracles for fuzzing, kept apart from any fuzzer so that `cargo test` runs them too (through
//! proptest) and `fuzz/` holds only thin glue.

pub mod diff_cpu;
pub mod flat_image;
