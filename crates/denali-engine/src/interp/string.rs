//! String instructions MOVS STOS LODS CMPS SCAS, alone or with REP/REPE/REPNE.
//!
//! Each REP iteration retires as one instruction: the handler spends the budget itself, stops
//! between iterations when it runs out (EIP stays at the instruction, ECX/ESI/EDI reflect the
//! iterations done), and on a fault keeps the iterations before the faulting one.

use super::flags;
use super::machine::{Flow, Machine, Op, Step, Trap};
use crate::flag::{DF, ZF};

pub(crate) const MOVS: u8 = 0;
pub(crate) const STOS: u8 = 1;
pub(crate) const LODS: u8 = 2;
pub(crate) const CMPS: u8 = 3;
pub(crate) const SCAS: u8 = 4;

/// REP kinds in `Op::sub`.
pub(crate) const NO_REP: u8 = 0;
pub(crate) const REPE: u8 = 1;
pub(crate) const REPNE: u8 = 2;

/// One iteration; nothing changes if it faults.
#[inline(always)]
fn once<const K: u8>(m: &mut Machine<'_>, size: u8) -> Result<(), Trap> {
    let step = u32::from(size);
    let delta = if m.eflags & DF != 0 { step.wrapping_neg() } else { step };
    let (si, di) = (m.regs[6], m.regs[7]);
    match K {
        MOVS => {
            let v = m.read(si, size)?;
            m.write(di, size, v)?;
            m.regs[6] = si.wrapping_add(delta);
            m.regs[7] = di.wrapping_add(delta);
        }
        STOS => {
            m.write(di, size, m.regs[0])?;
            m.regs[7] = di.wrapping_add(delta);
        }
        LODS => {
            let v = m.read(si, size)?;
            m.set_reg(0, 0, size, v);
            m.regs[6] = si.wrapping_add(delta);
        }
        CMPS => {
            // The CPU reads [EDI] first (it faults there when both are outside memory), unlike
            // MOVS, which reads [ESI] first; the live differential test against the CPU found it.
            let b = m.read(di, size)?;
            let a = m.read(si, size)?;
            let (_, f) = flags::sub(a, b, 0, size);
            m.set_arith(f);
            m.regs[6] = si.wrapping_add(delta);
            m.regs[7] = di.wrapping_add(delta);
        }
        _ => {
            let b = m.read(di, size)?;
            let (_, f) = flags::sub(m.reg(0, 0, size), b, 0, size);
            m.set_arith(f);
            m.regs[7] = di.wrapping_add(delta);
        }
    }
    Ok(())
}

/// REP STOS forwards whose stored value is one byte repeated (`memset`, the common case),
/// done as one fill for all the iterations the budget allows when they stay inside memory:
/// exactly what that many iterations of [`once`] do, without a per-element call. Returns the
/// iterations done (ECX and EDI updated); 0 when the loop must do them one by one.
fn bulk_stos(m: &mut Machine<'_>, size: u8) -> u64 {
    let value = m.regs[0] & super::machine::mask(size);
    let byte = value.to_le_bytes()[0];
    let repeated = (0..u32::from(size)).all(|i| (value >> (8 * i)) & 0xFF == u32::from(byte));
    if m.eflags & DF != 0 || !repeated {
        return 0;
    }
    let count = u64::from(m.regs[1]).min(m.left);
    let len = count * u64::from(size);
    let di = m.regs[7];
    let (Ok(n), Ok(bytes)) = (u32::try_from(count), usize::try_from(len)) else { return 0 };
    if count < 2 || u64::from(di) + len > u64::from(m.mem.size()) || m.mem.fill(di, bytes, byte).is_err() {
        return 0;
    }
    #[allow(clippy::cast_possible_truncation, reason = "len <= memory size < 2^32")]
    let advance = len as u32;
    m.regs[7] = di.wrapping_add(advance);
    m.regs[1] -= n;
    count
}

/// A string instruction of kind `K`; `size` is the element size, `sub` the REP kind.
pub(crate) fn string<const K: u8>(m: &mut Machine<'_>, op: &Op) -> Step {
    if op.sub == NO_REP {
        once::<K>(m, op.size)?;
        return Ok(Flow::Next);
    }
    let compares = K == CMPS || K == SCAS;
    let mut done: u64 = if K == STOS { bulk_stos(m, op.size) } else { 0 };
    while m.regs[1] != 0 {
        if done == m.left {
            m.left = 0;
            return Err(Trap::Budget);
        }
        if let Err(t) = once::<K>(m, op.size) {
            m.left -= done;
            return Err(t);
        }
        done += 1;
        m.regs[1] -= 1;
        if compares && ((op.sub == REPE) != (m.eflags & ZF != 0)) {
            break;
        }
    }
    // The dispatch loop counts one retirement; the other iterations are counted here.
    m.left -= done.saturating_sub(1);
    Ok(Flow::Next)
}
