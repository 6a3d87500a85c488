//! The `denali` binary end to end: exit statuses, error lines, console output, state dumps,
//! `check`, `disasm` and the bundled examples.

mod common;
use common::*;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Asserts the command failed with bad input: status 2 and one `denali: error:` line.
fn assert_input_error(output: &Output, mentions: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "stderr: {err}");
    assert!(err.starts_with("denali: error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(mentions), "expected {mentions:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

const EXIT_7: &[u8] = &[0xB8, 7, 0, 0, 0, 0xCD, 0xD0]; // mov eax,7; int 0xd0
const LOAD_FAULT: &[u8] = &[0xA1, 0xF0, 0xFF, 0xFF, 0xFF]; // mov eax,[0xfffffff0]
const SPIN: &[u8] = &[0xEB, 0xFE]; // jmp $

#[test]
fn missing_file() {
    let output = denali(&["run", "/nonexistent/guest.elf"]);
    assert_input_error(&output, "/nonexistent/guest.elf");
}

#[test]
fn file_that_is_not_elf() {
    let dir = temp_dir("not-elf");
    let path = write(&dir, "script.sh", b"#!/bin/sh\necho hello\n");
    let output = denali(&["run", &path]);
    assert_input_error(&output, &path);
    assert!(stderr(&output).contains("not an ELF file"));
    assert_input_error(&denali(&["check", &path]), "not an ELF file");
    assert_input_error(&denali(&["disasm", &path]), "not an ELF file");
}

#[test]
fn truncated_elf() {
    let dir = temp_dir("truncated");
    let path = write(&dir, "cut.elf", &[0x7F, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0]);
    assert_input_error(&denali(&["run", &path]), "cut.elf");
}

#[test]
fn bad_memory_sizes() {
    let dir = temp_dir("bad-mem");
    let path = write(&dir, "exit7.bin", EXIT_7);
    for bad in ["0", "12345", "5G", "abc"] {
        let output = denali(&["run", "--mem", bad, "--flat", &path, "--load", "0x1000"]);
        assert_input_error(&output, bad);
    }
}

#[test]
fn flat_image_that_does_not_fit() {
    let dir = temp_dir("no-fit");
    let path = write(&dir, "exit7.bin", EXIT_7);
    let output = denali(&["run", "--mem", "8K", "--flat", &path, "--load", "0x1ffc"]);
    assert_input_error(&output, "does not fit in 8 KiB of memory");
    let output = denali(&["run", "--flat", &path, "--load", "0x800"]);
    assert_input_error(&output, "register page");
    let output = denali(&["run", "--flat", &path, "--load", "zz"]);
    assert_input_error(&output, "zz");
}

#[test]
fn unknown_example() {
    let output = denali(&["run", "--example", "no-such-guest"]);
    assert_input_error(&output, "no-such-guest");
    assert!(stderr(&output).contains("hello"), "lists the known examples");
}

#[test]
fn usage_errors_are_one_line() {
    assert_input_error(&denali(&["run"]), "required");
    assert_input_error(&denali(&["run", "--engine", "qemu", "x"]), "qemu");
    assert_input_error(&denali(&["frobnicate"]), "frobnicate");
    let dir = temp_dir("usage");
    let path = write(&dir, "exit7.bin", EXIT_7);
    assert_input_error(&denali(&["run", &path, "--example", "hello"]), "cannot be used with");
}

#[test]
fn help_documents_exit_statuses() {
    let output = denali(&["run", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    for needle in ["124", "125", "0xFF", "--max-instructions", "--dump-state"] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(stdout(&denali(&["--help"])).contains("Exit status"));
}

#[test]
fn fleet_help_describes_the_manifest_form() {
    let text = stdout(&denali(&["fleet", "--help"]));
    for needle in ["fleet manifest: a file whose name ends in .toml", "MANIFEST.toml", "FILE:LINE:COLUMN"] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn exit_status_is_the_guests() {
    let dir = temp_dir("exit-status");
    let path = write(&dir, "exit7.bin", EXIT_7);
    let output = denali(&["run", "--flat", &path, "--load", "0x1000"]);
    assert_eq!(output.status.code(), Some(7), "stderr: {}", stderr(&output));
    assert_eq!(stderr(&output), "");
    // Status 0x107 exits with its low byte.
    let path = write(&dir, "exit263.bin", &[0xB8, 0x07, 0x01, 0, 0, 0xCD, 0xD0]);
    assert_eq!(denali(&["run", "--flat", &path, "--load", "4096"]).status.code(), Some(7));
}

fn dump(dir: &Path, image: &[u8], extra: &[&str]) -> (Output, Value) {
    let path = write(dir, "image.bin", image);
    let state = dir.join("state.json");
    let mut args = vec!["run", "--flat", &path, "--load", "0x1000", "--dump-state", state.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = denali(&args);
    let text = std::fs::read_to_string(&state).unwrap_or_else(|e| panic!("no state dump ({e}): {}", stderr(&output)));
    (output, serde_json::from_str(&text).unwrap())
}

fn assert_registers(state: &Value) {
    for key in ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags", "instructions"] {
        assert!(state[key].is_u64(), "{key} in {state}");
    }
}

#[test]
fn dump_state_when_terminated() {
    let dir = temp_dir("dump-terminated");
    let (output, state) = dump(&dir, EXIT_7, &[]);
    assert_eq!(output.status.code(), Some(7));
    assert_registers(&state);
    assert_eq!(state["eax"], 7);
    assert_eq!(state["instructions"], 2);
    assert_eq!(state["esp"], 16 << 20);
    assert_eq!(state["stop"], serde_json::json!({"kind": "terminated", "status": 7}));
}

#[test]
fn dump_state_when_faulted() {
    let dir = temp_dir("dump-fault");
    let (output, state) = dump(&dir, LOAD_FAULT, &[]);
    assert_eq!(output.status.code(), Some(125));
    let err = stderr(&output);
    assert!(err.contains("memory exception"), "{err}");
    assert!(err.contains("0xfffffff0"), "{err}");
    assert!(err.contains("mov eax,[0xfffffff0]"), "{err}");
    assert!(err.contains("eflags="), "{err}");
    assert_registers(&state);
    assert_eq!(state["stop"]["kind"], "fault");
    assert_eq!(state["stop"]["exception"], "memory");
    assert_eq!(state["stop"]["eip"], 0x1000);
    assert_eq!(state["stop"]["addr"], 0xFFFF_FFF0u32);
}

#[test]
fn dump_state_at_the_limit() {
    let dir = temp_dir("dump-limit");
    let (output, state) = dump(&dir, SPIN, &["--max-instructions", "1000"]);
    assert_eq!(output.status.code(), Some(124));
    assert_eq!(stderr(&output), "denali: stopped after 1000 instructions (--max-instructions)\n");
    assert_registers(&state);
    assert_eq!(state["instructions"], 1000);
    assert_eq!(state["stop"], serde_json::json!({"kind": "limit"}));
}

#[test]
fn trace_file_has_a_line_per_instruction() {
    let dir = temp_dir("trace");
    let path = write(&dir, "exit7.bin", EXIT_7);
    let trace = dir.join("trace.txt");
    let output = denali(&["run", "--flat", &path, "--load", "0x1000", "--trace-file", trace.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(7));
    let text = std::fs::read_to_string(trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("         0 00001000  mov eax,7"), "{text}");
    assert!(lines[1].starts_with("         1 00001005  int 0xd0"), "{text}");
}

/// `mov ds,ax; cli; les eax,[eax]; lgdt [eax]; mov cr0,eax; mov eax,0; int 0xd0`.
const BAD_CODE: &[u8] = &[
    0x8E, 0xD8, // mov ds,ax
    0xFA, // cli
    0xC4, 0x00, // les eax,[eax]
    0x0F, 0x01, 0x10, // lgdt [eax]
    0x0F, 0x22, 0xC0, // mov cr0,eax
    0xB8, 0, 0, 0, 0, // mov eax,0
    0xCD, 0xD0, // int 0xd0
];

#[test]
fn check_lists_each_violation() {
    let dir = temp_dir("check");
    let path = write(&dir, "bad.bin", BAD_CODE);
    let output = denali(&["check", "--flat", &path, "--load", "0x1000"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{text}{}", stderr(&output));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    for (line, (prefix, class)) in lines.iter().zip([
        ("0x00001000: 8e d8  mov ds,ax  ", "SEGMENT"),
        ("0x00001002: fa  cli  ", "SYSTEM"),
        ("0x00001003: c4 00  les eax,[eax]  ", "SEGMENT"),
        ("0x00001005: 0f 01 10  lgdt [eax]  ", "SYSTEM"),
        ("0x00001008: 0f 22 c0  mov cr0,eax  ", "SYSTEM"),
    ]) {
        assert!(line.starts_with(prefix), "{line:?} should start with {prefix:?}");
        assert!(line[prefix.len()..].starts_with(&format!("{class}: ")), "{line}");
    }
    assert_eq!(lines[5], "5 violations in 7 instructions");
}

#[test]
fn check_passes_clean_code() {
    let dir = temp_dir("check-ok");
    let path = write(&dir, "ok.bin", EXIT_7);
    let output = denali(&["check", "--flat", &path, "--load", "0x1000"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "ok: 2 instructions, no violations\n");
}

#[test]
fn disasm_marks_violations() {
    let dir = temp_dir("disasm");
    let path = write(&dir, "bad.bin", BAD_CODE);
    let output = denali(&["disasm", "--flat", &path, "--load", "0x1000"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(';')).collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert!(lines[1].starts_with("0x00001002: fa "), "{text}");
    assert!(lines[1].contains("cli  ; VIOLATION SYSTEM: "), "{text}");
    assert!(lines[6].starts_with("0x00001010: cd d0 "), "{text}");
    assert!(lines[6].ends_with("int 0xd0"), "{text}");
}

#[test]
fn examples_are_listed() {
    let output = denali(&["examples"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    for example in denali_examples::ALL {
        assert!(text.lines().any(|l| l.starts_with(example.name) && l.contains(example.description)), "{text}");
    }
}

#[test]
fn examples_pass_check() {
    for example in denali_examples::ALL {
        let output = denali(&["check", "--example", example.name]);
        assert_eq!(output.status.code(), Some(0), "{}: {}", example.name, stdout(&output));
        assert!(stdout(&output).starts_with("ok: "), "{}", example.name);
    }
}

#[test]
fn hello_runs() {
    let output = denali(&["run", "--example", "hello"]);
    assert_eq!(stderr(&output), "");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), denali_examples::hello_output(0, 16 << 20));
    let output = denali(&["run", "--example", "hello", "--mem", "8K"]);
    assert_input_error(&output, "does not fit in 8 KiB");
}

#[test]
fn every_example_prints_its_expected_output() {
    for example in denali_examples::ALL {
        let output = denali(&["run", "--example", example.name]);
        assert_eq!(
            output.status.code(),
            Some(example.expected_exit as i32 & 0xFF),
            "{}: {}",
            example.name,
            stderr(&output)
        );
        if let Some(expected) = example.expected_output {
            assert_eq!(stdout(&output), expected(), "{}", example.name);
        }
    }
}

/// The JIT's two memory modes (`--memory guarded`, where an access outside memory faults in
/// the host, and `--memory checked`) report a fault exactly as the interpreter does.
#[test]
fn a_fault_is_the_same_under_every_engine_and_memory_mode() {
    let dir = temp_dir("dump-fault-modes");
    let (want_output, want) = dump(&dir, LOAD_FAULT, &["--engine", "interp"]);
    for memory in ["guarded", "checked"] {
        let (output, state) = dump(&dir, LOAD_FAULT, &["--engine", "jit", "--memory", memory]);
        if stderr(&output).contains("needs an x86-64 host") {
            return;
        }
        assert_eq!(state, want, "--memory {memory}");
        assert_eq!(stderr(&output), stderr(&want_output), "--memory {memory}");
        assert_eq!(output.status.code(), Some(125));
    }
}
