//! `denali conformance` end to end over a vectors directory written by the test: the summary
//! line, failing forms as diffs, `--filter`, and the exit statuses.

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Output;

use denali_conformance::case::{Case, Expected, State, Stop, Vector};
use denali_conformance::vector::write_form;

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("denali-cli-conformance-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `add eax,ebx` of 2 + 3; `eax` is the expected EAX, 5 when the vector is right.
fn add(eax: u32) -> Vector {
    let init = State::with_regs([2, 0, 0, 3, 0x20_0000, 0, 0, 0], 0x10_0000, 0x202);
    Vector {
        case: Case { form: "Add_rm32_r32".into(), code: vec![0x01, 0xd8], init, memory: vec![] },
        expected: Expected {
            state: State { eax, eip: 0x10_0002, eflags: 0x206, ..init }, // PF: 5 has two ones
            final_memory: vec![],
            stop: None,
            flags_mask: 0x8d5,
        },
    }
}

fn hlt() -> Vector {
    let init = State::with_regs([0, 0, 0, 0, 0x20_0000, 0, 0, 0], 0x10_0000, 0x202);
    Vector {
        case: Case { form: "Hlt".into(), code: vec![0xf4], init, memory: vec![] },
        expected: Expected { state: init, final_memory: vec![], stop: Some(Stop::Idle), flags_mask: 0x8d5 },
    }
}

fn vectors(test: &str, add_vectors: &[Vector]) -> String {
    let dir = temp_dir(test);
    write_form(&dir, "Add_rm32_r32", add_vectors).unwrap();
    write_form(&dir, "Hlt", &[hlt(), hlt()]).unwrap();
    dir.to_str().unwrap().to_owned()
}

fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().to_owned()
}

#[test]
fn passing_vectors_print_the_summary_last() {
    let dir = vectors("pass", &[add(5), add(5), add(5)]);
    let output = denali(&["conformance", "--vectors", &dir]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
    let last = last_line(&output);
    let prefix = "conformance: 2 forms, 5 cases, 0 failures, coverage ";
    let percent = last.strip_prefix(prefix).and_then(|rest| rest.strip_suffix("% of subset forms"));
    let percent = percent.unwrap_or_else(|| panic!("not a summary line: {last:?}"));
    assert!(percent.starts_with("0.") && percent.len() == 3, "{last}");
    // Two forms of the subset have vectors; the others are missing, so the suite is incomplete.
    assert!(stdout.contains("missing: "), "{stdout}");
    assert_eq!(output.status.code(), Some(4), "{stdout}");

    // Selected by a filter, the forms are complete: exit 0.
    let output = denali(&["conformance", "--vectors", &dir, "--filter", "HLT"]);
    assert_eq!(last_line(&output), "conformance: 1 forms, 2 cases, 0 failures, coverage 100.0% of subset forms");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    assert_eq!(output.status.code(), Some(0));

    let output = denali(&["conformance", "--vectors", &dir, "--filter", "hlt", "--sample", "1"]);
    assert_eq!(last_line(&output), "conformance: 1 forms, 1 cases, 0 failures, coverage 100.0% of subset forms");
    assert_eq!(output.status.code(), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failing_form_is_shown_as_a_diff() {
    let dir = vectors("fail", &[add(5), add(6)]);
    let output = denali(&["conformance", "--vectors", &dir, "--filter", "add_rm32_r32"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(4), "{stdout}");
    assert!(stdout.starts_with("FAIL Add_rm32_r32: 1 of 2 cases failed; the first is case 2:\n"), "{stdout}");
    assert!(stdout.contains("\n    code 0x00100000: 01 d8  add eax,ebx\n"), "{stdout}");
    assert!(stdout.contains("\n    eax: expected 0x00000006, got 0x00000005\n"), "{stdout}");
    // The filter is a substring: it selects Xadd_rm32_r32 too, which has no vectors.
    assert_eq!(last_line(&output), "conformance: 1 forms, 2 cases, 1 failures, coverage 50.0% of subset forms");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_vectors_directory_is_bad_input() {
    let output = denali(&["conformance", "--vectors", "/nonexistent/vectors"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.starts_with("denali: error: /nonexistent/vectors"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn a_filter_that_matches_nothing_is_bad_input() {
    let dir = vectors("no-match", &[add(5)]);
    let output = denali(&["conformance", "--vectors", &dir, "--filter", "no_such_form"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no form matches --filter 'no_such_form'"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
