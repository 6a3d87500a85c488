//! A VM's initial memory laid out once, for every VM that boots from the same image.
//!
//! Booting from a template copies nothing the VM does not write: where the host allows it, a
//! VM's memory is a slot of a private copy-on-write mapping of a file holding the template
//! (`slots.rs`). Pages a VM only reads stay in the host's page cache, shared with the template's
//! other VMs; the host copies a page when a VM first writes it, and that copy is the VM's alone.
//! The memory is contiguous, so engines that access memory directly at
//! `GuestMemory::host_base` work unchanged. When no file can be made (or the mapping budget is
//! spent), a VM gets anonymous memory with the template's non-zero pages copied in: the same
//! contents, no sharing.

use std::fs::File;
use std::sync::{Arc, OnceLock};

use denali_abi::boot::PAGE_SIZE;

use crate::GuestMemory;
use crate::slots::{Slot, SlotPool};

/// The initial contents of a guest memory, shared by the VMs that boot from it.
pub struct MemoryTemplate {
    size: u32,
    /// Every page that is not all zero: its guest page number and its bytes.
    pages: Vec<(u32, Box<[u8]>)>,
    /// Where the memories made from it live, made at the first; `None` inside when no file
    /// could be made.
    slots: OnceLock<Option<Arc<SlotPool>>>,
}

impl std::fmt::Debug for MemoryTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTemplate")
            .field("size", &self.size)
            .field("non_zero_pages", &self.pages.len())
            .field("shared", &self.slots.get().map(Option::is_some))
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
        MemoryTemplate { size: memory.size(), pages, slots: OnceLock::new() }
    }

    /// Size in bytes of the memories made from it.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Whether VMs can share its pages (a backing file could be made); when not, each copies them.
    pub fn is_shareable(&self) -> bool {
        self.pool().is_some()
    }

    fn pool(&self) -> Option<&Arc<SlotPool>> {
        self.slots
            .get_or_init(|| backing_file().ok().map(|file| Arc::new(SlotPool::new(file, self.size as usize))))
            .as_ref()
    }

    /// A copy-on-write slot holding the template, while the host allows one.
    pub(crate) fn slot(&self) -> Option<Slot> {
        self.pool()?.take(&self.pages)
    }

    /// The non-zero pages, for memories that copy them.
    pub(crate) fn pages(&self) -> &[(u32, Box<[u8]>)] {
        &self.pages
    }
}

/// A new unlinked, empty file for a template's copies.
fn backing_file() -> std::io::Result<File> {
    // On Linux /dev/shm is memory; elsewhere the temporary directory's page cache does the same.
    let shm = std::path::Path::new("/dev/shm");
    if cfg!(target_os = "linux") && shm.is_dir() {
        tempfile::tempfile_in(shm).or_else(|_| tempfile::tempfile())
    } else {
        tempfile::tempfile()
    }
}
