//! A basic-block JIT for Denali guests on x86-64 hosts (issue #4, first version).
//!
//! Guest code is translated a basic block at a time into x86-64 host code; whatever the JIT
//! does not translate runs in the portable interpreter one instruction at a time, so
//! correctness never depends on translation coverage. See `DESIGN.md` for every decision.
//!
//! On hosts that are not x86-64 Unix (the arena needs `mprotect`), or lack BMI2, [`Jit::new`]
//! returns `None` and callers use the interpreter.

#[cfg(all(target_arch = "x86_64", unix))]
mod x64;

#[cfg(all(target_arch = "x86_64", unix))]
pub use x64::{Jit, JitStats, SharedJit, TIER_UP};

/// The engines of a fleet's VMs: each call makes a tiered JIT ([`Jit::sharing`]) where this
/// host can run one, else an interpreter; all of them share one cache of decoded blocks and
/// one of translations (a block is reused only where a VM's memory holds the same bytes).
pub fn fleet_engines() -> impl Fn() -> Box<dyn denali_engine::Engine> + Send + Sync + 'static {
    let code = denali_engine::SharedCode::new();
    let translations = SharedJit::new();
    move || match Jit::sharing(std::sync::Arc::clone(&code), std::sync::Arc::clone(&translations)) {
        Some(jit) => Box::new(jit),
        None => Box::new(denali_engine::Interpreter::sharing(std::sync::Arc::clone(&code))),
    }
}

/// Stand-in on hosts without a backend: holds nothing.
#[cfg(not(all(target_arch = "x86_64", unix)))]
pub struct SharedJit;

#[cfg(not(all(target_arch = "x86_64", unix)))]
impl SharedJit {
    /// An empty stand-in (no JIT runs on this host).
    pub fn new() -> std::sync::Arc<SharedJit> {
        std::sync::Arc::new(SharedJit)
    }
}

/// Stand-in on hosts without a backend: it can never be constructed.
#[cfg(not(all(target_arch = "x86_64", unix)))]
pub struct Jit {
    never: std::convert::Infallible,
}

#[cfg(not(all(target_arch = "x86_64", unix)))]
impl Jit {
    /// Always `None`: this host has no JIT backend.
    pub fn new() -> Option<Jit> {
        None
    }

    /// Always `None`: this host has no JIT backend.
    pub fn tiered(_shared: std::sync::Arc<denali_engine::SharedCode>) -> Option<Jit> {
        None
    }

    /// Always `None`: this host has no JIT backend.
    pub fn sharing(
        _code: std::sync::Arc<denali_engine::SharedCode>,
        _translations: std::sync::Arc<SharedJit>,
    ) -> Option<Jit> {
        None
    }

    /// Always false: this host has no JIT backend.
    pub fn available() -> bool {
        false
    }
}

#[cfg(not(all(target_arch = "x86_64", unix)))]
impl denali_engine::Engine for Jit {
    fn run(
        &mut self,
        _cpu: &mut denali_engine::Cpu,
        _memory: &mut denali_engine::GuestMemory,
        _budget: u64,
    ) -> denali_engine::Exit {
        match self.never {}
    }
}
