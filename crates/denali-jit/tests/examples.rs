//! Every bundled example guest runs identically under the JIT (translating at once, and
//! tiered as in fleets) and the interpreter: the same
//! console output, the same outcome, and the same final registers, flags and instruction count
//! (what `--dump-state` writes); the JIT translating at once also in guard-region mode (a
//! guarded memory, as `denali run` gives it).

use denali_engine::{Cpu, Engine, GuestMemory, Interpreter, SharedCode};
use denali_jit::Jit;
use denali_kernel::{Image, Outcome, Vm, VmConfig};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A console sink the test can read after the VM is done with it.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run(elf: &[u8], engine: Box<dyn Engine>) -> (String, Outcome, Cpu) {
    run_in(elf, engine, None)
}

/// Runs `elf` on `engine`, in `memory` when given (else a checked memory).
fn run_in(elf: &[u8], engine: Box<dyn Engine>, memory: Option<GuestMemory>) -> (String, Outcome, Cpu) {
    let image = Image::from_elf(elf).expect("bundled examples are valid images");
    let console = Capture::default();
    let config = VmConfig::default();
    let vm = match memory {
        Some(memory) => Vm::new_in(&image, memory, config.vm_id, engine, Box::new(console.clone())),
        None => Vm::new(&image, config, engine, Box::new(console.clone())),
    };
    let mut vm = vm.expect("bundled examples fit");
    let outcome = vm.run(None).expect("the capture cannot fail");
    let output = String::from_utf8_lossy(&console.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    (output, outcome, *vm.cpu())
}

#[test]
fn every_example_runs_identically_under_both_engines() {
    let Some(_) = Jit::new() else {
        println!("note: no JIT on this host; nothing to compare");
        return;
    };
    // `disk` needs a disk attached; the device tests of denali-cli run it.
    let examples = denali_examples::ALL.iter().chain(denali_examples::DEVICES).filter(|e| e.name != "disk");
    for example in examples {
        let interp = run(example.elf, Box::new(Interpreter::new()));
        let jit = run(example.elf, Box::new(Jit::new().expect("checked above")));
        assert_eq!(jit.0, interp.0, "{}: console output differs", example.name);
        assert_eq!(jit.1, interp.1, "{}: outcome differs", example.name);
        assert_eq!(jit.2, interp.2, "{}: final CPU state differs", example.name);
        if cfg!(target_os = "linux") {
            let memory = GuestMemory::guarded(u64::from(VmConfig::default().mem_size)).expect("Linux x86-64");
            let guarded = run_in(example.elf, Box::new(Jit::new().expect("checked above")), Some(memory));
            assert_eq!(guarded, jit, "{}: the guard-region mode differs", example.name);
        }
        // The fleets' tiered JIT: interpreted until hot, then translated.
        let tiered = run(example.elf, Box::new(Jit::tiered(SharedCode::new()).expect("checked above")));
        assert_eq!(tiered.0, interp.0, "{}: console output differs (tiered)", example.name);
        assert_eq!(tiered.1, interp.1, "{}: outcome differs (tiered)", example.name);
        assert_eq!(tiered.2, interp.2, "{}: final CPU state differs (tiered)", example.name);
        if let Some(expected) = example.expected_output {
            assert_eq!(interp.0, expected(), "{}: wrong output", example.name);
        }
    }
}
