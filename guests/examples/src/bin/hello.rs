//! The smallest useful guest: greets, says which VM it is and how much memory it has.
#![no_std]
#![no_main]

use denali_guest::println;

denali_guest::entry!(main);

const MIB: u32 = 1024 * 1024;

fn main() -> u32 {
    println!("Hello from a Denali guest!");
    let mem = denali_guest::mem_size();
    // Memory is normally a whole number of MiB; fall back to KiB so odd sizes still read true.
    if mem & (MIB - 1) == 0 {
        println!("Hello from Denali VM {} with {} MiB of memory", denali_guest::vm_id(), mem / MIB);
    } else {
        println!("Hello from Denali VM {} with {} KiB of memory", denali_guest::vm_id(), mem / 1024);
    }
    0
}
