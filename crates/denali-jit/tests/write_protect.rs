//! Guard-region mode finds stores to code by page protection: a guarded memory write-protects
//! the pages holding cached code before translated code runs, translated stores make no
//! code-page check, and a store to such a page faults and is resumed at its instruction, which
//! the interpreter runs through `GuestMemory` (making the page writable, dropping its code).
//! Each guest also runs on the interpreter and the checked mode (`common::each`), which must
//! agree.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

mod common;

use common::{each, flat, run};
use denali_engine::{Cpu, Engine, Exit, GuestMemory, SharedCode};
use denali_jit::Jit;

const MEM: u64 = 0x10_0000;

/// Runs `setup` everywhere, asserts that all agree, and returns the guarded run's registers and
/// JIT counters.
fn agree(setup: &dyn Fn(&mut GuestMemory) -> Cpu, limit: u64) -> (Cpu, denali_jit::JitStats) {
    let (want, runs) = each(MEM, setup, u64::MAX, limit);
    let mut guarded = None;
    for (mode, got, jit) in runs {
        assert_eq!(got, want, "JIT (left, {mode} mode) differs from the interpreter (right)");
        if mode == "guarded" {
            guarded = Some((got.cpu, jit.stats()));
        }
    }
    guarded.expect("a guarded memory on Linux x86-64")
}

/// A translated store rewrites a translated function: the store faults (no inline check saw
/// it), the function's translation is dropped, and the next call runs the new bytes.
#[test]
fn a_translated_store_to_translated_code_faults_and_the_new_code_runs() {
    let code = [
        0xB9, 0x03, 0x00, 0x00, 0x00, // 0x1000 mov ecx, 3
        0xE8, 0xF6, 0x1F, 0x00, 0x00, // 0x1005 L: call 0x3000
        0x49, // 0x100A dec ecx
        0x75, 0xF8, // 0x100B jnz L
        0xC6, 0x05, 0x00, 0x30, 0x00, 0x00, 0x43, // 0x100D mov byte [0x3000], 0x43 (inc ebx)
        0xE8, 0xE7, 0x1F, 0x00, 0x00, // 0x1014 call 0x3000
        0xCD, 0xD0, // 0x1019 terminate
    ];
    let setup = |mem: &mut GuestMemory| {
        let cpu = flat(&code)(mem);
        mem.write(0x3000, &[0x40, 0xC3]).unwrap(); // inc eax; ret
        cpu
    };
    let (cpu, stats) = agree(&setup, 1000);
    // The stale translation would have made EAX 4 and EBX 0.
    assert_eq!((cpu.regs[0], cpu.regs[3]), (3, 1));
    assert!(stats.guard_faults > 0, "the store was checked inline: {stats:?}");
    assert!(stats.invalidations > 0, "{stats:?}");
}

/// A translated store that starts on a page without code and ends on a protected one faults
/// as a whole (nothing of it lands) and the interpreter makes it, dropping the code.
#[test]
fn a_translated_store_straddling_into_protected_code_faults_whole() {
    let (cpu, stats) = agree(&common::straddling_store_into_code, 1000);
    assert_eq!(cpu.eip, 0x3000, "cli raises INVALID where it was written");
    assert!(stats.guard_faults > 0, "{stats:?}");
}

/// Writes from outside the guest (the kernel, a device's DMA: all through `GuestMemory`) into
/// protected code make the pages writable first (a write to a read-only page would kill the
/// process) and take effect in the next quantum, for the plain and the tiered JIT.
#[test]
fn kernel_writes_into_protected_code_take_effect_in_the_next_quantum() {
    for tiered in [false, true] {
        let mut mem = GuestMemory::guarded(MEM).unwrap();
        // 0x1000 L: inc eax; jmp L, and a page of the same at 0x2000.
        mem.write(0x1000, &[0x40, 0xEB, 0xFD]).unwrap();
        mem.write(0x2000, &[0x40, 0xEB, 0xFD]).unwrap();
        let mut cpu = Cpu::new(0x1000, mem.size());
        let mut jit = if tiered { Jit::tiered(SharedCode::new()) } else { Jit::new() }.expect("BMI2 host");
        let quanta = 2 * denali_jit::TIER_UP;
        for _ in 0..quanta {
            assert_eq!(jit.run(&mut cpu, &mut mem, 2), Exit::BudgetExhausted);
        }
        cpu.eip = 0x2000;
        for _ in 0..quanta {
            assert_eq!(jit.run(&mut cpu, &mut mem, 2), Exit::BudgetExhausted);
        }
        assert_eq!((cpu.eip, cpu.regs[0]), (0x2000, 2 * quanta));
        assert!(jit.stats().translations >= 2, "{:?}", jit.stats());
        // A disk read of two pages over both loops: inc ebx at each.
        let mut block = vec![0u8; 0x2000];
        block[..3].copy_from_slice(&[0x43, 0xEB, 0xFD]);
        block[0x1000..0x1003].copy_from_slice(&[0x43, 0xEB, 0xFD]);
        mem.write(0x1000, &block).unwrap();
        assert_eq!(jit.run(&mut cpu, &mut mem, 2), Exit::BudgetExhausted);
        assert_eq!((cpu.regs[0], cpu.regs[3]), (2 * quanta, 1), "tiered: {tiered}");
        cpu.eip = 0x1000;
        assert_eq!(jit.run(&mut cpu, &mut mem, 2), Exit::BudgetExhausted);
        assert_eq!((cpu.regs[0], cpu.regs[3]), (2 * quanta, 2), "tiered: {tiered}");
        assert!(mem.code_unprotects() >= 2, "tiered: {tiered}: the pages were not protected");
    }
}

/// A loop that stores to its own page faults and retranslates on every pass while its code
/// is protected; after a bounded number of such writes the memory stops protecting and the
/// JIT checks its stores again, with the same result.
#[test]
fn code_rewritten_on_every_pass_stops_protection_after_a_bound() {
    let code = [
        0xBB, 0x00, 0x18, 0x00, 0x00, // 0x1000 mov ebx, 0x1800
        0x89, 0x03, // 0x1005 L: mov [ebx], eax
        0x40, // 0x1007 inc eax
        0x3D, 0xE8, 0x03, 0x00, 0x00, // 0x1008 cmp eax, 1000
        0x75, 0xF6, // 0x100D jne L
        0xCD, 0xD0, // 0x100F terminate
    ];
    let (cpu, stats) = agree(&flat(&code), 100_000);
    assert_eq!(cpu.regs[0], 1000);
    assert!(stats.guard_faults > 0 && stats.guard_faults < 100, "{stats:?}");
    let mut mem = GuestMemory::guarded(MEM).unwrap();
    let start = flat(&code)(&mut mem);
    let mut jit = Jit::new().expect("BMI2 host");
    run(&mut jit, start, &mut mem, u64::MAX, 100_000);
    assert!((64..100).contains(&mem.code_unprotects()), "{} unprotects", mem.code_unprotects());
    mem.mark_code_page(1);
    assert!(!mem.protect_code_pages(), "protection stopped for this memory");
}

/// Code that only the JIT's interpreter cached (an instruction it does not translate: `inc ch`)
/// is protected too: a translated store to it faults, and the interpreter drops its decoded
/// block instead of running the stale one.
#[test]
fn a_translated_store_to_code_only_the_interpreter_cached_takes_effect() {
    let setup = |mem: &mut GuestMemory| {
        mem.write(
            0x1000,
            &[
                0xE8, 0xF9, 0x1F, 0x00, 0x00, // 0x1000 call 0x2FFE
                0xC6, 0x05, 0xFF, 0x2F, 0x00, 0x00, 0xC1, // 0x1005 mov byte [0x2FFF], 0xC1: inc cl
                0xE8, 0xED, 0x1F, 0x00, 0x00, // 0x100C call 0x2FFE
                0xCD, 0xD0, // 0x1011 terminate
            ],
        )
        .unwrap();
        // 0x2FFE inc ch (interpreted; the page holds no translated code), 0x3000 ret
        mem.write(0x2FFE, &[0xFE, 0xC5, 0xC3]).unwrap();
        Cpu::new(0x1000, mem.size())
    };
    let (cpu, stats) = agree(&setup, 1000);
    // The stale block would have made ECX 0x200.
    assert_eq!(cpu.regs[1], 0x101);
    assert!(stats.guard_faults > 0, "{stats:?}");
}

/// A disk read (the device's DMA through `GuestMemory`) over a translated function: the page
/// was protected, the device's write makes it writable and drops the translation, and the
/// next call runs the bytes read. The same outcome and state as under the interpreter.
#[test]
fn a_disk_read_into_translated_code_takes_effect() {
    use denali_kernel::{DiskImage, Image, Outcome, Vm, VmConfig};
    let dir = std::env::temp_dir().join(format!("denali-jit-write-protect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("disk.img");
    let mut block = vec![0u8; 4096];
    block[..6].copy_from_slice(&[0xB8, 0x2A, 0x00, 0x00, 0x00, 0xC3]); // mov eax, 42; ret
    std::fs::write(&path, &block).unwrap();
    let mut image = vec![0u8; 0x2006];
    let code = [
        0xE8, 0xFB, 0x1F, 0x00, 0x00, // 0x1000 call 0x3000 (translates it: EAX = 7)
        0x89, 0xC6, // 0x1005 mov esi, eax
        // A disk request block at 0x8000: read block 0 of disk 0 into 0x3000.
        0xC7, 0x05, 0x00, 0x80, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // 0x1007 mov dword [0x8000], 1
        0xC7, 0x05, 0x04, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 0x1011 mov dword [0x8004], 0
        0xC7, 0x05, 0x08, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 0x101B mov dword [0x8008], 0
        0xC7, 0x05, 0x0C, 0x80, 0x00, 0x00, 0x00, 0x30, 0x00, 0x00, // 0x1025 mov dword [0x800C], 0x3000
        0xB8, 0x00, 0x80, 0x00, 0x00, // 0x102F mov eax, 0x8000
        0xE7, 0x40, // 0x1034 out DISK_REQUEST, eax
        0x83, 0x3D, 0x14, 0x80, 0x00, 0x00, 0xFF, // 0x1036 L: cmp dword [0x8014], PENDING
        0x74, 0xF7, // 0x103D je L
        0xE8, 0xBC, 0x1F, 0x00, 0x00, // 0x103F call 0x3000
        0xCD, 0xD0, // 0x1044 terminate
    ];
    image[..code.len()].copy_from_slice(&code);
    image[0x2000..].copy_from_slice(&[0xB8, 0x07, 0x00, 0x00, 0x00, 0xC3]); // 0x3000 mov eax, 7; ret
    let image = Image::flat(&image, 0x1000, Some(0x1000)).unwrap();
    let config = VmConfig::default();
    let run = |engine: Box<dyn Engine>, memory: GuestMemory| {
        let mut vm = Vm::new_in(&image, memory, config.vm_id, engine, Box::new(std::io::sink())).unwrap();
        vm.attach_disk(DiskImage::open(&path, true).unwrap());
        let outcome = vm.run(Some(10_000_000)).unwrap();
        (outcome, *vm.cpu(), vm.memory().code_unprotects())
    };
    let size = u64::from(config.mem_size);
    let (want, want_cpu, _) = run(Box::new(denali_engine::Interpreter::new()), GuestMemory::new(size).unwrap());
    assert!(matches!(want, Outcome::Terminated(_)), "{want:?}");
    assert_eq!((want_cpu.regs[6], want_cpu.regs[0]), (7, 42));
    let (got, got_cpu, unprotects) = run(Box::new(Jit::new().expect("BMI2 host")), GuestMemory::guarded(size).unwrap());
    assert_eq!((got, got_cpu), (want, want_cpu));
    assert!(unprotects > 0, "the translated function's page was not protected when the disk wrote it");
    let _ = std::fs::remove_dir_all(&dir);
}
