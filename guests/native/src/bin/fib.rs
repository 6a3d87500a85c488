//! Runs the `fib` compute kernel natively on Linux and prints `fib: <checksum>`, exactly as
//! the `fib` example guest does (guests/examples/src/bin/fib.rs).
#![no_std]
#![no_main]

native::entry!(main);

fn main() -> u32 {
    native::println!("fib: {:08x}", kernels::fib());
    0
}
