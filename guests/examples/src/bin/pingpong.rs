//! A pair of VMs bouncing a frame over the virtual switch (see `src/pingpong.rs`): waits for
//! each frame with idle-with-timeout and the NIC_RX interrupt. Run it as a fleet of an even
//! number of VMs (`denali fleet --example pingpong --count 2`); alone it gives up after about
//! a second and exits 2.
#![no_std]
#![no_main]

#[path = "../pingpong.rs"]
#[allow(dead_code, reason = "each of the two binaries waits in one way of the shared module")]
mod pingpong;

denali_guest::entry!(main);

fn main() -> u32 {
    pingpong::run(pingpong::Wait::Idle)
}
