//! Which pages of a guest memory the host holds in RAM, and whether each is the VM's own copy
//! or a page it shares (a template's page in the page cache). For measuring what VMs cost and
//! testing copy-on-write sharing; Linux only (`/proc/self/pagemap`), `None` elsewhere.

use crate::GuestMemory;

/// Resident pages of one guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Residency {
    /// Pages only this VM maps: ones it wrote (or zero pages it touched, for anonymous memory).
    pub private: usize,
    /// Pages backed by a shared file: a template's pages the VM has only read.
    pub shared: usize,
}

/// An open `/proc/self/pagemap`, which reads the residency of any mapping of this process.
pub struct PageMap {
    #[cfg(target_os = "linux")]
    file: std::fs::File,
}

/// The host page size this reader assumes (x86-64 and most Linux hosts).
#[cfg(target_os = "linux")]
const HOST_PAGE: usize = 4096;

impl PageMap {
    /// `None` where the host has no pagemap.
    pub fn open() -> Option<PageMap> {
        #[cfg(target_os = "linux")]
        {
            std::fs::File::open("/proc/self/pagemap").ok().map(|file| PageMap { file })
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// How many of `memory`'s pages are resident, and how.
    pub fn residency(&self, memory: &GuestMemory) -> Option<Residency> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::FileExt;
            let bytes = memory.as_slice();
            let first = bytes.as_ptr() as usize / HOST_PAGE;
            let pages = bytes.len().div_ceil(HOST_PAGE);
            let mut entries = vec![0u8; pages * 8];
            self.file.read_exact_at(&mut entries, (first * 8) as u64).ok()?;
            let mut residency = Residency::default();
            for entry in entries.chunks_exact(8) {
                let mut le = [0; 8];
                le.copy_from_slice(entry);
                let entry = u64::from_le_bytes(le);
                // Bit 63: present in RAM; bit 61: a file page or shared anonymous page.
                if entry & 1 << 63 != 0 {
                    if entry & 1 << 61 != 0 {
                        residency.shared += 1;
                    } else {
                        residency.private += 1;
                    }
                }
            }
            Some(residency)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = memory;
            None
        }
    }
}
