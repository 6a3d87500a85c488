//! The instruction's operands, from the form's operand kinds: a random register for every
//! register operand (each register appears as each operand over a form's cases), edge-biased
//! immediates, and placeholders for memory operands and branch targets that later stages fill.

use super::{Ctx, GPR8, GPR16, GPR32};
use iced_x86::{Instruction, OpCodeOperandKind as K, OpKind, Register};

/// An instruction of `ctx.form` with its registers and immediates chosen.
pub fn choose(ctx: &mut Ctx<'_>) -> Instruction {
    let mut ins = Instruction::default();
    ins.set_code(ctx.form);
    let kinds = ctx.form.op_code().op_kinds();
    for (i, &kind) in kinds.iter().enumerate() {
        let i = i as u32;
        let reg = |ins: &mut Instruction, r: Register| {
            ins.set_op_kind(i, OpKind::Register);
            ins.set_op_register(i, r);
        };
        match kind {
            K::r8_reg | K::r8_opcode => reg(&mut ins, ctx.rng.pick(&GPR8)),
            K::r16_reg | K::r16_opcode | K::r16_rm => reg(&mut ins, ctx.rng.pick(&GPR16)),
            K::r32_reg | K::r32_opcode | K::r32_rm => reg(&mut ins, ctx.rng.pick(&GPR32)),
            // Register or memory: half and half.
            K::r8_or_mem if ctx.rng.chance(1, 2) => reg(&mut ins, ctx.rng.pick(&GPR8)),
            K::r16_or_mem if ctx.rng.chance(1, 2) => reg(&mut ins, ctx.rng.pick(&GPR16)),
            K::r32_or_mem if ctx.rng.chance(1, 2) => reg(&mut ins, ctx.rng.pick(&GPR32)),
            K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::mem | K::mem_offs => {
                ins.set_op_kind(i, OpKind::Memory);
            }
            K::al => reg(&mut ins, Register::AL),
            K::cl => reg(&mut ins, Register::CL),
            K::ax => reg(&mut ins, Register::AX),
            K::dx => reg(&mut ins, Register::DX),
            K::eax => reg(&mut ins, Register::EAX),
            // ENTER's second immediate has an operand kind of its own.
            K::imm8 if i == 1 && kinds[0] == K::imm16 => {
                ins.set_op_kind(i, OpKind::Immediate8_2nd);
                ins.set_immediate8_2nd(ctx.rng.edge8());
            }
            K::imm8 => {
                ins.set_op_kind(i, OpKind::Immediate8);
                let v = if ctx.small { ctx.rng.small_signed() as u8 } else { ctx.rng.edge8() };
                ins.set_immediate8(v);
            }
            K::imm8_const_1 => {
                ins.set_op_kind(i, OpKind::Immediate8);
                ins.set_immediate8(1);
            }
            K::imm8sex16 => {
                ins.set_op_kind(i, OpKind::Immediate8to16);
                let v = if ctx.small { ctx.rng.small_signed() as u8 } else { ctx.rng.edge8() };
                ins.set_immediate8to16(i16::from(v as i8));
            }
            K::imm8sex32 => {
                ins.set_op_kind(i, OpKind::Immediate8to32);
                let v = if ctx.small { ctx.rng.small_signed() as u8 } else { ctx.rng.edge8() };
                ins.set_immediate8to32(i32::from(v as i8));
            }
            K::imm16 => {
                ins.set_op_kind(i, OpKind::Immediate16);
                let v = if ctx.small { ctx.rng.small_signed() as u16 } else { ctx.rng.edge16() };
                ins.set_immediate16(v);
            }
            K::imm32 => {
                ins.set_op_kind(i, OpKind::Immediate32);
                let v = if ctx.small { ctx.rng.small_signed() } else { ctx.rng.edge32() };
                ins.set_immediate32(v);
            }
            K::br32_1 | K::br32_4 => {
                ins.set_op_kind(i, OpKind::NearBranch32);
                let target = ctx.code_target(kind == K::br32_1);
                ins.set_near_branch32(target);
            }
            K::seg_rSI => ins.set_op_kind(i, OpKind::MemorySegESI),
            K::es_rDI => ins.set_op_kind(i, OpKind::MemoryESEDI),
            K::seg_rDI => ins.set_op_kind(i, OpKind::MemorySegEDI),
            K::seg_rBX_al => {
                ins.set_op_kind(i, OpKind::Memory);
                ins.set_memory_base(Register::EBX);
                ins.set_memory_index(Register::AL);
                ins.set_memory_index_scale(1);
            }
            other => panic!("{:?}: operand kind {other:?} is not handled by the generator", ctx.form),
        }
    }
    ins
}
