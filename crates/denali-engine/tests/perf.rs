//! Speed measurement (ignored by default): run with
//! `cargo test --release -p denali-engine --test perf -- --ignored --nocapture`.
mod common;
use common::*;
use denali_engine::{Cpu, Engine, Exit, GuestMemory, Interpreter};
use iced_x86::code_asm::*;
use std::time::Instant;

const BUF: u32 = 0x10_0000;

fn measure(name: &str, code: &[u8]) -> f64 {
    let mut mem = GuestMemory::new(0x40_0000).unwrap();
    mem.write(CODE, code).unwrap();
    let mut cpu = Cpu::new(CODE, 0x8_0000);
    let mut engine = Interpreter::new();
    let start = Instant::now();
    let exit = engine.run(&mut cpu, &mut mem, u64::MAX);
    let secs = start.elapsed().as_secs_f64();
    assert!(matches!(exit, Exit::Terminate { .. }), "{name}: {exit:?}");
    let mips = cpu.instructions as f64 / secs / 1e6;
    println!("{name}: {} instructions in {secs:.3} s = {mips:.0} MIPS (eax = {:#x})", cpu.instructions, cpu.regs[0]);
    mips
}

/// Sieve of Eratosthenes over 1,000,000 bytes, repeated 20 times.
fn sieve() -> Vec<u8> {
    const N: u32 = 1_000_000;
    assemble(|a| {
        let (mut rep_top, mut outer, mut inner, mut next, mut done, mut count) = (
            a.create_label(),
            a.create_label(),
            a.create_label(),
            a.create_label(),
            a.create_label(),
            a.create_label(),
        );
        a.mov(esi, 20)?;
        a.set_label(&mut rep_top)?;
        a.mov(edi, BUF)?;
        a.mov(ecx, N)?;
        a.mov(al, 1)?;
        a.rep().stosb()?;
        a.mov(ebx, 2)?;
        a.set_label(&mut outer)?;
        a.mov(eax, ebx)?;
        a.imul_2(eax, ebx)?;
        a.cmp(eax, N)?;
        a.jae(done)?;
        a.cmp(byte_ptr(ebx + BUF), 0)?;
        a.je(next)?;
        a.set_label(&mut inner)?;
        a.mov(byte_ptr(eax + BUF), 0)?;
        a.add(eax, ebx)?;
        a.cmp(eax, N)?;
        a.jb(inner)?;
        a.set_label(&mut next)?;
        a.inc(ebx)?;
        a.jmp(outer)?;
        a.set_label(&mut done)?;
        a.dec(esi)?;
        a.jnz(rep_top)?;
        // Count the primes below N.
        a.xor(eax, eax)?;
        a.mov(ecx, 2)?;
        a.set_label(&mut count)?;
        a.movzx(edx, byte_ptr(ecx + BUF))?;
        a.add(eax, edx)?;
        a.inc(ecx)?;
        a.cmp(ecx, N)?;
        a.jb(count)?;
        a.int(0xd0)
    })
}

/// Bitwise CRC-32 of 1 MiB, as compilers emit it for the textbook loop.
fn crc32() -> Vec<u8> {
    assemble(|a| {
        let (mut byte_loop, mut bit_loop, mut skip) = (a.create_label(), a.create_label(), a.create_label());
        a.mov(esi, BUF)?;
        a.mov(ecx, 0x10_0000)?;
        a.mov(eax, 0xFFFF_FFFFu32)?;
        a.set_label(&mut byte_loop)?;
        a.movzx(edx, byte_ptr(esi))?;
        a.xor(eax, edx)?;
        a.mov(edx, 8)?;
        a.set_label(&mut bit_loop)?;
        a.shr(eax, 1)?;
        a.jae(skip)?;
        a.xor(eax, 0xEDB8_8320u32)?;
        a.set_label(&mut skip)?;
        a.dec(edx)?;
        a.jnz(bit_loop)?;
        a.inc(esi)?;
        a.dec(ecx)?;
        a.jnz(byte_loop)?;
        a.not(eax)?;
        a.int(0xd0)
    })
}

/// Recursive fib(27).
fn fib() -> Vec<u8> {
    assemble(|a| {
        let (mut f, mut small) = (a.create_label(), a.create_label());
        a.mov(eax, 27)?;
        a.call(f)?;
        a.int(0xd0)?;
        a.set_label(&mut f)?;
        a.cmp(eax, 2)?;
        a.jb(small)?;
        a.push(eax)?;
        a.dec(eax)?;
        a.call(f)?;
        a.xchg(dword_ptr(esp), eax)?;
        a.sub(eax, 2)?;
        a.call(f)?;
        a.pop(edx)?;
        a.add(eax, edx)?;
        a.set_label(&mut small)?;
        a.ret()
    })
}

#[test]
#[ignore = "speed measurement; run in release"]
fn mips() {
    let s = measure("sieve", &sieve());
    let c = measure("crc32", &crc32());
    let f = measure("fib", &fib());
    println!("geometric mean: {:.0} MIPS", (s * c * f).cbrt());
}

#[test]
fn benchmarks_compute_the_right_answers() {
    // Small enough for debug builds: only the answers matter here.
    let mut vm = Vm::new(&fib());
    vm.mem = GuestMemory::new(0x40_0000).unwrap();
    vm.mem.write(CODE, &fib()).unwrap();
    vm.finish();
    assert_eq!(vm.reg(0), 196_418);
}
