//! The disk device (`DISK_REQUEST`): fixed-size virtual disks in host files, 4096-byte blocks,
//! asynchronous requests.
//!
//! A [`DiskImage`] is one host file (a plain file whose size is a multiple of 4096 bytes),
//! shared through an `Arc` by every VM that attaches it; one opened read-only refuses writes,
//! so many VMs can share one image safely. A VM's [`DiskDevice`] checks each request when it is
//! submitted (an error gets its final status at once), queues the valid ones with status
//! PENDING, and completes them in order when the VM polls its devices (at the next slice
//! boundary or while it idles): the data moves between guest memory and the file then, like
//! DMA, and the final status is written before DISK is raised. Completing in submission order
//! is what makes flush a barrier: every earlier write has reached the file when the flush's
//! `sync_data` runs.
//!
//! Opening an image takes an advisory lock on its file for as long as the image lives: shared
//! for a read-only image, exclusive for a writable one. So a writable disk is attached to one
//! VM of one process at a time, while any number of VMs and processes share a read-only one.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use denali_abi::status;
use denali_engine::GuestMemory;

use crate::devices::request::{DiskBlock, range_ok};

/// Bytes per disk block.
pub const BLOCK_SIZE: u32 = 4096;
/// Requests one VM may have queued; more get `QUEUE_FULL`.
pub const QUEUE_CAPACITY: usize = 32;

/// `DISK_REQUEST` operation codes (`isa-spec/blocks.txt`).
pub mod op {
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const FLUSH: u32 = 3;
    pub const INFO: u32 = 4;
}

/// Why a disk image could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{}: cannot open: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{}: size {size} is not a positive multiple of the 4096-byte block", path.display())]
    Size { path: PathBuf, size: u64 },
    #[error("{}: {blocks} blocks is more than a 32-bit block number can address", path.display())]
    TooLarge { path: PathBuf, blocks: u64 },
    /// Another open image holds a lock that conflicts: someone writes the file, or reads it
    /// while this one would write it.
    #[error("disk {} is in use: another VM or process has it open{}", path.display(), if *read_only { " for writing" } else { "" })]
    InUse { path: PathBuf, read_only: bool },
}

/// One virtual disk: a host file.
#[derive(Debug)]
pub struct DiskImage {
    file: Mutex<File>,
    blocks: u32,
    read_only: bool,
    path: PathBuf,
}

impl DiskImage {
    /// Opens an existing image; `read_only` opens the file read-only and refuses writes.
    pub fn open(path: &Path, read_only: bool) -> Result<Arc<DiskImage>, DiskError> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path).map_err(open_error(path))?;
        lock(&file, path, read_only)?;
        DiskImage::from_locked(file, path, read_only)
    }

    /// Creates (or empties) an image of `blocks` zero blocks and opens it read-write. A file
    /// in use elsewhere is refused, never emptied: the lock comes before the truncation.
    pub fn create(path: &Path, blocks: u32) -> Result<Arc<DiskImage>, DiskError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(open_error(path))?;
        lock(&file, path, false)?;
        file.set_len(0)
            .and_then(|()| file.set_len(u64::from(blocks) * u64::from(BLOCK_SIZE)))
            .map_err(open_error(path))?;
        DiskImage::from_locked(file, path, false)
    }

    fn from_locked(file: File, path: &Path, read_only: bool) -> Result<Arc<DiskImage>, DiskError> {
        let size = file.metadata().map_err(open_error(path))?.len();
        if size == 0 || !size.is_multiple_of(u64::from(BLOCK_SIZE)) || !file_is_regular(&file) {
            return Err(DiskError::Size { path: path.to_owned(), size });
        }
        let blocks = size / u64::from(BLOCK_SIZE);
        let blocks = u32::try_from(blocks).map_err(|_| DiskError::TooLarge { path: path.to_owned(), blocks })?;
        Ok(Arc::new(DiskImage { file: Mutex::new(file), blocks, read_only, path: path.to_owned() }))
    }

    pub fn blocks(&self) -> u32 {
        self.blocks
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_block(&self, block: u32, buf: &mut [u8]) -> io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.seek(SeekFrom::Start(u64::from(block) * u64::from(BLOCK_SIZE)))?;
        file.read_exact(buf)
    }

    fn write_block(&self, block: u32, data: &[u8]) -> io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.seek(SeekFrom::Start(u64::from(block) * u64::from(BLOCK_SIZE)))?;
        file.write_all(data)
    }

    fn flush(&self) -> io::Result<()> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner).sync_data()
    }
}

fn open_error(path: &Path) -> impl Fn(io::Error) -> DiskError + '_ {
    move |source| DiskError::Open { path: path.to_owned(), source }
}

/// Locks `file` for as long as it is open: shared to read, exclusive to write.
fn lock(file: &File, path: &Path, read_only: bool) -> Result<(), DiskError> {
    match if read_only { file.try_lock_shared() } else { file.try_lock() } {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(DiskError::InUse { path: path.to_owned(), read_only }),
        // A file system without locks (some network ones) still serves the disk, unguarded.
        Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
        Err(TryLockError::Error(e)) => Err(open_error(path)(e)),
    }
}

fn file_is_regular(file: &File) -> bool {
    file.metadata().is_ok_and(|m| m.is_file())
}

/// The disks attached to one VM and its queue of accepted requests.
#[derive(Debug, Default)]
pub struct DiskDevice {
    disks: Vec<Arc<DiskImage>>,
    queue: VecDeque<DiskBlock>,
}

impl DiskDevice {
    /// Attaches `disk` as the next index; returns that index.
    pub fn attach(&mut self, disk: Arc<DiskImage>) -> u32 {
        self.disks.push(disk);
        u32::try_from(self.disks.len() - 1).unwrap_or(u32::MAX)
    }

    /// Whether requests are waiting for completion.
    pub fn busy(&self) -> bool {
        !self.queue.is_empty()
    }

    /// `DISK_REQUEST`: checks `request` and queues it (status PENDING) or gives its error.
    pub(crate) fn submit(&mut self, memory: &mut GuestMemory, request: DiskBlock) {
        let status = self.check(memory, &request).unwrap_or_else(|| {
            if self.queue.len() >= QUEUE_CAPACITY {
                status::QUEUE_FULL
            } else {
                self.queue.push_back(request);
                status::PENDING
            }
        });
        request.set_status(memory, status);
    }

    /// The error status of a request, or `None` if it can be queued.
    fn check(&self, memory: &GuestMemory, request: &DiskBlock) -> Option<u32> {
        let Some(disk) = usize::try_from(request.disk).ok().and_then(|i| self.disks.get(i)) else {
            return Some(status::NO_DEVICE);
        };
        match request.op {
            op::READ | op::WRITE => {
                if request.op == op::WRITE && disk.read_only() {
                    Some(status::READ_ONLY)
                } else if !range_ok(memory, request.addr, BLOCK_SIZE) {
                    Some(status::BAD_ADDR)
                } else if request.block >= disk.blocks() {
                    Some(status::OUT_OF_RANGE)
                } else {
                    None
                }
            }
            op::FLUSH | op::INFO => None,
            _ => Some(status::BAD_OP),
        }
    }

    /// Completes every queued request in order; true if any completed (raise DISK).
    #[inline]
    pub fn complete(&mut self, memory: &mut GuestMemory) -> bool {
        // Inline, the common case at every VM switch: nothing queued.
        !self.queue.is_empty() && self.complete_queued(memory)
    }

    fn complete_queued(&mut self, memory: &mut GuestMemory) -> bool {
        let any = !self.queue.is_empty();
        while let Some(request) = self.queue.pop_front() {
            let status = self.perform(memory, &request);
            request.set_status(memory, status);
        }
        any
    }

    fn perform(&self, memory: &mut GuestMemory, request: &DiskBlock) -> u32 {
        // Checked at submission; the disk list only grows, so the index still names it.
        let Some(disk) = self.disks.get(request.disk as usize) else {
            return status::NO_DEVICE;
        };
        let result = match request.op {
            op::READ => {
                let mut buf = vec![0u8; BLOCK_SIZE as usize];
                disk.read_block(request.block, &mut buf)
                    .and_then(|()| memory.write(request.addr, &buf).map_err(|_| io::ErrorKind::InvalidInput.into()))
            }
            op::WRITE => match memory.bytes(request.addr, BLOCK_SIZE as usize) {
                Ok(data) => disk.write_block(request.block, data),
                Err(_) => return status::BAD_ADDR,
            },
            op::FLUSH => disk.flush(),
            op::INFO => {
                request.set_block(memory, disk.blocks());
                Ok(())
            }
            _ => return status::BAD_OP,
        };
        match result {
            Ok(()) => status::OK,
            Err(_) => status::IO_ERROR,
        }
    }
}
