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
    let code = SharedCode::new();
    let bytes = idle_overhead::idle_vm_overhead("tiered jit", &|| {
        Box::new(denali_jit::Jit::tiered(Arc::clone(&code)).expect("checked available")) as Box<dyn Engine>
    });
    assert!(bytes <= 16 * 1024, "host overhead {bytes} bytes per idle VM");
}
