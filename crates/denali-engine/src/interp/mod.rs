//! The portable interpreter: decodes guest code once into blocks of pre-decoded instructions
//! (`cache`, `decode`) and runs them with one handler per instruction form.
//!
//! Files by concern: `machine` (state, operands), `flags` (EFLAGS and the table of choices for
//! undefined flags), `alu`, `shift`, `muldiv`, `bits`, `string`, `stack`, `control`.

mod alu;
mod bits;
mod cache;
mod control;
mod decode;
mod flags;
mod machine;
mod muldiv;
mod shared;
mod shift;
mod stack;
mod string;

pub use decode::handles;
pub use shared::SharedCode;

use crate::{Cpu, Engine, Exception, ExceptionKind, Exit, GuestMemory};
use std::sync::Arc;

use cache::Cache;
use machine::{Flow, Machine, Op, Trap};

/// Interprets guest code, caching decoded blocks.
#[derive(Default)]
pub struct Interpreter {
    cache: Cache,
}

impl Interpreter {
    pub fn new() -> Interpreter {
        Interpreter::default()
    }

    /// An interpreter that reuses blocks other interpreters of `shared` decoded (where its
    /// memory holds the same bytes) and offers its own: for the many VMs of one image.
    pub fn sharing(shared: Arc<SharedCode>) -> Interpreter {
        Interpreter { cache: Cache::sharing(shared) }
    }

    /// Pre-decoded instructions in the block cache: host memory the guest's code costs.
    pub fn cached_instructions(&self) -> usize {
        self.cache.cached_ops()
    }

    /// Runs the block at `cpu.eip` and stops where it ends (a jump, or its last instruction),
    /// or earlier at an exit or when `budget` runs out: `BudgetExhausted` then means only
    /// that the block is over. For engines that run cold code here and count how often each
    /// block starts (the JIT's tiering).
    pub fn run_block(&mut self, cpu: &mut Cpu, memory: &mut GuestMemory, budget: u64) -> Exit {
        self.run_with::<true>(cpu, memory, budget)
    }

    fn run_with<const ONE_BLOCK: bool>(&mut self, cpu: &mut Cpu, memory: &mut GuestMemory, budget: u64) -> Exit {
        let mut regs = [0; 9];
        regs[..8].copy_from_slice(&cpu.regs);
        let mut m = Machine { regs, eflags: cpu.eflags, eip: cpu.eip, left: budget, mem: memory };
        let exit = self.run_blocks::<ONE_BLOCK>(&mut m);
        cpu.regs.copy_from_slice(&m.regs[..8]);
        cpu.eflags = m.eflags;
        cpu.eip = m.eip;
        cpu.instructions += budget - m.left;
        exit
    }

    fn run_blocks<const ONE_BLOCK: bool>(&mut self, m: &mut Machine<'_>) -> Exit {
        let mut first = true;
        'blocks: loop {
            if ONE_BLOCK && !std::mem::take(&mut first) {
                return Exit::BudgetExhausted;
            }
            if m.mem.code_was_written() {
                let pages = m.mem.take_written_code_pages();
                self.cache.invalidate(&pages);
            }
            if m.left == 0 {
                return Exit::BudgetExhausted;
            }
            if m.eip >= m.mem.size() {
                return Exit::Exception(Exception { kind: ExceptionKind::Memory, eip: m.eip, addr: m.eip });
            }
            let slot = self.cache.lookup(m.eip, m.mem);
            let block = self.cache.block(slot);
            for op in block.ops.iter() {
                if m.left == 0 {
                    m.eip = op.eip;
                    return Exit::BudgetExhausted;
                }
                match (op.exec)(m, op) {
                    Ok(Flow::Next) => {
                        m.left -= 1;
                        if m.mem.code_was_written() {
                            // The store may have hit this very block: re-decode from the next
                            // instruction.
                            m.eip = op.next;
                            continue 'blocks;
                        }
                    }
                    Ok(Flow::Jump) => {
                        m.left -= 1;
                        continue 'blocks;
                    }
                    Err(trap) => {
                        m.eip = op.eip;
                        return exit_for(trap, m, op);
                    }
                }
            }
            m.eip = block.end;
        }
    }
}

fn exit_for(trap: Trap, m: &Machine<'_>, op: &Op) -> Exit {
    let exception = |kind, addr| Exit::Exception(Exception { kind, eip: op.eip, addr });
    match trap {
        Trap::Mem(addr) => exception(ExceptionKind::Memory, addr),
        Trap::Divide => exception(ExceptionKind::Divide, 0),
        Trap::Invalid => exception(ExceptionKind::Invalid, 0),
        Trap::Breakpoint => exception(ExceptionKind::Breakpoint, 0),
        Trap::Idle => Exit::Idle { timeout_us: m.regs[0], len: op.len },
        Trap::Terminate => Exit::Terminate { status: m.regs[0], len: op.len },
        Trap::PortIn(port) => Exit::PortIn { port, width: 4, len: op.len },
        Trap::PortOut(port) => Exit::PortOut { port, width: 4, value: m.regs[0], len: op.len },
        Trap::Budget => Exit::BudgetExhausted,
    }
}

/// Whether the validator admits an instruction.
fn validator_accepts(ins: &iced_x86::Instruction) -> bool {
    denali_isa::validate::check(ins).is_ok()
}

impl Engine for Interpreter {
    fn run(&mut self, cpu: &mut Cpu, memory: &mut GuestMemory, budget: u64) -> Exit {
        self.run_with::<false>(cpu, memory, budget)
    }
}
