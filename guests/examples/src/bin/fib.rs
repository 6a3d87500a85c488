//! Runs the `fib` compute kernel and prints its checksum as `fib: <8 hex digits>`.
#![no_std]
#![no_main]

denali_guest::entry!(main);

fn main() -> u32 {
    denali_guest::println!("fib: {:08x}", kernels::fib());
    0
}
