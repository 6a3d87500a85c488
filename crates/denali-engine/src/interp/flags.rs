//! EFLAGS computation (eager: every instruction writes the architectural flags it defines) and
//! the instructions that only touch flags.
//!
//! Choices for architecturally undefined flags, applied everywhere in this interpreter (they
//! follow the Intel SDM pseudo-code where it computes a value, and Bochs otherwise):
//!
//! | instruction        | undefined flag(s)      | value chosen                                        |
//! |--------------------|------------------------|-----------------------------------------------------|
//! | AND OR XOR TEST    | AF                     | 0                                                   |
//! | MUL IMUL           | SF ZF PF AF            | SF ZF PF from the low half of the result, AF = 0    |
//! | DIV IDIV           | all six                | unchanged                                           |
//! | SHL SHR SAR        | OF (count > 1), AF     | OF by the count-1 formula, AF = 0                   |
//! | SHL SHR (count ≥ width, 8/16-bit) | CF      | SDM loop: last bit shifted out (0 past the width)   |
//! | ROL ROR RCL RCR    | OF (count > 1)         | OF by the count-1 formula                           |
//! | SHLD               | OF (count > 1), AF     | OF = MSB(result) XOR CF, AF = 0 (Bochs)             |
//! | SHRD               | OF (count > 1), AF     | OF = MSB(result) XOR bit below it, AF = 0 (Bochs)   |
//! | SHLD SHRD 16-bit, count > 16 | result, CF   | shift of dst:src:dst (48 bits), as Bochs            |
//! | BT BTS BTR BTC     | OF SF AF PF            | unchanged                                           |
//! | BSF BSR            | CF OF SF AF PF         | unchanged; zero source: ZF = 1, destination kept     |
//! | BSWAP r16          | result                 | 0                                                   |

use super::machine::{Flow, Machine, Op, Step, mask, sign};
use crate::flag::{AF, CF, DF, OF, PF, SF, ZF};

/// The six status flags arithmetic instructions write.
pub(crate) const ARITH: u32 = CF | PF | AF | ZF | SF | OF;
/// The EFLAGS bits the guest can change (boot.txt `EFLAGS_GUEST_MASK`).
pub(crate) const GUEST_MASK: u32 = denali_abi::boot::EFLAGS_GUEST_MASK;
/// The value of every other bit (boot.txt `INITIAL_EFLAGS`).
pub(crate) const FIXED: u32 = denali_abi::boot::INITIAL_EFLAGS & !GUEST_MASK;

/// PF for every value of the low result byte.
static PARITY: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        #[allow(clippy::cast_possible_truncation, reason = "PF is bit 2")]
        if (i as u32).count_ones() & 1 == 0 {
            t[i] = PF as u8;
        }
        i += 1;
    }
    t
};

/// SF, ZF and PF of a result of `size` bytes (already masked).
#[inline(always)]
pub(crate) fn szp(res: u32, size: u8) -> u32 {
    let mut f = u32::from(PARITY[(res & 0xFF) as usize]);
    if res == 0 {
        f |= ZF;
    }
    if res & sign(size) != 0 {
        f |= SF;
    }
    f
}

/// `a + b + carry`: the masked result and its six flags.
#[inline(always)]
pub(crate) fn add(a: u32, b: u32, carry: u32, size: u8) -> (u32, u32) {
    let full = u64::from(a) + u64::from(b) + u64::from(carry);
    #[allow(clippy::cast_possible_truncation, reason = "masked to the operand size")]
    let res = (full as u32) & mask(size);
    let mut f = szp(res, size) | ((a ^ b ^ res) & AF);
    if full > u64::from(mask(size)) {
        f |= CF;
    }
    if (a ^ res) & (b ^ res) & sign(size) != 0 {
        f |= OF;
    }
    (res, f)
}

/// `a - b - borrow`: the masked result and its six flags.
#[inline(always)]
pub(crate) fn sub(a: u32, b: u32, borrow: u32, size: u8) -> (u32, u32) {
    let rhs = u64::from(b) + u64::from(borrow);
    #[allow(clippy::cast_possible_truncation, reason = "masked to the operand size")]
    let res = (u64::from(a).wrapping_sub(rhs) as u32) & mask(size);
    let mut f = szp(res, size) | ((a ^ b ^ res) & AF);
    if u64::from(a) < rhs {
        f |= CF;
    }
    if (a ^ b) & (a ^ res) & sign(size) != 0 {
        f |= OF;
    }
    (res, f)
}

/// Whether condition `cc` (x86 encoding order: O NO B AE E NE BE A S NS P NP L GE LE G) holds.
#[inline(always)]
pub(crate) fn cond(eflags: u32, cc: u8) -> bool {
    let base = match cc >> 1 {
        0 => eflags & OF != 0,
        1 => eflags & CF != 0,
        2 => eflags & ZF != 0,
        3 => eflags & (CF | ZF) != 0,
        4 => eflags & SF != 0,
        5 => eflags & PF != 0,
        6 => (eflags & SF != 0) != (eflags & OF != 0),
        _ => eflags & ZF != 0 || ((eflags & SF != 0) != (eflags & OF != 0)),
    };
    base != (cc & 1 != 0)
}

impl Machine<'_> {
    /// Replaces the six status flags.
    #[inline(always)]
    pub fn set_arith(&mut self, f: u32) {
        self.eflags = (self.eflags & !ARITH) | f;
    }

    /// Replaces the flags in `which` with those of `f`.
    #[inline(always)]
    pub fn set_flags(&mut self, which: u32, f: u32) {
        self.eflags = (self.eflags & !which) | (f & which);
    }

    #[inline(always)]
    pub fn cf(&self) -> u32 {
        self.eflags & CF
    }
}

/// CLC STC CMC CLD STD: `sub` selects the operation.
pub(crate) fn flag_op(m: &mut Machine<'_>, op: &Op) -> Step {
    match op.sub {
        0 => m.eflags &= !CF,
        1 => m.eflags |= CF,
        2 => m.eflags ^= CF,
        3 => m.eflags &= !DF,
        _ => m.eflags |= DF,
    }
    Ok(Flow::Next)
}

/// LAHF: AH = SF:ZF:0:AF:0:PF:1:CF.
pub(crate) fn lahf(m: &mut Machine<'_>, _op: &Op) -> Step {
    let low = (m.eflags & (SF | ZF | AF | PF | CF)) | 0x2;
    m.set_reg(0, 8, 1, low);
    Ok(Flow::Next)
}

/// SAHF: SF ZF AF PF CF from AH.
pub(crate) fn sahf(m: &mut Machine<'_>, _op: &Op) -> Step {
    let ah = m.reg(0, 8, 1);
    m.set_flags(SF | ZF | AF | PF | CF, ah);
    Ok(Flow::Next)
}

/// PUSHFD / PUSHF: the architectural EFLAGS (its fixed bits are those of INITIAL_EFLAGS).
pub(crate) fn pushf(m: &mut Machine<'_>, op: &Op) -> Step {
    let v = (m.eflags & GUEST_MASK) | FIXED;
    m.push(op.size, v & mask(op.size))?;
    Ok(Flow::Next)
}

/// POPFD / POPF: only the guest-changeable bits are taken.
pub(crate) fn popf(m: &mut Machine<'_>, op: &Op) -> Step {
    let v = m.read(m.regs[4], op.size)?;
    m.regs[4] = m.regs[4].wrapping_add(u32::from(op.size));
    // A 16-bit POPF leaves the upper half alone; none of it is guest-changeable anyway.
    let which = GUEST_MASK & mask(op.size);
    m.eflags = (m.eflags & !which) | (v & which);
    Ok(Flow::Next)
}
