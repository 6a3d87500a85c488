//! The virtual-register page (page 0, `isa-spec/vregs.txt`): what the kernel writes there at
//! boot and on refresh, and typed reads of the registers the guest writes.
//!
//! The page always exists (guest memory is at least `MIN_MEM_SIZE`), so accesses to it cannot
//! go out of bounds; the helpers still go through the checked accessors and treat the
//! impossible failure as a no-op rather than panic.

use denali_abi::vreg;
use denali_engine::{Exception, GuestMemory};

/// The value of `MAGIC`: "DNLI" when read as bytes.
pub const MAGIC: u32 = 0x494C_4E44;
/// The value of `ABI_VERSION` this kernel implements.
pub const ABI_VERSION: u32 = 1;
/// The value of `CPU_KHZ`: a nominal 1 GHz, i.e. one million guest instructions per
/// millisecond. Guests use it only to size busy loops; the kernel does not throttle to it.
pub const NOMINAL_CPU_KHZ: u32 = 1_000_000;

/// The NIC's MAC address for a VM: a locally administered unicast address (first byte 0x02)
/// followed by a zero byte and the VM id in big-endian order, so every id of a fleet gets a
/// distinct address (`02:00:00:00:00:07` for VM 7).
pub fn mac_address(vm_id: u32) -> [u8; 6] {
    let id = vm_id.to_be_bytes();
    [0x02, 0x00, id[0], id[1], id[2], id[3]]
}

/// Writes the whole kernel-owned part of the page as it is at boot.
pub fn init(memory: &mut GuestMemory, vm_id: u32) {
    let mem_size = memory.size();
    write_u32(memory, vreg::MAGIC, MAGIC);
    write_u32(memory, vreg::ABI_VERSION, ABI_VERSION);
    write_u32(memory, vreg::CPU_KHZ, NOMINAL_CPU_KHZ);
    write_u32(memory, vreg::MEM_SIZE, mem_size);
    set_time(memory, 0);
    write_u32(memory, vreg::VM_ID, vm_id);
    for offset in [vreg::IRQ_ENABLE, vreg::IRQ_PENDING, vreg::IRQ_HANDLER, vreg::EXC_HANDLER] {
        write_u32(memory, offset, 0);
    }
    let _ = memory.write(vreg::MAC, &mac_address(vm_id));
    for offset in [vreg::FAULT_KIND, vreg::FAULT_EIP, vreg::FAULT_ADDR] {
        write_u32(memory, offset, 0);
    }
}

/// Refreshes `TIME_US`.
pub fn set_time(memory: &mut GuestMemory, micros: u64) {
    let _ = memory.write_u64(vreg::TIME_US, micros);
}

/// Records an exception in `FAULT_KIND`, `FAULT_EIP` and `FAULT_ADDR`.
pub fn record_fault(memory: &mut GuestMemory, exception: &Exception) {
    write_u32(memory, vreg::FAULT_KIND, exception.kind.code());
    write_u32(memory, vreg::FAULT_EIP, exception.eip);
    write_u32(memory, vreg::FAULT_ADDR, exception.addr);
}

/// Reads a 32-bit register of the page (`offset` is one of `denali_abi::vreg`).
pub fn read(memory: &GuestMemory, offset: u32) -> u32 {
    memory.read_u32(offset).unwrap_or(0)
}

/// Writes a 32-bit register of the page.
pub fn write_u32(memory: &mut GuestMemory, offset: u32, value: u32) {
    let _ = memory.write_u32(offset, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_locally_administered_unicast_and_names_the_vm() {
        let mac = mac_address(0x0102_0304);
        assert_eq!(mac, [0x02, 0x00, 0x01, 0x02, 0x03, 0x04]);
        assert_eq!(mac[0] & 0b11, 0b10);
        assert_ne!(mac_address(1), mac_address(2));
    }

    #[test]
    fn magic_reads_dnli_in_memory() {
        assert_eq!(&MAGIC.to_le_bytes(), b"DNLI");
    }
}
