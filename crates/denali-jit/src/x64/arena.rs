//! The executable code arena and the call into translated code: the only `unsafe` of the JIT.
//!
//! One anonymous mapping of `ARENA_SIZE` bytes, mapped on first use, kept read+execute except
//! while a block is copied in (W^X: made writable, written, made executable again). Blocks are
//! appended and never moved; the whole arena is reset when full (`flush`), so offsets into it
//! stay valid until the next flush, and the runtime drops every offset it holds at a flush.

use super::ctx::State;
use memmap2::{Mmap, MmapMut};

/// Bytes of host code one JIT may hold.
pub(crate) const ARENA_SIZE: usize = 4 << 20;

#[derive(Default)]
pub(crate) struct Arena {
    map: Option<Mmap>,
    used: usize,
}

impl Arena {
    /// Copies `code` in and returns its offset, or `None` when the arena is full (or cannot be
    /// mapped): the caller flushes and retries, or falls back.
    pub fn insert(&mut self, code: &[u8]) -> Option<usize> {
        if code.is_empty() || self.used + code.len() > ARENA_SIZE {
            return None;
        }
        let mut writable = match self.map.take() {
            Some(m) => m.make_mut().ok()?,
            None => MmapMut::map_anon(ARENA_SIZE).ok()?,
        };
        let at = self.used;
        writable[at..at + code.len()].copy_from_slice(code);
        self.used += code.len();
        self.map = Some(writable.make_exec().ok()?);
        Some(at)
    }

    /// Host address of offset 0 (stable until the arena is dropped), once mapped.
    pub fn base(&self) -> Option<u64> {
        self.map.as_ref().map(|m| m.as_ptr() as u64)
    }

    /// Forgets every block; their offsets become invalid.
    pub fn flush(&mut self) {
        self.used = 0;
    }

    /// Runs the block at `offset` on `state`.
    ///
    /// `offset` must come from `insert` since the last `flush`, `state.ctx` must describe live
    /// guest memory (`mem_base`, `limit`, `code_pages` from the `GuestMemory` being run, which
    /// the caller borrows mutably for the duration), and `state.table` may hold only inner
    /// entries of blocks inserted since the last flush.
    pub fn call(&self, offset: usize, state: &mut State) {
        let Some(map) = &self.map else { return };
        debug_assert!(offset < self.used);
        // SAFETY: `offset` is the start of a block that `translate` produced and `insert`
        // copied into this executable mapping since the last flush (the caller's contract);
        // each block is a complete `extern "sysv64" fn(*mut State)` that saves and restores the
        // callee-saved registers it uses, leaves DF clear, and touches no memory other than
        // `*state`, the guest memory range `mem_base .. mem_base + 2^32 - limit` (every access
        // is bounds-checked inline) and the code-page table (read only). It jumps only within
        // itself and to inner entries found in `state.table` (live blocks, caller's contract).
        unsafe {
            let entry: extern "sysv64" fn(*mut State) = std::mem::transmute(map.as_ptr().add(offset));
            entry(state);
        }
    }
}
