//! `memory.rs`'s measurement under the fleets' default engine where the host has it, the
//! tiered JIT: an idle VM's code never gets hot, so it must cost about what it costs under the
//! interpreter (at most 16 KiB beyond its guest pages).

#[cfg(target_os = "linux")]
#[path = "support/idle_overhead.rs"]
mod idle_overhead;

#[cfg(target_os = "linux")]
#[test]
fn an_idle_vm_under_the_tiered_jit_costs_at_most_16_kib_beyond_its_guest_pages() {
    use denali_engine::{Engine, SharedCode};
    use std::sync::Arc;

    if !denali_jit::Jit::available() {
        println!("note: no JIT on this host; nothing to measure");
        return;
    }
    // What fleets use (`denali_jit::fleet_engines`): the shared translations are the fleet's,
    // not any VM's, and an idle VM's code never gets hot enough to fill them.
    let code = SharedCode::new();
    let translations = denali_jit::SharedJit::new();
    let bytes = idle_overhead::idle_vm_overhead("tiered jit", &|| {
        let jit = denali_jit::Jit::sharing(Arc::clone(&code), Arc::clone(&translations));
        Box::new(jit.expect("checked available")) as Box<dyn Engine>
    });
    assert!(bytes <= 16 * 1024, "host overhead {bytes} bytes per idle VM");
}
