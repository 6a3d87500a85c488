//! Shifts and rotates (SHL SHR SAR ROL ROR RCL RCR) and the double shifts SHLD SHRD.
//!
//! Counts are masked to 5 bits; a masked count of 0 changes nothing, flags included (memory is
//! still read, so a bad address still faults). Undefined flags follow the table in `flags.rs`.

use super::flags::szp;
use super::machine::{Flow, Machine, Op, Step, mask, sext, sign};
use crate::flag::{AF, CF, OF};

pub(crate) const ROL: u8 = 0;
pub(crate) const ROR: u8 = 1;
pub(crate) const RCL: u8 = 2;
pub(crate) const RCR: u8 = 3;
pub(crate) const SHL: u8 = 4;
pub(crate) const SHR: u8 = 5;
pub(crate) const SAR: u8 = 7;

fn bit(cond: bool, f: u32) -> u32 {
    if cond { f } else { 0 }
}

/// Shift or rotate `dst` by `src` (CL or an immediate); `K` is the ModRM /reg number.
pub(crate) fn shift<const K: u8>(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let bits = u32::from(size) * 8;
    let count = m.get(op, op.src, 1)? & 0x1F;
    let a = m.get(op, op.dst, size)?;
    if count == 0 {
        return Ok(Flow::Next);
    }
    let msb = sign(size);
    let wide = u64::from(a);
    let cf_in = m.cf();
    #[allow(clippy::cast_possible_truncation, reason = "values are masked to the operand size")]
    let (res, fl, which) = match K {
        ROL | ROR => {
            let t = count % bits;
            let r = if t == 0 {
                a
            } else if K == ROL {
                ((a << t) | (a >> (bits - t))) & mask(size)
            } else {
                ((a >> t) | (a << (bits - t))) & mask(size)
            };
            let cf = if K == ROL { r & 1 != 0 } else { r & msb != 0 };
            let of = if K == ROL { (r & msb != 0) != cf } else { (r & msb != 0) != (r & (msb >> 1) != 0) };
            (r, bit(cf, CF) | bit(of, OF), CF | OF)
        }
        RCL | RCR => {
            let t = count % (bits + 1);
            let v = (u64::from(cf_in) << bits) | wide;
            let full = (1u64 << (bits + 1)) - 1;
            let w = if t == 0 {
                v
            } else if K == RCL {
                ((v << t) | (v >> (bits + 1 - t))) & full
            } else {
                ((v >> t) | (v << (bits + 1 - t))) & full
            };
            let r = (w as u32) & mask(size);
            let cf = (w >> bits) & 1 != 0;
            let of = if K == RCL { (r & msb != 0) != cf } else { (a & msb != 0) != (cf_in != 0) };
            (r, bit(cf, CF) | bit(of, OF), CF | OF)
        }
        SHL => {
            let r = ((wide << count) as u32) & mask(size);
            let cf = ((wide << (count - 1)) >> (bits - 1)) & 1 != 0;
            let of = (r & msb != 0) != cf;
            (r, szp(r, size) | bit(cf, CF) | bit(of, OF), CF | OF | AF | 0xC4)
        }
        SHR => {
            let r = (wide >> count) as u32;
            let cf = (wide >> (count - 1)) & 1 != 0;
            (r, szp(r, size) | bit(cf, CF) | bit(a & msb != 0, OF), CF | OF | AF | 0xC4)
        }
        _ => {
            let s = i64::from(sext(a, size) as i32);
            let r = ((s >> count) as u32) & mask(size);
            let cf = (s >> (count - 1)) & 1 != 0;
            (r, szp(r, size) | bit(cf, CF), CF | OF | AF | 0xC4)
        }
    };
    m.put(op, op.dst, size, res)?;
    m.set_flags(which, fl);
    Ok(Flow::Next)
}

/// SHLD (`sub` = 0) and SHRD (`sub` = 1): `dst` shifted with bits from `src`; the count is
/// `aux` (CL or an immediate).
pub(crate) fn double_shift(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let count = m.get(op, op.aux, 1)? & 0x1F;
    let a = m.get(op, op.dst, size)?;
    let b = m.get(op, op.src, size)?;
    if count == 0 {
        return Ok(Flow::Next);
    }
    let c = u64::from(count);
    let msb = sign(size);
    #[allow(clippy::cast_possible_truncation, reason = "values are masked to the operand size")]
    let (res, cf, of) = if size == 4 {
        // 64-bit concatenations: dst:src for SHLD, src:dst for SHRD.
        if op.sub == 0 {
            let t = (u64::from(a) << 32) | u64::from(b);
            let r = ((t << c) >> 32) as u32;
            let cf = (t >> (64 - c)) & 1 != 0;
            (r, cf, (r & msb != 0) != cf)
        } else {
            let t = (u64::from(b) << 32) | u64::from(a);
            let r = (t >> c) as u32;
            let cf = (t >> (c - 1)) & 1 != 0;
            (r, cf, (r & msb != 0) != (r & (msb >> 1) != 0))
        }
    } else {
        // 16-bit: counts above 16 are undefined; shift the 48-bit dst:src:dst as Bochs does.
        let (a, b) = (u64::from(a), u64::from(b));
        if op.sub == 0 {
            let t = (a << 32) | (b << 16) | a;
            let r = ((t >> (32 - c)) & 0xFFFF) as u32;
            let cf = (t >> (48 - c)) & 1 != 0;
            (r, cf, (r & msb != 0) != cf)
        } else {
            let t = (a << 32) | (b << 16) | a;
            let r = ((t >> c) & 0xFFFF) as u32;
            let cf = (t >> (c - 1)) & 1 != 0;
            (r, cf, (r & msb != 0) != (r & (msb >> 1) != 0))
        }
    };
    m.put(op, op.dst, size, res)?;
    m.set_arith(szp(res, size) | bit(cf, CF) | bit(of, OF));
    Ok(Flow::Next)
}
