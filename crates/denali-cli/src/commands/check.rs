//! `denali check`: sweeps every executable segment with the validator and lists the
//! instructions outside the subset.

use std::io::Write;

use denali_isa::disasm::{Line, sweep};

use crate::args::ImageArgs;
use crate::error::Failure;
use crate::source;

/// Exit status when the image has violations.
pub const EXIT_VIOLATIONS: u8 = 3;

pub fn check(args: &ImageArgs) -> Result<u8, Failure> {
    let source = source::load(args)?;
    let mut out = std::io::stdout().lock();
    let (mut instructions, mut violations) = (0usize, 0usize);
    for segment in source.image.code() {
        for line in sweep(&segment.data, segment.addr) {
            instructions += 1;
            if let Some(violation) = &line.violation {
                violations += 1;
                writeln!(out, "{}  {}: {}", prefix(&line), violation.class, violation.rule).map_err(stdout_failed)?;
            }
        }
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if violations == 0 {
        writeln!(out, "ok: {}, no violations", plural(instructions, "instruction")).map_err(stdout_failed)?;
        Ok(0)
    } else {
        writeln!(out, "{} in {}", plural(violations, "violation"), plural(instructions, "instruction"))
            .map_err(stdout_failed)?;
        Ok(EXIT_VIOLATIONS)
    }
}

/// `0x00100234: 0f 22 c0  mov cr0,eax`.
pub fn prefix(line: &Line) -> String {
    format!("0x{:08x}: {}  {}", line.addr, hex(&line.bytes), line.text)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

pub fn stdout_failed(error: std::io::Error) -> Failure {
    Failure::host(format!("writing to stdout: {error}"))
}
