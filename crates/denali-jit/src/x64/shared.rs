//! Translations shared by the JITs of a fleet's VMs (the JIT's counterpart of the
//! interpreter's `SharedCode`).
//!
//! A translation depends only on its start address, the guest bytes from there to its last
//! byte, and the memory size (an immediate of its bounds checks and direct exits): everything
//! else a block reaches is per VM and goes through registers (`rdi`: the `Ctx`, and through
//! it the VM's chaining table; `rbp`: its memory; `r10`: its code-page table). So a block one VM
//! translated can run for any VM whose memory has that size and holds those bytes there.
//! Each shared block keeps its bytes, and a VM takes it only after comparing them with its own
//! memory; from then on the VM treats it as one of its own blocks (marks its pages, drops it
//! when it writes them).
//!
//! Shared blocks are never linked to each other: their direct exits go through the chaining
//! table of the VM running them, which holds only blocks that VM took or translated after
//! checking their bytes. A direct link from block A to a shared block at B would be followed
//! by every VM that took A, including one whose memory holds other bytes at B.

use super::AddrMap;
use super::arena::SharedArena;
use super::ctx::{Ctx, Table};
use super::translate::Translation;
use denali_engine::GuestMemory;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Most different blocks kept for one address (other images, other memory sizes, rewritten
/// code), so that hostile guests cannot fill the arena with variants of one block.
const MAX_VARIANTS: usize = 4;
/// Bits of the filter of addresses with a shared block (`SharedJit::present`).
const FILTER_BITS: usize = 1 << 12;

/// A published block, as a VM takes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shared {
    /// Arena offsets of the outer and the inner entry.
    pub offset: usize,
    pub inner_offset: usize,
    /// Host address of the inner entry (for chaining tables).
    pub inner: u64,
    /// Guest instructions of the block.
    pub count: u32,
    /// Last guest byte it was translated from.
    pub last_byte: u32,
}

struct Variant {
    mem_size: u32,
    /// The guest bytes `eip ..= last_byte` it was translated from.
    bytes: Box<[u8]>,
    block: Shared,
}

/// The translations of a fleet's VMs, for all of them: made once per fleet
/// (`denali_jit::fleet_engines`) and handed to every JIT of the fleet ([`super::Jit::sharing`]).
pub struct SharedJit {
    arena: SharedArena,
    blocks: RwLock<AddrMap<Vec<Variant>>>,
    /// One bit per hash of a guest address, set when a block at such an address is published
    /// (never cleared): a VM that misses its own cache looks here first, a load from a line
    /// that no one writes once the fleet's code is translated, and takes the lock only on a
    /// set bit.
    present: [AtomicU64; FILTER_BITS / 64],
}

impl SharedJit {
    /// An empty cache; its arena is mapped at the first block published.
    pub fn new() -> Arc<SharedJit> {
        Arc::new(SharedJit {
            arena: SharedArena::default(),
            blocks: RwLock::default(),
            present: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    /// How many blocks are shared.
    pub fn blocks(&self) -> usize {
        self.blocks.read().unwrap_or_else(PoisonError::into_inner).values().map(Vec::len).sum()
    }

    fn bit(eip: u32) -> (usize, u64) {
        let h = (eip.wrapping_mul(0x9E37_79B1) >> 20) as usize;
        (h / 64, 1 << (h % 64))
    }

    /// The block at `eip` translated from the bytes `mem` holds there, for its size.
    pub(crate) fn find(&self, eip: u32, mem: &GuestMemory) -> Option<Shared> {
        let (word, bit) = SharedJit::bit(eip);
        if self.present[word].load(Ordering::Relaxed) & bit == 0 {
            return None;
        }
        let blocks = self.blocks.read().unwrap_or_else(PoisonError::into_inner);
        matching(blocks.get(&eip)?, eip, mem)
    }

    /// Publishes `t`, which this VM translated from `mem` at `eip`, and returns it as shared;
    /// or the block another VM published from the same bytes meanwhile. `None` when the block
    /// cannot be shared (too many variants at `eip`, the arena is full): the VM keeps it.
    pub(crate) fn publish(&self, eip: u32, mem: &GuestMemory, t: &Translation) -> Option<Shared> {
        let len = usize::try_from(t.last_byte.checked_sub(eip)?).ok()? + 1;
        let bytes = mem.bytes(eip, len).ok()?;
        let mut blocks = self.blocks.write().unwrap_or_else(PoisonError::into_inner);
        let variants = blocks.entry(eip).or_default();
        if let Some(found) = matching(variants, eip, mem) {
            return Some(found);
        }
        if variants.len() >= MAX_VARIANTS {
            return None;
        }
        // Copied and made executable before anyone can find it.
        let offset = self.arena.insert(&t.code)?;
        let inner_offset = offset + t.inner;
        let inner = self.arena.base()? + inner_offset as u64;
        let block = Shared { offset, inner_offset, inner, count: t.count, last_byte: t.last_byte };
        variants.push(Variant { mem_size: mem.size(), bytes: bytes.into(), block });
        let (word, bit) = SharedJit::bit(eip);
        self.present[word].fetch_or(bit, Ordering::Relaxed);
        Some(block)
    }

    /// Runs the shared block at `offset` (from `find` or `publish`) on `ctx` and the VM's own
    /// `table`; as `Arena::call`.
    pub(crate) fn call(&self, offset: usize, ctx: &mut Ctx, table: &Table) {
        self.arena.call(offset, ctx, table);
    }
}

/// The variant whose memory size and bytes are `mem`'s at `eip`.
fn matching(variants: &[Variant], eip: u32, mem: &GuestMemory) -> Option<Shared> {
    variants.iter().find_map(|v| {
        let same = v.mem_size == mem.size() && mem.bytes(eip, v.bytes.len()).is_ok_and(|here| here == &*v.bytes);
        same.then_some(v.block)
    })
}
