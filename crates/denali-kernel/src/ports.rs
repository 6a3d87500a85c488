//! The port map of `isa-spec/ports.txt`: decides what each IN and OUT does, and dispatches to
//! the console and the devices of `crate::devices`.
//!
//! Request blocks are parsed by `devices::request` before any device sees them, so every port
//! raises PORT for a malformed block in the same way.

use std::io;

use denali_abi::{port, status};
use denali_engine::GuestMemory;

use crate::console::Console;
use crate::devices::Devices;
use crate::devices::request::{BufferBlock, DiskBlock};

/// Longest `CONSOLE_WRITE` the kernel accepts: larger lengths get `BAD_LEN`, so that one
/// request cannot make the kernel copy an unbounded amount.
pub(crate) const MAX_CONSOLE_WRITE: u32 = 1 << 20;

/// What an IN or OUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortAction {
    /// The operation completed; for IN, with this value for EAX.
    Done(u32),
    /// The access is not allowed: raise PORT at the instruction.
    Fault,
}

fn direction_is_in(number: u16) -> Option<bool> {
    port::ALL.iter().find(|(_, p, _)| *p == number).map(|(_, _, is_in)| *is_in)
}

/// `in eax, PORT`.
pub(crate) fn port_in(number: u16, width: u8, console: &mut Console, devices: &mut Devices) -> io::Result<PortAction> {
    if width != 4 || direction_is_in(number) != Some(true) {
        return Ok(PortAction::Fault);
    }
    match number {
        port::KBD_GETC => {
            // A guest polling the keyboard is usually waiting for a user who should see the
            // prompt first.
            console.flush()?;
            Ok(PortAction::Done(devices.keyboard.getc()))
        }
        _ => Ok(PortAction::Fault),
    }
}

/// `out PORT, eax`; `now_us` is the VM's time, for the timer.
pub(crate) fn port_out(
    number: u16,
    width: u8,
    value: u32,
    memory: &mut GuestMemory,
    console: &mut Console,
    devices: &mut Devices,
    now_us: u64,
) -> io::Result<PortAction> {
    if width != 4 || direction_is_in(number) != Some(false) {
        return Ok(PortAction::Fault);
    }
    match number {
        port::CONSOLE_PUTC => {
            #[allow(clippy::cast_possible_truncation, reason = "the port writes the low byte of EAX")]
            console.write(&[value as u8])?;
        }
        port::CONSOLE_WRITE => {
            let Some(request) = BufferBlock::parse(memory, value) else { return Ok(PortAction::Fault) };
            let result = console_write(memory, request, console)?;
            request.set_status(memory, result);
        }
        port::TIMER_ONESHOT => devices.timer.one_shot(now_us, value),
        port::TIMER_PERIODIC => devices.timer.periodic(now_us, value),
        port::DISK_REQUEST => {
            let Some(request) = DiskBlock::parse(memory, value) else { return Ok(PortAction::Fault) };
            devices.disks.submit(memory, request);
        }
        port::NIC_SEND | port::NIC_RECV => {
            let Some(request) = BufferBlock::parse(memory, value) else { return Ok(PortAction::Fault) };
            if number == port::NIC_SEND {
                devices.nic_send(memory, request);
            } else {
                devices.nic.receive(memory, request);
            }
        }
        _ => return Ok(PortAction::Fault),
    }
    Ok(PortAction::Done(0))
}

fn console_write(memory: &GuestMemory, request: BufferBlock, console: &mut Console) -> io::Result<u32> {
    if request.len > MAX_CONSOLE_WRITE {
        return Ok(status::BAD_LEN);
    }
    if request.len == 0 {
        return Ok(status::OK);
    }
    if !request.buffer_ok(memory) {
        return Ok(status::BAD_ADDR);
    }
    match memory.bytes(request.addr, request.len as usize) {
        Ok(bytes) => {
            console.write(bytes)?;
            Ok(status::OK)
        }
        Err(_) => Ok(status::BAD_ADDR),
    }
}
