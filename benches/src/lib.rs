//! Criterion benchmarks of denali's engines live in `benches/`; run them with
//! `cargo bench -p denali-benches`.
