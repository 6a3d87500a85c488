//! The reservation behind a guarded [`GuestMemory`](crate::GuestMemory) (Linux x86-64): the
//! whole 32-bit guest address space and a guard on each side, inaccessible except the guest's
//! bytes.

use crate::memory::GUARD_SIZE as GUARD;
use rustix::mm::{MapFlags, MprotectFlags, ProtFlags, mmap_anonymous, mprotect, munmap};
use std::ptr::NonNull;

/// Bytes of the 32-bit guest address space.
const SPACE: usize = 1 << 32;

/// `GUARD + 2^32 + GUARD` bytes mapped `PROT_NONE` with `MAP_NORESERVE` (address space only:
/// nothing is committed or charged), of which the `len` bytes from `GUARD` on are read+write.
/// Unmapped when dropped.
pub(crate) struct Reservation {
    start: NonNull<u8>,
    len: usize,
}

impl Reservation {
    /// Reserves the space and makes its first `len` guest bytes (at most 2^32) read+write.
    pub fn new(len: usize) -> std::io::Result<Reservation> {
        assert!(len <= SPACE && len.is_multiple_of(4096));
        let total = GUARD + SPACE + GUARD;
        // SAFETY: a new anonymous private mapping at an address the kernel chooses: it
        // overlaps nothing Rust owns.
        let start = unsafe {
            mmap_anonymous(std::ptr::null_mut(), total, ProtFlags::empty(), MapFlags::PRIVATE | MapFlags::NORESERVE)
        }?;
        let start = NonNull::new(start.cast::<u8>()).ok_or(std::io::ErrorKind::Other)?;
        let reservation = Reservation { start, len };
        // SAFETY: `GUARD .. GUARD + len` lies inside the mapping just made, which nothing else
        // refers to yet.
        unsafe { mprotect(reservation.base().as_ptr().cast(), len, MprotectFlags::READ | MprotectFlags::WRITE) }?;
        Ok(reservation)
    }

    /// Host address of guest address 0.
    pub fn base(&self) -> NonNull<u8> {
        // SAFETY: GUARD is inside the mapping (of GUARD + 2^32 + GUARD bytes).
        unsafe { self.start.add(GUARD) }
    }

    /// The guest's bytes (read+write from `base` on, but for pages made read-only).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Makes the guest bytes `offset .. offset + len` (whole pages, inside `0 .. len()`)
    /// read-only, or read+write again.
    pub fn set_writable(&self, offset: usize, len: usize, writable: bool) -> std::io::Result<()> {
        assert!(offset.is_multiple_of(4096) && len.is_multiple_of(4096) && offset + len <= self.len);
        let flags = if writable { MprotectFlags::READ | MprotectFlags::WRITE } else { MprotectFlags::READ };
        // SAFETY: whole pages of the guest's bytes, inside the mapping this value owns; only
        // their access changes (nothing is unmapped or moved). Rust code writes them only
        // through `GuestMemory`, which makes a page writable again before it writes it.
        unsafe { mprotect(self.base().as_ptr().add(offset).cast(), len, flags) }?;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the whole mapping `new` made; the memory that lent out slices of it is being
        // dropped with it, so nothing refers to it any more.
        let _ = unsafe { munmap(self.start.as_ptr().cast(), GUARD + SPACE + GUARD) };
    }
}

// SAFETY: the mapping belongs to this value alone (moved with it, unmapped by its drop); the
// bytes are reached through the `GuestMemory` that owns it, as for an `MmapMut`.
unsafe impl Send for Reservation {}
// SAFETY: as for `Send`; `&Reservation` gives out only addresses.
unsafe impl Sync for Reservation {}
