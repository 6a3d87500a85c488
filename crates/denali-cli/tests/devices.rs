//! `denali run` with devices: the device example guests (`idle`, `disk`, `fault`), the
//! `--disk`, `--keyboard-script` and `--pcap` options and their errors.

mod common;
use common::*;

use std::time::{Duration, Instant};

fn example(name: &str) -> &'static denali_examples::Example {
    denali_examples::find(name).unwrap()
}

#[test]
fn idle_sleeps_about_one_second() {
    let start = Instant::now();
    let output = denali(&["run", "--example", "idle"]);
    let took = start.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), (example("idle").expected_output.unwrap())());
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn fault_exits_125_with_a_diagnostic() {
    let output = denali(&["run", "--example", "fault"]);
    assert_eq!(output.status.code(), Some(125));
    assert_eq!(stdout(&output), (example("fault").expected_output.unwrap())());
    let err = stderr(&output);
    assert!(err.contains("memory exception") && err.contains("address 0x01000000"), "{err}");
}

#[test]
fn disk_writes_flushes_and_reads_back() {
    let path = temp_dir("disk").join("disk.img");
    std::fs::write(&path, vec![0u8; 16 * 4096]).unwrap();
    let disk = path.to_str().unwrap();
    let output = denali(&["run", "--example", "disk", "--disk", disk]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), denali_examples::disk_output());
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len(), 16 * 4096, "a disk never grows");
    assert!(data[8 * 4096..].iter().all(|&b| b == 0), "only blocks 0 to 7 are written");
    assert_eq!(&data[..4], &[0, 7, 14, 21]);

    // Read-only: the first write is refused.
    let output = denali(&["run", "--example", "disk", "--disk", &format!("{disk},ro")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("failed with status 6"), "{}", stdout(&output));

    // No disk: the guest says so.
    let output = denali(&["run", "--example", "disk"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).contains("--disk"), "{}", stdout(&output));
}

#[test]
fn bad_disk_files_are_input_errors() {
    let dir = temp_dir("bad-disk");
    let odd = dir.join("odd.img");
    std::fs::write(&odd, vec![0u8; 5000]).unwrap();
    for (disk, mentions) in [
        (odd.to_str().unwrap().to_owned(), "multiple of the 4096-byte block"),
        ("/nonexistent/disk.img".to_owned(), "/nonexistent/disk.img"),
        (format!("{},xx", odd.display()), "unknown disk mode"),
    ] {
        let output = denali(&["run", "--example", "hello", "--disk", &disk]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert!(err.contains(mentions), "expected {mentions:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn keyboard_script_and_pcap_options_are_accepted() {
    let dir = temp_dir("options");
    let script = dir.join("keys.txt");
    std::fs::write(&script, b"hello\n").unwrap();
    let pcap = dir.join("capture.pcap");
    let output = denali(&[
        "run",
        "--example",
        "hello",
        "--keyboard-script",
        script.to_str().unwrap(),
        "--pcap",
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // No frames crossed the switch: the capture is a bare pcap header.
    let data = std::fs::read(&pcap).unwrap();
    assert_eq!(data.len(), 24);
    assert_eq!(u32::from_le_bytes(data[..4].try_into().unwrap()), 0xA1B2_C3D4);

    let output = denali(&["run", "--example", "hello", "--keyboard-script", "/nonexistent/keys"]);
    assert_eq!(output.status.code(), Some(2));
    let output = denali(&["run", "--example", "hello", "--keyboard-script", "x", "--keyboard-stdin"]);
    assert_eq!(output.status.code(), Some(2), "the two keyboard sources conflict");
}
