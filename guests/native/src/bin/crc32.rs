//! Runs the `crc32` compute kernel natively on Linux and prints `crc32: <checksum>`, exactly as
//! the `crc32` example guest does (guests/examples/src/bin/crc32.rs).
#![no_std]
#![no_main]

native::entry!(main);

fn main() -> u32 {
    native::println!("crc32: {:08x}", kernels::crc32());
    0
}
