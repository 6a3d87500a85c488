//! A VM's initial memory laid out once, for every VM that boots from the same image.
//!
//! Booting from a template copies nothing the VM does not write: where the host allows it, a
//! VM's memory is a private copy-on-write mapping of the template's file (memmap2's
//! `map_copy`: `MAP_PRIVATE` on Unix, `FILE_MAP_COPY` on Windows). Pages a VM only reads stay
//! one copy in the host's page cache, shared by every VM of the template; the host copies a
//! page when a VM first writes it, and that copy is the VM's alone. The mapping is contiguous,
//! so engines that access memory directly at `GuestMemory::host_base` work unchanged.
//!
//! Linux caps the mappings of a process (`vm.max_map_count`, 65530 by default), and file
//! mappings of the same offsets never merge with their neighbours, so at most a quarter of the
//! cap of VMs share a template at once. The VMs past that, and every VM when the file cannot be
//! made, get anonymous memory with the template's non-zero pages copied in: the same contents,
//! no sharing, and usually no mapping of their own (adjacent anonymous mappings merge; one
//! between two file mappings cannot, hence a quarter: each sharing VM may isolate one copying
//! VM, and half the cap stays for everything else).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use denali_abi::boot::PAGE_SIZE;
use memmap2::{MmapMut, MmapOptions};

use crate::GuestMemory;

/// The initial contents of a guest memory, shared by the VMs that boot from it.
pub struct MemoryTemplate {
    size: u32,
    /// Every page that is not all zero: its guest page number and its bytes.
    pages: Vec<(u32, Box<[u8]>)>,
    /// The whole memory as an unlinked file that nobody writes after `new`, if one could be
    /// made.
    file: Option<File>,
}

impl std::fmt::Debug for MemoryTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTemplate")
            .field("size", &self.size)
            .field("non_zero_pages", &self.pages.len())
            .field("shared", &self.file.is_some())
            .finish()
    }
}

impl MemoryTemplate {
    /// A template holding what `memory` holds now (its code-page marks are not kept).
    pub fn new(memory: &GuestMemory) -> MemoryTemplate {
        let page = PAGE_SIZE as usize;
        let pages: Vec<(u32, Box<[u8]>)> = memory
            .as_slice()
            .chunks(page)
            .enumerate()
            .filter(|(_, bytes)| bytes.iter().any(|b| *b != 0))
            .map(|(n, bytes)| {
                #[allow(clippy::cast_possible_truncation, reason = "page numbers of a 32-bit space fit in u32")]
                let n = n as u32;
                (n, Box::from(bytes))
            })
            .collect();
        let file = backing_file(memory.size(), &pages).ok();
        MemoryTemplate { size: memory.size(), pages, file }
    }

    /// Size in bytes of the memories made from it.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Whether VMs can share its pages (a backing file exists); when not, each copies them.
    pub fn is_shareable(&self) -> bool {
        self.file.is_some()
    }

    /// A private copy-on-write mapping of the file, while the mapping budget allows one.
    pub(crate) fn map_private(&self) -> Option<(MmapMut, CowLease)> {
        let file = self.file.as_ref()?;
        let lease = CowLease::take()?;
        // SAFETY: memmap2 calls file mappings unsafe because the file may change under the
        // mapping. This file is an unlinked temporary that `new` wrote in full before any
        // mapping existed and that nothing writes afterwards (the template holds the only
        // handle and offers no way to write it); the mapping is private, so the VM's own writes
        // go to copies and never reach the file. Its length is `size`, set by `backing_file`,
        // so no page of the mapping lies past the end of the file.
        let map = unsafe { MmapOptions::new().len(self.size as usize).map_copy(file) }.ok()?;
        Some((map, lease))
    }

    /// The non-zero pages, for memories that copy them.
    pub(crate) fn pages(&self) -> &[(u32, Box<[u8]>)] {
        &self.pages
    }
}

/// Writes the initial memory into a new unlinked file, holes where it is zero.
fn backing_file(size: u32, pages: &[(u32, Box<[u8]>)]) -> std::io::Result<File> {
    // On Linux /dev/shm is memory; elsewhere the temporary directory's page cache does the same.
    let shm = std::path::Path::new("/dev/shm");
    let mut file = if cfg!(target_os = "linux") && shm.is_dir() {
        tempfile::tempfile_in(shm).or_else(|_| tempfile::tempfile())?
    } else {
        tempfile::tempfile()?
    };
    file.set_len(u64::from(size))?;
    for (page, bytes) in pages {
        file.seek(SeekFrom::Start(u64::from(*page) * u64::from(PAGE_SIZE)))?;
        file.write_all(bytes)?;
    }
    file.flush()?;
    Ok(file)
}

/// Copy-on-write mappings alive in this process.
static COW_MAPPINGS: AtomicUsize = AtomicUsize::new(0);

/// One of the process's copy-on-write mappings; dropping it returns it to the budget.
#[derive(Debug)]
pub(crate) struct CowLease(());

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
/// mapping cap (see the module comment).
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
