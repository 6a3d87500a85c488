//! `denali bench` end to end, and the native builds it compares against: the report's last
//! line has the exact format scripts read, bad arguments are one-line errors, and the native
//! build of a kernel prints what its guest prints.
//!
//! Times are not asserted: they depend on the machine and its load.

mod common;
use common::*;

use std::io;
use std::path::Path;
use std::process::{Command, Output};

/// Parses `geomean time ratio vs native: interp=A jit=B qemu-i386=C` into its three values
/// (`None` for `n/a`), or says what is wrong with it. Each value is `n/a` or a number with
/// exactly two decimals.
fn parse_geomean(line: &str) -> Result<[Option<f64>; 3], String> {
    let rest = line.strip_prefix("geomean time ratio vs native: ").ok_or("wrong prefix")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let [a, b, c] = fields.as_slice() else { return Err(format!("{} fields, not 3", fields.len())) };
    let mut values = [None; 3];
    for (i, (field, key)) in [a, b, c].into_iter().zip(["interp", "jit", "qemu-i386"]).enumerate() {
        let value = field.strip_prefix(key).and_then(|v| v.strip_prefix('=')).ok_or(format!("no {key}= in {field}"))?;
        if value == "n/a" {
            continue;
        }
        let (whole, decimals) = value.split_once('.').ok_or(format!("{value} has no decimals"))?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || decimals.len() != 2 || !digits(decimals) {
            return Err(format!("{value} is not a ratio with two decimals"));
        }
        values[i] = Some(value.parse().map_err(|_| format!("{value} does not parse"))?);
    }
    Ok(values)
}

#[test]
fn geomean_line_parser() {
    assert_eq!(
        parse_geomean("geomean time ratio vs native: interp=52.81 jit=n/a qemu-i386=3.94"),
        Ok([Some(52.81), None, Some(3.94)])
    );
    for bad in [
        "geomean time ratio vs native: interp=52.8 jit=n/a qemu-i386=3.94",
        "geomean time ratio vs native: interp=52.81 qemu-i386=3.94",
        "geomean time ratio vs native: jit=1.00 interp=52.81 qemu-i386=3.94",
        "geomean time ratio vs native: interp=52.81 jit=n/a qemu-i386=3.94 ",
        "geomean time ratio: interp=52.81 jit=n/a qemu-i386=3.94",
        "geomean time ratio vs native: interp=-1.00 jit=n/a qemu-i386=3.94",
    ] {
        assert!(parse_geomean(bad).is_err(), "{bad}");
    }
}

#[test]
fn bench_fib_ends_with_the_geomean_line() {
    let output = denali(&["bench", "--filter", "fib", "--repeat", "1"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{}", stderr(&output));
    assert!(out.ends_with('\n'), "{out}");
    let last = out.lines().last().unwrap_or_default();
    let [interp, _jit, _qemu] = parse_geomean(last).unwrap_or_else(|e| panic!("{e}: {last:?}"));
    // The interpreter always runs; its ratio is missing only when native could not.
    let native_ran = !out.contains("native: n/a");
    assert_eq!(interp.is_some(), native_ran, "{out}");
    // Only the selected kernel is in the table, with its exact instruction count.
    let row = out.lines().find(|l| l.starts_with("fib ")).unwrap_or_else(|| panic!("no fib row: {out}"));
    assert!(!row.contains("error"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("sieve ")), "{out}");
}

#[test]
fn bench_rejects_bad_arguments() {
    for (args, mentions) in [
        (&["bench", "--filter", "no-such-kernel"][..], "no-such-kernel"),
        (&["bench", "--filter", "hello"][..], "hello"),
        (&["bench", "--repeat", "0"][..], "at least 1"),
        (&["bench", "--engine", "no-such-engine"][..], "no-such-engine"),
    ] {
        let output = denali(args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("denali: error: "), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(mentions), "expected {mentions:?} in {err}");
        assert!(stdout(&output).is_empty(), "{args:?}");
    }
}

/// Writes `bytes` as an executable file.
fn write_executable(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Runs a program just written. Another test thread may fork while the file is open for
/// writing, leaving the child a writable descriptor until it execs; exec then fails with
/// ETXTBSY for a moment, so retry.
fn run_written(path: &Path) -> io::Result<Output> {
    let mut attempts = 0;
    loop {
        match Command::new(path).output() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

#[test]
fn native_fib_prints_what_the_guest_prints() {
    let example = denali_examples::find("fib").expect("fib is bundled");
    let native = example.native.expect("fib has a native build");
    assert_eq!(&native[..4], b"\x7fELF");
    let dir = temp_dir("native-fib");
    let path = dir.join("native-fib");
    write_executable(&path, native);
    let output = match run_written(&path) {
        Ok(output) => output,
        Err(e) => {
            eprintln!("note: skipped: this host cannot run the i386 build of fib ({e})");
            return;
        }
    };
    let guest = denali(&["run", "--example", "fib"]);
    assert_eq!(guest.status.code(), Some(0), "{}", stderr(&guest));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), stdout(&guest));
    assert_eq!(stdout(&output), (example.expected_output.unwrap())());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_compute_example_has_a_native_build() {
    for example in denali_examples::ALL {
        assert_eq!(example.native.is_some(), example.name != "hello", "{}", example.name);
        if let Some(native) = example.native {
            // ELF32, little-endian, ET_EXEC, EM_386: a static i386 program, not a guest image.
            assert_eq!(&native[..6], b"\x7fELF\x01\x01", "{}", example.name);
            assert_eq!(u16::from_le_bytes([native[16], native[17]]), 2, "{}", example.name);
            assert_eq!(u16::from_le_bytes([native[18], native[19]]), 3, "{}", example.name);
            assert_ne!(native, example.elf, "{}", example.name);
        }
    }
}
