//! Guard-region mode's fault handler leaves every fault that is not a guest access in
//! generated code to the handler that was there before: after guest faults were resumed, a
//! bad pointer in Rust code still kills the process with SIGSEGV, and a stack overflow still
//! gets Rust's report. Each case runs in a child process (this test binary, run again with
//! `DENALI_HOST_FAULT` naming the case).

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

mod common;

use common::{flat, same};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "DENALI_HOST_FAULT";

/// Runs a guarded guest whose load faults in generated code (the handler resumes it), so the
/// handler is installed and has run before the host fault.
fn guest_fault_first() {
    // mov ebx, [0x100000]
    let (_, jit) = same(0x10_0000, &flat(&[0x8B, 0x1D, 0x00, 0x00, 0x10, 0x00]), u64::MAX, 100);
    assert!(jit.stats().guard_faults > 0, "{:?}", jit.stats());
}

/// Runs the test `name` of this binary in a child with `CHILD=name`; kills it after a minute
/// (a handler that swallowed the fault would re-run the faulting instruction forever).
fn child(name: &str) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the child hung (the fault was never delivered to the default action)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[inline(never)]
fn recurse(depth: u64, sink: &mut [u8; 256]) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let mut local = [0u8; 4096];
    local[usize::try_from(depth % 4096).unwrap()] = sink[0];
    sink[1] = local[7];
    std::hint::black_box(&mut local);
    recurse(depth + 1, sink) + u64::from(local[9])
}

#[test]
fn a_bad_pointer_in_rust_code_still_dies_of_sigsegv() {
    if std::env::var(CHILD).as_deref() == Ok("a_bad_pointer_in_rust_code_still_dies_of_sigsegv") {
        guest_fault_first();
        // SAFETY: none; this is the crash under test (address 16 is never mapped on Linux).
        let value = unsafe { std::ptr::with_exposed_provenance::<u64>(16).read_volatile() };
        println!("read {value}: the fault was swallowed");
        return;
    }
    let out = child("a_bad_pointer_in_rust_code_still_dies_of_sigsegv");
    assert_eq!(out.status.signal(), Some(libc_sigsegv()), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("swallowed"), "{out:?}");
}

#[test]
fn a_stack_overflow_still_gets_rusts_report() {
    if std::env::var(CHILD).as_deref() == Ok("a_stack_overflow_still_gets_rusts_report") {
        guest_fault_first();
        // A thread of its own (std gives it a guard page and an alternate signal stack).
        let thread = std::thread::Builder::new().stack_size(256 << 10).spawn(|| recurse(0, &mut [0; 256]));
        let _ = thread.unwrap().join();
        return;
    }
    let out = child("a_stack_overflow_still_gets_rusts_report");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has overflowed its stack"), "{out:?}");
    assert!(!out.status.success(), "{out:?}");
}

/// SIGSEGV on Linux (every architecture the JIT runs on).
fn libc_sigsegv() -> i32 {
    11
}
