//! The run loop, ports, delivery and the register page, driven by a scripted engine so that
//! each exit the kernel must serve is produced exactly.

mod common;

use common::{Output, Scripted, Step, flat, retire, with_eax};
use denali_abi::{block, port, status, vreg};
use denali_engine::{Exception, ExceptionKind, Exit, reg};
use denali_kernel::{FaultCause, Outcome, Vm, VmConfig, vregs};

const MEM: u32 = 1 << 20;

fn vm(steps: Vec<Step>) -> (Vm, Output) {
    vm_with(steps, VmConfig { mem_size: MEM, vm_id: 3 })
}

fn vm_with(steps: Vec<Step>, config: VmConfig) -> (Vm, Output) {
    let out = Output::default();
    let vm = Vm::new(&flat(&[0x90; 16]), config, Box::new(Scripted::new(steps)), Box::new(out.clone())).unwrap();
    (vm, out)
}

fn read(vm: &Vm, offset: u32) -> u32 {
    vm.memory().read_u32(offset).unwrap()
}

fn out(port: u16, value: u32) -> Exit {
    Exit::PortOut { port, width: 4, value, len: 1 }
}

fn terminate(status: u32) -> Exit {
    Exit::Terminate { status, len: 2 }
}

fn fault(outcome: Outcome) -> denali_kernel::Fault {
    match outcome {
        Outcome::Fault(f) => *f,
        other => panic!("expected a fault, got {other:?}"),
    }
}

/// A step that writes a BUFFER block at 0x8000 naming `len` bytes at `addr`, and OUTs it.
fn console_write(addr: u32, len: u32) -> Step {
    Box::new(move |cpu, memory, _| {
        memory.write_u32(0x8000, addr).unwrap();
        memory.write_u32(0x8004, len).unwrap();
        memory.write_u32(0x8008, 0xAAAA).unwrap();
        cpu.regs[reg::EAX] = 0x8000;
        out(port::CONSOLE_WRITE, 0x8000)
    })
}

#[test]
fn register_page_after_boot() {
    let (vm, _) = vm(vec![]);
    assert_eq!(read(&vm, vreg::MAGIC), 0x494C_4E44);
    assert_eq!(vm.memory().bytes(0, 4).unwrap(), b"DNLI");
    assert_eq!(read(&vm, vreg::ABI_VERSION), 1);
    assert_eq!(read(&vm, vreg::CPU_KHZ), 1_000_000);
    assert_eq!(read(&vm, vreg::MEM_SIZE), MEM);
    assert_eq!(vm.memory().read_u64(vreg::TIME_US).unwrap(), 0);
    assert_eq!(read(&vm, vreg::VM_ID), 3);
    for offset in [vreg::IRQ_ENABLE, vreg::IRQ_PENDING, vreg::IRQ_HANDLER, vreg::EXC_HANDLER] {
        assert_eq!(read(&vm, offset), 0);
    }
    assert_eq!(vm.memory().bytes(vreg::MAC, 6).unwrap(), &[2, 0, 0, 0, 0, 3]);
    for offset in [vreg::FAULT_KIND, vreg::FAULT_EIP, vreg::FAULT_ADDR] {
        assert_eq!(read(&vm, offset), 0);
    }
    // The reserved rest of the page is never written.
    assert!(vm.memory().bytes(0x40, 0x1000 - 0x40).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn boot_cpu_state() {
    let (vm, _) = vm(vec![]);
    let cpu = vm.cpu();
    assert_eq!(cpu.eip, 0x1000);
    assert_eq!(cpu.regs[reg::ESP], MEM);
    assert_eq!(cpu.eflags, 0x202);
    assert_eq!(cpu.instructions, 0);
    assert!(cpu.regs.iter().enumerate().all(|(i, &r)| i == reg::ESP || r == 0));
}

#[test]
fn time_advances_between_slices() {
    let steps: Vec<Step> = vec![
        Box::new(|_, _, _| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            Exit::BudgetExhausted
        }),
        Box::new(|cpu, memory, _| {
            cpu.regs[reg::EAX] = memory.read_u64(vreg::TIME_US).unwrap() as u32;
            terminate(0)
        }),
    ];
    let (mut vm, _) = vm(steps);
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0));
    assert!(vm.cpu().regs[reg::EAX] >= 5000, "TIME_US = {}", vm.cpu().regs[reg::EAX]);
}

/// A clock whose readings are set by the test, so it can go back.
#[derive(Debug, Default)]
struct SetClock(std::sync::atomic::AtomicU64);

impl denali_kernel::Clock for SetClock {
    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn wait(&self, _: Option<std::time::Duration>, _: &denali_kernel::Doorbell) {}
}

#[test]
fn time_never_goes_back_when_the_clock_does() {
    // Two threads' readings of one clock may disagree by a little; a VM moving between
    // them must still see its time only move forward.
    let (mut vm, _) = vm(vec![retire(1), retire(1), retire(1)]);
    let clock = std::sync::Arc::new(SetClock::default());
    vm.set_clock(clock.clone());
    let set = |micros| clock.0.store(micros, std::sync::atomic::Ordering::SeqCst);
    let time = |vm: &Vm| vm.memory().read_u64(vreg::TIME_US).unwrap();
    set(5_000);
    vm.run_quantum(1).unwrap();
    assert_eq!(time(&vm), 5_000);
    set(4_000);
    vm.run_quantum(1).unwrap();
    assert_eq!(time(&vm), 5_000, "TIME_US went back with the clock");
    set(6_000);
    vm.run_quantum(1).unwrap();
    assert_eq!(time(&vm), 6_000);
}

#[test]
fn terminate_reports_status_and_retires() {
    let (mut vm, _) = vm(vec![with_eax(7, terminate(7))]);
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(7));
    assert_eq!(vm.cpu().eip, 0x1002);
    assert_eq!(vm.cpu().instructions, 1);
    // A stopped VM stays stopped.
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(7));
}

#[test]
fn console_putc_writes_the_low_byte() {
    let (mut vm, console) =
        vm(vec![with_eax(0x4148, out(port::CONSOLE_PUTC, 0x4148)), with_eax(0x169, out(port::CONSOLE_PUTC, 0x169))]);
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0xDEAD));
    assert_eq!(console.text(), "Hi");
    assert_eq!(vm.cpu().eip, 0x1002 + 2);
    assert_eq!(vm.cpu().instructions, 3);
}

#[test]
fn console_write_sends_a_buffer() {
    let steps: Vec<Step> = vec![
        Box::new(|_, memory, _| {
            memory.write(0x9000, b"hello, world\n").unwrap();
            Exit::BudgetExhausted
        }),
        console_write(0x9000, 13),
    ];
    let (mut vm, console) = vm(steps);
    vm.run(None).unwrap();
    assert_eq!(console.text(), "hello, world\n");
    assert_eq!(read(&vm, 0x8000 + block::buffer::STATUS), status::OK);
}

#[test]
fn console_write_statuses() {
    for (addr, len, expected) in [
        (0x9000, 0, status::OK),
        (0x0F00, 16, status::BAD_ADDR),
        (MEM - 4, 8, status::BAD_ADDR),
        (0xFFFF_FFF0, 0x20, status::BAD_ADDR),
        (0x9000, (1 << 20) + 1, status::BAD_LEN),
    ] {
        let (mut vm, console) = vm(vec![console_write(addr, len)]);
        assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0xDEAD));
        assert_eq!(read(&vm, 0x8008), expected, "addr {addr:#x} len {len:#x}");
        assert_eq!(console.text(), "");
        assert_eq!(vm.cpu().instructions, 2, "the OUT completes whatever the status");
    }
}

#[test]
fn bad_request_blocks_raise_port() {
    for block_addr in [0x8002, 0x0100, MEM - 8, 0xFFFF_FFFC] {
        let step: Step = with_eax(block_addr, out(port::CONSOLE_WRITE, block_addr));
        let (mut vm, _) = vm(vec![step]);
        let f = fault(vm.run(None).unwrap());
        assert_eq!(f.exception().unwrap().kind, ExceptionKind::Port, "block at {block_addr:#x}");
        assert_eq!(vm.cpu().instructions, 0);
    }
}

#[test]
fn unknown_ports_wrong_width_and_wrong_direction_raise_port() {
    let cases = [
        Exit::PortOut { port: 0x99, width: 4, value: 0, len: 1 },
        Exit::PortOut { port: port::CONSOLE_PUTC, width: 1, value: 0x41, len: 1 },
        Exit::PortIn { port: port::CONSOLE_PUTC, width: 4, len: 1 },
        Exit::PortOut { port: port::KBD_GETC, width: 4, value: 0, len: 1 },
        Exit::PortIn { port: 0x12, width: 4, len: 2 },
        Exit::PortIn { port: port::KBD_GETC, width: 2, len: 2 },
    ];
    for exit in cases {
        let (mut vm, console) = vm(vec![Box::new(move |_, _, _| exit)]);
        let f = fault(vm.run(None).unwrap());
        assert_eq!(f.cause, FaultCause::Unhandled(Exception { kind: ExceptionKind::Port, eip: 0x1000, addr: 0 }));
        assert_eq!(read(&vm, vreg::FAULT_KIND), 5);
        assert_eq!(read(&vm, vreg::FAULT_EIP), 0x1000);
        assert_eq!(console.text(), "");
        let text = f.to_string();
        assert!(text.starts_with("guest fault: port exception"), "{text}");
        assert!(text.contains("0x00001000: 90  nop"), "{text}");
    }
}

#[test]
fn keyboard_without_input_answers_no_input() {
    let (mut vm, _) = vm(vec![Box::new(|_, _, _| Exit::PortIn { port: port::KBD_GETC, width: 4, len: 1 })]);
    vm.run(None).unwrap();
    assert_eq!(vm.cpu().regs[reg::EAX], 0xFFFF_FFFF);
}

#[test]
fn devices_a_bare_vm_lacks_answer_with_a_status() {
    // No disk is attached; a zeroed BUFFER block has length 0, too short for a frame to send,
    // and address 0, in page 0, for a frame to receive into.
    for (p, status_offset, expected) in [
        (port::DISK_REQUEST, block::disk::STATUS, status::NO_DEVICE),
        (port::NIC_SEND, block::buffer::STATUS, status::BAD_LEN),
        (port::NIC_RECV, block::buffer::STATUS, status::BAD_ADDR),
    ] {
        let (mut vm, _) = vm(vec![with_eax(0x8000, out(p, 0x8000))]);
        assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0xDEAD));
        assert_eq!(read(&vm, 0x8000 + status_offset), expected, "port {p:#x}");
    }
    for p in [port::TIMER_ONESHOT, port::TIMER_PERIODIC] {
        let (mut vm, _) = vm(vec![with_eax(1000, out(p, 1000))]);
        assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0xDEAD));
    }
}

/// Sets `EXC_HANDLER` and ESP, then raises `kind` at 0x1004.
fn raise(kind: ExceptionKind, addr: u32, handler: u32, esp: u32) -> Step {
    Box::new(move |cpu, memory, _| {
        memory.write_u32(vreg::EXC_HANDLER, handler).unwrap();
        cpu.regs[reg::ESP] = esp;
        cpu.eip = 0x1004;
        cpu.eflags = 0x202 | 0x41;
        Exit::Exception(Exception { kind, eip: 0x1004, addr })
    })
}

#[test]
fn exceptions_go_to_the_handler_with_a_frame() {
    let (mut vm, _) =
        vm(vec![raise(ExceptionKind::Memory, 0x0010_0000, 0x2000, 0x9000), Box::new(|_, _, _| terminate(1))]);
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(1));
    let cpu = *vm.cpu();
    assert_eq!(cpu.eip, 0x2000 + 2, "the handler ran, then terminated");
    assert_eq!(cpu.regs[reg::ESP], 0x9000 - 16);
    let frame: Vec<u32> = (0..4).map(|i| read(&vm, 0x9000 - 16 + 4 * i)).collect();
    assert_eq!(frame, [3, 0x0010_0000, 0x243, 0x1004]);
    assert_eq!(read(&vm, vreg::FAULT_KIND), 3);
    assert_eq!(read(&vm, vreg::FAULT_EIP), 0x1004);
    assert_eq!(read(&vm, vreg::FAULT_ADDR), 0x0010_0000);
}

#[test]
fn breakpoint_returns_after_the_int3() {
    let (mut vm, _) = vm(vec![raise(ExceptionKind::Breakpoint, 0, 0x2000, 0x9000)]);
    vm.run(None).unwrap();
    assert_eq!(read(&vm, 0x9000 - 4), 0x1005);
    assert_eq!(read(&vm, 0x9000 - 16), 4);
    assert_eq!(vm.cpu().instructions, 2, "the int3 and the terminate retired");
}

#[test]
fn exceptions_without_a_handler_are_fatal() {
    let (mut vm, _) = vm(vec![raise(ExceptionKind::Divide, 0, 0, 0x9000)]);
    let f = fault(vm.run(None).unwrap());
    assert_eq!(f.cause, FaultCause::Unhandled(Exception { kind: ExceptionKind::Divide, eip: 0x1004, addr: 0 }));
    assert_eq!(f.cpu.eip, 0x1004);
    assert_eq!(f.cpu.regs[reg::ESP], 0x9000, "nothing was pushed");
    assert_eq!(read(&vm, vreg::FAULT_KIND), 1);
    let text = f.to_string();
    assert!(text.contains("divide exception"), "{text}");
    assert!(text.contains("eax=00000000"), "{text}");
    assert!(text.contains("eflags=00000243"), "{text}");
    assert!(text.contains("instructions retired: 0"), "{text}");
}

#[test]
fn memory_fault_diagnostic_names_the_address() {
    let (mut vm, _) = vm(vec![raise(ExceptionKind::Memory, 0xFFFF_FFF0, 0, 0x9000)]);
    let text = fault(vm.run(None).unwrap()).to_string();
    assert!(text.contains("address 0xfffffff0"), "{text}");
}

#[test]
fn fault_outside_memory_says_so() {
    let step: Step = Box::new(|cpu, _, _| {
        cpu.eip = 0x4000_0000;
        Exit::Exception(Exception { kind: ExceptionKind::Memory, eip: 0x4000_0000, addr: 0x4000_0000 })
    });
    let (mut vm, _) = vm(vec![step]);
    let f = fault(vm.run(None).unwrap());
    assert_eq!(f.disasm, "<outside memory>");
}

#[test]
fn a_stack_outside_memory_is_a_double_fault() {
    for esp in [0, MEM + 8, 6] {
        let (mut vm, _) = vm(vec![raise(ExceptionKind::Invalid, 0, 0x2000, esp)]);
        let f = fault(vm.run(None).unwrap());
        assert!(
            matches!(
                f.cause,
                FaultCause::DoubleFault {
                    exception: Exception { kind: ExceptionKind::Invalid, .. },
                    stack_addr: Some(_)
                }
            ),
            "esp {esp:#x}: {:?}",
            f.cause
        );
        assert_eq!(f.cpu.eip, 0x1004, "the state is the one at the first exception");
        assert_eq!(f.cpu.regs[reg::ESP], esp);
        assert!(f.to_string().starts_with("guest double fault"), "{f}");
    }
}

#[test]
fn a_handler_that_faults_at_once_is_a_double_fault() {
    let again: Step = Box::new(|cpu, _, _| {
        assert_eq!(cpu.eip, 0x2000);
        Exit::Exception(Exception { kind: ExceptionKind::Memory, eip: 0x2000, addr: MEM })
    });
    let (mut vm, _) = vm(vec![raise(ExceptionKind::Invalid, 0, 0x2000, 0x9000), again]);
    let f = fault(vm.run(None).unwrap());
    assert!(matches!(f.cause, FaultCause::DoubleFault { stack_addr: None, .. }), "{:?}", f.cause);
}

#[test]
fn a_handler_that_makes_progress_may_fault_again() {
    let again: Step = Box::new(|cpu, _, _| {
        cpu.retire(1);
        Exit::Exception(Exception { kind: ExceptionKind::Invalid, eip: cpu.eip, addr: 0 })
    });
    let (mut vm, _) = vm(vec![raise(ExceptionKind::Invalid, 0, 0x2000, 0x9000), again]);
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0xDEAD));
    assert_eq!(vm.cpu().regs[reg::ESP], 0x9000 - 32);
}

#[test]
fn interrupts_are_delivered_at_slice_start() {
    let setup: Step = Box::new(|cpu, memory, _| {
        memory.write_u32(vreg::IRQ_HANDLER, 0x3000).unwrap();
        memory.write_u32(vreg::IRQ_ENABLE, 1).unwrap();
        cpu.regs[reg::ESP] = 0x9000;
        cpu.eip = 0x1008;
        cpu.eflags = 0x202 | 0x80;
        Exit::BudgetExhausted
    });
    let in_handler: Step = Box::new(|cpu, _, _| {
        assert_eq!(cpu.eip, 0x3000);
        terminate(0)
    });
    let (mut vm, _) = vm(vec![setup, in_handler]);
    vm.raise_interrupts(0b1001);
    assert_eq!(vm.run(None).unwrap(), Outcome::Terminated(0));
    assert_eq!(vm.cpu().regs[reg::ESP], 0x9000 - 12);
    let frame: Vec<u32> = (0..3).map(|i| read(&vm, 0x9000 - 12 + 4 * i)).collect();
    assert_eq!(frame, [0b1001, 0x282, 0x1008]);
    assert_eq!(read(&vm, vreg::IRQ_PENDING), 0);
    assert_eq!(read(&vm, vreg::IRQ_ENABLE), 0);
}

#[test]
fn interrupts_wait_while_disabled_or_without_handler() {
    for (enable, handler) in [(0, 0x3000), (1, 0)] {
        let setup: Step = Box::new(move |_, memory, _| {
            memory.write_u32(vreg::IRQ_HANDLER, handler).unwrap();
            memory.write_u32(vreg::IRQ_ENABLE, enable).unwrap();
            Exit::BudgetExhausted
        });
        let (mut vm, _) = vm(vec![setup, retire(1)]);
        vm.raise_interrupts(1);
        vm.run(None).unwrap();
        assert_eq!(read(&vm, vreg::IRQ_PENDING), 1, "still pending");
        assert_eq!(vm.cpu().regs[reg::ESP], MEM);
    }
}

#[test]
fn interrupt_frame_outside_memory_is_fatal() {
    let setup: Step = Box::new(|cpu, memory, _| {
        memory.write_u32(vreg::IRQ_HANDLER, 0x3000).unwrap();
        memory.write_u32(vreg::IRQ_ENABLE, 1).unwrap();
        cpu.regs[reg::ESP] = 4;
        Exit::BudgetExhausted
    });
    let (mut vm, _) = vm(vec![setup]);
    vm.raise_interrupts(1);
    let f = fault(vm.run(None).unwrap());
    assert!(matches!(f.cause, FaultCause::InterruptFrame { .. }), "{:?}", f.cause);
}

#[test]
fn idle_wakes_for_an_enabled_pending_interrupt() {
    let idle: Step = Box::new(|cpu, memory, _| {
        memory.write_u32(vreg::IRQ_ENABLE, 1).unwrap();
        cpu.regs[reg::EAX] = u32::MAX;
        Exit::Idle { timeout_us: u32::MAX, len: 1 }
    });
    let (mut vm, _) = vm(vec![idle]);
    vm.raise_interrupts(1 << 2);
    vm.run(None).unwrap();
    assert_eq!(vm.cpu().regs[reg::EAX], 1);
    assert_eq!(vm.cpu().instructions, 2);
}

#[test]
fn idle_times_out() {
    let (mut vm, _) = vm(vec![Box::new(|_, _, _| Exit::Idle { timeout_us: 2000, len: 1 })]);
    let start = std::time::Instant::now();
    vm.run(None).unwrap();
    assert!(start.elapsed() >= std::time::Duration::from_micros(2000));
    assert_eq!(vm.cpu().regs[reg::EAX], 0);
    assert_eq!(vm.cpu().eip, 0x1001 + 2);
    assert!(vm.memory().read_u64(vreg::TIME_US).unwrap() >= 2000);
}

#[test]
fn idle_forever_with_nothing_to_wake_it_is_fatal() {
    let (mut vm, _) = vm(vec![Box::new(|_, _, _| Exit::Idle { timeout_us: u32::MAX, len: 1 })]);
    let f = fault(vm.run(None).unwrap());
    assert_eq!(f.cause, FaultCause::IdleForever);
    assert!(f.to_string().contains("deadlock"), "{f}");
}

#[test]
fn max_instructions_stops_exactly_and_resumes() {
    let engine = Scripted::new(
        (0..10)
            .map(|_| -> Step {
                Box::new(|cpu, _, budget| {
                    for _ in 0..budget.min(400) {
                        cpu.retire(1);
                    }
                    Exit::BudgetExhausted
                })
            })
            .collect(),
    );
    let budgets = engine.budgets.clone();
    let mut vm =
        Vm::new(&flat(&[0x90]), VmConfig { mem_size: MEM, vm_id: 0 }, Box::new(engine), Box::new(Output::default()))
            .unwrap();
    assert_eq!(vm.run(Some(1000)).unwrap(), Outcome::Limit);
    assert_eq!(vm.cpu().instructions, 1000);
    assert_eq!(*budgets.lock().unwrap(), [1000, 600, 200]);
    assert_eq!(vm.run(Some(1000)).unwrap(), Outcome::Limit, "no instruction runs past the limit");
    assert_eq!(budgets.lock().unwrap().len(), 3);
    assert_eq!(vm.run(Some(1100)).unwrap(), Outcome::Limit);
    assert_eq!(vm.cpu().instructions, 1100);
}

#[test]
fn slices_are_bounded() {
    let engine = Scripted::new(vec![retire(5)]);
    let budgets = engine.budgets.clone();
    let mut vm = Vm::new(&flat(&[0x90]), VmConfig::default(), Box::new(engine), Box::new(Output::default())).unwrap();
    vm.run(None).unwrap();
    assert_eq!(budgets.lock().unwrap()[0], denali_kernel::SLICE);
}

#[test]
fn trace_writes_one_line_per_step() {
    let trace = Output::default();
    let engine = Scripted::new(vec![retire(1), with_eax(0x41, out(port::CONSOLE_PUTC, 0x41))]);
    let budgets = engine.budgets.clone();
    let mut vm = Vm::new(
        &flat(&[0x90, 0x90, 0xE7, 0x10, 0xCD, 0xD0]),
        VmConfig::default(),
        Box::new(engine),
        Box::new(Output::default()),
    )
    .unwrap();
    vm.set_trace(Box::new(trace.clone()));
    vm.run(None).unwrap();
    assert!(budgets.lock().unwrap().iter().all(|&b| b == 1));
    let text = trace.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("         0 00001000  nop "), "{}", lines[0]);
    assert!(lines[1].starts_with("         1 00001001  nop "), "{}", lines[1]);
    assert!(lines[2].starts_with("         2 00001002  out 0x10,eax "), "{}", lines[2]);
    assert!(lines[2].ends_with("eax=00000041 ecx=00000000 edx=00000000 ebx=00000000 esp=01000000 ebp=00000000 esi=00000000 edi=00000000 eflags=00000202"), "{}", lines[2]);
}

#[test]
fn vregs_helpers_match_the_spec() {
    assert_eq!(vregs::mac_address(0), [2, 0, 0, 0, 0, 0]);
}
