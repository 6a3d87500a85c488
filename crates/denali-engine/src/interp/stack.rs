//! Stack instructions: PUSH POP (with the `push esp` and `pop [esp+d]` rules), PUSHAD POPAD,
//! ENTER, LEAVE. Every access is checked before anything changes, so faults are precise.

use super::machine::{Flow, Machine, Op, Opnd, Step, mask};

/// PUSH r/m, imm, reg: the value (and a memory source's address) is taken with the old ESP,
/// so `push esp` pushes the value before the decrement.
pub(crate) fn push(m: &mut Machine<'_>, op: &Op) -> Step {
    let v = m.get(op, op.src, op.size)?;
    m.push(op.size, v)?;
    Ok(Flow::Next)
}

/// POP r/m. A memory destination's address is computed with the incremented ESP; `pop esp`
/// leaves the popped value in ESP.
pub(crate) fn pop(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let old = m.regs[4];
    let v = m.read(old, size)?;
    let new = old.wrapping_add(u32::from(size));
    if op.dst == Opnd::Mem {
        m.regs[4] = new;
        let addr = m.ea(&op.ea);
        m.regs[4] = old;
        m.write(addr, size, v)?;
        m.regs[4] = new;
    } else {
        m.regs[4] = new;
        m.put(op, op.dst, size, v)?;
    }
    Ok(Flow::Next)
}

/// PUSHAD / PUSHA: EAX ECX EDX EBX (original) ESP EBP ESI EDI.
pub(crate) fn pushad(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let sp = m.regs[4];
    let step = u32::from(size);
    for i in 1..=8u32 {
        m.check(sp.wrapping_sub(step * i), size)?;
    }
    let values = m.regs;
    for (i, v) in (1..=8u32).zip(values.iter()) {
        m.write(sp.wrapping_sub(step * i), size, *v & mask(size))?;
    }
    m.regs[4] = sp.wrapping_sub(step * 8);
    Ok(Flow::Next)
}

/// POPAD / POPA: EDI ESI EBP (ESP skipped) EBX EDX ECX EAX.
pub(crate) fn popad(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let sp = m.regs[4];
    let step = u32::from(size);
    let mut values = [0u32; 8];
    for (i, v) in values.iter_mut().enumerate() {
        #[allow(clippy::cast_possible_truncation, reason = "i < 8")]
        let at = sp.wrapping_add(step * i as u32);
        *v = m.read(at, size)?;
    }
    for (i, v) in values.iter().enumerate() {
        let r = 7 - i;
        if r != 4 {
            #[allow(clippy::cast_possible_truncation, reason = "register number < 8")]
            m.set_reg(r as u8, 0, size, *v);
        }
    }
    m.regs[4] = sp.wrapping_add(step * 8);
    Ok(Flow::Next)
}

/// ENTER alloc (`imm`), level (`sub`, already reduced mod 32), as the SDM pseudo-code. A first
/// pass only checks every address (they do not depend on memory contents), the second runs.
pub(crate) fn enter(m: &mut Machine<'_>, op: &Op) -> Step {
    enter_pass(m, op, true)?;
    enter_pass(m, op, false)
}

fn enter_pass(m: &mut Machine<'_>, op: &Op, dry: bool) -> Step {
    let size = op.size;
    let step = u32::from(size);
    let level = op.sub;
    let mut sp = m.regs[4];
    let mut bp = m.regs[5];
    sp = sp.wrapping_sub(step);
    if dry {
        m.check(sp, size)?;
    } else {
        m.write(sp, size, bp & mask(size))?;
    }
    let frame = sp;
    if level > 0 {
        for _ in 1..level {
            bp = bp.wrapping_sub(step);
            sp = sp.wrapping_sub(step);
            if dry {
                m.check(bp, size)?;
                m.check(sp, size)?;
            } else {
                let v = m.read(bp, size)?;
                m.write(sp, size, v)?;
            }
        }
        sp = sp.wrapping_sub(step);
        if dry {
            m.check(sp, size)?;
        } else {
            m.write(sp, size, frame & mask(size))?;
        }
    }
    if !dry {
        m.regs[5] = if size == 2 { (bp & 0xFFFF_0000) | (frame & 0xFFFF) } else { frame };
        m.regs[4] = sp.wrapping_sub(op.imm);
    }
    Ok(Flow::Next)
}

/// LEAVE: ESP = EBP, then pop EBP (BP with an operand-size prefix).
pub(crate) fn leave(m: &mut Machine<'_>, op: &Op) -> Step {
    let bp = m.regs[5];
    let v = m.read(bp, op.size)?;
    m.regs[4] = bp.wrapping_add(u32::from(op.size));
    m.set_reg(5, 0, op.size, v);
    Ok(Flow::Next)
}
