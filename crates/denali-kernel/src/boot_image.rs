//! An image laid out in a memory of one size, once, for booting many VMs from it: the
//! placement is checked and the segments are copied a single time, and each VM's memory starts
//! as a copy-on-write view of the result (`denali_engine::MemoryTemplate`).

use denali_engine::{GuestMemory, MemoryTemplate};

use crate::image::Image;
use crate::vm::VmError;

/// A loaded image, ready to boot VMs with `Vm::from_boot_image`.
#[derive(Debug)]
pub struct BootImage {
    entry: u32,
    memory: MemoryTemplate,
}

impl BootImage {
    /// Lays out `image` in `mem_size` bytes of memory; fails as `Vm::new` would.
    pub fn new(image: &Image, mem_size: u32) -> Result<BootImage, VmError> {
        image.check_fits(mem_size)?;
        let mut memory = GuestMemory::new(u64::from(mem_size))?;
        image.load_into(&mut memory)?;
        Ok(BootImage { entry: image.entry, memory: MemoryTemplate::new(&memory) })
    }

    pub fn entry(&self) -> u32 {
        self.entry
    }

    /// The initial memory every VM of this image starts from.
    pub fn memory(&self) -> &MemoryTemplate {
        &self.memory
    }
}
