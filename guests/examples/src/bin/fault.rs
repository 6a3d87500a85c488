//! Faults on purpose: stores one byte past the end of guest memory. With no exception handler
//! the kernel stops the VM with a MEMORY diagnostic (`denali run` exits with status 125).
#![no_std]
#![no_main]

use denali_guest::println;

denali_guest::entry!(main);

fn main() -> u32 {
    let end = denali_guest::mem_size();
    println!("fault: writing outside memory at {end:#010x}");
    // SAFETY: deliberately not: the address is outside guest memory, which on Denali raises the
    // MEMORY exception before the store happens. Nothing after it runs.
    unsafe { core::ptr::write_volatile(end as usize as *mut u8, 1) };
    println!("fault: still running, which is wrong");
    1
}
