//! Helpers shared by the end-to-end tests of the `denali` binary.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the `denali` binary built for these tests.
pub fn denali(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_denali")).args(args).output().expect("the denali binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh directory for one test's files (the process id keeps test binaries apart).
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("denali-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
