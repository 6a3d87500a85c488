//! Run-time support behind [`entry!`](crate::entry) and the panic handler.

use crate::terminate;

/// What a guest's `main` may return: its value becomes the VM's exit status.
pub trait MainResult {
    /// Runs `self` (the guest's `main`) and terminates the VM with its result.
    fn run(self) -> !;
}

impl MainResult for fn() -> u32 {
    fn run(self) -> ! {
        terminate(self())
    }
}

impl MainResult for fn() -> ! {
    fn run(self) -> ! {
        self()
    }
}

impl MainResult for fn() {
    fn run(self) -> ! {
        self();
        terminate(0)
    }
}

/// Defines the guest's entry point `_start` around `main`, which is `fn() -> u32` (the exit
/// status), `fn() -> !` or `fn()` (exit status 0). `_start` is `denali-start`'s, shared with
/// the native builds of the kernels: it aligns the stack and calls `main`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn __denali_main() -> ! {
            $crate::MainResult::run($main as fn() -> _)
        }

        $crate::__start!(__denali_main);
    };
}

#[cfg(feature = "panic-handler")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(location) => {
            crate::println!("panic: {} at {}:{}", info.message(), location.file(), location.line())
        }
        None => crate::println!("panic: {}", info.message()),
    }
    terminate(crate::PANIC_EXIT_STATUS)
}

/// The precompiled `core` for i586-unknown-linux-gnu was built with unwinding, and its
/// unwind tables name this personality routine; guests abort on panic and never unwind, so
/// nothing calls it. Release builds (with LTO) drop the reference; debug builds need the symbol
/// to link.
#[doc(hidden)]
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
