//! Generates the conformance vectors: for every v1 form, the generator's cases run on the host
//! CPU (or, for the forms the spec defines, against the spec), written to
//! `conformance/vectors/` with a manifest naming the CPU.
//!
//! `cargo run --release -p denali-conformance --bin generate-vectors -- [--out DIR] [--filter FORM]`

use denali_conformance::case::{Expected, Vector};
use denali_conformance::generate::{self, flags_mask, spec_defined, spec_expected};
use denali_conformance::oracle::{Oracle, OracleError};
use denali_conformance::runner::matches;
use denali_conformance::vector::{self, FORMAT, FormEntry, Manifest, Source};
use std::path::PathBuf;
use std::process::ExitCode;

/// The seed of every generated case set: vectors are reproducible on the same CPU.
const SEED: u64 = 0xDE4A_11C0_4F04_0001;

struct Args {
    out: PathBuf,
    filter: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { out: PathBuf::from("conformance/vectors"), filter: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => args.out = it.next().ok_or("--out needs a directory")?.into(),
            "--filter" => args.filter = Some(it.next().ok_or("--filter needs a form name")?),
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: generate-vectors [--out DIR] [--filter FORM])"
                ));
            }
        }
    }
    Ok(args)
}

fn vendor() -> String {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("vendor_id").and_then(|r| r.split(':').nth(1)).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("generate-vectors: error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut oracle = match Oracle::start() {
        Ok(o) => o,
        Err(OracleError::Unavailable(why)) => {
            eprintln!("generate-vectors: the host CPU cannot serve as the oracle here ({why}); skipping generation.");
            eprintln!("The committed vectors still run everywhere: denali conformance");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("generate-vectors: error: cannot start the oracle: {e}");
            return ExitCode::from(1);
        }
    };
    let mut manifest = match vector::read_manifest(&args.out) {
        Ok(Some(m)) if args.filter.is_some() => m,
        _ => Manifest {
            format: FORMAT,
            cpu: Oracle::cpu_model(),
            vendor: vendor(),
            generated: String::new(),
            generator: format!("denali {}", env!("CARGO_PKG_VERSION")),
            forms: Default::default(),
        },
    };
    manifest.cpu = Oracle::cpu_model();
    manifest.vendor = vendor();
    manifest.generated = today();
    let mut failed = false;
    for form in generate::all_forms() {
        let name = format!("{form:?}");
        if !matches(&name, args.filter.as_deref()) {
            continue;
        }
        let wanted = generate::cases_per_form(form);
        // Some cases cannot run natively (they would touch the oracle's own pages, or loop);
        // generate a margin and keep the first `wanted` that ran.
        let cases = generate::cases(form, wanted + wanted / 4, SEED);
        let mask = flags_mask(form);
        let (source, results): (Source, Vec<Option<Expected>>) = if spec_defined(form) {
            (Source::Spec, cases.iter().map(|c| Some(spec_expected(c))).collect())
        } else {
            let observed = oracle.run_batch(&cases);
            let mut dropped = Vec::new();
            let results = observed
                .into_iter()
                .map(|r| match r {
                    Ok(o) => Some(Expected { state: o.state, final_memory: o.memory, stop: o.stop, flags_mask: mask }),
                    Err(e) => {
                        dropped.push(e.to_string());
                        None
                    }
                })
                .collect();
            if !dropped.is_empty() {
                eprintln!("{name}: {} cases did not run natively, e.g. {}", dropped.len(), dropped[0]);
            }
            (Source::Cpu, results)
        };
        let vectors: Vec<Vector> = cases
            .into_iter()
            .zip(results)
            .filter_map(|(case, expected)| expected.map(|expected| Vector { case, expected }))
            .take(wanted)
            .collect();
        if vectors.len() < wanted {
            eprintln!("{name}: only {} of {wanted} cases ran natively", vectors.len());
            failed = true;
        }
        if let Err(e) = vector::write_form(&args.out, &name, &vectors) {
            eprintln!("generate-vectors: error: {e}");
            return ExitCode::from(1);
        }
        manifest.forms.insert(name.clone(), FormEntry { cases: vectors.len(), source });
        println!("{name}: {} cases", vectors.len());
    }
    if let Err(e) = vector::write_manifest(&args.out, &manifest) {
        eprintln!("generate-vectors: error: {e}");
        return ExitCode::from(1);
    }
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// Today's date as `YYYY-MM-DD` (UTC), from the system clock.
fn today() -> String {
    let days =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
