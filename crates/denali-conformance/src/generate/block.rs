//! Random straight-line blocks for live differential testing: several instructions of random
//! v1 forms, built on one shared register and memory setup, so that later instructions use the
//! values earlier ones produce.
//!
//! Two rules keep the comparison meaningful:
//! - no control transfers (a branch could land inside the block, mid-instruction) and no
//!   spec-defined forms (the CPU cannot run them);
//! - no instruction reads a flag that an earlier one left architecturally undefined, since
//!   engines and CPUs may legitimately disagree on those values. The flags still undefined at the
//!   end are masked out of the comparison.

use super::{Ctx, Memory, Rng, encode, memory, operands, special};
use crate::case::{Case, State};
use denali_isa::validate;
use iced_x86::{Code, RflagsBits};

/// The forms a block may use. Besides control transfers and spec-defined forms, this leaves
/// out the 16-bit SHLD/SHRD by CL: with a count above 16 their *result* is undefined, and in a
/// block CL holds whatever earlier instructions left there; and POPFD, which on a CPU can set
/// system flags (AC, NT, ID) that a later PUSHFD would store, where Denali ignores them by
/// design (`isa-spec/README.md` 1.1).
pub fn block_forms() -> Vec<Code> {
    super::all_forms()
        .into_iter()
        .filter(|&f| {
            !special::spec_defined(f)
                && !matches!(validate::form_class(f), Some("jcc" | "jmp" | "call" | "ret"))
                && !matches!(f, Code::Shld_rm16_r16_CL | Code::Shrd_rm16_r16_CL | Code::Popfd)
        })
        .collect()
}

/// EFLAGS bits of iced's `RflagsBits`.
fn eflags_of(rflags: u32) -> u32 {
    use denali_engine::flag::*;
    [
        (RflagsBits::CF, CF),
        (RflagsBits::PF, PF),
        (RflagsBits::AF, AF),
        (RflagsBits::ZF, ZF),
        (RflagsBits::SF, SF),
        (RflagsBits::DF, DF),
        (RflagsBits::OF, OF),
    ]
    .iter()
    .filter(|(bit, _)| rflags & bit != 0)
    .fold(0, |acc, (_, flag)| acc | flag)
}

/// A generated block: the case (its form is `"block"`) and, for each instruction boundary, the
/// EFLAGS bits that are defined there.
pub struct Block {
    pub case: Case,
    /// `(address, mask)` for the start of each instruction and for the end of the block: the
    /// flags to compare when execution stops at that address (a fault there leaves the flags
    /// of the instructions before it).
    pub defined_flags: Vec<(u32, u32)>,
}

impl Block {
    /// The flags to compare when the block stopped at `eip`, or ran to its end.
    pub fn flags_mask_at(&self, eip: u32) -> u32 {
        self.defined_flags.iter().find(|(addr, _)| *addr == eip).map_or(0, |(_, mask)| *mask)
    }

    /// The flags to compare after the whole block.
    pub fn final_flags_mask(&self) -> u32 {
        self.defined_flags.last().map_or(0, |(_, mask)| *mask)
    }
}

/// A block of `len` instructions.
pub fn block(forms: &[Code], len: usize, rng: &mut Rng) -> Block {
    let eip0 = super::CODE_PAGE + rng.below(super::CODE_PAGE_SIZE / 2);
    let mut regs: [u32; 8] = std::array::from_fn(|_| rng.edge32());
    let mut pinned = 0u8;
    let eflags = (rng.u32() & denali_abi::boot::EFLAGS_GUEST_MASK) | denali_abi::boot::INITIAL_EFLAGS;
    let mut mem = Memory::default();
    let mut code = Vec::new();
    let mut undefined = 0u32;
    let mut instructions = 0;
    let guest = denali_abi::boot::EFLAGS_GUEST_MASK;
    let mut defined_flags = vec![(eip0, guest)];
    while instructions < len {
        let eip = eip0 + u32::try_from(code.len()).unwrap_or(0);
        let form = rng.pick(forms);
        let mut ctx = Ctx {
            form,
            index: rng.below(1000) as usize,
            rng: &mut *rng,
            eip,
            regs,
            pinned,
            eflags,
            mem: std::mem::take(&mut mem),
            mem_value: None,
            bit_offset_bytes: None,
            small: false,
        };
        let mut instruction = operands::choose(&mut ctx);
        let built = special::apply(&mut ctx, &mut instruction)
            .and_then(|()| memory::place(&mut ctx, &mut instruction))
            .and_then(|()| encode(&instruction, eip));
        let (ctx_regs, ctx_pinned, ctx_mem) = (ctx.regs, ctx.pinned, ctx.mem);
        mem = ctx_mem;
        let Some(bytes) = built else { continue };
        let decoded = validate::decoder(&bytes, eip).decode();
        if eflags_of(decoded.rflags_read()) & undefined != 0 {
            continue;
        }
        // Shifts and rotates with a count of 0, and REP string instructions with ECX = 0, leave
        // the flags alone, so they may pass undefined flags through: they never make a flag
        // defined again.
        let count_dependent = matches!(validate::form_class(form), Some("shift"))
            || decoded.has_rep_prefix()
            || decoded.has_repne_prefix();
        let defined = if count_dependent {
            0
        } else {
            eflags_of(decoded.rflags_written() | decoded.rflags_cleared() | decoded.rflags_set())
        };
        // The spec's table is the authority on undefined flags (iced calls some of them
        // "modified", e.g. OF after a shift by an immediate other than 1).
        undefined = (undefined & !defined) | eflags_of(decoded.rflags_undefined()) | validate::undefined_flags(form);
        regs = ctx_regs;
        pinned = ctx_pinned;
        code.extend_from_slice(&bytes);
        instructions += 1;
        defined_flags.push((eip + u32::try_from(bytes.len()).unwrap_or(0), guest & !undefined));
    }
    let case =
        Case { form: "block".into(), code, init: State::with_regs(regs, eip0, eflags), memory: mem.into_regions() };
    Block { case, defined_flags }
}
