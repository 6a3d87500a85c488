//! Decoded blocks and their cache.
//!
//! A block is a run of pre-decoded instructions ending at a control transfer, an exiting
//! instruction, an invalid instruction or a length limit. Blocks are found by start address
//! through a direct-mapped table in front of a hash map. Every page a block's bytes touch is
//! marked in `GuestMemory`; a store to such a page drops all blocks of that page.
//!
//! A VM's cache may take blocks from a [`SharedCode`] that the interpreters of many VMs share:
//! a block found there is used only if this VM's memory holds the very bytes it was decoded
//! from, so VMs of one image decode its code once between them.

use super::control;
use super::decode::{fault_op, translate};
use super::machine::Op;
use super::shared::SharedCode;
use crate::GuestMemory;
use denali_abi::boot::PAGE_SIZE;
use iced_x86::{Code, DecoderError};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Longest block, in instructions.
const MAX_BLOCK: usize = 64;
/// Most entries of the direct-mapped lookup table (a power of two). The table starts at
/// `FIRST_FAST_SLOTS` and grows fourfold whenever the blocks outnumber its entries, so a VM
/// that runs little code (an idle VM of a fleet) keeps a table of a few hundred bytes to 2 KiB;
/// a miss in it costs a hash lookup, not a decode.
const FAST_SLOTS: usize = 4096;
const FIRST_FAST_SLOTS: usize = 64;
/// Most pre-decoded instructions one cache holds. A guest that jumps to ever new addresses
/// would otherwise grow the cache without bound at the host's expense; when an insertion would
/// pass this, the whole cache is dropped and refills from what runs next.
pub(crate) const MAX_CACHED_OPS: usize = 1 << 18;
/// Marks an empty fast-table entry: no instruction starts at 0xFFFF_FFFF (memory is smaller).
const EMPTY: u32 = u32::MAX;
const PAGE_SHIFT: u32 = PAGE_SIZE.trailing_zeros();

/// A hasher for `u32` keys: one multiply.
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type AddrMap<V> = HashMap<u32, V, BuildHasherDefault<AddrHasher>>;

#[derive(Clone)]
pub(crate) struct Block {
    /// Shared with other VMs' caches when it came from a [`SharedCode`].
    pub ops: Arc<[Op]>,
    /// Where execution continues after the last op when it falls through.
    pub end: u32,
}

/// `Default` leaves the fast table empty: it is allocated on the first miss and grows with
/// the code the VM runs, so a fleet of VMs that barely run pays little for it.
#[derive(Default)]
pub(crate) struct Cache {
    blocks: Vec<Option<Block>>,
    /// How often each block (by slot) has been entered, for engines that tier up
    /// (`Interpreter::run_counting`); 0 when its slot is filled.
    runs: Vec<u32>,
    free: Vec<u32>,
    map: AddrMap<u32>,
    fast: Box<[(u32, u32)]>,
    by_page: AddrMap<Vec<u32>>,
    /// Pre-decoded instructions in live blocks.
    ops: usize,
    /// Blocks decoded by other VMs, if this cache takes part in sharing.
    shared: Option<Arc<SharedCode>>,
}

#[inline(always)]
fn fast_index(eip: u32, slots: usize) -> usize {
    ((eip ^ (eip >> 12)) as usize) & (slots.max(1) - 1)
}

impl Cache {
    /// A cache that takes blocks from, and gives its own to, `shared`.
    pub fn sharing(shared: Arc<SharedCode>) -> Cache {
        Cache { shared: Some(shared), ..Cache::default() }
    }

    /// The slot of the block starting at `eip`, decoding it if needed.
    #[inline]
    pub fn lookup(&mut self, eip: u32, mem: &mut GuestMemory) -> u32 {
        let fi = fast_index(eip, self.fast.len());
        if let Some(&(key, slot)) = self.fast.get(fi)
            && key == eip
        {
            return slot;
        }
        self.lookup_slow(eip, mem)
    }

    #[inline(never)]
    fn lookup_slow(&mut self, eip: u32, mem: &mut GuestMemory) -> u32 {
        let slot = match self.map.get(&eip) {
            Some(s) => *s,
            None => self.insert(eip, mem),
        };
        if self.fast.len() < FAST_SLOTS && self.map.len() >= self.fast.len() {
            self.grow_fast();
        }
        let fi = fast_index(eip, self.fast.len());
        if let Some(entry) = self.fast.get_mut(fi) {
            *entry = (eip, slot);
        }
        slot
    }

    /// Makes the fast table four times larger (or allocates it) and refills it from the map.
    fn grow_fast(&mut self) {
        let slots = (self.fast.len() * 4).clamp(FIRST_FAST_SLOTS, FAST_SLOTS);
        let mut fast = vec![(EMPTY, 0); slots].into_boxed_slice();
        for (&eip, &slot) in &self.map {
            fast[fast_index(eip, slots)] = (eip, slot);
        }
        self.fast = fast;
    }

    /// Counts an entry into the block in `slot` and returns how many there have been.
    #[inline(always)]
    pub fn count_run(&mut self, slot: u32) -> u32 {
        let runs = &mut self.runs[slot as usize];
        *runs = runs.saturating_add(1);
        *runs
    }

    #[inline(always)]
    pub fn block(&self, slot: u32) -> &Block {
        match &self.blocks[slot as usize] {
            Some(b) => b,
            None => unreachable!("the lookup tables only name live blocks"),
        }
    }

    fn insert(&mut self, eip: u32, mem: &mut GuestMemory) -> u32 {
        let found = self.shared.as_ref().and_then(|shared| shared.find(eip, mem));
        let (block, last_byte) = match found {
            Some(found) => found,
            None => {
                let (block, last_byte, shareable) = decode_block(eip, mem);
                if shareable && let Some(shared) = &self.shared {
                    shared.offer(eip, last_byte, &block, mem);
                }
                (block, last_byte)
            }
        };
        if self.ops + block.ops.len() > MAX_CACHED_OPS {
            self.flush();
        }
        self.ops += block.ops.len();
        for page in (eip >> PAGE_SHIFT)..=(last_byte >> PAGE_SHIFT) {
            if u64::from(page) << PAGE_SHIFT < u64::from(mem.size()) {
                mem.mark_code_page(page);
                self.by_page.entry(page).or_default().push(eip);
            }
        }
        let slot = match self.free.pop() {
            Some(s) => {
                self.blocks[s as usize] = Some(block);
                self.runs[s as usize] = 0;
                s
            }
            None => {
                self.blocks.push(Some(block));
                self.runs.push(0);
                #[allow(clippy::cast_possible_truncation, reason = "fewer blocks than addresses")]
                let s = (self.blocks.len() - 1) as u32;
                s
            }
        };
        self.map.insert(eip, slot);
        slot
    }

    /// Drops every block decoded from `pages`.
    pub fn invalidate(&mut self, pages: &[u32]) {
        for page in pages {
            let Some(starts) = self.by_page.remove(page) else { continue };
            for eip in starts {
                if let Some(slot) = self.map.remove(&eip) {
                    if let Some(block) = self.blocks[slot as usize].take() {
                        self.ops -= block.ops.len();
                    }
                    self.free.push(slot);
                    let fi = fast_index(eip, self.fast.len());
                    if let Some(entry) = self.fast.get_mut(fi)
                        && entry.0 == eip
                    {
                        *entry = (EMPTY, 0);
                    }
                }
            }
        }
    }
}

impl Cache {
    /// Drops every block. Pages stay marked as code in `GuestMemory`, which costs at most a
    /// spurious invalidation of nothing later.
    fn flush(&mut self) {
        self.blocks.clear();
        self.runs.clear();
        self.free.clear();
        self.map.clear();
        self.by_page.clear();
        self.fast.fill((EMPTY, 0));
        self.ops = 0;
    }

    /// Pre-decoded instructions currently cached.
    pub(crate) fn cached_ops(&self) -> usize {
        self.ops
    }
}

/// Decodes the block at `start`, which lies inside memory. Returns it with the address of the
/// last byte its decoding depended on, and whether it depended on nothing else: false when
/// the end of memory cut a fetch short, so the same bytes in a larger memory decode otherwise.
fn decode_block(start: u32, mem: &GuestMemory) -> (Block, u32, bool) {
    let mut ops = Vec::new();
    let mut ip = start;
    let mut last_byte = start;
    let mut bytes_only = true;
    loop {
        let window = match mem.fetch_window(ip, 15) {
            Ok(w) => w,
            Err(e) => {
                ops.push(fault_op(ip, 0, control::fetch_fault, e.0));
                bytes_only = false;
                break;
            }
        };
        bytes_only &= window.len() == 15;
        #[allow(clippy::cast_possible_truncation, reason = "at most 15")]
        let wlen = window.len() as u32;
        let mut decoder = denali_isa::validate::decoder(window, ip);
        let ins = decoder.decode();
        if ins.code() == Code::INVALID {
            last_byte = ip + wlen - 1;
            if decoder.last_error() == DecoderError::NoMoreBytes {
                ops.push(fault_op(ip, 0, control::fetch_fault, ip + wlen));
            } else {
                ops.push(fault_op(ip, 0, control::invalid, 0));
            }
            break;
        }
        #[allow(clippy::cast_possible_truncation, reason = "at most 15")]
        let len = ins.len() as u32;
        last_byte = ip + len - 1;
        let translated = if super::validator_accepts(&ins) { translate(&ins) } else { None };
        match translated {
            Some((op, ends)) => {
                ops.push(op);
                ip += len;
                if ends || ops.len() >= MAX_BLOCK {
                    break;
                }
            }
            None => {
                #[allow(clippy::cast_possible_truncation, reason = "at most 15")]
                ops.push(fault_op(ip, len as u8, control::invalid, 0));
                break;
            }
        }
    }
    let end = ops.last().map_or(start, |o| o.next);
    (Block { ops: ops.into(), end }, last_byte, bytes_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_jumping_everywhere_cannot_grow_the_cache_past_its_bound() {
        // 1 MiB of NOPs: every address starts a 64-instruction block.
        let mut mem = GuestMemory::new(0x20_0000).unwrap();
        mem.fill(0x1000, 0x10_0000, 0x90).unwrap();
        let mut cache = Cache::default();
        let mut peak = 0;
        for eip in 0x1000..0x1000 + 3 * (MAX_CACHED_OPS as u32 / 64) {
            let slot = cache.lookup(eip, &mut mem);
            assert_eq!(cache.block(slot).ops[0].eip, eip);
            peak = peak.max(cache.cached_ops());
        }
        assert!(peak <= MAX_CACHED_OPS, "cache grew to {peak} ops");
        assert!(peak > MAX_CACHED_OPS - 64, "the bound was never reached: {peak}");
    }
}
