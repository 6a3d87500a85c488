//! Why an engine returned control to the kernel. Guest outcomes are values, never errors.

use std::fmt;

/// An exception raised by the guest, as the spec's exception kinds define it. When an engine
/// reports one, the CPU state is exactly that before the faulting instruction (or, for a REP
/// string instruction, before the faulting iteration): nothing of it was retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    pub kind: ExceptionKind,
    /// Address of the instruction that raised it.
    pub eip: u32,
    /// For `Memory`, the first address at or above the memory size that the access needed;
    /// otherwise 0.
    pub addr: u32,
}

/// The exception kinds of `isa-spec/exceptions.txt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExceptionKind {
    Divide,
    Invalid,
    Memory,
    Breakpoint,
    Port,
}

impl ExceptionKind {
    /// The value written to `FAULT_KIND` and pushed to the exception handler.
    pub fn code(self) -> u32 {
        use denali_abi::exception as e;
        match self {
            ExceptionKind::Divide => e::DIVIDE,
            ExceptionKind::Invalid => e::INVALID,
            ExceptionKind::Memory => e::MEMORY,
            ExceptionKind::Breakpoint => e::BREAKPOINT,
            ExceptionKind::Port => e::PORT,
        }
    }

    /// Name used in diagnostics and state dumps.
    pub fn name(self) -> &'static str {
        match self {
            ExceptionKind::Divide => "divide",
            ExceptionKind::Invalid => "invalid",
            ExceptionKind::Memory => "memory",
            ExceptionKind::Breakpoint => "breakpoint",
            ExceptionKind::Port => "port",
        }
    }
}

impl fmt::Display for ExceptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why `Engine::run` returned.
///
/// For `PortIn`, `PortOut`, `Idle` and `Terminate`, EIP points at the instruction, which is not
/// retired: the kernel performs it and then calls `Cpu::retire(len)` (after writing EAX for IN
/// and idle), or raises an exception at that EIP instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The instruction budget is used up; EIP is the next instruction to run.
    BudgetExhausted,
    /// `in eax, PORT`: the kernel writes the value to EAX.
    PortIn { port: u16, width: u8, len: u8 },
    /// `out PORT, eax`: `value` is EAX (or the narrower register of the access).
    PortOut { port: u16, width: u8, value: u32, len: u8 },
    /// The virtual idle-with-timeout instruction (`hlt`), with EAX as its timeout.
    Idle { timeout_us: u32, len: u8 },
    /// The virtual terminate instruction (`int 0xd0`), with EAX as its status.
    Terminate { status: u32, len: u8 },
    /// The guest raised an exception.
    Exception(Exception),
}

/// An execution engine. One engine instance serves one VM; it may cache decoded or translated
/// code for that VM's memory. Engines are `Send` so that a scheduler may move a VM between
/// threads (it runs on one thread at a time).
pub trait Engine: Send {
    /// Runs guest code from `cpu.eip` until `budget` instructions have retired or something
    /// needs the kernel. `budget` is never 0.
    fn run(&mut self, cpu: &mut crate::Cpu, memory: &mut crate::GuestMemory, budget: u64) -> Exit;
}
