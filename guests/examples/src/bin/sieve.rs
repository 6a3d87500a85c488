//! Runs the `sieve` compute kernel and prints its checksum as `sieve: <8 hex digits>`.
#![no_std]
#![no_main]

denali_guest::entry!(main);

fn main() -> u32 {
    denali_guest::println!("sieve: {:08x}", kernels::sieve());
    0
}
