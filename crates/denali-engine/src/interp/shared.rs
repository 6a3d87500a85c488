//! Decoded blocks shared by the interpreters of many VMs (a fleet's VMs of one image run the
//! same code at the same addresses, and would otherwise each decode and validate it).
//!
//! A block's decoding depends only on its start address and the bytes from there to the last
//! byte it read (blocks whose fetches the end of memory cut short are never shared). Each
//! shared block keeps those bytes, and a VM uses it only when its own memory holds the same
//! bytes there, so a VM that rewrote its code, or runs another image, decodes its own. Blocks
//! are immutable once shared; a VM's cache holds them by `Arc` and invalidates them as it does
//! its own, and sharing changes nothing a guest can observe.

use std::sync::{Arc, PoisonError, RwLock};

use super::cache::{AddrMap, Block};
use crate::GuestMemory;

/// Most pre-decoded instructions one `SharedCode` holds; past it, VMs keep new blocks to
/// themselves, so hostile guests cannot grow it without bound.
const MAX_SHARED_OPS: usize = 1 << 19;
/// Most different blocks kept for one address (different images, or rewritten code).
const MAX_VARIANTS: usize = 4;
/// Independent locks, so that VMs on different threads rarely meet on one.
const SHARDS: usize = 16;

struct Variant {
    /// The bytes the block was decoded from, starting at its address.
    bytes: Box<[u8]>,
    block: Block,
}

/// Blocks decoded by any VM of a group, for the others to reuse.
pub struct SharedCode {
    shards: [RwLock<Shard>; SHARDS],
}

#[derive(Default)]
struct Shard {
    blocks: AddrMap<Vec<Variant>>,
    ops: usize,
}

impl SharedCode {
    /// An empty store, to hand to every interpreter of the group (`Interpreter::sharing`).
    pub fn new() -> Arc<SharedCode> {
        Arc::new(SharedCode { shards: std::array::from_fn(|_| RwLock::new(Shard::default())) })
    }

    fn shard(&self, eip: u32) -> &RwLock<Shard> {
        &self.shards[(eip as usize ^ (eip as usize >> 6)) % SHARDS]
    }

    /// How many blocks are shared.
    pub fn blocks(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).blocks.values().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// The block at `eip` decoded from the bytes `memory` holds there, with its last byte.
    pub(crate) fn find(&self, eip: u32, memory: &GuestMemory) -> Option<(Block, u32)> {
        let shard = self.shard(eip).read().unwrap_or_else(PoisonError::into_inner);
        let variants = shard.blocks.get(&eip)?;
        variants.iter().find_map(|v| {
            let here = memory.bytes(eip, v.bytes.len()).ok()?;
            #[allow(clippy::cast_possible_truncation, reason = "a block spans at most 64 * 15 bytes")]
            let last_byte = eip + v.bytes.len() as u32 - 1;
            (here == &*v.bytes).then(|| (v.block.clone(), last_byte))
        })
    }

    /// Offers a block this VM decoded from `memory`'s bytes `eip..=last_byte`.
    pub(crate) fn offer(&self, eip: u32, last_byte: u32, block: &Block, memory: &GuestMemory) {
        let Ok(bytes) = memory.bytes(eip, (last_byte - eip) as usize + 1) else { return };
        let mut shard = self.shard(eip).write().unwrap_or_else(PoisonError::into_inner);
        if (shard.ops + block.ops.len()) * SHARDS > MAX_SHARED_OPS {
            return;
        }
        let variants = shard.blocks.entry(eip).or_default();
        if variants.len() >= MAX_VARIANTS || variants.iter().any(|v| *v.bytes == *bytes) {
            return;
        }
        variants.push(Variant { bytes: bytes.into(), block: block.clone() });
        shard.ops += block.ops.len();
    }
}
