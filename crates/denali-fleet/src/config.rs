//! How a fleet runs: its VMs ([`VmSpec`]) and its scheduler settings ([`FleetConfig`]).

use std::io::{self, Write};
use std::sync::Arc;

use denali_engine::{Engine, Interpreter, SharedCode};
use denali_kernel::{Image, Switch};

/// Makes one VM's execution engine; called on the worker thread that runs the VM.
pub type EngineFactory = Arc<dyn Fn() -> Box<dyn Engine> + Send + Sync>;
/// Makes the console sink of the VM with this id; called on the VM's worker thread.
pub type ConsoleFactory = Arc<dyn Fn(u32) -> io::Result<Box<dyn Write + Send>> + Send + Sync>;

/// One VM of a fleet. VMs of one image (the same `Arc`) and memory size boot from one
/// `denali_kernel::BootImage`, laid out once: they share its pages copy-on-write.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub image: Arc<Image>,
    /// Guest memory in bytes (see `denali_kernel::VmConfig::mem_size`).
    pub mem_size: u32,
}

/// When a woken VM gets its interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InterruptMode {
    /// Denali's way: wake-ups are collected and acted on once per round of the run queue, so
    /// interrupts reach VMs in batches when they are next scheduled.
    #[default]
    Batched,
    /// The comparison of the paper: a wake-up cuts the running quantum short at the next slice
    /// (1 ms of guest time) and the target VM runs next.
    Synchronous,
}

/// Scheduler settings.
#[derive(Clone)]
pub struct FleetConfig {
    /// Worker threads; at least 1.
    pub threads: usize,
    /// Instructions per quantum; at least 1.
    pub quantum: u64,
    pub interrupts: InterruptMode,
    /// Total guest memory the gatekeeper lets live at once; `None`: no limit.
    pub mem_budget: Option<u64>,
    /// Stop the whole fleet once its VMs have retired this many instructions in total.
    pub instruction_limit: Option<u64>,
    pub engine: EngineFactory,
    pub console: ConsoleFactory,
    /// The switch every VM's NIC is plugged into.
    pub switch: Arc<Switch>,
}

impl FleetConfig {
    /// One worker per host core, 10,000-instruction quanta, batched interrupts, no budget,
    /// the interpreter (sharing decoded code among the VMs), consoles discarded, a fresh switch.
    pub fn new() -> FleetConfig {
        let code = SharedCode::new();
        FleetConfig {
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            quantum: 10_000,
            interrupts: InterruptMode::Batched,
            mem_budget: None,
            instruction_limit: None,
            engine: Arc::new(move || Box::new(Interpreter::sharing(Arc::clone(&code)))),
            console: Arc::new(|_| Ok(Box::new(io::sink()))),
            switch: Switch::new(),
        }
    }
}

impl Default for FleetConfig {
    fn default() -> FleetConfig {
        FleetConfig::new()
    }
}
