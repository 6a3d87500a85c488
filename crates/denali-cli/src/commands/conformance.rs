//! `denali conformance`: runs the ISA conformance vectors on an engine. Prints each failing form
//! with its first failing case as an indented diff, then, as the last line, the summary
//! `conformance: F forms, C cases, X failures, coverage P% of subset forms` (P with one
//! decimal, rounded down, so 100.0 means every form).

use std::io::Write;
use std::path::{Path, PathBuf};

use denali_conformance::runner::{self, Report};
use denali_engine::{Engine, GuestMemory, Interpreter, MemoryError};

use crate::args::{ConformanceArgs, EngineKind};
use crate::commands::check::stdout_failed;
use crate::error::Failure;

/// Exit status when a case failed or a selected subset form has no vectors.
pub const EXIT_FAILURES: u8 = 4;

/// The vectors directory when `--vectors` is not given: the checkout the command runs in
/// first, then the source tree the binary was built from.
const DEFAULT_DIR: &str = "conformance/vectors";
const BUILT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../conformance/vectors");

/// Uncovered forms named on the `missing:` line; the rest are counted.
const NAMED_MISSING: usize = 10;

pub fn conformance(args: &ConformanceArgs) -> Result<u8, Failure> {
    let dir = vectors_dir(args.vectors.as_deref())?;
    let engine = args.engine;
    if engine == EngineKind::Jit && denali_jit::Jit::new().is_none() {
        return Err(Failure::host(super::run::NO_JIT));
    }
    let factory = move || -> Box<dyn Engine> {
        match engine {
            EngineKind::Interp => Box::new(Interpreter::new()),
            EngineKind::Jit => match denali_jit::Jit::new() {
                Some(jit) => Box::new(jit),
                None => Box::new(Interpreter::new()),
            },
        }
    };
    let filter = args.filter.as_deref();
    let memory = args.memory;
    let new_memory = move |size: u64| -> Result<GuestMemory, MemoryError> {
        let size = u32::try_from(size).map_err(|_| MemoryError::TooLarge(size))?;
        memory.new_memory(engine, size)
    };
    let report = runner::run_suite_in(&factory, &dir, filter, args.sample, &new_memory).map_err(Failure::input)?;
    if let Some(filter) = filter.filter(|_| report.forms.is_empty() && report.subset_forms == 0) {
        return Err(Failure::input(format!("no form matches --filter '{filter}'")));
    }
    print(&report).map_err(stdout_failed)?;
    Ok(if report.passed() { 0 } else { EXIT_FAILURES })
}

fn vectors_dir(given: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(dir) = given {
        return match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => Ok(dir.to_owned()),
            Ok(_) => Err(Failure::input(format!("{}: not a directory", dir.display()))),
            Err(error) => Err(Failure::input(format!("{}: {error}", dir.display()))),
        };
    }
    [Path::new(DEFAULT_DIR), Path::new(BUILT_DIR)].into_iter().find(|d| d.is_dir()).map(Path::to_owned).ok_or_else(
        || {
            Failure::input(format!(
                "no conformance vectors: neither {DEFAULT_DIR} nor {BUILT_DIR} exists (generate them as \
                 conformance/README.md says, or give --vectors DIR)"
            ))
        },
    )
}

fn print(report: &Report) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for form in report.forms.iter().filter(|f| f.failed()) {
        if let Some(error) = &form.error {
            writeln!(out, "FAIL {}: {error}", form.form)?;
        }
        if let Some(first) = &form.first_failure {
            writeln!(
                out,
                "FAIL {}: {} of {} cases failed; the first is case {}:",
                form.form, form.failures, form.cases, first.case
            )?;
            for line in first.mismatch.to_string().lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    if !report.uncovered.is_empty() {
        let named: Vec<&str> = report.uncovered.iter().take(NAMED_MISSING).map(String::as_str).collect();
        let more = report.uncovered.len() - named.len();
        write!(out, "missing: {} subset forms have no vectors: {}", report.uncovered.len(), named.join(" "))?;
        if more > 0 {
            write!(out, " and {more} more")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "{}", report.summary())?;
    out.flush()
}
