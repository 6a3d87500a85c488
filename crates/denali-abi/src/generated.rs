// @generated from isa-spec/*.txt by crates/denali-isa/src/codegen.rs.
// Do not edit: change the tables, then run `DENALI_BLESS=1 cargo test -p denali-isa --test spec_codegen`.

/// Offsets of the virtual registers in page 0 (`vregs.txt`).
pub mod vreg {
    /// The constant 0x494C4E44 ("DNLI" in memory): the page is initialised. Width 4 bytes; written by the kernel.
    pub const MAGIC: u32 = 0x000;
    /// Width in bytes of [`MAGIC`].
    pub const MAGIC_WIDTH: u32 = 4;
    /// Version of the virtual architecture; 1 for this document. Width 4 bytes; written by the kernel.
    pub const ABI_VERSION: u32 = 0x004;
    /// Width in bytes of [`ABI_VERSION`].
    pub const ABI_VERSION_WIDTH: u32 = 4;
    /// Nominal virtual CPU speed in kHz: the guest instructions per millisecond the kernel schedules a running VM for. Width 4 bytes; written by the kernel.
    pub const CPU_KHZ: u32 = 0x008;
    /// Width in bytes of [`CPU_KHZ`].
    pub const CPU_KHZ_WIDTH: u32 = 4;
    /// Size of guest physical memory in bytes; valid addresses are 0 to MEM_SIZE-1. Width 4 bytes; written by the kernel.
    pub const MEM_SIZE: u32 = 0x00c;
    /// Width in bytes of [`MEM_SIZE`].
    pub const MEM_SIZE_WIDTH: u32 = 4;
    /// Microseconds since the VM booted; never decreases. Refreshed when the VM is scheduled, after every IN, OUT and idle. Width 8 bytes; written by the kernel.
    pub const TIME_US: u32 = 0x010;
    /// Width in bytes of [`TIME_US`].
    pub const TIME_US_WIDTH: u32 = 8;
    /// Identifier of this VM, unique within one kernel (a fleet), starting at 0. Width 4 bytes; written by the kernel.
    pub const VM_ID: u32 = 0x018;
    /// Width in bytes of [`VM_ID`].
    pub const VM_ID_WIDTH: u32 = 4;
    /// Interrupt-enable flag: interrupts are delivered only while this is non-zero. Initially 0. Delivery sets it to 0. Width 4 bytes; written by the guest.
    pub const IRQ_ENABLE: u32 = 0x01c;
    /// Width in bytes of [`IRQ_ENABLE`].
    pub const IRQ_ENABLE_WIDTH: u32 = 4;
    /// Bitmask of pending interrupts (see interrupts.txt). The kernel sets bits; delivery clears the bits it delivers; the guest may clear bits to discard them. Width 4 bytes; written by the both.
    pub const IRQ_PENDING: u32 = 0x020;
    /// Width in bytes of [`IRQ_PENDING`].
    pub const IRQ_PENDING_WIDTH: u32 = 4;
    /// Address of the interrupt handler; 0 means none (pending interrupts stay pending). Width 4 bytes; written by the guest.
    pub const IRQ_HANDLER: u32 = 0x024;
    /// Width in bytes of [`IRQ_HANDLER`].
    pub const IRQ_HANDLER_WIDTH: u32 = 4;
    /// Address of the exception handler; 0 means none (an exception terminates the VM with a diagnostic). Width 4 bytes; written by the guest.
    pub const EXC_HANDLER: u32 = 0x028;
    /// Width in bytes of [`EXC_HANDLER`].
    pub const EXC_HANDLER_WIDTH: u32 = 4;
    /// The NIC's Ethernet MAC address, in network byte order: 02:00 followed by VM_ID in big-endian order (02:00:00:00:00:07 for VM 7), a locally administered unicast address. Width 6 bytes; written by the kernel.
    pub const MAC: u32 = 0x02c;
    /// Width in bytes of [`MAC`].
    pub const MAC_WIDTH: u32 = 6;
    /// Kind of the last exception (see exceptions.txt); 0 if none has happened. Width 4 bytes; written by the kernel.
    pub const FAULT_KIND: u32 = 0x034;
    /// Width in bytes of [`FAULT_KIND`].
    pub const FAULT_KIND_WIDTH: u32 = 4;
    /// Address of the instruction that raised the last exception. Width 4 bytes; written by the kernel.
    pub const FAULT_EIP: u32 = 0x038;
    /// Width in bytes of [`FAULT_EIP`].
    pub const FAULT_EIP_WIDTH: u32 = 4;
    /// For a memory fault, the first guest address outside memory the access needed; otherwise 0. Width 4 bytes; written by the kernel.
    pub const FAULT_ADDR: u32 = 0x03c;
    /// Width in bytes of [`FAULT_ADDR`].
    pub const FAULT_ADDR_WIDTH: u32 = 4;
}

/// I/O ports (`ports.txt`). Every port takes 32-bit accesses.
pub mod port {
    /// Write the low byte of EAX to the console. (OUT, console).
    pub const CONSOLE_PUTC: u16 = 0x10;
    /// EAX = address of a BUFFER block: write its len bytes from addr to the console. (OUT, console).
    pub const CONSOLE_WRITE: u16 = 0x11;
    /// EAX = next input byte (0-255), or 0xFFFFFFFF when no input is queued. (IN, keyboard).
    pub const KBD_GETC: u16 = 0x20;
    /// Raise TIMER once, EAX microseconds from now; EAX = 0 cancels. Replaces any timer set before. (OUT, timer).
    pub const TIMER_ONESHOT: u16 = 0x30;
    /// Raise TIMER every EAX microseconds; EAX = 0 stops. Replaces any timer set before. (OUT, timer).
    pub const TIMER_PERIODIC: u16 = 0x31;
    /// EAX = address of a DISK block: queue one asynchronous disk operation; completion raises DISK. A request refused with an error status (including QUEUE_FULL) is not queued and raises nothing. (OUT, disk).
    pub const DISK_REQUEST: u16 = 0x40;
    /// EAX = address of a BUFFER block: queue the Ethernet frame of len bytes at addr for transmission. (OUT, nic).
    pub const NIC_SEND: u16 = 0x50;
    /// EAX = address of a BUFFER block: copy the next received frame (at most len bytes) to addr and set len to its length. (OUT, nic).
    pub const NIC_RECV: u16 = 0x51;
    /// Every port with its name and whether it is read (`true`: IN) or written (`false`: OUT).
    pub const ALL: &[(&str, u16, bool)] = &[
        ("CONSOLE_PUTC", CONSOLE_PUTC, false),
        ("CONSOLE_WRITE", CONSOLE_WRITE, false),
        ("KBD_GETC", KBD_GETC, true),
        ("TIMER_ONESHOT", TIMER_ONESHOT, false),
        ("TIMER_PERIODIC", TIMER_PERIODIC, false),
        ("DISK_REQUEST", DISK_REQUEST, false),
        ("NIC_SEND", NIC_SEND, false),
        ("NIC_RECV", NIC_RECV, false),
    ];
}

/// Field offsets of request blocks (`blocks.txt`).
pub mod block {
    /// Fields of a BUFFER request block.
    pub mod buffer {
        /// Guest address of the data.
        pub const ADDR: u32 = 0x00;
        /// Length of the data in bytes (for NIC_RECV: in, capacity; out, frame length).
        pub const LEN: u32 = 0x04;
        /// Written by the kernel: a status code (status.txt).
        pub const STATUS: u32 = 0x08;
        /// Size of the block in bytes.
        pub const SIZE: u32 = 12;
    }
    /// Fields of a DISK request block.
    pub mod disk {
        /// Operation: 1 read, 2 write, 3 flush (a barrier: completes after every earlier write is durable), 4 info.
        pub const OP: u32 = 0x00;
        /// Index of the disk among those attached to the VM, from 0.
        pub const DISK: u32 = 0x04;
        /// Block number (4096-byte blocks). For info, the kernel writes the disk's block count here.
        pub const BLOCK: u32 = 0x08;
        /// Guest address of the 4096-byte buffer (read and write).
        pub const ADDR: u32 = 0x0c;
        /// Guest-chosen value, untouched by the kernel, to match completions.
        pub const TAG: u32 = 0x10;
        /// Written by the kernel: PENDING when queued, then the final status code before DISK is raised; or at once an error status for a request it refuses.
        pub const STATUS: u32 = 0x14;
        /// Size of the block in bytes.
        pub const SIZE: u32 = 24;
    }
}

/// Status codes written into request blocks (`status.txt`).
pub mod status {
    /// The operation completed.
    pub const OK: u32 = 0;
    /// A buffer lies (partly) outside guest memory or in page 0.
    pub const BAD_ADDR: u32 = 1;
    /// A length is too large for the device, or not what the operation needs.
    pub const BAD_LEN: u32 = 2;
    /// Unknown operation code.
    pub const BAD_OP: u32 = 3;
    /// No such disk, or the device is not attached to this VM.
    pub const NO_DEVICE: u32 = 4;
    /// Block number past the end of the disk.
    pub const OUT_OF_RANGE: u32 = 5;
    /// Write to a read-only disk.
    pub const READ_ONLY: u32 = 6;
    /// NIC_RECV found no frame queued.
    pub const EMPTY: u32 = 7;
    /// The device's queue is full; retry later.
    pub const QUEUE_FULL: u32 = 8;
    /// The host failed the operation.
    pub const IO_ERROR: u32 = 9;
    /// Queued; the final status follows with a completion interrupt.
    pub const PENDING: u32 = 0xFFFFFFFF;
}

/// Interrupt sources: bit numbers in `IRQ_PENDING` (`interrupts.txt`).
pub mod irq {
    /// The one-shot timer expired, or a period of the periodic timer elapsed.
    pub const TIMER: u32 = 0;
    /// One or more frames were queued for NIC_RECV.
    pub const NIC_RX: u32 = 1;
    /// One or more input bytes were queued for KBD_GETC.
    pub const KEYBOARD: u32 = 2;
    /// One or more disk requests completed.
    pub const DISK: u32 = 3;
}

/// Exception kinds, as in `FAULT_KIND` (`exceptions.txt`).
pub mod exception {
    /// DIV or IDIV by zero, or a quotient that does not fit (x86 #DE).
    pub const DIVIDE: u32 = 1;
    /// An instruction outside the subset, an undecodable byte sequence, or UD2 (x86 #UD).
    pub const INVALID: u32 = 2;
    /// An access (data, stack, string or instruction fetch) needed an address at or above MEM_SIZE.
    pub const MEMORY: u32 = 3;
    /// INT3 (x86 #BP). The frame's return address is the instruction after INT3.
    pub const BREAKPOINT: u32 = 4;
    /// IN or OUT through DX to a port not in ports.txt or in the wrong direction, or OUT with a request block that is misaligned, in page 0 or outside memory. (The imm8 forms name their port in the instruction: an unknown one is INVALID.)
    pub const PORT: u32 = 5;
}

/// Memory and boot constants (`boot.txt`).
pub mod boot {
    /// Size of a page, and of the virtual-register page.
    pub const PAGE_SIZE: u32 = 0x1000;
    /// Smallest guest memory: the register page and one page.
    pub const MIN_MEM_SIZE: u32 = 0x2000;
    /// Largest guest memory: 4 GiB less one page.
    pub const MAX_MEM_SIZE: u32 = 0xFFFFF000;
    /// Lowest address an image may load at: page 0 is the register page.
    pub const FIRST_LOAD_ADDR: u32 = 0x1000;
    /// EFLAGS at boot: every status flag clear, DF clear; reserved bit 1 and IF read as 1 (the real interrupt flag is the IRQ_ENABLE register).
    pub const INITIAL_EFLAGS: u32 = 0x00000202;
    /// The EFLAGS bits a guest can change: CF PF AF ZF SF DF OF. POPFD ignores the rest; PUSHFD pushes the others as INITIAL_EFLAGS has them.
    pub const EFLAGS_GUEST_MASK: u32 = 0x00000CD5;
}

/// Encodings of the virtual instructions (`virtual-instructions.txt`).
pub mod vinsn {
    /// `hlt`: idle with timeout. EAX = timeout in microseconds (0xFFFFFFFF: no timeout). The VM stops until the timeout expires or an interrupt is pending and enabled. On return EAX = 1 if an interrupt is pending, 0 if the timeout expired.
    pub const IDLE: &[u8] = &[0xf4];
    /// `int 0xd0`: terminate. EAX = exit status. The VM ends; nothing after it runs.
    pub const TERMINATE: &[u8] = &[0xcd, 0xd0];
}
