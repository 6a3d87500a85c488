//! The protocol of the `pingpong` and `pingpong-busy` guests: two VMs bounce a frame back and
//! forth over the virtual switch for a number of rounds, checking every payload.
//!
//! Pairs come from the MAC addresses (`isa-spec/vregs.txt`): the peer's address is this VM's
//! with the lowest bit of the last byte flipped, so VMs 2k and 2k+1 of a fleet pair up. The VM
//! whose address ends in an even byte starts: it sends `PING 0`, `PING 1`, ... and waits for
//! each `PONG` before the next; the other answers each `PING n` with `PONG n`. The number of
//! rounds is read by the starting VM from its keyboard (a decimal number; none typed:
//! [`DEFAULT_ROUNDS`]) and carried in every frame, so the answering VM needs no setting.
//!
//! Waiting for a frame is where the two guests differ ([`Wait`]): `pingpong` idles with a
//! timeout and interrupts enabled, so a NIC_RX interrupt ends the idle; `pingpong-busy` spins
//! reading `IRQ_PENDING` and `TIME_US` instead, as an operating system without
//! idle-with-timeout would.
//!
//! A frame sent before the peer's NIC is on the switch is lost (a fleet boots VMs in any
//! order), so the starting VM resends `PING 0` after every wait of [`WAIT_US`] that timed out
//! until the first `PONG` arrives; the answering VM ignores the duplicates. A VM that has not
//! heard from its peer after [`GIVE_UP_WAITS`] such waits gives up with [`EXIT_NO_PEER`]: that
//! is how a lone VM ends, after about one second. Once the peer has answered, nothing can be
//! lost (one frame is in flight per pair) and nothing is resent; a VM then waits up to
//! [`LATER_WAIT_US`] at a time, so a crowded fleet is not churned by timeouts, and gives up
//! only after [`LATER_GIVE_UP_WAITS`] of them in a row (the peer died).
//!
//! Exit status: 0 when every round was checked; [`EXIT_BAD_FRAME`] when a frame or a setting
//! was wrong; [`EXIT_NO_PEER`] when the peer never answered.

use denali_guest::abi::{irq, status};
use denali_guest::{ack_irq, idle, irq_enable, irq_pending, keyboard, nic, println, time_us, vm_id};

/// Rounds when none is typed on the starting VM's keyboard.
pub const DEFAULT_ROUNDS: u32 = 1000;
/// Length of every frame: a 14-byte Ethernet header and 50 bytes of payload.
pub const FRAME_LEN: usize = 64;
/// The IEEE's EtherType for local experiments.
const ETHERTYPE: [u8; 2] = [0x88, 0xB5];
/// Until the peer is heard from, one wait for a frame lasts at most this long.
pub const WAIT_US: u32 = 5_000;
/// Waits of [`WAIT_US`] without hearing from the peer after which a VM gives up (about one
/// second alone).
pub const GIVE_UP_WAITS: u32 = 200;
/// Once the peer is heard from, one wait for a frame lasts at most this long.
pub const LATER_WAIT_US: u32 = 100_000;
/// Waits of [`LATER_WAIT_US`] in a row without a frame after which a VM gives up on a peer
/// it had heard from (10 s).
pub const LATER_GIVE_UP_WAITS: u32 = 100;
/// Exit status when a frame or the typed round count was wrong.
pub const EXIT_BAD_FRAME: u32 = 1;
/// Exit status when the peer never answered.
pub const EXIT_NO_PEER: u32 = 2;

const PING: [u8; 4] = *b"PING";
const PONG: [u8; 4] = *b"PONG";
// Payload layout, after the 14-byte header: kind, sequence number, rounds, then DATA_WORDS
// words of data derived from the sequence number; the last two bytes are zero.
const KIND: usize = 14;
const SEQ: usize = 18;
const ROUNDS: usize = 22;
const DATA: usize = 26;
const DATA_WORDS: usize = 9;

const NIC_RX: u32 = 1 << irq::NIC_RX;

/// How a VM waits for a frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Idle with a timeout and interrupts enabled (no handler: NIC_RX just ends the idle).
    Idle,
    /// Spin on `IRQ_PENDING` and `TIME_US`, never giving the CPU back.
    Spin,
}

/// A frame the peer sent, once its header and length are checked.
struct Frame {
    kind: [u8; 4],
    seq: u32,
    rounds: u32,
}

/// Why a run failed, with its exit status.
enum Failure {
    /// Nothing arrived in [`GIVE_UP_WAITS`] waits (or [`LATER_GIVE_UP_WAITS`] once the peer
    /// had been heard from).
    Silent,
    /// Something was wrong; the message has been printed.
    Bad,
}

struct Link {
    wait: Wait,
    me: u32,
    peer_id: u32,
    mac: [u8; 6],
    peer: [u8; 6],
    /// Frames sent again because no answer came.
    resent: u32,
    /// A frame from the peer has arrived.
    heard: bool,
}

/// Word `j` of the data of PING `seq`. Words, not bytes: the data is checked at every round,
/// and the experiments should measure the kernel, not this loop.
fn pattern(seq: u32, j: usize) -> u32 {
    seq.wrapping_mul(0x9E37_79B1) ^ (j as u32).wrapping_mul(0x0101_0101)
}

fn word(frame: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]])
}

/// Word `j` of the data of a frame: a PONG carries its PING's data inverted, proof that the
/// peer read it.
fn data_word(kind: [u8; 4], seq: u32, j: usize) -> u32 {
    if kind == PONG { !pattern(seq, j) } else { pattern(seq, j) }
}

impl Link {
    fn frame(&self, kind: [u8; 4], seq: u32, rounds: u32) -> [u8; FRAME_LEN] {
        let mut frame = [0u8; FRAME_LEN];
        frame[0..6].copy_from_slice(&self.peer);
        frame[6..12].copy_from_slice(&self.mac);
        frame[12..14].copy_from_slice(&ETHERTYPE);
        frame[KIND..SEQ].copy_from_slice(&kind);
        frame[SEQ..ROUNDS].copy_from_slice(&seq.to_le_bytes());
        frame[ROUNDS..DATA].copy_from_slice(&rounds.to_le_bytes());
        for j in 0..DATA_WORDS {
            let at = DATA + 4 * j;
            frame[at..at + 4].copy_from_slice(&data_word(kind, seq, j).to_le_bytes());
        }
        frame
    }

    fn send(&self, frame: &[u8]) -> Result<(), Failure> {
        match nic::send(frame) {
            status::OK => Ok(()),
            other => self.bad(format_args!("NIC_SEND failed with status {other}")),
        }
    }

    /// Prints what was wrong; always `Err(Failure::Bad)`, for `?`.
    fn bad(&self, what: core::fmt::Arguments<'_>) -> Result<(), Failure> {
        println!("pingpong: vm {}: {what}", self.me);
        Err(Failure::Bad)
    }

    /// Waits until NIC_RX is pending (true) or `timeout_us` passed (false).
    fn wait_for_frame(&self, timeout_us: u32) -> bool {
        match self.wait {
            Wait::Idle => {
                // Only NIC_RX may end the idle: a pending bit of a source this guest does not
                // use (KEYBOARD after reading the round count) would end every idle at once.
                ack_irq(!NIC_RX);
                irq_enable(true);
                let woken = idle(timeout_us);
                irq_enable(false);
                woken
            }
            Wait::Spin => {
                let deadline = time_us() + u64::from(timeout_us);
                loop {
                    if irq_pending() & NIC_RX != 0 {
                        return true;
                    }
                    if time_us() >= deadline {
                        return false;
                    }
                }
            }
        }
    }

    /// The next frame from the peer, checked against the layout and `expected` kind. While
    /// none is queued it waits; after each wait that timed out it sends `resend` again, if
    /// given.
    fn receive(&mut self, expected: [u8; 4], resend: Option<&[u8]>) -> Result<Frame, Failure> {
        let mut buf = [0u8; 2 * FRAME_LEN];
        let mut waits = 0;
        loop {
            // Acknowledge before reading: a frame that arrives after the read sets the bit
            // again, so the wait below cannot miss it.
            ack_irq(NIC_RX);
            match nic::recv(&mut buf) {
                Ok(len) => {
                    let frame = self.check(&buf[..len], expected)?;
                    self.heard = true;
                    return Ok(frame);
                }
                Err(status::EMPTY) => {}
                Err(other) => {
                    self.bad(format_args!("NIC_RECV failed with status {other}"))?;
                }
            }
            let (timeout, give_up) =
                if self.heard { (LATER_WAIT_US, LATER_GIVE_UP_WAITS) } else { (WAIT_US, GIVE_UP_WAITS) };
            if !self.wait_for_frame(timeout) {
                waits += 1;
                if waits >= give_up {
                    return Err(Failure::Silent);
                }
                if let Some(frame) = resend {
                    self.send(frame)?;
                    self.resent += 1;
                }
            }
        }
    }

    fn check(&self, frame: &[u8], expected: [u8; 4]) -> Result<Frame, Failure> {
        if frame.len() != FRAME_LEN {
            self.bad(format_args!("a {}-byte frame arrived; frames are {FRAME_LEN} bytes", frame.len()))?;
        }
        if frame[0..6] != self.mac || frame[6..12] != self.peer || frame[12..14] != ETHERTYPE {
            self.bad(format_args!("a frame arrived that vm {} did not send to this VM", self.peer_id))?;
        }
        let received = Frame {
            kind: [frame[KIND], frame[KIND + 1], frame[KIND + 2], frame[KIND + 3]],
            seq: word(frame, SEQ),
            rounds: word(frame, ROUNDS),
        };
        let data_ok = (0..DATA_WORDS).all(|j| word(frame, DATA + 4 * j) == data_word(expected, received.seq, j));
        let padding_ok = frame[DATA + 4 * DATA_WORDS..].iter().all(|&b| b == 0);
        if received.kind != expected || !data_ok || !padding_ok {
            self.bad(format_args!("frame {} from vm {} has a wrong kind or payload", received.seq, self.peer_id))?;
        }
        Ok(received)
    }
}

/// Runs this VM's side of the exchange and returns its exit status.
pub fn run(wait: Wait) -> u32 {
    let mac = nic::mac();
    let mut peer = mac;
    peer[5] ^= 1;
    let me = vm_id();
    let mut link = Link { wait, me, peer_id: me ^ 1, mac, peer, resent: 0, heard: false };
    let starts = mac[5] & 1 == 0;
    let result = if starts { ping(&mut link) } else { pong(&mut link) };
    match result {
        Ok(()) => 0,
        Err(Failure::Bad) => EXIT_BAD_FRAME,
        Err(Failure::Silent) if !link.heard => {
            println!(
                "pingpong: vm {me}: no frame from vm {} in {GIVE_UP_WAITS} waits of {WAIT_US} us; giving up",
                me ^ 1
            );
            EXIT_NO_PEER
        }
        Err(Failure::Silent) => {
            println!(
                "pingpong: vm {me}: vm {} fell silent ({LATER_GIVE_UP_WAITS} waits of {LATER_WAIT_US} us); giving up",
                me ^ 1
            );
            EXIT_NO_PEER
        }
    }
}

/// The starting side: a PING per round, each answered by a PONG before the next.
fn ping(link: &mut Link) -> Result<(), Failure> {
    let rounds = keyboard::read_u32().unwrap_or(DEFAULT_ROUNDS);
    if rounds == 0 {
        return link.bad(format_args!("the round count must be at least 1"));
    }
    // The clock starts when the first PONG is in: the first round waits for the peer to boot,
    // and a VM that never hears from its peer never reads the clock, so a lone run is the
    // same instruction for instruction, register for register, every time.
    let mut start = 0;
    for seq in 0..rounds {
        let frame = link.frame(PING, seq, rounds);
        link.send(&frame)?;
        // Only the first PING may be lost: the peer may not be on the switch yet.
        let resend = (seq == 0).then_some(&frame[..]);
        let pong = link.receive(PONG, resend)?;
        if pong.seq != seq || pong.rounds != rounds {
            link.bad(format_args!("PONG {} arrived while waiting for PONG {seq}", pong.seq))?;
        }
        if seq == 0 {
            start = time_us();
        }
    }
    let took = time_us() - start;
    println!(
        "pingpong: vm {} -> vm {}: {rounds} round trips of {FRAME_LEN}-byte frames checked, \
         the {} after the first in {took} us, {} resent",
        link.me,
        link.peer_id,
        rounds - 1,
        link.resent
    );
    Ok(())
}

/// The answering side: a PONG for each new PING until the last round.
fn pong(link: &mut Link) -> Result<(), Failure> {
    let mut next = 0u32;
    let mut duplicates = 0u32;
    loop {
        let ping = link.receive(PING, None)?;
        if ping.seq == 0 && next > 0 {
            // A resent PING 0 whose first copy was answered already.
            duplicates += 1;
            continue;
        }
        if ping.seq != next || ping.rounds == 0 {
            link.bad(format_args!("PING {} of {} arrived while waiting for PING {next}", ping.seq, ping.rounds))?;
        }
        link.send(&link.frame(PONG, ping.seq, ping.rounds))?;
        next += 1;
        if next == ping.rounds {
            println!(
                "pingpong: vm {} <- vm {}: {next} pings answered, {duplicates} duplicates ignored",
                link.me, link.peer_id
            );
            return Ok(());
        }
    }
}
