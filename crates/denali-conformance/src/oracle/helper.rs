//! The helper program: a tiny static i386 Linux executable, assembled here with iced-x86, that
//! runs cases on the host CPU for the oracle. It talks to the oracle over stdin/stdout with the
//! protocol of `protocol.rs` and uses only `int 0x80` system calls.
//!
//! How it works:
//!
//! * At start it unmaps everything else a 32-bit process has (its original stack, the vDSO),
//!   so that an access anywhere outside the case window and the helper's own pages faults, maps
//!   the case window `FIRST_CASE_ADDR..MEMORY_SIZE` read/write but *not* executable, installs
//!   one handler for SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV and SIGALRM on an alternate
//!   stack, and writes the hello words.
//! * For each case it fills the page(s) holding the code with INT3, writes the regions and the
//!   code, makes those pages executable, arms a one-shot `ITIMER_REAL`, loads every register
//!   and EFLAGS from the request header (`popad; popfd; mov esp, [..]; jmp [..]`) and lets the
//!   code run.
//! * Every way back is a signal. Leaving the code lands on an INT3 of the code page (SIGTRAP)
//!   or, for a jump anywhere else, on a non-executable page (SIGSEGV for an instruction
//!   fetch). The handler copies the interrupted context into the result block and rewrites
//!   the context so that `rt_sigreturn` resumes at `after_case` on the helper's own stack with
//!   its own segment registers and clean EFLAGS; the signal mask comes back from the context,
//!   so no signal stays blocked.
//! * `after_case` disarms the timer, writes the result and the regions' final bytes, and maps
//!   the whole window afresh (zero-filled, not executable) for the next case.
//!
//! Two traps are not results: the single-step trap a case gets after setting TF with POPFD,
//! and the alignment-check fault after it sets AC. Neither flag is guest state in Denali, so
//! the handler clears the flag and resumes the case.
//!
//! The handler runs with every signal blocked (`sa_mask` full, no `SA_NODEFER`): a timer
//! expiring while it handles a fault must not overwrite that fault's result. A timer signal
//! that arrives when no case runs is ignored.

use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, IcedError};

use super::elf::{self, HEADERS_SIZE};
use super::protocol::{
    FAIL_MAGIC, HEADER_POPAD, HEADER_WORDS, HELLO_MAGIC, MAX_REGIONS, REQUEST_MAGIC, RESULT_MAGIC, VERSION,
};
use crate::case::{FIRST_CASE_ADDR, MEMORY_SIZE};

/// Where the helper lives. Cases must not touch `HELPER_BASE..HELPER_END`: natively those
/// addresses are mapped (an access there would not fault as it should, and could corrupt the
/// helper). The address is deliberately not a round number a generator might pick.
pub const HELPER_BASE: u32 = 0x5F3A_0000;

// The helper's memory, after the page that holds the ELF headers and the code.
const VARS: u32 = HELPER_BASE + 0x1000;
/// The request header, which doubles as the register block loaded before a case.
const HDR: u32 = VARS;
/// The result block written back.
const RES: u32 = VARS + 0x100;
/// `struct itimerval` arming the case timeout, and an all-zero one disarming it.
const ITV: u32 = VARS + 0x140;
const ITV_ZERO: u32 = VARS + 0x150;
const IN_POS: u32 = VARS + 0x160;
const IN_END: u32 = VARS + 0x164;
const OUT_LEN: u32 = VARS + 0x168;
/// Non-zero while a case runs.
const RUNNING: u32 = VARS + 0x16C;
/// The pages made executable for the current case: start and length.
const CODE_PAGES: u32 = VARS + 0x170;
const CODE_PAGES_LEN: u32 = VARS + 0x174;
/// The helper's segment registers in `gregs` order: GS FS ES DS, then CS and SS.
const SEGS: u32 = VARS + 0x180;
/// `struct sigaction` for `rt_sigaction` (handler, flags, restorer, 64-bit mask).
const SIGACT: u32 = VARS + 0x1A0;
/// `stack_t` for `sigaltstack`.
const ALTSTACK_T: u32 = VARS + 0x1C0;
/// Small scratch block for the hello or failure words.
const HELLO: u32 = VARS + 0x1D0;
/// The current case's regions: `MAX_REGIONS` pairs (addr, len).
const REGTAB: u32 = VARS + 0x200;
// The helper's stack: HELPER_BASE + 0x2000 up to STACK_TOP.
const STACK_TOP: u32 = HELPER_BASE + 0x4000;
const ALT_STACK: u32 = HELPER_BASE + 0x4000;
/// Large enough for the biggest signal frame with AVX-512 (or AMX) state.
const ALT_STACK_SIZE: u32 = 0x8000;
const IN_BUF: u32 = ALT_STACK + ALT_STACK_SIZE;
const IN_SIZE: u32 = 0x4000;
const OUT_BUF: u32 = IN_BUF + IN_SIZE;
const OUT_SIZE: u32 = 0x4000;
/// End of the helper's memory.
pub const HELPER_END: u32 = OUT_BUF + OUT_SIZE;

/// The top of a 32-bit process's address space under a 64-bit kernel (`IA32_PAGE_OFFSET`).
const TASK_TOP: u32 = 0xFFFF_E000;

const SYS_EXIT: u32 = 1;
const SYS_READ: u32 = 3;
const SYS_WRITE: u32 = 4;
const SYS_MUNMAP: u32 = 91;
const SYS_SETITIMER: u32 = 104;
const SYS_MPROTECT: u32 = 125;
const SYS_RT_SIGRETURN: u32 = 173;
const SYS_RT_SIGACTION: u32 = 174;
const SYS_SIGALTSTACK: u32 = 186;
const SYS_MMAP2: u32 = 192;

const PROT_RW: u32 = 3;
const PROT_RWX: u32 = 7;
const MAP_PRIVATE_FIXED_ANON: u32 = 0x02 | 0x10 | 0x20;
const SA_SIGINFO: u32 = 0x4;
const SA_RESTART: u32 = 0x1000_0000;
const SA_ONSTACK: u32 = 0x0800_0000;
const SA_RESTORER: u32 = 0x0400_0000;

pub const SIGILL: u32 = 4;
pub const SIGTRAP: u32 = 5;
pub const SIGBUS: u32 = 7;
pub const SIGFPE: u32 = 8;
pub const SIGSEGV: u32 = 11;
pub const SIGALRM: u32 = 14;

/// x86 trap numbers as the kernel reports them in `gregs[TRAPNO]`.
pub const TRAP_DIVIDE: u32 = 0;
pub const TRAP_DEBUG: u32 = 1;
pub const TRAP_BREAKPOINT: u32 = 3;
pub const TRAP_INVALID_OPCODE: u32 = 6;
pub const TRAP_STACK: u32 = 12;
pub const TRAP_GP: u32 = 13;
pub const TRAP_PAGE_FAULT: u32 = 14;
pub const TRAP_ALIGNMENT: u32 = 17;
/// Page-fault error code bit: the fault was an instruction fetch.
pub const PF_INSTR: u32 = 0x10;

const EFLAGS_TF: u32 = 0x100;
const EFLAGS_AC: u32 = 0x4_0000;

/// Byte offset of `uc_mcontext.gregs` in the i386 `ucontext`.
const UC_GREGS: i32 = 20;
/// Byte offset of `si_addr` in `siginfo`.
const SI_ADDR: i32 = 12;
/// `gregs` indices.
const REG_EDI: i32 = 4;
const REG_ESP: i32 = 7;
const REG_TRAPNO: i32 = 12;
const REG_ERR: i32 = 13;
const REG_EIP: i32 = 14;
const REG_CS: i32 = 15;
const REG_EFL: i32 = 16;
const REG_SS: i32 = 18;

/// Exit statuses of the helper when something goes wrong after the handshake.
pub const EXIT_EOF: i32 = 0;
pub const EXIT_IO: i32 = 2;
pub const EXIT_PROTOCOL: i32 = 4;
/// `EXIT_SIGNAL + n`: signal `n` arrived while the helper itself was running.
pub const EXIT_SIGNAL: i32 = 64;

/// Set-up steps named in a failure message.
pub fn step_name(step: u32) -> &'static str {
    match step {
        1 => "munmap above the helper",
        2 => "munmap below the helper",
        3 => "mmap of the case window",
        4 => "sigaltstack",
        5 => "rt_sigaction",
        6 => "mprotect of the code page",
        _ => "unknown step",
    }
}

/// The helper as an ELF file.
pub fn executable() -> Result<Vec<u8>, String> {
    let code = assemble().map_err(|e| format!("assembling the oracle helper: {e}"))?;
    elf::write(&elf::Image {
        base: HELPER_BASE,
        code: &code,
        memory_size: HELPER_END - HELPER_BASE,
        entry: HELPER_BASE + HEADERS_SIZE,
    })
    .and_then(|file| {
        if file.len() as u32 > VARS - HELPER_BASE {
            Err(format!("oracle helper code ({} bytes) overlaps its variables", file.len()))
        } else {
            Ok(file)
        }
    })
}

fn syscall(a: &mut CodeAssembler, nr: u32) -> Result<(), IcedError> {
    a.mov(eax, nr)?;
    a.int(0x80)
}

/// Assembles the helper. Code addresses that the helper stores as data (the handler, its
/// restorer, `after_case`) come from a first pass with placeholders: the instructions that
/// carry them (`mov r32, imm32`) have the same size whatever the value.
fn assemble() -> Result<Vec<u8>, String> {
    let (_, addrs) = assemble_with([0; 3]).map_err(|e| e.to_string())?;
    let (code, check) = assemble_with(addrs).map_err(|e| e.to_string())?;
    if check != addrs {
        return Err("helper code moved between passes".into());
    }
    Ok(code)
}

/// One pass: `addrs` are the addresses of `handler`, `restorer` and `after_case`; returns the
/// code and where those labels really are.
fn assemble_with(addrs: [u32; 3]) -> Result<(Vec<u8>, [u32; 3]), IcedError> {
    let [handler_addr, restorer_addr, after_case_addr] = addrs;
    let mut a = CodeAssembler::new(32)?;
    let mut main_loop = a.create_label();
    let mut after_case = a.create_label();
    let mut handler = a.create_label();
    let mut restorer = a.create_label();
    let mut read_exact = a.create_label();
    let mut write_out = a.create_label();
    let mut flush = a.create_label();
    let mut reset_window = a.create_label();
    let mut fail = a.create_label();
    let mut exit_eof = a.create_label();
    let mut exit_io = a.create_label();
    let mut exit_protocol = a.create_label();

    // ---- start ----
    a.cld()?;
    a.mov(esp, STACK_TOP)?;
    for (i, seg) in [gs, fs, es, ds].into_iter().enumerate() {
        a.mov(eax, seg)?;
        a.movzx(eax, ax)?;
        a.mov(dword_ptr(SEGS + 4 * i as u32), eax)?;
    }
    a.mov(eax, cs)?;
    a.movzx(eax, ax)?;
    a.mov(dword_ptr(SEGS + 16), eax)?;
    a.mov(eax, ss)?;
    a.movzx(eax, ax)?;
    a.mov(dword_ptr(SEGS + 20), eax)?;

    // Unmap everything but the helper: the original stack and the vDSO above it, anything
    // between the window and the helper (nothing, normally).
    a.mov(ebx, HELPER_END)?;
    a.mov(ecx, TASK_TOP - HELPER_END)?;
    syscall(&mut a, SYS_MUNMAP)?;
    a.mov(ebx, 1u32)?;
    a.test(eax, eax)?;
    a.jnz(fail)?;
    a.mov(ebx, MEMORY_SIZE)?;
    a.mov(ecx, HELPER_BASE - MEMORY_SIZE)?;
    syscall(&mut a, SYS_MUNMAP)?;
    a.mov(ebx, 2u32)?;
    a.test(eax, eax)?;
    a.jnz(fail)?;

    a.call(reset_window)?;

    a.mov(dword_ptr(ALTSTACK_T), ALT_STACK)?;
    a.mov(dword_ptr(ALTSTACK_T + 4), 0u32)?;
    a.mov(dword_ptr(ALTSTACK_T + 8), ALT_STACK_SIZE)?;
    a.mov(ebx, ALTSTACK_T)?;
    a.xor(ecx, ecx)?;
    syscall(&mut a, SYS_SIGALTSTACK)?;
    a.mov(ebx, 4u32)?;
    a.test(eax, eax)?;
    a.jnz(fail)?;

    a.mov(eax, handler_addr)?;
    a.mov(dword_ptr(SIGACT), eax)?;
    a.mov(dword_ptr(SIGACT + 4), SA_SIGINFO | SA_RESTART | SA_ONSTACK | SA_RESTORER)?;
    a.mov(eax, restorer_addr)?;
    a.mov(dword_ptr(SIGACT + 8), eax)?;
    // Every signal blocked while the handler runs (see the module comment).
    a.mov(dword_ptr(SIGACT + 12), 0xFFFF_FFFFu32)?;
    a.mov(dword_ptr(SIGACT + 16), 0xFFFF_FFFFu32)?;
    for sig in [SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV, SIGALRM] {
        a.mov(ebx, sig)?;
        a.mov(ecx, SIGACT)?;
        a.xor(edx, edx)?;
        a.mov(esi, 8u32)?;
        syscall(&mut a, SYS_RT_SIGACTION)?;
        a.mov(ebx, 5u32)?;
        a.test(eax, eax)?;
        a.jnz(fail)?;
    }

    a.mov(dword_ptr(HELLO), HELLO_MAGIC)?;
    a.mov(dword_ptr(HELLO + 4), VERSION)?;
    a.mov(esi, HELLO)?;
    a.mov(ecx, 8u32)?;
    a.call(write_out)?;
    a.call(flush)?;

    // ---- main loop: one case per iteration ----
    a.set_label(&mut main_loop)?;
    a.mov(edi, HDR)?;
    a.mov(ecx, (HEADER_WORDS * 4) as u32)?;
    a.call(read_exact)?;
    a.cmp(dword_ptr(HDR), REQUEST_MAGIC)?;
    a.jne(exit_protocol)?;
    a.cmp(dword_ptr(HDR + 12), MAX_REGIONS as u32)?;
    a.ja(exit_protocol)?;

    // The code pages: [eip & ~0xFFF, (eip + len + 0xFFF) & ~0xFFF), filled with INT3.
    a.mov(edi, dword_ptr(HDR + 4))?;
    a.and(edi, !0xFFFu32)?;
    a.mov(ecx, dword_ptr(HDR + 4))?;
    a.add(ecx, dword_ptr(HDR + 8))?;
    a.add(ecx, 0xFFFu32)?;
    a.and(ecx, !0xFFFu32)?;
    a.sub(ecx, edi)?;
    a.mov(dword_ptr(CODE_PAGES), edi)?;
    a.mov(dword_ptr(CODE_PAGES_LEN), ecx)?;
    a.mov(al, 0xCCu32)?;
    a.rep().stosb()?;

    // Regions: (addr, len) into the table, then the bytes straight into place.
    a.xor(ebp, ebp)?;
    let mut regions_in = a.create_label();
    let mut regions_in_done = a.create_label();
    a.set_label(&mut regions_in)?;
    a.cmp(ebp, dword_ptr(HDR + 12))?;
    a.jae(regions_in_done)?;
    a.lea(edi, dword_ptr(ebp * 8 + REGTAB))?;
    a.mov(ecx, 8u32)?;
    a.call(read_exact)?;
    a.mov(edi, dword_ptr(ebp * 8 + REGTAB))?;
    a.mov(ecx, dword_ptr(ebp * 8 + (REGTAB + 4)))?;
    a.call(read_exact)?;
    a.inc(ebp)?;
    a.jmp(regions_in)?;
    a.set_label(&mut regions_in_done)?;
    a.mov(edi, dword_ptr(HDR + 4))?;
    a.mov(ecx, dword_ptr(HDR + 8))?;
    a.call(read_exact)?;

    a.mov(ebx, dword_ptr(CODE_PAGES))?;
    a.mov(ecx, dword_ptr(CODE_PAGES_LEN))?;
    a.mov(edx, PROT_RWX)?;
    syscall(&mut a, SYS_MPROTECT)?;
    a.mov(ebx, 6u32)?;
    a.test(eax, eax)?;
    a.jnz(fail)?;

    a.mov(eax, dword_ptr(HDR + 16))?;
    a.mov(dword_ptr(ITV + 8), eax)?;
    a.mov(eax, dword_ptr(HDR + 20))?;
    a.mov(dword_ptr(ITV + 12), eax)?;
    a.xor(ebx, ebx)?; // ITIMER_REAL
    a.mov(ecx, ITV)?;
    a.xor(edx, edx)?;
    syscall(&mut a, SYS_SETITIMER)?;

    // Go: every register from the header, ESP last, and a jump through memory so that no
    // register is disturbed.
    a.mov(dword_ptr(RUNNING), 1u32)?;
    a.mov(esp, HDR + (HEADER_POPAD * 4) as u32)?;
    a.popad()?;
    a.popfd()?;
    a.mov(esp, dword_ptr(HDR + 60))?;
    a.jmp(dword_ptr(HDR + 64))?;

    // ---- after a case: the handler returns here on the helper's stack ----
    a.set_label(&mut after_case)?;
    a.cld()?;
    a.xor(ebx, ebx)?;
    a.mov(ecx, ITV_ZERO)?;
    a.xor(edx, edx)?;
    syscall(&mut a, SYS_SETITIMER)?;
    a.mov(dword_ptr(RES), RESULT_MAGIC)?;
    a.mov(esi, RES)?;
    a.mov(ecx, 60u32)?;
    a.call(write_out)?;
    a.xor(ebp, ebp)?;
    let mut regions_out = a.create_label();
    let mut regions_out_done = a.create_label();
    a.set_label(&mut regions_out)?;
    a.cmp(ebp, dword_ptr(HDR + 12))?;
    a.jae(regions_out_done)?;
    a.mov(esi, dword_ptr(ebp * 8 + REGTAB))?;
    a.mov(ecx, dword_ptr(ebp * 8 + (REGTAB + 4)))?;
    a.call(write_out)?;
    a.inc(ebp)?;
    a.jmp(regions_out)?;
    a.set_label(&mut regions_out_done)?;
    a.call(flush)?;
    a.call(reset_window)?;
    a.jmp(main_loop)?;

    // ---- signal handler: [esp+4] signo, [esp+8] siginfo, [esp+12] ucontext ----
    a.set_label(&mut handler)?;
    a.mov(eax, dword_ptr(esp + 4))?;
    a.mov(ebx, dword_ptr(esp + 8))?;
    a.mov(ebp, dword_ptr(esp + 12))?;
    a.add(ebp, UC_GREGS)?;
    let mut in_case = a.create_label();
    let mut not_step = a.create_label();
    let mut not_align = a.create_label();
    let mut just_return = a.create_label();
    a.cmp(dword_ptr(RUNNING), 0u32)?;
    a.jne(in_case)?;
    // Not in a case: a late timer signal is harmless; anything else is a helper bug.
    a.cmp(eax, SIGALRM)?;
    a.je(just_return)?;
    a.lea(ebx, dword_ptr(eax + EXIT_SIGNAL))?;
    syscall(&mut a, SYS_EXIT)?;
    a.set_label(&mut in_case)?;
    // Single step after the case set TF: clear TF and carry on.
    a.cmp(eax, SIGTRAP)?;
    a.jne(not_step)?;
    a.cmp(dword_ptr(ebp + 4 * REG_TRAPNO), TRAP_DEBUG)?;
    a.jne(not_step)?;
    a.and(dword_ptr(ebp + 4 * REG_EFL), !EFLAGS_TF)?;
    a.jmp(just_return)?;
    a.set_label(&mut not_step)?;
    // Alignment check after the case set AC: clear AC and retry the instruction.
    a.cmp(eax, SIGBUS)?;
    a.jne(not_align)?;
    a.cmp(dword_ptr(ebp + 4 * REG_TRAPNO), TRAP_ALIGNMENT)?;
    a.jne(not_align)?;
    a.and(dword_ptr(ebp + 4 * REG_EFL), !EFLAGS_AC)?;
    a.jmp(just_return)?;
    a.set_label(&mut not_align)?;
    // A result: record it.
    a.mov(dword_ptr(RUNNING), 0u32)?;
    a.mov(dword_ptr(RES + 4), eax)?;
    a.mov(ecx, dword_ptr(ebp + 4 * REG_TRAPNO))?;
    a.mov(dword_ptr(RES + 8), ecx)?;
    a.mov(ecx, dword_ptr(ebp + 4 * REG_ERR))?;
    a.mov(dword_ptr(RES + 12), ecx)?;
    a.mov(ecx, dword_ptr(ebx + SI_ADDR))?;
    a.mov(dword_ptr(RES + 16), ecx)?;
    // gregs EDI..EAX are in POPAD order, as the result block wants them.
    for i in 0..8 {
        a.mov(ecx, dword_ptr(ebp + 4 * (REG_EDI + i)))?;
        a.mov(dword_ptr(RES + 20 + 4 * i as u32), ecx)?;
    }
    a.mov(ecx, dword_ptr(ebp + 4 * REG_EIP))?;
    a.mov(dword_ptr(RES + 52), ecx)?;
    a.mov(ecx, dword_ptr(ebp + 4 * REG_EFL))?;
    a.mov(dword_ptr(RES + 56), ecx)?;
    // Resume at after_case on the helper's stack, with its segments and clean flags.
    a.mov(ecx, after_case_addr)?;
    a.mov(dword_ptr(ebp + 4 * REG_EIP), ecx)?;
    a.mov(dword_ptr(ebp + 4 * REG_ESP), STACK_TOP)?;
    a.mov(dword_ptr(ebp + 4 * REG_EFL), 0x202u32)?;
    for i in 0..4 {
        a.mov(ecx, dword_ptr(SEGS + 4 * i as u32))?;
        a.mov(dword_ptr(ebp + 4 * i), ecx)?;
    }
    a.mov(ecx, dword_ptr(SEGS + 16))?;
    a.mov(dword_ptr(ebp + 4 * REG_CS), ecx)?;
    a.mov(ecx, dword_ptr(SEGS + 20))?;
    a.mov(dword_ptr(ebp + 4 * REG_SS), ecx)?;
    a.set_label(&mut just_return)?;
    a.ret()?;

    a.set_label(&mut restorer)?;
    syscall(&mut a, SYS_RT_SIGRETURN)?;

    // ---- read_exact(edi = destination, ecx = length), buffered ----
    a.set_label(&mut read_exact)?;
    let mut rx_loop = a.create_label();
    let mut rx_have = a.create_label();
    let mut rx_min = a.create_label();
    let mut rx_done = a.create_label();
    a.test(ecx, ecx)?;
    a.jz(rx_done)?;
    a.set_label(&mut rx_loop)?;
    a.mov(esi, dword_ptr(IN_POS))?;
    a.mov(edx, dword_ptr(IN_END))?;
    a.sub(edx, esi)?;
    a.jnz(rx_have)?;
    a.push(ecx)?;
    a.xor(ebx, ebx)?;
    a.mov(ecx, IN_BUF)?;
    a.mov(edx, IN_SIZE)?;
    syscall(&mut a, SYS_READ)?;
    a.pop(ecx)?;
    a.test(eax, eax)?;
    a.jz(exit_eof)?;
    a.js(exit_io)?;
    a.mov(dword_ptr(IN_POS), 0u32)?;
    a.mov(dword_ptr(IN_END), eax)?;
    a.jmp(rx_loop)?;
    a.set_label(&mut rx_have)?;
    a.cmp(edx, ecx)?;
    a.jbe(rx_min)?;
    a.mov(edx, ecx)?;
    a.set_label(&mut rx_min)?;
    a.sub(ecx, edx)?;
    a.push(ecx)?;
    a.add(dword_ptr(IN_POS), edx)?;
    a.add(esi, IN_BUF)?;
    a.mov(ecx, edx)?;
    a.rep().movsb()?;
    a.pop(ecx)?;
    a.test(ecx, ecx)?;
    a.jnz(rx_loop)?;
    a.set_label(&mut rx_done)?;
    a.ret()?;

    // ---- write_out(esi = source, ecx = length), buffered ----
    a.set_label(&mut write_out)?;
    let mut wx_loop = a.create_label();
    let mut wx_have = a.create_label();
    let mut wx_min = a.create_label();
    let mut wx_done = a.create_label();
    a.test(ecx, ecx)?;
    a.jz(wx_done)?;
    a.set_label(&mut wx_loop)?;
    a.mov(edx, OUT_SIZE)?;
    a.sub(edx, dword_ptr(OUT_LEN))?;
    a.jnz(wx_have)?;
    a.push(ecx)?;
    a.push(esi)?;
    a.call(flush)?;
    a.pop(esi)?;
    a.pop(ecx)?;
    a.jmp(wx_loop)?;
    a.set_label(&mut wx_have)?;
    a.cmp(edx, ecx)?;
    a.jbe(wx_min)?;
    a.mov(edx, ecx)?;
    a.set_label(&mut wx_min)?;
    a.sub(ecx, edx)?;
    a.push(ecx)?;
    a.mov(edi, dword_ptr(OUT_LEN))?;
    a.add(edi, OUT_BUF)?;
    a.add(dword_ptr(OUT_LEN), edx)?;
    a.mov(ecx, edx)?;
    a.rep().movsb()?;
    a.pop(ecx)?;
    a.test(ecx, ecx)?;
    a.jnz(wx_loop)?;
    a.set_label(&mut wx_done)?;
    a.ret()?;

    // ---- flush: write the output buffer to stdout ----
    a.set_label(&mut flush)?;
    let mut fl_loop = a.create_label();
    let mut fl_done = a.create_label();
    a.mov(esi, OUT_BUF)?;
    a.mov(edi, dword_ptr(OUT_LEN))?;
    a.set_label(&mut fl_loop)?;
    a.test(edi, edi)?;
    a.jz(fl_done)?;
    a.mov(ebx, 1u32)?;
    a.mov(ecx, esi)?;
    a.mov(edx, edi)?;
    syscall(&mut a, SYS_WRITE)?;
    a.test(eax, eax)?;
    a.jle(exit_io)?;
    a.add(esi, eax)?;
    a.sub(edi, eax)?;
    a.jmp(fl_loop)?;
    a.set_label(&mut fl_done)?;
    a.mov(dword_ptr(OUT_LEN), 0u32)?;
    a.ret()?;

    // ---- reset_window: a fresh, zeroed, non-executable case window ----
    a.set_label(&mut reset_window)?;
    a.mov(ebx, FIRST_CASE_ADDR)?;
    a.mov(ecx, MEMORY_SIZE - FIRST_CASE_ADDR)?;
    a.mov(edx, PROT_RW)?;
    a.mov(esi, MAP_PRIVATE_FIXED_ANON)?;
    a.mov(edi, 0xFFFF_FFFFu32)?;
    a.xor(ebp, ebp)?;
    syscall(&mut a, SYS_MMAP2)?;
    a.cmp(eax, FIRST_CASE_ADDR)?;
    a.mov(ebx, 3u32)?;
    a.jne(fail)?;
    a.ret()?;

    // ---- fail(ebx = step, eax = result): tell the oracle, then exit ----
    a.set_label(&mut fail)?;
    a.mov(dword_ptr(HELLO), FAIL_MAGIC)?;
    a.mov(dword_ptr(HELLO + 4), ebx)?;
    a.mov(dword_ptr(HELLO + 8), eax)?;
    a.mov(ebx, 1u32)?;
    a.mov(ecx, HELLO)?;
    a.mov(edx, 12u32)?;
    syscall(&mut a, SYS_WRITE)?;
    a.mov(ebx, 3u32)?;
    syscall(&mut a, SYS_EXIT)?;

    a.set_label(&mut exit_eof)?;
    a.mov(ebx, EXIT_EOF as u32)?;
    syscall(&mut a, SYS_EXIT)?;
    a.set_label(&mut exit_io)?;
    a.mov(ebx, EXIT_IO as u32)?;
    syscall(&mut a, SYS_EXIT)?;
    a.set_label(&mut exit_protocol)?;
    a.mov(ebx, EXIT_PROTOCOL as u32)?;
    syscall(&mut a, SYS_EXIT)?;

    let result =
        a.assemble_options(u64::from(HELPER_BASE + HEADERS_SIZE), BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let ip = |label: &CodeLabel| result.label_ip(label).map(|ip| ip as u32);
    let found = [ip(&handler)?, ip(&restorer)?, ip(&after_case)?];
    Ok((result.inner.code_buffer, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_assembles_and_fits() {
        let file = executable().expect("helper");
        assert!(file.len() < 0x1000, "{} bytes", file.len());
        const { assert!(HELPER_END < 0x6000_0000) };
        const { assert!(HELPER_BASE >= MEMORY_SIZE) };
    }
}
