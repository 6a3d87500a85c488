//! Data movement and two-operand arithmetic/logic: MOV, the eight ALU operations and TEST,
//! INC DEC NEG NOT, MOVZX MOVSX LEA, XCHG CMPXCHG CMPXCHG8B XADD BSWAP, CBW..CDQ, XLAT, NOP.
//!
//! The hottest forms (ALU and MOV) are monomorphised over operation, size and operand kinds, so
//! the common register/immediate cases compile to straight-line code.

use super::flags::{self, ARITH, szp};
use super::machine::{Flow, Handler, Machine, Op, Opnd, Step, Trap, mask, sext};
use crate::flag::{CF, ZF};

pub(crate) const ADD: u8 = 0;
pub(crate) const OR: u8 = 1;
pub(crate) const ADC: u8 = 2;
pub(crate) const SBB: u8 = 3;
pub(crate) const AND: u8 = 4;
pub(crate) const SUB: u8 = 5;
pub(crate) const XOR: u8 = 6;
pub(crate) const CMP: u8 = 7;
pub(crate) const TEST: u8 = 8;

/// Operand kinds for monomorphised handlers: any (runtime match), register, memory, immediate.
pub(crate) const ANY: u8 = 0;
pub(crate) const R: u8 = 1;
pub(crate) const M: u8 = 2;
pub(crate) const I: u8 = 3;

/// The kind of an operand, for choosing a monomorphised handler.
pub(crate) fn kind(o: Opnd) -> u8 {
    match o {
        Opnd::Reg(..) => R,
        Opnd::Mem => M,
        Opnd::Imm(_) => I,
        Opnd::None => ANY,
    }
}

#[inline(always)]
fn load<const K: u8>(m: &Machine<'_>, op: &Op, o: Opnd, size: u8) -> Result<u32, Trap> {
    match (K, o) {
        (R, Opnd::Reg(r, sh)) => Ok(m.reg(r, sh, size)),
        (I, Opnd::Imm(v)) => Ok(v & mask(size)),
        (M, _) => m.read(m.ea(&op.ea), size),
        _ => m.get(op, o, size),
    }
}

#[inline(always)]
fn compute<const K: u8>(m: &Machine<'_>, a: u32, b: u32, size: u8) -> (u32, u32) {
    match K {
        ADD => flags::add(a, b, 0, size),
        ADC => flags::add(a, b, m.cf(), size),
        SUB | CMP => flags::sub(a, b, 0, size),
        SBB => flags::sub(a, b, m.cf(), size),
        AND | TEST => (a & b, szp(a & b, size)),
        OR => (a | b, szp(a | b, size)),
        _ => (a ^ b, szp(a ^ b, size)),
    }
}

/// `dst = dst OP src` with flags; CMP and TEST only set flags.
fn alu<const K: u8, const SZ: u8, const D: u8, const S: u8>(m: &mut Machine<'_>, op: &Op) -> Step {
    let b = load::<S>(m, op, op.src, SZ)?;
    if D == M {
        let addr = m.ea(&op.ea);
        let a = m.read(addr, SZ)?;
        let (res, f) = compute::<K>(m, a, b, SZ);
        m.set_arith(f);
        if K != CMP && K != TEST {
            m.write(addr, SZ, res)?;
        }
    } else {
        let a = load::<D>(m, op, op.dst, SZ)?;
        let (res, f) = compute::<K>(m, a, b, SZ);
        m.set_arith(f);
        if K != CMP && K != TEST {
            m.put(op, op.dst, SZ, res)?;
        }
    }
    Ok(Flow::Next)
}

fn pick_alu_ds<const K: u8, const SZ: u8>(d: u8, s: u8) -> Handler {
    match (d, s) {
        (R, R) => alu::<K, SZ, R, R>,
        (R, I) => alu::<K, SZ, R, I>,
        (R, M) => alu::<K, SZ, R, M>,
        (M, R) => alu::<K, SZ, M, R>,
        (M, I) => alu::<K, SZ, M, I>,
        _ => alu::<K, SZ, ANY, ANY>,
    }
}

fn pick_alu_sz<const K: u8>(size: u8, d: u8, s: u8) -> Handler {
    match size {
        1 => pick_alu_ds::<K, 1>(d, s),
        2 => pick_alu_ds::<K, 2>(d, s),
        _ => pick_alu_ds::<K, 4>(d, s),
    }
}

/// The handler for ALU operation `k` on operands of kinds `d` and `s`.
pub(crate) fn pick_alu(k: u8, size: u8, d: u8, s: u8) -> Handler {
    match k {
        ADD => pick_alu_sz::<ADD>(size, d, s),
        OR => pick_alu_sz::<OR>(size, d, s),
        ADC => pick_alu_sz::<ADC>(size, d, s),
        SBB => pick_alu_sz::<SBB>(size, d, s),
        AND => pick_alu_sz::<AND>(size, d, s),
        SUB => pick_alu_sz::<SUB>(size, d, s),
        XOR => pick_alu_sz::<XOR>(size, d, s),
        CMP => pick_alu_sz::<CMP>(size, d, s),
        _ => pick_alu_sz::<TEST>(size, d, s),
    }
}

fn mov<const SZ: u8, const D: u8, const S: u8>(m: &mut Machine<'_>, op: &Op) -> Step {
    let v = load::<S>(m, op, op.src, SZ)?;
    if D == M {
        m.write(m.ea(&op.ea), SZ, v)?;
    } else if let (R, Opnd::Reg(r, sh)) = (D, op.dst) {
        m.set_reg(r, sh, SZ, v);
    } else {
        m.put(op, op.dst, SZ, v)?;
    }
    Ok(Flow::Next)
}

fn pick_mov_ds<const SZ: u8>(d: u8, s: u8) -> Handler {
    match (d, s) {
        (R, R) => mov::<SZ, R, R>,
        (R, I) => mov::<SZ, R, I>,
        (R, M) => mov::<SZ, R, M>,
        (M, R) => mov::<SZ, M, R>,
        (M, I) => mov::<SZ, M, I>,
        _ => mov::<SZ, ANY, ANY>,
    }
}

/// The MOV handler for the operand kinds `d` and `s`.
pub(crate) fn pick_mov(size: u8, d: u8, s: u8) -> Handler {
    match size {
        1 => pick_mov_ds::<1>(d, s),
        2 => pick_mov_ds::<2>(d, s),
        _ => pick_mov_ds::<4>(d, s),
    }
}

pub(crate) const INC: u8 = 0;
pub(crate) const DEC: u8 = 1;
pub(crate) const NEG: u8 = 2;
pub(crate) const NOT: u8 = 3;

/// INC DEC NEG NOT on `dst`. INC and DEC keep CF; NOT touches no flag.
pub(crate) fn unary<const K: u8>(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let a = m.get(op, op.dst, size)?;
    let res = match K {
        INC => {
            let (r, f) = flags::add(a, 1, 0, size);
            m.set_flags(ARITH & !CF, f);
            r
        }
        DEC => {
            let (r, f) = flags::sub(a, 1, 0, size);
            m.set_flags(ARITH & !CF, f);
            r
        }
        NEG => {
            let (r, f) = flags::sub(0, a, 0, size);
            m.set_arith(f);
            r
        }
        _ => !a & mask(size),
    };
    m.put(op, op.dst, size, res)?;
    Ok(Flow::Next)
}

/// MOVZX (`sub` = 0) and MOVSX (`sub` = 1); `aux` holds the source size as an immediate.
pub(crate) fn movx(m: &mut Machine<'_>, op: &Op) -> Step {
    let Opnd::Imm(src_size) = op.aux else { return Err(Trap::Invalid) };
    #[allow(clippy::cast_possible_truncation, reason = "1 or 2")]
    let src_size = src_size as u8;
    let v = m.get(op, op.src, src_size)?;
    let v = if op.sub == 1 { sext(v, src_size) } else { v };
    m.put(op, op.dst, op.size, v)?;
    Ok(Flow::Next)
}

/// LEA: the address itself, truncated to the operand size.
pub(crate) fn lea(m: &mut Machine<'_>, op: &Op) -> Step {
    let a = m.ea(&op.ea);
    m.put(op, op.dst, op.size, a)?;
    Ok(Flow::Next)
}

/// XCHG: the memory operand (if any) is written first, so a fault changes nothing.
pub(crate) fn xchg(m: &mut Machine<'_>, op: &Op) -> Step {
    let a = m.get(op, op.dst, op.size)?;
    let b = m.get(op, op.src, op.size)?;
    if op.src == Opnd::Mem {
        m.put(op, op.src, op.size, a)?;
        m.put(op, op.dst, op.size, b)?;
    } else {
        m.put(op, op.dst, op.size, b)?;
        m.put(op, op.src, op.size, a)?;
    }
    Ok(Flow::Next)
}

/// CMPXCHG dst, src: compares the accumulator with dst (flags as CMP). Equal: dst = src;
/// otherwise the accumulator receives dst. A failing memory CMPXCHG writes back the value it
/// read on hardware; skipping that write leaves memory identical.
pub(crate) fn cmpxchg(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let d = m.get(op, op.dst, size)?;
    let acc = m.reg(0, 0, size);
    let (_, f) = flags::sub(acc, d, 0, size);
    if acc == d {
        let s = m.get(op, op.src, size)?;
        m.put(op, op.dst, size, s)?;
    } else {
        m.set_reg(0, 0, size, d);
    }
    m.set_arith(f);
    Ok(Flow::Next)
}

/// CMPXCHG8B m64: compares EDX:EAX with m64; equal: ZF = 1 and m64 = ECX:EBX; else ZF = 0 and
/// EDX:EAX = m64.
pub(crate) fn cmpxchg8b(m: &mut Machine<'_>, op: &Op) -> Step {
    let addr = m.ea(&op.ea);
    let v = m.mem.read_u64(addr)?;
    let cur = (u64::from(m.regs[2]) << 32) | u64::from(m.regs[0]);
    if v == cur {
        let new = (u64::from(m.regs[1]) << 32) | u64::from(m.regs[3]);
        m.mem.write_u64(addr, new)?;
        m.eflags |= ZF;
    } else {
        #[allow(clippy::cast_possible_truncation, reason = "splitting a 64-bit value")]
        {
            m.regs[0] = v as u32;
            m.regs[2] = (v >> 32) as u32;
        }
        m.eflags &= !ZF;
    }
    Ok(Flow::Next)
}

/// XADD dst, src: src receives the old dst, dst the sum (flags as ADD).
pub(crate) fn xadd(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    let d = m.get(op, op.dst, size)?;
    let s = m.get(op, op.src, size)?;
    let (res, f) = flags::add(d, s, 0, size);
    if op.dst == Opnd::Mem {
        m.put(op, op.dst, size, res)?;
        m.put(op, op.src, size, d)?;
    } else {
        m.put(op, op.src, size, d)?;
        m.put(op, op.dst, size, res)?;
    }
    m.set_arith(f);
    Ok(Flow::Next)
}

/// BSWAP r32 (a 16-bit BSWAP is undefined; it yields 0 as on current processors).
pub(crate) fn bswap(m: &mut Machine<'_>, op: &Op) -> Step {
    let v = m.get(op, op.dst, op.size)?;
    let res = if op.size == 4 { v.swap_bytes() } else { 0 };
    m.put(op, op.dst, op.size, res)?;
    Ok(Flow::Next)
}

/// CBW/CWDE (`sub` = 0): widen the low half of the accumulator. CWD/CDQ (`sub` = 1): fill
/// DX/EDX with the accumulator's sign.
pub(crate) fn convert(m: &mut Machine<'_>, op: &Op) -> Step {
    let size = op.size;
    if op.sub == 0 {
        let v = sext(m.reg(0, 0, size / 2), size / 2);
        m.set_reg(0, 0, size, v);
    } else {
        let acc = sext(m.reg(0, 0, size), size);
        m.set_reg(2, 0, size, if acc & 0x8000_0000 != 0 { u32::MAX } else { 0 });
    }
    Ok(Flow::Next)
}

/// XLATB: AL = [EBX + AL].
pub(crate) fn xlat(m: &mut Machine<'_>, _op: &Op) -> Step {
    let addr = m.regs[3].wrapping_add(m.regs[0] & 0xFF);
    let v = m.read(addr, 1)?;
    m.set_reg(0, 0, 1, v);
    Ok(Flow::Next)
}

/// NOP and its multi-byte forms: the memory operand of `0F 1F` is never accessed.
pub(crate) fn nop(_m: &mut Machine<'_>, _op: &Op) -> Step {
    Ok(Flow::Next)
}
