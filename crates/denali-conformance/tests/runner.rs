//! The runner and the vector files with hand-written vectors, whose expected results are worked
//! out from the Intel manual rather than taken from an engine.

use std::path::PathBuf;

use denali_conformance::case::{Case, Expected, MEMORY_SIZE, Region, State, Stop, Vector};
use denali_conformance::runner::{self, Difference, run_suite, run_vector};
use denali_conformance::vector::{self, FormEntry, Manifest, Source, VectorError};
use denali_engine::{Engine, Interpreter};

const CODE: u32 = 0x0010_0000;
const DATA: u32 = 0x0020_0000;
/// CF PF AF ZF SF OF: the flags ADD defines.
const ARITH_FLAGS: u32 = 0x8d5;

fn state(regs: [u32; 8], eip: u32, eflags: u32) -> State {
    State::with_regs(regs, eip, eflags)
}

fn vector(form: &str, code: &[u8], init: State, memory: Vec<Region>, expected: Expected) -> Vector {
    Vector { case: Case { form: form.into(), code: code.to_vec(), init, memory }, expected }
}

/// `add eax,ebx` with EAX = 0xFFFFFFFF, EBX = 1: EAX becomes 0 with a carry out of bit 31 (CF)
/// and out of bit 3 (AF), a zero result (ZF) whose low byte has an even number of ones (PF),
/// no sign (SF) and no signed overflow (OF).
fn add_eax_ebx() -> Vector {
    let init = state([0xffff_ffff, 0, 0, 1, DATA, 0, 0, 0], CODE, 0x202 | 0x880); // SF OF set before
    let fin = state([0, 0, 0, 1, DATA, 0, 0, 0], CODE + 2, 0x202 | 0x01 | 0x04 | 0x10 | 0x40);
    vector(
        "Add_rm32_r32",
        &[0x01, 0xd8],
        init,
        vec![],
        Expected { state: fin, final_memory: vec![], stop: None, flags_mask: ARITH_FLAGS },
    )
}

fn interp() -> Box<dyn Engine> {
    Box::new(Interpreter::new())
}

fn run(vector: &Vector) -> Result<(), denali_conformance::runner::Mismatch> {
    run_vector(&mut Interpreter::new(), vector)
}

#[test]
fn add_sets_the_flags_the_manual_gives() {
    run(&add_eax_ebx()).unwrap_or_else(|m| panic!("{m}"));
}

#[test]
fn a_store_is_compared_in_final_memory() {
    // mov [ebx],eax
    let init = state([0x1122_3344, 0, 0, DATA + 1, DATA, 0, 0, 0], CODE, 0x202);
    let v = vector(
        "Mov_rm32_r32",
        &[0x89, 0x03],
        init,
        vec![Region { addr: DATA, data: vec![0xaa; 6] }],
        Expected {
            state: State { eip: CODE + 2, ..init },
            final_memory: vec![Region { addr: DATA, data: vec![0xaa, 0x44, 0x33, 0x22, 0x11, 0xaa] }],
            stop: None,
            flags_mask: 0,
        },
    );
    run(&v).unwrap_or_else(|m| panic!("{m}"));

    let mut wrong = v.clone();
    wrong.expected.final_memory[0].data[2] = 0x99;
    let text = run(&wrong).unwrap_err().to_string();
    assert!(
        text.contains("memory 0x00200000: expected aa 44 99 22 11 aa, got aa 44 33 22 11 aa (differs at +0x2)"),
        "{text}"
    );
}

#[test]
fn a_load_that_straddles_the_end_of_memory_faults_at_the_memory_size() {
    // mov eax,[0x00fffffe]: two bytes in memory, two beyond; nothing retires.
    let init = state([7, 0, 0, 0, DATA, 0, 0, 0], CODE, 0x202);
    let v = vector(
        "Mov_r32_rm32",
        &[0x8b, 0x05, 0xfe, 0xff, 0xff, 0x00],
        init,
        vec![],
        Expected {
            state: init,
            final_memory: vec![],
            stop: Some(Stop::Memory { addr: MEMORY_SIZE }),
            flags_mask: ARITH_FLAGS,
        },
    );
    run(&v).unwrap_or_else(|m| panic!("{m}"));
}

#[test]
fn div_by_zero_stops_before_the_instruction() {
    // div ecx with ECX = 0
    let init = state([10, 0, 0, 0, DATA, 0, 0, 0], CODE, 0x202);
    let v = vector(
        "Div_rm32",
        &[0xf7, 0xf1],
        init,
        vec![],
        Expected { state: init, final_memory: vec![], stop: Some(Stop::Divide), flags_mask: 0 },
    );
    run(&v).unwrap_or_else(|m| panic!("{m}"));
}

#[test]
fn hlt_is_idle() {
    let init = state([0, 0, 0, 0, DATA, 0, 0, 0], CODE, 0x202);
    let v = vector(
        "Hlt",
        &[0xf4],
        init,
        vec![],
        Expected { state: init, final_memory: vec![], stop: Some(Stop::Idle), flags_mask: ARITH_FLAGS },
    );
    run(&v).unwrap_or_else(|m| panic!("{m}"));
}

#[test]
fn a_jump_out_of_the_code_ends_the_case() {
    // jmp $+0x12: EIP leaves the code at once; the zero bytes there never run.
    let init = state([0; 8], CODE, 0x202);
    let v = vector(
        "Jmp_rel8_32",
        &[0xeb, 0x10],
        init,
        vec![],
        Expected { state: State { eip: CODE + 0x12, ..init }, final_memory: vec![], stop: None, flags_mask: 0 },
    );
    run(&v).unwrap_or_else(|m| panic!("{m}"));
}

#[test]
fn a_mismatch_is_a_readable_diff() {
    let mut v = add_eax_ebx();
    v.expected.state.eax = 5;
    v.expected.state.eflags &= !0x40; // expect ZF clear
    let mismatch = run(&v).unwrap_err();
    assert!(matches!(mismatch.differences[0], Difference::Register { index: 0, expected: 5, got: 0 }));
    let text = mismatch.to_string();
    for wanted in [
        "form Add_rm32_r32",
        "code 0x00100000: 01 d8  add eax,ebx",
        "init eax=ffffffff",
        "eax: expected 0x00000005, got 0x00000000",
        "eflags: expected CF PF AF, got CF PF AF ZF (compared: CF PF AF ZF SF OF)",
    ] {
        assert!(text.contains(wanted), "expected {wanted:?} in:\n{text}");
    }
    assert!(!text.contains("stop:"), "the ending matched:\n{text}");
}

#[test]
fn a_wrong_stop_is_reported() {
    let mut v = add_eax_ebx();
    v.expected.stop = Some(Stop::Divide);
    let text = run(&v).unwrap_err().to_string();
    assert!(text.contains("stop: expected divide fault, got none (EIP left the code)"), "{text}");
}

#[test]
fn a_region_outside_memory_cannot_run() {
    let mut v = add_eax_ebx();
    v.case.memory.push(Region { addr: MEMORY_SIZE - 1, data: vec![1, 2] });
    let text = run(&v).unwrap_err().to_string();
    assert!(text.contains("cannot run"), "{text}");
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("denali-conformance-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn vector_files_round_trip() {
    let dir = temp_dir("round-trip");
    let vectors = vec![add_eax_ebx(), add_eax_ebx()];
    let path = vector::write_form(&dir, "Add_rm32_r32", &vectors).unwrap();
    assert_eq!(path, dir.join("Add_rm32_r32.jsonl.gz"));
    assert_eq!(vector::read_form(&path).unwrap(), vectors);
    assert_eq!(vector::list_forms(&dir).unwrap(), ["Add_rm32_r32"]);
    // Reproducible: the same vectors give the same bytes.
    let first = std::fs::read(&path).unwrap();
    vector::write_form(&dir, "Add_rm32_r32", &vectors).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), first);

    assert!(vector::read_manifest(&dir).unwrap().is_none());
    let manifest = Manifest {
        format: vector::FORMAT,
        cpu: "Hand-written".into(),
        vendor: "none".into(),
        generated: "2025-01-01".into(),
        generator: "tests".into(),
        forms: [("Add_rm32_r32".to_owned(), FormEntry { cases: 2, source: Source::Cpu })].into(),
    };
    vector::write_manifest(&dir, &manifest).unwrap();
    assert_eq!(vector::read_manifest(&dir).unwrap(), Some(manifest));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_vector_files_name_the_file_and_line() {
    let dir = temp_dir("bad-files");
    // A vector of another form in a form's file.
    let err = vector::write_form(&dir, "Hlt", &[add_eax_ebx()]).unwrap_err();
    assert!(matches!(err, VectorError::WrongForm { line: 1, .. }), "{err}");
    // A line that is not a vector.
    let path = dir.join("Add_rm32_r32.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let good = serde_json::to_string(&add_eax_ebx()).unwrap();
    std::io::Write::write_all(&mut gz, format!("{good}\n{{\"form\":1}}\n").as_bytes()).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let text = vector::read_form(&path).unwrap_err().to_string();
    assert!(text.contains("Add_rm32_r32.jsonl.gz:2: not a vector"), "{text}");
    // Not gzip at all.
    std::fs::write(&path, b"plain text\n").unwrap();
    let text = vector::read_form(&path).unwrap_err().to_string();
    assert!(text.contains("Add_rm32_r32.jsonl.gz:1:"), "{text}");
    // A missing file.
    let text = vector::read_form(&dir.join("Nope.jsonl.gz")).unwrap_err().to_string();
    assert!(text.contains("Nope.jsonl.gz"), "{text}");
    // A manifest of another format.
    std::fs::write(dir.join("MANIFEST.json"), r#"{"format": 2}"#).unwrap();
    let text = vector::read_manifest(&dir).unwrap_err().to_string();
    assert!(text.contains("format 2 is not supported"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_suite_reports_forms_failures_and_coverage() {
    let dir = temp_dir("suite");
    let mut bad = add_eax_ebx();
    bad.expected.state.eax = 1;
    vector::write_form(&dir, "Add_rm32_r32", &[add_eax_ebx(), bad, add_eax_ebx()]).unwrap();
    let hlt = {
        let init = state([0, 0, 0, 0, DATA, 0, 0, 0], CODE, 0x202);
        vector(
            "Hlt",
            &[0xf4],
            init,
            vec![],
            Expected { state: init, final_memory: vec![], stop: Some(Stop::Idle), flags_mask: 0 },
        )
    };
    vector::write_form(&dir, "Hlt", &[hlt]).unwrap();

    let report = run_suite(&interp, &dir, None, None).unwrap();
    assert_eq!(report.forms.len(), 2);
    assert_eq!((report.cases(), report.failures()), (4, 1));
    let add = &report.forms[0];
    assert_eq!((add.form.as_str(), add.cases, add.failures), ("Add_rm32_r32", 3, 1));
    let first = add.first_failure.as_ref().unwrap();
    assert_eq!(first.case, 2);
    assert!(first.mismatch.to_string().contains("eax: expected 0x00000001"));
    assert!(!report.forms[1].failed());
    let subset = runner::subset_forms().len();
    assert_eq!((report.subset_forms, report.covered_forms), (subset, 2));
    assert!(!report.passed());
    let line = report.summary();
    assert!(line.starts_with("conformance: 2 forms, 4 cases, 1 failures, coverage 0."), "{line}");
    assert!(line.ends_with("% of subset forms"), "{line}");

    // The filter is a case-insensitive substring, and coverage counts only the forms it selects.
    let report = run_suite(&interp, &dir, Some("hLT"), None).unwrap();
    assert_eq!((report.forms.len(), report.failures()), (1, 0));
    assert_eq!((report.subset_forms, report.covered_forms), (1, 1));
    assert!(report.passed());
    assert_eq!(report.summary(), "conformance: 1 forms, 1 cases, 0 failures, coverage 100.0% of subset forms");

    // A sample of 1 takes the first case of each form.
    let report = run_suite(&interp, &dir, None, Some(1)).unwrap();
    assert_eq!((report.cases(), report.failures()), (2, 0));

    // A manifest that disagrees with the files fails the forms concerned.
    let manifest = Manifest {
        format: vector::FORMAT,
        cpu: "Hand-written".into(),
        vendor: "none".into(),
        generated: "2025-01-01".into(),
        generator: "tests".into(),
        forms: [
            ("Hlt".to_owned(), FormEntry { cases: 2, source: Source::Spec }),
            ("Nop".to_owned(), FormEntry { cases: 1, source: Source::Cpu }),
        ]
        .into(),
    };
    vector::write_manifest(&dir, &manifest).unwrap();
    let report = run_suite(&interp, &dir, None, None).unwrap();
    let errors: Vec<_> = report.forms.iter().map(|f| (f.form.as_str(), f.error.is_some())).collect();
    assert_eq!(errors, [("Add_rm32_r32", false), ("Hlt", true), ("Nop", true)]);
    let report = run_suite(&interp, &dir, Some("hlt"), None).unwrap();
    assert!(report.forms[0].error.as_ref().unwrap().contains("MANIFEST.json lists 2"), "{:?}", report.forms[0]);

    assert!(run_suite(&interp, &dir.join("missing"), None, None).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
