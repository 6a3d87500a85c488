//! The virtual Ethernet switch that connects the NICs of the VMs of one kernel.
//!
//! The switch is a shared object (`Arc<Switch>`) that NICs attach to as ports. Each port has a
//! bounded transmit queue, filled by `NIC_SEND`, and a bounded receive queue, drained by
//! `NIC_RECV`. [`Switch::pump`] moves frames: it drains the transmit queues round-robin, one
//! frame per port per round so a busy port cannot starve the others, and forwards each by
//! destination MAC (looked up in a table, not by scanning the ports): a group address (broadcast `ff:ff:ff:ff:ff:ff`, or multicast) goes to every
//! other port, a known unicast address to its port, an unknown one is dropped and counted. A
//! frame that finds its receive queue full is dropped and counted at that port.
//!
//! All state sits behind one mutex, so VMs on different threads can share a switch; whoever
//! pumps (every VM does at its slice boundaries) forwards everyone's frames, and a port that
//! receives a frame has its doorbell rung so an idle VM wakes. Every VM polls at every quantum,
//! so two counters outside the mutex let a poll that would find nothing skip the lock: frames
//! queued for transmission, and ports with an arrival not yet taken. They change only under
//! the lock; a reader on another thread that sees a stale zero misses nothing for good: the
//! sender pumps its own frames at its next poll, and an arrival rings the receiver's doorbell,
//! whose wake-up orders the increment before the receiver's next look. Only broadcast costs time in
//! proportion to the number of ports: a pump visits only the ports with frames queued (a
//! round-robin list of senders), and unicast finds its port in a MAC table, so a switch of
//! 100,000 ports costs per frame what a switch of two does.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::devices::clock::Doorbell;
use crate::devices::pcap::Capture;

/// Frames a port's transmit queue holds; more get `QUEUE_FULL`.
pub const TX_CAPACITY: usize = 64;
/// Frames a port's receive queue holds; more are dropped.
pub const RX_CAPACITY: usize = 64;
/// The broadcast MAC address.
pub const BROADCAST: [u8; 6] = [0xFF; 6];

/// A port of a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortId(usize);

/// What a port has done.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames the port sent into the switch.
    pub tx: u64,
    /// Frames queued for the port to receive.
    pub rx: u64,
    /// Sends refused because the transmit queue was full.
    pub tx_full: u64,
    /// Frames for the port dropped because its receive queue was full.
    pub rx_dropped: u64,
}

/// The result of [`Switch::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Frame(Vec<u8>),
    /// No frame is queued.
    Empty,
    /// The next frame is this long, more than the buffer; it stays queued.
    TooLong(usize),
}

/// The transmit queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the transmit queue is full")]
pub struct QueueFull;

#[derive(Debug)]
struct Port {
    mac: [u8; 6],
    tx: VecDeque<Vec<u8>>,
    rx: VecDeque<Vec<u8>>,
    counters: PortCounters,
    /// A frame arrived since the owner last asked (raise NIC_RX).
    arrived: bool,
    /// In `State::senders`: the transmit queue holds frames.
    sending: bool,
    bell: Option<Doorbell>,
}

#[derive(Debug, Default)]
struct State {
    /// Indexed by `PortId`; detached ports leave `None` so ids stay stable.
    ports: Vec<Option<Port>>,
    /// The ports whose transmit queue holds frames, in round-robin order: a pump serves the
    /// head and puts it back at the tail while it has more.
    senders: VecDeque<usize>,
    /// The ports with each MAC address, in the order they were attached; unicast goes to
    /// the first (other than the sender).
    by_mac: HashMap<[u8; 6], Vec<usize>>,
    unknown_dropped: u64,
    /// Frames dropped at full receive queues, over every port ever attached.
    rx_dropped: u64,
    switched: u64,
    capture: Option<Capture>,
    /// Detached slots, reused first: attaching stays O(1) with 100,000 ports.
    free: Vec<usize>,
    /// Ports attached now.
    attached: usize,
}

/// A virtual Ethernet switch.
#[derive(Debug, Default)]
pub struct Switch {
    state: Mutex<State>,
    /// Frames in transmit queues (changed under the lock).
    queued: AtomicUsize,
    /// Ports whose `arrived` is set (changed under the lock).
    arrivals: AtomicUsize,
}

impl Switch {
    pub fn new() -> Arc<Switch> {
        Arc::new(Switch::default())
    }

    /// A switch that records every frame it forwards in `capture`.
    pub fn with_capture(capture: Capture) -> Arc<Switch> {
        Arc::new(Switch {
            state: Mutex::new(State { capture: Some(capture), ..State::default() }),
            ..Switch::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a port with address `mac`; `bell` is rung when a frame arrives for it.
    pub fn attach(&self, mac: [u8; 6], bell: Option<Doorbell>) -> PortId {
        let mut state = self.lock();
        let port = Port {
            mac,
            tx: VecDeque::new(),
            rx: VecDeque::new(),
            counters: PortCounters::default(),
            arrived: false,
            sending: false,
            bell,
        };
        state.attached += 1;
        let index = match state.free.pop() {
            Some(free) if free < state.ports.len() => {
                state.ports[free] = Some(port);
                free
            }
            _ => {
                state.ports.push(Some(port));
                state.ports.len() - 1
            }
        };
        state.by_mac.entry(mac).or_default().push(index);
        PortId(index)
    }

    /// Removes a port and drops its queued frames.
    pub fn detach(&self, port: PortId) {
        let mut state = self.lock();
        let Some(slot) = state.ports.get_mut(port.0) else { return };
        if let Some(old) = slot.take() {
            if old.sending {
                state.senders.retain(|&i| i != port.0);
            }
            self.queued.fetch_sub(old.tx.len(), Ordering::SeqCst);
            if old.arrived {
                self.arrivals.fetch_sub(1, Ordering::SeqCst);
            }
            if let Some(ports) = state.by_mac.get_mut(&old.mac) {
                ports.retain(|&i| i != port.0);
                if ports.is_empty() {
                    state.by_mac.remove(&old.mac);
                }
            }
            state.attached -= 1;
            state.free.push(port.0);
        }
    }

    /// Ports attached now.
    pub fn port_count(&self) -> usize {
        self.lock().attached
    }

    /// Queues `frame` on `port`'s transmit queue.
    pub fn send(&self, port: PortId, frame: Vec<u8>) -> Result<(), QueueFull> {
        let mut state = self.lock();
        let index = port.0;
        let Some(Some(port)) = state.ports.get_mut(index) else { return Ok(()) };
        if port.tx.len() >= TX_CAPACITY {
            port.counters.tx_full += 1;
            return Err(QueueFull);
        }
        port.tx.push_back(frame);
        self.queued.fetch_add(1, Ordering::SeqCst);
        if !port.sending {
            port.sending = true;
            state.senders.push_back(index);
        }
        Ok(())
    }

    /// Takes the next frame of `port`'s receive queue if it fits in `capacity` bytes.
    pub fn receive(&self, port: PortId, capacity: usize) -> Received {
        let mut state = self.lock();
        let Some(Some(port)) = state.ports.get_mut(port.0) else { return Received::Empty };
        match port.rx.front() {
            None => Received::Empty,
            Some(frame) if frame.len() > capacity => Received::TooLong(frame.len()),
            Some(_) => port.rx.pop_front().map_or(Received::Empty, Received::Frame),
        }
    }

    /// Whether a frame arrived for `port` since the last call.
    #[inline]
    pub fn take_arrival(&self, port: PortId) -> bool {
        // Inline, the common case at every VM switch: nothing arrived anywhere.
        self.arrivals.load(Ordering::SeqCst) != 0 && self.take_arrival_locked(port)
    }

    fn take_arrival_locked(&self, port: PortId) -> bool {
        let mut state = self.lock();
        let taken = match state.ports.get_mut(port.0) {
            Some(Some(port)) => std::mem::take(&mut port.arrived),
            _ => false,
        };
        if taken {
            self.arrivals.fetch_sub(1, Ordering::SeqCst);
        }
        taken
    }

    /// Whether any other port could send `port` a frame.
    pub fn has_peers(&self, port: PortId) -> bool {
        let state = self.lock();
        let own = usize::from(matches!(state.ports.get(port.0), Some(Some(_))));
        state.attached > own
    }

    pub fn counters(&self, port: PortId) -> PortCounters {
        match self.lock().ports.get(port.0) {
            Some(Some(port)) => port.counters,
            _ => PortCounters::default(),
        }
    }

    /// Unicast frames dropped because no port has their destination address.
    pub fn unknown_dropped(&self) -> u64 {
        self.lock().unknown_dropped
    }

    /// Frames dropped since the switch was created: for an unknown address, or at a full
    /// receive queue (of any port, including ports since detached).
    pub fn frames_dropped(&self) -> u64 {
        let state = self.lock();
        state.unknown_dropped + state.rx_dropped
    }

    /// Frames forwarded (taken from a transmit queue) since the switch was created.
    pub fn frames_switched(&self) -> u64 {
        self.lock().switched
    }

    /// Forwards every queued frame, draining the transmit queues round-robin. Returns how
    /// many frames left transmit queues.
    #[inline]
    pub fn pump(&self) -> usize {
        // Inline, the common case at every VM switch: nothing queued.
        if self.queued.load(Ordering::SeqCst) == 0 { 0 } else { self.forward_queued() }
    }

    fn forward_queued(&self) -> usize {
        let mut state = self.lock();
        let mut moved = 0;
        while let Some(from) = state.senders.pop_front() {
            let Some(Some(port)) = state.ports.get_mut(from) else { continue };
            let frame = port.tx.pop_front();
            port.sending = !port.tx.is_empty();
            if port.sending {
                state.senders.push_back(from);
            }
            if let Some(frame) = frame {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                moved += 1;
                forward(&mut state, &self.arrivals, from, frame);
            }
        }
        moved
    }

    /// Flushes and closes the capture file, if any, reporting any write error it met.
    pub fn finish_capture(&self) -> io::Result<()> {
        self.lock().capture.as_mut().map_or(Ok(()), Capture::finish)
    }
}

/// Sends one frame from port `from` to its destinations.
fn forward(state: &mut State, arrivals: &AtomicUsize, from: usize, frame: Vec<u8>) {
    state.switched += 1;
    if let Some(capture) = &mut state.capture {
        capture.record(&frame);
    }
    if let Some(Some(port)) = state.ports.get_mut(from) {
        port.counters.tx += 1;
    }
    let mut dest = [0u8; 6];
    for (d, s) in dest.iter_mut().zip(&frame) {
        *d = *s;
    }
    // The group bit (the least significant bit of the first byte) marks broadcast and
    // multicast: flood them, as a switch without multicast snooping does.
    if dest[0] & 1 == 1 {
        let targets: Vec<usize> = (0..state.ports.len()).filter(|&i| i != from).collect();
        for to in targets {
            deliver(state, arrivals, to, frame.clone());
        }
        return;
    }
    // A switch never sends a frame back out of the port it came in on.
    let target = state.by_mac.get(&dest).and_then(|ports| ports.iter().copied().find(|&i| i != from));
    match target {
        Some(to) => deliver(state, arrivals, to, frame),
        None => state.unknown_dropped += 1,
    }
}

fn deliver(state: &mut State, arrivals: &AtomicUsize, to: usize, frame: Vec<u8>) {
    let Some(Some(port)) = state.ports.get_mut(to) else { return };
    if port.rx.len() >= RX_CAPACITY {
        port.counters.rx_dropped += 1;
        state.rx_dropped += 1;
        return;
    }
    port.rx.push_back(frame);
    port.counters.rx += 1;
    // Counted before the bell rings: the woken VM's first look must see it.
    if !std::mem::replace(&mut port.arrived, true) {
        arrivals.fetch_add(1, Ordering::SeqCst);
    }
    if let Some(bell) = &port.bell {
        bell.ring();
    }
}

/// VMs on different threads share one switch: it must stay `Send + Sync`.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Switch>();
};
