//! Delivery of exceptions and interrupts to the guest's handlers (`EXC_HANDLER`,
//! `IRQ_HANDLER`): the frame pushed on the guest stack and the jump.
//!
//! Frames, lowest address (the new ESP) first:
//! - exception: kind code, fault address, EFLAGS, return EIP;
//! - interrupt: pending mask, EFLAGS, return EIP.
//!
//! Pushes go through the checked memory accessors. The frame is built on a copy of the CPU
//! and committed only when every push succeeded, so when delivery fails (the stack is outside
//! memory: a double fault) the CPU still shows the state at the original exception.

use denali_abi::vreg;
use denali_engine::{Cpu, Exception, ExceptionKind, GuestMemory, OutOfBounds, reg};

use crate::vregs;

/// Pushes `values` in order onto the stack of `cpu`.
fn push_all(cpu: &mut Cpu, memory: &mut GuestMemory, values: &[u32]) -> Result<(), OutOfBounds> {
    for &value in values {
        let esp = cpu.regs[reg::ESP].wrapping_sub(4);
        memory.write_u32(esp, value)?;
        cpu.regs[reg::ESP] = esp;
    }
    Ok(())
}

/// Records `exception` in the register page and, when the guest has an exception handler,
/// enters it. Returns `Ok(true)` when delivered, `Ok(false)` when there is no handler, and the
/// stack address that could not be written when the frame does not fit (a double fault).
pub(crate) fn deliver_exception(
    cpu: &mut Cpu,
    memory: &mut GuestMemory,
    exception: &Exception,
) -> Result<bool, OutOfBounds> {
    vregs::record_fault(memory, exception);
    let handler = vregs::read(memory, vreg::EXC_HANDLER);
    if handler == 0 {
        return Ok(false);
    }
    let mut next = *cpu;
    if exception.kind == ExceptionKind::Breakpoint {
        // INT3 is a trap: it completes, and the handler returns to the instruction after it.
        next.eip = exception.eip;
        next.retire(1);
    } else {
        next.eip = exception.eip;
    }
    let frame = [next.eip, next.eflags, exception.addr, exception.kind.code()];
    push_all(&mut next, memory, &frame)?;
    next.eip = handler;
    *cpu = next;
    Ok(true)
}

/// Enters the interrupt handler when interrupts are enabled, some are pending and a handler is
/// set. Delivery clears `IRQ_PENDING` (every bit is delivered at once, in the pushed mask) and
/// `IRQ_ENABLE`. Returns whether it delivered, or the stack address it could not write.
pub(crate) fn deliver_interrupts(cpu: &mut Cpu, memory: &mut GuestMemory) -> Result<bool, OutOfBounds> {
    let pending = vregs::read(memory, vreg::IRQ_PENDING);
    let handler = vregs::read(memory, vreg::IRQ_HANDLER);
    if vregs::read(memory, vreg::IRQ_ENABLE) == 0 || pending == 0 || handler == 0 {
        return Ok(false);
    }
    let mut next = *cpu;
    let frame = [next.eip, next.eflags, pending];
    push_all(&mut next, memory, &frame)?;
    next.eip = handler;
    *cpu = next;
    vregs::write_u32(memory, vreg::IRQ_PENDING, 0);
    vregs::write_u32(memory, vreg::IRQ_ENABLE, 0);
    Ok(true)
}
