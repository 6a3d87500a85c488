//! The NIC (`isa-spec/README.md` section 4): `NIC_SEND` and `NIC_RECV`, one OUT each, with a
//! BUFFER request block. Frames are whole Ethernet frames without the frame check sequence:
//! destination MAC, source MAC, EtherType, payload.

use denali_abi::port;

use crate::console::BufferBlock;

/// Shortest frame `NIC_SEND` takes: an Ethernet header.
pub const MIN_FRAME: usize = 14;
/// Longest frame: a header and 1500 bytes of payload.
pub const MAX_FRAME: usize = 1514;

/// This VM's MAC address (the `MAC` register).
pub use crate::vreg::mac;

/// Queues `frame` for transmission. Returns the status the kernel wrote: `OK`, `BAD_LEN` for
/// a frame outside 14..=1514 bytes, `QUEUE_FULL` when the transmit queue is full.
pub fn send(frame: &[u8]) -> u32 {
    let mut block = BufferBlock::new(frame.as_ptr() as usize as u32, frame.len() as u32);
    block.out(port::NIC_SEND);
    block.status()
}

/// Copies the next received frame into `buf`. `Ok(len)` is the frame's length; `Err(status)`
/// is `EMPTY` when no frame is queued, or `BAD_LEN` when the next frame is longer than `buf`
/// (it stays queued).
pub fn recv(buf: &mut [u8]) -> Result<usize, u32> {
    let mut block = BufferBlock::new(buf.as_mut_ptr() as usize as u32, buf.len() as u32);
    block.out(port::NIC_RECV);
    match block.status() {
        denali_abi::status::OK => Ok(block.len() as usize),
        status => Err(status),
    }
}
