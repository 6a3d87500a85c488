//! Data memory of a case and the placement of the explicit memory operand.
//!
//! The effective address is chosen first (in the data area, or at the top of memory for the
//! cases that must fault), then an addressing shape, then the base and index values that
//! produce it: the arithmetic wraps, so any index value works and the base absorbs the rest.

use super::{CODE_PAGE, CODE_PAGE_SIZE, Ctx, DATA_HI, DATA_LO, GPR32};
use crate::case::{FIRST_CASE_ADDR, MEMORY_SIZE, Region};
use iced_x86::{Mnemonic, OpKind, Register};
use std::collections::BTreeMap;

/// Sparse guest memory, byte by byte: regions built from it never overlap, and areas that
/// overlap (a stack next to an operand, overlapping string buffers) simply merge.
#[derive(Debug, Default)]
pub struct Memory(BTreeMap<u32, u8>);

/// Whether a case may put data at `addr`: inside memory, above the lowest 64 KiB the oracle
/// cannot map, and off the code page (natively INT3 there).
fn usable(addr: u32) -> bool {
    (FIRST_CASE_ADDR..MEMORY_SIZE).contains(&addr) && !(CODE_PAGE..CODE_PAGE + CODE_PAGE_SIZE).contains(&addr)
}

impl Memory {
    /// Random bytes at `addr..addr + len`, where nothing was placed yet.
    pub fn fill(&mut self, rng: &mut super::Rng, addr: u32, len: u32) {
        for i in 0..len {
            let a = addr.wrapping_add(i);
            if usable(a) {
                let byte = rng.u32() as u8;
                self.0.entry(a).or_insert(byte);
            }
        }
    }

    /// `bytes` at `addr`, over whatever was there.
    pub fn write(&mut self, addr: u32, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            let a = addr.wrapping_add(i as u32);
            if usable(a) {
                self.0.insert(a, b);
            }
        }
    }

    pub fn read(&self, addr: u32) -> Option<u8> {
        self.0.get(&addr).copied()
    }

    /// The contiguous runs of placed bytes, in address order.
    pub fn into_regions(self) -> Vec<Region> {
        let mut regions: Vec<Region> = Vec::new();
        for (addr, byte) in self.0 {
            match regions.last_mut() {
                Some(r) if r.addr + r.data.len() as u32 == addr => r.data.push(byte),
                _ => regions.push(Region { addr, data: vec![byte] }),
            }
        }
        regions
    }
}

/// A random address in the data area, aligned to `align` most of the time (misaligned
/// accesses are legal and must work too), with `margin` bytes free on both sides.
pub fn data_addr(rng: &mut super::Rng, align: u32, margin: u32) -> u32 {
    let addr = rng.range(DATA_LO + margin, DATA_HI - margin);
    if align > 1 && rng.chance(3, 4) { addr & !(align - 1) } else { addr }
}

/// Forms whose memory operand is only an address: nothing is read or written.
fn no_access(ctx: &Ctx<'_>) -> bool {
    matches!(ctx.form.mnemonic(), Mnemonic::Lea | Mnemonic::Nop)
}

/// Places the explicit memory operand of `instruction`, if it has one (string operands and
/// XLAT's [ebx+al] are placed by `special`).
pub fn place(ctx: &mut Ctx<'_>, instruction: &mut iced_x86::Instruction) -> Option<()> {
    let has_memory = (0..instruction.op_count()).any(|i| instruction.op_kind(i) == OpKind::Memory);
    if !has_memory || instruction.memory_index() == Register::AL {
        return Some(());
    }
    let size = instruction.memory_size().size().max(1) as u32;
    let moffs = ctx.form.op_code().op_kinds().contains(&iced_x86::OpCodeOperandKind::mem_offs);
    // A few cases per memory form fault: straddling the end of memory, or far above it.
    let ea = match ctx.index % 50 {
        11 if !no_access(ctx) => {
            if size > 1 {
                MEMORY_SIZE - size / 2
            } else {
                MEMORY_SIZE
            }
        }
        37 if !no_access(ctx) => ctx.rng.pick(&[0xFFFF_FFF0, MEMORY_SIZE + 0x1000, 0x8000_0000]),
        _ => data_addr(ctx.rng, size.min(8), 0x2_0000),
    };

    let free: Vec<usize> = (0..8).filter(|&n| !ctx.is_pinned(n)).collect();
    let free_index: Vec<usize> = free.iter().copied().filter(|&n| n != 4).collect();
    // Shapes: 0 [disp32], 1 [base], 2 [base+disp8], 3 [base+disp32], 4 [base+index*s],
    // 5 [base+index*s+disp8], 6 [base+index*s+disp32], 7 [index*s+disp32].
    let mut shape = if moffs { 0 } else { ctx.rng.below(8) };
    if (1..=6).contains(&shape) && free.is_empty() {
        shape = 0;
    }
    if shape >= 4 && free_index.len() < 2 {
        shape = if free.is_empty() { 0 } else { 1 };
    }
    let base = if (1..=6).contains(&shape) { Some(ctx.rng.pick(&free)) } else { None };
    let index = if shape >= 4 {
        let choices: Vec<usize> = free_index.iter().copied().filter(|&n| Some(n) != base).collect();
        if choices.is_empty() {
            return None;
        }
        Some(ctx.rng.pick(&choices))
    } else {
        None
    };
    let scale = ctx.rng.pick(&[1u32, 2, 4, 8]);
    let (disp, displ_size) = match shape {
        0 => (ea, 4),
        1 | 4 => (0, 0),
        2 | 5 => (i32::from(ctx.rng.edge8() as i8) as u32, 1),
        _ => (if ctx.rng.chance(1, 2) { ctx.rng.u32() } else { ctx.rng.small_signed() << 4 }, 4),
    };
    let index_value = if ctx.rng.chance(1, 2) { ctx.rng.small_signed() } else { ctx.rng.edge32() };
    let scaled = index.map_or(0, |_| index_value.wrapping_mul(scale));
    let disp = if shape == 7 { ea.wrapping_sub(scaled) } else { disp };
    if let Some(i) = index {
        ctx.regs[i] = index_value;
        ctx.pin(i);
    }
    if let Some(b) = base {
        ctx.regs[b] = ea.wrapping_sub(disp).wrapping_sub(scaled);
        ctx.pin(b);
    }
    instruction.set_memory_base(base.map_or(Register::None, |b| GPR32[b]));
    instruction.set_memory_index(index.map_or(Register::None, |i| GPR32[i]));
    instruction.set_memory_index_scale(if index.is_some() { scale } else { 1 });
    instruction.set_memory_displacement32(disp);
    instruction.set_memory_displ_size(displ_size);

    if !no_access(ctx) {
        let before = ctx.rng.range(8, 32);
        let after = ctx.rng.range(8, 32);
        let value = ctx.mem_value.take().or_else(|| edge_value(ctx, size));
        if let Some(value) = value {
            ctx.mem.write(ea, &value);
        }
        ctx.mem.fill(ctx.rng, ea.wrapping_sub(before), before + size + after);
        if let Some(offset) = ctx.bit_offset_bytes {
            let unit = ea.wrapping_add(offset as u32);
            ctx.mem.fill(ctx.rng, unit.wrapping_sub(8), 16 + size);
        }
    }
    Some(())
}

/// An edge value for the memory operand a third of the time (random bytes otherwise).
fn edge_value(ctx: &mut Ctx<'_>, size: u32) -> Option<Vec<u8>> {
    if ctx.small {
        let v = u64::from(ctx.rng.small_signed()) | if ctx.rng.chance(1, 2) { 0 } else { u64::MAX << 32 };
        return Some(v.to_le_bytes()[..size.min(8) as usize].to_vec());
    }
    if !ctx.rng.chance(1, 3) {
        return None;
    }
    let v = u64::from(ctx.rng.edge32()) | (u64::from(ctx.rng.edge32()) << 32);
    Some(v.to_le_bytes()[..size.min(8) as usize].to_vec())
}
