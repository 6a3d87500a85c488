//! The keyboard device (`KBD_GETC`): a bounded per-VM input queue the host fills.
//!
//! Input comes from a script given at boot (kept host-side and fed in as the guest drains the
//! queue, so a big script never overflows it) or from another thread, such as a reader of the
//! host's stdin, through a [`KeyboardInput`] handle. A chunk from the handle waits host-side
//! while the queue is full; the handle's channel is bounded too, so a flood of input blocks the
//! feeding thread rather than growing memory.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};

use crate::devices::clock::Doorbell;

/// Bytes the guest-visible queue holds.
pub const QUEUE_CAPACITY: usize = 4096;
/// Chunks a feeding thread may have in flight before it blocks.
const FEED_CHUNKS: usize = 4;

/// One VM's keyboard.
#[derive(Debug, Default)]
pub struct Keyboard {
    queue: VecDeque<u8>,
    /// Input received from the host but not yet in the queue.
    backlog: VecDeque<u8>,
    feed: Option<Receiver<Vec<u8>>>,
}

/// The feeding end of a keyboard, for another thread. Dropping it ends the input.
#[derive(Debug, Clone)]
pub struct KeyboardInput {
    sender: SyncSender<Vec<u8>>,
    bell: Doorbell,
}

/// The VM that owned the keyboard has gone.
#[derive(Debug, thiserror::Error)]
#[error("the keyboard's VM has stopped")]
pub struct Disconnected;

impl KeyboardInput {
    /// Sends `bytes` to the keyboard (blocking while earlier input waits) and wakes the VM.
    pub fn send(&self, bytes: Vec<u8>) -> Result<(), Disconnected> {
        self.sender.send(bytes).map_err(|_| Disconnected)?;
        self.bell.ring();
        Ok(())
    }

    /// Spawns a thread that copies `reader` (e.g. stdin) to the keyboard until end of input,
    /// a read error, or the VM stops.
    pub fn spawn_reader(self, mut reader: impl Read + Send + 'static) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if self.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        })
    }
}

impl Keyboard {
    /// Queues `script` to be typed in as the guest reads it.
    pub fn add_script(&mut self, script: &[u8]) {
        self.backlog.extend(script);
    }

    /// Connects a feed from another thread, replacing any earlier one; `bell` is the VM's.
    pub fn connect(&mut self, bell: Doorbell) -> KeyboardInput {
        let (sender, receiver) = mpsc::sync_channel(FEED_CHUNKS);
        self.feed = Some(receiver);
        KeyboardInput { sender, bell }
    }

    /// Moves available input into the queue; true if any byte arrived (raise KEYBOARD).
    #[inline]
    pub fn poll(&mut self) -> bool {
        // Inline, the common case at every VM switch: nothing can arrive.
        (!self.backlog.is_empty() || self.feed.is_some()) && self.take_input()
    }

    fn take_input(&mut self) -> bool {
        let before = self.queue.len();
        loop {
            while self.queue.len() < QUEUE_CAPACITY {
                match self.backlog.pop_front() {
                    Some(byte) => self.queue.push_back(byte),
                    None => break,
                }
            }
            if self.queue.len() >= QUEUE_CAPACITY || !self.backlog.is_empty() {
                break;
            }
            match self.feed.as_ref().map(Receiver::try_recv) {
                Some(Ok(chunk)) => self.backlog.extend(chunk),
                Some(Err(TryRecvError::Disconnected)) => {
                    self.feed = None;
                    break;
                }
                Some(Err(TryRecvError::Empty)) | None => break,
            }
        }
        self.queue.len() > before
    }

    /// `KBD_GETC`: the next byte, or `0xFFFFFFFF`.
    pub fn getc(&mut self) -> u32 {
        self.poll();
        self.queue.pop_front().map_or(u32::MAX, u32::from)
    }

    /// Whether input may still arrive without the guest reading any: a feed is connected.
    pub fn may_receive(&self) -> bool {
        self.feed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_is_typed_in_through_a_bounded_queue() {
        let mut keyboard = Keyboard::default();
        let script: Vec<u8> = (0..QUEUE_CAPACITY + 10).map(|i| i as u8).collect();
        keyboard.add_script(&script);
        assert!(keyboard.poll());
        assert_eq!(keyboard.queue.len(), QUEUE_CAPACITY);
        let typed: Vec<u32> = (0..script.len()).map(|_| keyboard.getc()).collect();
        assert_eq!(typed, script.iter().map(|&b| u32::from(b)).collect::<Vec<_>>());
        assert_eq!(keyboard.getc(), u32::MAX);
        assert!(!keyboard.poll());
    }

    #[test]
    fn a_feed_delivers_until_it_is_dropped() {
        let mut keyboard = Keyboard::default();
        let input = keyboard.connect(Doorbell::new());
        assert!(keyboard.may_receive());
        input.send(b"hi".to_vec()).unwrap();
        assert!(keyboard.poll());
        assert_eq!((keyboard.getc(), keyboard.getc(), keyboard.getc()), (u32::from(b'h'), u32::from(b'i'), u32::MAX));
        drop(input);
        assert!(!keyboard.poll());
        assert!(!keyboard.may_receive());
    }
}
