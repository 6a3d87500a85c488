//! The executable code arena and the call into translated code: the only `unsafe` of the JIT.
//!
//! One anonymous mapping of `ARENA_SIZE` bytes, mapped on first use. Blocks are appended and
//! never moved; the whole arena is reset when full (`flush`), so offsets into it stay valid
//! until the next flush, and the runtime drops every offset it holds at a flush.
//!
//! Strict W^X: no page is ever writable and executable at once. The pages below `exec_end`
//! (those holding code) are read+execute, the rest read+write. An insert writes the block at
//! the frontier, so the protection changes it needs move that boundary: the page the block
//! starts on goes back to read+write if it already held code, and every page up to the
//! block's end becomes read+execute. Only patches of older code (links, unlinks) change pages
//! inside the executable part, and only the pages they write.
//!
//! Why not the whole mapping (memmap2's `make_mut`/`make_exec`, as before): a protection
//! change costs the kernel about 3 us, plus about 0.3 us per populated page it covers, plus
//! a few us more when it splits the mapping in the middle. A pair over the whole 4 MiB cost
//! 15 to 25 us on the measuring host and grew with the code held; a pair that moves the
//! boundary costs 4 to 5.5 us. memmap2 changes whole mappings only, so the changes go through
//! `rustix::mm::mprotect`, and the mapping is an `MmapRaw`, which hands out no Rust reference
//! into memory whose protection changes under it.
//!
//! [`SharedArena`] is the other kind: one per fleet, entered by many threads, append-only,
//! never flushed, and its pages change protection once (read+write to read+execute, before
//! anything in them is published).

use super::ctx::{Ctx, Table};
use memmap2::{MmapMut, MmapRaw};
use rustix::mm::{MprotectFlags, mprotect};
use std::sync::{Mutex, OnceLock, PoisonError};

/// A jump to rewrite: the arena offset of a `jmp rel32`'s displacement field and its new value.
pub(crate) type Patch = (usize, i32);

/// Bytes of host code one JIT may hold.
pub(crate) const ARENA_SIZE: usize = 4 << 20;
/// Every block starts at a multiple of this, so that where its branches fall relative to
/// cache lines does not depend on what was translated before it: bignum's loop ran 35 %
/// slower or faster from one layout to another (aligning loop heads inside blocks to 16 or 32
/// bytes measured no better than this).
pub(crate) const BLOCK_ALIGN: usize = 64;
/// The unit of protection changes (Linux x86-64 pages; `mprotect` rounds to the host's).
const PAGE: usize = 4096;
/// Written pages closer than this are re-protected as one range: covering a few populated
/// pages more costs less than another pair of changes.
const MERGE_GAP: usize = 8 * PAGE;

const WRITABLE: MprotectFlags = MprotectFlags::READ.union(MprotectFlags::WRITE);
const EXECUTABLE: MprotectFlags = MprotectFlags::READ.union(MprotectFlags::EXEC);

#[derive(Default)]
pub(crate) struct Arena {
    map: Option<MmapRaw>,
    /// End of the code inserted since the last flush.
    used: usize,
    /// Pages below this offset are read+execute, the others read+write (page-aligned, at
    /// least `used`).
    exec_end: usize,
}

impl Arena {
    /// The offset `insert` will copy `len` bytes to, or `None` when they do not fit.
    pub fn next_offset(&self, len: usize) -> Option<usize> {
        let at = self.used.next_multiple_of(BLOCK_ALIGN);
        (len > 0 && at + len <= ARENA_SIZE).then_some(at)
    }

    /// Copies `code` in at [`Arena::next_offset`], then applies `patches`, and returns the
    /// offset; `None` when the arena is full or cannot be mapped or re-protected (then the
    /// arena is gone and `base` is `None`): the caller flushes and retries, or falls back.
    pub fn insert(&mut self, code: &[u8], patches: &[Patch]) -> Option<usize> {
        let at = self.next_offset(code.len())?;
        if self.map.is_none() {
            // Read+write: no code yet.
            self.map = Some(MmapRaw::from(MmapMut::map_anon(ARENA_SIZE).ok()?));
            self.exec_end = 0;
        }
        self.used = at + code.len();
        self.write(Some((at, code)), patches)?;
        Some(at)
    }

    /// Rewrites the rel32 fields `patches` name (each inside code inserted since the last
    /// flush). Returns `None` when the pages could not be made writable and executable again
    /// (then the arena is gone and `base` is `None`: the caller must flush).
    pub fn patch(&mut self, patches: &[Patch]) -> Option<()> {
        if patches.is_empty() {
            return Some(());
        }
        self.write(None, patches)
    }

    /// Copies `block` (offset, bytes; at the frontier) in and applies `patches` (those outside
    /// the code used are ignored), making writable only the executable pages they touch, and
    /// only while writing them; the block's pages end executable. On a failed protection
    /// change the mapping is dropped (nothing may run from a page left writable).
    fn write(&mut self, block: Option<(usize, &[u8])>, patches: &[Patch]) -> Option<()> {
        let used = self.used;
        let patches = patches.iter().filter(|&&(field, _)| field + 4 <= used);
        let mut ranges: Vec<(usize, usize)> = block
            .iter()
            .map(|&(at, code)| (at, at + code.len()))
            .chain(patches.clone().map(|&(field, _)| (field, field + 4)))
            .map(|(from, to)| (from / PAGE * PAGE, to.next_multiple_of(PAGE)))
            .collect();
        ranges.sort_unstable();
        let mut runs: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
        for (from, to) in ranges {
            match runs.last_mut() {
                Some(last) if from <= last.1 + MERGE_GAP => last.1 = last.1.max(to),
                _ => runs.push((from, to)),
            }
        }
        let exec_end = self.exec_end;
        // Only the executable part of each run changes; pages from `exec_end` on are writable.
        let ok =
            runs.iter().filter(|r| r.0 < exec_end).all(|&(from, to)| self.protect(from, to.min(exec_end), WRITABLE));
        if ok && let Some(map) = &self.map {
            if let Some((at, code)) = block {
                copy_in(map, at, code);
            }
            for &(field, rel) in patches {
                copy_in(map, field, &rel.to_le_bytes());
            }
        }
        // The block's run reaches from at most `exec_end` to past its end (it starts at the
        // frontier): the executable part stays one contiguous range from offset 0.
        let ok = ok && runs.iter().all(|&(from, to)| self.protect(from, to, EXECUTABLE));
        if !ok {
            self.map = None;
            self.used = 0;
            self.exec_end = 0;
            return None;
        }
        self.exec_end = runs.iter().map(|r| r.1).fold(exec_end, usize::max);
        Some(())
    }

    /// Sets the protection of the pages `from .. to` (page-aligned offsets inside the map);
    /// whether it could.
    fn protect(&self, from: usize, to: usize, flags: MprotectFlags) -> bool {
        let Some(map) = &self.map else { return false };
        // The arena writes only in `write`, to pages it made writable, and generated code runs
        // (`call`, which borrows `self`) only when every page holding code is read+execute
        // (`write` restores that or drops the mapping).
        protect(map, from, to, flags)
    }

    /// Host address of offset 0 (stable until the arena is dropped), once mapped.
    pub fn base(&self) -> Option<u64> {
        self.map.as_ref().map(|m| m.as_ptr() as u64)
    }

    /// Forgets every block; their offsets become invalid, and their pages writable (and no
    /// longer executable) for the code that replaces them.
    pub fn flush(&mut self) {
        self.used = 0;
        if !self.protect(0, self.exec_end, WRITABLE) {
            self.map = None;
        }
        self.exec_end = 0;
    }

    /// Runs the block at `offset` on `ctx`, with `table` as its chaining table.
    ///
    /// `offset` must come from `insert` since the last `flush`, `ctx` must describe live
    /// guest memory (`mem_base`, `limit`, `code_pages` from the `GuestMemory` being run, which
    /// the caller borrows mutably for the duration), and `table` may hold only inner
    /// entries of blocks inserted since the last flush and of published blocks of a
    /// [`SharedArena`] the caller keeps alive. Blocks translated for guard-region mode may run
    /// only on a guarded memory, with the fault handler installed and the arena's fault sites
    /// entered (`fault::enter`) for the duration.
    pub fn call(&self, offset: usize, ctx: &mut Ctx, table: &Table) {
        let Some(map) = &self.map else { return };
        debug_assert!(offset < self.used && self.used <= self.exec_end);
        // SAFETY: `offset` is the start of a block that `translate` produced and `insert`
        // copied into this mapping since the last flush (the caller's contract), and every page
        // holding code inserted since then is read+execute (`write` makes them so or drops the
        // mapping); the rest is `enter`'s contract, which the caller's keeps. Its patched
        // `jmp rel32`s name only live blocks of this arena (the runtime unlinks dropped ones).
        unsafe { enter(map, offset, ctx, table) }
    }
}

/// Enters the block at `offset` of `map` with `ctx` in rdi and `table` as its chaining table.
///
/// # Safety
///
/// `offset` must be the outer entry of a block `translate` produced, copied whole into `map`,
/// whose pages are read+execute and stay so, unchanged, until this returns; every block it can
/// reach (its patched `jmp rel32`s and the inner entries in `table`) likewise. Each block
/// is a complete `extern "sysv64" fn(*mut Ctx)` that saves and restores the callee-saved
/// registers it uses, leaves DF clear, and touches no memory other than `*ctx`, the chaining
/// table `table` (read only; `ctx.table` names it), the guest memory range
/// `mem_base .. mem_base + 2^32 - limit` (in the checked mode every access is bounds-checked
/// inline; in guard-region mode an access may also address the rest of the
/// memory's reservation, `mem_base - 4 .. mem_base + 2^32 + 3`, all `PROT_NONE`, where it
/// faults and the handler resumes it at an exit of the block) and the code-page table (read
/// only; 2^20 bytes in guard-region mode, which a 20-bit page number cannot pass), which
/// `ctx` must describe for a `GuestMemory` the caller borrows mutably for the duration.
/// Shared arenas hold checked-mode code only.
unsafe fn enter(map: &MmapRaw, offset: usize, ctx: &mut Ctx, table: &Table) {
    debug_assert!(offset < map.len());
    // Generated code finds the table through the `Ctx`: set here, from the table borrowed for
    // the call, so that it can only name a live one.
    ctx.table = table.address();
    // SAFETY: the caller's contract: `offset` holds such a function, executable.
    unsafe {
        let entry: extern "sysv64" fn(*mut Ctx) = std::mem::transmute(map.as_ptr().add(offset));
        entry(ctx);
    }
}

/// Sets the protection of the pages `from .. to` of `map` (page-aligned offsets); whether it
/// could. The caller makes sure no generated code runs from a page it makes writable.
fn protect(map: &MmapRaw, from: usize, to: usize, flags: MprotectFlags) -> bool {
    debug_assert!(from.is_multiple_of(PAGE) && to.is_multiple_of(PAGE));
    if from >= to || to > map.len() {
        return from == to;
    }
    // SAFETY: the range lies inside the mapping `map` (checked above), which stays mapped
    // while the caller borrows it, and `map.as_mut_ptr()` has provenance over all of it.
    // Changing its protection breaks no Rust reference: `MmapRaw` hands out none; whether code
    // may run from those pages is the caller's duty (above).
    unsafe { mprotect(map.as_mut_ptr().add(from).cast(), to - from, flags) }.is_ok()
}

/// Bytes of host code a fleet's [`SharedArena`] may hold: address space only, a page costs
/// memory once written. Each block takes at least a page (below), so this is 8,192 blocks.
pub(crate) const SHARED_ARENA_SIZE: usize = 32 << 20;

/// The code arena of a fleet's shared translations (`SharedJit`), entered by many threads at
/// once. Append-only and never flushed: code, once published, stays where it is, unchanged and
/// read+execute, as long as the arena lives (the `Arc` of every JIT that may run it).
///
/// Strict W^X without ever re-protecting a page that holds code: every insert starts on a page
/// of its own (above all earlier code), writes the block while its pages are read+write and no
/// one knows their offset, then makes them read+execute, and only then returns the offset the
/// caller publishes. A page is thus read+write until it first holds code and read+execute from
/// then on. The waste (the rest of each block's last page) is fine: a fleet's hot blocks are few.
#[derive(Default)]
pub(crate) struct SharedArena {
    /// Mapped read+write at the first insert (`None` inside: the mapping failed).
    map: OnceLock<Option<MmapRaw>>,
    /// Where the next block goes (page-aligned; every page below holds published code or was
    /// given up). Its lock makes inserts one at a time.
    used: Mutex<usize>,
}

impl SharedArena {
    /// Copies `code` to a fresh page-aligned offset, makes its pages read+execute and returns
    /// the offset; `None` when it does not fit, or the mapping or protection change failed
    /// (then no later insert is tried: those pages are never written again).
    pub fn insert(&self, code: &[u8]) -> Option<usize> {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let at = *used;
        let end = (at + code.len()).next_multiple_of(PAGE);
        if code.is_empty() || end > SHARED_ARENA_SIZE {
            return None;
        }
        let map = self.map.get_or_init(|| MmapMut::map_anon(SHARED_ARENA_SIZE).ok().map(MmapRaw::from)).as_ref();
        let Some(map) = map else {
            *used = SHARED_ARENA_SIZE;
            return None;
        };
        // Pages `at .. end` never held code (every earlier insert ended at or below `at`), so
        // they are still read+write as mapped, and no offset in them was ever handed out.
        copy_in(map, at, code);
        if !protect(map, at, end, EXECUTABLE) {
            // Some pages may have changed: never write or publish any of them.
            *used = SHARED_ARENA_SIZE;
            return None;
        }
        *used = end;
        Some(at)
    }

    /// Host address of offset 0, once mapped (stable while the arena lives).
    pub fn base(&self) -> Option<u64> {
        self.map.get().and_then(Option::as_ref).map(|m| m.as_ptr() as u64)
    }

    /// Runs the block at `offset` on `ctx` and `table`, possibly while other threads run code
    /// of this arena and insert into it.
    ///
    /// `offset` must come from `insert` (a published block); `ctx` and `table` as for
    /// [`Arena::call`].
    pub fn call(&self, offset: usize, ctx: &mut Ctx, table: &Table) {
        let Some(Some(map)) = self.map.get() else { return };
        // SAFETY: `offset` is the outer entry of a block `insert` copied whole and made
        // read+execute before returning it (the caller's contract); `insert` never writes or
        // re-protects a page below its frontier, and the arena is never flushed or unmapped
        // while `self` lives, so it stays so for the call however other threads insert. The
        // shared blocks' direct `jmp rel32`s are never patched (they fall through to the
        // table lookup); the table holds only live blocks (the caller's contract).
        unsafe { enter(map, offset, ctx, table) }
    }
}

/// Copies `bytes` to offset `at` of `map`, whose pages there the caller made writable and no
/// code runs from.
fn copy_in(map: &MmapRaw, at: usize, bytes: &[u8]) {
    assert!(at + bytes.len() <= map.len());
    // SAFETY: the destination lies inside the mapping (asserted), on pages `Arena::write`
    // made (or left) read+write before calling this, or that `SharedArena::insert` has not
    // published yet; nothing else refers to those bytes (`MmapRaw` hands out no reference; no
    // generated code of an `Arena` runs during `write`, and no thread can reach unpublished
    // pages of a `SharedArena`), and `bytes` is ordinary memory, not the mapping, so the two
    // do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.as_mut_ptr().add(at), bytes.len()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protections of the arena's pages, from `/proc/self/maps`: (offset, end, perms).
    fn protections(arena: &Arena) -> Vec<(usize, usize, String)> {
        mapped(arena.base().unwrap(), ARENA_SIZE)
    }

    /// The protections of the `size` bytes at `base`, from `/proc/self/maps`: (offset, end,
    /// perms).
    fn mapped(base: u64, size: usize) -> Vec<(usize, usize, String)> {
        let base = usize::try_from(base).unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mut out = Vec::new();
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (range, perms) = (fields.next().unwrap(), fields.next().unwrap());
            let (from, to) = range.split_once('-').unwrap();
            let from = usize::from_str_radix(from, 16).unwrap();
            let to = usize::from_str_radix(to, 16).unwrap();
            if from < base + size && to > base {
                out.push((from.max(base) - base, to.min(base + size) - base, perms[..3].to_string()));
            }
        }
        out
    }

    /// Whether the pages `from .. to` all have `perms`.
    fn all(p: &[(usize, usize, String)], from: usize, to: usize, perms: &str) -> bool {
        (from..to).step_by(PAGE).all(|page| p.iter().any(|(f, t, q)| *f <= page && page < *t && q == perms))
    }

    #[test]
    fn code_pages_are_executable_and_the_rest_writable_never_both() {
        let mut arena = Arena::default();
        let block = vec![0xC3; 3000];
        let mut offsets = Vec::new();
        for _ in 0..5 {
            offsets.push(arena.insert(&block, &[]).unwrap());
        }
        // A patch inside the first block, one inside the last, and one beyond the code used
        // (ignored).
        let patches = [(offsets[0] + 1, 0x0102_0304), (offsets[4] + 10, -1), (ARENA_SIZE - 8, 7)];
        arena.patch(&patches).unwrap();
        let end = arena.used.next_multiple_of(PAGE);
        let p = protections(&arena);
        assert!(p.iter().all(|(_, _, q)| q == "r-x" || q == "rw-"), "{p:?}");
        assert!(all(&p, 0, end, "r-x"), "{p:?}");
        assert!(all(&p, end, ARENA_SIZE, "rw-"), "{p:?}");
        // The bytes landed (the mapping is readable everywhere).
        let at = |o: usize| i32::from_le_bytes(std::array::from_fn(|i| read_byte(arena.base().unwrap(), o + i)));
        assert_eq!(at(offsets[0] + 1), 0x0102_0304);
        assert_eq!(at(offsets[4] + 10), -1);
        assert_eq!(read_byte(arena.base().unwrap(), offsets[3] + 2999), 0xC3);
        assert_eq!(read_byte(arena.base().unwrap(), ARENA_SIZE - 8), 0);
        arena.flush();
        let p = protections(&arena);
        assert!(all(&p, 0, ARENA_SIZE, "rw-"), "{p:?}");
        arena.insert(&block, &[]).unwrap();
        let p = protections(&arena);
        assert!(all(&p, 0, PAGE, "r-x") && all(&p, PAGE, ARENA_SIZE, "rw-"), "{p:?}");
    }

    /// The protections of the shared arena's pages: (offset, end, perms).
    fn shared_protections(arena: &SharedArena) -> Vec<(usize, usize, String)> {
        mapped(arena.base().unwrap(), SHARED_ARENA_SIZE)
    }

    #[test]
    fn shared_code_pages_are_executable_from_before_publication_and_the_rest_writable_never_both() {
        let arena = SharedArena::default();
        assert!(arena.base().is_none(), "mapped before the first insert");
        let mut offsets = Vec::new();
        for len in [3000, 100, 5000, 1] {
            let at = arena.insert(&vec![0xC3; len]).unwrap();
            // Each block starts on a page of its own, above every earlier block's pages.
            assert!(at.is_multiple_of(PAGE), "{at}");
            assert!(offsets.last().is_none_or(|&(o, l): &(usize, usize)| at >= (o + l).next_multiple_of(PAGE)));
            // Published: its pages are already read+execute.
            let p = shared_protections(&arena);
            assert!(all(&p, at, (at + len).next_multiple_of(PAGE), "r-x"), "{p:?}");
            offsets.push((at, len));
        }
        let end = {
            let (at, len) = offsets[offsets.len() - 1];
            (at + len).next_multiple_of(PAGE)
        };
        let p = shared_protections(&arena);
        assert!(p.iter().all(|(_, _, q)| q == "r-x" || q == "rw-"), "{p:?}");
        assert!(all(&p, 0, end, "r-x"), "{p:?}");
        assert!(all(&p, end, SHARED_ARENA_SIZE, "rw-"), "{p:?}");
        let base = arena.base().unwrap();
        for (at, len) in offsets {
            assert_eq!((read_byte(base, at), read_byte(base, at + len - 1)), (0xC3, 0xC3));
        }
        // A block that does not fit is refused, and the arena goes on.
        assert!(arena.insert(&vec![0xC3; SHARED_ARENA_SIZE]).is_none());
        assert!(arena.insert(&[0xC3]).is_some());
    }

    fn read_byte(base: u64, offset: usize) -> u8 {
        assert!(offset < SHARED_ARENA_SIZE);
        let address = usize::try_from(base).unwrap() + offset;
        // SAFETY: the arena's mapping is readable at every offset below its size (read+write
        // or read+execute; callers pass offsets inside it) and stays mapped while the test
        // holds the arena; no reference to it exists.
        unsafe { std::ptr::with_exposed_provenance::<u8>(address).read_volatile() }
    }
}
