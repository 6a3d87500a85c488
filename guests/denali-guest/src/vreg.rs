//! The virtual-register page: page 0 of guest memory (`isa-spec/vregs.txt`).
//!
//! Address 0 is ordinary memory on Denali, but Rust treats a dereference of the null pointer as
//! undefined behaviour, so a volatile read of `0 as *const u32` could be miscompiled. Every
//! register other than MAGIC sits at a non-zero address and is accessed with
//! `read_volatile`/`write_volatile`; MAGIC, at offset 0, is read with inline assembly, where
//! the compiler's rules about null do not apply.
//!
//! The kernel may update its registers between any two instructions (it refreshes TIME_US when
//! the VM is scheduled and sets IRQ_PENDING bits as interrupts arrive), hence volatile access.

use denali_abi::vreg;

/// The value of the MAGIC register once the kernel has initialised the page ("DNLI").
pub const MAGIC_VALUE: u32 = 0x494C_4E44;

#[inline(always)]
fn read(offset: u32) -> u32 {
    debug_assert!(offset != 0 && offset & 3 == 0);
    // SAFETY: the register page (0..0x1000) is always mapped guest memory; `offset` is a
    // non-zero, aligned register offset from denali-abi, so this is not a null dereference.
    unsafe { core::ptr::read_volatile(offset as usize as *const u32) }
}

#[inline(always)]
fn write(offset: u32, value: u32) {
    debug_assert!(offset != 0 && offset & 3 == 0);
    // SAFETY: as in `read`; guest-written registers are plain memory the kernel reads later.
    unsafe { core::ptr::write_volatile(offset as usize as *mut u32, value) }
}

/// The MAGIC register: [`MAGIC_VALUE`] on a correctly initialised Denali VM.
#[inline]
pub fn magic() -> u32 {
    let value: u32;
    // SAFETY: reads the 4 bytes at address 0, which on Denali are the MAGIC register. Done in
    // asm because a Rust-level read through a null pointer would be undefined behaviour.
    unsafe {
        core::arch::asm!("mov {0}, dword ptr [0]", out(reg) value, options(nostack, readonly, preserves_flags));
    }
    value
}

/// True if the register page carries the Denali magic: the guest is running on Denali.
#[inline]
pub fn is_denali() -> bool {
    magic() == MAGIC_VALUE
}

/// Version of the virtual architecture (1 for the v1 spec).
#[inline]
pub fn abi_version() -> u32 {
    read(vreg::ABI_VERSION)
}

/// Nominal virtual CPU speed in kHz (guest instructions per millisecond of scheduled time).
#[inline]
pub fn cpu_khz() -> u32 {
    read(vreg::CPU_KHZ)
}

/// Size of guest physical memory in bytes.
#[inline]
pub fn mem_size() -> u32 {
    read(vreg::MEM_SIZE)
}

/// Microseconds since the VM booted.
///
/// The register is 64 bits wide but a 32-bit guest reads it in two halves, and the kernel may
/// refresh it in between (when the VM is rescheduled); re-reading the high half until it is
/// stable makes the pair consistent.
#[inline]
pub fn time_us() -> u64 {
    loop {
        let high = read(vreg::TIME_US + 4);
        let low = read(vreg::TIME_US);
        if read(vreg::TIME_US + 4) == high {
            return (u64::from(high) << 32) | u64::from(low);
        }
    }
}

/// Identifier of this VM within its kernel, from 0.
#[inline]
pub fn vm_id() -> u32 {
    read(vreg::VM_ID)
}

/// The NIC's MAC address, in network byte order.
pub fn mac() -> [u8; 6] {
    let mut mac = [0; 6];
    for (i, byte) in mac.iter_mut().enumerate() {
        // SAFETY: MAC lies inside the always-mapped register page at a non-zero address.
        *byte = unsafe { core::ptr::read_volatile((vreg::MAC as usize + i) as *const u8) };
    }
    mac
}

/// Enables (`true`) or disables interrupt delivery. Delivery itself disables it again, so a
/// handler re-enables it when it is done.
#[inline]
pub fn irq_enable(enabled: bool) {
    write(vreg::IRQ_ENABLE, u32::from(enabled));
}

/// Whether interrupt delivery is enabled.
#[inline]
pub fn irq_enabled() -> bool {
    read(vreg::IRQ_ENABLE) != 0
}

/// Bitmask of pending interrupts: bit `n` is source `n` of [`denali_abi::irq`].
#[inline]
pub fn irq_pending() -> u32 {
    read(vreg::IRQ_PENDING)
}

/// Discards the pending interrupts in `mask`.
///
/// The kernel may set other bits at any instruction boundary, so this is a single
/// read-modify-write `and` instruction rather than a load and a store, between which a newly
/// raised interrupt could be lost.
#[inline]
pub fn ack_irq(mask: u32) {
    // SAFETY: IRQ_PENDING is a guest-writable register in the always-mapped register page.
    unsafe {
        core::arch::asm!(
            "and dword ptr [{reg}], {keep}",
            reg = const vreg::IRQ_PENDING,
            keep = in(reg) !mask,
            options(nostack),
        );
    }
}

/// Sets the interrupt handler's address (`None`: no handler; interrupts stay pending).
///
/// The handler is entered by the kernel with the frame described in `isa-spec/`; it is a raw
/// entry point (typically written in assembly), not an ordinary Rust function.
#[inline]
pub fn set_irq_handler(handler: Option<unsafe extern "C" fn()>) {
    write(vreg::IRQ_HANDLER, handler.map_or(0, |f| f as usize as u32));
}

/// Sets the exception handler's address (`None`: an exception terminates the VM with a
/// diagnostic). Like [`set_irq_handler`], the handler is a raw entry point.
#[inline]
pub fn set_exception_handler(handler: Option<unsafe extern "C" fn()>) {
    write(vreg::EXC_HANDLER, handler.map_or(0, |f| f as usize as u32));
}

/// The last exception the VM raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Exception kind, one of [`denali_abi::exception`].
    pub kind: u32,
    /// Address of the faulting instruction.
    pub eip: u32,
    /// For a memory fault, the first address outside memory; otherwise 0.
    pub addr: u32,
}

/// The last exception raised, or `None` if there has been none.
#[inline]
pub fn last_fault() -> Option<Fault> {
    match read(vreg::FAULT_KIND) {
        0 => None,
        kind => Some(Fault { kind, eip: read(vreg::FAULT_EIP), addr: read(vreg::FAULT_ADDR) }),
    }
}
