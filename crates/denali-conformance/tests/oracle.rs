//! The native oracle against cases whose results are known by hand. Every test is skipped
//! (with a message, not a failure) when the host cannot run the oracle.

use std::time::{Duration, Instant};

use denali_conformance::case::{Case, MEMORY_SIZE, Region, State, Stop};
use denali_conformance::oracle::{Observed, Oracle, OracleError};

const EIP: u32 = 0x10_0000;
const DATA: u32 = 0x20_0000;
const STACK: u32 = 0x30_0000;

fn oracle() -> Option<Oracle> {
    match Oracle::start() {
        Ok(oracle) => Some(oracle),
        Err(OracleError::Unavailable(why)) => {
            eprintln!("skipped: the native oracle is unavailable: {why}");
            None
        }
        Err(e) => panic!("starting the oracle: {e}"),
    }
}

/// EAX ECX EDX EBX ESP EBP ESI EDI.
fn case(code: &[u8], regs: [u32; 8], memory: Vec<Region>) -> Case {
    Case { form: "test".into(), code: code.to_vec(), init: State::with_regs(regs, EIP, 0x202), memory }
}

fn run(oracle: &mut Oracle, case: &Case) -> Observed {
    oracle.run(case).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn add_sets_the_result_and_every_status_flag() {
    let Some(mut o) = oracle() else { return };
    // add eax, ebx: 0x7FFF_FFFF + 1 = 0x8000_0000. OF (signed overflow), SF, AF (carry out of
    // bit 3), PF (low byte 0x00 has even parity); no CF, no ZF.
    let got = run(&mut o, &case(&[0x01, 0xd8], [0x7FFF_FFFF, 0, 0, 1, STACK, 0, 0, 0], vec![]));
    assert_eq!(got.stop, None);
    assert_eq!(got.state.eax, 0x8000_0000);
    assert_eq!(got.state.eip, EIP + 2);
    assert_eq!(got.state.eflags, 0x202 | 0x800 | 0x80 | 0x10 | 0x4);
    // 0xFFFF_FFFF + 1 = 0: CF, ZF, AF, PF; no OF, no SF.
    let got = run(&mut o, &case(&[0x01, 0xd8], [0xFFFF_FFFF, 0, 0, 1, STACK, 0, 0, 0], vec![]));
    assert_eq!(got.state.eax, 0);
    assert_eq!(got.state.eflags, 0x202 | 0x1 | 0x40 | 0x10 | 0x4);
    // Flags set on entry that ADD overwrites are gone; DF (not touched by ADD) stays.
    let mut c = case(&[0x01, 0xd8], [1, 0, 0, 2, STACK, 0, 0, 0], vec![]);
    c.init.eflags = 0xED7;
    let got = run(&mut o, &c);
    assert_eq!(got.state.eax, 3);
    assert_eq!(got.state.eflags, 0x202 | 0x400 | 0x4);
    // Every other register is untouched.
    assert_eq!(got.state.regs()[1..], c.init.regs()[1..]);
}

#[test]
fn loads_and_stores_use_the_regions() {
    let Some(mut o) = oracle() else { return };
    let region = Region { addr: DATA, data: vec![0x78, 0x56, 0x34, 0x12] };
    // mov eax, [ebx]
    let got = run(&mut o, &case(&[0x8b, 0x03], [0, 0, 0, DATA, STACK, 0, 0, 0], vec![region.clone()]));
    assert_eq!(got.state.eax, 0x1234_5678);
    assert_eq!(got.memory, vec![region.clone()]);
    // mov [ebx+1], eax
    let got = run(
        &mut o,
        &case(
            &[0x89, 0x43, 0x01],
            [0xAABB_CCDD, 0, 0, DATA, STACK, 0, 0, 0],
            vec![Region { addr: DATA, data: vec![0; 6] }],
        ),
    );
    assert_eq!(got.memory, vec![Region { addr: DATA, data: vec![0, 0xDD, 0xCC, 0xBB, 0xAA, 0] }]);
    assert_eq!(got.state.eip, EIP + 3);
}

#[test]
fn divide_by_zero_stops_with_the_state_unchanged() {
    let Some(mut o) = oracle() else { return };
    let c = case(&[0xf7, 0xf1], [10, 0, 3, 0, STACK, 0, 0, 0], vec![]); // div ecx
    let got = run(&mut o, &c);
    assert_eq!(got.stop, Some(Stop::Divide));
    assert_eq!(got.state, c.init);
}

#[test]
fn accesses_at_or_above_memory_size_stop_with_the_first_such_address() {
    let Some(mut o) = oracle() else { return };
    // mov eax, [ebx]
    for (ebx, addr) in [
        (MEMORY_SIZE, MEMORY_SIZE),
        (MEMORY_SIZE - 2, MEMORY_SIZE), // straddles: the first byte of the unmapped page
        (0x0234_5678, 0x0234_5678),
        (0xFFFF_FFF0, 0xFFFF_FFF0),
        (0xFFFF_FFFE, 0xFFFF_FFFE), // wraps around to 0
    ] {
        let c = case(&[0x8b, 0x03], [0, 0, 0, ebx, STACK, 0, 0, 0], vec![]);
        let got = run(&mut o, &c);
        eprintln!("dword load at {ebx:#010x}: {:?}", got.stop);
        assert_eq!(got.stop, Some(Stop::Memory { addr }), "load at {ebx:#x}");
        assert_eq!(got.state, c.init);
    }
    // A store that straddles, and a push below an ESP of 0 (wraps to 0xFFFF_FFFC).
    let c = case(&[0x89, 0x03], [0, 0, 0, MEMORY_SIZE - 1, STACK, 0, 0, 0], vec![]);
    assert_eq!(run(&mut o, &c).stop, Some(Stop::Memory { addr: MEMORY_SIZE }));
    let c = case(&[0x50], [0, 0, 0, 0, 0, 0, 0, 0], vec![]);
    assert_eq!(run(&mut o, &c).stop, Some(Stop::Memory { addr: 0xFFFF_FFFC }));
    // Accesses that wrap past 0xFFFF_FFFF (natively #GP, or #SS on the stack, with no address)
    // stop at their first byte.
    for (what, code, regs, addr) in [
        ("push eax, esp=2", &[0x50][..], [0, 0, 0, 0, 2, 0, 0, 0], 0xFFFF_FFFE),
        ("pop eax, esp=-2", &[0x58][..], [0, 0, 0, 0, 0xFFFF_FFFE, 0, 0, 0], 0xFFFF_FFFE),
        ("movsd, edi=-2", &[0xa5][..], [0, 0, 0, 0, STACK, 0, DATA, 0xFFFF_FFFE], 0xFFFF_FFFE),
        ("mov ax, [ebx=-1]", &[0x66, 0x8b, 0x03][..], [0, 0, 0, 0xFFFF_FFFF, STACK, 0, 0, 0], 0xFFFF_FFFF),
        ("cmpxchg8b [ebx=-4]", &[0x0f, 0xc7, 0x0b][..], [0, 0, 0, 0xFFFF_FFFC, STACK, 0, 0, 0], 0xFFFF_FFFC),
    ] {
        let c = case(code, regs, vec![]);
        let got = run(&mut o, &c);
        assert_eq!((got.stop, got.state), (Some(Stop::Memory { addr }), c.init), "{what}");
    }
}

#[test]
fn cases_that_would_touch_the_helper_are_refused() {
    let Some(mut o) = oracle() else { return };
    use denali_conformance::oracle::{HELPER_BASE, HELPER_END};
    for (code, regs) in [
        (&[0x89, 0x03][..], [0, 0, 0, HELPER_BASE + 0x1000, STACK, 0, 0, 0]), // mov [ebx], eax
        (&[0x8b, 0x03][..], [0, 0, 0, HELPER_END - 2, STACK, 0, 0, 0]),
        (&[0xff, 0xe0][..], [HELPER_BASE + 0x80, 0, 0, 0, STACK, 0, 0, 0]), // jmp eax
    ] {
        let err = o.run(&case(code, regs, vec![])).unwrap_err();
        assert!(matches!(err, OracleError::BadCase(_)), "{err}");
    }
    let got = run(&mut o, &case(&[0x8b, 0x03], [0, 0, 0, HELPER_END, STACK, 0, 0, 0], vec![]));
    assert_eq!(got.stop, Some(Stop::Memory { addr: HELPER_END }));
}

#[test]
fn int3_in_the_code_is_a_breakpoint_at_the_int3() {
    let Some(mut o) = oracle() else { return };
    let c = case(&[0x40, 0xcc, 0x40], [0, 0, 0, 0, STACK, 0, 0, 0], vec![]); // inc eax; int3; inc eax
    let got = run(&mut o, &c);
    assert_eq!(got.stop, Some(Stop::Breakpoint));
    assert_eq!(got.state.eip, EIP + 1);
    assert_eq!(got.state.eax, 1);
}

#[test]
fn jumps_out_of_the_code_complete_at_the_target() {
    let Some(mut o) = oracle() else { return };
    // jmp short +0x10: lands on an INT3 of the code page.
    let got = run(&mut o, &case(&[0xeb, 0x10], [0, 0, 0, 0, STACK, 0, 0, 0], vec![]));
    assert_eq!((got.state.eip, got.stop), (EIP + 0x12, None));
    // jmp short -0x20: before the code, still on its page.
    let got = run(&mut o, &case(&[0xeb, 0xde], [0, 0, 0, 0, STACK, 0, 0, 0], vec![]));
    assert_eq!((got.state.eip, got.stop), (EIP + 2 - 0x22, None));
    // jmp eax, to another page of the window, and to beyond memory: a fetch from a page that
    // is not executable.
    for target in [0x0040_0000, 0x0200_0000, 0x0000_1000] {
        let got = run(&mut o, &case(&[0xff, 0xe0], [target, 0, 0, 0, STACK, 0, 0, 0], vec![]));
        assert_eq!((got.state.eip, got.stop), (target, None), "jmp to {target:#x}");
    }
    // call rel32 to the next page: pushes the return address.
    let got = run(
        &mut o,
        &case(
            &[0xe8, 0xfb, 0x0f, 0, 0],
            [0, 0, 0, 0, STACK, 0, 0, 0],
            vec![Region { addr: STACK - 4, data: vec![0; 4] }],
        ),
    );
    assert_eq!((got.state.eip, got.state.esp, got.stop), (EIP + 0x1000, STACK - 4, None));
    assert_eq!(got.memory[0].data, (EIP + 5).to_le_bytes());
}

#[test]
fn rep_movsb_copies_every_byte() {
    let Some(mut o) = oracle() else { return };
    let src: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(7).wrapping_add(1)).collect();
    let c = case(
        &[0xf3, 0xa4],
        [0, 100, 0, 0, STACK, 0, DATA, DATA + 0x1000],
        vec![Region { addr: DATA, data: src.clone() }, Region { addr: DATA + 0x1000, data: vec![0; 100] }],
    );
    let got = run(&mut o, &c);
    assert_eq!(got.stop, None);
    assert_eq!((got.state.ecx, got.state.esi, got.state.edi), (0, DATA + 100, DATA + 0x1000 + 100));
    assert_eq!(got.memory[1].data, src);
    assert_eq!(got.memory[0].data, src);
}

#[test]
fn a_block_of_three_instructions_runs_to_its_end() {
    let Some(mut o) = oracle() else { return };
    // mov eax, 5; add eax, ebx; shl eax, 1
    let code = [0xb8, 5, 0, 0, 0, 0x01, 0xd8, 0xd1, 0xe0];
    let got = run(&mut o, &case(&code, [0, 0, 0, 0x7FFF_FFFE, STACK, 0, 0, 0], vec![]));
    assert_eq!(got.stop, None);
    assert_eq!(got.state.eip, EIP + code.len() as u32);
    assert_eq!(got.state.eax, 0x0000_0006); // (0x7FFF_FFFE + 5) << 1, truncated
    // 0x8000_0003 << 1: CF = old bit 31, OF = CF ^ new bit 31 (1), PF of 0x06 is even.
    assert_eq!(got.state.eflags & 0x8C5, 0x1 | 0x800 | 0x4);
}

#[test]
fn many_cases_are_fast_and_memory_does_not_leak_between_them() {
    let Some(mut o) = oracle() else { return };
    // mov byte [ebx], 0xAB: writes outside any region.
    let write = case(&[0xc6, 0x03, 0xab], [0, 0, 0, DATA + 0x100, STACK, 0, 0, 0], vec![]);
    // movzx eax, byte [ebx]
    let read = case(&[0x0f, 0xb6, 0x03], [0xFFFF_FFFF, 0, 0, DATA + 0x100, STACK, 0, 0, 0], vec![]);
    // mov eax, [ebx]: reads the previous case's code page, which must be zero again (code at
    // a different page).
    let mut peek = case(&[0x8b, 0x03], [0xFFFF_FFFF, 0, 0, EIP, STACK, 0, 0, 0], vec![]);
    peek.init.eip = EIP + 0x5000;
    let n = 20_000;
    let start = Instant::now();
    for i in 0..n {
        let c = [&write, &read, &peek][i % 3];
        let got = run(&mut o, c);
        if std::ptr::eq(c, &read) || std::ptr::eq(c, &peek) {
            assert_eq!(got.state.eax, 0, "case {i} saw memory of the case before it");
        }
    }
    let elapsed = start.elapsed();
    eprintln!("run: {n} cases in {elapsed:?}: {:.0} cases/s", n as f64 / elapsed.as_secs_f64());
    assert!(elapsed < Duration::from_secs(60));

    // The same, pipelined in batches of 1000.
    let cases: Vec<Case> = (0..n).map(|i| [&write, &read, &peek][i % 3].clone()).collect();
    let start = Instant::now();
    for (b, batch) in cases.chunks(1000).enumerate() {
        for (j, got) in o.run_batch(batch).into_iter().enumerate() {
            let i = b * 1000 + j;
            let got = got.unwrap_or_else(|e| panic!("case {i}: {e}"));
            if i % 3 != 0 {
                assert_eq!(got.state.eax, 0, "case {i} saw memory of the case before it");
            }
        }
    }
    let elapsed = start.elapsed();
    eprintln!("run_batch: {n} cases in {elapsed:?}: {:.0} cases/s", n as f64 / elapsed.as_secs_f64());
}

#[test]
fn a_batch_keeps_going_past_timeouts_and_refused_cases() {
    let Some(mut o) = oracle() else { return };
    o.set_timeout(Duration::from_millis(200));
    let inc = case(&[0x40], [41, 0, 0, 0, STACK, 0, 0, 0], vec![]);
    let looping = case(&[0xeb, 0xfe], [0; 8], vec![]);
    let syscall = case(&[0xcd, 0x80], [0; 8], vec![]);
    // Large regions, so that the requests and results of the batch overfill both pipes.
    let big = case(
        &[0xf3, 0xa4],
        [0, 0x8000, 0, 0, STACK, 0, DATA, DATA + 0x10000],
        vec![Region { addr: DATA, data: vec![0x5A; 0x8000] }, Region { addr: DATA + 0x10000, data: vec![0; 0x8000] }],
    );
    let mut batch = vec![inc.clone(), looping, syscall, inc.clone()];
    batch.extend(std::iter::repeat_n(big, 20));
    let results = o.run_batch(&batch);
    assert_eq!(results.len(), batch.len());
    assert_eq!(results[0].as_ref().unwrap().state.eax, 42);
    assert!(matches!(results[1], Err(OracleError::Timeout)));
    assert!(matches!(results[2], Err(OracleError::BadCase(_))));
    assert_eq!(results[3].as_ref().unwrap().state.eax, 42);
    for got in &results[4..] {
        let got = got.as_ref().unwrap();
        assert_eq!(got.memory[1].data, vec![0x5A; 0x8000]);
        assert_eq!(got.state.ecx, 0);
    }
}

#[test]
fn pushfd_and_popfd_see_only_the_guest_flags() {
    let Some(mut o) = oracle() else { return };
    let stack = || vec![Region { addr: STACK - 8, data: vec![0; 8] }];
    // push -1; popfd; pushfd; pop eax: POPFD sets every flag user mode may (TF, AC, ID, NT
    // too); TF's single-step trap and AC are absorbed by the oracle.
    let code = [0x6a, 0xff, 0x9d, 0x9c, 0x58];
    let got = run(&mut o, &case(&code, [0, 0, 0, 0, STACK, 0, 0, 0], stack()));
    assert_eq!(got.stop, None);
    assert_eq!(got.state.eip, EIP + code.len() as u32);
    assert_eq!(got.state.eflags, 0xCD5 | 0x202);
    assert_eq!(got.state.eax & 0xCD5, 0xCD5);
    assert_eq!(got.state.esp, STACK);
    // push 0; popfd: everything clear but the fixed bits.
    let mut c = case(&[0x6a, 0x00, 0x9d], [0, 0, 0, 0, STACK, 0, 0, 0], stack());
    c.init.eflags = 0xED7;
    assert_eq!(run(&mut o, &c).state.eflags, 0x202);
    // pushfd pushes the status flags with IF and bit 1.
    let mut c = case(&[0x9c], [0, 0, 0, 0, STACK, 0, 0, 0], stack());
    c.init.eflags = 0x8D5 | 0x202;
    let got = run(&mut o, &c);
    assert_eq!(got.memory[0].data[4..], (0x8D5u32 | 0x202).to_le_bytes());
    // With AC set, a misaligned load still completes (AC is not guest state).
    let code = [0x68, 0, 0, 4, 0, 0x9d, 0x8b, 0x43, 0x01]; // push 0x40000; popfd; mov eax, [ebx+1]
    let got = run(
        &mut o,
        &case(&code, [0, 0, 0, DATA, STACK, 0, 0, 0], {
            let mut m = stack();
            m.push(Region { addr: DATA, data: vec![0, 1, 2, 3, 4, 5, 6, 7] });
            m
        }),
    );
    assert_eq!((got.stop, got.state.eax), (None, 0x0403_0201));
}

#[test]
fn an_endless_loop_times_out_and_the_next_case_runs() {
    let Some(mut o) = oracle() else { return };
    o.set_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let looping = case(&[0xeb, 0xfe], [0; 8], vec![]); // jmp $
    assert!(matches!(o.run(&looping), Err(OracleError::Timeout)));
    assert!(start.elapsed() < Duration::from_secs(5));
    let got = run(&mut o, &case(&[0x40], [41, 0, 0, 0, STACK, 0, 0, 0], vec![]));
    assert_eq!((got.state.eax, got.stop), (42, None));
}

#[test]
fn other_endings() {
    let Some(mut o) = oracle() else { return };
    // ud2: invalid opcode.
    let got = run(&mut o, &case(&[0x0f, 0x0b], [0, 0, 0, 0, STACK, 0, 0, 0], vec![]));
    assert_eq!((got.stop, got.state.eip), (Some(Stop::Invalid), EIP));
    // hlt: #GP in user mode, which has no Denali meaning here.
    let err = o.run(&case(&[0xf4], [0, 0, 0, 0, STACK, 0, 0, 0], vec![])).unwrap_err();
    assert!(matches!(err, OracleError::UnexpectedSignal { signal: 11, trapno: 13, .. }), "{err}");
    // A system call is refused, and the oracle still works.
    assert!(matches!(o.run(&case(&[0xcd, 0x80], [0; 8], vec![])), Err(OracleError::BadCase(_))));
    let got = run(&mut o, &case(&[0x90], [0, 0, 0, 0, STACK, 0, 0, 0], vec![]));
    assert_eq!(got.state.eip, EIP + 1);
    assert!(!Oracle::cpu_model().is_empty());
    assert_eq!(denali_conformance::oracle::available(), Ok(()));
    eprintln!("host CPU: {}", Oracle::cpu_model());
}
