//! The port map of `isa-spec/ports.txt`: decides what each IN and OUT does.
//!
//! Only the console is implemented. The keyboard has no input source yet, so `KBD_GETC`
//! always answers "no input". Timers, disks and the NIC are not implemented yet: timer writes
//! are accepted and ignored, and requests to the disk and NIC complete at once with status
//! `NO_DEVICE`, as for a VM with no such device attached. Request blocks are still checked
//! first, so a guest gets the same PORT exception for a bad block that it will get once the
//! devices exist.

use std::io;

use denali_abi::{block, port, status};
use denali_engine::GuestMemory;

use crate::console::Console;

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
pub(crate) fn port_in(number: u16, width: u8, console: &mut Console) -> io::Result<PortAction> {
    if width != 4 || direction_is_in(number) != Some(true) {
        return Ok(PortAction::Fault);
    }
    match number {
        port::KBD_GETC => {
            // A guest polling the keyboard is usually waiting for a user who should see the
            // prompt first.
            console.flush()?;
            Ok(PortAction::Done(u32::MAX))
        }
        _ => Ok(PortAction::Fault),
    }
}

/// `out PORT, eax`.
pub(crate) fn port_out(
    number: u16,
    width: u8,
    value: u32,
    memory: &mut GuestMemory,
    console: &mut Console,
) -> io::Result<PortAction> {
    if width != 4 || direction_is_in(number) != Some(false) {
        return Ok(PortAction::Fault);
    }
    match number {
        port::CONSOLE_PUTC => {
            #[allow(clippy::cast_possible_truncation, reason = "the port writes the low byte of EAX")]
            console.write(&[value as u8])?;
            Ok(PortAction::Done(0))
        }
        port::CONSOLE_WRITE => {
            if !block_ok(memory, value, block::buffer::SIZE) {
                return Ok(PortAction::Fault);
            }
            let result = console_write(memory, value, console)?;
            set_status(memory, value + block::buffer::STATUS, result);
            Ok(PortAction::Done(0))
        }
        port::TIMER_ONESHOT | port::TIMER_PERIODIC => Ok(PortAction::Done(0)),
        port::DISK_REQUEST => no_device(memory, value, block::disk::SIZE, block::disk::STATUS),
        port::NIC_SEND | port::NIC_RECV => no_device(memory, value, block::buffer::SIZE, block::buffer::STATUS),
        _ => Ok(PortAction::Fault),
    }
}

/// The rule of `isa-spec/blocks.txt`: a request block is 4-byte aligned, lies entirely inside
/// memory and outside page 0.
fn block_ok(memory: &GuestMemory, addr: u32, size: u32) -> bool {
    addr % 4 == 0 && outside_page_0_and_inside(memory, addr, size)
}

/// Whether `addr..addr+len` lies inside memory and outside the register page.
fn outside_page_0_and_inside(memory: &GuestMemory, addr: u32, len: u32) -> bool {
    addr >= denali_abi::boot::PAGE_SIZE && u64::from(addr) + u64::from(len) <= u64::from(memory.size())
}

fn console_write(memory: &GuestMemory, block_addr: u32, console: &mut Console) -> io::Result<u32> {
    let field = |offset| memory.read_u32(block_addr + offset).unwrap_or(0);
    let (addr, len) = (field(block::buffer::ADDR), field(block::buffer::LEN));
    if len > MAX_CONSOLE_WRITE {
        return Ok(status::BAD_LEN);
    }
    if len == 0 {
        return Ok(status::OK);
    }
    if !outside_page_0_and_inside(memory, addr, len) {
        return Ok(status::BAD_ADDR);
    }
    match memory.bytes(addr, len as usize) {
        Ok(bytes) => {
            console.write(bytes)?;
            Ok(status::OK)
        }
        Err(_) => Ok(status::BAD_ADDR),
    }
}

fn no_device(memory: &mut GuestMemory, block_addr: u32, size: u32, status_offset: u32) -> io::Result<PortAction> {
    if !block_ok(memory, block_addr, size) {
        return Ok(PortAction::Fault);
    }
    set_status(memory, block_addr + status_offset, status::NO_DEVICE);
    Ok(PortAction::Done(0))
}

fn set_status(memory: &mut GuestMemory, addr: u32, value: u32) {
    // The block was checked to lie inside memory.
    let _ = memory.write_u32(addr, value);
}
