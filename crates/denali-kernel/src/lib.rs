//! The Denali isolation kernel: turns guest images into VMs and runs them.
//!
//! A [`Vm`] owns one guest's physical memory, CPU state and execution engine. The kernel's part
//! of running it is everything the engine hands back: the ports of `isa-spec/ports.txt`, the
//! virtual instructions (idle and terminate), exception and interrupt delivery, and keeping the
//! virtual-register page current.
//!
//! Invariant: nothing a guest or an image file does can make the kernel panic; guest mistakes
//! become exceptions or [`Outcome`]s, bad images become [`ImageError`]s or [`LoadError`]s.

mod boot_image;
mod console;
mod delivery;
pub mod devices;
mod diagnostic;
pub mod disasm;
pub mod image;
mod ports;
pub mod size;
pub mod trace;
mod vm;
pub mod vregs;

pub use boot_image::BootImage;
pub use devices::clock::{Clock, Doorbell, FakeClock, HostClock};
pub use devices::disk::{DiskError, DiskImage};
pub use devices::switch::Switch;
pub use diagnostic::{Fault, FaultCause};
pub use image::{Image, ImageError, LoadError, Segment};
pub use vm::{Outcome, Quantum, SLICE, Vm, VmConfig, VmError};
