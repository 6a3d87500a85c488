//! `pingpong` with a busy-idle loop: it waits for each frame by spinning on `IRQ_PENDING` and
//! `TIME_US` instead of idling, so a waiting VM uses all of every quantum it gets. The other
//! half of the idle-with-timeout experiment (README, "Experiments").
#![no_std]
#![no_main]

#[path = "../pingpong.rs"]
#[allow(dead_code, reason = "each of the two binaries waits in one way of the shared module")]
mod pingpong;

denali_guest::entry!(main);

fn main() -> u32 {
    pingpong::run(pingpong::Wait::Spin)
}
