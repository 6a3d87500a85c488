//! Per-VM devices in a fleet ([`VmDevices`]): disks shared read-only and writable per VM,
//! keyboard scripts and feeds reaching only their VM, the engine per VM, and VMs kept off the
//! fleet's switch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use denali_abi::block::{buffer, disk};
use denali_abi::{port, status};
use denali_engine::{Engine, Interpreter};
use denali_fleet::{Fleet, FleetConfig, VmEnd, VmSpec};
use denali_kernel::{DiskImage, Image};
use iced_x86::code_asm::*;

const LOAD: u32 = 0x1000;
const REQ: u32 = 0x8000;
const BUF: u32 = 0x9000;
const MEM: u32 = 64 << 10;

fn image(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Arc<Image> {
    let mut a = CodeAssembler::new(32).unwrap();
    build(&mut a).unwrap();
    let bytes = a.assemble(u64::from(LOAD)).unwrap();
    Arc::new(Image::flat(&bytes, LOAD, None).unwrap())
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("denali-fleet-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Submits one disk request at `at` and idles (1 ms at a time) until it is no longer pending.
fn disk_request(a: &mut CodeAssembler, at: u32, op: u32, disk_no: u32) -> Result<(), IcedError> {
    for (field, value) in [(disk::OP, op), (disk::DISK, disk_no), (disk::BLOCK, 0), (disk::ADDR, BUF)] {
        a.mov(dword_ptr(at + field), value)?;
    }
    a.mov(eax, at)?;
    a.mov(edx, u32::from(port::DISK_REQUEST))?;
    a.out(dx, eax)?;
    let mut wait = a.create_label();
    let mut done = a.create_label();
    a.set_label(&mut wait)?;
    a.cmp(dword_ptr(at + disk::STATUS), status::PENDING)?;
    a.jne(done)?;
    a.mov(eax, 1000u32)?;
    a.hlt()?;
    a.jmp(wait)?;
    a.set_label(&mut done)?;
    Ok(())
}

/// Copies block 0 of disk 0 to block 0 of disk 1, tries to write disk 0, and terminates with
/// the three statuses (read, write to disk 1, write to disk 0) in bytes 0, 1 and 2.
fn copier() -> Arc<Image> {
    image(|a| {
        disk_request(a, REQ, 1, 0)?;
        disk_request(a, REQ + 32, 2, 1)?;
        disk_request(a, REQ + 64, 2, 0)?;
        a.mov(eax, dword_ptr(REQ + 64 + disk::STATUS))?;
        a.shl(eax, 8)?;
        a.or(eax, dword_ptr(REQ + 32 + disk::STATUS))?;
        a.shl(eax, 8)?;
        a.or(eax, dword_ptr(REQ + disk::STATUS))?;
        a.int(0xd0)
    })
}

fn file(path: &Path, byte: u8) {
    std::fs::write(path, vec![byte; 4096]).unwrap();
}

#[test]
fn a_read_only_disk_is_shared_and_each_vm_writes_its_own() {
    let dir = temp_dir("disks");
    let base = dir.join("base.img");
    file(&base, 0xB5);
    let shared = DiskImage::open(&base, true).unwrap();
    let copier = copier();
    let specs: Vec<VmSpec> = (0..4)
        .map(|id| {
            let own = dir.join(format!("vm-{id}.img"));
            file(&own, 0);
            let mut spec = VmSpec::new(Arc::clone(&copier), MEM);
            spec.devices.disks = vec![Arc::clone(&shared), DiskImage::open(&own, false).unwrap()];
            spec
        })
        .collect();
    let report = Fleet::new(FleetConfig::new()).run(&specs);
    let expected = status::READ_ONLY << 16 | status::OK << 8 | status::OK;
    assert!(report.vms.iter().all(|v| v.end == VmEnd::Terminated(expected)), "{:?}", report.vms);
    for id in 0..4 {
        let data = std::fs::read(dir.join(format!("vm-{id}.img"))).unwrap();
        assert!(data.iter().all(|&b| b == 0xB5), "vm {id} copied the shared block");
    }
    assert!(std::fs::read(&base).unwrap().iter().all(|&b| b == 0xB5), "the shared disk is unchanged");
}

/// Reads one keyboard byte and terminates with it (0xFFFFFFFF: no input).
fn key_reader() -> Arc<Image> {
    image(|a| {
        a.mov(edx, u32::from(port::KBD_GETC))?;
        a.in_(eax, dx)?;
        a.int(0xd0)
    })
}

#[test]
fn keyboard_input_reaches_only_its_vm() {
    let reader = key_reader();
    let mut specs = vec![VmSpec::new(Arc::clone(&reader), MEM); 3];
    specs[0].devices.keyboard_script = Some(Arc::from(&b"A"[..]));
    specs[2].devices.keyboard_feed = Some(Arc::new(|input| input.send(b"B".to_vec()).unwrap()));
    let report = Fleet::new(FleetConfig::new()).run(&specs);
    let ends: Vec<VmEnd> = report.vms.iter().map(|v| v.end.clone()).collect();
    assert_eq!(
        ends,
        [VmEnd::Terminated(u32::from(b'A')), VmEnd::Terminated(u32::MAX), VmEnd::Terminated(u32::from(b'B'))]
    );
}

/// Broadcasts one 60-byte frame, idles 20 ms so the switch forwards it, and terminates.
fn broadcaster() -> Arc<Image> {
    image(|a| {
        a.mov(dword_ptr(BUF), 0xFFFF_FFFFu32)?;
        a.mov(word_ptr(BUF + 4), 0xFFFFu32)?;
        a.mov(dword_ptr(REQ + buffer::ADDR), BUF)?;
        a.mov(dword_ptr(REQ + buffer::LEN), 60u32)?;
        a.mov(eax, REQ)?;
        a.mov(edx, u32::from(port::NIC_SEND))?;
        a.out(dx, eax)?;
        a.mov(eax, 20_000u32)?;
        a.hlt()?;
        a.mov(eax, dword_ptr(REQ + buffer::STATUS))?;
        a.int(0xd0)
    })
}

#[test]
fn a_vm_without_network_is_off_the_fleet_switch() {
    let sender = broadcaster();
    for network in [true, false] {
        let mut specs = vec![VmSpec::new(Arc::clone(&sender), MEM); 2];
        for spec in &mut specs {
            spec.devices.network = network;
        }
        let config = FleetConfig { threads: 1, ..FleetConfig::new() };
        let report = Fleet::new(config).run(&specs);
        assert!(report.vms.iter().all(|v| v.end == VmEnd::Terminated(status::OK)), "{:?}", report.vms);
        let switched = report.packets_switched;
        assert_eq!(switched > 0, network, "network {network}: {switched} frames switched");
    }
}

#[test]
fn a_vm_may_have_its_own_engine() {
    let reader = key_reader();
    let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut specs = vec![VmSpec::new(Arc::clone(&reader), MEM); 3];
    let count = Arc::clone(&made);
    specs[1].engine = Some(Arc::new(move || {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::new(Interpreter::new()) as Box<dyn Engine>
    }));
    let report = Fleet::new(FleetConfig::new()).run(&specs);
    assert_eq!(report.completed, 3);
    assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1, "only VM 1 uses its own factory");
}
