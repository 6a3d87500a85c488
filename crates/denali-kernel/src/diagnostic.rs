//! Fatal guest faults and the diagnostic the kernel prints for them: what went wrong, where,
//! the faulting instruction and the whole CPU state.

use std::fmt;

use denali_engine::{Cpu, Exception, ExceptionKind, reg};

/// Why a VM stopped with a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCause {
    /// An exception with no handler set (`EXC_HANDLER` is 0).
    Unhandled(Exception),
    /// An exception whose frame could not be pushed because the stack at `stack_addr` is
    /// outside memory; or (`stack_addr` is `None`) an exception raised by the handler's first
    /// instruction, which would otherwise re-enter the handler forever.
    DoubleFault { exception: Exception, stack_addr: Option<u32> },
    /// Interrupt delivery failed: the frame did not fit on the stack at `stack_addr`.
    InterruptFrame { stack_addr: u32 },
    /// The guest idled with no timeout while no interrupt could ever wake it.
    IdleForever,
}

/// A fatal fault with the state the VM stopped in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub cause: FaultCause,
    /// The CPU at the fault: for an exception, the state before the faulting instruction.
    pub cpu: Cpu,
    /// The bytes of the instruction at `cpu.eip` (empty when EIP is outside memory).
    pub bytes: Vec<u8>,
    /// Its disassembly, `<outside memory>` or `(bad)`.
    pub disasm: String,
}

impl Fault {
    /// The exception behind the fault, if there is one.
    pub fn exception(&self) -> Option<Exception> {
        match self.cause {
            FaultCause::Unhandled(e) | FaultCause::DoubleFault { exception: e, .. } => Some(e),
            FaultCause::InterruptFrame { .. } | FaultCause::IdleForever => None,
        }
    }
}

fn describe(exception: &Exception) -> String {
    let what = match exception.kind {
        ExceptionKind::Divide => "divide error",
        ExceptionKind::Invalid => "invalid instruction",
        ExceptionKind::Memory => "memory access outside guest memory",
        ExceptionKind::Breakpoint => "breakpoint",
        ExceptionKind::Port => "bad port access",
    };
    let mut text = format!("{} exception ({what}) at eip 0x{:08x}", exception.kind, exception.eip);
    if exception.kind == ExceptionKind::Memory {
        text += &format!(", address 0x{:08x}", exception.addr);
    }
    text
}

impl fmt::Display for Fault {
    /// Several lines, the first saying what happened, without a trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            FaultCause::Unhandled(e) => write!(f, "guest fault: {} with no exception handler", describe(e))?,
            FaultCause::DoubleFault { exception: first, stack_addr: Some(addr) } => write!(
                f,
                "guest double fault: {}; the exception frame could not be pushed (stack address 0x{addr:08x} is outside memory)",
                describe(first)
            )?,
            FaultCause::DoubleFault { exception: first, stack_addr: None } => write!(
                f,
                "guest double fault: {}, raised again before the exception handler ran an instruction",
                describe(first)
            )?,
            FaultCause::InterruptFrame { stack_addr } => write!(
                f,
                "guest double fault: the interrupt frame could not be pushed (stack address 0x{stack_addr:08x} is outside memory)"
            )?,
            FaultCause::IdleForever => write!(
                f,
                "guest deadlock: idle with no timeout at eip 0x{:08x}, and no interrupt can wake it",
                self.cpu.eip
            )?,
        }
        let bytes: Vec<String> = self.bytes.iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "\n  instruction: 0x{:08x}: {}  {}", self.cpu.eip, bytes.join(" "), self.disasm)?;
        write!(f, "\n  {}", registers(&self.cpu))?;
        write!(f, "\n  instructions retired: {}", self.cpu.instructions)
    }
}

/// `eax=... ecx=... ... edi=... eflags=...`, as traces and diagnostics print registers.
pub(crate) fn registers(cpu: &Cpu) -> String {
    let mut text = String::new();
    for (name, value) in reg::NAMES.iter().zip(cpu.regs) {
        text += &format!("{name}={value:08x} ");
    }
    text + &format!("eflags={:08x}", cpu.eflags)
}
