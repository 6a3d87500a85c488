//! MUL, IMUL (one, two and three operands), DIV and IDIV.
//!
//! DIV and IDIV raise Divide for a zero divisor or a quotient that does not fit, before changing
//! anything; they leave all flags unchanged (the flags are undefined).

use super::flags::szp;
use super::machine::{Flow, Machine, Op, Step, Trap, mask, sext};
use crate::flag::{CF, OF};

/// The flags of a multiply: CF = OF = `overflow`; SF ZF PF from the low half, AF = 0.
fn mul_flags(m: &mut Machine<'_>, low: u32, size: u8, overflow: bool) {
    let f = szp(low & mask(size), size) | if overflow { CF | OF } else { 0 };
    m.set_arith(f);
}

/// One-operand MUL (`sub` = 0) and IMUL (`sub` = 1): accumulator times `src` into
/// AX, DX:AX or EDX:EAX.
pub(crate) fn mul1(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let s = m.get(op, op.src, size)?;
    let a = m.reg(0, 0, size);
    let bits = u32::from(size) * 8;
    let (prod, overflow) = if op.sub == 0 {
        let p = u64::from(a) * u64::from(s);
        (p, p >> bits != 0)
    } else {
        let p = i64::from(sext(a, size) as i32) * i64::from(sext(s, size) as i32);
        #[allow(clippy::cast_possible_truncation, reason = "checking that the product fits")]
        let fits = i64::from(sext(p as u32 & mask(size), size) as i32) == p;
        (p as u64, !fits)
    };
    #[allow(clippy::cast_possible_truncation, reason = "splitting the product")]
    let (low, high) = ((prod as u32) & mask(size), ((prod >> bits) as u32) & mask(size));
    if size == 1 {
        m.set_reg(0, 0, 2, (high << 8) | low);
    } else {
        m.set_reg(0, 0, size, low);
        m.set_reg(2, 0, size, high);
    }
    mul_flags(m, low, size, overflow);
    Ok(Flow::Next)
}

/// Two- and three-operand IMUL: `dst = src * aux` (the two-operand form has `aux` = `dst`),
/// truncated; CF = OF = the product did not fit.
pub(crate) fn imul(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let a = m.get(op, op.src, size)?;
    let b = m.get(op, op.aux, size)?;
    let p = i64::from(sext(a, size) as i32) * i64::from(sext(b, size) as i32);
    #[allow(clippy::cast_possible_truncation, reason = "truncating the product is the operation")]
    let low = (p as u32) & mask(size);
    let overflow = i64::from(sext(low, size) as i32) != p;
    m.put(op, op.dst, size, low)?;
    mul_flags(m, low, size, overflow);
    Ok(Flow::Next)
}

/// DIV (`sub` = 0) and IDIV (`sub` = 1).
pub(crate) fn div(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let bits = u32::from(size) * 8;
    let d = m.get(op, op.src, size)?;
    if d == 0 {
        return Err(Trap::Divide);
    }
    let dividend = if size == 1 {
        u64::from(m.regs[0] & 0xFFFF)
    } else {
        (u64::from(m.reg(2, 0, size)) << bits) | u64::from(m.reg(0, 0, size))
    };
    #[allow(clippy::cast_possible_truncation, reason = "the quotient is checked to fit first")]
    let (q, r) = if op.sub == 0 {
        let q = dividend / u64::from(d);
        if q > u64::from(mask(size)) {
            return Err(Trap::Divide);
        }
        (q as u32, (dividend % u64::from(d)) as u32)
    } else {
        // Sign-extend the 2*size-byte dividend to i64.
        let n = ((dividend << (64 - 2 * bits)) as i64) >> (64 - 2 * bits);
        let dv = i64::from(sext(d, size) as i32);
        let (Some(q), Some(r)) = (n.checked_div(dv), n.checked_rem(dv)) else { return Err(Trap::Divide) };
        let limit = 1i64 << (bits - 1);
        if q < -limit || q >= limit {
            return Err(Trap::Divide);
        }
        ((q as u32) & mask(size), (r as u32) & mask(size))
    };
    if size == 1 {
        m.set_reg(0, 0, 2, (r << 8) | q);
    } else {
        m.set_reg(0, 0, size, q);
        m.set_reg(2, 0, size, r);
    }
    Ok(Flow::Next)
}
