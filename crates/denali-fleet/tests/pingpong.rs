//! The `pingpong` guests as fleets, on every engine this host has: every pair completes its
//! rounds, and the switch forwards exactly the frames the guests account for.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use denali_engine::{Engine, Interpreter};
use denali_examples::{PINGPONG_DEFAULT_ROUNDS, PINGPONG_EXIT_NO_PEER, find, pingpong_alone_output};
use denali_fleet::{EngineFactory, Fleet, FleetConfig, FleetReport, InterruptMode, VmEnd, VmSpec};
use denali_kernel::Image;

type Consoles = Arc<Mutex<HashMap<u32, Vec<u8>>>>;

/// One VM's console, kept in the shared map under its id.
struct Capture {
    id: u32,
    consoles: Consoles,
}

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut consoles = self.consoles.lock().unwrap_or_else(PoisonError::into_inner);
        consoles.entry(self.id).or_default().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn engines() -> Vec<(&'static str, EngineFactory)> {
    let mut engines: Vec<(&'static str, EngineFactory)> =
        vec![("interp", Arc::new(|| Box::new(Interpreter::new()) as Box<dyn Engine>))];
    if denali_jit::Jit::new().is_some() {
        engines.push((
            "jit",
            Arc::new(|| match denali_jit::Jit::new() {
                Some(jit) => Box::new(jit) as Box<dyn Engine>,
                None => Box::new(Interpreter::new()),
            }),
        ));
    } else {
        println!("note: no JIT on this host; the interpreter only");
    }
    engines
}

/// Runs `count` VMs of the example `name`; returns the report and each VM's console text.
fn run(name: &str, count: usize, config: FleetConfig) -> (FleetReport, Vec<String>) {
    let example = find(name).expect("bundled");
    let image = Arc::new(Image::from_elf(example.elf).expect("valid image"));
    let consoles: Consoles = Arc::default();
    let sink = Arc::clone(&consoles);
    let config = FleetConfig {
        console: Arc::new(move |id| Ok(Box::new(Capture { id, consoles: Arc::clone(&sink) }) as Box<dyn Write + Send>)),
        ..config
    };
    let report = Fleet::new(config).run(&vec![VmSpec::new(image, 64 << 10); count]);
    let consoles = consoles.lock().unwrap_or_else(PoisonError::into_inner);
    let text = (0..count as u32)
        .map(|id| String::from_utf8_lossy(consoles.get(&id).map_or(&[][..], Vec::as_slice)).into_owned())
        .collect();
    (report, text)
}

/// The number after `word` in `line` ("... 3 resent" gives 3 for "resent").
fn count_before(line: &str, word: &str) -> u64 {
    let before = line.split(&format!(" {word}")).next().unwrap_or_default();
    before.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no count before {word}: {line}"))
}

/// Checks a fleet of complete pairs; returns (PING 0 copies resent, duplicates ignored).
fn check_pairs(label: &str, report: &FleetReport, consoles: &[String], pairs: u32) -> (u64, u64) {
    let rounds = PINGPONG_DEFAULT_ROUNDS;
    let (mut resent, mut duplicates) = (0, 0);
    for pair in 0..pairs {
        let (a, b) = (2 * pair, 2 * pair + 1);
        let (start, answer) = (&consoles[a as usize], &consoles[b as usize]);
        let prefix = format!(
            "pingpong: vm {a} -> vm {b}: {rounds} round trips of 64-byte frames checked, the {} after the first in ",
            rounds - 1
        );
        assert!(start.starts_with(&prefix) && start.ends_with(" resent\n"), "{label}: vm {a}: {start:?}");
        let expected = format!("pingpong: vm {b} <- vm {a}: {rounds} pings answered, ");
        assert!(answer.starts_with(&expected) && answer.ends_with(" duplicates ignored\n"), "{label}: {answer:?}");
        resent += count_before(start, "resent");
        duplicates += count_before(answer, "duplicates");
    }
    for vm in report.vms.iter().take(2 * pairs as usize) {
        assert_eq!(vm.end, VmEnd::Terminated(0), "{label}: vm {}: {consoles:?}", vm.id);
    }
    (resent, duplicates)
}

#[test]
fn pingpong_pairs_exchange_exactly_the_frames_they_count() {
    let modes = [(4, 1, InterruptMode::Batched), (8, 2, InterruptMode::Batched), (8, 2, InterruptMode::Synchronous)];
    for (engine_name, engine) in engines() {
        for (count, threads, interrupts) in modes {
            let label = format!("{engine_name}, {count} VMs on {threads} threads, {interrupts:?}");
            let config = FleetConfig { threads, interrupts, engine: Arc::clone(&engine), ..FleetConfig::new() };
            let (report, consoles) = run("pingpong", count, config);
            assert_eq!(report.completed, count as u64, "{label}");
            assert_eq!(report.exited_nonzero(), 0, "{label}: {consoles:?}");
            let pairs = count as u32 / 2;
            let (resent, duplicates) = check_pairs(&label, &report, &consoles, pairs);
            // A round is a PING and a PONG; only PING 0 is ever resent (its peer may not have
            // been on the switch yet), and each extra copy is dropped or ignored as a duplicate.
            let exchanged = u64::from(pairs) * 2 * u64::from(PINGPONG_DEFAULT_ROUNDS);
            assert_eq!(report.packets_switched, exchanged + resent, "{label}");
            assert_eq!(report.packets_dropped + duplicates, resent, "{label}");
            if threads == 1 {
                // One worker boots every VM before running any: nothing is lost.
                assert_eq!(resent, 0, "{label}");
            }
        }
    }
}

#[test]
fn the_busy_idle_variant_completes_and_burns_its_quanta() {
    for (engine_name, engine) in engines() {
        // One worker: while one VM of a pair waits, its peer cannot run at the same time.
        let config = FleetConfig { threads: 1, engine, ..FleetConfig::new() };
        let (busy, consoles) = run("pingpong-busy", 4, config.clone());
        let (resent, _) = check_pairs(engine_name, &busy, &consoles, 2);
        assert_eq!(resent, 0, "{engine_name}");
        assert_eq!(busy.packets_switched, 4 * u64::from(PINGPONG_DEFAULT_ROUNDS), "{engine_name}");
        // A spinning VM uses the rest of its quantum at every wait; an idling one gives it up.
        let (idle, _) = run("pingpong", 4, config);
        assert!(
            busy.instructions > 5 * idle.instructions,
            "{engine_name}: {} vs {}",
            busy.instructions,
            idle.instructions
        );
    }
}

#[test]
fn a_vm_without_a_peer_gives_up_and_the_pairs_complete() {
    let (report, consoles) = run("pingpong", 3, FleetConfig::new());
    check_pairs("odd fleet", &report, &consoles, 1);
    assert_eq!(report.vms[2].end, VmEnd::Terminated(PINGPONG_EXIT_NO_PEER));
    assert_eq!(consoles[2], pingpong_alone_output(2));
    // VM 2 sent PING 0 once and resent it after each of its waits but the last: all for an
    // address no port has.
    assert!(report.packets_dropped >= 200, "{}", report.packets_dropped);
}

#[test]
fn the_starting_vm_reads_its_round_count_from_the_keyboard() {
    use denali_kernel::{Outcome, Quantum, Switch, Vm, VmConfig};
    let image = Image::from_elf(find("pingpong").expect("bundled").elf).expect("valid image");
    let switch = Switch::new();
    let consoles: Consoles = Arc::default();
    let mut vms: Vec<Vm> = (0..2)
        .map(|id| {
            let console = Capture { id, consoles: Arc::clone(&consoles) };
            let mut vm = Vm::new(
                &image,
                VmConfig { mem_size: 64 << 10, vm_id: id },
                Box::new(Interpreter::new()),
                Box::new(console),
            )
            .expect("boots");
            vm.connect_switch(&switch);
            vm
        })
        .collect();
    // Typed input also raises KEYBOARD, which the guest must not mistake for a frame.
    vms[0].add_keyboard_script(b"5\n");
    let mut ended = [None, None];
    // Two VMs on one thread, a quantum each in turn, as a one-worker fleet would run them.
    for _ in 0..100_000 {
        for (vm, end) in vms.iter_mut().zip(&mut ended) {
            if let Quantum::Stopped(outcome) = vm.run_quantum(10_000).expect("console") {
                *end = Some(outcome);
            }
        }
        if ended.iter().all(Option::is_some) {
            break;
        }
    }
    assert_eq!(ended, [Some(Outcome::Terminated(0)), Some(Outcome::Terminated(0))]);
    assert_eq!(switch.frames_switched(), 10);
    let consoles = consoles.lock().unwrap_or_else(PoisonError::into_inner);
    let start = String::from_utf8_lossy(&consoles[&0]).into_owned();
    assert!(start.starts_with("pingpong: vm 0 -> vm 1: 5 round trips"), "{start}");
    drop(consoles);

    // Alone, it still gives up after its waits time out: the pending KEYBOARD bit must not
    // end every idle at once (that would spin until the instruction limit).
    let mut lone =
        Vm::new(&image, VmConfig { mem_size: 64 << 10, vm_id: 0 }, Box::new(Interpreter::new()), Box::new(io::sink()))
            .expect("boots");
    lone.add_keyboard_script(b"5\n");
    assert_eq!(lone.run(Some(5_000_000)).expect("console"), Outcome::Terminated(PINGPONG_EXIT_NO_PEER));
}
