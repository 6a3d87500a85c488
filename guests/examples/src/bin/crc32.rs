//! Runs the `crc32` compute kernel and prints its checksum as `crc32: <8 hex digits>`.
#![no_std]
#![no_main]

denali_guest::entry!(main);

fn main() -> u32 {
    denali_guest::println!("crc32: {:08x}", kernels::crc32());
    0
}
