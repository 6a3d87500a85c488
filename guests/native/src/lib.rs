//! Run-time support for the native builds of the compute kernels: the same kernels the example
//! guests run, built for the same target with the same flags and profile, but started by Linux
//! and talking to it through `int 0x80` system calls instead of Denali's ports and virtual
//! instructions. `denali bench` times them as the "native" baseline, and under `qemu-i386`.
//!
//! - [`entry!`]: defines `_start` around a `fn main() -> u32` (the exit status).
//! - [`print!`] and [`println!`]: formatted into a stack buffer and written to stdout with one
//!   `write` per buffer, as the guests' console output is sent with one OUT per buffer.
//! - A panic handler that prints `panic: <message> at <file>:<line>` to stderr and exits 101.
//! - `memcpy` and friends: the guests' very source (`denali-guest/src/mem.rs`), so that both
//!   builds run the same copies and fills.
//!
//! The binaries link with this crate's `link.x` (see `build.rs`), a static non-PIE i386 Linux
//! layout at 0x08048000.
#![no_std]

use core::arch::asm;
use core::fmt;

// Included by path rather than through a dependency on denali-guest, whose build script would
// put the guests' link.x on this crate's linker search path.
#[path = "../../denali-guest/src/batch.rs"]
mod batch;
#[path = "../../denali-guest/src/mem.rs"]
mod mem;

#[doc(hidden)]
pub use denali_start::start as __start;

/// Exit status of a program that panicked (the same as a guest's and a hosted Rust program's).
pub const PANIC_EXIT_STATUS: u32 = 101;

/// i386 Linux system call numbers (`arch/x86/entry/syscalls/syscall_32.tbl`).
mod nr {
    pub const EXIT: u32 = 1;
    pub const WRITE: u32 = 4;
}

/// Standard output and standard error.
pub const STDOUT: u32 = 1;
pub const STDERR: u32 = 2;

/// Writes all of `bytes` to file descriptor `fd`; `false` if a `write` failed.
pub fn write_all(fd: u32, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        let ret: i32;
        // SAFETY: `write(fd, buf, len)` only reads `len` bytes at `buf`, which `bytes` keeps
        // alive and valid; the kernel preserves every register but EAX (the result).
        unsafe {
            asm!(
                "int 0x80",
                inlateout("eax") nr::WRITE => ret,
                in("ebx") fd,
                in("ecx") bytes.as_ptr(),
                in("edx") bytes.len(),
                options(nostack, readonly, preserves_flags),
            );
        }
        // A negative result is -errno; zero would loop forever, so it counts as a failure too.
        let Ok(written @ 1..) = usize::try_from(ret) else { return false };
        bytes = &bytes[written.min(bytes.len())..];
    }
    true
}

/// Ends the process with exit status `status` (the low 8 bits reach the parent).
pub fn exit(status: u32) -> ! {
    loop {
        // SAFETY: `exit` never returns and touches no memory of this process.
        unsafe {
            asm!("int 0x80", in("eax") nr::EXIT, in("ebx") status, options(nomem, nostack));
        }
    }
}

#[doc(hidden)]
pub fn _print(fd: u32, args: fmt::Arguments<'_>) {
    let mut batch = batch::Batch::new(|bytes: &[u8]| if write_all(fd, bytes) { Ok(()) } else { Err(fmt::Error) });
    // Output errors have nowhere to be reported; like std's print!, carry on.
    let _ = fmt::write(&mut batch, args);
    let _ = batch.flush();
}

/// Prints to standard output, like `std::print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::_print($crate::STDOUT, ::core::format_args!($($arg)*)) };
}

/// Prints a line to standard output, like `std::println!`.
#[macro_export]
macro_rules! println {
    () => { $crate::_print($crate::STDOUT, ::core::format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::_print($crate::STDOUT, ::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

/// Defines the process entry point `_start` around `main: fn() -> u32`, whose result is the
/// exit status. `_start` is `denali-start`'s, the same as the guests'.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn __native_main() -> ! {
            let main: fn() -> u32 = $main;
            $crate::exit(main())
        }

        $crate::__start!(__native_main);
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(location) => {
            _print(STDERR, format_args!("panic: {} at {}:{}\n", info.message(), location.file(), location.line()))
        }
        None => _print(STDERR, format_args!("panic: {}\n", info.message())),
    }
    exit(PANIC_EXIT_STATUS)
}

/// The precompiled `core` for i586-unknown-linux-gnu was built with unwinding, and its unwind
/// tables name this personality routine; these programs abort on panic and never unwind, so
/// nothing calls it. Release builds (with LTO) drop the reference; debug builds need the symbol
/// to link.
#[doc(hidden)]
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
