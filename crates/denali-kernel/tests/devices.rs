//! The devices through their ports, driven by a scripted engine: every malformed request of
//! the spec, queue bounds, asynchronous disk completion, durability across SIGKILL, read-only
//! sharing, the timer and idle on a fake clock, scripted keyboard input, the switch with three
//! ports, and pcap capture.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{Output, Scripted, Step, flat, retire, with_eax};
use denali_abi::{block, irq, port, status, vreg};
use denali_engine::{ExceptionKind, Exit, reg};
use denali_kernel::devices::pcap::Capture;
use denali_kernel::devices::switch::{self, PortCounters, Received};
use denali_kernel::{Clock, DiskError, DiskImage, FakeClock, FaultCause, Outcome, Switch, Vm, VmConfig};

const MEM: u32 = 1 << 20;
/// Where the tests put request blocks and buffers.
const REQ: u32 = 0x8000;
const BUF: u32 = 0x10000;

fn vm(steps: Vec<Step>) -> Vm {
    vm_id(steps, 0)
}

fn vm_id(steps: Vec<Step>, vm_id: u32) -> Vm {
    let config = VmConfig { mem_size: MEM, vm_id };
    Vm::new(&flat(&[0x90; 16]), config, Box::new(Scripted::new(steps)), Box::new(Output::default())).unwrap()
}

fn read(vm: &Vm, addr: u32) -> u32 {
    vm.memory().read_u32(addr).unwrap()
}

fn out(port: u16, value: u32) -> Exit {
    Exit::PortOut { port, width: 4, value, len: 1 }
}

/// A step that writes `fields` (offset, value) at `at` and OUTs `at` to `port`.
fn request(port: u16, at: u32, fields: Vec<(u32, u32)>) -> Step {
    Box::new(move |cpu, memory, _| {
        for &(offset, value) in &fields {
            memory.write_u32(at + offset, value).unwrap();
        }
        cpu.regs[reg::EAX] = at;
        out(port, at)
    })
}

fn disk_request(op: u32, disk: u32, block_no: u32, addr: u32) -> Step {
    use block::disk;
    let fields = vec![(disk::OP, op), (disk::DISK, disk), (disk::BLOCK, block_no), (disk::ADDR, addr), (disk::TAG, 77)];
    request(port::DISK_REQUEST, REQ, fields)
}

fn buffer_request(port: u16, addr: u32, len: u32) -> Step {
    use block::buffer::*;
    request(port, REQ, vec![(ADDR, addr), (LEN, len), (STATUS, 0xAAAA)])
}

/// A fresh directory for one test's files.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("denali-devices-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn disk(test: &str, blocks: u32) -> (PathBuf, Arc<DiskImage>) {
    let path = temp_dir(test).join("disk.img");
    let image = DiskImage::create(&path, blocks).unwrap();
    (path, image)
}

fn pending(vm: &Vm) -> u32 {
    read(vm, vreg::IRQ_PENDING)
}

// ---- disk ----

#[test]
fn malformed_disk_requests_get_error_statuses() {
    let (_, image) = disk("malformed", 4);
    let cases = [
        (disk_request(1, 1, 0, BUF), status::NO_DEVICE),
        (disk_request(1, u32::MAX, 0, BUF), status::NO_DEVICE),
        (disk_request(0, 0, 0, BUF), status::BAD_OP),
        (disk_request(99, 0, 0, BUF), status::BAD_OP),
        (disk_request(1, 0, 0, 0), status::BAD_ADDR),
        (disk_request(1, 0, 0, 0x0800), status::BAD_ADDR),
        (disk_request(2, 0, 0, MEM - 4095), status::BAD_ADDR),
        (disk_request(1, 0, 0, u32::MAX - 10), status::BAD_ADDR),
        (disk_request(1, 0, 4, BUF), status::OUT_OF_RANGE),
        (disk_request(2, 0, u32::MAX, BUF), status::OUT_OF_RANGE),
    ];
    for (i, (step, expected)) in cases.into_iter().enumerate() {
        let mut vm = vm(vec![step]);
        vm.attach_disk(Arc::clone(&image));
        assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0xDEAD));
        assert_eq!(read(&vm, REQ + block::disk::STATUS), expected, "case {i}");
        assert_eq!(read(&vm, REQ + block::disk::TAG), 77, "case {i}: the tag is the guest's");
        assert_eq!(pending(&vm) & (1 << irq::DISK), 0, "case {i}: a refused request never completes");
    }
}

#[test]
fn malformed_blocks_raise_port_for_every_block_port() {
    for p in [port::DISK_REQUEST, port::NIC_SEND, port::NIC_RECV, port::CONSOLE_WRITE] {
        for at in [0x8002, 0x0FF0, 0, MEM - 4, u32::MAX - 3] {
            let mut vm = vm(vec![with_eax(at, out(p, at))]);
            match vm.run(None).unwrap() {
                Outcome::Fault(f) => assert_eq!(f.exception().unwrap().kind, ExceptionKind::Port, "{p:#x} {at:#x}"),
                other => panic!("port {p:#x}, block {at:#x}: {other:?}"),
            }
            assert_eq!(vm.cpu().instructions, 0);
        }
    }
}

#[test]
fn disk_requests_complete_asynchronously_and_raise_disk() {
    let (path, image) = disk("async", 2);
    let fill: Step = Box::new(|_, memory, _| {
        memory.fill(BUF, 4096, 0x5A).unwrap();
        Exit::BudgetExhausted
    });
    let info = {
        use block::disk;
        request(port::DISK_REQUEST, REQ + 64, vec![(disk::OP, 4), (disk::DISK, 0), (disk::BLOCK, 9)])
    };
    let mut vm = vm(vec![fill, disk_request(2, 0, 1, BUF), retire(1), retire(1), info, retire(1)]);
    vm.attach_disk(image);
    // Stop right after the OUT: the write is queued, not done.
    assert_eq!(vm.run(Some(1)).unwrap(), Outcome::Limit);
    assert_eq!(read(&vm, REQ + block::disk::STATUS), status::PENDING);
    assert_eq!(pending(&vm), 0);
    // The rest of the slice runs before the device is polled at the next slice boundary.
    assert_eq!(vm.run(Some(2)).unwrap(), Outcome::Limit);
    assert_eq!(read(&vm, REQ + block::disk::STATUS), status::PENDING);
    assert_eq!(vm.run(Some(3)).unwrap(), Outcome::Limit);
    assert_eq!(read(&vm, REQ + block::disk::STATUS), status::OK);
    assert_eq!(pending(&vm), 1 << irq::DISK);
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0xDEAD));
    assert_eq!(read(&vm, REQ + 64 + block::disk::STATUS), status::OK);
    assert_eq!(read(&vm, REQ + 64 + block::disk::BLOCK), 2, "info gives the size in blocks");
    let data = std::fs::read(&path).unwrap();
    assert!(data[..4096].iter().all(|&b| b == 0) && data[4096..].iter().all(|&b| b == 0x5A));
}

#[test]
fn disk_reads_bring_the_file_into_memory() {
    let path = temp_dir("read").join("disk.img");
    let mut contents = vec![0u8; 3 * 4096];
    contents[2 * 4096..].fill(0xC3);
    std::fs::write(&path, &contents).unwrap();
    let mut vm = vm(vec![disk_request(1, 0, 2, BUF), retire(1)]);
    vm.attach_disk(DiskImage::open(&path, true).unwrap());
    vm.run(None).unwrap();
    assert_eq!(read(&vm, REQ + block::disk::STATUS), status::OK);
    assert!(vm.memory().bytes(BUF, 4096).unwrap().iter().all(|&b| b == 0xC3));
}

#[test]
fn the_disk_queue_is_bounded() {
    let (_, image) = disk("queue", 1);
    // Each request uses its own block so every status can be read afterwards.
    let mut steps: Vec<Step> = (0..=denali_kernel::devices::disk::QUEUE_CAPACITY as u32)
        .map(|i| {
            use block::disk;
            request(port::DISK_REQUEST, REQ + i * 32, vec![(disk::OP, 4), (disk::DISK, 0), (disk::BLOCK, 0)])
        })
        .collect();
    let count = steps.len() as u32;
    steps.push(retire(1));
    let mut vm = vm(steps);
    vm.attach_disk(image);
    assert_eq!(vm.run(Some(u64::from(count))).unwrap(), Outcome::Limit);
    for i in 0..count - 1 {
        assert_eq!(read(&vm, REQ + i * 32 + block::disk::STATUS), status::PENDING, "request {i}");
    }
    assert_eq!(read(&vm, REQ + (count - 1) * 32 + block::disk::STATUS), status::QUEUE_FULL);
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0xDEAD));
    assert_eq!(read(&vm, REQ + block::disk::STATUS), status::OK);
}

#[test]
fn read_only_sharing_refuses_writes() {
    let (path, _) = disk("readonly", 2);
    let shared = DiskImage::open(&path, true).unwrap();
    for vm_no in 0..3 {
        let mut vm = vm_id(vec![disk_request(2, 0, 0, BUF), retire(1)], vm_no);
        vm.attach_disk(Arc::clone(&shared));
        vm.run(None).unwrap();
        assert_eq!(read(&vm, REQ + block::disk::STATUS), status::READ_ONLY);
    }
    let mut reader = vm(vec![disk_request(1, 0, 1, BUF), retire(1)]);
    reader.attach_disk(shared);
    reader.run(None).unwrap();
    assert_eq!(read(&reader, REQ + block::disk::STATUS), status::OK);
}

#[test]
fn disk_files_must_be_whole_blocks() {
    let dir = temp_dir("sizes");
    for (name, size) in [("empty", 0), ("odd", 4097)] {
        let path = dir.join(name);
        std::fs::write(&path, vec![0; size]).unwrap();
        assert!(matches!(DiskImage::open(&path, false), Err(DiskError::Size { .. })), "{name}");
    }
    assert!(matches!(DiskImage::open(&dir.join("missing"), true), Err(DiskError::Open { .. })));
}

#[test]
fn a_writable_disk_is_open_once_and_a_read_only_one_many_times() {
    let (path, writable) = disk("locks", 1);
    let in_use = |read_only| matches!(DiskImage::open(&path, read_only), Err(DiskError::InUse { .. }));
    assert!(in_use(false), "a second writer");
    assert!(in_use(true), "a reader while a writer has it");
    drop(writable);
    let readers = [DiskImage::open(&path, true).unwrap(), DiskImage::open(&path, true).unwrap()];
    assert!(in_use(false), "a writer while readers have it");
    let message = DiskImage::open(&path, false).unwrap_err().to_string();
    assert!(message.contains("is in use") && message.contains("disk.img"), "{message}");
    std::fs::write(&path, [0x5Au8; 4096]).unwrap();
    assert!(matches!(DiskImage::create(&path, 1), Err(DiskError::InUse { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), [0x5Au8; 4096], "a disk in use is not emptied");
    drop(readers);
    // A child process another test spawns at this moment holds copies of this process's
    // descriptors, and so the readers' locks, from its fork to its exec: try for a while.
    let free = (0..200).any(|_| {
        DiskImage::open(&path, false).is_ok() || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            false
        }
    });
    assert!(free, "free again once every image is dropped");
}

/// The child half of `a_flushed_write_survives_sigkill`: writes block 1, flushes, says so on
/// stdout, then blocks until killed.
#[test]
fn durability_child() {
    let Ok(path) = std::env::var("DENALI_DURABILITY_DISK") else { return };
    let fill: Step = Box::new(|_, memory, _| {
        memory.fill(BUF, 4096, 0xD7).unwrap();
        Exit::BudgetExhausted
    });
    let report: Step = Box::new(|_, memory, _| {
        assert_eq!(memory.read_u32(REQ + block::disk::STATUS).unwrap(), status::OK);
        println!("flushed");
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    });
    let mut vm = vm(vec![fill, disk_request(2, 0, 1, BUF), retire(1), disk_request(3, 0, 0, 0), retire(1), report]);
    vm.attach_disk(DiskImage::open(std::path::Path::new(&path), false).unwrap());
    vm.run(None).unwrap();
}

#[test]
fn a_flushed_write_survives_sigkill() {
    use std::io::{BufRead, BufReader};
    let (path, image) = disk("durability", 4);
    drop(image);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "durability_child", "--nocapture", "--test-threads=1"])
        .env("DENALI_DURABILITY_DISK", &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let flushed = BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line.contains("flushed"));
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(flushed, "the child never reported its flush");
    let data = std::fs::read(&path).unwrap();
    assert!(data[4096..8192].iter().all(|&b| b == 0xD7));
    assert!(DiskImage::open(&path, false).is_ok(), "the image reopens");
}

// ---- timer and idle ----

fn idle(timeout_us: u32) -> Step {
    Box::new(move |cpu, _, _| {
        cpu.regs[reg::EAX] = timeout_us;
        Exit::Idle { timeout_us, len: 1 }
    })
}

fn enable_irqs() -> Step {
    Box::new(|_, memory, _| {
        memory.write_u32(vreg::IRQ_ENABLE, 1).unwrap();
        Exit::BudgetExhausted
    })
}

/// A step that records EAX and TIME_US into `log`.
fn note(log: &std::sync::Arc<std::sync::Mutex<Vec<(u32, u64)>>>) -> Step {
    let log = log.clone();
    Box::new(move |cpu, memory, _| {
        log.lock().unwrap().push((cpu.regs[reg::EAX], memory.read_u64(vreg::TIME_US).unwrap()));
        memory.write_u32(vreg::IRQ_PENDING, 0).unwrap();
        Exit::BudgetExhausted
    })
}

#[test]
fn idle_wakes_on_a_one_shot_timer_before_its_timeout() {
    let log = Default::default();
    let clock = Arc::new(FakeClock::new());
    let mut vm = vm(vec![
        enable_irqs(),
        with_eax(300, out(port::TIMER_ONESHOT, 300)),
        idle(1_000_000),
        note(&log),
        idle(1_000),
        note(&log),
    ]);
    vm.set_clock(clock.clone());
    vm.run(None).unwrap();
    // Woken by the timer at 300 us, then the timer is spent and the idle times out.
    assert_eq!(*log.lock().unwrap(), [(1, 300), (0, 1300)]);
    assert_eq!(clock.now(), Duration::from_micros(1300));
}

#[test]
fn a_periodic_timer_fires_every_period_on_a_fake_clock() {
    let log = Default::default();
    let clock = Arc::new(FakeClock::new());
    let mut steps = vec![enable_irqs(), with_eax(250, out(port::TIMER_PERIODIC, 250))];
    for _ in 0..4 {
        steps.push(idle(u32::MAX));
        steps.push(note(&log));
    }
    steps.push(with_eax(0, out(port::TIMER_PERIODIC, 0)));
    steps.push(idle(u32::MAX));
    let mut vm = vm(steps);
    vm.set_clock(clock);
    let outcome = vm.run(None).unwrap();
    assert_eq!(*log.lock().unwrap(), [(1, 250), (1, 500), (1, 750), (1, 1000)]);
    // Once stopped, nothing can end an idle with no timeout.
    assert!(matches!(outcome, Outcome::Fault(f) if f.cause == FaultCause::IdleForever));
}

#[test]
fn with_interrupts_disabled_the_timer_does_not_end_an_idle() {
    let log = Default::default();
    let mut vm = vm(vec![with_eax(100, out(port::TIMER_ONESHOT, 100)), idle(5000), note(&log)]);
    vm.set_clock(Arc::new(FakeClock::new()));
    vm.run(None).unwrap();
    assert_eq!(*log.lock().unwrap(), [(0, 5000)]);
    assert_eq!(pending(&vm), 0, "note cleared the TIMER bit the expiry set");
}

#[test]
fn idle_without_timeout_and_an_armed_timer_is_no_deadlock() {
    let log = Default::default();
    let mut vm = vm(vec![enable_irqs(), with_eax(40, out(port::TIMER_ONESHOT, 40)), idle(u32::MAX), note(&log)]);
    vm.set_clock(Arc::new(FakeClock::new()));
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0xDEAD));
    assert_eq!(*log.lock().unwrap(), [(1, 40)]);
}

// ---- keyboard ----

#[test]
fn a_keyboard_script_is_read_byte_by_byte_and_raises_keyboard() {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut steps: Vec<Step> = vec![retire(1)];
    for _ in 0..4 {
        steps.push(Box::new(|_, _, _| Exit::PortIn { port: port::KBD_GETC, width: 4, len: 1 }));
        let got = got.clone();
        steps.push(Box::new(move |cpu, _, _| {
            got.lock().unwrap().push(cpu.regs[reg::EAX]);
            Exit::BudgetExhausted
        }));
    }
    let mut vm = vm(steps);
    vm.add_keyboard_script(b"ok\n");
    assert_eq!(vm.run(Some(1)).unwrap(), Outcome::Limit);
    assert_eq!(pending(&vm), 1 << irq::KEYBOARD);
    vm.run(None).unwrap();
    assert_eq!(*got.lock().unwrap(), [u32::from(b'o'), u32::from(b'k'), u32::from(b'\n'), u32::MAX]);
}

#[test]
fn keyboard_input_from_another_thread_wakes_an_idle_vm() {
    let log = Default::default();
    let mut vm = vm(vec![enable_irqs(), idle(u32::MAX), note(&log)]);
    let input = vm.keyboard_input();
    let typist = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        input.send(b"x".to_vec()).unwrap();
    });
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0xDEAD));
    typist.join().unwrap();
    assert_eq!(log.lock().unwrap()[0].0, 1);
}

// ---- NIC and switch ----

fn frame(dest: [u8; 6], src: [u8; 6], fill: u8, len: usize) -> Vec<u8> {
    let mut frame = vec![fill; len];
    frame[..6].copy_from_slice(&dest);
    frame[6..12].copy_from_slice(&src);
    frame
}

#[test]
fn malformed_nic_requests_get_error_statuses() {
    let cases = [
        (buffer_request(port::NIC_SEND, BUF, 13), status::BAD_LEN),
        (buffer_request(port::NIC_SEND, BUF, 1515), status::BAD_LEN),
        (buffer_request(port::NIC_SEND, BUF, u32::MAX), status::BAD_LEN),
        (buffer_request(port::NIC_SEND, 0x100, 64), status::BAD_ADDR),
        (buffer_request(port::NIC_SEND, MEM - 10, 64), status::BAD_ADDR),
        (buffer_request(port::NIC_RECV, MEM - 10, 64), status::BAD_ADDR),
        (buffer_request(port::NIC_RECV, BUF, u32::MAX), status::BAD_ADDR),
        (buffer_request(port::NIC_RECV, BUF, 1514), status::EMPTY),
        (buffer_request(port::NIC_SEND, BUF, 14), status::OK),
    ];
    for (i, (step, expected)) in cases.into_iter().enumerate() {
        let mut vm = vm(vec![step]);
        vm.run(None).unwrap();
        assert_eq!(read(&vm, REQ + block::buffer::STATUS), expected, "case {i}");
    }
}

#[test]
fn frames_cross_the_switch_between_vms() {
    let switch = Switch::new();
    let mac0 = denali_kernel::vregs::mac_address(0);
    let mac1 = denali_kernel::vregs::mac_address(1);
    let sent = frame(mac1, mac0, 0xAB, 60);
    let write: Step = {
        let sent = sent.clone();
        Box::new(move |_, memory, _| {
            memory.write(BUF, &sent).unwrap();
            Exit::BudgetExhausted
        })
    };
    let mut sender = vm_id(vec![write, buffer_request(port::NIC_SEND, BUF, 60), retire(1)], 0);
    let mut receiver = vm_id(
        vec![retire(1), buffer_request(port::NIC_RECV, BUF, 59), retire(1), buffer_request(port::NIC_RECV, BUF, 1514)],
        1,
    );
    sender.connect_switch(&switch);
    receiver.connect_switch(&switch);
    assert_eq!(sender.run(None).unwrap(), Outcome::Terminated(0xDEAD));
    assert_eq!(read(&sender, REQ + block::buffer::STATUS), status::OK);
    assert_eq!(receiver.run(Some(1)).unwrap(), Outcome::Limit);
    assert_eq!(pending(&receiver), 1 << irq::NIC_RX);
    assert_eq!(receiver.run(Some(2)).unwrap(), Outcome::Limit);
    assert_eq!(read(&receiver, REQ + block::buffer::STATUS), status::BAD_LEN, "59 bytes are too few; it stays");
    receiver.run(None).unwrap();
    assert_eq!(read(&receiver, REQ + block::buffer::STATUS), status::OK);
    assert_eq!(read(&receiver, REQ + block::buffer::LEN), 60);
    assert_eq!(receiver.memory().bytes(BUF, 60).unwrap(), &sent[..]);
}

#[test]
fn a_frame_sent_just_before_terminate_still_leaves() {
    let switch = Switch::new();
    let (mac0, mac1) = (denali_kernel::vregs::mac_address(0), denali_kernel::vregs::mac_address(1));
    let sent = frame(mac1, mac0, 0xCD, 60);
    let write: Step = Box::new(move |_, memory, _| {
        memory.write(BUF, &sent).unwrap();
        Exit::BudgetExhausted
    });
    // NIC_SEND is the guest's last act: the script terminates right after it, with no slice
    // boundary in between at which the devices would be polled.
    let mut sender = vm_id(vec![write, buffer_request(port::NIC_SEND, BUF, 60)], 0);
    let mut receiver = vm_id(vec![], 1);
    sender.connect_switch(&switch);
    receiver.connect_switch(&switch);
    assert!(matches!(sender.run(None).unwrap(), Outcome::Terminated(_)));
    // Dropping the VM detaches its NIC, which would discard a frame still queued.
    drop(sender);
    let (_, port) = receiver.switch_port();
    assert_eq!(switch.counters(port).rx, 1);
    assert_eq!(switch.frames_dropped(), 0);
}

#[test]
fn the_nic_transmit_queue_is_bounded() {
    let count = switch::TX_CAPACITY as u32 + 1;
    let steps: Vec<Step> = (0..count)
        .map(|i| {
            use block::buffer::*;
            request(port::NIC_SEND, REQ + i * 16, vec![(ADDR, BUF), (LEN, 64), (STATUS, 0xAAAA)])
        })
        .collect();
    let mut vm = vm(steps);
    vm.run(Some(u64::from(count))).unwrap();
    for i in 0..count - 1 {
        assert_eq!(read(&vm, REQ + i * 16 + block::buffer::STATUS), status::OK, "frame {i}");
    }
    assert_eq!(read(&vm, REQ + (count - 1) * 16 + block::buffer::STATUS), status::QUEUE_FULL);
    let (switch, port) = vm.switch_port();
    assert_eq!(switch.counters(port).tx_full, 1);
}

#[test]
fn a_private_switch_drains_at_each_slice_boundary() {
    // A VM whose NIC is on no shared switch: its frames go nowhere, but they still pass
    // through its transmit queue, which the poll at a slice boundary empties.
    let full = switch::TX_CAPACITY as u32;
    let send = |i: u32| {
        use block::buffer::*;
        request(port::NIC_SEND, REQ + i * 16, vec![(ADDR, BUF), (LEN, 64), (STATUS, 0xAAAA)])
    };
    let mut steps: Vec<Step> = (0..full).map(send).collect();
    steps.push(Box::new(|_, _, _| Exit::BudgetExhausted));
    steps.extend((full..2 * full).map(send));
    let mut vm = vm(steps);
    vm.run(Some(u64::from(2 * full))).unwrap();
    for i in 0..2 * full {
        assert_eq!(read(&vm, REQ + i * 16 + block::buffer::STATUS), status::OK, "frame {i}");
    }
    let (switch, port) = vm.switch_port();
    assert_eq!(switch.counters(port).tx, u64::from(full), "frames forwarded by the poll");
}

#[test]
fn switch_broadcasts_forwards_by_mac_and_counts_per_port() {
    let switch = Switch::new();
    let macs: Vec<[u8; 6]> = (0..3).map(denali_kernel::vregs::mac_address).collect();
    let ports: Vec<_> = macs.iter().map(|&mac| switch.attach(mac, None)).collect();
    switch.send(ports[0], frame(switch::BROADCAST, macs[0], 1, 64)).unwrap();
    switch.send(ports[1], frame(macs[2], macs[1], 2, 100)).unwrap();
    switch.send(ports[2], frame([2, 0, 9, 9, 9, 9], macs[2], 3, 14)).unwrap();
    assert_eq!(switch.pump(), 3);
    assert_eq!(switch.counters(ports[0]), PortCounters { tx: 1, rx: 0, tx_full: 0, rx_dropped: 0 });
    assert_eq!(switch.counters(ports[1]), PortCounters { tx: 1, rx: 1, tx_full: 0, rx_dropped: 0 });
    assert_eq!(switch.counters(ports[2]), PortCounters { tx: 1, rx: 2, tx_full: 0, rx_dropped: 0 });
    assert_eq!(switch.unknown_dropped(), 1);
    assert_eq!(switch.frames_switched(), 3);
    assert!(matches!(switch.receive(ports[0], 1514), Received::Empty));
    assert!(matches!(switch.receive(ports[1], 1514), Received::Frame(f) if f[12] == 1));
    // Port 2 got the broadcast (from port 0, drained first) and then the unicast.
    assert!(matches!(switch.receive(ports[2], 1514), Received::Frame(f) if f[12] == 1));
    assert!(matches!(switch.receive(ports[2], 99), Received::TooLong(100)));
    assert!(matches!(switch.receive(ports[2], 100), Received::Frame(f) if f.len() == 100));
}

#[test]
fn a_full_receive_queue_drops_and_counts() {
    let switch = Switch::new();
    let (a, b) = (denali_kernel::vregs::mac_address(0), denali_kernel::vregs::mac_address(1));
    let (pa, pb) = (switch.attach(a, None), switch.attach(b, None));
    let flood = switch::RX_CAPACITY + 5;
    let mut sent = 0;
    while sent < flood {
        // The transmit queue is bounded too: pump whenever it fills.
        if switch.send(pa, frame(b, a, 0, 60)).is_ok() {
            sent += 1;
        } else {
            switch.pump();
        }
    }
    switch.pump();
    assert_eq!(switch.counters(pb).rx, switch::RX_CAPACITY as u64);
    assert_eq!(switch.counters(pb).rx_dropped, 5);
    assert_eq!(switch.counters(pa).tx, flood as u64);
    // The switch's total outlives the port, so a fleet can report drops of ended VMs.
    switch.detach(pb);
    assert_eq!(switch.frames_dropped(), 5);
    // A frame for an address no port has is a drop too.
    switch.send(pa, frame(b, a, 0, 60)).unwrap();
    switch.pump();
    assert_eq!(switch.unknown_dropped(), 1);
    assert_eq!(switch.frames_dropped(), 6);
}

#[test]
fn transmit_queues_drain_round_robin() {
    let switch = Switch::new();
    let macs: Vec<[u8; 6]> = (0..3).map(denali_kernel::vregs::mac_address).collect();
    let ports: Vec<_> = macs.iter().map(|&mac| switch.attach(mac, None)).collect();
    for round in 0..3u8 {
        switch.send(ports[0], frame(macs[2], macs[0], round, 20)).unwrap();
        switch.send(ports[1], frame(macs[2], macs[1], 10 + round, 20)).unwrap();
    }
    switch.pump();
    let order: Vec<u8> = (0..6)
        .map(|_| match switch.receive(ports[2], 1514) {
            Received::Frame(f) => f[12],
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, [0, 10, 1, 11, 2, 12]);
}

#[test]
fn a_detached_port_leaves_no_frames_or_address_behind() {
    let switch = Switch::new();
    let macs: Vec<[u8; 6]> = (0..3).map(denali_kernel::vregs::mac_address).collect();
    let (p0, p1) = (switch.attach(macs[0], None), switch.attach(macs[1], None));
    // Port 1 leaves with a frame queued; its slot goes to a new port with another address.
    switch.send(p1, frame(macs[0], macs[1], 1, 20)).unwrap();
    switch.detach(p1);
    let p2 = switch.attach(macs[2], None);
    switch.send(p2, frame(macs[0], macs[2], 2, 20)).unwrap();
    switch.send(p0, frame(macs[1], macs[0], 3, 20)).unwrap();
    assert_eq!(switch.pump(), 2, "the detached port's frame is gone");
    assert!(matches!(switch.receive(p0, 1514), Received::Frame(f) if f[12] == 2));
    assert!(matches!(switch.receive(p0, 1514), Received::Empty));
    assert_eq!(switch.unknown_dropped(), 1, "nothing answers to the detached port's address");
    // Two ports with one address: unicast goes to the first attached, never back to the sender.
    let twin = switch.attach(macs[0], None);
    switch.send(p2, frame(macs[0], macs[2], 4, 20)).unwrap();
    switch.send(p0, frame(macs[0], macs[0], 5, 20)).unwrap();
    switch.pump();
    assert!(matches!(switch.receive(p0, 1514), Received::Frame(f) if f[12] == 4));
    assert!(matches!(switch.receive(twin, 1514), Received::Frame(f) if f[12] == 5));
}

/// Polls skip the switch's lock when nothing is queued and no arrival is pending: whatever
/// the order of sends, pumps, takes and detaches, every arrival is still reported once.
#[test]
fn every_arrival_is_reported_once_around_detaches() {
    let switch = Switch::new();
    let macs: Vec<[u8; 6]> = (0..4).map(denali_kernel::vregs::mac_address).collect();
    let ports: Vec<_> = macs.iter().map(|&mac| switch.attach(mac, None)).collect();
    assert_eq!(switch.pump(), 0);
    assert!(!switch.take_arrival(ports[0]));
    // Two arrivals pending: taking one leaves the other.
    switch.send(ports[0], frame(macs[1], macs[0], 1, 20)).unwrap();
    switch.send(ports[0], frame(macs[2], macs[0], 2, 20)).unwrap();
    assert_eq!(switch.pump(), 2);
    assert!(switch.take_arrival(ports[1]));
    assert!(!switch.take_arrival(ports[1]));
    assert!(switch.take_arrival(ports[2]));
    // A port detached with an arrival pending and a frame queued hides no one else's.
    switch.send(ports[1], frame(macs[0], macs[1], 3, 20)).unwrap();
    switch.send(ports[1], frame(macs[3], macs[1], 4, 20)).unwrap();
    assert_eq!(switch.pump(), 2);
    switch.send(ports[0], frame(macs[3], macs[0], 5, 20)).unwrap();
    switch.detach(ports[0]);
    assert!(switch.take_arrival(ports[3]));
    assert!(!switch.take_arrival(ports[3]));
    switch.send(ports[2], frame(macs[3], macs[2], 6, 20)).unwrap();
    assert_eq!(switch.pump(), 1, "the detached port's queued frame is gone, the new one leaves");
    // A port leaving with no arrival pending takes no one else's.
    switch.detach(ports[2]);
    assert!(switch.take_arrival(ports[3]));
    assert!(!switch.take_arrival(ports[3]));
    assert_eq!(switch.pump(), 0);
}

#[test]
fn pcap_capture_records_every_switched_frame() {
    let path = temp_dir("pcap").join("capture.pcap");
    let switch = Switch::with_capture(Capture::create(&path).unwrap());
    let macs: Vec<[u8; 6]> = (0..2).map(denali_kernel::vregs::mac_address).collect();
    let ports: Vec<_> = macs.iter().map(|&mac| switch.attach(mac, None)).collect();
    switch.send(ports[0], frame(macs[1], macs[0], 7, 60)).unwrap();
    switch.send(ports[1], frame(switch::BROADCAST, macs[1], 8, 1514)).unwrap();
    switch.send(ports[1], frame([2, 0, 1, 1, 1, 1], macs[1], 9, 14)).unwrap();
    switch.pump();
    switch.finish_capture().unwrap();
    let data = std::fs::read(&path).unwrap();
    assert_eq!(u32::from_le_bytes(data[..4].try_into().unwrap()), 0xA1B2_C3D4, "classic pcap, microseconds");
    assert_eq!(u32::from_le_bytes(data[20..24].try_into().unwrap()), 1, "LINKTYPE_ETHERNET");
    // Walk the 16-byte record headers: incl_len at +8.
    let (mut at, mut lens) = (24, Vec::new());
    while at < data.len() {
        let incl = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        lens.push(incl);
        at += 16 + incl;
    }
    assert_eq!(at, data.len());
    assert_eq!(lens, [60, 1514, 14]);
}
