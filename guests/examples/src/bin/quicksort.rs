//! Runs the `quicksort` compute kernel and prints its checksum as `quicksort: <8 hex digits>`.
#![no_std]
#![no_main]

denali_guest::entry!(main);

fn main() -> u32 {
    denali_guest::println!("quicksort: {:08x}", kernels::quicksort());
    0
}
