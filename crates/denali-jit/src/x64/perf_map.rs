//! Naming translated blocks for `perf`: with `DENALI_JIT_PERF_MAP` set in the environment, each
//! block is appended to `/tmp/perf-<pid>.map` (the format `perf report` reads for JIT code) as
//! `g<guest address>`, so a profile shows which guest blocks the time goes to.

use std::fs::File;
use std::io::Write;

/// The variable that turns the map on (any value).
const VAR: &str = "DENALI_JIT_PERF_MAP";

pub(crate) struct PerfMap {
    file: File,
}

impl PerfMap {
    /// The map, when the environment asks for one and the file can be opened.
    pub fn from_env() -> Option<PerfMap> {
        std::env::var_os(VAR)?;
        let path = format!("/tmp/perf-{}.map", std::process::id());
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).ok()?;
        Some(PerfMap { file })
    }

    /// Announces `len` bytes of host code at `host` translating the block at guest `eip`. A
    /// failed write only loses a name in a profile.
    pub fn record(&mut self, host: u64, len: usize, eip: u32) {
        let _ = writeln!(self.file, "{host:x} {len:x} g{eip:x}");
    }
}
