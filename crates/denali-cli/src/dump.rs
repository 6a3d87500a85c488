//! `--dump-state`: the final CPU state and why the guest stopped, as one JSON object.
//!
//! `{"eax":..,"ecx":..,"edx":..,"ebx":..,"esp":..,"ebp":..,"esi":..,"edi":..,"eip":..,
//! "eflags":..,"instructions":..,"stop":{...}}` where `stop` is one of
//! `{"kind":"terminated","status":N}`, `{"kind":"limit"}` and
//! `{"kind":"fault","cause":C,"exception":NAME|null,"eip":N,"addr":N}`; `cause` is
//! `exception` (no handler), `double_fault` (with `stack_addr` when the frame did not fit),
//! `interrupt_frame` (with `stack_addr`) or `idle_forever`.

use denali_engine::{Cpu, reg};
use denali_kernel::{FaultCause, Outcome};
use serde::Serialize;

#[derive(Serialize)]
struct State {
    eax: u32,
    ecx: u32,
    edx: u32,
    ebx: u32,
    esp: u32,
    ebp: u32,
    esi: u32,
    edi: u32,
    eip: u32,
    eflags: u32,
    instructions: u64,
    stop: Stop,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Stop {
    Terminated {
        status: u32,
    },
    Fault {
        cause: &'static str,
        exception: Option<&'static str>,
        eip: u32,
        addr: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        stack_addr: Option<u32>,
    },
    Limit,
}

fn stop(outcome: &Outcome, cpu: &Cpu) -> Stop {
    match outcome {
        Outcome::Terminated(status) => Stop::Terminated { status: *status },
        Outcome::Limit => Stop::Limit,
        Outcome::Fault(fault) => {
            let (cause, stack_addr) = match fault.cause {
                FaultCause::Unhandled(_) => ("exception", None),
                FaultCause::DoubleFault { stack_addr, .. } => ("double_fault", stack_addr),
                FaultCause::InterruptFrame { stack_addr } => ("interrupt_frame", Some(stack_addr)),
                FaultCause::IdleForever => ("idle_forever", None),
            };
            let exception = fault.exception();
            Stop::Fault {
                cause,
                exception: exception.map(|e| e.kind.name()),
                eip: exception.map_or(cpu.eip, |e| e.eip),
                addr: exception.map_or(0, |e| e.addr),
                stack_addr,
            }
        }
    }
}

/// The JSON text, with a trailing newline.
pub fn render(outcome: &Outcome, cpu: &Cpu) -> String {
    let r = cpu.regs;
    let state = State {
        eax: r[reg::EAX],
        ecx: r[reg::ECX],
        edx: r[reg::EDX],
        ebx: r[reg::EBX],
        esp: r[reg::ESP],
        ebp: r[reg::EBP],
        esi: r[reg::ESI],
        edi: r[reg::EDI],
        eip: cpu.eip,
        eflags: cpu.eflags,
        instructions: cpu.instructions,
        stop: stop(outcome, cpu),
    };
    // Serialising plain integers and strings cannot fail; fall back to an empty object anyway.
    serde_json::to_string(&state).unwrap_or_else(|_| "{}".to_owned()) + "\n"
}
