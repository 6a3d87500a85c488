//! Runs the `matmul` compute kernel natively on Linux and prints `matmul: <checksum>`, exactly as
//! the `matmul` example guest does (guests/examples/src/bin/matmul.rs).
#![no_std]
#![no_main]

native::entry!(main);

fn main() -> u32 {
    native::println!("matmul: {:08x}", kernels::matmul());
    0
}
