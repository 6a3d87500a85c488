//! Runs the `sha256` compute kernel natively on Linux and prints `sha256: <checksum>`, exactly as
//! the `sha256` example guest does (guests/examples/src/bin/sha256.rs).
#![no_std]
#![no_main]

native::entry!(main);

fn main() -> u32 {
    native::println!("sha256: {:016x}", kernels::sha256());
    0
}
