//! `denali fleet MANIFEST.toml`: a mixed fleet runs; every kind of error in a manifest names
//! the file, line and field and exits 2; writable disks are attached once (within a fleet and
//! across processes) while read-only ones are shared; keyboard input reaches the chosen VM,
//! with consoles in per-VM files or prefixed lines.

mod common;
use common::*;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use iced_x86::code_asm::*;

/// Writes `text` as `dir/fleet.toml` and runs `denali fleet` on it with `extra` options.
fn fleet(dir: &Path, text: &str, extra: &[&str]) -> Output {
    let manifest = dir.join("fleet.toml");
    std::fs::write(&manifest, text).unwrap();
    let mut args = vec!["fleet", manifest.to_str().unwrap()];
    args.extend_from_slice(extra);
    denali(&args)
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_mixed_fleet_runs() {
    let dir = temp_dir("mixed");
    let text = r#"
[fleet]
threads = 2
console = "files:out"

[[group]]
name = "greeters"
example = "hello"
count = 3
mem = "64K"
disks = [{ path = "base.img", read_only = true, size = "8K" }]

[[group]]
example = "idle"
count = 2
mem = "64K"
network = false
engine = "ENGINE"

[[group]]
example = "disk"
mem = "1M"
disks = [{ path = "disks/vm-{id}.img", size = "32K" }]
"#;
    // A group may have its own engine: the JIT where this host runs it.
    let engine = if denali_jit::Jit::new().is_some() { "jit" } else { "interp" };
    let output = fleet(&dir, &text.replace("ENGINE", engine), &["--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_str(stdout(&output).trim()).expect("one JSON object");
    assert_eq!(summary["vms_booted"], 6);
    assert_eq!(summary["vms_completed"], 6);
    for id in 0..3 {
        assert_eq!(read(dir.join(format!("out/vm-{id}.txt"))), denali_examples::hello_output(id, 64 << 10));
    }
    assert_eq!(read(dir.join("out/vm-5.txt")), denali_examples::disk_output());
    let disk = std::fs::read(dir.join("disks/vm-5.img")).unwrap();
    assert_eq!(disk.len(), 32 << 10);
    assert!(disk.iter().any(|&b| b != 0), "the disk guest wrote its own disk");
    assert!(!dir.join("disks/vm-4.img").exists(), "only the disk group has per-VM disks");
}

#[test]
fn the_example_manifest_runs() {
    let dir = temp_dir("example");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml");
    let output = fleet(&dir, &std::fs::read_to_string(example).unwrap(), &["--console", "none", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_str(stdout(&output).trim()).expect("one JSON object");
    assert_eq!(summary["vms_completed"], 6);
    assert!(dir.join("fleet-disks/vm-5.img").exists());
}

/// One manifest error: the manifest, then what the one line on stderr must say.
struct Case {
    what: &'static str,
    manifest: &'static str,
    /// `fleet.toml:LINE:` and the field, or "" for a whole-file error.
    line: u32,
    field: &'static str,
    message: &'static str,
}

#[test]
fn every_manifest_error_names_file_line_and_field() {
    let dir = temp_dir("errors");
    std::fs::write(dir.join("taken.img"), vec![0u8; 32 << 10]).unwrap();
    let cases = [
        Case {
            what: "unknown field",
            manifest: "[[group]]\nexample = \"hello\"\ncont = 2\n",
            line: 3,
            field: "group[0].cont",
            message: "unknown field `cont`",
        },
        Case {
            what: "unknown fleet field",
            manifest: "[fleet]\nworkers = 2\n[[group]]\nexample = \"hello\"\n",
            line: 2,
            field: "fleet.workers",
            message: "unknown field `workers`",
        },
        Case {
            what: "wrong type",
            manifest: "[[group]]\nexample = \"hello\"\ncount = \"three\"\n",
            line: 3,
            field: "group[0].count",
            message: "invalid type: string \"three\"",
        },
        Case {
            what: "wrong type in a disk",
            manifest: "[[group]]\nexample = \"hello\"\ndisks = [\n  { path = \"a.img\", read_only = \"yes\" },\n]\n",
            line: 4,
            field: "group[0].disks[0].read_only",
            message: "invalid type: string \"yes\"",
        },
        Case {
            what: "no image",
            manifest: "[[group]]\nexample = \"hello\"\n\n[[group]]\ncount = 2\n",
            line: 4,
            field: "group[1]",
            message: "has no image",
        },
        Case {
            what: "missing image file",
            manifest: "[[group]]\nimage = \"missing.elf\"\n",
            line: 2,
            field: "group[0].image",
            message: "missing.elf: cannot read",
        },
        Case {
            what: "unknown example",
            manifest: "[[group]]\nexample = \"nope\"\n",
            line: 2,
            field: "group[0].example",
            message: "unknown example 'nope'",
        },
        Case {
            what: "two images",
            manifest: "[[group]]\nexample = \"hello\"\nimage = \"guest.elf\"\n",
            line: 3,
            field: "group[0].image",
            message: "a group has one image",
        },
        Case {
            what: "count 0",
            manifest: "[[group]]\nexample = \"hello\"\ncount = 0\n",
            line: 3,
            field: "group[0].count",
            message: "must be at least 1",
        },
        Case {
            what: "negative count",
            manifest: "[[group]]\nexample = \"hello\"\ncount = -4\n",
            line: 3,
            field: "group[0].count",
            message: "invalid value: integer `-4`",
        },
        Case {
            what: "bad memory size",
            manifest: "[[group]]\nexample = \"hello\"\nmem = \"12345\"\n",
            line: 3,
            field: "group[0].mem",
            message: "not a multiple of the 4 KiB page",
        },
        Case {
            what: "memory too small for the image",
            manifest: "[[group]]\nexample = \"hello\"\nmem = \"8K\"\n",
            line: 3,
            field: "group[0].mem",
            message: "does not fit",
        },
        Case {
            what: "bad budget",
            manifest: "[fleet]\nmem_budget = \"lots\"\n[[group]]\nexample = \"hello\"\n",
            line: 2,
            field: "fleet.mem_budget",
            message: "not a memory size",
        },
        Case {
            what: "bad enum",
            manifest: "[fleet]\ninterrupts = \"fast\"\n[[group]]\nexample = \"hello\"\n",
            line: 2,
            field: "fleet.interrupts",
            message: "unknown variant `fast`",
        },
        Case {
            what: "bad console",
            manifest: "[[group]]\nexample = \"hello\"\nconsole = \"loud\"\n",
            line: 3,
            field: "group[0].console",
            message: "unknown console mode 'loud'",
        },
        Case {
            what: "missing disk file",
            manifest: "[[group]]\nexample = \"disk\"\nmem = \"1M\"\ndisks = [{ path = \"absent.img\" }]\n",
            line: 4,
            field: "group[0].disks[0].path",
            message: "absent.img: No such file or directory",
        },
        Case {
            what: "bad disk size",
            manifest: "[[group]]\nexample = \"disk\"\nmem = \"1M\"\ndisks = [{ path = \"new.img\", size = \"5000\" }]\n",
            line: 4,
            field: "group[0].disks[0].size",
            message: "not a whole number of 4096-byte blocks",
        },
        Case {
            what: "writable disk for a whole group",
            manifest: "[[group]]\nexample = \"disk\"\nmem = \"1M\"\ncount = 2\ndisks = [{ path = \"taken.img\" }]\n",
            line: 5,
            field: "group[0].disks[0].path",
            message: "would be attached to all 2 VMs of the group",
        },
        Case {
            what: "duplicate writable disk",
            manifest: "[[group]]\nexample = \"disk\"\nmem = \"1M\"\ndisks = [{ path = \"taken.img\" }]\n\n\
                       [[group]]\nexample = \"disk\"\nmem = \"1M\"\ndisks = [{ path = \"./taken.img\" }]\n",
            line: 9,
            field: "group[1].disks[0].path",
            message: "already attached writable to VM 0",
        },
        Case {
            what: "writable and read-only at once",
            manifest: "[[group]]\nexample = \"hello\"\ncount = 2\ndisks = [{ path = \"taken.img\", read_only = true }]\n\n\
                       [[group]]\nexample = \"disk\"\nmem = \"1M\"\ndisks = [{ path = \"taken.img\" }]\n",
            line: 9,
            field: "group[1].disks[0].path",
            message: "already attached read-only to VM 0",
        },
        Case {
            what: "keyboard for a VM that does not exist",
            manifest: "[fleet]\nkeyboard_stdin = 3\n[[group]]\nexample = \"hello\"\ncount = 3\n",
            line: 2,
            field: "fleet.keyboard_stdin",
            message: "there is no VM 3",
        },
        Case {
            what: "missing keyboard script",
            manifest: "[[group]]\nexample = \"hello\"\nkeyboard_script = \"keys.txt\"\n",
            line: 3,
            field: "group[0].keyboard_script",
            message: "keys.txt: cannot read",
        },
        Case {
            what: "load without a flat image",
            manifest: "[[group]]\nexample = \"hello\"\nload = 0x1000\n",
            line: 3,
            field: "group[0].load",
            message: "only for a flat image",
        },
        Case { what: "malformed TOML", manifest: "[[group]\nexample = 1\n", line: 1, field: "", message: "" },
        Case {
            what: "duplicate key",
            manifest: "[[group]]\nexample = \"hello\"\ncount = 1\ncount = 2\n",
            line: 4,
            field: "",
            message: "duplicate key: `count`",
        },
        Case { what: "no groups", manifest: "[fleet]\nthreads = 2\n", line: 1, field: "", message: "no [[group]]" },
    ];
    for case in &cases {
        let output = fleet(&dir, case.manifest, &["--console", "none"]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{}: {err}", case.what);
        assert_eq!(err.lines().count(), 1, "{}: one line: {err}", case.what);
        assert!(err.starts_with("denali: error: "), "{}: {err}", case.what);
        assert!(!err.contains("panicked"), "{}: {err}", case.what);
        let place = format!("fleet.toml:{}:", case.line);
        assert!(err.contains(&place), "{}: wanted {place} in: {err}", case.what);
        if !case.field.is_empty() {
            let field = format!("field `{}`", case.field);
            let named = err.contains(&field) || err.contains(&format!(" {}", case.field));
            assert!(named, "{}: wanted the field {} in: {err}", case.what, case.field);
        }
        assert!(err.contains(case.message), "{}: wanted '{}' in: {err}", case.what, case.message);
    }
}

#[test]
fn command_line_options_and_manifests_fit_together() {
    let dir = temp_dir("options");
    let manifest = "[fleet]\nconsole = \"files:out\"\n[[group]]\nexample = \"hello\"\nmem = \"64K\"\n";
    let output = fleet(&dir, manifest, &["--count", "2"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--count cannot be used with a manifest"), "{}", stderr(&output));
    // The command line overrides the manifest's fleet-wide settings.
    let output = fleet(&dir, manifest, &["--console", "prefix"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("[vm 0] Hello from Denali VM 0"), "{}", stdout(&output));
    assert!(!dir.join("out").exists());
    let output = denali(&["fleet", "--example", "hello"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--count N is needed"), "{}", stderr(&output));
    let missing = dir.join("absent.toml");
    let output = denali(&["fleet", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("absent.toml: cannot read"), "{}", stderr(&output));
}

#[test]
fn writable_disks_on_the_command_line_need_one_file_per_vm() {
    let dir = temp_dir("cli-disks");
    let shared = dir.join("shared.img");
    std::fs::write(&shared, vec![0u8; 32 << 10]).unwrap();
    let shared = shared.to_str().unwrap();
    let output = denali(&["fleet", "--example", "disk", "--mem", "1M", "--count", "2", "--disk", shared]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--disk: writable disk"), "{}", stderr(&output));
    for id in 0..2 {
        std::fs::write(dir.join(format!("vm-{id}.img")), vec![0u8; 32 << 10]).unwrap();
    }
    let template = dir.join("vm-{id}.img");
    let output = denali(&[
        "fleet",
        "--example",
        "disk",
        "--mem",
        "1M",
        "--count",
        "2",
        "--disk",
        template.to_str().unwrap(),
        "--console",
        "none",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for id in 0..2 {
        assert!(std::fs::read(dir.join(format!("vm-{id}.img"))).unwrap().iter().any(|&b| b != 0), "vm {id}");
    }
}

/// A disk file this test process holds a lock on, as another denali process would.
fn locked(path: &Path, exclusive: bool) -> File {
    let file = File::options().read(true).write(true).open(path).unwrap();
    if exclusive {
        file.try_lock().unwrap()
    } else {
        file.try_lock_shared().unwrap()
    }
    file
}

#[test]
fn a_writable_disk_in_use_by_another_process_is_refused() {
    let dir = temp_dir("in-use");
    let disk = dir.join("busy.img");
    std::fs::write(&disk, vec![0u8; 32 << 10]).unwrap();
    let manifest = "[[group]]\nexample = \"disk\"\nmem = \"1M\"\ndisks = [{ path = \"busy.img\" }]\n";
    let reader = locked(&disk, false);
    let output = fleet(&dir, manifest, &["--console", "none"]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("fleet.toml:4:") && err.contains("is in use"), "{err}");
    // The same for `denali run`.
    let output = denali(&["run", "--example", "disk", "--mem", "1M", "--disk", disk.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("is in use"), "{}", stderr(&output));
    drop(reader);
    let output = fleet(&dir, manifest, &["--console", "none"]);
    assert_eq!(output.status.code(), Some(0), "free again: {}", stderr(&output));
}

#[test]
fn a_read_only_disk_is_shared_across_processes() {
    let dir = temp_dir("shared-ro");
    let disk = dir.join("base.img");
    std::fs::write(&disk, vec![0u8; 8 << 10]).unwrap();
    let _other_reader = locked(&disk, false);
    let manifest = "[[group]]\nexample = \"hello\"\nmem = \"64K\"\ncount = 4\n\
                    disks = [{ path = \"base.img\", read_only = true }]\n";
    let output = fleet(&dir, manifest, &["--console", "none"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    drop(_other_reader);
    let _writer = locked(&disk, true);
    let output = fleet(&dir, manifest, &["--console", "none"]);
    assert_eq!(output.status.code(), Some(2), "a reader waits for no writer");
    assert!(stderr(&output).contains("in use: another VM or process has it open for writing"), "{}", stderr(&output));
}

/// A flat guest that copies keyboard input to its console until it reads '.', then
/// terminates with 0; after 2 s without input it terminates with 3.
fn echo_guest(dir: &Path) -> PathBuf {
    const POLLS: u32 = 2000;
    let mut a = CodeAssembler::new(32).unwrap();
    let mut top = a.create_label();
    let mut got = a.create_label();
    let mut done = a.create_label();
    let mut none = a.create_label();
    let mut build = || -> Result<(), IcedError> {
        a.mov(esi, POLLS)?;
        a.set_label(&mut top)?;
        a.mov(edx, u32::from(denali_abi::port::KBD_GETC))?;
        a.in_(eax, dx)?;
        a.cmp(eax, -1)?;
        a.jne(got)?;
        a.dec(esi)?;
        a.jz(none)?;
        a.mov(eax, 1000u32)?;
        a.hlt()?;
        a.jmp(top)?;
        a.set_label(&mut got)?;
        a.cmp(eax, u32::from(b'.'))?;
        a.je(done)?;
        a.mov(edx, u32::from(denali_abi::port::CONSOLE_PUTC))?;
        a.out(dx, eax)?;
        a.mov(esi, POLLS)?;
        a.jmp(top)?;
        a.set_label(&mut done)?;
        a.mov(eax, 0u32)?;
        a.int(0xd0)?;
        a.set_label(&mut none)?;
        a.mov(eax, 3u32)?;
        a.int(0xd0)
    };
    build().unwrap();
    let path = dir.join("echo.bin");
    std::fs::write(&path, a.assemble(0x1000).unwrap()).unwrap();
    path
}

/// Runs `denali ARGS` with `input` on its stdin.
fn denali_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_denali"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn stdin_reaches_the_chosen_vm_with_prefixed_lines_and_per_vm_files() {
    let dir = temp_dir("stdin");
    let echo = echo_guest(&dir);
    let echo = echo.to_str().unwrap();
    let common = ["fleet", "--flat", echo, "--load", "0x1000", "--count", "3", "--mem", "64K", "--keyboard-stdin", "1"];
    let output = denali_with_stdin(&common, b"typed.");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.lines().any(|line| line == "[vm 1] typed"), "{text}");
    assert_eq!(text.matches("typed").count(), 1, "only VM 1 got the input: {text}");

    let files = dir.join("out");
    let mut args = common.to_vec();
    let console = format!("files:{}", files.display());
    args.extend(["--console", &console]);
    let output = denali_with_stdin(&args, b"into a file.");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(read(files.join("vm-1.txt")), "into a file");
    assert_eq!(read(files.join("vm-0.txt")), "");
    assert_eq!(read(files.join("vm-2.txt")), "");
}

#[test]
fn a_keyboard_script_on_the_command_line_reaches_every_vm() {
    let dir = temp_dir("cli-script");
    let echo = echo_guest(&dir);
    let keys = dir.join("keys.txt");
    std::fs::write(&keys, "for all.").unwrap();
    let output = denali(&[
        "fleet",
        "--flat",
        echo.to_str().unwrap(),
        "--load",
        "0x1000",
        "--count",
        "2",
        "--mem",
        "64K",
        "--keyboard-script",
        keys.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for id in 0..2 {
        assert!(text.lines().any(|line| line == format!("[vm {id}] for all")), "{text}");
    }
}

#[test]
fn a_manifest_gives_keyboard_scripts_and_consoles_per_group() {
    let dir = temp_dir("scripts");
    echo_guest(&dir);
    std::fs::write(dir.join("keys.txt"), "scripted.").unwrap();
    let manifest = r#"
[fleet]
keyboard_stdin = 0

[[group]]
flat = "echo.bin"
load = 0x1000
mem = "64K"

[[group]]
flat = "echo.bin"
load = 0x1000
mem = "64K"
count = 2
keyboard_script = "keys.txt"
console = "files:out"
"#;
    std::fs::write(dir.join("fleet.toml"), manifest).unwrap();
    let output = denali_with_stdin(&["fleet", dir.join("fleet.toml").to_str().unwrap()], b"from stdin.");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.lines().any(|line| line == "[vm 0] from stdin"), "{text}");
    assert!(!text.contains("scripted"), "{text}");
    for id in [1, 2] {
        assert_eq!(read(dir.join(format!("out/vm-{id}.txt"))), "scripted");
    }
}

/// A flat guest that broadcasts one 60-byte frame, idles 20 ms so the switch forwards it, and
/// terminates with the send's status.
fn broadcaster(dir: &Path) {
    use denali_abi::block::buffer;
    const REQ: u32 = 0x8000;
    const BUF: u32 = 0x9000;
    let mut a = CodeAssembler::new(32).unwrap();
    let mut build = || -> Result<(), IcedError> {
        a.mov(dword_ptr(BUF), 0xFFFF_FFFFu32)?;
        a.mov(word_ptr(BUF + 4), 0xFFFFu32)?;
        a.mov(dword_ptr(REQ + buffer::ADDR), BUF)?;
        a.mov(dword_ptr(REQ + buffer::LEN), 60u32)?;
        a.mov(eax, REQ)?;
        a.mov(edx, u32::from(denali_abi::port::NIC_SEND))?;
        a.out(dx, eax)?;
        a.mov(eax, 20_000u32)?;
        a.hlt()?;
        a.mov(eax, dword_ptr(REQ + buffer::STATUS))?;
        a.int(0xd0)
    };
    build().unwrap();
    std::fs::write(dir.join("broadcast.bin"), a.assemble(0x1000).unwrap()).unwrap();
}

#[test]
fn groups_off_the_network_send_nothing_through_the_switch() {
    let dir = temp_dir("network");
    broadcaster(&dir);
    let manifest = r#"
[fleet]
pcap = "frames.pcap"

[[group]]
flat = "broadcast.bin"
load = 0x1000
mem = "64K"
count = 3

[[group]]
flat = "broadcast.bin"
load = 0x1000
mem = "64K"
count = 4
network = false
"#;
    let output = fleet(&dir, manifest, &["--json", "--threads", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_str(stdout(&output).trim()).expect("one JSON object");
    assert_eq!(summary["vms_completed"], 7);
    assert_eq!(summary["packets_switched"], 3, "one frame from each networked VM");
    // A pcap file: a 24-byte header, then per frame a 16-byte record header and the frame.
    let pcap = std::fs::read(dir.join("frames.pcap")).unwrap();
    assert_eq!(pcap.len(), 24 + 3 * (16 + 60), "every switched frame is captured");
}
