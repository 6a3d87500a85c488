//! Architectural CPU state of one guest: the eight general registers, EIP, EFLAGS and the
//! retired-instruction count. Engines and the kernel share this one definition.

/// Register numbers, in x86 encoding order.
pub mod reg {
    pub const EAX: usize = 0;
    pub const ECX: usize = 1;
    pub const EDX: usize = 2;
    pub const EBX: usize = 3;
    pub const ESP: usize = 4;
    pub const EBP: usize = 5;
    pub const ESI: usize = 6;
    pub const EDI: usize = 7;
    /// Lower-case names in encoding order, as used in traces and state dumps.
    pub const NAMES: [&str; 8] = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
}

/// EFLAGS bits.
pub mod flag {
    pub const CF: u32 = 1 << 0;
    pub const PF: u32 = 1 << 2;
    pub const AF: u32 = 1 << 4;
    pub const ZF: u32 = 1 << 6;
    pub const SF: u32 = 1 << 7;
    pub const DF: u32 = 1 << 10;
    pub const OF: u32 = 1 << 11;
}

/// The state an engine reads and writes. `eflags` always holds the architectural value: bits
/// outside `EFLAGS_GUEST_MASK` are those of `INITIAL_EFLAGS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    pub regs: [u32; 8],
    pub eip: u32,
    pub eflags: u32,
    /// Guest instructions retired since boot. Each iteration of a REP-prefixed string
    /// instruction counts as one, and a REP instruction that does no iteration counts as one.
    pub instructions: u64,
}

impl Cpu {
    /// The boot state: every register zero except ESP, EFLAGS as the spec sets them.
    pub fn new(eip: u32, esp: u32) -> Cpu {
        let mut regs = [0; 8];
        regs[reg::ESP] = esp;
        Cpu { regs, eip, eflags: denali_abi::boot::INITIAL_EFLAGS, instructions: 0 }
    }

    /// Completes an instruction that an engine exited on without retiring (I/O and the virtual
    /// instructions): moves EIP past its `len` bytes and counts it.
    pub fn retire(&mut self, len: u8) {
        self.eip = self.eip.wrapping_add(u32::from(len));
        self.instructions += 1;
    }
}
