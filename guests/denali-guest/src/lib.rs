//! SDK for Denali guests: 32-bit x86 programs, restricted to the integer subset of IA-32, that
//! run on the Denali isolation kernel (see `isa-spec/` at the repository root).
//!
//! - [`vreg`]: the virtual-register page at address 0 (time, memory size, VM id, interrupts,
//!   exception handler, last fault).
//! - [`idle`] and [`terminate`]: the two virtual instructions.
//! - [`print!`] and [`println!`]: console output through `CONSOLE_WRITE` request blocks.
//! - [`nic`]: Ethernet frames through `NIC_SEND` and `NIC_RECV`; [`keyboard`]: `KBD_GETC`.
//! - [`entry!`]: defines `_start` around a `fn main() -> u32` (or `-> !`, or `-> ()`).
//! - A panic handler (feature `panic-handler`, on by default) that prints
//!   `panic: <message> at <file>:<line>` and terminates with status [`PANIC_EXIT_STATUS`].
//!
//! Guests link with `link.x` from this crate (`-C link-arg=-Tlink.x`; this crate's build script
//! puts it on the linker search path). See `guests/README.md`.
#![no_std]

mod batch;
pub mod console;
pub mod keyboard;
mod mem;
pub mod nic;
pub mod vreg;

#[doc(hidden)]
pub mod rt;

pub use denali_abi as abi;
#[doc(hidden)]
pub use denali_start::start as __start;
pub use rt::MainResult;
pub use vreg::{
    Fault, ack_irq, cpu_khz, irq_enable, irq_pending, last_fault, mem_size, set_exception_handler, set_irq_handler,
    time_us, vm_id,
};

/// Exit status of a guest that panicked (the same as a panicking Rust program on a host).
pub const PANIC_EXIT_STATUS: u32 = 101;

/// Timeout for [`idle`] meaning "until an interrupt", as in `virtual-instructions.txt`.
pub const IDLE_FOREVER: u32 = 0xFFFF_FFFF;

/// Idles (the virtual `hlt`) until `timeout_us` microseconds pass or an enabled interrupt is
/// pending. Returns `true` if it returned because of a pending interrupt, `false` on timeout.
/// [`IDLE_FOREVER`] waits for an interrupt only.
#[inline]
pub fn idle(timeout_us: u32) -> bool {
    let woken: u32;
    // SAFETY: on Denali `hlt` is the IDLE virtual instruction: it reads EAX and returns a flag in
    // EAX, touching nothing else. The kernel may run the interrupt handler meanwhile, which may
    // write memory, so the asm is not `nomem`.
    unsafe {
        core::arch::asm!("hlt", inlateout("eax") timeout_us => woken, options(nostack, preserves_flags));
    }
    woken != 0
}

/// Ends the VM with exit status `status` (the TERMINATE virtual instruction, `int 0xd0`).
#[inline]
pub fn terminate(status: u32) -> ! {
    // The asm is not declared `noreturn`: the compiler would follow it with a `ud2` trap, which
    // is outside the subset and would make checkers flag every guest. Looping on the
    // instruction, which never returns anyway, gives the same guarantee with valid code.
    loop {
        // SAFETY: on Denali `int 0xd0` is the TERMINATE virtual instruction: the VM ends and
        // nothing after it runs; it touches no memory.
        unsafe {
            core::arch::asm!("int 0xd0", in("eax") status, options(nomem, nostack));
        }
    }
}
