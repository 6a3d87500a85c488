//! The executable code arena and the call into translated code: the only `unsafe` of the JIT.
//!
//! One anonymous mapping of `ARENA_SIZE` bytes, mapped on first use, kept read+execute except
//! while a block is copied in (W^X: made writable, written, made executable again). Blocks are
//! appended and never moved; the whole arena is reset when full (`flush`), so offsets into it
//! stay valid until the next flush, and the runtime drops every offset it holds at a flush.

use super::ctx::State;
use memmap2::{Mmap, MmapMut};

/// A jump to rewrite: the arena offset of a `jmp rel32`'s displacement field and its new value.
pub(crate) type Patch = (usize, i32);

fn apply(code: &mut [u8], patches: &[Patch], used: usize) {
    for &(field, rel) in patches {
        if field + 4 <= used {
            code[field..field + 4].copy_from_slice(&rel.to_le_bytes());
        }
    }
}

/// Bytes of host code one JIT may hold.
pub(crate) const ARENA_SIZE: usize = 4 << 20;
/// Every block starts at a multiple of this, so that where its branches fall relative to
/// cache lines does not depend on what was translated before it: bignum's loop ran 35 %
/// slower or faster from one layout to another (aligning loop heads inside blocks to 16 or 32
/// bytes measured no better than this).
pub(crate) const BLOCK_ALIGN: usize = 64;

#[derive(Default)]
pub(crate) struct Arena {
    map: Option<Mmap>,
    used: usize,
}

impl Arena {
    /// The offset `insert` will copy `len` bytes to, or `None` when they do not fit.
    pub fn next_offset(&self, len: usize) -> Option<usize> {
        let at = self.used.next_multiple_of(BLOCK_ALIGN);
        (len > 0 && at + len <= ARENA_SIZE).then_some(at)
    }

    /// Copies `code` in at [`Arena::next_offset`], then applies `patches`, and returns the
    /// offset; `None` when the arena is full (or cannot be mapped): the caller flushes and
    /// retries, or falls back.
    pub fn insert(&mut self, code: &[u8], patches: &[Patch]) -> Option<usize> {
        let at = self.next_offset(code.len())?;
        let mut writable = match self.map.take() {
            Some(m) => m.make_mut().ok()?,
            None => MmapMut::map_anon(ARENA_SIZE).ok()?,
        };
        writable[at..at + code.len()].copy_from_slice(code);
        self.used = at + code.len();
        apply(&mut writable, patches, self.used);
        self.map = Some(writable.make_exec().ok()?);
        Some(at)
    }

    /// Rewrites the rel32 fields `patches` name (each inside code inserted since the last
    /// flush). Returns `None` when the mapping could not be made writable and executable again
    /// (then the arena is gone and `base` is `None`: the caller must flush).
    pub fn patch(&mut self, patches: &[Patch]) -> Option<()> {
        if patches.is_empty() {
            return Some(());
        }
        let mut writable = self.map.take()?.make_mut().ok()?;
        apply(&mut writable, patches, self.used);
        self.map = Some(writable.make_exec().ok()?);
        Some(())
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
        // itself, to inner entries found in `state.table` and to those its patched `jmp rel32`s
        // name (both only ever name live blocks: the caller's contract).
        unsafe {
            let entry: extern "sysv64" fn(*mut State) = std::mem::transmute(map.as_ptr().add(offset));
            entry(state);
        }
    }
}
