//! The Denali virtual architecture as code: the tables of `isa-spec/`, the validator that checks
//! guest instructions against the subset, and the disassembler used by the CLI and diagnostics.
//!
//! Invariant: this crate does no I/O and knows nothing about VMs or engines.

pub mod codegen;
pub mod disasm;
pub mod spec;
pub mod validate;
