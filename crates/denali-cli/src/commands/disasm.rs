//! `denali disasm`: every instruction of the executable segments, violations marked.

use std::io::Write;

use denali_isa::disasm::sweep;

use crate::args::ImageArgs;
use crate::commands::check::{hex, stdout_failed};
use crate::error::Failure;
use crate::source;

/// Width of the bytes column: eight bytes, which most instructions fit; longer ones push the
/// text right rather than wrap.
const BYTES_WIDTH: usize = 8 * 3 - 1;

pub fn disasm(args: &ImageArgs) -> Result<u8, Failure> {
    let source = source::load(args)?;
    let mut out = std::io::stdout().lock();
    for segment in source.image.code() {
        writeln!(out, "; segment {} (0x{:08x}..0x{:08x})", segment.index, segment.addr, segment.end())
            .map_err(stdout_failed)?;
        for line in sweep(&segment.data, segment.addr) {
            let mut text = format!("0x{:08x}: {:<BYTES_WIDTH$}  {}", line.addr, hex(&line.bytes), line.text);
            if let Some(violation) = &line.violation {
                text = format!("{text}  ; VIOLATION {}: {}", violation.class, violation.rule);
            }
            writeln!(out, "{text}").map_err(stdout_failed)?;
        }
    }
    Ok(0)
}
