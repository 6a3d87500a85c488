//! Runs the `matmul` compute kernel and prints its checksum as `matmul: <8 hex digits>`.
#![no_std]
#![no_main]

denali_guest::entry!(main);

fn main() -> u32 {
    denali_guest::println!("matmul: {:08x}", kernels::matmul());
    0
}
