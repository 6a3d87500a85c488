//! The process entry point `_start`, shared by the Denali guest SDK (`denali-guest`) and the
//! native Linux builds of the compute kernels (`native`), so that both run their `main` from
//! the same first instructions.
//!
//! Denali starts a guest with a valid ESP at the top of memory, and Linux a static executable
//! with ESP at `argc` (valid, but only 4-byte aligned); both with DF clear and `.bss`
//! zero-filled. So `_start` only aligns the stack to the 16 bytes the i386 System V ABI
//! promises at a call, and calls the function it is given, which never returns.
#![no_std]

/// Defines `_start` to call `$main`, an `extern "C" fn() -> !` defined at the crate root.
#[macro_export]
macro_rules! start {
    ($main:ident) => {
        ::core::arch::global_asm!(
            ".pushsection .text._start, \"ax\", @progbits",
            ".globl _start",
            ".type _start, @function",
            "_start:",
            // A zero frame pointer ends frame-pointer stack walks here.
            "xor ebp, ebp",
            "and esp, -16",
            "call {main}",
            // Not reached: main diverges. A breakpoint (inside the Denali subset, unlike ud2)
            // would trap cleanly if it ever were.
            "int3",
            ".size _start, . - _start",
            ".popsection",
            main = sym $main,
        );
    };
}
