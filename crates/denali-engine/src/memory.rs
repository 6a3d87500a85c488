//! Guest physical memory: lazily committed, contiguous host memory per VM (an anonymous
//! mapping of its own, or a slot of a [`MemoryTemplate`]'s copy-on-write mappings), reached
//! only through bounds-checked accessors. It also tracks which pages hold decoded code, so that
//! a store to code (by the guest or by the kernel) invalidates what engines cached from it.

use denali_abi::boot::{MAX_MEM_SIZE, MIN_MEM_SIZE, PAGE_SIZE};
use std::ptr::NonNull;

use memmap2::{MmapMut, MmapOptions};

use crate::slots::Slot;
use crate::template::MemoryTemplate;

/// Why guest memory could not be created.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("memory size {0} bytes is too small: the minimum is {MIN_MEM_SIZE} bytes (the register page and one page)")]
    TooSmall(u64),
    #[error("memory size {0} bytes is too large: the maximum is {MAX_MEM_SIZE} bytes (4 GiB less one page)")]
    TooLarge(u64),
    #[error("memory size {0} bytes is not a multiple of the {PAGE_SIZE}-byte page")]
    Unaligned(u64),
    #[error("cannot map {size} bytes of guest memory: {source}")]
    Map { size: u64, source: std::io::Error },
}

/// A guest access that needed an address at or above the memory size. Holds the first such
/// address, as the spec's `FAULT_ADDR` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds(pub u32);

/// Bit of a `code_pages` byte: the page holds cached code.
const CODE: u8 = 1;
/// Bit of a `code_pages` byte: the next page holds cached code.
const NEXT_CODE: u8 = 2;
/// Bit of a `code_pages` byte (a guarded memory): the page is write-protected in the host, so
/// a store to it from translated code faults. Set only with [`CODE`], and cleared (the page
/// made writable again) before anything writes the page through `GuestMemory`.
const PROTECTED: u8 = 4;
/// Most pages a guarded memory keeps write-protected at once. Each run of protected pages
/// splits the reservation's host mapping (two more mappings), and Linux caps a process near
/// 65,530 mappings: past this, protection stops for the memory (engines check every store
/// instead) rather than let a guest's scattered code use up the process's mappings.
const MAX_PROTECTED: usize = 4096;
/// Bytes of the code-page table of a guarded memory: one per page of the 32-bit space, since
/// the JIT's guard-region mode looks up a store's page before (without) any bounds check.
const GUARDED_TABLE: usize = 1 << 20;
/// Inaccessible bytes below guest address 0 and above 2^32 in a guarded memory: more than the
/// 4 bytes below (`[base + ESP - 4]` with ESP < 4) and the 3 above (a 4-byte access at
/// 2^32 - 1) that translated code can reach.
pub const GUARD_SIZE: usize = 64 << 10;

/// A memory's bytes, and what owns them. The address is taken once so that the accessors
/// do not ask the owner on every access (the interpreter's loads and stores go through here).
struct Backing {
    base: NonNull<u8>,
    len: usize,
    _owner: Owner,
}

/// Held only to keep the bytes mapped (and, for a slot, to give it back at the end).
enum Owner {
    Own {
        _map: MmapMut,
    },
    Template {
        _slot: Slot,
    },
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    Guarded {
        reservation: crate::guarded::Reservation,
    },
}

impl Backing {
    fn own(mut map: MmapMut) -> Backing {
        let (len, base) = (map.len(), NonNull::from(&mut map[..]).cast());
        Backing { base, len, _owner: Owner::Own { _map: map } }
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn guarded(reservation: crate::guarded::Reservation) -> Backing {
        let (len, base) = (reservation.len(), reservation.base());
        Backing { base, len, _owner: Owner::Guarded { reservation } }
    }

    fn template(mut slot: Slot) -> Backing {
        let bytes = slot.bytes_mut();
        let (len, base) = (bytes.len(), NonNull::from(bytes).cast());
        Backing { base, len, _owner: Owner::Template { _slot: slot } }
    }
}

// SAFETY: the bytes belong to `_owner` alone (an anonymous mapping of its own, a slot the pool
// hands to one memory at a time, or a guarded reservation of its own), which stays with them
// wherever the `Backing` goes; they
// are reached only through `&self` and `&mut self` of the `Backing`, as for a `Vec<u8>`.
unsafe impl Send for Backing {}
// SAFETY: as for `Send`: shared access gives shared slices only.
unsafe impl Sync for Backing {}

impl std::ops::Deref for Backing {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `base..base + len` is the owner's memory, mapped while `_owner` lives (the
        // mapping never moves when its owner does), and borrowed as `self` is.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Backing {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }
    }
}

/// The code-page table: one byte per page of the memory, or (guarded) of the 32-bit space.
enum Table {
    Own(Vec<u8>),
    Whole(MmapMut),
}

impl std::ops::Deref for Table {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Table::Own(bytes) => bytes,
            Table::Whole(map) => map,
        }
    }
}

impl std::ops::DerefMut for Table {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Table::Own(bytes) => bytes,
            Table::Whole(map) => map,
        }
    }
}

/// Write protection of the pages holding cached code (guarded memories): lets the JIT's
/// guard-region translations store without a code-page check, a store to code faulting
/// instead (see [`GuestMemory::protect_code_pages`]).
#[derive(Default)]
struct Protection {
    /// Pages whose [`CODE`] bit was set since the last `protect_code_pages`: every page marked
    /// as code is either [`PROTECTED`] or listed here (maybe twice, or since written).
    pending: Vec<u32>,
    /// Pages protected now.
    protected: usize,
    /// Writes that had to make a protected page writable again, since creation.
    unprotects: u64,
    /// Protection has stopped for good (the host refused a change, too many pages, or an
    /// engine gave up on it): no page is protected, and none will be.
    off: bool,
}

/// The physical memory of one VM.
pub struct GuestMemory {
    map: Backing,
    /// One byte per page: bit [`CODE`] when an engine has cached code decoded from the page,
    /// bit [`NEXT_CODE`] when the next page has; so a store whose bytes lie on a page and
    /// possibly the next needs to look at one byte only (the JIT's check).
    code_pages: Table,
    /// Pages that held cached code and have been written since the engine last looked.
    written_code_pages: Vec<u32>,
    /// Stores that hit a page marked as code, since creation.
    code_writes: u64,
    /// Guarded memories only.
    protection: Option<Protection>,
}

impl GuestMemory {
    /// Maps `size` bytes of zeroed memory. The host commits pages only when they are touched.
    pub fn new(size: u64) -> Result<GuestMemory, MemoryError> {
        GuestMemory::check_size(size)?;
        #[allow(
            clippy::cast_possible_truncation,
            reason = "size <= MAX_MEM_SIZE fits in usize on every supported host"
        )]
        let len = size as usize;
        let map = MmapOptions::new().len(len).map_anon().map_err(|source| MemoryError::Map { size, source })?;
        Ok(GuestMemory::with(Backing::own(map)))
    }

    /// Like [`GuestMemory::new`], but the `size` bytes lie at the start of a reservation of
    /// the whole 32-bit guest address space with [`GUARD_SIZE`] bytes more below and above, all
    /// inaccessible (`PROT_NONE`, no memory committed) but the guest's bytes: any host access
    /// at `base - GUARD .. base + 2^32 + GUARD` outside `0..size` faults (SIGSEGV), which lets
    /// an engine drop its inline bounds checks (the JIT's guard-region mode). Its code-page
    /// table covers every page a 32-bit address names. Linux x86-64 only: elsewhere, and
    /// when the host refuses the reservation (address-space limits), an error; callers fall
    /// back to [`GuestMemory::new`].
    pub fn guarded(size: u64) -> Result<GuestMemory, MemoryError> {
        GuestMemory::check_size(size)?;
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            #[allow(clippy::cast_possible_truncation, reason = "size <= MAX_MEM_SIZE fits in usize on x86-64")]
            let reservation =
                crate::guarded::Reservation::new(size as usize).map_err(|source| MemoryError::Map { size, source })?;
            let mut memory = GuestMemory::with(Backing::guarded(reservation));
            // A mapping of its own: zero pages until touched, no 1 MiB to clear per memory.
            let table =
                MmapOptions::new().len(GUARDED_TABLE).map_anon().map_err(|source| MemoryError::Map { size, source })?;
            memory.code_pages = Table::Whole(table);
            memory.protection = Some(Protection::default());
            Ok(memory)
        }
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        Err(MemoryError::Map { size, source: std::io::Error::from(std::io::ErrorKind::Unsupported) })
    }

    /// Whether the memory lies in a guarded reservation ([`GuestMemory::guarded`]).
    pub fn is_guarded(&self) -> bool {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        return matches!(self.map._owner, Owner::Guarded { .. });
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        false
    }

    fn check_size(size: u64) -> Result<(), MemoryError> {
        if size < u64::from(MIN_MEM_SIZE) {
            return Err(MemoryError::TooSmall(size));
        }
        if size > u64::from(MAX_MEM_SIZE) {
            return Err(MemoryError::TooLarge(size));
        }
        if !size.is_multiple_of(u64::from(PAGE_SIZE)) {
            return Err(MemoryError::Unaligned(size));
        }
        Ok(())
    }

    /// A memory holding what `template` holds: a copy-on-write slot of it where the host
    /// allows (see [`MemoryTemplate`]), else fresh memory with its pages copied in.
    pub fn from_template(template: &MemoryTemplate) -> Result<GuestMemory, MemoryError> {
        if let Some(slot) = template.slot() {
            return Ok(GuestMemory::with(Backing::template(slot)));
        }
        let mut memory = GuestMemory::new(u64::from(template.size()))?;
        for (page, bytes) in template.pages() {
            let start = *page as usize * PAGE_SIZE as usize;
            memory.map[start..start + bytes.len()].copy_from_slice(bytes);
        }
        Ok(memory)
    }

    fn with(map: Backing) -> GuestMemory {
        let pages = map.len() / PAGE_SIZE as usize;
        GuestMemory {
            map,
            code_pages: Table::Own(vec![0; pages]),
            written_code_pages: Vec::new(),
            code_writes: 0,
            protection: None,
        }
    }

    /// Whether the memory shares the pages it has not written with its template's other VMs.
    pub fn is_copy_on_write(&self) -> bool {
        matches!(self.map._owner, Owner::Template { .. })
    }

    /// Size in bytes; valid addresses are `0..size()`.
    #[inline]
    pub fn size(&self) -> u32 {
        #[allow(clippy::cast_possible_truncation, reason = "checked against MAX_MEM_SIZE in new")]
        let size = self.map.len() as u32;
        size
    }

    /// The whole of memory, for engines' fast paths and the kernel's loaders.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    #[inline]
    fn range(&self, addr: u32, len: usize) -> Result<std::ops::Range<usize>, OutOfBounds> {
        let start = addr as usize;
        let end = start + len;
        if end <= self.map.len() {
            Ok(start..end)
        } else if start >= self.map.len() {
            Err(OutOfBounds(addr))
        } else {
            Err(OutOfBounds(self.size()))
        }
    }

    /// The bytes `addr..addr+len`, or the first address outside memory.
    #[inline]
    pub fn bytes(&self, addr: u32, len: usize) -> Result<&[u8], OutOfBounds> {
        let range = self.range(addr, len)?;
        Ok(&self.map[range])
    }

    /// Up to `max` bytes starting at `addr`, fewer where memory ends: the window an instruction
    /// decoder reads from.
    pub fn fetch_window(&self, addr: u32, max: usize) -> Result<&[u8], OutOfBounds> {
        let start = addr as usize;
        if start >= self.map.len() {
            return Err(OutOfBounds(addr));
        }
        let end = (start + max).min(self.map.len());
        Ok(&self.map[start..end])
    }

    #[inline]
    pub fn read_u8(&self, addr: u32) -> Result<u8, OutOfBounds> {
        Ok(self.bytes(addr, 1)?[0])
    }

    #[inline]
    pub fn read_u16(&self, addr: u32) -> Result<u16, OutOfBounds> {
        let b = self.bytes(addr, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    #[inline]
    pub fn read_u32(&self, addr: u32) -> Result<u32, OutOfBounds> {
        let b = self.bytes(addr, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    pub fn read_u64(&self, addr: u32) -> Result<u64, OutOfBounds> {
        let b = self.bytes(addr, 8)?;
        let mut le = [0; 8];
        le.copy_from_slice(b);
        Ok(u64::from_le_bytes(le))
    }

    /// Writes `data` at `addr`, entirely or not at all.
    #[inline]
    pub fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), OutOfBounds> {
        let range = self.range(addr, data.len())?;
        if !data.is_empty() {
            self.note_write(range.start, range.end - 1);
        }
        self.map[range].copy_from_slice(data);
        Ok(())
    }

    /// [`GuestMemory::write`] of a width known when compiled: one store, no copy loop. The
    /// kernel writes `TIME_US` this way at every VM switch.
    #[inline]
    fn write_array<const N: usize>(&mut self, addr: u32, data: [u8; N]) -> Result<(), OutOfBounds> {
        let range = self.range(addr, N)?;
        self.note_write(range.start, range.end - 1);
        self.map[range].copy_from_slice(&data);
        Ok(())
    }

    #[inline]
    pub fn write_u8(&mut self, addr: u32, value: u8) -> Result<(), OutOfBounds> {
        self.write_array(addr, [value])
    }

    #[inline]
    pub fn write_u16(&mut self, addr: u32, value: u16) -> Result<(), OutOfBounds> {
        self.write_array(addr, value.to_le_bytes())
    }

    #[inline]
    pub fn write_u32(&mut self, addr: u32, value: u32) -> Result<(), OutOfBounds> {
        self.write_array(addr, value.to_le_bytes())
    }

    #[inline]
    pub fn write_u64(&mut self, addr: u32, value: u64) -> Result<(), OutOfBounds> {
        self.write_array(addr, value.to_le_bytes())
    }

    /// Fills `addr..addr+len` with `byte`, entirely or not at all.
    pub fn fill(&mut self, addr: u32, len: usize, byte: u8) -> Result<(), OutOfBounds> {
        let range = self.range(addr, len)?;
        if len != 0 {
            self.note_write(range.start, range.end - 1);
        }
        self.map[range].fill(byte);
        Ok(())
    }

    #[inline]
    fn note_write(&mut self, first: usize, last: usize) {
        let shift = PAGE_SIZE.trailing_zeros();
        let (first_page, last_page) = (first >> shift, last >> shift);
        for page in first_page..=last_page {
            if self.code_pages[page] & CODE != 0 {
                self.note_code_write(page);
            }
        }
    }

    /// A write to `page`, which holds code: out of line, as it is rare.
    #[cold]
    #[inline(never)]
    fn note_code_write(&mut self, page: usize) {
        if self.code_pages[page] & PROTECTED != 0 {
            // Before the caller writes: the write would fault in Rust code.
            self.unprotect(page);
        }
        self.code_pages[page] &= !CODE;
        if let Some(previous) = self.previous_page(page) {
            self.code_pages[previous] &= !NEXT_CODE;
        }
        self.code_writes += 1;
        #[allow(clippy::cast_possible_truncation, reason = "page numbers of a 32-bit space fit in u32")]
        self.written_code_pages.push(page as u32);
    }

    /// Records that an engine cached code decoded from `page`, so that writes to it are reported.
    pub fn mark_code_page(&mut self, page: u32) {
        let page = page as usize;
        if self.code_pages[page] & CODE == 0
            && let Some(protection) = &mut self.protection
            && !protection.off
        {
            #[allow(clippy::cast_possible_truncation, reason = "page numbers of a 32-bit space fit in u32")]
            protection.pending.push(page as u32);
        }
        self.code_pages[page] |= CODE;
        if let Some(previous) = self.previous_page(page) {
            self.code_pages[previous] |= NEXT_CODE;
        }
    }

    /// Guarded memories: write-protects (read-only in the host) every page marked as code, by
    /// any engine, that is not protected yet, so that a store to it from translated code
    /// faults where it would otherwise have to check the code-page table (the JIT's
    /// guard-region mode resumes such a fault at the store's instruction, which its
    /// interpreter then runs through [`GuestMemory::write`]). Every write made through
    /// `GuestMemory` makes its page writable again first and reports it as written code, as
    /// for any code page. Called before translated code runs, not at every mark: code and
    /// data sharing a page cost the interpreter no protection change per store.
    ///
    /// Whether every page marked as code is now write-protected: false for other memories,
    /// and for good once protection stopped ([`GuestMemory::stop_protecting_code`]; also when
    /// the host refuses a change or more than `MAX_PROTECTED` pages would be protected), after
    /// which engines must check stores against the table again.
    pub fn protect_code_pages(&mut self) -> bool {
        let Some(protection) = &mut self.protection else { return false };
        if protection.off {
            return false;
        }
        if protection.pending.is_empty() {
            return true;
        }
        let mut pending = std::mem::take(&mut protection.pending);
        pending.sort_unstable();
        pending.dedup();
        pending.retain(|&page| self.code_pages[page as usize] & (CODE | PROTECTED) == CODE);
        let mut protected = protection.protected;
        let mut ok = protected + pending.len() <= MAX_PROTECTED;
        // One change per run of adjacent pages.
        let mut runs = pending.chunk_by(|a, b| a + 1 == *b);
        while ok && let Some(run) = runs.next() {
            ok = self.set_writable(run[0] as usize, run.len(), false);
            if ok {
                for &page in run {
                    self.code_pages[page as usize] |= PROTECTED;
                }
                protected += run.len();
            }
        }
        pending.clear();
        if let Some(protection) = &mut self.protection {
            protection.protected = protected;
            // The allocation, for the next pages.
            protection.pending = pending;
        }
        if !ok {
            self.stop_protecting_code();
        }
        ok
    }

    /// Makes every page writable again and stops protecting code for good (no-op for a
    /// memory that does not): for an engine that finds protection costs more than it saves
    /// (code and data written again and again on one page: a fault and two protection changes
    /// per write), and after the host refused a change.
    pub fn stop_protecting_code(&mut self) {
        let Some(protection) = &mut self.protection else { return };
        if protection.off {
            return;
        }
        protection.off = true;
        protection.pending = Vec::new();
        if protection.protected == 0 {
            return;
        }
        protection.protected = 0;
        // One change over the whole memory: it merges the host's mappings and never splits
        // one, so it does not fail for want of mappings.
        let pages = self.map.len() / PAGE_SIZE as usize;
        assert!(self.set_writable(0, pages, true), "cannot make guest memory writable again");
        for byte in &mut self.code_pages[..pages] {
            *byte &= !PROTECTED;
        }
    }

    /// How many writes made a write-protected page writable again, since creation (each cost
    /// a protection change, and the page's protection another when code is cached from it
    /// again).
    pub fn code_unprotects(&self) -> u64 {
        self.protection.as_ref().map_or(0, |p| p.unprotects)
    }

    /// Makes protected `page` writable (before a write to it).
    fn unprotect(&mut self, page: usize) {
        if self.set_writable(page, 1, true) {
            self.code_pages[page] &= !PROTECTED;
            if let Some(protection) = &mut self.protection {
                protection.protected -= 1;
                protection.unprotects += 1;
            }
        } else {
            // Out of host mappings (the change splits one): all pages writable in one change.
            self.stop_protecting_code();
        }
    }

    /// Sets the host protection of `pages` pages from `page` on (read-only or read+write);
    /// whether it could. Guarded memories only.
    ///
    /// Why this is sound with respect to other threads: a guarded memory belongs to one VM,
    /// run on one thread at a time, and its protection changes only through `&mut self`, so
    /// no other thread accesses its pages meanwhile (another VM's memory is another
    /// reservation); a fault on a protected page from that VM's translated code is resumed by
    /// the JIT's handler on the thread that runs it.
    fn set_writable(&self, page: usize, pages: usize, writable: bool) -> bool {
        let page_size = PAGE_SIZE as usize;
        match &self.map._owner {
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            Owner::Guarded { reservation } => {
                reservation.set_writable(page * page_size, pages * page_size, writable).is_ok()
            }
            _ => false,
        }
    }

    /// The page whose table byte also flags `page`: the one before, and for page 0 of a table
    /// covering the whole 32-bit space the last (a store at 2^32 - 2 wraps to address 0 in the
    /// guest; the JIT's guard-region mode checks the byte of its first page only).
    fn previous_page(&self, page: usize) -> Option<usize> {
        match page.checked_sub(1) {
            Some(previous) => Some(previous),
            None => (self.code_pages.len() == GUARDED_TABLE).then_some(GUARDED_TABLE - 1),
        }
    }

    /// True when a page holding cached code was written since the last `take_written_code_pages`.
    #[inline]
    pub fn code_was_written(&self) -> bool {
        !self.written_code_pages.is_empty()
    }

    /// How many times a store has hit a page marked as code, since creation: an engine that
    /// shares the memory with another engine (the JIT and its fallback interpreter, which takes
    /// `take_written_code_pages`) compares it to notice such stores, then asks `is_code_page`.
    pub fn code_write_count(&self) -> u64 {
        self.code_writes
    }

    /// Whether `page` is still marked as holding cached code (a store to it clears the mark).
    pub fn is_code_page(&self, page: u32) -> bool {
        self.code_pages.get(page as usize).is_some_and(|b| b & CODE != 0)
    }

    /// Host address of guest address 0, for translated code that accesses memory directly.
    ///
    /// Invariants the caller must keep: it accesses only `base + a .. base + a + n` with
    /// `a + n <= size()`, and only while it holds `&mut self` (or `&self` for reads); every store
    /// it makes that touches a page holding cached code must instead go through
    /// [`GuestMemory::write`] (so the write is recorded): a store of at most `PAGE_SIZE` bytes
    /// may be made directly when the `code_page_table` byte of its first page is zero. On a
    /// guarded memory whose [`GuestMemory::protect_code_pages`] returned true, a store to a
    /// page holding cached code faults (it is read-only): only code whose faults are resumed
    /// (the JIT's guard-region mode) may store without looking at the table, and never Rust
    /// code. The pointer stays valid for the life of `self`: the mapping never moves.
    pub fn host_base(&mut self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The table of one byte per page (`size() / PAGE_SIZE` bytes, or 2^20 for a guarded
    /// memory: every page of the 32-bit space), non-zero for pages an engine
    /// cached code from and for the pages just before them. Translated stores read it to decide
    /// whether they may write directly: a store of at most a page's bytes starting on a page
    /// whose byte is zero touches no cached code.
    /// Valid while `self` lives and is not otherwise borrowed; readers must not write it.
    pub fn code_page_table(&self) -> *const u8 {
        self.code_pages.as_ptr()
    }

    /// The pages holding cached code that were written since the last call; engines drop what
    /// they cached from them.
    pub fn take_written_code_pages(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.written_code_pages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(GuestMemory::new(0), Err(MemoryError::TooSmall(0))));
        assert!(matches!(GuestMemory::new(0x1_0000_0000), Err(MemoryError::TooLarge(_))));
        assert!(matches!(GuestMemory::new(0x2001), Err(MemoryError::Unaligned(_))));
    }

    #[test]
    fn accesses_straddling_the_end_fault_at_the_first_byte_outside() {
        let mut mem = GuestMemory::new(0x2000).unwrap();
        assert_eq!(mem.read_u32(0x1FFC), Ok(0));
        assert_eq!(mem.read_u32(0x1FFE), Err(OutOfBounds(0x2000)));
        assert_eq!(mem.read_u8(0xFFFF_FFFF), Err(OutOfBounds(0xFFFF_FFFF)));
        assert_eq!(mem.write_u32(0x1FFE, 0xAABBCCDD), Err(OutOfBounds(0x2000)));
        // Nothing of a faulting write lands.
        assert_eq!(mem.read_u16(0x1FFE), Ok(0));
    }

    #[test]
    fn the_page_before_code_is_flagged_for_stores_that_may_reach_it() {
        let mut mem = GuestMemory::new(0x10000).unwrap();
        mem.mark_code_page(2);
        let table = |mem: &GuestMemory, page: usize| mem.code_pages[page];
        assert_ne!(table(&mem, 1), 0, "a store starting on page 1 may reach page 2");
        assert!(!mem.is_code_page(1) && mem.is_code_page(2));
        // A store to page 1 alone is not a code write.
        mem.write_u32(0x1000, 7).unwrap();
        assert_eq!(mem.code_write_count(), 0);
        assert_ne!(table(&mem, 1), 0);
        // A store reaching page 2 is, and clears both marks.
        mem.write_u32(0x1FFE, 7).unwrap();
        assert_eq!(mem.code_write_count(), 1);
        assert_eq!((table(&mem, 1), table(&mem, 2)), (0, 0));
        // Page 0 has no page before it.
        mem.mark_code_page(0);
        assert!(mem.is_code_page(0));
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn guarded_memory_behaves_as_memory_and_its_table_wraps() {
        let mut mem = GuestMemory::guarded(0x4000).unwrap();
        assert!(mem.is_guarded() && !GuestMemory::new(0x4000).unwrap().is_guarded());
        assert_eq!(mem.size(), 0x4000);
        mem.write_u32(0x3FFC, 0xAABB_CCDD).unwrap();
        assert_eq!(mem.read_u32(0x3FFC), Ok(0xAABB_CCDD));
        assert_eq!(mem.read_u32(0x3FFE), Err(OutOfBounds(0x4000)));
        assert!(matches!(GuestMemory::guarded(0x2001), Err(MemoryError::Unaligned(_))));
        // A store at 2^32 - 2 wraps to page 0 in the guest: the last page's byte flags it.
        mem.mark_code_page(0);
        assert_eq!(mem.code_pages.len(), GUARDED_TABLE);
        assert_ne!(mem.code_pages[GUARDED_TABLE - 1], 0);
        mem.write_u8(0, 1).unwrap();
        assert_eq!(mem.code_pages[GUARDED_TABLE - 1], 0);
    }

    /// The host protection (`/proc/self/maps`: "rw-p", "r--p", "---p") of guest page `page`.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn host_protection(mem: &mut GuestMemory, page: usize) -> String {
        let addr = mem.host_base() as usize + page * PAGE_SIZE as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (range, perms) = (fields.next().unwrap(), fields.next().unwrap());
            let (start, end) = range.split_once('-').unwrap();
            let (start, end) = (usize::from_str_radix(start, 16).unwrap(), usize::from_str_radix(end, 16).unwrap());
            if (start..end).contains(&addr) {
                return perms.to_string();
            }
        }
        panic!("{addr:#x} is not mapped");
    }

    /// Code pages of a guarded memory are read-only in the host once protected, and every write
    /// through the memory (a store, `fill`, a write straddling into one) makes its page
    /// writable again first (without that, the write below dies of SIGSEGV) and reports it.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn guarded_code_pages_are_write_protected_until_written() {
        let mut mem = GuestMemory::guarded(0x10000).unwrap();
        mem.mark_code_page(2);
        mem.mark_code_page(3);
        mem.mark_code_page(5);
        assert_eq!(host_protection(&mut mem, 2), "rw-p", "marking alone protects nothing");
        assert!(mem.protect_code_pages());
        for (page, perms) in [(1, "rw-p"), (2, "r--p"), (3, "r--p"), (4, "rw-p"), (5, "r--p"), (6, "rw-p")] {
            assert_eq!(host_protection(&mut mem, page), perms, "page {page}");
        }
        // Reads are unaffected.
        assert_eq!(mem.read_u32(0x2000), Ok(0));
        mem.write_u32(0x2FFE, 0xAABB_CCDD).unwrap(); // straddles pages 2 and 3
        assert_eq!(mem.read_u32(0x2FFE), Ok(0xAABB_CCDD));
        assert_eq!((host_protection(&mut mem, 2), host_protection(&mut mem, 3)), ("rw-p".into(), "rw-p".into()));
        assert_eq!(mem.take_written_code_pages(), vec![2, 3]);
        mem.fill(0x5000, 16, 0xCC).unwrap();
        assert_eq!(host_protection(&mut mem, 5), "rw-p");
        assert_eq!((mem.code_write_count(), mem.code_unprotects()), (3, 3));
        // Marked again, protected again.
        mem.mark_code_page(2);
        assert!(mem.protect_code_pages());
        assert_eq!(host_protection(&mut mem, 2), "r--p");
        // Stopped: everything writable, nothing protected again.
        mem.stop_protecting_code();
        assert_eq!(host_protection(&mut mem, 2), "rw-p");
        mem.mark_code_page(7);
        assert!(!mem.protect_code_pages());
        assert_eq!(host_protection(&mut mem, 7), "rw-p");
        mem.write_u8(0x2000, 1).unwrap();
        assert_eq!(mem.code_unprotects(), 3);
        // Other memories protect nothing.
        let mut plain = GuestMemory::new(0x4000).unwrap();
        plain.mark_code_page(1);
        assert!(!plain.protect_code_pages());
    }

    /// More code pages than a memory may keep protected: protection stops, all pages writable.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn guarded_memory_with_too_many_code_pages_stops_protecting() {
        let pages = 2 * MAX_PROTECTED as u32 + 2;
        let mut mem = GuestMemory::guarded(u64::from(pages) * u64::from(PAGE_SIZE)).unwrap();
        mem.mark_code_page(0);
        assert!(mem.protect_code_pages());
        assert_eq!(host_protection(&mut mem, 0), "r--p");
        // Every other page: each its own run.
        for page in (2..pages).step_by(2) {
            mem.mark_code_page(page);
        }
        assert!(!mem.protect_code_pages());
        assert_eq!((host_protection(&mut mem, 0), host_protection(&mut mem, 2)), ("rw-p".into(), "rw-p".into()));
        mem.write_u8(0, 1).unwrap();
        mem.write_u8(0x2000, 1).unwrap();
    }

    #[test]
    fn writes_to_code_pages_are_reported_once() {
        let mut mem = GuestMemory::new(0x4000).unwrap();
        mem.mark_code_page(2);
        mem.write_u32(0x1FFE, 1).unwrap(); // pages 1 and 2
        assert!(mem.code_was_written());
        assert_eq!(mem.take_written_code_pages(), vec![2]);
        mem.write_u32(0x2000, 1).unwrap();
        assert!(!mem.code_was_written());
    }
}
