//! The guest-visible constants of the Denali virtual architecture: virtual-register offsets,
//! ports, request blocks, status codes, interrupt bits, exception kinds and boot constants.
//!
//! Everything here is generated from the tables in `isa-spec/`; this crate has no code of its
//! own, so that the kernel and `no_std` guests (built for i586) share one definition.
#![no_std]

mod generated;
pub use generated::*;
