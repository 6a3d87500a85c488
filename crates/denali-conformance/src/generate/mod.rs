//! The case generator: for every v1 instruction form, deterministic cases that exercise its
//! operands, addressing shapes, edge values, flags and faults, ready for the native oracle.
//!
//! A case is built in stages, each in its own file: `operands` picks the instruction's
//! registers and immediates from the form's operand kinds; `special` applies what the form
//! itself needs (shift counts, dividends, stacks, string areas, branch targets, ports);
//! `memory` places the explicit memory operand (effective address first, then the base and
//! index values that produce it) and lays out the data regions. The instruction is then
//! encoded with iced and round-tripped through the validator; a case that does not encode to
//! exactly its form, or that the validator rejects, is discarded and drawn again.
//!
//! Forms that a CPU cannot run in user mode (the virtual instructions and port I/O) are
//! generated like the others, but their expected result comes from the spec (`spec_expected`)
//! rather than from the oracle.

mod block;
mod memory;
mod operands;
mod rng;
mod special;

pub use block::{Block, block, block_forms};
pub use rng::Rng;
pub use special::{flags_mask, spec_defined, spec_expected};

use crate::case::{Case, State};
use denali_isa::{spec, validate};
use iced_x86::{Code, Encoder, Instruction, Register};
use memory::Memory;

/// Where every case's code lives: one page, filled with INT3 natively around the case's code.
pub const CODE_PAGE: u32 = 0x0010_0000;
/// Size of the code page.
pub const CODE_PAGE_SIZE: u32 = 0x1000;
/// The data area: effective addresses, stacks and string buffers are drawn from here, well
/// clear of the code page and of the top of memory (faulting cases aside).
pub const DATA_LO: u32 = 0x0020_0000;
pub const DATA_HI: u32 = 0x00F0_0000;

/// Every v1 form of `isa-spec/forms.txt`, in table order.
pub fn all_forms() -> Vec<Code> {
    spec::FORMS
        .rows()
        .iter()
        .filter(|row| row.cells[3] == "y")
        .map(|row| validate::code_by_name(row.cells[0]).expect("forms.txt names iced Codes (denali-isa tests)"))
        .collect()
}

/// How many cases a form gets: forms whose flags depend on many operand combinations get
/// more, and the shifts need at least every count 0..=63 besides.
pub fn cases_per_form(form: Code) -> usize {
    let name = format!("{form:?}");
    let class = validate::form_class(form).unwrap_or("");
    let flag_heavy = matches!(class, "shift" | "muldiv" | "string")
        || name.starts_with("Adc")
        || name.starts_with("Sbb")
        || name.starts_with("Cmpxchg")
        || name.starts_with("Xadd");
    if flag_heavy { 1000 } else { 500 }
}

/// `count` cases of `form`, the same for the same `seed`.
pub fn cases(form: Code, count: usize, seed: u64) -> Vec<Case> {
    // Mix the form into the seed so that forms do not share operand sequences.
    let mut rng = Rng::new(seed ^ (form as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let index = out.len();
        let case = (0..10_000)
            .find_map(|_| one_case(form, index, &mut rng))
            .unwrap_or_else(|| panic!("{form:?}: no valid case after 10000 attempts"));
        out.push(case);
    }
    out
}

/// The 32-bit general registers in encoding order.
pub(crate) const GPR32: [Register; 8] = [
    Register::EAX,
    Register::ECX,
    Register::EDX,
    Register::EBX,
    Register::ESP,
    Register::EBP,
    Register::ESI,
    Register::EDI,
];
/// The 16-bit registers in encoding order.
pub(crate) const GPR16: [Register; 8] =
    [Register::AX, Register::CX, Register::DX, Register::BX, Register::SP, Register::BP, Register::SI, Register::DI];
/// The 8-bit registers in encoding order.
pub(crate) const GPR8: [Register; 8] =
    [Register::AL, Register::CL, Register::DL, Register::BL, Register::AH, Register::CH, Register::DH, Register::BH];

/// The state of one case while it is being built.
pub(crate) struct Ctx<'a> {
    pub form: Code,
    /// The case's number within its form: stages use it to guarantee coverage (every shift
    /// count, REP counts 0 and 1, some faulting cases) rather than hoping randomness finds it.
    pub index: usize,
    pub rng: &'a mut Rng,
    pub eip: u32,
    pub regs: [u32; 8],
    /// Registers (by number) whose values a stage has fixed; later stages leave them alone.
    pub pinned: u8,
    pub eflags: u32,
    pub mem: Memory,
    /// Bytes to store at the effective address of the explicit memory operand.
    pub mem_value: Option<Vec<u8>>,
    /// For BT-family forms with a register bit offset: the byte offset of the accessed unit
    /// from the effective address.
    pub bit_offset_bytes: Option<i32>,
    /// Small operand values (multiplies that do not overflow).
    pub small: bool,
}

impl Ctx<'_> {
    pub fn pin(&mut self, number: usize) {
        self.pinned |= 1 << number;
    }

    pub fn is_pinned(&self, number: usize) -> bool {
        self.pinned & (1 << number) != 0
    }

    /// Sets the value of a 8-, 16- or 32-bit register, keeping the other bits of its full
    /// register, and pins the full register.
    pub fn set_reg(&mut self, reg: Register, value: u32) {
        let (number, shift, mask) = reg_slot(reg);
        self.regs[number] = (self.regs[number] & !(mask << shift)) | ((value & mask) << shift);
        self.pin(number);
    }

    pub fn reg(&self, reg: Register) -> u32 {
        let (number, shift, mask) = reg_slot(reg);
        (self.regs[number] >> shift) & mask
    }

    /// A branch target inside the code page, away from the case's own bytes (a branch to
    /// itself would loop) and, for rel8 forms, within reach of `eip + 2`.
    pub fn code_target(&mut self, rel8: bool) -> u32 {
        loop {
            let target = CODE_PAGE + self.rng.below(CODE_PAGE_SIZE);
            if (self.eip..self.eip + 16).contains(&target) {
                continue;
            }
            let rel = i64::from(target) - i64::from(self.eip + 2);
            if rel8 && !(-128..=127).contains(&rel) {
                continue;
            }
            return target;
        }
    }
}

/// The full register number of `reg`, the bit position of its value and its mask.
pub(crate) fn reg_slot(reg: Register) -> (usize, u32, u32) {
    let number = reg.full_register32().number();
    let shift = if matches!(reg, Register::AH | Register::CH | Register::DH | Register::BH) { 8 } else { 0 };
    let mask = match reg.size() {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    };
    (number, shift, mask)
}

/// One attempt at case `index` of `form`; `None` when the draw does not make a valid case.
fn one_case(form: Code, index: usize, rng: &mut Rng) -> Option<Case> {
    let eip = CODE_PAGE + rng.below(CODE_PAGE_SIZE - 16);
    let small = validate::form_class(form) == Some("muldiv") && rng.chance(1, 3);
    let regs = std::array::from_fn(|_| if small { rng.small_signed() } else { rng.edge32() });
    // Random status flags and DF, with the bits that always read as set (0x202).
    let eflags = (rng.u32() & denali_abi::boot::EFLAGS_GUEST_MASK) | denali_abi::boot::INITIAL_EFLAGS;
    let mut ctx = Ctx {
        form,
        index,
        rng,
        eip,
        regs,
        pinned: 0,
        eflags,
        mem: Memory::default(),
        mem_value: None,
        bit_offset_bytes: None,
        small,
    };
    let mut instruction = operands::choose(&mut ctx);
    special::apply(&mut ctx, &mut instruction)?;
    memory::place(&mut ctx, &mut instruction)?;
    let code = encode(&instruction, eip)?;
    Some(Case {
        form: format!("{form:?}"),
        code,
        init: State::with_regs(ctx.regs, eip, ctx.eflags),
        memory: ctx.mem.into_regions(),
    })
}

/// Encodes at `eip` and checks the bytes decode to the same form and pass the validator.
fn encode(instruction: &Instruction, eip: u32) -> Option<Vec<u8>> {
    let mut encoder = Encoder::new(32);
    encoder.encode(instruction, u64::from(eip)).ok()?;
    let bytes = encoder.take_buffer();
    let decoded = validate::decoder(&bytes, eip).decode();
    let same = decoded.code() == instruction.code() && decoded.len() == bytes.len();
    (same && validate::check(&decoded).is_ok()).then_some(bytes)
}
