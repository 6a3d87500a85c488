//! Execution engines for Denali guests.
//!
//! An engine runs guest code on a [`Cpu`] over a [`GuestMemory`] and returns an [`Exit`] when
//! the budget is spent or the kernel must act (I/O, the virtual instructions, exceptions).
//!
//! Many VMs of one image share what they can without seeing each other: a [`MemoryTemplate`]
//! (the image laid out once; each VM's memory a copy-on-write view of it) and a [`SharedCode`]
//! (blocks one interpreter decoded, reused by others over identical bytes).
//!
//! Invariants: engines touch guest memory only through `GuestMemory`, whose accessors check
//! bounds; engines run only instructions the validator of `denali-isa` accepted; engines are
//! `Send`.

mod cpu;
mod exit;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod guarded;
pub mod interp;
mod memory;
pub mod residency;
mod slots;
mod template;

pub use cpu::{Cpu, flag, reg};
pub use exit::{Engine, Exception, ExceptionKind, Exit};
pub use interp::{Interpreter, SharedCode};
pub use memory::{GUARD_SIZE, GuestMemory, MemoryError, OutOfBounds};
pub use template::MemoryTemplate;
