//! `denali fleet`: a small fleet of the `idle` example, its JSON summary and console modes.

mod common;
use common::*;

#[test]
fn json_summary_has_every_key() {
    let output =
        denali(&["fleet", "--example", "idle", "--count", "20", "--mem", "1088K", "--json", "--console", "none"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
    for key in [
        "vms_booted",
        "vms_completed",
        "vms_faulted",
        "peak_live_vms",
        "boot_us_per_vm",
        "wall_s",
        "peak_rss_bytes",
        "context_switches_per_s",
        "guest_instructions_per_s",
        "packets_switched",
        "packets_per_s",
        "packets_dropped",
        "vms_exit_nonzero",
        "vm_cpu_s",
        "max_vm_cpu_s",
    ] {
        assert!(summary.get(key).is_some(), "missing {key} in {text}");
    }
    assert_eq!(summary["vms_booted"], 20);
    assert_eq!(summary["vms_completed"], 20);
    assert_eq!(summary["vms_faulted"], 0);
}

#[test]
fn console_lines_are_prefixed_with_the_vm_id() {
    let output = denali(&["fleet", "--example", "hello", "--count", "3"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    for id in 0..3 {
        assert!(text.contains(&format!("[vm {id}] ")), "{text}");
    }
    assert!(text.contains("fleet: 3 booted, 3 completed, 0 faulted"), "{text}");
}

#[test]
fn every_console_line_of_every_vm_comes_in_order_before_the_summary() {
    // Lines go to stdout in batches (console.rs): none may be lost, reordered within a VM, or
    // come after the summary.
    let count = 200;
    let output = denali(&["fleet", "--example", "idle", "--count", &count.to_string(), "--mem", "64K", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let summary: serde_json::Value = serde_json::from_str(lines.last().unwrap()).expect("the summary is last");
    assert_eq!(summary["vms_completed"], count);
    for id in 0..count {
        let prefix = format!("[vm {id}] ");
        let own: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix(&prefix)).collect();
        let expected = [
            "idle: round 1: woken by the timer: true",
            "idle: round 2: woken by the timer: true",
            "idle: round 3: timeout expired: true",
            "idle: round 4: timeout expired: true",
            "idle: slept at least 1 s: true",
        ];
        assert_eq!(own, expected, "vm {id}");
    }
    assert_eq!(lines.len(), count * 5 + 1);
}

#[test]
fn a_faulting_fleet_exits_125_and_reports_each_fault() {
    let output = denali(&["fleet", "--example", "fault", "--count", "2", "--console", "none"]);
    assert_eq!(output.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("vm 0:") && stderr.contains("vm 1:"), "{stderr}");
}

#[test]
fn a_fleet_that_can_only_idle_forever_ends_with_a_message_and_125() {
    // mov dword [IRQ_ENABLE = 0x1c], 1; mov eax, 0xFFFFFFFF (no timeout); hlt; int 0xd0
    let code =
        [0xC7, 0x05, 0x1C, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xB8, 0xFF, 0xFF, 0xFF, 0xFF, 0xF4, 0xCD, 0xD0];
    let dir = temp_dir("idle-forever");
    let image = dir.join("waiter.bin");
    std::fs::write(&image, code).unwrap();
    let output = denali(&[
        "fleet",
        "--flat",
        image.to_str().unwrap(),
        "--load",
        "0x1000",
        "--count",
        "3",
        "--mem",
        "64K",
        "--console",
        "none",
    ]);
    assert_eq!(output.status.code(), Some(125), "{}", stderr(&output));
    let stderr = stderr(&output);
    for id in 0..3 {
        assert!(stderr.contains(&format!("vm {id}: idles forever")), "{stderr}");
    }
}

#[test]
fn a_pingpong_fleet_switches_two_frames_per_round() {
    // One worker boots every VM before running any, so no frame is lost or resent.
    let args = ["fleet", "--example", "pingpong", "--count", "4", "--threads", "1", "--json", "--console", "none"];
    let output = denali(&args);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap();
    assert_eq!(summary["packets_switched"], 2 * 2 * u64::from(denali_examples::PINGPONG_DEFAULT_ROUNDS));
    assert_eq!(summary["packets_dropped"], 0);
    assert_eq!(summary["vms_exit_nonzero"], 0);
}

#[test]
fn a_lone_pingpong_gives_up_with_status_2() {
    let output = denali(&["run", "--example", "pingpong"]);
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), denali_examples::pingpong_alone_output(0));
    // A fleet whose VMs exit non-zero says so in its summary.
    let output = denali(&["fleet", "--example", "pingpong", "--count", "1", "--json", "--console", "none"]);
    let summary: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap();
    assert_eq!(summary["vms_exit_nonzero"], 1);
    assert_eq!(summary["packets_dropped"], 200);
}

#[test]
fn an_experiment_prints_one_table_row_per_fleet() {
    let output = denali(&["experiment", "interrupts", "--counts", "2,4"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| 2 |") || l.starts_with("| 4 |")).collect();
    assert_eq!(rows.len(), 4, "{text}");
    // Every pair completes its 1000 rounds: 2000 frames a pair.
    assert!(rows[0].starts_with("| 2 | batched | 1 of 1 | 2"), "{text}");
    assert!(rows[3].starts_with("| 4 | synchronous | 2 of 2 | 4"), "{text}");
}

#[test]
fn an_experiment_refuses_an_odd_fleet() {
    let output = denali(&["experiment", "switch", "--counts", "2,3"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("3 is odd"));
}
