//! Random straight-line blocks, run by the interpreter, the JIT and natively by the host CPU:
//! they must agree. The input picks the block (a seed and a length); on hosts without the CPU
//! oracle the target does nothing.
#![no_main]

use denali_fuzzing::diff_cpu::{DiffCpu, Verdict};
use std::sync::Mutex;

static DIFF: Mutex<Option<Option<DiffCpu>>> = Mutex::new(None);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut seed = [0u8; 8];
    let n = data.len().min(8);
    seed[..n].copy_from_slice(&data[..n]);
    let len = 1 + usize::from(data.get(8).copied().unwrap_or(0) % 8);
    let mut guard = DIFF.lock().unwrap_or_else(|e| e.into_inner());
    let Some(diff) = guard.get_or_insert_with(|| DiffCpu::new().ok()) else { return };
    if let Verdict::Diverged(engine, mismatch) = diff.check(u64::from_le_bytes(seed), len) {
        panic!("{engine} and the CPU disagree:\n{mismatch}");
    }
});
