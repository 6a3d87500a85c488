//! Sleeps about one second in all on idle-with-timeout, waking four times: twice when the
//! one-shot timer raises TIMER (idle with no timeout, interrupts enabled but no handler, so the
//! interrupt only ends the idle), twice when an idle's own timeout runs out. Exits 0 if every
//! wake came for the expected reason and the clock advanced at least as far as it slept.
#![no_std]
#![no_main]

use denali_guest::abi::{irq, port};
use denali_guest::{IDLE_FOREVER, idle, println};

denali_guest::entry!(main);

/// Each sleep, in microseconds: four of them make one second.
const NAP_US: u32 = 250_000;

fn set_timer(delay_us: u32) {
    // SAFETY: a 32-bit OUT to the timer port only arms the VM's timer; no memory is touched.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port::TIMER_ONESHOT, in("eax") delay_us,
            options(nomem, nostack, preserves_flags));
    }
}

fn main() -> u32 {
    let start = denali_guest::time_us();
    let mut failures = 0;
    for round in 1..=2 {
        set_timer(NAP_US);
        denali_guest::irq_enable(true);
        let woken = idle(IDLE_FOREVER);
        denali_guest::irq_enable(false);
        let timer = denali_guest::irq_pending() & (1 << irq::TIMER) != 0;
        denali_guest::ack_irq(1 << irq::TIMER);
        println!("idle: round {round}: woken by the timer: {}", woken && timer);
        failures += u32::from(!(woken && timer));
    }
    for round in 3..=4 {
        let woken = idle(NAP_US);
        println!("idle: round {round}: timeout expired: {}", !woken);
        failures += u32::from(woken);
    }
    let slept = denali_guest::time_us() - start;
    let enough = slept >= 4 * u64::from(NAP_US);
    println!("idle: slept at least 1 s: {enough}");
    failures + u32::from(!enough)
}
