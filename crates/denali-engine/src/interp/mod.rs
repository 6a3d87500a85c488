//! The portable interpreter.

use crate::{Cpu, Engine, Exit, GuestMemory};

/// Interprets guest code, caching decoded blocks.
#[derive(Default)]
pub struct Interpreter {}

impl Interpreter {
    pub fn new() -> Interpreter {
        Interpreter {}
    }
}

impl Engine for Interpreter {
    fn run(&mut self, _cpu: &mut Cpu, _memory: &mut GuestMemory, _budget: u64) -> Exit {
        todo!("interpreter")
    }
}
