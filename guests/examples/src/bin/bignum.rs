//! Runs the `bignum` compute kernel and prints its checksum as `bignum: <16 hex digits>`.
#![no_std]
#![no_main]

denali_guest::entry!(main);

fn main() -> u32 {
    denali_guest::println!("bignum: {:016x}", kernels::bignum());
    0
}
