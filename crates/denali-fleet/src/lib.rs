//! Fleets of Denali VMs in one process: the scheduler half of the isolation kernel
//! (issue #5, sections 2 to 4).
//!
//! Map: [`gatekeeper`] admits VMs in FIFO order under a memory budget; [`config`] says how a
//! fleet runs (threads, quantum, interrupt mode, engine and console factories) and what each
//! VM has (image, memory, its own engine, its devices: disks, keyboard, network); [`worker`]
//! is the scheduler the worker threads share: one round-robin run queue, one heap of idle
//! deadlines and the table of VMs, behind one lock, reading the clock (`clock`, `tsc`) once per
//! switch; [`fleet`] lays out each image once,
//! starts the workers and gathers the [`report`].
//!
//! Invariants: a VM runs on one worker thread at a time, on whichever is free (VMs are
//! `Send`), so busy VMs get equal shares whatever the thread count; an idle VM sits in the
//! deadline heap and is never run or polled until its deadline passes or its doorbell rings;
//! a VM is dropped outside the scheduler's lock; a VM that faults is dropped and reported
//! while every other VM continues; a fleet whose live VMs all idle with nothing left to wake
//! them ends them as deadlocked instead of hanging; nothing a guest does panics the fleet.

mod clock;
pub mod config;
pub mod fleet;
pub mod gatekeeper;
pub mod report;
mod tsc;
mod worker;

pub use config::{ConsoleFactory, EngineFactory, FleetConfig, InterruptMode, KeyboardFeed, VmDevices, VmSpec};
pub use fleet::{Fleet, FleetCounters};
pub use gatekeeper::Gatekeeper;
pub use report::{FleetReport, VmEnd, VmReport, peak_rss_bytes};
