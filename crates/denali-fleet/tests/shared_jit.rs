//! A fleet under the JIT with shared translations (`denali_jit::Jit::sharing`, what
//! `denali_jit::fleet_engines` makes): many VMs of a few images, one of which rewrites its
//! own code, on two worker threads with short quanta (so VMs move between threads and run
//! each other's translations): every VM ends exactly as under the interpreter, and the VMs
//! took most of their blocks from one another instead of translating them.

use std::sync::{Arc, Mutex};

use denali_engine::{Cpu, Engine, Exit, GuestMemory, SharedCode};
use denali_fleet::{EngineFactory, Fleet, FleetConfig, VmSpec};
use denali_jit::{Jit, SharedJit};
use denali_kernel::Image;

const LOAD: u32 = 0x1000;

/// Calls F (`add eax, k; ret`, at 0x2000) 2,000 times; when `rewrite`, turns F's `add` into
/// `sub` and calls it 2,000 times more; terminates with EAX.
fn image(k: u32, rewrite: bool) -> Arc<Image> {
    let store: [u8; 7] =
        if rewrite { [0xC6, 0x05, 0x00, 0x20, 0x00, 0x00, 0x2D] } else { [0x0F, 0x1F, 0x80, 0, 0, 0, 0] };
    let mut code = vec![
        0xB9, 0xD0, 0x07, 0x00, 0x00, // 0x1000 mov ecx, 2000
        0xE8, 0xF6, 0x0F, 0x00, 0x00, // 0x1005 L1: call F
        0x49, // 0x100A dec ecx
        0x75, 0xF8, // 0x100B jnz L1
    ];
    code.extend_from_slice(&store); // 0x100D mov byte [F], 0x2D (sub eax, imm32), or nop
    code.extend_from_slice(&[
        0xB9, 0xD0, 0x07, 0x00, 0x00, // 0x1014 mov ecx, 2000
        0xE8, 0xE2, 0x0F, 0x00, 0x00, // 0x1019 L2: call F
        0x49, // 0x101E dec ecx
        0x75, 0xF8, // 0x101F jnz L2
        0xCD, 0xD0, // 0x1021 terminate
    ]);
    code.resize(0x1000, 0);
    code.push(0x05);
    code.extend_from_slice(&k.to_le_bytes());
    code.push(0xC3);
    Arc::new(Image::flat(&code, LOAD, None).unwrap())
}

/// A JIT that adds its statistics to a total when its VM ends.
struct Counted {
    jit: Jit,
    total: Arc<Mutex<(u64, u64)>>,
}

impl Engine for Counted {
    fn run(&mut self, cpu: &mut Cpu, memory: &mut GuestMemory, budget: u64) -> Exit {
        self.jit.run(cpu, memory, budget)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let stats = self.jit.stats();
        let mut total = self.total.lock().unwrap();
        total.0 += stats.translations;
        total.1 += stats.shared_hits;
    }
}

#[test]
fn a_fleet_sharing_translations_across_threads_ends_as_under_the_interpreter() {
    if !Jit::available() {
        println!("note: no JIT on this host; nothing to test");
        return;
    }
    let images = [image(3, false), image(5, false), image(3, true), image(7, true)];
    let specs: Vec<VmSpec> = (0..64).map(|i| VmSpec::new(Arc::clone(&images[i % 4]), 64 << 10)).collect();
    let run = |engine: Option<EngineFactory>| {
        let mut config = FleetConfig::new();
        config.threads = 2;
        config.quantum = 37;
        if let Some(engine) = engine {
            config.engine = engine;
        }
        Fleet::new(config).run(&specs)
    };
    let want = run(None);
    let code = SharedCode::new();
    let translations = SharedJit::new();
    let total = Arc::new(Mutex::new((0, 0)));
    let factory: EngineFactory = {
        let (translations, total) = (Arc::clone(&translations), Arc::clone(&total));
        Arc::new(move || {
            let jit = Jit::sharing(Arc::clone(&code), Arc::clone(&translations)).expect("checked available");
            Box::new(Counted { jit, total: Arc::clone(&total) }) as Box<dyn Engine>
        })
    };
    let got = run(Some(factory));
    assert_eq!(got.completed, 64);
    for (g, w) in got.vms.iter().zip(&want.vms) {
        assert_eq!((g.id, &g.end, g.instructions), (w.id, &w.end, w.instructions));
    }
    let (translated, shared) = *total.lock().unwrap();
    println!("{} blocks shared; VMs translated {translated} and took {shared}", translations.blocks());
    // Each of the 64 VMs runs 5 to 7 hot blocks; a few VMs translate them, the rest take them.
    assert!(shared >= 4 * 64, "{translated} translated, {shared} shared");
    assert!(translated <= 64, "{translated} translated, {shared} shared");
}
