//! Bit tests (BT BTS BTR BTC), bit scans (BSF BSR), SETcc and CMOVcc.

use super::flags::cond;
use super::machine::{Flow, Machine, Op, Opnd, Step};
use crate::flag::{CF, ZF};

/// BT (`sub` = 0), BTS (1), BTR (2), BTC (3). With a memory destination and a register bit
/// offset the operand is a bit string: the signed offset selects the word or dword at
/// `ea + size * (offset >> log2(bits))`, which may lie far from `ea`.
pub(crate) fn bt(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let bits = u32::from(size) * 8;
    let off = m.get(op, op.src, size)?;
    let (addr, bitno) = match (op.dst, op.src) {
        (Opnd::Mem, Opnd::Reg(..)) => {
            let signed = super::machine::sext(off, size) as i32;
            let word = signed >> bits.trailing_zeros();
            #[allow(clippy::cast_sign_loss, reason = "two's-complement address arithmetic")]
            let delta = word.wrapping_mul(i32::from(size)) as u32;
            (Some(m.ea(&op.ea).wrapping_add(delta)), off & (bits - 1))
        }
        (Opnd::Mem, _) => (Some(m.ea(&op.ea)), off & (bits - 1)),
        _ => (None, off & (bits - 1)),
    };
    let v = match addr {
        Some(a) => m.read(a, size)?,
        None => m.get(op, op.dst, size)?,
    };
    let set = (v >> bitno) & 1 != 0;
    let new = match op.sub {
        1 => v | (1 << bitno),
        2 => v & !(1 << bitno),
        3 => v ^ (1 << bitno),
        _ => v,
    };
    if op.sub != 0 {
        match addr {
            Some(a) => m.write(a, size, new)?,
            None => m.put(op, op.dst, size, new)?,
        }
    }
    m.set_flags(CF, if set { CF } else { 0 });
    Ok(Flow::Next)
}

/// BSF (`sub` = 0) and BSR (`sub` = 1). A zero source sets ZF and keeps the destination.
pub(crate) fn bscan(m: &mut Machine<'_>, op: &Op) -> Step {
    let v = m.get(op, op.src, op.size)?;
    if v == 0 {
        m.eflags |= ZF;
        return Ok(Flow::Next);
    }
    let index = if op.sub == 0 { v.trailing_zeros() } else { 31 - v.leading_zeros() };
    m.put(op, op.dst, op.size, index)?;
    m.eflags &= !ZF;
    Ok(Flow::Next)
}

/// SETcc r/m8.
pub(crate) fn setcc(m: &mut Machine<'_>, op: &Op) -> Step {
    let v = u32::from(cond(m.eflags, op.sub));
    m.put(op, op.dst, 1, v)?;
    Ok(Flow::Next)
}

/// CMOVcc: the source is read (and may fault) whatever the condition.
pub(crate) fn cmov(m: &mut Machine<'_>, op: &Op) -> Step {
    let v = m.get(op, op.src, op.size)?;
    if cond(m.eflags, op.sub) {
        m.put(op, op.dst, op.size, v)?;
    }
    Ok(Flow::Next)
}
