//! Control transfer (Jcc JMP CALL RET LOOPcc JECXZ) and the instructions that leave the
//! interpreter: the virtual instructions, port I/O, INT3, and the placeholders for invalid
//! instructions and failed fetches.
//!
//! Every handler here ends its block: it sets `Machine::eip` and returns `Flow::Jump`, or
//! returns a trap.

use super::flags::cond;
use super::machine::{Flow, Machine, Op, Opnd, Step, Trap, mask};
use crate::flag::ZF;

/// Jcc: target in `imm`, condition in `sub`.
pub(crate) fn jcc(m: &mut Machine<'_>, op: &Op) -> Step {
    m.eip = if cond(m.eflags, op.sub) { op.imm } else { op.next };
    Ok(Flow::Jump)
}

/// JMP rel.
pub(crate) fn jmp(m: &mut Machine<'_>, op: &Op) -> Step {
    m.eip = op.imm;
    Ok(Flow::Jump)
}

/// JMP r/m.
pub(crate) fn jmp_indirect(m: &mut Machine<'_>, op: &Op) -> Step {
    m.eip = m.get(op, op.src, op.size)?;
    Ok(Flow::Jump)
}

/// CALL rel: pushes the return address (16 bits with an operand-size prefix).
pub(crate) fn call(m: &mut Machine<'_>, op: &Op) -> Step {
    m.push(op.size, op.next & mask(op.size))?;
    m.eip = op.imm;
    Ok(Flow::Jump)
}

/// CALL r/m: the target is read (with the old ESP) before the push.
pub(crate) fn call_indirect(m: &mut Machine<'_>, op: &Op) -> Step {
    let target = m.get(op, op.src, op.size)?;
    m.push(op.size, op.next & mask(op.size))?;
    m.eip = target;
    Ok(Flow::Jump)
}

/// RET and RET imm16 (`imm` bytes released after the pop).
pub(crate) fn ret(m: &mut Machine<'_>, op: &Op) -> Step {
    let target = m.read(m.regs[4], op.size)?;
    m.regs[4] = m.regs[4].wrapping_add(u32::from(op.size)).wrapping_add(op.imm);
    m.eip = target;
    Ok(Flow::Jump)
}

/// LOOP (`sub` = 0), LOOPE (1), LOOPNE (2): decrement ECX (no flags) and branch while it is
/// non-zero (and ZF matches). JECXZ (3): branch when ECX is zero.
pub(crate) fn loops(m: &mut Machine<'_>, op: &Op) -> Step {
    let taken = if op.sub == 3 {
        m.regs[1] == 0
    } else {
        m.regs[1] = m.regs[1].wrapping_sub(1);
        let zf = m.eflags & ZF != 0;
        m.regs[1] != 0 && (op.sub == 0 || (op.sub == 1) == zf)
    };
    m.eip = if taken { op.imm } else { op.next };
    Ok(Flow::Jump)
}

/// HLT: the virtual idle instruction.
pub(crate) fn idle(_m: &mut Machine<'_>, _op: &Op) -> Step {
    Err(Trap::Idle)
}

/// INT 0xD0: the virtual terminate instruction.
pub(crate) fn terminate(_m: &mut Machine<'_>, _op: &Op) -> Step {
    Err(Trap::Terminate)
}

/// INT3.
pub(crate) fn breakpoint(_m: &mut Machine<'_>, _op: &Op) -> Step {
    Err(Trap::Breakpoint)
}

/// The port of an IN or OUT: DX or an immediate.
fn port(m: &Machine<'_>, o: Opnd) -> u16 {
    #[allow(clippy::cast_possible_truncation, reason = "ports are 16 bits")]
    match o {
        Opnd::Imm(p) => p as u16,
        _ => m.regs[2] as u16,
    }
}

/// IN EAX, port (port in `src`).
pub(crate) fn port_in(m: &mut Machine<'_>, op: &Op) -> Step {
    Err(Trap::PortIn(port(m, op.src)))
}

/// OUT port, EAX (port in `dst`).
pub(crate) fn port_out(m: &mut Machine<'_>, op: &Op) -> Step {
    Err(Trap::PortOut(port(m, op.dst)))
}

/// An instruction outside the subset, or undecodable bytes.
pub(crate) fn invalid(_m: &mut Machine<'_>, _op: &Op) -> Step {
    Err(Trap::Invalid)
}

/// An instruction whose bytes run past the end of memory; `imm` is the first address outside.
pub(crate) fn fetch_fault(_m: &mut Machine<'_>, op: &Op) -> Step {
    Err(Trap::Mem(op.imm))
}
