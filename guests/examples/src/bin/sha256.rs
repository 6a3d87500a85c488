//! Runs the `sha256` compute kernel and prints its checksum as `sha256: <16 hex digits>`.
#![no_std]
#![no_main]

denali_guest::entry!(main);

fn main() -> u32 {
    denali_guest::println!("sha256: {:016x}", kernels::sha256());
    0
}
