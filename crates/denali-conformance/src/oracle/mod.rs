//! The host CPU as the oracle: runs a [`Case`] natively and reports what the CPU did, in
//! Denali's terms.
//!
//! The cases run in a separate 32-bit helper process (see `helper.rs`), which the oracle
//! assembles itself with iced-x86, wraps in a minimal ELF file (`elf.rs`), writes to a
//! temporary file and starts; no compiler or other tool is needed. The helper maps the case
//! window `FIRST_CASE_ADDR..MEMORY_SIZE` and nothing else below its own pages, so an access at
//! or above `MEMORY_SIZE` faults natively just as it stops a Denali guest. The protocol between
//! the two is described in `protocol.rs`.
//!
//! Every case ends in a signal, which [`Oracle::run`] maps to Denali's semantics:
//!
//! | native | Denali |
//! |---|---|
//! | SIGTRAP (#BP) from an INT3 of the code page outside the code | completed, EIP = that INT3 |
//! | SIGTRAP (#BP) from an INT3 at `A` inside the code | `Stop::Breakpoint`, EIP = `A` |
//! | SIGSEGV (#PF) fetching an instruction outside the code page(s) | completed, EIP = the target |
//! | SIGSEGV (#PF) at `si_addr` ≥ `MEMORY_SIZE` | `Stop::Memory { addr: si_addr }` |
//! | SIGSEGV (#GP) or SIGBUS (#SS) from an access wrapping past `0xFFFF_FFFF` at `A` | `Stop::Memory { addr: A }` |
//! | SIGFPE (#DE) | `Stop::Divide` |
//! | SIGILL (#UD) | `Stop::Invalid` |
//! | SIGALRM (the case ran longer than the timeout) | [`OracleError::Timeout`] |
//! | anything else (#GP from a privileged instruction, a fault below `MEMORY_SIZE`, ...) | [`OracleError::UnexpectedSignal`] |
//!
//! A case that stops is reported with the state before the stopping instruction (the CPU's
//! faults are precise); EFLAGS is reported as Denali shows it: `native & 0xCD5 | 0x202`.
//!
//! What Linux reports for a faulting data access (x86-64 kernel, IA-32 process, checked on
//! an AMD EPYC): a #PF whose `si_addr` is the CPU's CR2, the first byte of the access in the
//! first page that is not mapped. So an access that starts below `MEMORY_SIZE` and straddles
//! it reports `MEMORY_SIZE`, and one that starts at or above it reports its start (e.g.
//! `0xFFFF_FFF0`, `0xFFFF_E000`). An access that wraps past `0xFFFF_FFFF` (a dword at
//! `0xFFFF_FFFE`, `push` with ESP = 2, `cmpxchg8b` at `0xFFFF_FFFC`) never reaches the pages:
//! it breaks the flat segment's limit and raises #GP (SIGSEGV, trap 13), or #SS (SIGBUS, trap
//! 12) on the stack, with `si_addr` 0. For those the oracle decodes the faulting instruction
//! and computes the wrapping access's address from the registers; that start is the first
//! address at or above `MEMORY_SIZE` the access needed.
//!
//! Limits of the native model: the code page(s) are INT3 outside the case's code (not zero, as
//! in Denali), a branch into a data region that shares the code page executes the data, and
//! the helper's own pages `HELPER_BASE..HELPER_END` are mapped (an access there does not
//! fault), so cases must avoid them; `run` refuses a case whose first instruction would touch
//! them, later instructions of a block are not checked. Cases containing system calls (`int 0x80`, `syscall`,
//! `sysenter`) or far transfers are refused with [`OracleError::BadCase`].

mod elf;
mod helper;
mod protocol;

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::case::{Case, FIRST_CASE_ADDR, MEMORY_SIZE, Region, State, Stop};
pub use helper::{HELPER_BASE, HELPER_END};
use helper::{
    PF_INSTR, SIGALRM, SIGBUS, SIGFPE, SIGILL, SIGSEGV, SIGTRAP, TRAP_BREAKPOINT, TRAP_DIVIDE, TRAP_GP,
    TRAP_INVALID_OPCODE, TRAP_PAGE_FAULT, TRAP_STACK,
};
use iced_x86::{Decoder, DecoderOptions, Instruction, InstructionInfoFactory, OpKind, Register};
use protocol::{FAIL_MAGIC, HELLO_MAGIC, MAX_REGIONS, RESULT_WORDS, RawResult, VERSION};

use denali_abi::boot::{EFLAGS_GUEST_MASK, INITIAL_EFLAGS};
/// How long a case may run before it counts as a [`OracleError::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the helper may take to start and say hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest code a case may have (the code page fill and the request stay small).
const MAX_CODE_LEN: usize = 0x1_0000;

/// Why the oracle could not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    /// The host cannot run the helper: not Linux on x86-64, or the kernel cannot run 32-bit
    /// executables, or the temporary directory does not allow executing files. The message
    /// says which.
    #[error("the native oracle is unavailable: {0}")]
    Unavailable(String),
    /// The helper broke the protocol or died. The next `run` starts a new helper.
    #[error("oracle helper protocol error: {0}")]
    Protocol(String),
    /// The case ran longer than the timeout (it loops forever, as `jmp $` does).
    #[error("the case did not finish within the timeout")]
    Timeout,
    /// The case ended with a signal that has no Denali meaning, e.g. #GP (SIGSEGV, trap 13)
    /// from a privileged instruction, or a fault at an address below `MEMORY_SIZE`.
    #[error(
        "unexpected signal {signal} (trap {trapno}, error code {error_code:#x}, address {addr:#010x}) at EIP {eip:#010x}",
        eip = state.eip
    )]
    UnexpectedSignal {
        signal: u32,
        trapno: u32,
        error_code: u32,
        /// `si_addr` of the signal.
        addr: u32,
        /// The registers when it arrived, native EIP, masked EFLAGS.
        state: State,
    },
    /// The case cannot be run natively: it lies outside the case window, has too many
    /// regions, or contains a system call or far transfer.
    #[error("case cannot run natively: {0}")]
    BadCase(String),
}

/// What the host CPU did with a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The registers, EIP and (masked) EFLAGS afterwards, or before the stopping instruction.
    pub state: State,
    /// The final contents of exactly the case's regions, in the case's order.
    pub memory: Vec<Region>,
    /// `None` when execution left the code.
    pub stop: Option<Stop>,
}

/// The host CPU as oracle: a running helper process.
pub struct Oracle {
    helper: Option<Helper>,
    timeout: Duration,
    request: Vec<u8>,
}

impl Oracle {
    /// Starts the helper process and checks that it runs.
    pub fn start() -> Result<Oracle, OracleError> {
        let helper = Helper::spawn()?;
        Ok(Oracle { helper: Some(helper), timeout: DEFAULT_TIMEOUT, request: Vec::new() })
    }

    /// Sets how long a case may run (at least a millisecond) before it is a `Timeout`.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout.max(Duration::from_millis(1));
    }

    /// Runs `case` on the host CPU.
    pub fn run(&mut self, case: &Case) -> Result<Observed, OracleError> {
        self.run_batch(std::slice::from_ref(case))
            .pop()
            .unwrap_or_else(|| Err(OracleError::Protocol("no result".into())))
    }

    /// Runs several cases, pipelined: all requests are sent while the results come back, which
    /// saves the two process wake-ups per case that `run` waits for. The results are in the
    /// order of `cases`; a case that cannot run does not affect the others, but if the helper
    /// breaks, every case after the break gets a `Protocol` error.
    pub fn run_batch(&mut self, cases: &[Case]) -> Vec<Result<Observed, OracleError>> {
        let mut results: Vec<Option<Result<Observed, OracleError>>> =
            cases.iter().map(|case| validate(case).err().map(Err)).collect();
        let runnable: Vec<&Case> = cases.iter().zip(&results).filter(|(_, r)| r.is_none()).map(|(c, _)| c).collect();
        if !runnable.is_empty() {
            let mut outcomes = self.exchange_all(&runnable).into_iter();
            for slot in results.iter_mut().filter(|r| r.is_none()) {
                *slot = outcomes.next();
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(OracleError::Protocol("no result".into())))).collect()
    }

    /// Sends the requests for `cases` and collects their results.
    fn exchange_all(&mut self, cases: &[&Case]) -> Vec<Result<Observed, OracleError>> {
        let helper = match &mut self.helper {
            Some(helper) => helper,
            slot => match Helper::spawn() {
                Ok(helper) => slot.insert(helper),
                Err(e) => {
                    let msg = e.to_string();
                    return cases
                        .iter()
                        .map(|_| match &e {
                            OracleError::Unavailable(why) => Err(OracleError::Unavailable(why.clone())),
                            _ => Err(OracleError::Protocol(msg.clone())),
                        })
                        .collect();
                }
            },
        };
        self.request.clear();
        for case in cases {
            let eflags = case.init.eflags & EFLAGS_GUEST_MASK | INITIAL_EFLAGS;
            protocol::encode_request(&mut self.request, case, eflags, self.timeout);
        }
        let mut results = Vec::with_capacity(cases.len());
        let mut broken = None;
        let Helper { child, stdin, stdout } = helper;
        let mut receive_all = |results: &mut Vec<Result<Observed, OracleError>>| {
            for case in cases {
                match receive(stdout, &case.memory) {
                    Ok((raw, memory)) => {
                        results.push(interpret(case, &raw).map(|(state, stop)| Observed { state, memory, stop }))
                    }
                    Err(e) => return Some(e),
                }
            }
            None
        };
        if cases.len() == 1 {
            // The helper reads a whole request before it answers, so one request cannot
            // deadlock however large it is.
            broken = send(stdin, &self.request).err().or_else(|| receive_all(&mut results));
        } else {
            // Several requests could fill both pipes; write from another thread.
            let request = &self.request;
            std::thread::scope(|scope| {
                let writer = scope.spawn(move || send(stdin, request));
                broken = receive_all(&mut results);
                if broken.is_some() {
                    // Unblock the writer if the helper stopped reading.
                    let _ = child.kill();
                }
                if let Ok(Err(e)) = writer.join() {
                    broken.get_or_insert(e);
                }
            });
        }
        if let Some(e) = broken {
            // The helper is in an unknown state: end it; the next run starts a fresh one.
            let status = self.helper.take().map(Helper::finish).unwrap_or_default();
            let msg = format!("{e}{status}");
            results.extend((results.len()..cases.len()).map(|_| Err(OracleError::Protocol(msg.clone()))));
        }
        results
    }

    /// The host CPU, for the header of a vector file: `"<model name> (<vendor>)"` from
    /// `/proc/cpuinfo`, or `"unknown"`.
    pub fn cpu_model() -> String {
        let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(key, _)| key.trim() == name)
                .map(|(_, value)| value.trim().to_string())
        };
        match (field("model name"), field("vendor_id")) {
            (Some(model), Some(vendor)) => format!("{model} ({vendor})"),
            (Some(model), None) => model,
            (None, Some(vendor)) => vendor,
            (None, None) => "unknown".to_string(),
        }
    }
}

/// Whether the oracle can run on this host; tries to start it once per process.
pub fn available() -> Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE.get_or_init(|| Oracle::start().map(drop).map_err(|e| e.to_string())).clone()
}

/// Checks that the case can be run natively without harming the helper.
fn validate(case: &Case) -> Result<(), OracleError> {
    let bad = |msg: String| Err(OracleError::BadCase(msg));
    let in_window =
        |addr: u32, len: usize| addr >= FIRST_CASE_ADDR && u64::from(addr) + len as u64 <= u64::from(MEMORY_SIZE);
    if case.code.len() > MAX_CODE_LEN {
        return bad(format!("code of {} bytes is longer than {MAX_CODE_LEN}", case.code.len()));
    }
    if !in_window(case.init.eip, case.code.len()) {
        return bad(format!("code at {:#x} is outside the case window", case.init.eip));
    }
    if case.memory.len() > MAX_REGIONS {
        return bad(format!("{} regions, at most {MAX_REGIONS}", case.memory.len()));
    }
    for region in &case.memory {
        if !in_window(region.addr, region.data.len()) {
            return bad(format!(
                "region at {:#x} ({} bytes) is outside the case window",
                region.addr,
                region.data.len()
            ));
        }
    }
    let mut decoder = Decoder::with_ip(32, &case.code, u64::from(case.init.eip), DecoderOptions::NONE);
    let in_helper =
        |addr: u32, len: u32| u64::from(addr) + u64::from(len) > u64::from(HELPER_BASE) && addr < HELPER_END;
    for (i, instr) in (&mut decoder).into_iter().enumerate() {
        // The helper's pages are mapped natively; touching them would not fault as it should
        // and could wreck the helper. Registers are known exactly only for the first
        // instruction; later ones are the generator's responsibility (see the module doc).
        if i == 0 {
            let touches = accesses(&instr, &case.init).into_iter().any(|(addr, len)| in_helper(addr, len))
                || branch_target(&instr, &case.init).is_some_and(|target| in_helper(target, 1));
            if touches {
                return bad(format!(
                    "the first instruction would touch the oracle helper's pages {HELPER_BASE:#x}..{HELPER_END:#x}"
                ));
            }
        }
        use iced_x86::{Code, Mnemonic};
        let system_call = match instr.code() {
            Code::Int_imm8 => instr.immediate8() == 0x80,
            Code::Syscall | Code::Sysenter => true,
            _ => false,
        };
        let far = instr.is_call_far()
            || instr.is_jmp_far()
            || instr.is_call_far_indirect()
            || instr.is_jmp_far_indirect()
            || matches!(instr.mnemonic(), Mnemonic::Retf | Mnemonic::Iret | Mnemonic::Iretd);
        if system_call || far {
            return bad(format!("{:?} at {:#x} would leave the sandbox", instr.mnemonic(), instr.ip32()));
        }
    }
    Ok(())
}

/// Maps the signal that ended a case to Denali's terms.
fn interpret(case: &Case, raw: &RawResult) -> Result<(State, Option<Stop>), OracleError> {
    let start = u64::from(case.init.eip);
    let end = start + case.code.len() as u64;
    let in_code = |addr: u32| (start..end).contains(&u64::from(addr));
    let mut state = raw.state;
    state.eflags = raw.state.eflags & EFLAGS_GUEST_MASK | INITIAL_EFLAGS;
    let native_eip = raw.state.eip;
    let stop = match (raw.signal, raw.trapno) {
        (SIGTRAP, TRAP_BREAKPOINT) => {
            // EIP is past the INT3. One of the case's own is a stop at the INT3; one of the
            // fill means execution left the code there.
            let int3 = native_eip.wrapping_sub(1);
            state.eip = int3;
            if in_code(int3) { Some(Stop::Breakpoint) } else { None }
        }
        (SIGSEGV, TRAP_PAGE_FAULT)
            if (raw.error_code & PF_INSTR != 0 || raw.si_addr == native_eip) && !in_code(native_eip) =>
        {
            // Fetching from a page that is not executable: a jump out of the code page(s).
            None
        }
        (SIGSEGV, TRAP_PAGE_FAULT) if raw.si_addr >= MEMORY_SIZE && raw.error_code & PF_INSTR == 0 => {
            Some(Stop::Memory { addr: raw.si_addr })
        }
        (SIGSEGV, TRAP_GP) | (SIGBUS, TRAP_STACK) if wrapping_access(case, &raw.state).is_some() => {
            // An access that wraps past 0xFFFF_FFFF breaks the flat segments' limit (#GP, or
            // #SS for the stack) instead of faulting on a page, and the kernel reports no
            // address: the access's own start is the first address at or above MEMORY_SIZE.
            wrapping_access(case, &raw.state).map(|addr| Stop::Memory { addr })
        }
        (SIGFPE, TRAP_DIVIDE) => Some(Stop::Divide),
        (SIGILL, TRAP_INVALID_OPCODE) => Some(Stop::Invalid),
        (SIGALRM, _) => return Err(OracleError::Timeout),
        _ => {
            return Err(OracleError::UnexpectedSignal {
                signal: raw.signal,
                trapno: raw.trapno,
                error_code: raw.error_code,
                addr: raw.si_addr,
                state,
            });
        }
    };
    Ok((state, stop))
}

/// The start of a memory access of the instruction at `state.eip` (which must be one of the
/// case's) that wraps around the top of the address space, if it has one.
fn wrapping_access(case: &Case, state: &State) -> Option<u32> {
    let offset = state.eip.checked_sub(case.init.eip)? as usize;
    let bytes = case.code.get(offset..)?;
    let instr = Decoder::with_ip(32, bytes, u64::from(state.eip), DecoderOptions::NONE).decode();
    if instr.is_invalid() {
        return None;
    }
    accesses(&instr, state)
        .into_iter()
        .find(|&(addr, len)| u64::from(addr) + u64::from(len) > 1 << 32)
        .map(|(addr, _)| addr.max(MEMORY_SIZE))
}

/// The memory an instruction accesses with the registers of `state`: (address, size) pairs,
/// explicit operands and implicit ones (stack, string instructions) alike.
fn accesses(instr: &Instruction, state: &State) -> Vec<(u32, u32)> {
    let mut factory = InstructionInfoFactory::new();
    factory
        .info(instr)
        .used_memory()
        .iter()
        .filter_map(|m| {
            let addr = m.virtual_address(0, |reg, _, _| register(state, reg))?;
            Some((addr as u32, m.memory_size().size() as u32))
        })
        .collect()
}

/// Where a near branch goes, when its operand is an immediate or a register.
fn branch_target(instr: &Instruction, state: &State) -> Option<u32> {
    match instr.op0_kind() {
        OpKind::NearBranch32 | OpKind::NearBranch16 => Some(instr.near_branch_target() as u32),
        OpKind::Register if instr.is_jmp_near_indirect() || instr.is_call_near_indirect() => {
            register(state, instr.op0_register()).map(|v| v as u32)
        }
        _ => None,
    }
}

/// The value of a 32-bit register (segment bases are 0) in `state`.
fn register(state: &State, reg: Register) -> Option<u64> {
    let value = match reg {
        Register::EAX => state.eax,
        Register::ECX => state.ecx,
        Register::EDX => state.edx,
        Register::EBX => state.ebx,
        Register::ESP => state.esp,
        Register::EBP => state.ebp,
        Register::ESI => state.esi,
        Register::EDI => state.edi,
        Register::ES | Register::CS | Register::SS | Register::DS => 0,
        _ => return None,
    };
    Some(u64::from(value))
}

/// The helper process and its pipes.
struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    fn spawn() -> Result<Helper, OracleError> {
        Err(OracleError::Unavailable(format!(
            "the native oracle needs Linux on x86-64; this host is {} on {}",
            std::env::consts::OS,
            std::env::consts::ARCH
        )))
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn spawn() -> Result<Helper, OracleError> {
        let image = helper::executable().map_err(OracleError::Protocol)?;
        let mut dirs = vec![std::env::temp_dir()];
        if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) {
            dirs.push(dir);
        }
        let mut why = Vec::new();
        for dir in dirs {
            match spawn_in(&dir, &image) {
                Ok(child) => return Helper::handshake(child),
                Err(SpawnError::Fatal(msg)) => return Err(OracleError::Unavailable(msg)),
                Err(SpawnError::TryElsewhere(msg)) => why.push(msg),
            }
        }
        Err(OracleError::Unavailable(why.join("; ")))
    }

    /// Waits for the helper's hello (in a thread, so that a helper that never answers cannot
    /// hang the caller).
    fn handshake(mut child: Child) -> Result<Helper, OracleError> {
        let (Some(stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(OracleError::Protocol("helper pipes missing".into()));
        };
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let mut hello = [0u8; 12];
            let got = stdout.read_exact(&mut hello[..8]).and_then(|()| {
                if hello[..4] == FAIL_MAGIC.to_le_bytes() {
                    stdout.read_exact(&mut hello[8..])?;
                }
                Ok(hello)
            });
            let _ = send.send((got, stdout));
        });
        let (hello, stdout) = match receive.recv_timeout(HANDSHAKE_TIMEOUT) {
            Ok(answer) => answer,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(OracleError::Unavailable(format!(
                    "the helper did not answer within {HANDSHAKE_TIMEOUT:?}"
                )));
            }
        };
        let helper = Helper { child, stdin, stdout: BufReader::with_capacity(1 << 16, stdout) };
        let word =
            |bytes: &[u8; 12], i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        match hello {
            Ok(hello) if word(&hello, 0) == HELLO_MAGIC && word(&hello, 4) == VERSION => Ok(helper),
            Ok(hello) if word(&hello, 0) == FAIL_MAGIC => {
                let (step, ret) = (word(&hello, 4), word(&hello, 8) as i32);
                let status = helper.finish();
                Err(OracleError::Unavailable(format!(
                    "the helper's set-up failed: {} returned {ret}{status}",
                    helper::step_name(step)
                )))
            }
            Ok(hello) => {
                let status = helper.finish();
                Err(OracleError::Protocol(format!("unexpected hello {:02x?}{status}", &hello[..8])))
            }
            Err(e) => {
                let status = helper.finish();
                Err(OracleError::Unavailable(format!("the 32-bit helper did not start properly ({e}){status}")))
            }
        }
    }

    /// Ends the helper and describes how it ended (for error messages).
    fn finish(mut self) -> String {
        // A helper that broke the protocol has usually exited already; give it a moment so
        // that its own exit status, not our kill, is reported.
        let deadline = Instant::now() + Duration::from_millis(500);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                _ => break None,
            }
        };
        match status {
            Some(status) => format!(" (helper {})", describe_exit(status)),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                String::new()
            }
        }
    }
}

/// Writes requests to the helper.
fn send(stdin: &mut ChildStdin, request: &[u8]) -> io::Result<()> {
    stdin.write_all(request)?;
    stdin.flush()
}

/// Reads one result header and the final bytes of `regions`.
fn receive(stdout: &mut impl Read, regions: &[Region]) -> io::Result<(RawResult, Vec<Region>)> {
    let mut header = [0u8; RESULT_WORDS * 4];
    stdout.read_exact(&mut header)?;
    if header[..4] == FAIL_MAGIC.to_le_bytes() {
        let step = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        return Err(io::Error::other(format!("helper failed in {}", helper::step_name(step))));
    }
    let raw = protocol::decode_result(&header).map_err(io::Error::other)?;
    let mut memory = Vec::with_capacity(regions.len());
    for region in regions {
        let mut data = vec![0u8; region.data.len()];
        stdout.read_exact(&mut data)?;
        memory.push(Region { addr: region.addr, data });
    }
    Ok((raw, memory))
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        return format!("killed by signal {signal}");
    }
    match status.code() {
        Some(helper::EXIT_EOF) => "exited: end of input".into(),
        Some(helper::EXIT_IO) => "exited: pipe error".into(),
        Some(helper::EXIT_PROTOCOL) => "exited: malformed request".into(),
        Some(3) => "exited: a system call failed".into(),
        Some(code) if code > helper::EXIT_SIGNAL => {
            format!("exited: signal {} in the helper itself", code - helper::EXIT_SIGNAL)
        }
        Some(code) => format!("exited with status {code}"),
        None => "ended".into(),
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
enum SpawnError {
    /// This directory did not work (cannot write, or mounted noexec); another may.
    TryElsewhere(String),
    /// Starting failed for a reason no other directory changes.
    Fatal(String),
}

/// Writes the helper into `dir`, starts it and deletes the file again.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn spawn_in(dir: &Path, image: &[u8]) -> Result<Child, SpawnError> {
    use std::os::unix::fs::OpenOptionsExt;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    const ENOEXEC: i32 = 8;
    const EACCES: i32 = 13;
    const ETXTBSY: i32 = 26;
    const EPERM: i32 = 1;

    let path: PathBuf =
        dir.join(format!("denali-oracle-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_file(&path); // a leftover of an earlier process with our pid
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&path)
        .and_then(|mut file| file.write_all(image));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(SpawnError::TryElsewhere(format!("cannot write {}: {e}", path.display())));
    }
    // Another thread of this process may fork while our write descriptor is open; the child
    // holds it until it execs, and exec of our file fails with ETXTBSY meanwhile. Retry.
    let mut attempts = 0;
    let result = loop {
        let spawned =
            Command::new(&path).env_clear().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn();
        match spawned {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other,
        }
    };
    let _ = std::fs::remove_file(&path);
    result.map_err(|e| match e.raw_os_error() {
        Some(ENOEXEC) => SpawnError::Fatal(format!(
            "the kernel cannot run 32-bit x86 executables ({e}): IA-32 emulation is missing or \
             disabled (CONFIG_IA32_EMULATION, the ia32_emulation= boot parameter)"
        )),
        Some(EACCES) | Some(EPERM) => SpawnError::TryElsewhere(format!(
            "cannot execute {} ({e}): is {} mounted noexec?",
            path.display(),
            dir.display()
        )),
        _ => SpawnError::Fatal(format!("cannot start the helper {}: {e}", path.display())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(code: &[u8]) -> Case {
        Case {
            form: "test".into(),
            code: code.to_vec(),
            init: State::with_regs([0; 8], 0x10_0000, 0x202),
            memory: vec![],
        }
    }

    fn raw(signal: u32, trapno: u32, error_code: u32, si_addr: u32, eip: u32) -> RawResult {
        RawResult { signal, trapno, error_code, si_addr, state: State::with_regs([0; 8], eip, 0x0004_0ED7) }
    }

    #[test]
    fn signals_map_to_denali_stops() {
        let c = case(&[0x90, 0xcc]);
        let (s, stop) = interpret(&c, &raw(SIGTRAP, 3, 0, 0, 0x10_0002)).unwrap();
        assert_eq!((s.eip, stop), (0x10_0001, Some(Stop::Breakpoint)));
        assert_eq!(s.eflags, 0x0ED7 & 0xCD5 | 0x202);
        let (s, stop) = interpret(&c, &raw(SIGTRAP, 3, 0, 0, 0x10_0003)).unwrap();
        assert_eq!((s.eip, stop), (0x10_0002, None));
        let (s, stop) = interpret(&c, &raw(SIGSEGV, 14, 0x15, 0x30_0000, 0x30_0000)).unwrap();
        assert_eq!((s.eip, stop), (0x30_0000, None));
        let (_, stop) = interpret(&c, &raw(SIGSEGV, 14, 4, MEMORY_SIZE, 0x10_0000)).unwrap();
        assert_eq!(stop, Some(Stop::Memory { addr: MEMORY_SIZE }));
        assert_eq!(interpret(&c, &raw(SIGFPE, 0, 0, 0, 0x10_0000)).unwrap().1, Some(Stop::Divide));
        assert_eq!(interpret(&c, &raw(SIGILL, 6, 0, 0, 0x10_0000)).unwrap().1, Some(Stop::Invalid));
        assert!(matches!(interpret(&c, &raw(SIGALRM, 0, 0, 0, 0x10_0000)), Err(OracleError::Timeout)));
        assert!(matches!(
            interpret(&c, &raw(SIGSEGV, 13, 0, 0, 0x10_0000)),
            Err(OracleError::UnexpectedSignal { trapno: 13, .. })
        ));
        assert!(matches!(
            interpret(&c, &raw(SIGSEGV, 14, 4, 0x8000, 0x10_0000)),
            Err(OracleError::UnexpectedSignal { .. })
        ));
    }

    #[test]
    fn cases_outside_the_window_or_with_system_calls_are_refused() {
        let mut c = case(&[0x90]);
        c.init.eip = 0x8000;
        assert!(matches!(validate(&c), Err(OracleError::BadCase(_))));
        let mut c = case(&[0x90]);
        c.memory.push(Region { addr: MEMORY_SIZE - 1, data: vec![0, 0] });
        assert!(matches!(validate(&c), Err(OracleError::BadCase(_))));
        assert!(matches!(validate(&case(&[0xcd, 0x80])), Err(OracleError::BadCase(_))));
        assert!(matches!(validate(&case(&[0x0f, 0x05])), Err(OracleError::BadCase(_))));
        assert!(matches!(validate(&case(&[0x9a, 0, 0, 0, 0, 0x33, 0])), Err(OracleError::BadCase(_))));
        assert!(validate(&case(&[0x01, 0xd8, 0xcd, 0xd0])).is_ok());
    }

    #[test]
    fn cpu_model_is_not_empty() {
        assert!(!Oracle::cpu_model().is_empty());
    }
}
