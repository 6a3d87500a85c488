//! How a fleet runs: its VMs ([`VmSpec`], with their [`VmDevices`]) and its scheduler settings
//! ([`FleetConfig`]).

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use denali_engine::{Engine, Interpreter, SharedCode};
use denali_kernel::devices::keyboard::KeyboardInput;
use denali_kernel::{DiskImage, Image, Switch, Vm};

/// Makes one VM's execution engine; called on the worker thread that runs the VM.
pub type EngineFactory = Arc<dyn Fn() -> Box<dyn Engine> + Send + Sync>;
/// Makes the console sink of the VM with this id; called on the VM's worker thread.
pub type ConsoleFactory = Arc<dyn Fn(u32) -> io::Result<Box<dyn Write + Send>> + Send + Sync>;
/// Takes the keyboard handle of a VM at boot, e.g. to feed it the host's stdin.
pub type KeyboardFeed = Arc<dyn Fn(KeyboardInput) + Send + Sync>;

/// One VM of a fleet. VMs of one image (the same `Arc`) and memory size boot from one
/// `denali_kernel::BootImage`, laid out once: they share its pages copy-on-write.
#[derive(Clone)]
pub struct VmSpec {
    pub image: Arc<Image>,
    /// Guest memory in bytes (see `denali_kernel::VmConfig::mem_size`).
    pub mem_size: u32,
    /// This VM's engine instead of the fleet's ([`FleetConfig::engine`]).
    pub engine: Option<EngineFactory>,
    pub devices: VmDevices,
}

impl VmSpec {
    /// A VM of `image` with `mem_size` bytes of memory, the fleet's engine and default devices.
    pub fn new(image: Arc<Image>, mem_size: u32) -> VmSpec {
        VmSpec { image, mem_size, engine: None, devices: VmDevices::default() }
    }
}

impl fmt::Debug for VmSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmSpec")
            .field("mem_size", &self.mem_size)
            .field("own_engine", &self.engine.is_some())
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

/// The devices of one VM beyond those every VM has (console, timer, an empty keyboard).
#[derive(Clone)]
pub struct VmDevices {
    /// Disks in index order (disk 0 first). A read-only image may be shared by many VMs; the
    /// fleet does not check that a writable one is attached to one VM only (its file lock
    /// keeps other processes out, not other VMs given the same `Arc`).
    pub disks: Vec<Arc<DiskImage>>,
    /// Typed into the keyboard as the guest reads it.
    pub keyboard_script: Option<Arc<[u8]>>,
    /// Called once at boot with the VM's keyboard handle.
    pub keyboard_feed: Option<KeyboardFeed>,
    /// Plug the NIC into the fleet's switch; `false` leaves the VM alone on a switch of its own.
    pub network: bool,
}

impl Default for VmDevices {
    /// No disks, no input, on the fleet's switch.
    fn default() -> VmDevices {
        VmDevices { disks: Vec::new(), keyboard_script: None, keyboard_feed: None, network: true }
    }
}

impl VmDevices {
    /// Attaches the devices to `vm`, just built, and plugs it into `switch` if it is networked.
    pub(crate) fn attach(&self, vm: &mut Vm, switch: &Arc<Switch>) {
        for disk in &self.disks {
            vm.attach_disk(Arc::clone(disk));
        }
        if let Some(script) = &self.keyboard_script {
            vm.add_keyboard_script(script);
        }
        if let Some(feed) = &self.keyboard_feed {
            feed(vm.keyboard_input());
        }
        if self.network {
            vm.connect_switch(switch);
        }
    }
}

impl fmt::Debug for VmDevices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let disks: Vec<_> = self.disks.iter().map(|d| (d.path().to_owned(), d.read_only())).collect();
        f.debug_struct("VmDevices")
            .field("disks", &disks)
            .field("keyboard_script", &self.keyboard_script.as_ref().map(|s| s.len()))
            .field("keyboard_feed", &self.keyboard_feed.is_some())
            .field("network", &self.network)
            .finish()
    }
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
