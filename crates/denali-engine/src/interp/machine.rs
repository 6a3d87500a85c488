//! The state handlers work on while a block runs, the pre-decoded instruction form, and the
//! operand accessors shared by every handler.
//!
//! Registers live in a 9-entry array whose last entry is always 0: an absent base or index
//! register of an effective address is encoded as register 8, so address generation needs no
//! branches.

use crate::{GuestMemory, OutOfBounds};

/// Index of the always-zero pseudo-register used for absent base/index registers.
pub(crate) const NO_REG: u8 = 8;

/// Why a handler stopped the run instead of retiring its instruction. Except for `Budget`, the
/// instruction had no effect at all (for REP string instructions: the faulting iteration had
/// none; earlier iterations were applied and counted by the handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trap {
    /// A data access needed this address at or above the memory size.
    Mem(u32),
    Divide,
    Invalid,
    Breakpoint,
    Idle,
    Terminate,
    PortIn(u16),
    PortOut(u16),
    /// A REP instruction used up the budget between iterations; EIP stays at it.
    Budget,
}

impl From<OutOfBounds> for Trap {
    #[inline]
    fn from(e: OutOfBounds) -> Trap {
        Trap::Mem(e.0)
    }
}

/// What a retired instruction asks of the dispatch loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Fall through to the next instruction of the block.
    Next,
    /// The handler set `Machine::eip`: leave the block.
    Jump,
}

pub(crate) type Step = Result<Flow, Trap>;
pub(crate) type Handler = fn(&mut Machine<'_>, &Op) -> Step;

/// An operand of a pre-decoded instruction. At most one memory operand exists per instruction;
/// its address is `Op::ea`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opnd {
    None,
    /// Register number and bit shift (8 for AH/CH/DH/BH, else 0).
    Reg(u8, u8),
    Mem,
    Imm(u32),
}

/// An effective address `disp + base + (index << scale)`; absent registers are `NO_REG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ea {
    pub base: u8,
    pub index: u8,
    pub scale: u8,
    pub disp: u32,
}

/// One pre-decoded instruction.
#[derive(Clone, Copy)]
pub(crate) struct Op {
    pub exec: Handler,
    /// Address of the instruction and of the one after it.
    pub eip: u32,
    pub next: u32,
    pub len: u8,
    /// Operand size in bytes (1, 2 or 4).
    pub size: u8,
    /// Handler-specific selector: condition code, REP kind, source size, ...
    pub sub: u8,
    pub dst: Opnd,
    pub src: Opnd,
    pub aux: Opnd,
    pub ea: Ea,
    /// Handler-specific constant: branch target, stack adjustment, ...
    pub imm: u32,
}

/// The CPU state while a run is under way, with the memory it runs on.
pub(crate) struct Machine<'a> {
    pub regs: [u32; 9],
    pub eflags: u32,
    pub eip: u32,
    /// Retirements still allowed in this run.
    pub left: u64,
    pub mem: &'a mut GuestMemory,
}

#[inline(always)]
pub(crate) const fn mask(size: u8) -> u32 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    }
}

#[inline(always)]
pub(crate) const fn sign(size: u8) -> u32 {
    match size {
        1 => 0x80,
        2 => 0x8000,
        _ => 0x8000_0000,
    }
}

/// Sign-extends the low `size` bytes of `v` to 32 bits.
#[inline(always)]
pub(crate) const fn sext(v: u32, size: u8) -> u32 {
    match size {
        1 => v as u8 as i8 as i32 as u32,
        2 => v as u16 as i16 as i32 as u32,
        _ => v,
    }
}

impl Machine<'_> {
    #[inline(always)]
    pub fn ea(&self, ea: &Ea) -> u32 {
        ea.disp.wrapping_add(self.regs[ea.base as usize]).wrapping_add(self.regs[ea.index as usize] << ea.scale)
    }

    #[inline(always)]
    pub fn read(&self, addr: u32, size: u8) -> Result<u32, Trap> {
        Ok(match size {
            1 => u32::from(self.mem.read_u8(addr)?),
            2 => u32::from(self.mem.read_u16(addr)?),
            _ => self.mem.read_u32(addr)?,
        })
    }

    #[inline(always)]
    pub fn write(&mut self, addr: u32, size: u8, v: u32) -> Result<(), Trap> {
        #[allow(clippy::cast_possible_truncation, reason = "the low bytes are the operand")]
        match size {
            1 => self.mem.write_u8(addr, v as u8)?,
            2 => self.mem.write_u16(addr, v as u16)?,
            _ => self.mem.write_u32(addr, v)?,
        }
        Ok(())
    }

    /// Checks that `size` bytes at `addr` are inside memory, without accessing them.
    #[inline(always)]
    pub fn check(&self, addr: u32, size: u8) -> Result<(), Trap> {
        self.mem.bytes(addr, usize::from(size))?;
        Ok(())
    }

    #[inline(always)]
    pub fn reg(&self, r: u8, sh: u8, size: u8) -> u32 {
        (self.regs[r as usize] >> sh) & mask(size)
    }

    #[inline(always)]
    pub fn set_reg(&mut self, r: u8, sh: u8, size: u8, v: u32) {
        let slot = &mut self.regs[r as usize];
        *slot = match size {
            1 => (*slot & !(0xFF << sh)) | ((v & 0xFF) << sh),
            2 => (*slot & 0xFFFF_0000) | (v & 0xFFFF),
            _ => v,
        };
    }

    /// Reads an operand of `size` bytes.
    #[inline(always)]
    pub fn get(&self, op: &Op, o: Opnd, size: u8) -> Result<u32, Trap> {
        match o {
            Opnd::Reg(r, sh) => Ok(self.reg(r, sh, size)),
            Opnd::Mem => self.read(self.ea(&op.ea), size),
            Opnd::Imm(v) => Ok(v & mask(size)),
            Opnd::None => Ok(0),
        }
    }

    /// Writes an operand of `size` bytes. Immediates and absent operands ignore the write.
    #[inline(always)]
    pub fn put(&mut self, op: &Op, o: Opnd, size: u8, v: u32) -> Result<(), Trap> {
        match o {
            Opnd::Reg(r, sh) => {
                self.set_reg(r, sh, size, v);
                Ok(())
            }
            Opnd::Mem => self.write(self.ea(&op.ea), size, v),
            Opnd::Imm(_) | Opnd::None => Ok(()),
        }
    }

    /// Pushes `size` bytes; on a fault nothing changes.
    #[inline(always)]
    pub fn push(&mut self, size: u8, v: u32) -> Result<(), Trap> {
        let sp = self.regs[4].wrapping_sub(u32::from(size));
        self.write(sp, size, v)?;
        self.regs[4] = sp;
        Ok(())
    }
}
