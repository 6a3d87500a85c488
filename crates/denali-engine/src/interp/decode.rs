//! Translation of one decoded instruction into the pre-decoded `Op` its handler runs.
//!
//! `family` is the single table from mnemonic to implementation; `handles` (the coverage
//! query) is derived from it, so the two cannot disagree.

use super::alu::{self, kind};
use super::machine::{Ea, NO_REG, Op, Opnd};
use super::{bits, control, flags, muldiv, shift, stack, string};
use iced_x86::{Code, Instruction, Mnemonic, OpCodeOperandKind, OpKind, Register};

/// What implements a mnemonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Mov,
    Alu(u8),
    Unary(u8),
    Shift(u8),
    DoubleShift(u8),
    Mul(u8),
    Imul,
    Div(u8),
    Bt(u8),
    Bscan(u8),
    Setcc,
    Cmov,
    Jcc,
    Jmp,
    Call,
    Ret,
    Loop(u8),
    Str(u8),
    Movx(u8),
    Lea,
    Xchg,
    Cmpxchg,
    Cmpxchg8b,
    Xadd,
    Bswap,
    Push,
    Pop,
    Pushad,
    Popad,
    Enter,
    Leave,
    Pushf,
    Popf,
    Convert(u8),
    Lahf,
    Sahf,
    FlagOp(u8),
    Nop,
    Xlat,
    Hlt,
    Int,
    Int3,
    In,
    Out,
}

fn family(m: Mnemonic) -> Option<Family> {
    use Family as F;
    use Mnemonic as X;
    Some(match m {
        X::Mov => F::Mov,
        X::Add => F::Alu(alu::ADD),
        X::Or => F::Alu(alu::OR),
        X::Adc => F::Alu(alu::ADC),
        X::Sbb => F::Alu(alu::SBB),
        X::And => F::Alu(alu::AND),
        X::Sub => F::Alu(alu::SUB),
        X::Xor => F::Alu(alu::XOR),
        X::Cmp => F::Alu(alu::CMP),
        X::Test => F::Alu(alu::TEST),
        X::Inc => F::Unary(alu::INC),
        X::Dec => F::Unary(alu::DEC),
        X::Neg => F::Unary(alu::NEG),
        X::Not => F::Unary(alu::NOT),
        X::Rol => F::Shift(shift::ROL),
        X::Ror => F::Shift(shift::ROR),
        X::Rcl => F::Shift(shift::RCL),
        X::Rcr => F::Shift(shift::RCR),
        X::Shl | X::Sal => F::Shift(shift::SHL),
        X::Shr => F::Shift(shift::SHR),
        X::Sar => F::Shift(shift::SAR),
        X::Shld => F::DoubleShift(0),
        X::Shrd => F::DoubleShift(1),
        X::Mul => F::Mul(0),
        X::Imul => F::Imul,
        X::Div => F::Div(0),
        X::Idiv => F::Div(1),
        X::Bt => F::Bt(0),
        X::Bts => F::Bt(1),
        X::Btr => F::Bt(2),
        X::Btc => F::Bt(3),
        X::Bsf => F::Bscan(0),
        X::Bsr => F::Bscan(1),
        X::Seto | X::Setno | X::Setb | X::Setae | X::Sete | X::Setne | X::Setbe | X::Seta => F::Setcc,
        X::Sets | X::Setns | X::Setp | X::Setnp | X::Setl | X::Setge | X::Setle | X::Setg => F::Setcc,
        X::Cmovo | X::Cmovno | X::Cmovb | X::Cmovae | X::Cmove | X::Cmovne | X::Cmovbe | X::Cmova => F::Cmov,
        X::Cmovs | X::Cmovns | X::Cmovp | X::Cmovnp | X::Cmovl | X::Cmovge | X::Cmovle | X::Cmovg => F::Cmov,
        X::Jo | X::Jno | X::Jb | X::Jae | X::Je | X::Jne | X::Jbe | X::Ja => F::Jcc,
        X::Js | X::Jns | X::Jp | X::Jnp | X::Jl | X::Jge | X::Jle | X::Jg => F::Jcc,
        X::Jmp => F::Jmp,
        X::Call => F::Call,
        X::Ret => F::Ret,
        X::Loop => F::Loop(0),
        X::Loope => F::Loop(1),
        X::Loopne => F::Loop(2),
        X::Jecxz => F::Loop(3),
        X::Movsb | X::Movsw | X::Movsd => F::Str(string::MOVS),
        X::Stosb | X::Stosw | X::Stosd => F::Str(string::STOS),
        X::Lodsb | X::Lodsw | X::Lodsd => F::Str(string::LODS),
        X::Cmpsb | X::Cmpsw | X::Cmpsd => F::Str(string::CMPS),
        X::Scasb | X::Scasw | X::Scasd => F::Str(string::SCAS),
        X::Movzx => F::Movx(0),
        X::Movsx => F::Movx(1),
        X::Lea => F::Lea,
        X::Xchg => F::Xchg,
        X::Cmpxchg => F::Cmpxchg,
        X::Cmpxchg8b => F::Cmpxchg8b,
        X::Xadd => F::Xadd,
        X::Bswap => F::Bswap,
        X::Push => F::Push,
        X::Pop => F::Pop,
        X::Pushad | X::Pusha => F::Pushad,
        X::Popad | X::Popa => F::Popad,
        X::Enter => F::Enter,
        X::Leave => F::Leave,
        X::Pushfd | X::Pushf => F::Pushf,
        X::Popfd | X::Popf => F::Popf,
        X::Cbw | X::Cwde => F::Convert(0),
        X::Cwd | X::Cdq => F::Convert(1),
        X::Lahf => F::Lahf,
        X::Sahf => F::Sahf,
        X::Clc => F::FlagOp(0),
        X::Stc => F::FlagOp(1),
        X::Cmc => F::FlagOp(2),
        X::Cld => F::FlagOp(3),
        X::Std => F::FlagOp(4),
        X::Nop | X::Pause | X::Endbr32 => F::Nop,
        X::Xlatb => F::Xlat,
        X::Hlt => F::Hlt,
        X::Int => F::Int,
        X::Int3 => F::Int3,
        X::In => F::In,
        X::Out => F::Out,
        _ => return None,
    })
}

/// Operand kinds the translation understands: general registers, memory, immediates and near
/// branch targets.
fn operand_supported(k: OpCodeOperandKind) -> bool {
    use OpCodeOperandKind as K;
    matches!(
        k,
        K::mem_offs
            | K::mem
            | K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_reg_mem
            | K::r16_rm
            | K::r16_opcode
            | K::r32_reg
            | K::r32_reg_mem
            | K::r32_rm
            | K::r32_opcode
            | K::al
            | K::cl
            | K::ax
            | K::dx
            | K::eax
            | K::imm8
            | K::imm8_const_1
            | K::imm8sex16
            | K::imm8sex32
            | K::imm16
            | K::imm32
            | K::seg_rSI
            | K::es_rDI
            | K::seg_rDI
            | K::seg_rBX_al
            | K::br16_1
            | K::br32_1
            | K::br16_2
            | K::br32_4
    )
}

/// Whether the interpreter implements instruction form `code` (in 32-bit code).
pub fn handles(code: Code) -> bool {
    let info = code.op_code();
    info.mode32() && family(code.mnemonic()).is_some() && info.op_kinds().iter().all(|k| operand_supported(*k))
}

fn reg_opnd(r: Register) -> Option<Opnd> {
    use Register as G;
    let (n, sh) = match r {
        G::AL => (0, 0),
        G::CL => (1, 0),
        G::DL => (2, 0),
        G::BL => (3, 0),
        G::AH => (0, 8),
        G::CH => (1, 8),
        G::DH => (2, 8),
        G::BH => (3, 8),
        _ if r.is_gpr16() || r.is_gpr32() => (r.full_register32() as u32 - G::EAX as u32, 0),
        _ => return None,
    };
    #[allow(clippy::cast_possible_truncation, reason = "register numbers are below 8")]
    Some(Opnd::Reg(n as u8, sh))
}

fn ea_reg(r: Register) -> Option<u8> {
    if r == Register::None {
        return Some(NO_REG);
    }
    if !r.is_gpr32() {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, reason = "register numbers are below 8")]
    Some((r as u32 - Register::EAX as u32) as u8)
}

fn opnd(ins: &Instruction, i: u32) -> Option<Opnd> {
    #[allow(clippy::cast_possible_truncation, reason = "immediates of 32-bit code fit in 32 bits")]
    match ins.op_kind(i) {
        OpKind::Register => reg_opnd(ins.op_register(i)),
        OpKind::Memory => Some(Opnd::Mem),
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32 => Some(Opnd::Imm(ins.immediate(i) as u32)),
        _ => None,
    }
}

/// Size in bytes of operand `i` (a register or memory operand).
fn size_of(ins: &Instruction, i: u32) -> Option<u8> {
    let s = match ins.op_kind(i) {
        OpKind::Register => ins.op_register(i).size(),
        OpKind::Memory => ins.memory_size().size(),
        _ => return None,
    };
    match s {
        1 | 2 | 4 => u8::try_from(s).ok(),
        _ => None,
    }
}

/// The operand size of a stack operation, from how much it moves ESP.
fn stack_size(ins: &Instruction) -> u8 {
    if ins.stack_pointer_increment().unsigned_abs() % 4 == 2 { 2 } else { 4 }
}

/// The x86 condition number (0 = O ... 15 = G).
fn cc(ins: &Instruction) -> Option<u8> {
    let c = ins.condition_code() as u8;
    if c == 0 { None } else { Some(c - 1) }
}

/// A placeholder op that raises a fault when reached.
pub(crate) fn fault_op(eip: u32, len: u8, exec: super::machine::Handler, imm: u32) -> Op {
    Op {
        exec,
        eip,
        next: eip.wrapping_add(u32::from(len)),
        len,
        size: 4,
        sub: 0,
        dst: Opnd::None,
        src: Opnd::None,
        aux: Opnd::None,
        ea: Ea { base: NO_REG, index: NO_REG, scale: 0, disp: 0 },
        imm,
    }
}

/// Translates a decoded (and validated) instruction. Returns the op and whether it ends its
/// block, or `None` for a form the interpreter does not implement.
pub(crate) fn translate(ins: &Instruction) -> Option<(Op, bool)> {
    use Family as F;
    #[allow(clippy::cast_possible_truncation, reason = "32-bit code: addresses fit, lengths are at most 15")]
    let (eip, len) = (ins.ip() as u32, ins.len() as u8);
    let mut op = fault_op(eip, len, control::invalid, 0);
    let fam = family(ins.mnemonic())?;
    // XLAT's memory operand is [EBX + AL]; its handler computes that itself.
    if fam != F::Xlat && ins.op_kinds().any(|k| k == OpKind::Memory) {
        let shift = match ins.memory_index_scale() {
            1 => 0,
            2 => 1,
            4 => 2,
            _ => 3,
        };
        op.ea = Ea {
            base: ea_reg(ins.memory_base())?,
            index: ea_reg(ins.memory_index())?,
            scale: shift,
            disp: ins.memory_displacement32(),
        };
    }
    let n = ins.op_count();
    let mut ends = false;
    match fam {
        F::Mov | F::Alu(_) => {
            op.size = size_of(ins, 0)?;
            op.dst = opnd(ins, 0)?;
            op.src = opnd(ins, 1)?;
            op.exec = match fam {
                F::Alu(k) => alu::pick_alu(k, op.size, kind(op.dst), kind(op.src)),
                _ => alu::pick_mov(op.size, kind(op.dst), kind(op.src)),
            };
        }
        F::Unary(k) => {
            op.size = size_of(ins, 0)?;
            op.dst = opnd(ins, 0)?;
            op.exec = match k {
                alu::INC => alu::unary::<{ alu::INC }>,
                alu::DEC => alu::unary::<{ alu::DEC }>,
                alu::NEG => alu::unary::<{ alu::NEG }>,
                _ => alu::unary::<{ alu::NOT }>,
            };
        }
        F::Shift(k) => {
            op.size = size_of(ins, 0)?;
            op.dst = opnd(ins, 0)?;
            op.src = opnd(ins, 1)?;
            op.exec = match k {
                shift::ROL => shift::shift::<{ shift::ROL }>,
                shift::ROR => shift::shift::<{ shift::ROR }>,
                shift::RCL => shift::shift::<{ shift::RCL }>,
                shift::RCR => shift::shift::<{ shift::RCR }>,
                shift::SHL => shift::shift::<{ shift::SHL }>,
                shift::SHR => shift::shift::<{ shift::SHR }>,
                _ => shift::shift::<{ shift::SAR }>,
            };
        }
        F::DoubleShift(k) => {
            op.size = size_of(ins, 0)?;
            op.dst = opnd(ins, 0)?;
            op.src = opnd(ins, 1)?;
            op.aux = opnd(ins, 2)?;
            op.sub = k;
            op.exec = shift::double_shift;
        }
        F::Mul(k) | F::Div(k) => {
            op.size = size_of(ins, 0)?;
            op.src = opnd(ins, 0)?;
            op.sub = k;
            op.exec = if matches!(fam, F::Mul(_)) { muldiv::mul1 } else { muldiv::div };
        }
        F::Imul => {
            op.size = size_of(ins, 0)?;
            match n {
                1 => {
                    op.src = opnd(ins, 0)?;
                    op.sub = 1;
                    op.exec = muldiv::mul1;
                }
                2 => {
                    op.dst = opnd(ins, 0)?;
                    op.src = opnd(ins, 1)?;
                    op.aux = op.dst;
                    op.exec = muldiv::imul;
                }
                _ => {
                    op.dst = opnd(ins, 0)?;
                    op.src = opnd(ins, 1)?;
                    op.aux = opnd(ins, 2)?;
                    op.exec = muldiv::imul;
                }
            }
        }
        F::Bt(k) | F::Bscan(k) => {
            op.size = size_of(ins, 0)?;
            op.dst = opnd(ins, 0)?;
            op.src = opnd(ins, 1)?;
            op.sub = k;
            op.exec = if matches!(fam, F::Bt(_)) { bits::bt } else { bits::bscan };
        }
        F::Setcc => {
            op.size = 1;
            op.dst = opnd(ins, 0)?;
            op.sub = cc(ins)?;
            op.exec = bits::setcc;
        }
        F::Cmov => {
            op.size = size_of(ins, 0)?;
            op.dst = opnd(ins, 0)?;
            op.src = opnd(ins, 1)?;
            op.sub = cc(ins)?;
            op.exec = bits::cmov;
        }
        F::Jcc | F::Loop(_) => {
            near_target(ins, &mut op)?;
            if let F::Loop(k) = fam {
                op.sub = k;
                op.exec = control::loops;
            } else {
                op.sub = cc(ins)?;
                op.exec = control::jcc;
            }
            ends = true;
        }
        F::Jmp | F::Call => {
            ends = true;
            let direct = near_target(ins, &mut op).is_some();
            op.size = if direct { stack_size_of_branch(ins) } else { size_of(ins, 0)? };
            if !direct {
                op.src = opnd(ins, 0)?;
            }
            op.exec = match (fam, direct) {
                (F::Jmp, true) => control::jmp,
                (F::Jmp, false) => control::jmp_indirect,
                (_, true) => control::call,
                (_, false) => control::call_indirect,
            };
        }
        F::Ret => {
            ends = true;
            op.size = if ins.code() == Code::Retnw || ins.code() == Code::Retnw_imm16 { 2 } else { 4 };
            if n == 1 {
                op.imm = u32::from(ins.immediate16());
            }
            op.exec = control::ret;
        }
        F::Str(k) => {
            if !ins.op_kinds().any(|k| matches!(k, OpKind::MemorySegESI | OpKind::MemoryESEDI | OpKind::MemorySegEDI)) {
                return None;
            }
            op.size = u8::try_from(ins.memory_size().size()).ok().filter(|s| matches!(s, 1 | 2 | 4))?;
            op.sub = if ins.has_repne_prefix() {
                string::REPNE
            } else if ins.has_repe_prefix() {
                string::REPE
            } else {
                string::NO_REP
            };
            // F2 on MOVS STOS LODS repeats like F3.
            op.exec = match k {
                string::MOVS => string::string::<{ string::MOVS }>,
                string::STOS => string::string::<{ string::STOS }>,
                string::LODS => string::string::<{ string::LODS }>,
                string::CMPS => string::string::<{ string::CMPS }>,
                _ => string::string::<{ string::SCAS }>,
            };
        }
        F::Movx(k) => {
            op.size = size_of(ins, 0)?;
            op.dst = opnd(ins, 0)?;
            op.src = opnd(ins, 1)?;
            op.aux = Opnd::Imm(u32::from(size_of(ins, 1)?));
            op.sub = k;
            op.exec = alu::movx;
        }
        F::Lea => {
            op.size = size_of(ins, 0)?;
            op.dst = opnd(ins, 0)?;
            op.exec = alu::lea;
        }
        F::Xchg | F::Cmpxchg | F::Xadd => {
            op.size = size_of(ins, 0)?;
            op.dst = opnd(ins, 0)?;
            op.src = opnd(ins, 1)?;
            op.exec = match fam {
                F::Xchg => alu::xchg,
                F::Cmpxchg => alu::cmpxchg,
                _ => alu::xadd,
            };
        }
        F::Cmpxchg8b => {
            op.dst = opnd(ins, 0)?;
            op.exec = alu::cmpxchg8b;
        }
        F::Bswap => {
            op.size = size_of(ins, 0)?;
            op.dst = opnd(ins, 0)?;
            op.exec = alu::bswap;
        }
        F::Push | F::Pop => {
            op.size = stack_size(ins);
            if matches!(fam, F::Push) {
                op.src = opnd(ins, 0)?;
                op.exec = stack::push;
            } else {
                op.dst = opnd(ins, 0)?;
                op.exec = stack::pop;
            }
        }
        F::Pushad | F::Popad | F::Pushf | F::Popf | F::Leave => {
            op.size = if matches!(fam, F::Leave) {
                if ins.code() == Code::Leavew { 2 } else { 4 }
            } else {
                stack_size_of_group(ins)
            };
            op.exec = match fam {
                F::Pushad => stack::pushad,
                F::Popad => stack::popad,
                F::Pushf => flags::pushf,
                F::Popf => flags::popf,
                _ => stack::leave,
            };
        }
        F::Enter => {
            op.size = if ins.code() == Code::Enterw_imm16_imm8 { 2 } else { 4 };
            op.imm = u32::from(ins.immediate16());
            op.sub = ins.immediate8_2nd() & 0x1F;
            op.exec = stack::enter;
        }
        F::Convert(k) => {
            op.size = match ins.mnemonic() {
                Mnemonic::Cbw | Mnemonic::Cwd => 2,
                _ => 4,
            };
            op.sub = k;
            op.exec = alu::convert;
        }
        F::Lahf => op.exec = flags::lahf,
        F::Sahf => op.exec = flags::sahf,
        F::FlagOp(k) => {
            op.sub = k;
            op.exec = flags::flag_op;
        }
        F::Nop => op.exec = alu::nop,
        F::Xlat => op.exec = alu::xlat,
        F::Hlt => {
            ends = true;
            op.exec = control::idle;
        }
        F::Int => {
            if ins.immediate8() != 0xD0 {
                return None;
            }
            ends = true;
            op.exec = control::terminate;
        }
        F::Int3 => {
            ends = true;
            op.exec = control::breakpoint;
        }
        F::In => {
            ends = true;
            op.src = opnd(ins, 1)?;
            op.exec = control::port_in;
        }
        F::Out => {
            ends = true;
            op.dst = opnd(ins, 0)?;
            op.exec = control::port_out;
        }
    }
    Some((op, ends))
}

/// Sets `imm` to a near branch's target; `None` when operand 0 is not a near branch.
fn near_target(ins: &Instruction, op: &mut Op) -> Option<()> {
    match ins.op_kind(0) {
        OpKind::NearBranch16 | OpKind::NearBranch32 => {
            #[allow(clippy::cast_possible_truncation, reason = "32-bit code")]
            let t = ins.near_branch_target() as u32;
            op.imm = t;
            Some(())
        }
        _ => None,
    }
}

/// The size of the return address a direct CALL pushes (2 with an operand-size prefix).
fn stack_size_of_branch(ins: &Instruction) -> u8 {
    if ins.op_kind(0) == OpKind::NearBranch16 { 2 } else { 4 }
}

/// PUSHA/POPA/PUSHF/POPF and their 32-bit forms.
fn stack_size_of_group(ins: &Instruction) -> u8 {
    match ins.mnemonic() {
        Mnemonic::Pusha | Mnemonic::Popa | Mnemonic::Pushf | Mnemonic::Popf => 2,
        _ => 4,
    }
}
