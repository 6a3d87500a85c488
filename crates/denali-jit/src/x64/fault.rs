//! Guest faults in translated code (guard-region mode, Linux x86-64): a SIGSEGV/SIGBUS handler
//! that turns a host fault on a guest access into the stop exit of the guest instruction.
//!
//! In guard-region mode (a guarded `GuestMemory`) translated code makes no bounds checks: every
//! address it forms lies in the memory's reservation (`base - 4 .. base + 2^32 + 3`, all of it
//! inaccessible but the guest's bytes), so an access outside memory faults, and so does a
//! store to a page holding cached code while the memory write-protects those
//! (`GuestMemory::protect_code_pages`: translated stores check no code-page table). Each host
//! instruction range that may fault on a guest access is a [`Site`], with the arena offset of
//! the stop exit of its guest instruction (the state before it: nothing guest-visible changes
//! before the first host instruction of the range that can fault). While [`enter`]'s guard
//! lives, the thread's running arena is known; the handler resumes a fault at such a site at
//! its stop exit (only the instruction pointer changes: host registers and flags still hold
//! the guest state before the instruction), and the interpreter then runs the instruction and
//! raises the exact exception. Every other fault, on any thread (a bug in Rust code, a stack
//! overflow, a bug in generated code at a place that is not a guest access, or a guest-access
//! site whose address lies outside the memory's reservation), goes to the handler that was
//! installed before, exactly as if this one were not there.
//!
//! The handler is async-signal-safe: it reads a const-initialised thread-local (no lazy
//! initialisation, no destructor), a table it does not own but which the guard keeps borrowed,
//! and the previous actions saved before it was installed; it allocates nothing and takes no
//! lock. The `unsafe` of the JIT outside `arena.rs` is here.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::OnceLock;

/// A host code range `from .. to` (arena offsets) whose instructions may fault on a guest
/// access, and the arena offset to resume at.
pub(crate) type Site = (u32, u32, u32);

/// What the handler needs to know about the code the thread runs: arena and memory addresses,
/// and the sites (sorted by `from`, not overlapping).
#[derive(Clone, Copy)]
struct Running {
    arena: usize,
    arena_len: usize,
    /// Host address of guest address 0.
    mem: usize,
    sites: *const Site,
    count: usize,
}

/// Inaccessible bytes the reservation holds below guest address 0 and above 2^32.
const GUARD: usize = denali_engine::GUARD_SIZE;

const IDLE: Running = Running { arena: 0, arena_len: 0, mem: 0, sites: std::ptr::null(), count: 0 };

thread_local! {
    /// The arena this thread runs generated code from (`IDLE` outside `Arena::call`).
    static RUNNING: Cell<Running> = const { Cell::new(IDLE) };
    /// Faults this thread's handler resumed at a stop exit, since the thread started.
    static RESUMED: Cell<u64> = const { Cell::new(0) };
}

/// Faults resumed on this thread so far.
pub(crate) fn resumed() -> u64 {
    RESUMED.with(Cell::get)
}

/// While it lives, faults at `sites` of the arena at `arena` resume at their stop exits.
pub(crate) struct Entered<'a> {
    previous: Running,
    _sites: PhantomData<&'a [Site]>,
}

/// Names the code this thread is about to run: the arena (`arena_len` bytes at `arena`), the
/// guarded memory it accesses (guest address 0 at host address `mem`) and the arena's fault
/// sites (sorted by their start, not overlapping).
pub(crate) fn enter(arena: u64, arena_len: usize, mem: u64, sites: &[Site]) -> Entered<'_> {
    debug_assert!(sites.windows(2).all(|w| w[0].1 <= w[1].0));
    #[allow(clippy::cast_possible_truncation, reason = "host addresses on a 64-bit host")]
    let running =
        Running { arena: arena as usize, arena_len, mem: mem as usize, sites: sites.as_ptr(), count: sites.len() };
    let previous = RUNNING.with(|r| r.replace(running));
    Entered { previous, _sites: PhantomData }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        RUNNING.with(|r| r.set(self.previous));
    }
}

/// The signals a guest access can raise: SIGSEGV (a `PROT_NONE` page), and SIGBUS to be safe.
const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// The action each of [`SIGNALS`] had before ours.
struct Previous([libc::sigaction; 2]);

// SAFETY: plain data (handler addresses, masks, flags), written once before the handler that
// reads it is installed and never again.
unsafe impl Sync for Previous {}
// SAFETY: as for `Sync`.
unsafe impl Send for Previous {}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Installs the handler (once per process); whether it is installed. Without it, guard-region
/// code must not run.
pub(crate) fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        // SAFETY: `sigaction` with a null new action only reads the current one into `old`,
        // a zeroed (valid) `sigaction` value.
        let previous = SIGNALS.map(|sig| unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            let ok = libc::sigaction(sig, std::ptr::null(), &raw mut old) == 0;
            (ok, old)
        });
        if previous.iter().any(|(ok, _)| !ok) {
            return false;
        }
        if PREVIOUS.set(Previous(previous.map(|(_, old)| old))).is_err() {
            return false;
        }
        SIGNALS.iter().all(|&sig| {
            // SAFETY: installs `on_fault`, an `extern "C"` function of the `SA_SIGINFO`
            // signature that is async-signal-safe (see the module documentation); the previous
            // action it forwards to was saved above, before it can run.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_fault as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&raw mut action.sa_mask);
                libc::sigaction(sig, &raw const action, std::ptr::null_mut()) == 0
            }
        })
    })
}

/// The signal handler.
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid `siginfo_t` and `ucontext_t` for an `SA_SIGINFO`
    // handler; both are ours to read and (the context) to change until we return.
    unsafe {
        if resume(info, context) {
            return;
        }
        forward(sig, info, context);
    }
}

/// Moves the interrupted instruction pointer to its stop exit when it is a guest access of the
/// code this thread runs, faulting inside the guarded reservation; whether it did.
///
/// # Safety
/// `info` and `context` as the kernel passes them to an `SA_SIGINFO` handler.
unsafe fn resume(info: *mut libc::siginfo_t, context: *mut libc::c_void) -> bool {
    // A destroyed thread-local (never: it has no destructor) counts as not running.
    let Ok(running) = RUNNING.try_with(Cell::get) else { return false };
    if running.sites.is_null() || context.is_null() || info.is_null() {
        return false;
    }
    // SAFETY: the kernel's `ucontext_t` for this signal (the caller's contract).
    let context = unsafe { &mut *context.cast::<libc::ucontext_t>() };
    let gregs = &mut context.uc_mcontext.gregs;
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation, reason = "a host address")]
    let rip = gregs[libc::REG_RIP as usize] as usize;
    // SAFETY: the kernel's `siginfo_t` for a fault (SIGSEGV/SIGBUS carry an address).
    let addr = unsafe { (*info).si_addr() } as usize;
    let reservation = running.mem.wrapping_sub(GUARD)..running.mem.wrapping_add((1 << 32) + GUARD);
    if !(running.arena..running.arena + running.arena_len).contains(&rip) || !reservation.contains(&addr) {
        return false;
    }
    let offset = rip - running.arena;
    // SAFETY: `sites`/`count` describe a slice that the `Entered` guard keeps borrowed for as
    // long as `RUNNING` names it (it restores the previous value when dropped).
    let sites = unsafe { std::slice::from_raw_parts(running.sites, running.count) };
    // The last site starting at or before the offset.
    let after = sites.partition_point(|s| s.0 as usize <= offset);
    let Some(&(_, to, resume)) = after.checked_sub(1).map(|i| &sites[i]) else { return false };
    if offset >= to as usize {
        return false;
    }
    #[allow(clippy::cast_possible_wrap, reason = "a host address")]
    let target = (running.arena + resume as usize) as i64;
    gregs[libc::REG_RIP as usize] = target;
    let _ = RESUMED.try_with(|n| n.set(n.get() + 1));
    true
}

/// Hands the signal to the action installed before ours, as if ours were not there.
///
/// # Safety
/// As for [`resume`]; called from the signal handler only.
unsafe fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some(previous) = PREVIOUS.get() else { return };
    let Some(at) = SIGNALS.iter().position(|&s| s == sig) else { return };
    let old = &previous.0[at];
    if old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN {
        // Put the old action back and return: the faulting instruction runs again and faults
        // under it (the default action for a fault: the process dies of the signal).
        // SAFETY: restores a `sigaction` value the kernel gave us.
        unsafe { libc::sigaction(sig, old, std::ptr::null_mut()) };
    } else if old.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: an `SA_SIGINFO` handler has this signature; it gets what the kernel gave us.
        unsafe {
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(old.sa_sigaction);
            handler(sig, info, context);
        }
    } else {
        // SAFETY: a handler without `SA_SIGINFO` takes the signal number only.
        unsafe {
            let handler: extern "C" fn(libc::c_int) = std::mem::transmute(old.sa_sigaction);
            handler(sig);
        }
    }
}
