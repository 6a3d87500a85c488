//! The devices of one VM (`isa-spec/README.md` section 4), as guest-visible state machines.
//!
//! Map: [`request`] parses request blocks for every port; [`timer`], [`keyboard`], [`disk`] and
//! [`nic`] are the per-VM devices; [`switch`] is the Ethernet switch NICs attach to, shared by
//! the VMs of a kernel, and [`pcap`] its capture file; [`clock`] is the VM's time source and
//! the doorbell that wakes an idle VM. The console lives in `crate::console`.
//!
//! Invariants: a device reaches guest memory only through `GuestMemory`'s checked accessors
//! and never panics on guest input; every queue is bounded; devices know nothing of how VMs are
//! scheduled: the VM polls them ([`Devices::poll`]) at slice boundaries and while idle, and
//! asks when the next event is due ([`Devices::next_event`]).

pub mod clock;
pub mod disk;
pub mod keyboard;
pub mod nic;
pub mod pcap;
pub(crate) mod request;
pub mod switch;
pub mod timer;

use std::sync::Arc;

use denali_abi::irq;
use denali_engine::GuestMemory;

use clock::Doorbell;
use disk::DiskDevice;
use keyboard::Keyboard;
use nic::Nic;
use switch::Switch;
use timer::Timer;

/// Every device of one VM.
#[derive(Debug)]
pub(crate) struct Devices {
    pub timer: Timer,
    pub keyboard: Keyboard,
    pub disks: DiskDevice,
    pub nic: Nic,
    /// Rung by other threads that feed this VM (keyboard input, frames for its NIC).
    pub bell: Doorbell,
    /// The NIC is on a switch other VMs may share ([`Devices::connect`]), not the private
    /// one it starts on, where no frame can arrive.
    networked: bool,
    /// The guest sent a frame on the private switch since the last poll.
    sent_alone: bool,
}

impl Devices {
    /// The devices of a new VM: no disks, no input, a NIC alone on a switch of its own.
    pub fn new(mac: [u8; 6]) -> Devices {
        let bell = Doorbell::new();
        let nic = Nic::new(&Switch::new(), mac, bell.clone());
        Devices {
            timer: Timer::default(),
            keyboard: Keyboard::default(),
            disks: DiskDevice::default(),
            nic,
            bell,
            networked: false,
            sent_alone: false,
        }
    }

    /// Moves the NIC to `switch` (with the same MAC address).
    pub fn connect(&mut self, switch: &Arc<Switch>, mac: [u8; 6]) {
        self.nic = Nic::new(switch, mac, self.bell.clone());
        self.networked = true;
    }

    /// `NIC_SEND`. Notes a frame sent on the private switch, so that polls look at that
    /// switch only when it may hold one: at every VM switch it was a cache miss of its own.
    pub(crate) fn nic_send(&mut self, memory: &mut GuestMemory, request: request::BufferBlock) {
        self.nic.send(memory, request);
        self.sent_alone |= !self.networked;
    }

    /// Advances every device to `now_us`: forwards queued frames, completes disk requests,
    /// expires the timer and takes in input. Returns the interrupt bits to raise.
    pub fn poll(&mut self, memory: &mut GuestMemory, now_us: u64) -> u32 {
        if self.networked || std::mem::take(&mut self.sent_alone) {
            self.nic.switch().pump();
        }
        let mut mask = 0;
        if self.disks.complete(memory) {
            mask |= 1 << irq::DISK;
        }
        if self.timer.poll(now_us) {
            mask |= 1 << irq::TIMER;
        }
        if self.keyboard.poll() {
            mask |= 1 << irq::KEYBOARD;
        }
        if self.networked && self.nic.poll() {
            mask |= 1 << irq::NIC_RX;
        }
        mask
    }

    /// When the next event a poll would find is due (microseconds since boot), if one is
    /// known: now for queued disk requests, else the timer's expiry.
    pub fn next_event(&self, now_us: u64) -> Option<u64> {
        if self.disks.busy() { Some(now_us) } else { self.timer.next_expiry() }
    }

    /// Whether an event may come from another thread at an unknown time (input, frames).
    pub fn may_be_woken(&self) -> bool {
        self.keyboard.may_receive() || self.nic.may_receive()
    }
}
