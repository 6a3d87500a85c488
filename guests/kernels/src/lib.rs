//! Deterministic, integer-only compute kernels for Denali example guests and benchmarks.
//!
//! The same source compiles for the host and, inside a guest, for i586, so the host can know
//! each guest's expected output. Hence: `no_std`, no allocation, no floating point (the Denali
//! v1 subset has no x87 or SSE), only fixed-size stack arrays (each well under 1 MiB, which fits
//! both a guest's stack and a host test thread's) and no shared mutable state, so that kernels
//! may run concurrently on the host.
//!
//! Each kernel returns a checksum of its result and is sized to run roughly 200-300 million
//! guest instructions when compiled for i586 in release mode.
#![no_std]

mod bignum;
mod crc32;
mod fib;
mod matmul;
mod quicksort;
mod sha256;
mod sieve;

pub use bignum::bignum;
pub use crc32::crc32;
pub use fib::fib;
pub use matmul::matmul;
pub use quicksort::quicksort;
pub use sha256::sha256;
pub use sieve::sieve;

/// A checksum: the kernels return 32- or 64-bit values, printed as 8 or 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// Printed as 8 lowercase hex digits.
    U32(u32),
    /// Printed as 16 lowercase hex digits.
    U64(u64),
}

impl core::fmt::LowerHex for Checksum {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Checksum::U32(v) => write!(f, "{v:08x}"),
            Checksum::U64(v) => write!(f, "{v:016x}"),
        }
    }
}

/// One kernel: its name (also the name of its guest) and how to run it.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// Name of the kernel and of the example guest that runs it.
    pub name: &'static str,
    /// One line on what it computes.
    pub description: &'static str,
    /// Runs the kernel.
    pub run: fn() -> Checksum,
}

/// Every kernel, in a fixed order.
pub const ALL: &[Kernel] = &[
    Kernel {
        name: "sieve",
        description: "Segmented sieve of Eratosthenes up to 25,000,000",
        run: || Checksum::U32(sieve()),
    },
    Kernel {
        name: "crc32",
        description: "Table-driven CRC-32 of 24 MiB of generated data",
        run: || Checksum::U32(crc32()),
    },
    Kernel { name: "sha256", description: "SHA-256 of 3 MiB of generated data", run: || Checksum::U64(sha256()) },
    Kernel {
        name: "quicksort",
        description: "Quicksort of 20 LCG-generated arrays of 64Ki u32",
        run: || Checksum::U32(quicksort()),
    },
    Kernel { name: "fib", description: "Naive doubly-recursive Fibonacci up to fib(34)", run: || Checksum::U32(fib()) },
    Kernel {
        name: "matmul",
        description: "24 chained 128x128 wrapping u32 matrix multiplications",
        run: || Checksum::U32(matmul()),
    },
    Kernel { name: "bignum", description: "12000! with 32-bit limbs", run: || Checksum::U64(bignum()) },
];

/// Xorshift32: a cheap deterministic generator for test data.
#[derive(Debug, Clone)]
pub(crate) struct XorShift32(u32);

impl XorShift32 {
    pub(crate) fn new(seed: u32) -> Self {
        // Zero is xorshift's fixed point.
        Self(if seed == 0 { 0x9E37_79B9 } else { seed })
    }

    #[inline]
    pub(crate) fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}
