//! Fleets of Denali VMs in one process: the scheduler half of the isolation kernel
//! (issue #5, sections 2 to 4).
//!
//! Map: [`gatekeeper`] admits VMs in FIFO order under a memory budget; [`config`] says how a
//! fleet runs (threads, quantum, interrupt mode, engine and console factories) and what each
//! VM has (image, memory, its own engine, its devices: disks, keyboard, network); [`worker`]
//! is one scheduler thread: a round-robin run queue, a heap of idle deadlines and a mailbox
//! for admissions and wake-ups; [`fleet`] starts the workers and gathers the [`report`].
//!
//! Invariants: each VM lives on exactly one worker thread from boot to end (it is built there,
//! so it need not be `Send`); an idle VM sits in its worker's deadline heap and is never run
//! or polled until its deadline passes or its doorbell rings; a VM that faults is dropped and
//! reported while every other VM continues; nothing a guest does panics the fleet.

pub mod config;
pub mod fleet;
pub mod gatekeeper;
pub mod report;
mod worker;

pub use config::{ConsoleFactory, EngineFactory, FleetConfig, InterruptMode, KeyboardFeed, VmDevices, VmSpec};
pub use fleet::{Fleet, FleetCounters};
pub use gatekeeper::Gatekeeper;
pub use report::{FleetReport, VmEnd, VmReport, peak_rss_bytes};
