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
//! | rdi | the `Ctx` pointer |
//! | rbp | host address of guest address 0 |
//! | r9 | 2^32 - memory size (bounds checks) |
//! | r10 | the code-page table (one byte per page) |
//! | r11 | 12, the page shift (for `shrx`) |
//! | r8 | guest address of the current access (zero-extended) |
//! | rcx | scratch of the flag-free checks (`jrcxz`) |
//!
//! Every 32-bit guest register is kept zero-extended in its host register.

use super::ctx;
use denali_engine::GuestMemory;
use dynasmrt::x64::X64Relocation;
use dynasmrt::{DynasmApi, DynasmLabelApi, VecAssembler, dynasm};
use iced_x86::{Code, ConditionCode, Encoder, Instruction, MemoryOperand, Mnemonic, OpKind, Register, RflagsBits};

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
}

impl Kind {
    fn ends_block(self) -> bool {
        matches!(self, Kind::Jmp(_) | Kind::Jcc(..) | Kind::Call(_) | Kind::Ret(_))
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
        )
    }
}

struct Cand {
    eip: u32,
    next: u32,
    kind: Kind,
    /// Re-encoded host bytes of a `Generic` instruction.
    body: Vec<u8>,
    /// `lea r8d, [address]` of a `Generic` instruction that accesses memory.
    lea: Vec<u8>,
    read: u32,
    modified: u32,
    /// Status flags this instruction leaves undefined and whose host value may differ from the
    /// interpreter's documented choice: they must be dead after it.
    undefined: u32,
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

/// The 64-bit host register for a guest address register.
fn map_addr(r: Register) -> Option<Register> {
    if r == Register::None {
        return Some(Register::None);
    }
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
    guest_num(r).map(|n| R64[n])
}

fn encode(ins: &Instruction) -> Option<Vec<u8>> {
    let mut enc = Encoder::new(64);
    enc.encode(ins, 0).ok()?;
    Some(enc.take_buffer())
}

/// `lea r8d, [guest address]` with host registers: the guest's effective address modulo 2^32.
fn address_lea(ins: &Instruction) -> Option<Vec<u8>> {
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
            | Cmovo
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
fn classify(ins: &Instruction) -> Option<(Kind, Vec<u8>, Vec<u8>)> {
    if ins.has_lock_prefix() || ins.has_rep_prefix() || ins.has_repne_prefix() {
        return None;
    }
    let m = ins.mnemonic();
    match ins.code() {
        Code::Push_r32 => return Some((Kind::PushReg(HOST[guest_num(ins.op0_register())?]), Vec::new(), Vec::new())),
        Code::Pushd_imm8 | Code::Pushd_imm32 => {
            #[allow(clippy::cast_possible_truncation, reason = "the pushed dword (imm8 sign-extended)")]
            let v = ins.immediate(0) as u32;
            return Some((Kind::PushImm(v), Vec::new(), Vec::new()));
        }
        Code::Pop_r32 => return Some((Kind::PopReg(HOST[guest_num(ins.op0_register())?]), Vec::new(), Vec::new())),
        Code::Jmp_rel8_32 | Code::Jmp_rel32_32 => return Some((Kind::Jmp(near_target(ins)?), Vec::new(), Vec::new())),
        Code::Call_rel32_32 => return Some((Kind::Call(near_target(ins)?), Vec::new(), Vec::new())),
        Code::Retnd => return Some((Kind::Ret(0), Vec::new(), Vec::new())),
        Code::Retnd_imm16 => return Some((Kind::Ret(ins.immediate16()), Vec::new(), Vec::new())),
        Code::Nopd | Code::Nopw | Code::Nop_rm32 | Code::Nop_rm16 => return Some((Kind::Nop, Vec::new(), Vec::new())),
        _ => {}
    }
    if ins.is_jcc_short_or_near() {
        let cc = ins.condition_code();
        if cc == ConditionCode::None {
            return None;
        }
        #[allow(clippy::cast_possible_truncation, reason = "iced's condition codes follow the x86 encoding order")]
        let nibble = (cc as u32 - 1) as u8;
        return Some((Kind::Jcc(near_target(ins)?, nibble), Vec::new(), Vec::new()));
    }
    if !generic_mnemonic(m) {
        return None;
    }
    let mut host = *ins;
    let mut mem = None;
    for i in 0..ins.op_count() {
        match ins.op_kind(i) {
            OpKind::Register => host.set_op_register(i, map_reg(ins.op_register(i))?),
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
                    let writes = i == 0 && !matches!(m, Mnemonic::Cmp | Mnemonic::Test);
                    mem = Some((size, writes));
                    host.set_memory_base(Register::RBP);
                    host.set_memory_index(Register::R8);
                    host.set_memory_index_scale(1);
                    host.set_memory_displacement64(0);
                    host.set_memory_displ_size(1);
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
        // Only counts that change something: a zero count writes no flags, which the flag
        // analysis would get wrong; CL counts would need host CL.
        if ins.op1_kind() != OpKind::Immediate8 || ins.immediate8() & 31 == 0 {
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
    let lea = if mem.is_some() { address_lea(ins)? } else { Vec::new() };
    Some((Kind::Generic { mem }, encode(&host)?, lea))
}

/// Decodes the candidate instructions of the block at `start` (inside memory).
fn candidates(start: u32, mem: &GuestMemory) -> Vec<Cand> {
    let mut out = Vec::new();
    let mut ip = start;
    while out.len() < MAX_BLOCK {
        let Ok(window) = mem.fetch_window(ip, 15) else { break };
        let ins = denali_isa::validate::decoder(window, ip).decode();
        if ins.code() == Code::INVALID || denali_isa::validate::check(&ins).is_err() {
            break;
        }
        let Some((kind, body, lea)) = classify(&ins) else { break };
        #[allow(clippy::cast_possible_truncation, reason = "at most 15")]
        let next = ip.wrapping_add(ins.len() as u32);
        let logical = matches!(ins.mnemonic(), Mnemonic::And | Mnemonic::Or | Mnemonic::Xor | Mnemonic::Test);
        let mut undefined = ins.rflags_undefined() & STATUS;
        if logical {
            // AF after a logical operation: x86-64 hosts clear it, as the interpreter does.
            undefined &= !RflagsBits::AF;
        }
        out.push(Cand {
            eip: ip,
            next,
            kind,
            body,
            lea,
            read: ins.rflags_read() & STATUS,
            modified: ins.rflags_modified() & STATUS,
            undefined,
        });
        if kind.ends_block() || next < ip {
            break;
        }
        ip = next;
    }
    out
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
    let mut u = first.undefined;
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

/// Whether the guest flags must be loaded into the host flags at block entry, and for each
/// instruction whether the host flags hold the guest flags before it runs.
fn flag_plan(c: &[Cand]) -> (bool, Vec<bool>) {
    let mut written = 0;
    let mut load = false;
    let mut valid_before = Vec::with_capacity(c.len() + 1);
    for cand in c {
        if cand.kind.may_exit_before() && written != 0 && written != STATUS {
            load = true;
        }
        if cand.read & !written != 0 {
            load = true;
        }
        valid_before.push(written == STATUS);
        written |= cand.modified;
    }
    if written != 0 && written != STATUS {
        load = true;
    }
    valid_before.push(written == STATUS);
    if load {
        valid_before.iter_mut().for_each(|v| *v = true);
    }
    (load, valid_before)
}

type Asm = VecAssembler<X64Relocation>;

#[allow(clippy::cast_possible_wrap, reason = "guest addresses and counts as 32-bit immediates")]
fn set_exit(a: &mut Asm, eip: u32, count: u32) {
    let (e, n) = (eip as i32, count as i32);
    dynasm!(a
        ; .arch x64
        ; mov DWORD [rdi + ctx::EIP], e
        ; mov DWORD [rdi + ctx::COUNT], n
    );
}

fn jmp_exit(a: &mut Asm, flags: bool) {
    if flags {
        dynasm!(a ; .arch x64 ; jmp ->exit_flags);
    } else {
        dynasm!(a ; .arch x64 ; jmp ->exit_noflags);
    }
}

/// Leaves the block with the state before instruction `index` (at `eip`) unless the access
/// `r8 .. r8 + size` lies inside memory, and, for a store, touches no page holding cached code.
/// Touches no host flag.
fn emit_checks(a: &mut Asm, size: u32, write: bool, eip: u32, index: u32, flags: bool) {
    let last = (size - 1) as i32;
    dynasm!(a
        ; .arch x64
        ; lea rcx, [r8 + r9 + last]
        ; rorx rcx, rcx, 32
        ; mov ecx, ecx
        ; jrcxz >inside
    );
    set_exit(a, eip, index);
    jmp_exit(a, flags);
    dynasm!(a ; .arch x64 ; inside:);
    if write {
        let ends = if size > 1 { vec![0, last] } else { vec![0] };
        for off in ends {
            dynasm!(a
                ; .arch x64
                ; lea ecx, [r8 + off]
                ; shrx ecx, ecx, r11d
                ; movzx ecx, BYTE [r10 + rcx]
                ; jrcxz >data
            );
            set_exit(a, eip, index);
            jmp_exit(a, flags);
            dynasm!(a ; .arch x64 ; data:);
        }
    }
}

/// Translates the block at `start`, which lies inside memory.
pub(crate) fn translate(start: u32, mem: &GuestMemory) -> Translation {
    let mut c = candidates(start, mem);
    let keep = safe_prefix(&c);
    c.truncate(keep);
    if c.is_empty() {
        return Translation { code: Vec::new(), count: 0, last_byte: start };
    }
    let (load, valid) = flag_plan(&c);
    let mut a = Asm::new(0);
    dynasm!(a
        ; .arch x64
        ; push rbx
        ; push rbp
        ; push r12
        ; push r13
        ; push r14
        ; push r15
        ; mov rbp, QWORD [rdi + ctx::MEM_BASE]
        ; mov r9, QWORD [rdi + ctx::LIMIT]
        ; mov r10, QWORD [rdi + ctx::CODE_PAGES]
        ; mov r11d, 12
        ; mov eax, DWORD [rdi]
        ; mov esi, DWORD [rdi + 4]
        ; mov edx, DWORD [rdi + 8]
        ; mov ebx, DWORD [rdi + 12]
        ; mov r12d, DWORD [rdi + 16]
        ; mov r13d, DWORD [rdi + 20]
        ; mov r14d, DWORD [rdi + 24]
        ; mov r15d, DWORD [rdi + 28]
    );
    if load {
        dynasm!(a ; .arch x64 ; push QWORD [rdi + ctx::FLAGS_IN] ; popfq);
    }
    #[allow(clippy::cast_possible_truncation, reason = "at most MAX_BLOCK instructions")]
    let n = c.len() as u32;
    let mut ended = false;
    for (i, cand) in c.iter().enumerate() {
        #[allow(clippy::cast_possible_truncation, reason = "at most MAX_BLOCK instructions")]
        let index = i as u32;
        let flags = valid[i];
        let flags_after = valid[i + 1];
        match cand.kind {
            Kind::Nop => {}
            Kind::Generic { mem: None } => a.extend(cand.body.iter()),
            Kind::Generic { mem: Some((size, write)) } => {
                a.extend(cand.lea.iter());
                emit_checks(&mut a, size, write, cand.eip, index, flags);
                a.extend(cand.body.iter());
            }
            Kind::PushReg(r) => {
                push_prologue(&mut a, cand.eip, index, flags);
                dynasm!(a ; .arch x64 ; mov DWORD [rbp + r8], Rd(r) ; mov r12d, r8d);
            }
            Kind::PushImm(v) => {
                push_prologue(&mut a, cand.eip, index, flags);
                #[allow(clippy::cast_possible_wrap, reason = "the dword's bits")]
                let v = v as i32;
                dynasm!(a ; .arch x64 ; mov DWORD [rbp + r8], v ; mov r12d, r8d);
            }
            Kind::PopReg(r) => {
                dynasm!(a ; .arch x64 ; mov r8d, r12d);
                emit_checks(&mut a, 4, false, cand.eip, index, flags);
                if r == 12 {
                    dynasm!(a ; .arch x64 ; mov r12d, DWORD [rbp + r8]);
                } else {
                    dynasm!(a ; .arch x64 ; mov Rd(r), DWORD [rbp + r8] ; lea r12d, [r12 + 4]);
                }
            }
            Kind::Jmp(target) => {
                set_exit(&mut a, target, n);
                jmp_exit(&mut a, flags_after);
                ended = true;
            }
            Kind::Call(target) => {
                push_prologue(&mut a, cand.eip, index, flags);
                #[allow(clippy::cast_possible_wrap, reason = "the return address's bits")]
                let ret = cand.next as i32;
                dynasm!(a ; .arch x64 ; mov DWORD [rbp + r8], ret ; mov r12d, r8d);
                set_exit(&mut a, target, n);
                jmp_exit(&mut a, flags_after);
                ended = true;
            }
            Kind::Ret(pop) => {
                let adjust = 4 + i32::from(pop);
                dynasm!(a ; .arch x64 ; mov r8d, r12d);
                emit_checks(&mut a, 4, false, cand.eip, index, flags);
                #[allow(clippy::cast_possible_wrap, reason = "a count as an immediate")]
                let n32 = n as i32;
                dynasm!(a
                    ; .arch x64
                    ; mov ecx, DWORD [rbp + r8]
                    ; lea r12d, [r12 + adjust]
                    ; mov DWORD [rdi + ctx::EIP], ecx
                    ; mov DWORD [rdi + ctx::COUNT], n32
                );
                jmp_exit(&mut a, flags_after);
                ended = true;
            }
            Kind::Jcc(target, cc) => {
                // mov [rdi+EIP], target; j<cc> +7; mov [rdi+EIP], next (7 bytes each)
                set_exit(&mut a, target, n);
                a.extend([0x70 | cc, 7].iter());
                let mut mov = vec![0xC7, 0x47];
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a small positive offset")]
                mov.push(ctx::EIP as u8);
                mov.extend_from_slice(&cand.next.to_le_bytes());
                a.extend(mov.iter());
                jmp_exit(&mut a, flags_after);
                ended = true;
            }
        }
    }
    if !ended {
        set_exit(&mut a, c[c.len() - 1].next, n);
        jmp_exit(&mut a, valid[c.len()]);
    }
    dynasm!(a
        ; .arch x64
        ; ->exit_flags:
        ; pushfq
        ; pop rcx
        ; mov QWORD [rdi + ctx::FLAGS_OUT], rcx
        ; mov DWORD [rdi + ctx::FLAGS_SAVED], 1
        ; jmp >store
        ; ->exit_noflags:
        ; mov DWORD [rdi + ctx::FLAGS_SAVED], 0
        ; store:
        ; mov DWORD [rdi], eax
        ; mov DWORD [rdi + 4], esi
        ; mov DWORD [rdi + 8], edx
        ; mov DWORD [rdi + 12], ebx
        ; mov DWORD [rdi + 16], r12d
        ; mov DWORD [rdi + 20], r13d
        ; mov DWORD [rdi + 24], r14d
        ; mov DWORD [rdi + 28], r15d
        ; pop r15
        ; pop r14
        ; pop r13
        ; pop r12
        ; pop rbp
        ; pop rbx
        ; ret
    );
    let last_byte = c[c.len() - 1].next.wrapping_sub(1);
    match a.finalize() {
        Ok(code) => Translation { code, count: n, last_byte },
        Err(_) => Translation { code: Vec::new(), count: 0, last_byte: start },
    }
}

/// `r8 = ESP - 4`, checked for a 4-byte store.
fn push_prologue(a: &mut Asm, eip: u32, index: u32, flags: bool) {
    dynasm!(a ; .arch x64 ; lea r8d, [r12 - 4]);
    emit_checks(a, 4, true, eip, index, flags);
}
