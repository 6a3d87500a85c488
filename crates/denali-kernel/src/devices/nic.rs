//! The NIC device (`NIC_SEND`, `NIC_RECV`): one Ethernet port per VM on a [`Switch`].
//!
//! The NIC is a thin guest-facing front of its switch port: it checks the request, copies the
//! frame between guest memory and the port's queues, and reports arrivals as NIC_RX. Dropping
//! the NIC detaches the port, so a stopped VM receives nothing more.

use std::sync::Arc;

use denali_abi::status;
use denali_engine::GuestMemory;

use crate::devices::clock::Doorbell;
use crate::devices::request::BufferBlock;
use crate::devices::switch::{PortId, QueueFull, Received, Switch};

/// Shortest frame `NIC_SEND` takes: an Ethernet header.
pub const MIN_FRAME: u32 = 14;
/// Longest frame: header and a 1500-byte payload (no frame check sequence).
pub const MAX_FRAME: u32 = 1514;

/// One VM's NIC.
#[derive(Debug)]
pub struct Nic {
    switch: Arc<Switch>,
    port: PortId,
}

impl Nic {
    /// Attaches a NIC with address `mac` to `switch`; `bell` is rung when a frame arrives.
    pub fn new(switch: &Arc<Switch>, mac: [u8; 6], bell: Doorbell) -> Nic {
        Nic { switch: Arc::clone(switch), port: switch.attach(mac, Some(bell)) }
    }

    pub fn switch(&self) -> &Arc<Switch> {
        &self.switch
    }

    pub fn port(&self) -> PortId {
        self.port
    }

    /// `NIC_SEND`.
    pub(crate) fn send(&self, memory: &mut GuestMemory, request: BufferBlock) {
        let status = if !(MIN_FRAME..=MAX_FRAME).contains(&request.len) {
            status::BAD_LEN
        } else if !request.buffer_ok(memory) {
            status::BAD_ADDR
        } else {
            match memory.bytes(request.addr, request.len as usize) {
                Ok(frame) => match self.switch.send(self.port, frame.to_vec()) {
                    Ok(()) => status::OK,
                    Err(QueueFull) => status::QUEUE_FULL,
                },
                Err(_) => status::BAD_ADDR,
            }
        };
        request.set_status(memory, status);
    }

    /// `NIC_RECV`.
    pub(crate) fn receive(&self, memory: &mut GuestMemory, request: BufferBlock) {
        let status = if !request.buffer_ok(memory) {
            status::BAD_ADDR
        } else {
            match self.switch.receive(self.port, request.len as usize) {
                Received::Empty => status::EMPTY,
                Received::TooLong(_) => status::BAD_LEN,
                Received::Frame(frame) => match memory.write(request.addr, &frame) {
                    Ok(()) => {
                        request.set_len(memory, u32::try_from(frame.len()).unwrap_or(u32::MAX));
                        status::OK
                    }
                    Err(_) => status::BAD_ADDR,
                },
            }
        };
        request.set_status(memory, status);
    }

    /// Whether frames arrived since the last poll (raise NIC_RX).
    pub fn poll(&self) -> bool {
        self.switch.take_arrival(self.port)
    }

    /// Whether a frame could ever arrive: another port is on the switch.
    pub fn may_receive(&self) -> bool {
        self.switch.has_peers(self.port)
    }
}

impl Drop for Nic {
    fn drop(&mut self) {
        self.switch.detach(self.port);
    }
}
