//! The example Denali guests of `guests/`, built for i586 by this crate's build script and
//! bundled as ELF images, each with the output and exit status a correct run produces.
//!
//! The compute guests' expected checksums are computed on the host by the same `kernels` crate
//! the guests run, so a mismatch means the engine ran the guest wrong, not that a constant went
//! stale. Computing one costs what the kernel costs natively (well under a second in release,
//! a few seconds in an unoptimised build).
//!
//! ```no_run
//! let sieve = denali_examples::find("sieve").unwrap();
//! assert_eq!(&sieve.elf[..4], b"\x7fELF");
//! let expected = (sieve.expected_output.unwrap())();
//! assert!(expected.starts_with("sieve: "));
//! ```

/// Guest memory size [`Example::expected_output`] assumes for guests whose output depends on
/// it: the kernel's default of 16 MiB.
pub const DEFAULT_MEM_SIZE: u32 = 16 << 20;

/// One bundled example guest.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// Short name: the guest binary's name in `guests/examples`.
    pub name: &'static str,
    /// One line on what the guest does.
    pub description: &'static str,
    /// The ELF image (ELF32, EM_386, ET_EXEC, statically linked, loading at 0x1000).
    pub elf: &'static [u8],
    /// Computes the exact console output of a correct run, or `None` if it cannot be known in
    /// advance. Output that depends on the VM (the `hello` guest prints its VM id and memory
    /// size) is given for VM 0 with [`DEFAULT_MEM_SIZE`] of memory; see [`hello_output`] for
    /// other VMs.
    pub expected_output: Option<fn() -> String>,
    /// Exit status of a correct run.
    pub expected_exit: u32,
    /// For a compute guest, the same kernel built as a static i386 Linux program
    /// (`guests/native`: same target, flags and profile, but Linux system calls instead of
    /// Denali's ports), which prints the same output and exits with the same status. It is
    /// the native baseline of `denali bench`. `None` for `hello`, which has no kernel.
    pub native: Option<&'static [u8]>,
}

macro_rules! image {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".elf"))
    };
}

macro_rules! native {
    ($name:literal) => {
        Some(include_bytes!(concat!(env!("OUT_DIR"), "/native-", $name, ".elf")))
    };
}

/// The console output of a compute guest: `<name>: <checksum in hex>\n`.
fn kernel_output(name: &str) -> String {
    let kernel = kernels::ALL.iter().find(|k| k.name == name).expect("every compute guest has a kernel");
    format!("{name}: {:x}\n", (kernel.run)())
}

/// The output of the `hello` guest running as VM `vm_id` with `mem_size` bytes of memory.
pub fn hello_output(vm_id: u32, mem_size: u32) -> String {
    const MIB: u32 = 1 << 20;
    let size =
        if mem_size & (MIB - 1) == 0 { format!("{} MiB", mem_size / MIB) } else { format!("{} KiB", mem_size / 1024) };
    format!("Hello from a Denali guest!\nHello from Denali VM {vm_id} with {size} of memory\n")
}

/// Every bundled example: `hello` first, then one guest per compute kernel.
pub const ALL: &[Example] = &[
    Example {
        name: "hello",
        description: "Greets and prints its VM id and memory size",
        elf: image!("hello"),
        expected_output: Some(|| hello_output(0, DEFAULT_MEM_SIZE)),
        expected_exit: 0,
        native: None,
    },
    Example {
        name: "sieve",
        description: "Segmented sieve of Eratosthenes up to 25,000,000",
        elf: image!("sieve"),
        expected_output: Some(|| kernel_output("sieve")),
        expected_exit: 0,
        native: native!("sieve"),
    },
    Example {
        name: "crc32",
        description: "Table-driven CRC-32 of 24 MiB of generated data",
        elf: image!("crc32"),
        expected_output: Some(|| kernel_output("crc32")),
        expected_exit: 0,
        native: native!("crc32"),
    },
    Example {
        name: "sha256",
        description: "SHA-256 of 3 MiB of generated data",
        elf: image!("sha256"),
        expected_output: Some(|| kernel_output("sha256")),
        expected_exit: 0,
        native: native!("sha256"),
    },
    Example {
        name: "quicksort",
        description: "Quicksort of 20 LCG-generated arrays of 64Ki u32",
        elf: image!("quicksort"),
        expected_output: Some(|| kernel_output("quicksort")),
        expected_exit: 0,
        native: native!("quicksort"),
    },
    Example {
        name: "fib",
        description: "Naive doubly-recursive Fibonacci up to fib(34)",
        elf: image!("fib"),
        expected_output: Some(|| kernel_output("fib")),
        expected_exit: 0,
        native: native!("fib"),
    },
    Example {
        name: "matmul",
        description: "24 chained 128x128 wrapping u32 matrix multiplications",
        elf: image!("matmul"),
        expected_output: Some(|| kernel_output("matmul")),
        expected_exit: 0,
        native: native!("matmul"),
    },
    Example {
        name: "bignum",
        description: "12000! with 32-bit limbs",
        elf: image!("bignum"),
        expected_output: Some(|| kernel_output("bignum")),
        expected_exit: 0,
        native: native!("bignum"),
    },
];

/// The number of blocks the `disk` guest writes and reads back on disk 0.
pub const DISK_GUEST_BLOCKS: u32 = 8;

/// The output of a correct run of the `disk` guest: the FNV-1a checksum of the pattern it
/// writes to blocks 0 to 7 and reads back.
pub fn disk_output() -> String {
    let mut checksum: u32 = 0x811C_9DC5;
    for block in 0..DISK_GUEST_BLOCKS as usize {
        for i in 0..4096usize {
            #[allow(clippy::cast_possible_truncation, reason = "the pattern is the low byte, as the guest computes it")]
            let byte = (block * 31 + i * 7 + (i >> 8)) as u8;
            checksum = (checksum ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
    }
    format!("disk: wrote, flushed and read back {DISK_GUEST_BLOCKS} blocks, checksum {checksum:08x}\n")
}

/// The guests that exercise the devices and the virtual instructions rather than compute. They
/// are kept out of [`ALL`], whose users treat every entry as runnable with no options and as a
/// compute kernel with a native build; [`find`] knows them.
pub const DEVICES: &[Example] = &[
    Example {
        name: "idle",
        description: "Sleeps about one second on idle-with-timeout and the timer, waking four times",
        elf: image!("idle"),
        expected_output: Some(|| {
            "idle: round 1: woken by the timer: true\nidle: round 2: woken by the timer: true\n\
             idle: round 3: timeout expired: true\nidle: round 4: timeout expired: true\n\
             idle: slept at least 1 s: true\n"
                .to_owned()
        }),
        expected_exit: 0,
        native: None,
    },
    Example {
        name: "disk",
        description: "Writes, flushes and reads back 8 blocks of disk 0 (run with --disk FILE)",
        elf: image!("disk"),
        expected_output: Some(disk_output),
        expected_exit: 0,
        native: None,
    },
    Example {
        name: "fault",
        description: "Stores past the end of memory on purpose: a MEMORY fault",
        elf: image!("fault"),
        expected_output: Some(|| "fault: writing outside memory at 0x01000000\n".to_owned()),
        expected_exit: 125,
        native: None,
    },
    Example {
        name: "pingpong",
        description: "Pairs of VMs bounce a frame over the switch (run as a fleet of an even --count; alone: exits 2)",
        elf: image!("pingpong"),
        expected_output: Some(|| pingpong_alone_output(0)),
        expected_exit: PINGPONG_EXIT_NO_PEER,
        native: None,
    },
];

/// Guests whose every run differs in its instruction count and timing, because they spin on
/// the time register: kept out of [`DEVICES`], whose lone runs are compared between engines
/// instruction for instruction. [`find`] knows them.
pub const TIMED: &[Example] = &[Example {
    name: "pingpong-busy",
    description: "pingpong with a busy-idle loop: spins on TIME_US and IRQ_PENDING instead of idling",
    elf: image!("pingpong-busy"),
    expected_output: Some(|| pingpong_alone_output(0)),
    expected_exit: PINGPONG_EXIT_NO_PEER,
    native: None,
}];

/// Round trips a `pingpong` pair makes when none is typed on the starting VM's keyboard.
pub const PINGPONG_DEFAULT_ROUNDS: u32 = 1000;
/// Length in bytes of every `pingpong` frame.
pub const PINGPONG_FRAME_LEN: u32 = 64;
/// Waits of [`PINGPONG_WAIT_US`] in a row without a frame after which a `pingpong` VM gives up.
pub const PINGPONG_GIVE_UP_WAITS: u32 = 200;
/// The longest single wait of a `pingpong` VM for a frame, in microseconds.
pub const PINGPONG_WAIT_US: u32 = 5_000;
/// Exit status of a `pingpong` VM whose peer never answered (a lone VM, or an odd fleet's last).
pub const PINGPONG_EXIT_NO_PEER: u32 = 2;

/// What a `pingpong` VM with id `vm_id` prints when its peer never answers.
pub fn pingpong_alone_output(vm_id: u32) -> String {
    format!(
        "pingpong: vm {vm_id}: no frame from vm {} in {PINGPONG_GIVE_UP_WAITS} waits of {PINGPONG_WAIT_US} us; \
         giving up\n",
        vm_id ^ 1
    )
}

/// The example called `name`, among [`ALL`], [`DEVICES`] and [`TIMED`].
pub fn find(name: &str) -> Option<&'static Example> {
    ALL.iter().chain(DEVICES).chain(TIMED).find(|e| e.name == name)
}
