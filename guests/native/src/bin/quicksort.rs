//! Runs the `quicksort` compute kernel natively on Linux and prints `quicksort: <checksum>`, exactly as
//! the `quicksort` example guest does (guests/examples/src/bin/quicksort.rs).
#![no_std]
#![no_main]

native::entry!(main);

fn main() -> u32 {
    native::println!("quicksort: {:08x}", kernels::quicksort());
    0
}
