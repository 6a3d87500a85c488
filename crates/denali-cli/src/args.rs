//! The command line: subcommands, options, and the parsers for sizes and addresses.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use denali_abi::boot::{MAX_MEM_SIZE, MIN_MEM_SIZE, PAGE_SIZE};
use denali_engine::{GuestMemory, MemoryError};
use denali_kernel::size::format_size;

const EXIT_CODES: &str = "\
Exit status:
  0-255  run: the guest terminated; the status is its exit status & 0xFF
  1      an error of the host (for example, writing the console output failed)
  2      bad usage or bad input: unknown option, bad value, missing or malformed image file,
         missing or unreadable conformance vectors directory
  3      check: the image contains instructions outside the Denali subset
  4      conformance: a case failed, or a subset form (of those --filter selects) has no vectors
  124    run: stopped by --max-instructions
  125    run: guest fault (an exception with no handler, a double fault, or an idle with no
         timeout that nothing can wake); a diagnostic goes to stderr";

/// Runs, checks and disassembles Denali guests.
#[derive(Debug, Parser)]
#[command(name = "denali", version, after_long_help = EXIT_CODES)]
#[command(long_about = "Runs, checks and disassembles Denali guests: 32-bit x86 programs for the Denali \
isolation kernel, each in its own VM with flat physical memory, a virtual-register page at address 0 and \
devices reached by IN and OUT.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs a guest in a new VM; its console goes to stdout.
    #[command(after_long_help = EXIT_CODES)]
    Run(RunArgs),
    /// Checks every executable segment of an image against the Denali instruction subset.
    #[command(after_long_help = EXIT_CODES)]
    Check(ImageArgs),
    /// Disassembles every executable segment of an image, marking instructions outside the subset.
    #[command(after_long_help = EXIT_CODES)]
    Disasm(ImageArgs),
    /// Lists the bundled example guests.
    Examples,
    /// Runs the ISA conformance vectors (conformance/README.md) on an engine and reports every
    /// failing form.
    #[command(after_long_help = EXIT_CODES)]
    Conformance(ConformanceArgs),
    /// Times the compute examples under each engine, natively and under qemu-i386, and prints
    /// times, instructions per second and the geomean time ratio to native (last line).
    #[command(after_long_help = BENCH_HELP)]
    Bench(BenchArgs),
    /// Runs a fleet of VMs (of one image, or as a manifest describes) under the scheduler and prints
    /// a summary.
    #[command(
        after_long_help = FLEET_HELP,
        mut_arg("image", |a| a.help(
            "An ELF32 executable, as for `run`, or a fleet manifest: a file whose name ends in .toml"
        ))
    )]
    Fleet(FleetArgs),
    /// Runs one of the paper's experiments as a series of pingpong fleets and prints a
    /// Markdown table (README.md, "Experiments").
    Experiment(ExperimentArgs),
}

/// The paper's experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExperimentKind {
    /// Batched versus synchronous interrupts: each fleet size both ways.
    Interrupts,
    /// Idle-with-timeout versus a busy-idle loop: `pingpong` versus `pingpong-busy`.
    Idle,
    /// Switch throughput as the number of VM pairs grows.
    Switch,
}

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// Which experiment.
    #[arg(value_enum)]
    pub name: ExperimentKind,
    /// Fleet sizes, comma-separated even numbers (default: interrupts 2,20,200,2000; idle
    /// 2,20,200; switch 2,20,200,2000,20000).
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', value_parser = parse_count)]
    pub counts: Option<Vec<u64>>,
    /// Stop each fleet once it retired this many instructions per VM (at least 50 million in
    /// all); default: interrupts and idle 1,000,000 (an idling pingpong pair completes its 1000
    /// rounds well within it), switch 100,000.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub instructions_per_vm: Option<u64>,
    /// Also run this many VMs of the `fib` compute example in every fleet: busy VMs that use
    /// whole quanta and compete with the pingpong pairs for the workers.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub busy: u64,
    /// The execution engine; interp unless told, so that the tables measure the kernel.
    #[arg(long, value_enum, default_value_t = EngineKind::Interp)]
    pub engine: EngineKind,
    /// Worker threads; defaults to the host's core count.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub threads: Option<u64>,
}

const FLEET_HELP: &str = "\
A manifest (MANIFEST.toml) describes a mixed fleet: groups of VMs with their own image, count,
memory, engine, disks, keyboard, console and network, and fleet-wide settings. Options given on
the command line override the manifest's fleet-wide settings. See README.md, section Fleets.

Exit status:
  0  every VM terminated (whatever its status)
  1  an error of the host
  2  bad usage or bad input (including a manifest with an error: FILE:LINE:COLUMN: field ...)
  125  a VM faulted or could not boot; the others ran on";

/// Where each fleet VM's console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Lines on stdout, prefixed with the VM id.
    Prefix,
    /// One file per VM in this directory (vm-N.txt).
    Files(PathBuf),
    /// Discarded.
    None,
}

/// Parses `--console`: `prefix`, `files:DIR` or `none`.
pub fn parse_console(text: &str) -> Result<ConsoleMode, String> {
    match text {
        "prefix" => Ok(ConsoleMode::Prefix),
        "none" => Ok(ConsoleMode::None),
        _ => match text.strip_prefix("files:") {
            Some("") => Err("files: needs a directory".to_owned()),
            Some(dir) => Ok(ConsoleMode::Files(PathBuf::from(dir))),
            None => Err(format!("unknown console mode '{text}' (use prefix, files:DIR or none)")),
        },
    }
}

/// Parses a count of at least 1.
pub fn parse_count(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("the value must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a positive number")),
    }
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The image of every VM, or a fleet manifest (a file whose name ends in `.toml`, see
    /// README: mixed fleets with disks and network settings).
    #[command(flatten)]
    pub source: ImageArgs,
    /// How many VMs of the image to run (not with a manifest).
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,
    /// Guest memory of each VM (as for `run`; default 16M; not with a manifest).
    #[arg(long, value_name = "SIZE", value_parser = parse_mem)]
    pub mem: Option<u32>,
    /// Total guest memory the gatekeeper lets live at once; more VMs wait, in order.
    #[arg(long, value_name = "SIZE", value_parser = parse_budget)]
    pub mem_budget: Option<u64>,
    /// The execution engine; defaults to jit where this host can run it (x86-64 with BMI2), else
    /// interp. A fleet's JIT is tiered: each VM interprets a block until it has run 128 times,
    /// so code that runs a few times (most of an idle VM's) is never translated; and its VMs
    /// share translations (of the same bytes, for the same memory size).
    #[arg(long, value_enum)]
    pub engine: Option<EngineKind>,
    /// Worker threads; defaults to the host's core count.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub threads: Option<u64>,
    /// Instructions per quantum (default 10000).
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub quantum: Option<u64>,
    /// Deliver interrupts synchronously: a woken VM runs at once (the paper's comparison).
    #[arg(long)]
    pub sync_interrupts: bool,
    /// Stop the fleet once its VMs retired this many instructions in total.
    #[arg(long, value_name = "N")]
    pub max_instructions: Option<u64>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Where VM consoles go: prefix (lines on stdout, prefixed with the VM id; the default),
    /// files:DIR (DIR/vm-N.txt), none.
    #[arg(long, value_name = "MODE", value_parser = parse_console)]
    pub console: Option<ConsoleMode>,
    /// Show boot progress on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Attach a disk to every VM: FILE[,ro] as for `run`. A read-only disk is shared; a
    /// writable one needs `{id}` in FILE (replaced by the VM id) when there are several VMs.
    /// Not with a manifest.
    #[arg(long, value_name = "FILE[,ro]", value_parser = parse_disk)]
    pub disk: Vec<DiskSpec>,
    /// Type the bytes of FILE into every VM's keyboard (not with a manifest).
    #[arg(long, value_name = "FILE")]
    pub keyboard_script: Option<PathBuf>,
    /// Type the host's stdin into the keyboard of VM VM_ID.
    #[arg(long, value_name = "VM_ID")]
    pub keyboard_stdin: Option<u32>,
    /// Write every frame that crosses the fleet's switch to FILE (pcap format).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
}

/// Parses `--mem-budget`: a size with an optional K, M, G or T suffix.
pub fn parse_budget(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, unit) = [("t", 1u64 << 40), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)]
        .iter()
        .find_map(|(suffix, unit)| lower.strip_suffix(suffix).map(|d| (d.trim_end(), *unit)))
        .unwrap_or((lower.as_str(), 1));
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("'{text}' is not a memory size (bytes, or a number with K, M, G or T)"))
}

/// Where the image comes from: exactly one of IMAGE, --example and --flat.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["image", "example", "flat"])))]
pub struct ImageArgs {
    /// An ELF32 executable (little-endian, EM_386, ET_EXEC, statically linked); segments load at their
    /// physical address (p_paddr).
    #[arg(value_name = "IMAGE")]
    pub image: Option<PathBuf>,
    /// A bundled example guest (see `denali examples`).
    #[arg(long, value_name = "NAME")]
    pub example: Option<String>,
    /// A raw image: the whole file is loaded at --load and is executable.
    #[arg(long, value_name = "FILE", requires = "load")]
    pub flat: Option<PathBuf>,
    /// Load address of the --flat image (decimal or 0x hex), at least 0x1000.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr, requires = "flat")]
    pub load: Option<u32>,
    /// Entry point of the --flat image (decimal or 0x hex); defaults to the load address.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr, requires = "flat")]
    pub entry: Option<u32>,
}

/// The execution engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The portable interpreter.
    Interp,
    /// The basic-block JIT (x86-64 hosts with BMI2), with the interpreter as its fallback.
    Jit,
}

/// How the JIT keeps a guest inside its memory (`--memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum MemoryKind {
    /// A reservation of the whole 32-bit address space plus guard pages (Linux x86-64): the
    /// JIT checks no bounds inline, an access outside memory faults in the host and becomes
    /// the guest's exception. Falls back to checked where the host cannot reserve it.
    #[default]
    Guarded,
    /// Memory of the guest's own size; the JIT checks every access inline.
    Checked,
}

impl MemoryKind {
    /// Guest memory of `size` bytes for `engine`: guarded for the JIT when asked and the host
    /// allows (else checked, with no error), checked for the interpreter (it checks every
    /// access itself and gains nothing from the reservation).
    pub fn new_memory(self, engine: EngineKind, size: u32) -> Result<GuestMemory, MemoryError> {
        if self == MemoryKind::Guarded
            && engine == EngineKind::Jit
            && let Ok(memory) = GuestMemory::guarded(u64::from(size))
        {
            return Ok(memory);
        }
        GuestMemory::new(u64::from(size))
    }
}

impl EngineKind {
    /// The engine `run`, `conformance` and `fleet` use unless told: the JIT where this host can
    /// run it.
    pub fn host_default() -> EngineKind {
        if denali_jit::Jit::available() { EngineKind::Jit } else { EngineKind::Interp }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: ImageArgs,
    /// Guest memory size: bytes, or with a K, M or G suffix (KiB, MiB, GiB). A multiple of 4 KiB from
    /// 8K to 4G less 4K.
    #[arg(long, value_name = "SIZE", value_parser = parse_mem, default_value = "16M")]
    pub mem: u32,
    /// The execution engine; defaults to jit where this host can run it (x86-64 with BMI2), else
    /// interp.
    #[arg(long, value_enum, default_value_t = EngineKind::host_default())]
    pub engine: EngineKind,
    /// How the JIT isolates guest memory: guarded (a 4 GiB reservation with guard pages, no
    /// inline bounds checks; falls back to checked where the host refuses it) or checked
    /// (every access checked inline). The interpreter always checks.
    #[arg(long, value_enum, default_value_t = MemoryKind::Guarded)]
    pub memory: MemoryKind,
    /// Stop once this many instructions have retired (exit status 124).
    #[arg(long, value_name = "N")]
    pub max_instructions: Option<u64>,
    /// Trace every instruction to stderr (slow).
    #[arg(long)]
    pub trace: bool,
    /// Trace every instruction to FILE instead of stderr (slow).
    #[arg(long, value_name = "FILE")]
    pub trace_file: Option<PathBuf>,
    /// Write the final CPU state and why the guest stopped to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    pub dump_state: Option<PathBuf>,
    /// Attach a virtual disk: a host file whose size is a multiple of 4096 bytes; `,ro` attaches
    /// it read-only. Repeatable: the first is disk 0.
    #[arg(long, value_name = "FILE[,ro]", value_parser = parse_disk)]
    pub disk: Vec<DiskSpec>,
    /// Type the bytes of FILE into the guest's keyboard.
    #[arg(long, value_name = "FILE", conflicts_with = "keyboard_stdin")]
    pub keyboard_script: Option<PathBuf>,
    /// Type the host's stdin into the guest's keyboard.
    #[arg(long)]
    pub keyboard_stdin: bool,
    /// Write every frame that crosses the virtual switch to FILE (pcap format).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
}

/// A `--disk` option: the image file and whether it is attached read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub read_only: bool,
}

/// Parses `--disk`: `FILE`, `FILE,ro` or `FILE,rw`.
pub fn parse_disk(text: &str) -> Result<DiskSpec, String> {
    let (path, read_only) = match text.rsplit_once(',') {
        Some((path, "ro")) => (path, true),
        Some((path, "rw")) => (path, false),
        Some((_, mode)) => return Err(format!("unknown disk mode '{mode}' (use ro or rw)")),
        None => (text, false),
    };
    if path.is_empty() {
        return Err("the disk needs a file name".to_owned());
    }
    Ok(DiskSpec { path: PathBuf::from(path), read_only })
}

#[derive(Debug, Args)]
pub struct ConformanceArgs {
    /// The execution engine under test; defaults to jit where this host can run it, else interp.
    #[arg(long, value_enum, default_value_t = EngineKind::host_default())]
    pub engine: EngineKind,
    /// The JIT's memory isolation under test (as for `run`): each case runs in a guarded or a
    /// checked memory.
    #[arg(long, value_enum, default_value_t = MemoryKind::Guarded)]
    pub memory: MemoryKind,
    /// Run only the forms whose name contains FORM (case-insensitive), e.g. `Add_` or `shl`.
    #[arg(long, value_name = "FORM")]
    pub filter: Option<String>,
    /// The vectors directory; defaults to conformance/vectors in the current directory, else the
    /// one in the source tree denali was built from.
    #[arg(long, value_name = "DIR")]
    pub vectors: Option<PathBuf>,
    /// Run N cases of each form, spread evenly over its file, instead of all.
    #[arg(long, value_name = "N", value_parser = parse_sample)]
    pub sample: Option<usize>,
}

const BENCH_HELP: &str = "\
native is the same kernel built as a static i386 Linux program (guests/native) and run directly;
qemu-i386 runs that program under QEMU's user-mode emulator (Debian: apt-get install qemu-user).
A party that prints a wrong answer is reported as an error, not a time.

Exit status:
  0  every party that ran gave the right answer
  1  a party gave a wrong answer, or an error of the host
  2  bad usage (for example, a --filter that matches no compute example)";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Engines to time, comma-separated; defaults to every engine of this build.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "ENGINE")]
    pub engine: Vec<EngineKind>,
    /// Time only the compute examples whose name contains NAME (case-insensitive).
    #[arg(long, value_name = "NAME")]
    pub filter: Option<String>,
    /// Runs per party and kernel; the best time counts.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = parse_repeat)]
    pub repeat: u32,
    /// The JIT's memory isolation (as for `run`): guarded or checked.
    #[arg(long, value_enum, default_value_t = MemoryKind::Guarded)]
    pub memory: MemoryKind,
}

/// Parses `--repeat`: a count of at least 1.
pub fn parse_repeat(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("the repeat count must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a number of runs")),
    }
}

/// Parses `--sample`: a count of at least 1.
pub fn parse_sample(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("the sample must be at least 1 case".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a number of cases")),
    }
}

/// Parses a memory size: `16777216`, `16M`, `16MiB`, `8k`, `1G`.
pub fn parse_mem(text: &str) -> Result<u32, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let (digits, unit) =
        [("kib", 1u64 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30)]
            .iter()
            .find_map(|(suffix, unit)| lower.strip_suffix(suffix).map(|d| (d.trim_end(), *unit)))
            .unwrap_or((lower.as_str(), 1));
    let count: u64 =
        digits.parse().map_err(|_| format!("'{text}' is not a memory size (bytes, or a number with K, M or G)"))?;
    let bytes = count
        .checked_mul(unit)
        .ok_or_else(|| format!("{text} is too large: the maximum is {}", format_size(MAX_MEM_SIZE.into())))?;
    if bytes == 0 {
        return Err("memory size 0 is too small: the minimum is 8 KiB".to_owned());
    }
    if bytes % u64::from(PAGE_SIZE) != 0 {
        return Err(format!("{text} is not a multiple of the 4 KiB page"));
    }
    if bytes < u64::from(MIN_MEM_SIZE) {
        return Err(format!("{text} is too small: the minimum is {}", format_size(MIN_MEM_SIZE.into())));
    }
    u32::try_from(bytes).ok().filter(|b| *b <= MAX_MEM_SIZE).ok_or_else(|| {
        format!("{text} is too large: the maximum is 4 GiB less 4 KiB ({})", format_size(MAX_MEM_SIZE.into()))
    })
}

/// Parses an address: decimal, or hex with a `0x` prefix.
pub fn parse_addr(text: &str) -> Result<u32, String> {
    let trimmed = text.trim();
    let parsed = match trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => trimmed.parse(),
    };
    parsed.map_err(|_| format!("'{text}' is not a 32-bit address (decimal, or hex with 0x)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_mem("16M"), Ok(16 << 20));
        assert_eq!(parse_mem("16m"), Ok(16 << 20));
        assert_eq!(parse_mem("16MiB"), Ok(16 << 20));
        assert_eq!(parse_mem("8k"), Ok(8192));
        assert_eq!(parse_mem("8 KiB"), Ok(8192));
        assert_eq!(parse_mem("1G"), Ok(1 << 30));
        assert_eq!(parse_mem("65536"), Ok(65536));
        assert_eq!(parse_mem("4194300K"), Ok(MAX_MEM_SIZE));
        for bad in ["0", "12345", "5G", "4G", "abc", "4K", "", "M", "-8K", "99999999999999999999G"] {
            let err = parse_mem(bad).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(parse_mem("12345").unwrap_err().contains("12345"));
        assert!(parse_mem("5G").unwrap_err().contains("5G"));
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("0x1000"), Ok(0x1000));
        assert_eq!(parse_addr("4096"), Ok(4096));
        assert_eq!(parse_addr("0XFFFFFFFF"), Ok(u32::MAX));
        assert!(parse_addr("0x100000000").is_err());
        assert!(parse_addr("zz").is_err());
    }

    #[test]
    fn disk_options() {
        assert_eq!(parse_disk("a.img"), Ok(DiskSpec { path: "a.img".into(), read_only: false }));
        assert_eq!(parse_disk("a.img,ro"), Ok(DiskSpec { path: "a.img".into(), read_only: true }));
        assert_eq!(parse_disk("a.img,rw"), Ok(DiskSpec { path: "a.img".into(), read_only: false }));
        assert!(parse_disk("a.img,xx").is_err());
        assert!(parse_disk(",ro").is_err());
    }

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
