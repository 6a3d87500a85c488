//! Console output (`isa-spec/ports.txt`): `CONSOLE_WRITE` with a BUFFER request block.
//!
//! Every OUT is an exit to the kernel, the costliest thing a guest does, so output is batched:
//! [`Console::write_str`] sends a whole string in one OUT, and [`print!`](crate::print) formats
//! into a small stack buffer first so that a typical line costs a single OUT.

use core::fmt;

use denali_abi::{block::buffer, port, status};

/// A BUFFER request block (`isa-spec/blocks.txt`); the kernel wants it 4-byte aligned. The
/// console and the NIC (`crate::nic`) use it.
#[repr(C, align(4))]
pub(crate) struct BufferBlock {
    addr: u32,
    len: u32,
    status: u32,
}

impl BufferBlock {
    pub(crate) fn new(addr: u32, len: u32) -> BufferBlock {
        BufferBlock { addr, len, status: 0 }
    }

    /// Hands the block to the device behind `port` with one OUT; the kernel reads the block,
    /// reads or writes the buffer it names, and writes the block's LEN and STATUS fields.
    pub(crate) fn out(&mut self, port: u16) {
        let block_ptr = &raw mut *self;
        // SAFETY: the block is aligned, lives outside page 0 (on the stack or in the caller's
        // memory) and names a buffer its creator owns for the duration of the call; the kernel
        // touches only that buffer and the block. The asm is not `nomem`, so the compiler has
        // stored the block before and reloads its fields after.
        unsafe {
            core::arch::asm!("out dx, eax", in("dx") port, in("eax") block_ptr, options(nostack, preserves_flags));
        }
    }

    /// The STATUS field the kernel wrote.
    pub(crate) fn status(&self) -> u32 {
        // SAFETY: reads a field of a live block that the kernel may have written.
        unsafe { core::ptr::read_volatile(&raw const self.status) }
    }

    /// The LEN field (for NIC_RECV, the kernel writes the frame's length there).
    pub(crate) fn len(&self) -> u32 {
        // SAFETY: as in `status`.
        unsafe { core::ptr::read_volatile(&raw const self.len) }
    }
}

const _: () = {
    assert!(core::mem::size_of::<BufferBlock>() == buffer::SIZE as usize);
    assert!(core::mem::offset_of!(BufferBlock, addr) == buffer::ADDR as usize);
    assert!(core::mem::offset_of!(BufferBlock, len) == buffer::LEN as usize);
    assert!(core::mem::offset_of!(BufferBlock, status) == buffer::STATUS as usize);
};

/// Writes one byte with `CONSOLE_PUTC`.
#[inline]
pub fn putc(byte: u8) {
    // SAFETY: a 32-bit OUT to a console port has no effect on guest memory or the stack.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port::CONSOLE_PUTC, in("eax") u32::from(byte),
            options(nomem, nostack, preserves_flags));
    }
}

/// Writes `bytes` with one `CONSOLE_WRITE`. Returns the status the kernel wrote into the block.
pub fn write_bytes(bytes: &[u8]) -> u32 {
    if bytes.is_empty() {
        // A zero length is BAD_LEN; there is nothing to send anyway.
        return status::OK;
    }
    let mut block = BufferBlock::new(bytes.as_ptr() as usize as u32, bytes.len() as u32);
    block.out(port::CONSOLE_WRITE);
    block.status()
}

/// The console as a [`fmt::Write`] sink.
#[derive(Debug, Default, Clone, Copy)]
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        send(s.as_bytes())
    }
}

/// Writes `bytes` with one CONSOLE_WRITE. The spec gives the console no length limit, but a
/// kernel may still refuse a long buffer; byte-at-a-time output always works.
fn send(bytes: &[u8]) -> fmt::Result {
    match write_bytes(bytes) {
        status::OK => Ok(()),
        status::BAD_LEN => {
            bytes.iter().copied().for_each(putc);
            Ok(())
        }
        _ => Err(fmt::Error),
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // A constant string needs no buffering: send it as it is.
    if let Some(s) = args.as_str() {
        let _ = fmt::Write::write_str(&mut Console, s);
        return;
    }
    let mut batch = crate::batch::Batch::new(send);
    // Console errors have nowhere to be reported; like std's print!, carry on.
    let _ = fmt::write(&mut batch, args);
    let _ = batch.flush();
}

/// Prints to the Denali console, like `std::print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(::core::format_args!($($arg)*)) };
}

/// Prints a line to the Denali console, like `std::println!`.
#[macro_export]
macro_rules! println {
    () => { $crate::console::_print(::core::format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*))) };
}
