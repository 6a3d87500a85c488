//! A fleet plan: what `denali fleet` runs, whether the command line or a manifest described it.
//! [`Plan::build`] turns it into the fleet's VMs and settings, opening every file first (disks,
//! capture, console directories), so a bad one fails the command before any VM boots, with
//! the place it was given ([`Located::origin`]).
//!
//! Disks: a read-only file is opened once and shared by every VM that names it; a writable
//! file may be attached to one VM only, which is checked here across the whole fleet (by
//! canonical path) and across processes by the file lock `DiskImage::open` takes.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use denali_engine::{Engine, Interpreter, SharedCode};
use denali_fleet::{EngineFactory, FleetConfig, InterruptMode, KeyboardFeed, VmSpec};
use denali_kernel::devices::keyboard::KeyboardInput;
use denali_kernel::devices::pcap::Capture;
use denali_kernel::{DiskImage, Image, Switch};

use crate::args::{ConsoleMode, EngineKind};
use crate::commands::fleet::console;
use crate::commands::run::NO_JIT;
use crate::error::Failure;
use crate::source::io_reason;

/// What a disk path says in place of the VM id.
pub const ID_PLACEHOLDER: &str = "{id}";

/// A value and where it was given, for messages: `--disk` or
/// ``fleet.toml:12:9: field `group[2].disks[0].path` ``.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub origin: String,
}

impl<T> Located<T> {
    pub fn new(value: T, origin: impl Into<String>) -> Located<T> {
        Located { value, origin: origin.into() }
    }

    /// Bad input at this place.
    pub fn error(&self, message: impl std::fmt::Display) -> Failure {
        Failure::input(format!("{}: {message}", self.origin))
    }
}

/// A whole fleet.
#[derive(Debug)]
pub struct Plan {
    /// The groups in VM-id order: group 0's VMs come first.
    pub groups: Vec<GroupPlan>,
    pub threads: Option<u64>,
    pub quantum: u64,
    pub interrupts: InterruptMode,
    pub mem_budget: Option<u64>,
    pub max_instructions: Option<u64>,
    pub engine: EngineKind,
    /// For groups that do not choose their own.
    pub console: Located<ConsoleMode>,
    pub pcap: Option<Located<PathBuf>>,
    /// The VM whose keyboard gets the host's stdin.
    pub keyboard_stdin: Option<Located<u32>>,
}

/// VMs of one image with the same settings.
#[derive(Debug)]
pub struct GroupPlan {
    pub image: Arc<Image>,
    pub count: u32,
    /// Guest memory of each VM, in bytes.
    pub mem: u32,
    /// The group's engine instead of the fleet's.
    pub engine: Option<EngineKind>,
    /// In index order (disk 0 first).
    pub disks: Vec<Located<DiskPlan>>,
    pub keyboard_script: Option<Arc<[u8]>>,
    pub console: Option<Located<ConsoleMode>>,
    pub network: bool,
}

/// One disk of each VM of a group.
#[derive(Debug, Clone)]
pub struct DiskPlan {
    /// The host file; `{id}` in it stands for the VM id, so each VM gets its own file.
    pub path: PathBuf,
    pub read_only: bool,
    /// Create a missing file of this many bytes (zeros); an existing file is used as it is.
    pub create_size: Option<u64>,
}

/// What [`Plan::build`] made.
pub struct Built {
    /// VM `i` is `specs[i]`.
    pub specs: Vec<VmSpec>,
    pub config: FleetConfig,
    /// The capture file to finish after the run.
    pub pcap: Option<PathBuf>,
    /// The consoles' lines still on their way to stdout: finished after the run.
    pub console_lines: Arc<console::Lines>,
}

impl Plan {
    /// Total VMs; an error if the ids would not fit in 32 bits.
    pub fn vm_count(&self) -> Result<u32, Failure> {
        self.groups
            .iter()
            .try_fold(0u32, |total, group| total.checked_add(group.count))
            .ok_or_else(|| Failure::input("the fleet has more VMs than 32-bit VM ids can number"))
    }

    pub fn build(&self) -> Result<Built, Failure> {
        let total = self.vm_count()?;
        let mut engines = Engines::default();
        let mut config = FleetConfig::new();
        if let Some(threads) = self.threads {
            config.threads = usize::try_from(threads).unwrap_or(usize::MAX);
        }
        config.quantum = self.quantum;
        config.interrupts = self.interrupts;
        config.mem_budget = self.mem_budget;
        config.instruction_limit = self.max_instructions;
        config.engine = engines.get(self.engine)?;
        if let Some(pcap) = &self.pcap {
            let capture = Capture::create(&pcap.value)
                .map_err(|e| pcap.error(format!("{}: cannot create: {}", pcap.value.display(), io_reason(&e))))?;
            config.switch = Switch::with_capture(capture);
        }
        if let Some(stdin) = &self.keyboard_stdin
            && stdin.value >= total
        {
            return Err(stdin.error(format!(
                "there is no VM {} (the fleet's VM ids are 0 to {})",
                stdin.value,
                total.saturating_sub(1)
            )));
        }
        let mut starts = Vec::with_capacity(self.groups.len());
        let mut consoles = Vec::with_capacity(self.groups.len());
        let mut disks = DiskTable::default();
        let mut specs = Vec::with_capacity(total as usize);
        for group in &self.groups {
            starts.push(u32::try_from(specs.len()).unwrap_or(u32::MAX));
            let console = group.console.as_ref().unwrap_or(&self.console);
            consoles.push((console.value.clone(), console.origin.clone()));
            let engine = match group.engine {
                Some(kind) if kind != self.engine => Some(engines.get(kind)?),
                _ => None,
            };
            check_shared_writers(group)?;
            for _ in 0..group.count {
                let id = u32::try_from(specs.len()).unwrap_or(u32::MAX);
                let mut spec = VmSpec::new(Arc::clone(&group.image), group.mem);
                spec.engine.clone_from(&engine);
                spec.devices.network = group.network;
                spec.devices.keyboard_script.clone_from(&group.keyboard_script);
                for disk in &group.disks {
                    spec.devices.disks.push(disks.attach(disk, id)?);
                }
                if self.keyboard_stdin.as_ref().is_some_and(|stdin| stdin.value == id) {
                    let feed: KeyboardFeed = Arc::new(|input: KeyboardInput| {
                        // The reader blocks on stdin for as long as the process lives.
                        drop(input.spawn_reader(io::stdin()));
                    });
                    spec.devices.keyboard_feed = Some(feed);
                }
                specs.push(spec);
            }
        }
        let (factory, console_lines) = console::factory(starts, &consoles)?;
        config.console = factory;
        Ok(Built { specs, config, pcap: self.pcap.as_ref().map(|p| p.value.clone()), console_lines })
    }
}

/// A writable disk without `{id}` in a group of several VMs would be one file for all of them.
fn check_shared_writers(group: &GroupPlan) -> Result<(), Failure> {
    for disk in &group.disks {
        let templated = disk.value.path.to_string_lossy().contains(ID_PLACEHOLDER);
        if !disk.value.read_only && !templated && group.count > 1 {
            return Err(disk.error(format!(
                "writable disk {} would be attached to all {} VMs of the group; put {ID_PLACEHOLDER} in the \
                 path for one disk per VM, or make it read-only",
                disk.value.path.display(),
                group.count
            )));
        }
    }
    Ok(())
}

/// The path of a disk for VM `id`.
pub fn disk_path(template: &Path, id: u32) -> PathBuf {
    let text = template.to_string_lossy();
    if text.contains(ID_PLACEHOLDER) {
        PathBuf::from(text.replace(ID_PLACEHOLDER, &id.to_string()))
    } else {
        template.to_owned()
    }
}

/// Every disk file opened for the fleet, by canonical path.
#[derive(Default)]
struct DiskTable {
    open: HashMap<PathBuf, Opened>,
}

struct Opened {
    image: Arc<DiskImage>,
    /// The first VM it was attached to, and where it was named for that VM.
    vm: u32,
    origin: String,
}

impl DiskTable {
    /// The disk `disk` names for VM `id`: shared if it is read-only and already open.
    fn attach(&mut self, disk: &Located<DiskPlan>, id: u32) -> Result<Arc<DiskImage>, Failure> {
        let path = disk_path(&disk.value.path, id);
        if let Some(size) = disk.value.create_size {
            create_missing(&path, size)
                .map_err(|e| disk.error(format!("disk {}: cannot create: {}", path.display(), io_reason(&e))))?;
        }
        let canonical = std::fs::canonicalize(&path)
            .map_err(|e| disk.error(format!("disk {}: {}", path.display(), io_reason(&e))))?;
        if let Some(opened) = self.open.get(&canonical) {
            if opened.image.read_only() && disk.value.read_only {
                return Ok(Arc::clone(&opened.image));
            }
            let how = if opened.image.read_only() { "read-only" } else { "writable" };
            return Err(disk.error(format!(
                "disk {} is already attached {how} to VM {} ({}); a writable disk can be attached to one VM only",
                path.display(),
                opened.vm,
                opened.origin
            )));
        }
        let image = DiskImage::open(&path, disk.value.read_only).map_err(|e| disk.error(e))?;
        self.open.insert(canonical, Opened { image: Arc::clone(&image), vm: id, origin: disk.origin.clone() });
        Ok(image)
    }
}

/// Creates `path` (and its directory) as `size` zero bytes unless it exists.
fn create_missing(path: &Path, size: u64) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => file.set_len(size),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// One engine factory per kind, made once.
#[derive(Default)]
struct Engines {
    made: HashMap<EngineKind, EngineFactory>,
}

impl Engines {
    fn get(&mut self, kind: EngineKind) -> Result<EngineFactory, Failure> {
        if let Some(factory) = self.made.get(&kind) {
            return Ok(Arc::clone(factory));
        }
        let factory = engine_factory(kind)?;
        self.made.insert(kind, Arc::clone(&factory));
        Ok(factory)
    }
}

/// Makes each VM's engine; fails before anything boots if this host cannot run the JIT.
pub fn engine_factory(kind: EngineKind) -> Result<EngineFactory, Failure> {
    Ok(match kind {
        EngineKind::Interp => {
            // Interpreters share decoded blocks: a block is reused only where a VM's memory
            // holds the same bytes, so VMs of one image decode each block once.
            let code = SharedCode::new();
            Arc::new(move || Box::new(Interpreter::sharing(Arc::clone(&code))) as Box<dyn Engine>)
        }
        EngineKind::Jit => {
            if !denali_jit::Jit::available() {
                return Err(Failure::host(NO_JIT));
            }
            // Tiered: most of a fleet VM's code runs a few times, and translating it would
            // cost each VM more than interpreting it (the interpreters share decoded blocks).
            Arc::new(denali_jit::fleet_engines())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_paths_put_the_vm_id_in_place_of_the_placeholder() {
        assert_eq!(disk_path(Path::new("d/vm-{id}.img"), 12), PathBuf::from("d/vm-12.img"));
        assert_eq!(disk_path(Path::new("base.img"), 12), PathBuf::from("base.img"));
    }
}
