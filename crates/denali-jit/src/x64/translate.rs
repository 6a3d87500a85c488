//! Translation of one guest basic block into x86-64 host code (safe code: it only produces
//! bytes; `arena` runs them).
//!
//! Host register convention inside a translated block:
//!
//! | host | holds |
//! |------|-------|
//! | rax rdx rbx | guest EAX EDX EBX (so AL/AH, DL/DH, BL/BH are themselves) |
//! | rsi | guest ECX (CL is SIL; CH has no host name, so CH falls back) |
//! | r12 r13 r14 r15 | guest ESP EBP ESI EDI |
//! | rdi | the `Ctx` pointer (`Ctx::table`: the chaining table) |
//! | rbp | host address of guest address 0 (and the GS base, in guard-region mode) |
//! | r9 | jumps between blocks in this run (`Ctx::runs`) |
//! | r10 | the code-page table (one byte per page); with write-protected code, the chaining table |
//! | r11 | the budget left (`Ctx::left`, below 2^31) |
//! | r8 | guest address of the current access (zero-extended) |
//! | rcx | scratch of the flag-free checks (`jrcxz`) |
//!
//! Every 32-bit guest register is kept zero-extended in its host register.

use super::checks::{self, Access, Check, Effect};
use super::ctx;
use denali_engine::GuestMemory;
use dynasmrt::x64::X64Relocation;
use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler, dynasm};
use iced_x86::{
    Code, ConditionCode, Encoder, Instruction, InstructionInfoFactory, MemoryOperand, Mnemonic, OpAccess, OpKind,
    Register, RflagsBits,
};

/// Longest block, in guest instructions.
pub(crate) const MAX_BLOCK: usize = 64;

/// The six status flags, in iced's bit layout.
const STATUS: u32 = RflagsBits::OF | RflagsBits::SF | RflagsBits::ZF | RflagsBits::AF | RflagsBits::CF | RflagsBits::PF;

/// A translated block.
pub(crate) struct Translation {
    /// Host code: an `extern "sysv64" fn(*mut Ctx)`, position-independent.
    pub code: Vec<u8>,
    /// Guest instructions in the block (0: nothing translatable at this address).
    pub count: u32,
    /// Last guest byte the translation depends on (meaningful when `count > 0`).
    pub last_byte: u32,
    /// Offset of the inner entry (budget check; guest state already in host registers/flags).
    pub inner: usize,
    /// Direct exits the runtime may link: the offset of a `jmp rel32`'s displacement (0 until
    /// linked: it falls through to the table lookup) and the guest target.
    pub links: Vec<(usize, u32)>,
    /// Guard-region mode: the host code ranges `from .. to` whose instructions may fault on a
    /// guest access, and where each resumes (the stop exit of its guest instruction), sorted.
    pub faults: Vec<(usize, usize, usize)>,
}

/// What a translated guest instruction is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Re-encoded as itself with host registers; `mem` is `(size, writes)` of its access.
    Generic {
        mem: Option<(u32, bool)>,
    },
    /// No host code (NOPs, including those with a memory operand, which access nothing).
    Nop,
    PushReg(u8),
    PushImm(u32),
    PopReg(u8),
    Jmp(u32),
    Jcc(u32, u8),
    Call(u32),
    Ret(u16),
    /// `jmp r/m32`: the target is in this host register, or in memory at the `lea` address.
    JmpInd(Option<u8>),
    /// `call r/m32`, likewise.
    CallInd(Option<u8>),
    /// `rep stos` of 1 << shift bytes per element (32-bit addressing).
    RepStos(u8),
}

impl Kind {
    fn ends_block(self) -> bool {
        // A JCC does not end its block: the taken arm is a side exit, the block goes on.
        matches!(self, Kind::Jmp(_) | Kind::Call(_) | Kind::Ret(_) | Kind::JmpInd(_) | Kind::CallInd(_))
    }

    /// Whether the instruction may leave the block before it runs (a failed check).
    fn may_exit_before(self) -> bool {
        matches!(
            self,
            Kind::Generic { mem: Some(_) }
                | Kind::PushReg(_)
                | Kind::PushImm(_)
                | Kind::PopReg(_)
                | Kind::Call(_)
                | Kind::Ret(_)
                | Kind::JmpInd(_)
                | Kind::CallInd(_)
                | Kind::RepStos(_)
        )
    }
}

struct Cand {
    eip: u32,
    next: u32,
    kind: Kind,
    /// Re-encoded host bytes of a `Generic` instruction.
    body: Bytes,
    /// Its form addressing memory through GS, if any (`Forms::segment`).
    segment: Bytes,
    /// `lea r8d, [address]` of a `Generic` instruction that accesses memory.
    lea: Bytes,
    read: u32,
    modified: u32,
    /// Status flags this instruction leaves undefined and whose host value may differ from the
    /// interpreter's documented choice: they must be dead after it.
    undefined: u32,
    /// How the host code sets the flags the instruction leaves undefined to the interpreter's
    /// values, when they are live (`fixed` are those flags).
    fix: Option<Fixup>,
    fixed: u32,
    /// The count is CL (copied to host CL first; a zero count changes nothing).
    count_cl: bool,
    /// Guest registers (bit n: register n in encoding order) the instruction may write.
    writes: u8,
    /// Its guest memory accesses, and what it does to address registers (for merged checks).
    accesses: Accesses,
    effect: Effect,
}

/// The host encodings of a guest instruction.
#[derive(Clone, Copy, Default)]
struct Forms {
    /// The instruction with host registers; an access is to `[rbp + r8]`.
    body: Bytes,
    /// An access's form that addresses guest memory itself through GS (`segment_form`);
    /// empty when there is none.
    segment: Bytes,
    /// `lea r8d, [guest address]` of an access.
    lea: Bytes,
}

/// One encoded host instruction (at most 15 bytes), held inline: a block encodes a few hundred,
/// and a heap buffer for each (grown byte by byte by the encoder) was a fifth of compile time.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Bytes {
    len: u8,
    buf: [u8; 15],
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// The (at most two) guest memory accesses of an instruction.
#[derive(Clone, Copy, Default)]
struct Accesses {
    len: u8,
    list: [Option<Access>; 2],
}

impl Accesses {
    fn of(list: &[Access]) -> Accesses {
        let mut out = Accesses::default();
        for (slot, a) in out.list.iter_mut().zip(list) {
            *slot = Some(*a);
        }
        #[allow(clippy::cast_possible_truncation, reason = "at most two")]
        let len = list.len().min(2) as u8;
        out.len = len;
        out
    }

    fn iter(&self) -> impl Iterator<Item = Access> + '_ {
        self.list.iter().take(usize::from(self.len)).flatten().copied()
    }
}

/// The interpreter's values for flags an instruction leaves undefined (see
/// `denali-engine/src/interp/flags.rs`), computed after the host instruction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FixOp {
    /// OF = MSB of the original operand, AF = 0.
    Shr,
    /// OF = MSB(result) XOR CF, AF = 0.
    Shl,
    /// OF = 0, AF = 0.
    Sar,
    /// OF = MSB(result) XOR bit 0 of the result.
    Rol,
    /// OF = bit 31 XOR bit 30 of the result.
    Ror,
    /// SF ZF PF from the low half of the product, AF = 0.
    Mul,
}

/// Where the fixed-up value lives: a host register (with its size) or the dword at `[rbp + r8]`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fixup {
    op: FixOp,
    dst: Option<Register>,
}

/// Host register number of guest register `n` (encoding order).
const HOST: [u8; 8] = [0, 6, 2, 3, 12, 13, 14, 15];

fn guest_num(r: Register) -> Option<usize> {
    use Register::*;
    Some(match r {
        EAX => 0,
        ECX => 1,
        EDX => 2,
        EBX => 3,
        ESP => 4,
        EBP => 5,
        ESI => 6,
        EDI => 7,
        _ => return Option::None,
    })
}

/// The host register for a guest register operand, `None` when it has no host name (CH).
fn map_reg(r: Register) -> Option<Register> {
    use Register::*;
    Some(match r {
        EAX => EAX,
        ECX => ESI,
        EDX => EDX,
        EBX => EBX,
        ESP => R12D,
        EBP => R13D,
        ESI => R14D,
        EDI => R15D,
        AX => AX,
        CX => SI,
        DX => DX,
        BX => BX,
        SP => R12W,
        BP => R13W,
        SI => R14W,
        DI => R15W,
        AL => AL,
        CL => SIL,
        DL => DL,
        BL => BL,
        AH => AH,
        DH => DH,
        BH => BH,
        _ => return Option::None,
    })
}

/// The 64-bit host register of each guest register, by guest register number.
const R64: [Register; 8] = [
    Register::RAX,
    Register::RSI,
    Register::RDX,
    Register::RBX,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

/// The 64-bit host register for a guest address register.
fn map_addr(r: Register) -> Option<Register> {
    if r == Register::None {
        return Some(Register::None);
    }
    guest_num(r).map(|n| R64[n])
}

thread_local! {
    /// One encoder per thread, its buffer reused: making an encoder and growing a fresh buffer
    /// for every instruction encoded cost more than the encoding.
    static ENCODER: std::cell::RefCell<Encoder> = std::cell::RefCell::new(Encoder::new(64));
}

fn encode(ins: &Instruction) -> Option<Bytes> {
    ENCODER.with_borrow_mut(|enc| {
        let done = enc.encode(ins, 0);
        let mut buffer = enc.take_buffer();
        let mut out = Bytes::default();
        let fits = buffer.len() <= out.buf.len();
        if done.is_ok() && fits {
            out.buf[..buffer.len()].copy_from_slice(&buffer);
            #[allow(clippy::cast_possible_truncation, reason = "at most 15 bytes")]
            let len = buffer.len() as u8;
            out.len = len;
        }
        buffer.clear();
        enc.set_buffer(buffer);
        (done.is_ok() && fits).then_some(out)
    })
}

/// `lea r8d, [guest address]` with host registers: the guest's effective address modulo 2^32.
fn address_lea(ins: &Instruction) -> Option<Bytes> {
    let base = map_addr(ins.memory_base())?;
    let index = map_addr(ins.memory_index())?;
    #[allow(clippy::cast_possible_wrap, reason = "a disp32 is sign-extended; only the low 32 bits of the sum count")]
    let disp = i64::from(ins.memory_displacement32() as i32);
    let displ_size = if base == Register::None { 4 } else { 1 };
    let mem = MemoryOperand::new(base, index, ins.memory_index_scale(), disp, displ_size, false, Register::None);
    encode(&Instruction::with2(Code::Lea_r32_m, Register::R8D, mem).ok()?)
}

/// Mnemonics re-encoded as themselves.
fn generic_mnemonic(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Mov | Movzx
            | Movsx
            | Lea
            | Add
            | Adc
            | Sub
            | Sbb
            | And
            | Or
            | Xor
            | Cmp
            | Test
            | Inc
            | Dec
            | Neg
            | Not
            | Shl
            | Shr
            | Sar
            | Rol
            | Ror
            | Imul
            | Mul
            | Xchg
            | Bswap
            | Cdq
            | Cwde
            | Cwd
            | Cbw
            | Clc
            | Stc
            | Cmc
            | Seto
            | Setno
            | Setb
            | Setae
            | Sete
            | Setne
            | Setbe
            | Seta
            | Sets
            | Setns
            | Setp
            | Setnp
            | Setl
            | Setge
            | Setle
            | Setg
    ) || is_cmov(m)
}

fn is_cmov(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Cmovo
            | Cmovno
            | Cmovb
            | Cmovae
            | Cmove
            | Cmovne
            | Cmovbe
            | Cmova
            | Cmovs
            | Cmovns
            | Cmovp
            | Cmovnp
            | Cmovl
            | Cmovge
            | Cmovle
            | Cmovg
    )
}

fn near_target(ins: &Instruction) -> Option<u32> {
    matches!(ins.op0_kind(), OpKind::NearBranch32).then(|| ins.near_branch32())
}

/// Classifies a validated instruction, re-encoding it when generic. `None`: not translated.
/// Also returns the undefined-flag fixup it can take and whether its count is CL.
type Classified = (Kind, Forms, Option<Fixup>, bool);

fn classify(ins: &Instruction) -> Option<Classified> {
    let (kind, forms) = classify_inner(ins)?;
    let m = ins.mnemonic();
    let shift = matches!(m, Mnemonic::Shl | Mnemonic::Shr | Mnemonic::Sar | Mnemonic::Rol | Mnemonic::Ror);
    let count_cl = shift && ins.op1_kind() == OpKind::Register;
    let dst = |i: u32| -> Option<Option<Register>> {
        match ins.op_kind(i) {
            OpKind::Register => Some(Some(map_reg(ins.op_register(i))?)),
            OpKind::Memory => Some(None),
            _ => None,
        }
    };
    let fix = if shift {
        let size =
            if ins.op0_kind() == OpKind::Register { ins.op_register(0).size() } else { ins.memory_size().size() };
        let op = match m {
            Mnemonic::Shl => FixOp::Shl,
            Mnemonic::Shr => FixOp::Shr,
            Mnemonic::Sar => FixOp::Sar,
            Mnemonic::Rol => FixOp::Rol,
            _ => FixOp::Ror,
        };
        let d = dst(0)?;
        // SHR needs the original operand in a scratch register: rcx for memory, r8 for a
        // register, except with a CL count on memory (rcx holds the count, r8 the address).
        if size != 4 || (op == FixOp::Shr && d.is_none() && count_cl) {
            if count_cl {
                return None;
            }
            None
        } else {
            Some(Fixup { op, dst: d })
        }
    } else if matches!(m, Mnemonic::Mul | Mnemonic::Imul) {
        if ins.op_count() == 1 {
            let size =
                if ins.op0_kind() == OpKind::Register { ins.op_register(0).size() } else { ins.memory_size().size() };
            let low = match size {
                1 => Register::AL,
                2 => Register::AX,
                _ => Register::EAX,
            };
            Some(Fixup { op: FixOp::Mul, dst: Some(low) })
        } else {
            Some(Fixup { op: FixOp::Mul, dst: Some(map_reg(ins.op_register(0))?) })
        }
    } else {
        None
    };
    Some((kind, forms, fix, count_cl))
}

/// Classifies a validated instruction, re-encoding it when generic. `None`: not translated.
fn classify_inner(ins: &Instruction) -> Option<(Kind, Forms)> {
    if ins.has_rep_prefix()
        && !ins.has_repne_prefix()
        && !ins.has_lock_prefix()
        && ins.op0_kind() == OpKind::MemoryESEDI
    {
        let shift = match ins.code() {
            Code::Stosb_m8_AL => 0,
            Code::Stosw_m16_AX => 1,
            Code::Stosd_m32_EAX => 2,
            _ => return None,
        };
        return Some((Kind::RepStos(shift), Forms::default()));
    }
    if ins.has_lock_prefix() || ins.has_rep_prefix() || ins.has_repne_prefix() {
        return None;
    }
    let m = ins.mnemonic();
    match ins.code() {
        Code::Push_r32 => {
            return Some((Kind::PushReg(HOST[guest_num(ins.op0_register())?]), Forms::default()));
        }
        Code::Pushd_imm8 | Code::Pushd_imm32 => {
            #[allow(clippy::cast_possible_truncation, reason = "the pushed dword (imm8 sign-extended)")]
            let v = ins.immediate(0) as u32;
            return Some((Kind::PushImm(v), Forms::default()));
        }
        Code::Pop_r32 => {
            return Some((Kind::PopReg(HOST[guest_num(ins.op0_register())?]), Forms::default()));
        }
        Code::Jmp_rel8_32 | Code::Jmp_rel32_32 => {
            return Some((Kind::Jmp(near_target(ins)?), Forms::default()));
        }
        Code::Call_rel32_32 => return Some((Kind::Call(near_target(ins)?), Forms::default())),
        Code::Retnd => return Some((Kind::Ret(0), Forms::default())),
        Code::Jmp_rm32 | Code::Call_rm32 => {
            let (reg, forms) = match ins.op0_kind() {
                OpKind::Register => (Some(HOST[guest_num(ins.op0_register())?]), Forms::default()),
                OpKind::Memory => {
                    // The target's load into rcx, through GS where it may.
                    let load =
                        Instruction::with2(Code::Mov_r32_rm32, Register::ECX, MemoryOperand::with_displ(0, 4)).ok()?;
                    let segment = segment_form(load, ins).unwrap_or_default();
                    (None, Forms { lea: address_lea(ins)?, segment, ..Forms::default() })
                }
                _ => return None,
            };
            let kind = if ins.code() == Code::Jmp_rm32 { Kind::JmpInd(reg) } else { Kind::CallInd(reg) };
            return Some((kind, forms));
        }
        Code::Retnd_imm16 => return Some((Kind::Ret(ins.immediate16()), Forms::default())),
        Code::Nopd | Code::Nopw | Code::Nop_rm32 | Code::Nop_rm16 => {
            return Some((Kind::Nop, Forms::default()));
        }
        _ => {}
    }
    if ins.is_jcc_short_or_near() {
        let cc = ins.condition_code();
        if cc == ConditionCode::None {
            return None;
        }
        #[allow(clippy::cast_possible_truncation, reason = "iced's condition codes follow the x86 encoding order")]
        let nibble = (cc as u32 - 1) as u8;
        return Some((Kind::Jcc(near_target(ins)?, nibble), Forms::default()));
    }
    if !generic_mnemonic(m) {
        return None;
    }
    let mut host = modrm_form(ins)?;
    let mut mem = None;
    for i in 0..ins.op_count() {
        match ins.op_kind(i) {
            OpKind::Register => {
                let shift_count = i == 1
                    && matches!(m, Mnemonic::Shl | Mnemonic::Shr | Mnemonic::Sar | Mnemonic::Rol | Mnemonic::Ror);
                if shift_count {
                    // The count: guest CL is copied to host CL before the instruction.
                    if ins.op_register(1) != Register::CL {
                        return None;
                    }
                } else {
                    host.set_op_register(i, map_reg(ins.op_register(i))?);
                }
            }
            OpKind::Memory => {
                if m == Mnemonic::Lea {
                    host.set_memory_base(map_addr(ins.memory_base())?);
                    host.set_memory_index(map_addr(ins.memory_index())?);
                    #[allow(clippy::cast_possible_wrap, reason = "sign-extended disp32; the 32-bit LEA truncates")]
                    let d = i64::from(ins.memory_displacement32() as i32);
                    #[allow(clippy::cast_sign_loss, reason = "two's complement bits of the displacement")]
                    host.set_memory_displacement64(d as u64);
                    host.set_memory_displ_size(if ins.memory_base() == Register::None { 4 } else { 1 });
                } else {
                    if is_cmov(m) || matches!(m, Mnemonic::Xchg) {
                        return None;
                    }
                    let size = u32::try_from(ins.memory_size().size()).ok()?;
                    if !(1..=4).contains(&size) {
                        return None;
                    }
                    // One-operand MUL and IMUL only read their memory operand.
                    let writes =
                        i == 0 && !matches!(m, Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Mul | Mnemonic::Imul);
                    mem = Some((size, writes));
                }
                host.set_segment_prefix(Register::None);
            }
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32 => {}
            _ => return Option::None,
        }
    }
    if matches!(m, Mnemonic::Shl | Mnemonic::Shr | Mnemonic::Sar | Mnemonic::Rol | Mnemonic::Ror) {
        // Immediate counts only when they change something: a zero count writes no flags. A CL
        // count may be zero at run time: the flag analysis treats it as reading what it writes.
        let cl = ins.op1_kind() == OpKind::Register;
        if !cl && (ins.op1_kind() != OpKind::Immediate8 || ins.immediate8() & 31 == 0) {
            return None;
        }
    }
    match host.code() {
        Code::Inc_r32 => host.set_code(Code::Inc_rm32),
        Code::Dec_r32 => host.set_code(Code::Dec_rm32),
        Code::Inc_r16 => host.set_code(Code::Inc_rm16),
        Code::Dec_r16 => host.set_code(Code::Dec_rm16),
        _ => {}
    }
    let forms = match mem {
        None => Forms { body: encode(&host)?, ..Forms::default() },
        Some(_) => Forms {
            body: encode(&at_r8(host))?,
            segment: segment_form(host, ins).unwrap_or_default(),
            lea: address_lea(ins)?,
        },
    };
    Some((Kind::Generic { mem }, forms))
}

/// A MOV with a `moffs` operand (`mov eax, [address]` and the like) in its ModRM encoding,
/// the same access with operands in the same order, which can be re-addressed (a `moffs`
/// has no base or index); any other instruction as it is.
fn modrm_form(ins: &Instruction) -> Option<Instruction> {
    let (code, store) = match ins.code() {
        Code::Mov_AL_moffs8 => (Code::Mov_r8_rm8, false),
        Code::Mov_AX_moffs16 => (Code::Mov_r16_rm16, false),
        Code::Mov_EAX_moffs32 => (Code::Mov_r32_rm32, false),
        Code::Mov_moffs8_AL => (Code::Mov_rm8_r8, true),
        Code::Mov_moffs16_AX => (Code::Mov_rm16_r16, true),
        Code::Mov_moffs32_EAX => (Code::Mov_rm32_r32, true),
        _ => return Some(*ins),
    };
    let mem = MemoryOperand::with_displ(u64::from(ins.memory_displacement32()), 4);
    let made = if store {
        Instruction::with2(code, mem, ins.op1_register())
    } else {
        Instruction::with2(code, ins.op0_register(), mem)
    };
    made.ok()
}

/// `host` with its memory operand `[rbp + r8]`: the access at the address `lea` put in r8.
fn at_r8(mut host: Instruction) -> Instruction {
    host.set_memory_base(Register::RBP);
    host.set_memory_index(Register::R8);
    host.set_memory_index_scale(1);
    host.set_memory_displacement64(0);
    host.set_memory_displ_size(1);
    host
}

/// The encoding of `host` whose memory operand is the guest's own address, formed with 32-bit
/// host registers (the address-size prefix makes the CPU wrap the sum at 2^32, as the guest
/// does) and based at the GS base (guest address 0 in guard-region mode): no `lea`, no r8.
/// `None` for an absolute address of 2^31 or more, which without a register to size the
/// address would be sign-extended to 64 bits, below the memory.
fn segment_form(mut host: Instruction, guest: &Instruction) -> Option<Bytes> {
    // A 32-bit guest register's 32-bit host register.
    let map = |r: Register| match r {
        Register::None => Some(Register::None),
        r => guest_num(r).and(map_reg(r)),
    };
    let (base, index) = (map(guest.memory_base())?, map(guest.memory_index())?);
    let disp = guest.memory_displacement32();
    // (iced refuses such a displacement in 64-bit addressing too; this does not rely on it.)
    if base == Register::None && index == Register::None && disp >= 1 << 31 {
        return None;
    }
    host.set_memory_base(base);
    host.set_memory_index(index);
    host.set_memory_index_scale(guest.memory_index_scale());
    host.set_memory_displacement64(u64::from(disp));
    host.set_memory_displ_size(if base == Register::None { 4 } else { 1 });
    host.set_segment_prefix(Register::GS);
    encode(&host)
}

/// Decodes the candidate instructions of the block at `start` (inside memory).
fn candidates(start: u32, mem: &GuestMemory) -> Vec<Cand> {
    let mut out = Vec::with_capacity(MAX_BLOCK);
    let mut info = InstructionInfoFactory::new();
    let mut ip = start;
    while out.len() < MAX_BLOCK {
        let Ok(window) = mem.fetch_window(ip, 15) else { break };
        let ins = denali_isa::validate::decoder(window, ip).decode();
        if ins.code() == Code::INVALID || denali_isa::validate::check(&ins).is_err() {
            break;
        }
        let Some((kind, Forms { body, segment, lea }, fix, count_cl)) = classify(&ins) else { break };
        #[allow(clippy::cast_possible_truncation, reason = "at most 15")]
        let next = ip.wrapping_add(ins.len() as u32);
        let logical = matches!(ins.mnemonic(), Mnemonic::And | Mnemonic::Or | Mnemonic::Xor | Mnemonic::Test);
        let mut undefined = ins.rflags_undefined() & STATUS;
        if logical {
            // AF after a logical operation: x86-64 hosts clear it, as the interpreter does.
            undefined &= !RflagsBits::AF;
        }
        let mut modified = (ins.rflags_modified() | ins.rflags_undefined()) & STATUS;
        if count_cl {
            // With a CL count the written flags are OF, AF and those iced lists for 1..31.
            modified |= match ins.mnemonic() {
                Mnemonic::Rol | Mnemonic::Ror => RflagsBits::CF | RflagsBits::OF,
                _ => STATUS,
            };
        }
        let mut read = ins.rflags_read() & STATUS;
        if matches!(kind, Kind::Jcc(..)) {
            // Its taken arm leaves the block: every flag is live there.
            read = STATUS;
        }
        if count_cl {
            // A zero count leaves the flags as they were.
            read |= modified;
        }
        let fixed = if fix.is_some() { undefined } else { 0 };
        if fix.is_some() {
            undefined = 0;
        }
        let writes = written_registers(&mut info, &ins);
        let accesses = Accesses::of(&accesses_of(&ins, kind));
        let effect = Effect { writes, adjust: adjustment(&ins, kind), barrier: matches!(kind, Kind::Jcc(..)) };
        out.push(Cand {
            eip: ip,
            next,
            kind,
            body,
            segment,
            lea,
            read,
            modified,
            undefined,
            fix,
            fixed,
            count_cl,
            writes,
            accesses,
            effect,
        });
        if kind.ends_block() || next < ip {
            break;
        }
        ip = next;
    }
    out
}

/// The guest memory accesses of a translated instruction, in the terms of `checks`.
fn accesses_of(ins: &Instruction, kind: Kind) -> Vec<Access> {
    let stack = |disp, write| Access { base: Some(checks::ESP), index: None, scale: 1, disp, size: 4, write };
    #[allow(clippy::cast_possible_wrap, reason = "a disp32 is sign-extended")]
    let operand = |size, write| Access {
        base: guest_num(ins.memory_base()),
        index: guest_num(ins.memory_index()),
        scale: ins.memory_index_scale(),
        disp: ins.memory_displacement32() as i32,
        size,
        write,
    };
    match kind {
        Kind::Generic { mem: Some((size, write)) } => vec![operand(size, write)],
        // REP STOS checks its whole range itself.
        Kind::Generic { mem: None }
        | Kind::Nop
        | Kind::Jmp(_)
        | Kind::Jcc(..)
        | Kind::JmpInd(Some(_))
        | Kind::RepStos(_) => Vec::new(),
        Kind::PushReg(_) | Kind::PushImm(_) | Kind::Call(_) | Kind::CallInd(Some(_)) => vec![stack(-4, true)],
        Kind::PopReg(_) | Kind::Ret(_) => vec![stack(0, false)],
        Kind::JmpInd(None) => vec![operand(4, false)],
        Kind::CallInd(None) => vec![operand(4, false), stack(-4, true)],
    }
}

/// The register a translated instruction changes by a constant, if it writes one that way.
fn adjustment(ins: &Instruction, kind: Kind) -> Option<(usize, i32)> {
    match kind {
        Kind::PushReg(_) | Kind::PushImm(_) | Kind::Call(_) | Kind::CallInd(_) => return Some((checks::ESP, -4)),
        Kind::PopReg(r) => return (r != HOST[checks::ESP]).then_some((checks::ESP, 4)),
        Kind::Generic { mem: None } => {}
        _ => return None,
    }
    if ins.op0_kind() != OpKind::Register {
        return None;
    }
    let r = guest_num(ins.op0_register())?;
    #[allow(clippy::cast_possible_truncation, reason = "32-bit immediates; the guest wraps at 2^32 too")]
    let imm = || ins.immediate(1) as i32;
    match ins.code() {
        Code::Add_rm32_imm8 | Code::Add_rm32_imm32 | Code::Add_EAX_imm32 => Some((r, imm())),
        Code::Sub_rm32_imm8 | Code::Sub_rm32_imm32 | Code::Sub_EAX_imm32 => Some((r, imm().wrapping_neg())),
        Code::Inc_r32 | Code::Inc_rm32 => Some((r, 1)),
        Code::Dec_r32 | Code::Dec_rm32 => Some((r, -1)),
        Code::Lea_r32_m if guest_num(ins.memory_base()) == Some(r) && ins.memory_index() == Register::None =>
        {
            #[allow(clippy::cast_possible_wrap, reason = "a disp32 is sign-extended")]
            Some((r, ins.memory_displacement32() as i32))
        }
        _ => None,
    }
}

/// The guest registers (bit per register number) `ins` may write, implicitly or not.
fn written_registers(info: &mut InstructionInfoFactory, ins: &Instruction) -> u8 {
    let mut mask = 0;
    for used in info.info(ins).used_registers() {
        let writes = matches!(
            used.access(),
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        );
        if writes {
            // Unknown registers (none in the subset) count as all of them.
            mask |= guest_num(used.register().full_register32()).map_or(0xFF, |n| 1 << n);
        }
    }
    mask
}

/// Where the fixup of each instruction's undefined flags goes: `eager[i]` when instruction
/// `i` must fix them right after it runs (they are read, or live at the block's end), and
/// `deferred[l]` lists the fixups the exits before instruction `l` must apply instead (the
/// flags are overwritten before any read, so only a failed check can observe them). Moving
/// the fixup (`pushfq`/`popfq`, slow) off the path that runs is what makes a multiply or a
/// shift followed by a checked access cheap.
fn place_fixups(c: &[Cand]) -> (Vec<bool>, Vec<Vec<Deferred>>) {
    let mut eager = vec![false; c.len()];
    let mut deferred = vec![Vec::new(); c.len()];
    for (i, cand) in c.iter().enumerate() {
        let Some(fix) = cand.fix else { continue };
        if flags_dead(cand.fixed, &c[i + 1..]) {
            continue;
        }
        match defer_points(cand, fix, &c[i + 1..]) {
            Some(points) => {
                for p in points {
                    deferred[i + 1 + p].push(Deferred { fix, index: i });
                }
            }
            None => eager[i] = true,
        }
    }
    (eager, deferred)
}

/// The exits (indices into `rest`) at which the fixup of `first` can run instead of right
/// after it: its flags must be overwritten before any read and before the block ends, and
/// between `first` and each such exit no instruction may touch a status flag or the fixed-up
/// register (the fixup recomputes the flags from that register and the current flags).
fn defer_points(first: &Cand, fix: Fixup, rest: &[Cand]) -> Option<Vec<usize>> {
    // A zero CL count leaves the flags alone, and then so must the exit.
    if first.count_cl {
        return None;
    }
    // SHR's fixup needs only the original operand, which it saves in the Ctx; the others are
    // computed from the result register (a memory operand's address, r8, does not survive).
    let guest = if fix.op == FixOp::Shr { None } else { Some(guest_of_host(fix.dst?)?) };
    let mut points = Vec::new();
    let mut left = first.fixed;
    let mut clean = true;
    for (l, later) in rest.iter().enumerate() {
        if later.read & left != 0 {
            return None;
        }
        if later.kind.may_exit_before() {
            if !clean {
                return None;
            }
            points.push(l);
        }
        left &= !later.modified;
        if left == 0 {
            return Some(points);
        }
        clean &= later.modified == 0 && guest.is_none_or(|g| later.writes & (1 << g) == 0);
    }
    None
}

/// A fixup moved to the exits: that of instruction `index`.
#[derive(Clone, Copy)]
struct Deferred {
    fix: Fixup,
    index: usize,
}

/// The guest register number of a host register operand (any size).
fn guest_of_host(reg: Register) -> Option<usize> {
    Some(match reg.full_register() {
        Register::RAX => 0,
        Register::RSI => 1,
        Register::RDX => 2,
        Register::RBX => 3,
        Register::R12 => 4,
        Register::R13 => 5,
        Register::R14 => 6,
        Register::R15 => 7,
        _ => return None,
    })
}

/// Length of the longest prefix whose undefined flags are all dead (overwritten before being
/// read, before any possible exit and before the end of the block).
fn safe_prefix(c: &[Cand]) -> usize {
    let mut len = c.len();
    while let Some(bad) = (0..len).find(|&i| !undefined_dead(&c[i], &c[i + 1..len])) {
        len = bad;
    }
    len
}

/// Whether the flags `first` leaves undefined are all overwritten by `rest` before being read
/// or before an exit.
fn undefined_dead(first: &Cand, rest: &[Cand]) -> bool {
    flags_dead(first.undefined, rest)
}

/// Whether the flags `u` are all overwritten by `rest` before being read or before an exit.
fn flags_dead(mut u: u32, rest: &[Cand]) -> bool {
    for later in rest {
        if u == 0 {
            break;
        }
        if later.kind.may_exit_before() || later.read & u != 0 {
            return false;
        }
        u &= !later.modified;
    }
    u == 0
}

type Asm = VecAssembler<X64Relocation>;

/// Exit state: continue at `eip`, refunding the `refund` instructions of the block that did
/// not retire.
#[allow(clippy::cast_possible_wrap, reason = "guest addresses and counts as 32-bit immediates")]
fn set_exit(a: &mut Asm, eip: u32, refund: u32) {
    let (e, n) = (eip as i32, refund as i32);
    dynasm!(a
        ; .arch x64
        ; mov DWORD [rdi + ctx::EIP], e
        ; mov DWORD [rdi + ctx::COUNT], n
    );
}

/// Exit before instruction `index` of `n` at `eip`, which the interpreter must run.
fn stop_exit(a: &mut Asm, eip: u32, index: u32, n: u32, fixups: &[Deferred]) {
    for d in fixups {
        if d.fix.op == FixOp::Shr {
            // OF = MSB of the original operand (saved in the Ctx), AF = 0.
            let saved = saved_slot(d.index);
            dynasm!(a
                ; .arch x64
                ; pushfq
                ; mov ecx, DWORD [rdi + saved]
                ; shr ecx, 31
                ; shl ecx, 11
                ; and QWORD [rsp], -0x811
                ; or [rsp], rcx
                ; popfq
            );
        } else {
            // Cannot fail: deferred fixups of the other kinds are those of registers, which
            // encode.
            let _ = fix_after(a, d.fix);
        }
    }
    set_exit(a, eip, n - index);
    dynasm!(a ; .arch x64 ; mov DWORD [rdi + ctx::STOPPED], 1 ; jmp ->exit);
}

/// The block's own start and labels in its inner entry: `inner` before the budget is taken,
/// `taken` after it is (to check it).
#[derive(Clone, Copy)]
struct Own {
    start: u32,
    inner: DynamicLabel,
    taken: DynamicLabel,
    /// r10 holds the chaining table, not the code-page table (see `translate_checked`).
    table_in_r10: bool,
}

/// Leaves the block for the direct target `target`: straight into its translation when the
/// chaining table holds it (its inner entry checks the budget), else to the runtime. A jump to
/// the block's own start goes to its inner entry `own` directly. Host flags hold the guest
/// flags. Touches no host flag.
fn chain(a: &mut Asm, target: u32, mem_size: u32, own: Own, links: &mut Vec<(usize, u32)>) {
    if target == own.start {
        dynasm!(a ; .arch x64 ; jmp =>own.inner);
        return;
    }
    // One more jump between blocks (r9: see `ctx::Ctx::runs`); a loop inside a block is not.
    dynasm!(a ; .arch x64 ; lea r9, [r9 + 1]);
    if target >= mem_size || target >= 1 << 31 {
        set_exit(a, target, 0);
        dynasm!(a ; .arch x64 ; jmp ->exit);
        return;
    }
    #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation, reason = "below 2^31; slots * 16 < 2^31")]
    let (t, at) = (target as i32, (ctx::slot(target) * 16) as i32);
    // The link: `jmp rel32` to the next instruction until the runtime points it at the
    // target's inner entry (and back when that block is dropped).
    a.extend([0xE9, 0, 0, 0, 0].iter());
    links.push((a.offset().0 - 4, target));
    // The tag is !target, so tag + target + 1 wraps to zero exactly on a match. r8 keeps the
    // table's address for the jump (rcx is 0 on a match).
    if own.table_in_r10 {
        dynasm!(a ; .arch x64 ; mov r8, r10);
    } else {
        dynasm!(a ; .arch x64 ; mov r8, QWORD [rdi + ctx::TABLE]);
    }
    dynasm!(a
        ; .arch x64
        ; mov rcx, QWORD [r8 + at]
        ; lea rcx, [rcx + t + 1]
        ; jrcxz >hit
    );
    set_exit(a, target, 0);
    dynasm!(a
        ; .arch x64
        ; jmp ->exit
        ; hit:
        ; jmp QWORD [r8 + at + 8]
    );
}

/// Leaves the block for the guest address in ecx (an indirect branch or a return): into its
/// translation when the chaining table holds it, else to the runtime, which looks it up (and
/// raises whatever an invalid target raises). Hashes with `crc32` (see `ctx::slot`); touches
/// no host flag.
fn chain_indirect(a: &mut Asm, own: Own) {
    dynasm!(a
        ; .arch x64
        ; lea r9, [r9 + 1]
        ; mov r8d, 0
        ; crc32 r8d, ecx
        ; rorx r8, r8, 20
        ; mov r8d, r8d
        ; lea r8, [r8 * 8]
        ; push r9
    );
    // r8: the slot's host address.
    if own.table_in_r10 {
        dynasm!(a ; .arch x64 ; lea r8, [r10 + r8 * 2]);
    } else {
        dynasm!(a
            ; .arch x64
            ; mov r9, QWORD [rdi + ctx::TABLE]
            ; lea r8, [r9 + r8 * 2]
        );
    }
    dynasm!(a
        ; .arch x64
        ; mov r9, QWORD [r8]
        ; lea rcx, [rcx + r9 + 1]
        ; jrcxz >hit
        // A miss: rcx + !tag (= rcx - tag - 1) is the target again; only now is it stored.
        ; not r9
        ; lea rcx, [rcx + r9]
        ; pop r9
        ; mov DWORD [rdi + ctx::EIP], ecx
        ; mov DWORD [rdi + ctx::COUNT], 0
        ; jmp ->exit
        ; hit:
        ; pop r9
        ; jmp QWORD [r8 + 8]
    );
}

/// Leaves the block with the state before instruction `index` (at `eip`) unless the access
/// `r8 .. r8 + size` lies inside memory (of `mem_size` bytes; checked when `bounds`), and, for
/// a store, touches no page holding cached code. Touches no host flag.
fn emit_checks(
    a: &mut Asm,
    size: u32,
    write: bool,
    bounds: bool,
    stop: DynamicLabel,
    mem_size: u32,
    islands: &mut Islands,
) {
    let last = (size - 1) as i32;
    if !bounds {
        // Guard-region mode: an access outside memory faults (`fault.rs`).
    } else if let Ok(below) = i32::try_from(i64::from(last) - i64::from(mem_size)) {
        // r8 + last - mem_size is negative (high dword all ones) exactly inside memory, and
        // otherwise below 2^32 (high dword zero): the exit is the branch not taken on the path
        // that runs (a taken `jrcxz` over a `jmp` per check cost about as much as the rest of
        // matmul's loop), and the size is an immediate (no load).
        // `jecxz` tests that high dword (now the low one) alone: no `mov ecx, ecx` to clear
        // the rest, one instruction less per check.
        dynasm!(a
            ; .arch x64
            ; lea rcx, [r8 + below]
            ; rorx rcx, rcx, 32
        );
        islands.branch(a, stop, true);
    } else {
        // Memory above 2 GiB: the sum with 2^32 - mem_size is below 2^33, so its high dword is
        // 0 (inside) or 1 (outside), and that dword - 1 is zero exactly outside.
        dynasm!(a
            ; .arch x64
            ; mov rcx, QWORD [rdi + ctx::LIMIT]
            ; lea rcx, [r8 + rcx + last]
            ; rorx rcx, rcx, 32
            ; lea ecx, [rcx - 1]
        );
        islands.branch(a, stop, false);
    }
    if write {
        // The byte of the first page is non-zero when that page or the next holds cached
        // code, and `size` is at most a page: one look covers every page the store touches.
        // 1 >> byte (the 1 is in the Ctx) is zero exactly on such a page.
        debug_assert!(size <= 4096);
        dynasm!(a
            ; .arch x64
            ; rorx rcx, r8, 12
            ; mov ecx, ecx
            ; movzx ecx, BYTE [r10 + rcx]
            ; shrx ecx, DWORD [rdi + ctx::ONE], ecx
        );
        islands.branch(a, stop, false);
    }
}

/// Translates the block at `start`, which lies inside memory. `guarded`: for guard-region
/// mode (a guarded memory, the fault handler installed): accesses are not bounds-checked, and
/// the translation lists where they may fault (`Translation::faults`). `segment` (with
/// `guarded`): the GS base may be set (`segment_base_settable` in `mod.rs`), and accesses
/// address guest memory through it. `protected` (with `guarded`): the memory's pages holding
/// cached code are write-protected (`GuestMemory::protect_code_pages`), so a store to code
/// faults at its own site like an access outside memory, and stores make no code-page check.
pub(crate) fn translate(start: u32, mem: &GuestMemory, guarded: bool, segment: bool, protected: bool) -> Translation {
    debug_assert!(guarded || !protected);
    translate_checked(start, mem, guarded, guarded && segment, protected).unwrap_or(Translation {
        code: Vec::new(),
        count: 0,
        last_byte: start,
        inner: 0,
        links: Vec::new(),
        faults: Vec::new(),
    })
}

fn translate_checked(
    start: u32,
    mem: &GuestMemory,
    guarded: bool,
    segment: bool,
    protected: bool,
) -> Option<Translation> {
    let mut c = candidates(start, mem);
    let keep = safe_prefix(&c);
    c.truncate(keep);
    if c.is_empty() {
        return None;
    }
    // Room for a typical block up front: growing the buffer and label tables as it is
    // emitted showed in the compile profile.
    let mut a = Asm::new_with_capacity(0, 4096, 0, 1, 4 * MAX_BLOCK, 0, 4 * MAX_BLOCK);
    dynasm!(a
        ; .arch x64
        ; push rbx
        ; push rbp
        ; push r12
        ; push r13
        ; push r14
        ; push r15
        ; mov rbp, QWORD [rdi + ctx::MEM_BASE]
        ; mov r9, QWORD [rdi + ctx::RUNS]
        ; mov r11, QWORD [rdi + ctx::LEFT]
    );
    // With write-protected code no store looks at the code-page table (but REP STOS, which
    // loads it itself), so r10 holds the chaining table every indirect branch and return
    // hashes into: one load less on their path.
    if protected {
        dynasm!(a ; .arch x64 ; mov r10, QWORD [rdi + ctx::TABLE]);
    } else {
        dynasm!(a ; .arch x64 ; mov r10, QWORD [rdi + ctx::CODE_PAGES]);
    }
    if segment {
        // The GS base is this thread's, and the runtime may have run another memory on it.
        dynasm!(a ; .arch x64 ; wrgsbase rbp);
    }
    // The guest flags are always in the host flags: a chained entry cannot know which flags
    // its predecessor wrote, so every exit saves them and every outer entry loads them. Not
    // with `popfq` (microcoded, the slowest instruction of an entry): the `cmp` sets OF
    // (0x80 - 1 overflows, 0 - 1 does not), `sahf` the others from AH (before EAX is loaded).
    dynasm!(a
        ; .arch x64
        ; cmp BYTE [rdi + ctx::FLAGS_IN + 1], 1
        ; mov ah, BYTE [rdi + ctx::FLAGS_IN]
        ; sahf
        ; mov eax, DWORD [rdi]
        ; mov esi, DWORD [rdi + 4]
        ; mov edx, DWORD [rdi + 8]
        ; mov ebx, DWORD [rdi + 12]
        ; mov r12d, DWORD [rdi + 16]
        ; mov r13d, DWORD [rdi + 20]
        ; mov r14d, DWORD [rdi + 24]
        ; mov r15d, DWORD [rdi + 28]
    );
    #[allow(clippy::cast_possible_truncation, reason = "at most MAX_BLOCK instructions")]
    let n = c.len() as u32;
    let mem_size = mem.size();
    // Inner entry: take the block's instructions from the budget, or stop before it. Its exit
    // lies just before it, within the reach of `jrcxz` backwards: the outer entry jumps over.
    let own = Own { start, inner: a.new_dynamic_label(), taken: a.new_dynamic_label(), table_in_r10: protected };
    let no_budget = a.new_dynamic_label();
    #[allow(clippy::cast_possible_wrap, reason = "at most MAX_BLOCK instructions")]
    let n32 = n as i32;
    dynasm!(a
        ; .arch x64
        ; jmp =>own.inner
        ; =>no_budget
        ; lea r11, [r11 + n32]
        // It ends the run: there is at most one per entry from the runtime.
        ; mov QWORD [rdi + ctx::BUDGET_EXITS], 1
    );
    set_exit(&mut a, start, 0);
    dynasm!(a ; .arch x64 ; jmp ->exit);
    let (eager, deferred) = place_fixups(&c);
    // In guard-region mode only stores are checked (their code pages); the bounds are the
    // guard's. Write-protected code needs no check at all: a store to it faults.
    let checked = move |a: &Access| !protected && (!guarded || a.write);
    let plan = checks::plan(c.iter().map(|x| (x.accesses.iter().filter(checked), x.effect)));
    let mut islands = Islands::default();
    // The first check of a loop would otherwise need an island inside the loop, behind a
    // jump taken on every pass: its trampoline goes here, reached backwards.
    let first_stop = plan.iter().position(|p| !p.is_empty()).map(|i| (i, a.new_dynamic_label()));
    if let Some((_, stop)) = first_stop {
        let tramp = a.new_dynamic_label();
        dynasm!(a ; .arch x64 ; =>tramp ; jmp =>stop);
        islands.back = Some((tramp, stop, a.offset().0 - 5));
    }
    let inner = a.offset().0;
    dynasm!(a
        ; .arch x64
        ; =>own.inner
        ; lea r11, [r11 - n32]
        ; =>own.taken
        // r11 is 2^32 + left with left < 2^31 (see `ctx::BUDGET_BIAS`), so its high dword is
        // 1 while left - n >= 0 and 0 once it is negative: `jecxz` on that dword exits, the
        // branch not taken on the path that runs (one instruction less than a sign test).
        ; rorx rcx, r11, 32
    );
    a.push(0x67);
    dynasm!(a ; .arch x64 ; jrcxz =>no_budget);
    let mut stops = Vec::new();
    let mut out = Out { sides: Vec::new(), links: Vec::new(), faults: Vec::new(), ended: false };
    // Loops back to the block's start whose pass count can be taken before the instruction
    // that sets the JCC's flags (it cannot exit, so no refund can see the count early): the
    // flag-setting instruction and the JCC then stay adjacent and fuse into one macro-op.
    // With the `lea` between them, bignum's inner loop (`add r13d, -4; jne`) ran 27 % slower.
    let early: Vec<bool> = (0..c.len())
        .map(|j| {
            j > 0
                && j + 1 < c.len()
                && matches!(c[j].kind, Kind::Jcc(target, _) if target == start)
                && plan[j - 1].is_empty()
                && matches!(c[j - 1].kind, Kind::Generic { mem: None } | Kind::Nop)
        })
        .collect();
    let b = Body { c: &c, start, own, mem_size, eager: &eager, deferred: &deferred, early: &early, guarded, segment };
    // The `lea` whose address r8 holds and the guest registers that address is made of, while
    // both are known: an access to the same address (a load and a store of one operand, a
    // check and its access) needs no `lea` of its own. Only the block's start is a jump target
    // inside a block, and nothing is known there.
    let mut r8: Option<(Bytes, u8)> = None;
    for (i, cand) in c.iter().enumerate() {
        if early.get(i + 1) == Some(&true) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, reason = "i < MAX_BLOCK")]
            let pass = i as i32 + 2;
            dynasm!(a ; .arch x64 ; lea r11, [r11 - pass]);
        }
        // Where a failed check goes: out of line, after the block's body, so that the checks
        // that pass (all but never) run through dense code.
        let mut own_stop = None;
        if matches!(cand.kind, Kind::RepStos(_)) {
            // Its checks are its own (not in the plan): they exit here when they fail.
            let stop = a.new_dynamic_label();
            stops.push((stop, i));
            own_stop = Some(stop);
        }
        if !plan[i].is_empty() {
            let stop = match first_stop {
                Some((first, stop)) if first == i => stop,
                _ => a.new_dynamic_label(),
            };
            stops.push((stop, i));
            for check in &plan[i] {
                let lea = check_lea(check)?;
                let emit = |a: &mut Asm, islands: &mut Islands| {
                    a.extend(lea.iter());
                    emit_checks(a, check.span, check.write, !guarded, stop, mem_size, islands);
                };
                islands.reserve(&mut a, |a, islands| emit(a, islands));
                emit(&mut a, &mut islands);
                // The checks leave r8 alone.
                r8 = Some((lea, registers(check.base, check.index)));
            }
        }
        if guarded && cand.accesses.len > 0 {
            // Where a fault on its access resumes (or its own check exits).
            let stop = match stops.last() {
                Some(&(stop, at)) if at == i => stop,
                _ => {
                    let stop = a.new_dynamic_label();
                    stops.push((stop, i));
                    stop
                }
            };
            if let (true, Kind::Generic { mem: Some((size, _)) }) = (cand.count_cl, cand.kind) {
                // A zero CL count skips the host instruction, and its access with it, where
                // the interpreter faults: the bounds are checked explicitly.
                let emit = |a: &mut Asm, islands: &mut Islands| {
                    a.extend(cand.lea.iter());
                    emit_checks(a, size, false, true, stop, mem_size, islands);
                };
                islands.reserve(&mut a, |a, islands| emit(a, islands));
                emit(&mut a, &mut islands);
                r8 = cand.accesses.iter().next().map(|x| (cand.lea, registers(x.base, x.index)));
            }
        }
        let r8_ready = matches!(cand.kind, Kind::Generic { mem: Some(_) }) && r8.is_some_and(|(l, _)| l == cand.lea);
        let this = (i, cand, r8_ready, own_stop);
        islands.reserve(&mut a, |a, _| {
            let mut scratch = Out { sides: Vec::new(), links: Vec::new(), faults: Vec::new(), ended: false };
            let _ = emit_instruction(a, &b, this, &mut scratch);
        });
        emit_instruction(&mut a, &b, this, &mut out)?;
        r8 = r8_after(cand, r8, segment);
        if out.ended {
            // Nothing falls through past a block's last exit: the trampolines go there.
            islands.flush(&mut a, false);
            break;
        }
    }
    let Out { sides, mut links, faults, ended } = out;
    if !ended {
        let next = c[c.len() - 1].next;
        islands.reserve(&mut a, |a, _| chain(a, next, mem_size, own, &mut Vec::new()));
        chain(&mut a, next, mem_size, own, &mut links);
        islands.flush(&mut a, false);
    }
    for (side, target, after) in sides {
        #[allow(clippy::cast_possible_wrap, reason = "at most MAX_BLOCK instructions")]
        let after = after as i32;
        dynasm!(a ; .arch x64 ; =>side ; lea r11, [r11 + after]);
        chain(&mut a, target, mem_size, own, &mut links);
    }
    // Where the stop exit of each instruction is (any of them, when it has several: they are
    // the same code).
    let mut stop_at = [None; MAX_BLOCK];
    for (stop, i) in stops {
        #[allow(clippy::cast_possible_truncation, reason = "at most MAX_BLOCK instructions")]
        let index = i as u32;
        stop_at[i].get_or_insert(a.offset().0);
        dynasm!(a ; .arch x64 ; =>stop);
        stop_exit(&mut a, c[i].eip, index, n, &deferred[i]);
    }
    let faults = faults.into_iter().map(|(from, to, i)| Some((from, to, stop_at[i]?))).collect::<Option<Vec<_>>>()?;
    dynasm!(a
        ; .arch x64
        ; ->exit:
        ; mov DWORD [rdi + ctx::FLAGS_SAVED], 1
        ; mov ecx, DWORD [rdi + ctx::COUNT]
        ; lea r11, [r11 + rcx]
        ; mov QWORD [rdi + ctx::LEFT], r11
        ; mov QWORD [rdi + ctx::RUNS], r9
        ; mov DWORD [rdi], eax
        ; mov DWORD [rdi + 4], esi
        ; mov DWORD [rdi + 8], edx
        ; mov DWORD [rdi + 12], ebx
        ; mov DWORD [rdi + 16], r12d
        ; mov DWORD [rdi + 20], r13d
        ; mov DWORD [rdi + 24], r14d
        ; mov DWORD [rdi + 28], r15d
        // The flags once EAX is stored (`pushfq` cost as much as the rest of the exit).
        ; lahf
        ; seto al
        ; mov WORD [rdi + ctx::FLAGS_OUT], ax
        ; pop r15
        ; pop r14
        ; pop r13
        ; pop r12
        ; pop rbp
        ; pop rbx
        ; ret
    );
    let last_byte = c[c.len() - 1].next.wrapping_sub(1);
    // Every branch is in reach by construction (`Islands`): a failure here is a bug, which the
    // tests (debug builds) must see; a release build falls back to the interpreter.
    let code = a.finalize();
    debug_assert!(code.is_ok(), "block at {start:#x} does not assemble: {:?}", code.as_ref().err());
    let code = code.ok()?;
    Some(Translation { code, count: n, last_byte, inner, links, faults })
}

/// The guest registers (bit per register number) of an address.
fn registers(base: Option<usize>, index: Option<usize>) -> u8 {
    base.into_iter().chain(index).fold(0, |mask, r| mask | 1 << r)
}

/// Whether `cand`'s access addresses guest memory through GS (`Forms::segment`) when
/// `segment` allows it: not when its fixup is of the memory operand, which it finds at
/// `[rbp + r8]`.
fn through_segment(segment: bool, cand: &Cand) -> bool {
    segment && !cand.segment.is_empty() && cand.fix.is_none_or(|f| f.dst.is_some())
}

/// What r8 holds after `cand` ran, given what it held before (see `translate_checked`);
/// `segment` as for [`through_segment`].
fn r8_after(cand: &Cand, before: Option<(Bytes, u8)>, segment: bool) -> Option<(Bytes, u8)> {
    let held = match cand.kind {
        // SHR's fixup of a register keeps the original operand in r8 (`fix_before`).
        _ if cand.fix.is_some_and(|f| f.op == FixOp::Shr && f.dst.is_some()) => None,
        // No `lea` of its own.
        Kind::Generic { mem: Some(_) } if through_segment(segment, cand) => before,
        Kind::Generic { mem: Some(_) } => {
            let a = cand.accesses.iter().next()?;
            Some((cand.lea, registers(a.base, a.index)))
        }
        Kind::Generic { mem: None }
        | Kind::Nop
        | Kind::PushReg(_)
        | Kind::PushImm(_)
        | Kind::PopReg(_)
        | Kind::Jcc(..) => before,
        _ => None,
    };
    held.filter(|&(_, regs)| cand.writes & regs == 0)
}

/// What the emission of a block's instructions produces besides code: side exits (label,
/// target, instructions after the JCC), linkable direct exits, and whether the block ended.
struct Out {
    sides: Vec<(DynamicLabel, u32, u32)>,
    links: Vec<(usize, u32)>,
    /// Guard-region mode: host code ranges that may fault on a guest access, and the index of
    /// their guest instruction (whose stop exit they resume at).
    faults: Vec<(usize, usize, usize)>,
    ended: bool,
}

/// The block being emitted, as `emit_instruction` needs it.
struct Body<'a> {
    c: &'a [Cand],
    start: u32,
    own: Own,
    mem_size: u32,
    eager: &'a [bool],
    deferred: &'a [Vec<Deferred>],
    /// The loop backs whose pass count the instruction before them already took.
    early: &'a [bool],
    /// Guard-region mode: record where accesses may fault (`Out::faults`).
    guarded: bool,
    /// Accesses may address guest memory through GS (`Forms::segment`).
    segment: bool,
}

/// Emits instruction `i` (after its checks).
/// `r8_ready`: r8 already holds the address of its access (its check computed the same `lea`).
fn emit_instruction(
    a: &mut Asm,
    b: &Body,
    (i, cand, r8_ready, stop): (usize, &Cand, bool, Option<DynamicLabel>),
    out: &mut Out,
) -> Option<()> {
    let (c, start, own, mem_size) = (b.c, b.start, b.own, b.mem_size);
    let links = &mut out.links;
    // Guard-region mode: the host instructions from `from` to the current offset may fault on
    // the guest access of instruction i, and nothing guest-visible (guest registers in host
    // registers, host flags, guest memory) changes before the one that faults: the fault
    // resumes at the stop exit of instruction i.
    let guarded = b.guarded;
    let mut may_fault = |a: &Asm, from: usize| {
        if guarded {
            out.faults.push((from, a.offset().0, i));
        }
    };
    let from = a.offset().0;
    match cand.kind {
        Kind::Nop => {}
        Kind::Generic { mem } => {
            // `lea r8d`, the CL-count test (rcx), `fix_before` and `save_original` (copies to
            // r8, rcx or the Ctx) come before the host instruction, whose own access faults
            // before it writes anything (a read-modify-write reads first; x86 commits no part
            // of a faulting store).
            let via_segment = through_segment(b.segment, cand);
            if mem.is_some() && !r8_ready && !via_segment {
                a.extend(cand.lea.iter());
            }
            let fix = cand.fix.filter(|_| b.eager[i]);
            let skip = a.new_dynamic_label();
            if cand.count_cl {
                // rcx = ECX << 59 is zero exactly when the count (CL & 31) is.
                dynasm!(a
                    ; .arch x64
                    ; mov ecx, 59
                    ; shlx rcx, rsi, rcx
                    ; jrcxz =>skip
                    ; mov ecx, esi
                );
            }
            if let Some(f) = fix {
                fix_before(a, f)?;
            } else if let Some(f) = cand.fix.filter(|f| f.op == FixOp::Shr && deferred_any(b.deferred, i)) {
                // SHR's fixup moved to the exits: they need the original operand.
                save_original(a, f, i)?;
            }
            a.extend(if via_segment { cand.segment.iter() } else { cand.body.iter() });
            if mem.is_some() {
                may_fault(a, from);
            }
            if let Some(f) = fix {
                fix_after(a, f)?;
            }
            dynasm!(a ; .arch x64 ; =>skip);
        }
        // Stack slots are addressed as [rbp + r12 - 4] without the 32-bit wrap: the check
        // passed, so ESP - 4 (mod 2^32) lies inside memory, which ends at least a page below
        // 4 GiB; with ESP < 4 it would not. (Same for [rbp + r12] and the call pushes.)
        // In guard-region mode, the access is the first host instruction, and with ESP < 4
        // (or above 2^32 - 4) it reaches the guard below (above) memory.
        Kind::PushReg(r) => {
            dynasm!(a ; .arch x64 ; mov DWORD [rbp + r12 - 4], Rd(r));
            may_fault(a, from);
            dynasm!(a ; .arch x64 ; lea r12d, [r12 - 4]);
        }
        Kind::PushImm(v) => {
            #[allow(clippy::cast_possible_wrap, reason = "the dword's bits")]
            let v = v as i32;
            dynasm!(a ; .arch x64 ; mov DWORD [rbp + r12 - 4], v);
            may_fault(a, from);
            dynasm!(a ; .arch x64 ; lea r12d, [r12 - 4]);
        }
        Kind::PopReg(r) => {
            if r == 12 {
                dynasm!(a ; .arch x64 ; mov r12d, DWORD [rbp + r12]);
                may_fault(a, from);
            } else {
                dynasm!(a ; .arch x64 ; mov Rd(r), DWORD [rbp + r12]);
                may_fault(a, from);
                dynasm!(a ; .arch x64 ; lea r12d, [r12 + 4]);
            }
        }
        Kind::Jmp(target) => {
            chain(a, target, mem_size, own, links);
            out.ended = true;
        }
        Kind::Call(target) => {
            #[allow(clippy::cast_possible_wrap, reason = "the return address's bits")]
            let ret = cand.next as i32;
            dynasm!(a ; .arch x64 ; mov DWORD [rbp + r12 - 4], ret);
            may_fault(a, from);
            dynasm!(a ; .arch x64 ; lea r12d, [r12 - 4]);
            chain(a, target, mem_size, own, links);
            out.ended = true;
        }
        Kind::Ret(pop) => {
            let adjust = 4 + i32::from(pop);
            // The target goes to rcx (scratch) first.
            dynasm!(a ; .arch x64 ; mov ecx, DWORD [r12 + rbp]);
            may_fault(a, from);
            dynasm!(a ; .arch x64 ; lea r12d, [r12 + adjust]);
            chain_indirect(a, own);
            out.ended = true;
        }
        Kind::JmpInd(reg) | Kind::CallInd(reg) => {
            // The target first (from the register or memory before the push).
            match reg {
                Some(r) => dynasm!(a ; .arch x64 ; mov ecx, Rd(r)),
                None if b.segment && !cand.segment.is_empty() => a.extend(cand.segment.iter()),
                None => {
                    a.extend(cand.lea.iter());
                    dynasm!(a ; .arch x64 ; mov ecx, DWORD [rbp + r8]);
                }
            }
            if matches!(cand.kind, Kind::CallInd(_)) {
                #[allow(clippy::cast_possible_wrap, reason = "the return address's bits")]
                let ret = cand.next as i32;
                // Only rcx and r8 (scratch) changed since `from`.
                dynasm!(a ; .arch x64 ; mov DWORD [rbp + r12 - 4], ret);
                may_fault(a, from);
                dynasm!(a ; .arch x64 ; lea r12d, [r12 - 4]);
            } else if reg.is_none() {
                may_fault(a, from);
            }
            chain_indirect(a, own);
            out.ended = true;
        }
        Kind::RepStos(shift) => rep_stos(a, shift, b.mem_size, stop?, own.table_in_r10)?,
        Kind::Jcc(target, cc) if i + 1 < c.len() && target == start => {
            // A loop back to the block's start: the taken arm is the likely one, so it runs
            // inline, as the one branch of a pass: the next pass's count net of the refund of
            // the instructions after the JCC (n - i - 1) is taken before it (`lea` leaves the
            // flags alone) and given back when the loop ends. (A `j<!cc>` over `jmp` was two
            // branches per pass.) Pending trampolines go after the loop, behind a jump taken
            // once per loop exit.
            #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, reason = "i < MAX_BLOCK")]
            let pass = i as i32 + 1;
            if !b.early[i] {
                dynasm!(a ; .arch x64 ; lea r11, [r11 - pass]);
            }
            jcc_to(a, cc, own.taken);
            dynasm!(a ; .arch x64 ; lea r11, [r11 + pass]);
        }
        Kind::Jcc(target, cc) if i + 1 < c.len() => {
            // A side exit: the taken arm (out of line) gives back the instructions after the
            // JCC and chains; the block goes on.
            let side = a.new_dynamic_label();
            jcc_to(a, cc, side);
            #[allow(clippy::cast_possible_truncation, reason = "at most MAX_BLOCK instructions")]
            let after = (c.len() - i - 1) as u32;
            out.sides.push((side, target, after));
        }
        Kind::Jcc(target, cc) if target == start => {
            // The loop back goes straight to the inner entry.
            jcc_to(a, cc, own.inner);
            chain(a, cand.next, mem_size, own, links);
            out.ended = true;
        }
        Kind::Jcc(target, cc) => {
            // j<!cc> over a rel32 jmp to the taken arm; each arm chains.
            let taken = a.new_dynamic_label();
            a.extend([0x70 | (cc ^ 1), 5].iter());
            dynasm!(a ; .arch x64 ; jmp =>taken);
            chain(a, cand.next, mem_size, own, links);
            dynasm!(a ; .arch x64 ; =>taken);
            chain(a, target, mem_size, own, links);
            out.ended = true;
        }
    }
    Some(())
}

/// The branches of failed checks to their exits, which lie out of line beyond the reach of
/// `jrcxz` (rel8): each goes to a trampoline (`jmp rel32` to the exit) in an island within
/// reach. So that a check that passes falls through (a taken branch per check was as costly
/// as the rest of matmul's loop), the branch is taken only on failure. Islands go where
/// nothing falls through (after a block's last exit, after a loop's back jump) or, when a
/// branch would otherwise lose reach, behind a short jump.
#[derive(Default, Clone)]
struct Islands {
    /// Trampolines to emit: (trampoline, exit).
    pending: Vec<(DynamicLabel, DynamicLabel)>,
    /// End of the first pending `jrcxz`.
    first: Option<usize>,
    /// A trampoline before the inner entry (trampoline, exit, its offset), reached backwards.
    back: Option<(DynamicLabel, DynamicLabel, usize)>,
}

impl Islands {
    /// `jrcxz` (or, with `ecx`, `jecxz`: only the low dword counts) to the exit `stop`,
    /// through a trampoline.
    fn branch(&mut self, a: &mut Asm, stop: DynamicLabel, ecx: bool) {
        if ecx {
            // The address-size prefix makes `jrcxz` test ECX. It changes no length (rel8
            // stays rel8), so the reach below, counted from the end of the jump, is the same.
            a.push(0x67);
        }
        if let Some((tramp, exit, at)) = self.back {
            // rel8 reaches 128 bytes back from the end of the 2-byte `jrcxz`.
            if exit == stop && a.offset().0 + 2 <= at + 128 {
                dynasm!(a ; .arch x64 ; jrcxz =>tramp);
                return;
            }
        }
        let tramp = match self.pending.last() {
            Some(&(t, s)) if s == stop => t,
            _ => {
                let t = a.new_dynamic_label();
                self.pending.push((t, stop));
                t
            }
        };
        dynasm!(a ; .arch x64 ; jrcxz =>tramp);
        self.first.get_or_insert(a.offset().0);
    }

    /// Before code that `emit` would produce: emits the pending trampolines first (behind a
    /// jump) unless they would still be within reach after it. Later branches lie at least
    /// a check (more than a trampoline's 5 bytes) after the first, so its reach bounds all.
    fn reserve(&mut self, a: &mut Asm, emit: impl FnOnce(&mut Asm, &mut Islands)) {
        let Some(first) = self.first else { return };
        let mut scratch = Asm::new_with_capacity(0, 256, 0, 1, 8, 0, 8);
        // The scratch assembler's offsets start at 0: no backward trampoline there (the
        // size measured can only be larger).
        let mut copy = Islands { back: None, ..self.clone() };
        emit(&mut scratch, &mut copy);
        let size = scratch.offset().0;
        // The first trampoline follows a 2-byte jump; rel8 reaches 127 bytes forward. An island
        // of more than 24 trampolines would put the jump over it out of its own rel8 reach.
        if a.offset().0 + size + 2 - first > 127 || self.pending.len() > 20 {
            self.flush(a, true);
        }
    }

    /// Emits the pending trampolines here, behind a jump over them when code falls through.
    fn flush(&mut self, a: &mut Asm, jump_over: bool) {
        if self.pending.is_empty() {
            return;
        }
        if jump_over {
            dynasm!(a ; .arch x64 ; jmp BYTE >over);
        }
        for (tramp, stop) in self.pending.drain(..) {
            dynasm!(a ; .arch x64 ; =>tramp ; jmp =>stop);
        }
        if jump_over {
            dynasm!(a ; .arch x64 ; over:);
        }
        self.first = None;
    }
}

fn enc2(code: Code, x: Register, y: Register) -> Option<Bytes> {
    encode(&Instruction::with2(code, x, y).ok()?)
}

/// The fixup's operand as a 32-bit source of `code` (`r32, r/m32`) into `to`.
fn fix_src(code: Code, to: Register, f: Fixup) -> Option<Bytes> {
    match f.dst {
        Some(r) => enc2(code, to, r),
        None => {
            encode(&Instruction::with2(code, to, MemoryOperand::with_base_index(Register::RBP, Register::R8)).ok()?)
        }
    }
}

/// Before the instruction: SHR keeps its original operand (in rcx for memory, r8 otherwise).
fn fix_before(a: &mut Asm, f: Fixup) -> Option<()> {
    if f.op == FixOp::Shr {
        let to = if f.dst.is_some() { Register::R8D } else { Register::ECX };
        a.extend(fix_src(Code::Mov_r32_rm32, to, f)?.iter());
    }
    Some(())
}

/// After the instruction: replaces the host's undefined flags by the interpreter's values
/// (`pushfq`, edit the saved image, `popfq`).
fn fix_after(a: &mut Asm, f: Fixup) -> Option<()> {
    dynasm!(a ; .arch x64 ; pushfq);
    match f.op {
        FixOp::Shr => {
            if f.dst.is_some() {
                dynasm!(a ; .arch x64 ; shr r8d, 31 ; shl r8d, 11 ; and QWORD [rsp], -0x811 ; or [rsp], r8);
            } else {
                dynasm!(a ; .arch x64 ; shr ecx, 31 ; shl ecx, 11 ; and QWORD [rsp], -0x811 ; or [rsp], rcx);
            }
        }
        FixOp::Shl => {
            a.extend(fix_src(Code::Mov_r32_rm32, Register::ECX, f)?.iter());
            dynasm!(a
                ; .arch x64
                ; shr ecx, 31
                ; xor ecx, DWORD [rsp]
                ; and ecx, 1
                ; shl ecx, 11
                ; and QWORD [rsp], -0x811
                ; or [rsp], rcx
            );
        }
        FixOp::Sar => dynasm!(a ; .arch x64 ; and QWORD [rsp], -0x811),
        FixOp::Rol => {
            a.extend(fix_src(Code::Mov_r32_rm32, Register::ECX, f)?.iter());
            dynasm!(a ; .arch x64 ; shr ecx, 31);
            a.extend(fix_src(Code::Xor_r32_rm32, Register::ECX, f)?.iter());
            dynasm!(a ; .arch x64 ; and ecx, 1 ; shl ecx, 11 ; and QWORD [rsp], -0x801 ; or [rsp], rcx);
        }
        FixOp::Ror => {
            a.extend(fix_src(Code::Mov_r32_rm32, Register::ECX, f)?.iter());
            dynasm!(a
                ; .arch x64
                ; shr ecx, 30
                ; add ecx, 1
                ; shr ecx, 1
                ; and ecx, 1
                ; shl ecx, 11
                ; and QWORD [rsp], -0x801
                ; or [rsp], rcx
            );
        }
        FixOp::Mul => {
            let low = f.dst?;
            let code = match low.size() {
                1 => Code::Test_rm8_r8,
                2 => Code::Test_rm16_r16,
                _ => Code::Test_rm32_r32,
            };
            a.extend(enc2(code, low, low)?.iter());
            dynasm!(a
                ; .arch x64
                ; pushfq
                ; pop rcx
                ; and ecx, 0xC4
                ; and QWORD [rsp], -0xD5
                ; or [rsp], rcx
            );
        }
    }
    dynasm!(a ; .arch x64 ; popfq);
    Some(())
}

/// `rep stos` of `1 << shift`-byte elements, run by the host's own `rep stos` when the whole
/// range lies inside memory (of `mem_size` bytes) on pages without cached code, DF is clear
/// and the budget covers every iteration; otherwise it exits (`stop`) before the instruction
/// and the interpreter runs it (partial progress, faults, DF set, stores to code). ECX = 0
/// retires once and changes nothing. Each iteration retires as one instruction: the block
/// counted one, the other ECX - 1 are taken from r11 here. Saves the flags around its own
/// comparisons (`pushfq`/`popfq`: cheaper than the exit to the runtime it replaces).
fn rep_stos(a: &mut Asm, shift: u8, mem_size: u32, stop: DynamicLabel, table_in_r10: bool) -> Option<()> {
    let fail = a.new_dynamic_label();
    let nothing = a.new_dynamic_label();
    dynasm!(a ; .arch x64 ; pushfq);
    if table_in_r10 {
        // The code-page table in r10 for the range's look, the chaining table back after.
        dynasm!(a
            ; .arch x64
            ; push r10
            ; mov r10, QWORD [rdi + ctx::CODE_PAGES]
        );
    }
    // The exclusive end must not pass mem_size (no wrap at 4 GiB either: mem_size < 2^32).
    dynasm!(a
        ; .arch x64
        ; mov ecx, esi
        ; test ecx, ecx
        ; jz =>nothing
        ; cmp DWORD [rdi + ctx::DF], 0
        ; jne =>fail
        ; lea r8, [rcx - 1]
        // r11 holds the budget left plus `ctx::BUDGET_BIAS` (bit 32).
        ; bts r8, 32
        ; cmp r8, r11
        ; ja =>fail
        ; shl rcx, shift as i8
        ; lea r8, [r15 + rcx]
        ; mov ecx, mem_size as i32
        ; cmp r8, rcx
        ; ja =>fail
        // Pages first ..= last of the range (a flag also covers the next page: conservative).
        ; mov rcx, r15
        ; shr rcx, 12
        ; lea r8, [r8 - 1]
        ; shr r8, 12
        ; loop_pages:
        ; cmp BYTE [r10 + rcx], 0
        ; jne =>fail
        ; inc rcx
        ; cmp rcx, r8
        ; jbe <loop_pages
        ; mov ecx, esi
        ; lea r8, [rcx - 1]
        ; sub r11, r8
        ; push rdi
        ; lea rdi, [rbp + r15]
    );
    match shift {
        0 => dynasm!(a ; .arch x64 ; rep stosb),
        1 => dynasm!(a ; .arch x64 ; rep stosw),
        _ => dynasm!(a ; .arch x64 ; rep stosd),
    }
    dynasm!(a
        ; .arch x64
        ; sub rdi, rbp
        ; mov r15d, edi
        ; pop rdi
        ; mov esi, 0
        ; jmp >done
        ; =>fail
    );
    if table_in_r10 {
        dynasm!(a ; .arch x64 ; pop r10);
    }
    dynasm!(a
        ; .arch x64
        ; popfq
        ; jmp =>stop
        ; =>nothing
        ; done:
    );
    if table_in_r10 {
        dynasm!(a ; .arch x64 ; pop r10);
    }
    dynasm!(a ; .arch x64 ; popfq);
    Some(())
}

/// `j<cc> label` (rel32), `cc` in the encoding's order.
fn jcc_to(a: &mut Asm, cc: u8, label: DynamicLabel) {
    match cc & 15 {
        0x0 => dynasm!(a ; .arch x64 ; jo =>label),
        0x1 => dynasm!(a ; .arch x64 ; jno =>label),
        0x2 => dynasm!(a ; .arch x64 ; jb =>label),
        0x3 => dynasm!(a ; .arch x64 ; jae =>label),
        0x4 => dynasm!(a ; .arch x64 ; je =>label),
        0x5 => dynasm!(a ; .arch x64 ; jne =>label),
        0x6 => dynasm!(a ; .arch x64 ; jbe =>label),
        0x7 => dynasm!(a ; .arch x64 ; ja =>label),
        0x8 => dynasm!(a ; .arch x64 ; js =>label),
        0x9 => dynasm!(a ; .arch x64 ; jns =>label),
        0xA => dynasm!(a ; .arch x64 ; jp =>label),
        0xB => dynasm!(a ; .arch x64 ; jnp =>label),
        0xC => dynasm!(a ; .arch x64 ; jl =>label),
        0xD => dynasm!(a ; .arch x64 ; jge =>label),
        0xE => dynasm!(a ; .arch x64 ; jle =>label),
        _ => dynasm!(a ; .arch x64 ; jg =>label),
    }
}

/// The Ctx offset where instruction `index` saves an operand for a deferred fixup.
fn saved_slot(index: usize) -> i32 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, reason = "index < MAX_BLOCK")]
    let at = ctx::SAVED + 4 * index as i32;
    at
}

/// Whether some exit applies the deferred fixup of instruction `index`.
fn deferred_any(deferred: &[Vec<Deferred>], index: usize) -> bool {
    deferred.iter().flatten().any(|d| d.index == index)
}

/// Saves SHR's original operand in the Ctx, for its deferred fixup.
fn save_original(a: &mut Asm, f: Fixup, index: usize) -> Option<()> {
    let slot = MemoryOperand::with_base_displ(Register::RDI, i64::from(saved_slot(index)));
    let from = match f.dst {
        Some(r) => r,
        None => {
            a.extend(fix_src(Code::Mov_r32_rm32, Register::ECX, f)?.iter());
            Register::ECX
        }
    };
    a.extend(encode(&Instruction::with2(Code::Mov_rm32_r32, slot, from).ok()?)?.iter());
    Some(())
}

/// `lea r8d, [address]` of a merged check, with host registers.
fn check_lea(check: &Check) -> Option<Bytes> {
    let base = check.base.map_or(Register::None, |r| R64[r]);
    let index = check.index.map_or(Register::None, |r| R64[r]);
    let displ_size = if base == Register::None { 4 } else { 1 };
    let mem = MemoryOperand::new(base, index, check.scale, i64::from(check.disp), displ_size, false, Register::None);
    encode(&Instruction::with2(Code::Lea_r32_m, Register::R8D, mem).ok()?)
}
