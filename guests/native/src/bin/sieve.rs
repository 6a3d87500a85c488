//! Runs the `sieve` compute kernel natively on Linux and prints `sieve: <checksum>`, exactly as
//! the `sieve` example guest does (guests/examples/src/bin/sieve.rs).
#![no_std]
#![no_main]

native::entry!(main);

fn main() -> u32 {
    native::println!("sieve: {:08x}", kernels::sieve());
    0
}
