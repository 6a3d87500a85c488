//! Instruction traces: one line per instruction, written before it runs, with the
//! instructions retired so far, EIP, the disassembly and every register.

use std::io::{self, Write};

use denali_engine::{Cpu, GuestMemory};

use crate::{diagnostic, disasm};

/// Writes the trace line for the instruction at `cpu.eip`.
pub fn write_line(out: &mut dyn Write, cpu: &Cpu, memory: &GuestMemory) -> io::Result<()> {
    let text = disasm::text_at(memory, cpu.eip);
    writeln!(out, "{:>10} {:08x}  {:<32} {}", cpu.instructions, cpu.eip, text, diagnostic::registers(cpu))
}
