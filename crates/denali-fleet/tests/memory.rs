//! What an idle VM costs the host beyond the guest pages it touched (issue #5's target: at
//! most 16 KiB), measured the way a fleet holds its VMs: 2,000 `idle` guests of 64 KiB booted
//! from one laid-out image, with the fleet's shared decoded code, each plugged into one switch
//! and run until its first idle. Their private guest pages are counted from
//! `/proc/self/pagemap`; the rest of the growth of the process's anonymous resident memory
//! (`RssAnon`) is host overhead. `VmRSS` would count each shared image page once per VM that
//! maps it, though it is one page of the page cache. Linux only. This file measures the
//! interpreter and `memory_jit.rs` the fleets' tiered JIT, each alone in its test binary: in a
//! shared process, memory one measurement freed would hide what the next allocates.

#[cfg(target_os = "linux")]
#[path = "support/idle_overhead.rs"]
mod idle_overhead;

#[cfg(target_os = "linux")]
#[test]
fn an_idle_vm_costs_at_most_16_kib_beyond_its_guest_pages() {
    use denali_engine::{Engine, Interpreter, SharedCode};
    use std::sync::Arc;

    let code = SharedCode::new();
    let bytes = idle_overhead::idle_vm_overhead("interp", &|| {
        Box::new(Interpreter::sharing(Arc::clone(&code))) as Box<dyn Engine>
    });
    assert!(bytes <= 16 * 1024, "host overhead {bytes} bytes per idle VM");
}
