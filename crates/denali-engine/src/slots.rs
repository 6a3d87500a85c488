//! Where the memories made from a [`MemoryTemplate`](crate::MemoryTemplate) live: slots of
//! large private copy-on-write mappings of one file that holds the template's initial memory
//! many times over.
//!
//! A memory of its own per VM (one `mmap` at boot, one `munmap` at exit) cost more than the rest
//! of booting a small VM, and one file mapping per VM ran into Linux's cap on mappings per
//! process (`vm.max_map_count`, 65530 by default): file mappings of the same offsets never
//! merge with their neighbours. So the file holds `per_chunk` copies of the template back to
//! back, and a *chunk* is one private mapping of the whole file, carved into `per_chunk` slots,
//! slot `i` over copy `i`. Pages a VM only reads are its copy's pages in the host's page cache,
//! shared by every VM that ever gets slot `i` of any chunk; the host copies a page when its VM
//! first writes it. 100,000 VMs of 64 KiB take 391 mappings, and the page cache holds at most 256 copies.
//!
//! On Linux a slot is reused: `MADV_DONTNEED` on a private file mapping drops the pages its last
//! VM wrote, so the slot reads as the file again, without a new mapping. Elsewhere that is not
//! guaranteed, so a chunk there is one slot, never reused, and unmapped with its VM (as a
//! mapping per VM was).
//!
//! Copy `i` of the file is written when slot `i` is first handed out, so a small fleet pays
//! for the copies it uses, not for `per_chunk` of them. Writing the file while chunks map it is
//! sound because no mapping has read copy `i` before then: only a VM given slot `i` reads it.

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use memmap2::{MmapMut, MmapOptions};

use denali_abi::boot::PAGE_SIZE;

/// Bytes one chunk maps, where slots are reused: large enough that a fleet needs few
/// mappings, small enough that a template's copies (written as slots are first used) stay cheap.
const CHUNK_BYTES: usize = 16 << 20;

/// The slots of one template.
pub(crate) struct SlotPool {
    file: File,
    /// Bytes per slot: the template's memory size.
    size: usize,
    /// Slots per chunk, and copies of the template in `file`.
    per_chunk: usize,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    /// The chunk fresh slots come from, and its next never used slot.
    current: Option<(Arc<Chunk>, usize)>,
    /// Slots whose VM has gone, reset to the template (Linux only).
    free: Vec<(Arc<Chunk>, usize)>,
    /// Copies of the template written to the file so far: copies `0..written` (slots are first
    /// handed out in order).
    written: usize,
}

/// One private mapping of the whole file.
struct Chunk {
    map: MmapMut,
    /// Host address of the mapping (taken once, so slots need no `&mut` of `map`).
    base: usize,
    _lease: CowLease,
}

/// One VM's memory: slot `index` of `chunk`, held by one `GuestMemory` at a time.
pub(crate) struct Slot {
    pool: Arc<SlotPool>,
    chunk: Arc<Chunk>,
    index: usize,
}

impl SlotPool {
    /// A pool over `file`, an empty file that only the pool will write.
    pub fn new(file: File, size: usize) -> SlotPool {
        let per_chunk = if cfg!(target_os = "linux") { (CHUNK_BYTES / size).max(1) } else { 1 };
        SlotPool { file, size, per_chunk, state: Mutex::default() }
    }

    /// A slot holding the template (whose non-zero pages are `pages`), or `None` when the file
    /// cannot be grown or written or the mapping budget is spent (the caller copies instead).
    pub fn take(self: &Arc<SlotPool>, pages: &[(u32, Box<[u8]>)]) -> Option<Slot> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((chunk, index)) = state.free.pop() {
            return Some(Slot { pool: Arc::clone(self), chunk, index });
        }
        let (chunk, index) = match state.current.take() {
            Some((chunk, next)) if next < self.per_chunk => (chunk, next),
            _ => (self.map_chunk()?, 0),
        };
        if index == state.written {
            // The first VM in slot `index` of any chunk: its copy is not in the file yet.
            if self.write_copy(index, pages).is_err() {
                state.current = Some((chunk, index));
                return None;
            }
            state.written += 1;
        }
        if index + 1 < self.per_chunk {
            state.current = Some((Arc::clone(&chunk), index + 1));
        }
        Some(Slot { pool: Arc::clone(self), chunk, index })
    }

    fn map_chunk(&self) -> Option<Arc<Chunk>> {
        let len = self.per_chunk * self.size;
        let want = u64::try_from(len).ok()?;
        if self.file.metadata().ok()?.len() != want {
            self.file.set_len(want).ok()?;
        }
        let lease = CowLease::take()?;
        // SAFETY: memmap2 calls file mappings unsafe because the file may change under the
        // mapping. This file is an unlinked temporary that only this pool writes, and only
        // copies no slot has been handed out over (see the module comment); the mapping is
        // private, so a VM's writes go to its own copies and never reach the file. The file is
        // `per_chunk * size` bytes long (set above), so no page of the mapping lies past its end.
        let mut map = unsafe { MmapOptions::new().len(len).map_copy(&self.file) }.ok()?;
        let base = map.as_mut_ptr() as usize;
        Some(Arc::new(Chunk { map, base, _lease: lease }))
    }

    /// Writes copy `copy` of the template into the file.
    fn write_copy(&self, copy: usize, pages: &[(u32, Box<[u8]>)]) -> std::io::Result<()> {
        for (page, bytes) in pages {
            let at = copy * self.size + *page as usize * PAGE_SIZE as usize;
            write_at(&self.file, bytes, u64::try_from(at).unwrap_or(u64::MAX))?;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, at)
}

#[cfg(windows)]
fn write_at(file: &File, mut bytes: &[u8], mut at: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, bytes, at)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
        at += n as u64;
    }
    Ok(())
}

impl Slot {
    fn offset(&self) -> usize {
        self.index * self.pool.size
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the range is slot `index` of the chunk's mapping (`index < per_chunk`, the
        // mapping is `per_chunk * size` bytes), which stays mapped while this slot holds the
        // `Arc`. The pool hands a slot to one `Slot` at a time and takes it back only when that
        // `Slot` is dropped, and `&mut self` makes this the only borrow of its bytes.
        unsafe { std::slice::from_raw_parts_mut((self.chunk.base + self.offset()) as *mut u8, self.pool.size) }
    }
}

impl Chunk {
    /// Drops the pages written in `offset..offset + len`, so the range reads as the file again;
    /// false where that is not promised (off Linux) or the host refused.
    fn reset(&self, offset: usize, len: usize) -> bool {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: MADV_DONTNEED drops the written pages of the range, which then reads as the
            // file again (Linux, private file mappings). The caller gives back the slot over
            // the range, so nothing borrows its bytes.
            unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) }.is_ok()
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (&self.map, offset, len);
            false
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // A slot that could not be reset would show the next VM this one's pages: never reuse it.
        if self.chunk.reset(self.offset(), self.pool.size) {
            let mut state = self.pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.free.push((Arc::clone(&self.chunk), self.index));
        }
    }
}

/// Copy-on-write mappings (chunks) alive in this process.
static COW_MAPPINGS: AtomicUsize = AtomicUsize::new(0);

/// One of the process's copy-on-write mappings; dropping it returns it to the budget.
struct CowLease(());

impl CowLease {
    fn take() -> Option<CowLease> {
        let taken = COW_MAPPINGS.fetch_add(1, Ordering::Relaxed);
        if taken >= cow_mapping_budget() {
            COW_MAPPINGS.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(CowLease(()))
    }
}

impl Drop for CowLease {
    fn drop(&mut self) {
        COW_MAPPINGS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many copy-on-write mappings the process may hold: a quarter of Linux's per-process
/// mapping cap, leaving the rest for everything else (a chunk between two other mappings can
/// isolate a VM of anonymous memory, which then needs a mapping of its own).
fn cow_mapping_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        if cfg!(target_os = "linux") {
            std::fs::read_to_string("/proc/sys/vm/max_map_count")
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .map_or(16_382, |cap| cap / 4)
        } else {
            usize::MAX
        }
    })
}
