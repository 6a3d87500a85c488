//! `denali examples`: the bundled example guests, one per line.

use std::io::Write;

use crate::error::Failure;

pub fn examples() -> Result<u8, Failure> {
    let all = || denali_examples::ALL.iter().chain(denali_examples::DEVICES).chain(denali_examples::TIMED);
    let width = all().map(|e| e.name.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for example in all() {
        writeln!(out, "{:<width$}  {}", example.name, example.description)
            .map_err(|e| Failure::host(format!("writing to stdout: {e}")))?;
    }
    Ok(0)
}
