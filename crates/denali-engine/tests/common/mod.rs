//! Shared helpers for the interpreter tests: assemble a program with iced's `CodeAssembler`,
//! load it at `CODE`, run it with the interpreter and inspect the result.
#![allow(dead_code, reason = "each test file uses a different subset")]

use denali_engine::{Cpu, Engine, Exit, GuestMemory, Interpreter};
use iced_x86::code_asm::CodeAssembler;

pub const CODE: u32 = 0x1000;
pub const DATA: u32 = 0x8000;
pub const STACK_TOP: u32 = 0x1_0000;
pub const MEM_SIZE: u64 = 0x2_0000;

#[allow(unused_imports, reason = "each test file uses a different subset")]
pub use denali_engine::flag::{AF, CF, DF, OF, PF, SF, ZF};
pub const STATUS: u32 = CF | PF | AF | ZF | SF | OF;

pub fn assemble(f: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    f(&mut a).unwrap();
    a.assemble(u64::from(CODE)).unwrap()
}

pub struct Vm {
    pub cpu: Cpu,
    pub mem: GuestMemory,
    pub engine: Interpreter,
}

impl Vm {
    pub fn new(code: &[u8]) -> Vm {
        let mut mem = GuestMemory::new(MEM_SIZE).unwrap();
        mem.write(CODE, code).unwrap();
        Vm { cpu: Cpu::new(CODE, STACK_TOP), mem, engine: Interpreter::new() }
    }

    pub fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>) -> Vm {
        Vm::new(&assemble(f))
    }

    pub fn run(&mut self, budget: u64) -> Exit {
        self.engine.run(&mut self.cpu, &mut self.mem, budget)
    }

    /// Runs until `int 0xd0` and checks it is reached.
    pub fn finish(&mut self) -> &mut Vm {
        let exit = self.run(10_000_000);
        assert!(matches!(exit, Exit::Terminate { .. }), "expected terminate, got {exit:?} at {:#x}", self.cpu.eip);
        self
    }

    pub fn reg(&self, r: usize) -> u32 {
        self.cpu.regs[r]
    }

    pub fn flags(&self) -> u32 {
        self.cpu.eflags & STATUS
    }

    pub fn u32_at(&self, addr: u32) -> u32 {
        self.mem.read_u32(addr).unwrap()
    }
}

/// Runs a program ending with `int 0xd0` and returns the finished VM.
pub fn run(f: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>) -> Vm {
    let mut vm = Vm::asm(f);
    vm.finish();
    vm
}
