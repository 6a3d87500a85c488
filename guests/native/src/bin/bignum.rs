//! Runs the `bignum` compute kernel natively on Linux and prints `bignum: <checksum>`, exactly as
//! the `bignum` example guest does (guests/examples/src/bin/bignum.rs).
#![no_std]
#![no_main]

native::entry!(main);

fn main() -> u32 {
    native::println!("bignum: {:016x}", kernels::bignum());
    0
}
