//! Helpers shared by the kernel's integration tests: a hand-built ELF32 writer, a console
//! sink the test can read back, and a scripted engine that stands in for a real one.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use denali_engine::{Cpu, Engine, Exit, GuestMemory};

pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;
pub const PT_NOTE: u32 = 4;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

/// One program header and the bytes it names.
#[derive(Clone)]
pub struct Seg {
    pub p_type: u32,
    pub paddr: u32,
    pub vaddr: u32,
    pub data: Vec<u8>,
    pub memsz: u32,
    pub flags: u32,
}

impl Seg {
    pub fn load(addr: u32, data: &[u8], memsz: u32, flags: u32) -> Seg {
        Seg { p_type: PT_LOAD, paddr: addr, vaddr: addr, data: data.to_vec(), memsz, flags }
    }
}

/// The fields of an ELF32 file that the tests vary; `build` lays it out as a linker would:
/// header, program headers, then each segment's bytes.
#[derive(Clone)]
pub struct Elf {
    pub class: u8,
    pub data_encoding: u8,
    pub kind: u16,
    pub machine: u16,
    pub entry: u32,
    pub segments: Vec<Seg>,
}

impl Elf {
    /// A valid executable: one code segment at 1 MiB and a data segment with a .bss tail.
    pub fn valid() -> Elf {
        Elf {
            class: 1,
            data_encoding: 1,
            kind: 2,
            machine: 3,
            entry: 0x10_0000,
            segments: vec![
                Seg::load(0x10_0000, &[0xB8, 7, 0, 0, 0, 0xCD, 0xD0], 7, PF_R | PF_X),
                Seg::load(0x10_1000, b"data", 0x2000, PF_R | PF_W),
            ],
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let phoff = 52u32;
        let mut offset = phoff + 32 * self.segments.len() as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&[0x7F, b'E', b'L', b'F', self.class, self.data_encoding, 1, 0]);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.extend_from_slice(&self.machine.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes()); // e_version
        out.extend_from_slice(&self.entry.to_le_bytes());
        out.extend_from_slice(&phoff.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // e_shoff: no sections
        out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        out.extend_from_slice(&52u16.to_le_bytes()); // e_ehsize
        out.extend_from_slice(&32u16.to_le_bytes()); // e_phentsize
        out.extend_from_slice(&(self.segments.len() as u16).to_le_bytes());
        out.extend_from_slice(&40u16.to_le_bytes()); // e_shentsize
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        assert_eq!(out.len(), 52);
        for s in &self.segments {
            for field in [s.p_type, offset, s.vaddr, s.paddr, s.data.len() as u32, s.memsz, s.flags, 0x1000] {
                out.extend_from_slice(&field.to_le_bytes());
            }
            offset += s.data.len() as u32;
        }
        for s in &self.segments {
            out.extend_from_slice(&s.data);
        }
        out
    }
}

/// A console sink whose bytes the test reads after the VM has written them.
#[derive(Clone, Default)]
pub struct Output(pub Arc<Mutex<Vec<u8>>>);

impl Output {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub type Step = Box<dyn FnMut(&mut Cpu, &mut GuestMemory, u64) -> Exit + Send>;

/// An engine that plays back a script: each `run` call performs the next step, which edits the
/// CPU and memory as the guest code would have and returns the exit. When the script is used up
/// it terminates with status 0xDEAD, so a test that expects more exits notices. It records the
/// budget of every call.
pub struct Scripted {
    steps: VecDeque<Step>,
    pub budgets: Arc<Mutex<Vec<u64>>>,
}

impl Scripted {
    pub fn new(steps: Vec<Step>) -> Scripted {
        Scripted { steps: steps.into(), budgets: Arc::default() }
    }
}

impl Engine for Scripted {
    fn run(&mut self, cpu: &mut Cpu, memory: &mut GuestMemory, budget: u64) -> Exit {
        self.budgets.lock().unwrap().push(budget);
        match self.steps.pop_front() {
            Some(mut step) => step(cpu, memory, budget),
            None => Exit::Terminate { status: 0xDEAD, len: 2 },
        }
    }
}

/// A step that sets EAX and then exits as `exit`.
pub fn with_eax(eax: u32, exit: Exit) -> Step {
    Box::new(move |cpu, _, _| {
        cpu.regs[0] = eax;
        exit
    })
}

/// A step that retires `n` one-byte instructions and exits on the budget.
pub fn retire(n: u64) -> Step {
    Box::new(move |cpu, _, _| {
        for _ in 0..n {
            cpu.retire(1);
        }
        Exit::BudgetExhausted
    })
}

/// A flat image of `code` loaded (and entered) at 0x1000.
pub fn flat(code: &[u8]) -> denali_kernel::Image {
    denali_kernel::Image::flat(code, 0x1000, None).unwrap()
}
