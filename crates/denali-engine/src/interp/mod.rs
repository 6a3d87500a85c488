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
    /// The last `run_counting` stopped before a hot block.
    stopped_hot: bool,
}

impl Interpreter {
    pub fn new() -> Interpreter {
        Interpreter::default()
    }

    /// An interpreter that reuses blocks other interpreters of `shared` decoded (where its
    /// memory holds the same bytes) and offers its own: for the many VMs of one image.
    pub fn sharing(shared: Arc<SharedCode>) -> Interpreter {
        Interpreter { cache: Cache::sharing(shared), stopped_hot: false }
    }

    /// Pre-decoded instructions in the block cache: host memory the guest's code costs.
    pub fn cached_instructions(&self) -> usize {
        self.cache.cached_ops()
    }

    /// Runs as [`Engine::run`] does, but counts how often each decoded block is entered and
    /// stops before entering one for more than the `tier_up`th time, with EIP at its start:
    /// then the second value is true. For the JIT's tiering: cold code runs here at the
    /// interpreter's full speed, and the JIT takes over a block once it is hot (every later
    /// entry stops here again, so the JIT runs its translation). It also stops (second value
    /// false) right after an instruction that wrote a page holding cached code: the JIT finds
    /// written code by the cleared marks of its pages, which this interpreter would set again
    /// as soon as it decoded that page anew.
    pub fn run_counting(&mut self, cpu: &mut Cpu, memory: &mut GuestMemory, budget: u64, tier_up: u32) -> (Exit, bool) {
        let exit = self.run_with::<true>(cpu, memory, budget, tier_up);
        (exit, std::mem::take(&mut self.stopped_hot))
    }

    fn run_with<const COUNT: bool>(
        &mut self,
        cpu: &mut Cpu,
        memory: &mut GuestMemory,
        budget: u64,
        tier_up: u32,
    ) -> Exit {
        let mut regs = [0; 9];
        regs[..8].copy_from_slice(&cpu.regs);
        let mut m = Machine { regs, eflags: cpu.eflags, eip: cpu.eip, left: budget, mem: memory };
        let exit = self.run_blocks::<COUNT>(&mut m, tier_up);
        cpu.regs.copy_from_slice(&m.regs[..8]);
        cpu.eflags = m.eflags;
        cpu.eip = m.eip;
        cpu.instructions += budget - m.left;
        exit
    }

    fn run_blocks<const COUNT: bool>(&mut self, m: &mut Machine<'_>, tier_up: u32) -> Exit {
        'blocks: loop {
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
            if COUNT && self.cache.count_run(slot) > tier_up {
                self.stopped_hot = true;
                return Exit::BudgetExhausted;
            }
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
                            if COUNT {
                                return Exit::BudgetExhausted;
                            }
                            continue 'blocks;
                        }
                    }
                    Ok(Flow::Jump) => {
                        m.left -= 1;
                        if COUNT && m.mem.code_was_written() {
                            // A CALL's push.
                            return Exit::BudgetExhausted;
                        }
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
        self.run_with::<false>(cpu, memory, budget, 0)
    }
}
