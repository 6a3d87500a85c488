//! Request blocks (`isa-spec/blocks.txt`), parsed in one place for every device.
//!
//! The rules of the spec: a block that is misaligned, in page 0 or (partly) outside memory is
//! malformed and the port raises PORT without touching anything ([`None`] here); a well-formed
//! block whose contents are wrong gets an error status in its STATUS field. Fields are read
//! once, here, so a device never re-reads guest memory the guest may be changing.

use denali_abi::block;
use denali_abi::boot::PAGE_SIZE;
use denali_engine::GuestMemory;

/// A well-formed BUFFER block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BufferBlock {
    /// Where the block itself lies.
    pub at: u32,
    pub addr: u32,
    pub len: u32,
}

impl BufferBlock {
    /// Reads the block at `at`, or `None` if it is malformed.
    pub fn parse(memory: &GuestMemory, at: u32) -> Option<BufferBlock> {
        if !block_ok(memory, at, block::buffer::SIZE) {
            return None;
        }
        let field = |offset| memory.read_u32(at + offset).ok();
        Some(BufferBlock { at, addr: field(block::buffer::ADDR)?, len: field(block::buffer::LEN)? })
    }

    /// Whether the buffer lies inside memory and outside page 0 (else `BAD_ADDR`).
    pub fn buffer_ok(&self, memory: &GuestMemory) -> bool {
        range_ok(memory, self.addr, self.len)
    }

    pub fn set_status(&self, memory: &mut GuestMemory, status: u32) {
        // The block was checked to lie inside memory, so this cannot fail.
        let _ = memory.write_u32(self.at + block::buffer::STATUS, status);
    }

    pub fn set_len(&self, memory: &mut GuestMemory, len: u32) {
        let _ = memory.write_u32(self.at + block::buffer::LEN, len);
    }
}

/// A well-formed DISK block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskBlock {
    pub at: u32,
    pub op: u32,
    pub disk: u32,
    pub block: u32,
    pub addr: u32,
}

impl DiskBlock {
    /// Reads the block at `at`, or `None` if it is malformed.
    pub fn parse(memory: &GuestMemory, at: u32) -> Option<DiskBlock> {
        if !block_ok(memory, at, block::disk::SIZE) {
            return None;
        }
        let field = |offset| memory.read_u32(at + offset).ok();
        Some(DiskBlock {
            at,
            op: field(block::disk::OP)?,
            disk: field(block::disk::DISK)?,
            block: field(block::disk::BLOCK)?,
            addr: field(block::disk::ADDR)?,
        })
    }

    pub fn set_status(&self, memory: &mut GuestMemory, status: u32) {
        let _ = memory.write_u32(self.at + block::disk::STATUS, status);
    }

    /// For info: the disk's size in blocks.
    pub fn set_block(&self, memory: &mut GuestMemory, value: u32) {
        let _ = memory.write_u32(self.at + block::disk::BLOCK, value);
    }
}

/// The rule of `isa-spec/blocks.txt`: a request block is 4-byte aligned, lies entirely inside
/// memory and outside page 0.
fn block_ok(memory: &GuestMemory, addr: u32, size: u32) -> bool {
    addr.is_multiple_of(4) && range_ok(memory, addr, size)
}

/// Whether `addr..addr+len` lies inside memory and outside the register page.
pub(crate) fn range_ok(memory: &GuestMemory, addr: u32, len: u32) -> bool {
    addr >= PAGE_SIZE && u64::from(addr) + u64::from(len) <= u64::from(memory.size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_blocks_are_refused() {
        let memory = GuestMemory::new(0x4000).unwrap();
        assert!(BufferBlock::parse(&memory, 0x2000).is_some());
        for at in [0, 0x0FFC, 0x2001, 0x3FF8, 0x4000, u32::MAX - 3] {
            assert!(BufferBlock::parse(&memory, at).is_none(), "{at:#x}");
        }
        assert!(DiskBlock::parse(&memory, 0x3FE8).is_some());
        assert!(DiskBlock::parse(&memory, 0x3FEC).is_none());
    }

    #[test]
    fn buffers_must_avoid_page_0_and_stay_inside() {
        let memory = GuestMemory::new(0x4000).unwrap();
        let buffer = |addr, len| BufferBlock { at: 0x2000, addr, len };
        assert!(buffer(0x1000, 0x3000).buffer_ok(&memory));
        assert!(!buffer(0x0FFF, 1).buffer_ok(&memory));
        assert!(!buffer(0x3000, 0x1001).buffer_ok(&memory));
        assert!(!buffer(0x3000, u32::MAX).buffer_ok(&memory));
    }
}
