//! Naming translated blocks for `perf`, and dumping them for a disassembler.
//!
//! With `DENALI_JIT_PERF_MAP` set in the environment, each block is appended to
//! `/tmp/perf-<pid>.map` (the format `perf report` reads for JIT code) as `g<guest address>`,
//! so a profile shows which guest blocks the time goes to. With `DENALI_JIT_DUMP=<dir>`, each
//! block's bytes are written to `<dir>/g<guest address>.bin` as translated (links not yet
//! patched: each linkable `jmp rel32` still jumps to the next instruction), for
//! `objdump -D -b binary -mi386:x86-64 <file>`; a later translation of the same address
//! replaces its file.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

/// The variable that turns the map on (any value).
const VAR: &str = "DENALI_JIT_PERF_MAP";
/// The variable that names the directory blocks are dumped to.
const DUMP_VAR: &str = "DENALI_JIT_DUMP";

pub(crate) struct PerfMap {
    file: Option<File>,
    dump: Option<PathBuf>,
}

impl PerfMap {
    /// The map, when the environment asks for a map (and its file can be opened) or a dump.
    pub fn from_env() -> Option<PerfMap> {
        let file = std::env::var_os(VAR).and_then(|_| {
            let path = format!("/tmp/perf-{}.map", std::process::id());
            std::fs::OpenOptions::new().create(true).append(true).open(path).ok()
        });
        let dump = std::env::var_os(DUMP_VAR).map(PathBuf::from);
        (file.is_some() || dump.is_some()).then_some(PerfMap { file, dump })
    }

    /// Announces `code` at `host` translating the block at guest `eip`. A failed write only
    /// loses a name in a profile or a dumped block.
    pub fn record(&mut self, host: u64, code: &[u8], eip: u32) {
        if let Some(file) = &mut self.file {
            let _ = writeln!(file, "{host:x} {:x} g{eip:x}", code.len());
        }
        if let Some(dir) = &self.dump {
            let _ = std::fs::write(dir.join(format!("g{eip:x}.bin")), code);
        }
    }
}
