//! Arbitrary bytes run as a flat image: the interpreter must never panic, and it must agree with
//! the validator on what is valid. Before each step the oracle decodes the instruction at EIP
//! itself and asks the validator; the interpreter must raise `INVALID` there exactly when the
//! validator rejects the instruction.

use denali_engine::{Cpu, Engine, ExceptionKind, Exit, GuestMemory, Interpreter};
use denali_isa::validate;
use iced_x86::Code;

/// Where the image is loaded, and the memory it gets: small, so that runaway code soon leaves it.
pub const LOAD_ADDR: u32 = 0x1000;
pub const MEMORY_SIZE: u64 = 0x4000;
/// Steps before the oracle gives up on a guest that keeps running. Each step is a run with a
/// budget of one, which decodes a fresh block from that address, so this stays small.
pub const MAX_STEPS: u32 = 256;

/// What the validator says about the instruction at `eip`: `Some(true)` valid, `Some(false)`
/// invalid, `None` when the instruction does not fit in memory (a memory fault, not a verdict).
fn validator_verdict(memory: &GuestMemory, eip: u32) -> Option<bool> {
    let window = memory.fetch_window(eip, 15).ok()?;
    let mut decoder = validate::decoder(window, eip);
    let instruction = decoder.decode();
    if instruction.code() == Code::INVALID && decoder.last_error() == iced_x86::DecoderError::NoMoreBytes {
        return None;
    }
    Some(validate::check(&instruction).is_ok())
}

/// Runs `image` and panics on any disagreement.
pub fn check(image: &[u8]) {
    let mut memory = GuestMemory::new(MEMORY_SIZE).expect("fixed memory size is valid");
    let room = (MEMORY_SIZE - u64::from(LOAD_ADDR)) as usize;
    memory.write(LOAD_ADDR, &image[..image.len().min(room)]).expect("image fits");
    let top = memory.size();
    let mut cpu = Cpu::new(LOAD_ADDR, top);
    let mut engine = Interpreter::new();
    for _ in 0..MAX_STEPS {
        let verdict = validator_verdict(&memory, cpu.eip);
        let eip = cpu.eip;
        match engine.run(&mut cpu, &mut memory, 1) {
            Exit::Exception(e) if e.kind == ExceptionKind::Invalid => {
                assert_eq!(e.eip, eip, "INVALID reported at the wrong EIP");
                assert_eq!(verdict, Some(false), "interpreter raised INVALID at {eip:#x}; the validator accepts it");
                return;
            }
            Exit::Exception(e) => {
                assert_ne!(
                    verdict,
                    Some(false),
                    "interpreter raised {} at {eip:#x} for an instruction the validator rejects",
                    e.kind
                );
                return;
            }
            Exit::Terminate { .. } => return,
            Exit::BudgetExhausted => {
                assert_eq!(verdict, Some(true), "interpreter ran an instruction at {eip:#x} the validator rejects");
            }
            Exit::PortIn { len, .. } | Exit::Idle { len, .. } => {
                assert_eq!(verdict, Some(true));
                cpu.regs[0] = 0;
                cpu.retire(len);
            }
            Exit::PortOut { len, .. } => {
                assert_eq!(verdict, Some(true));
                cpu.retire(len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        #[test]
        fn interpreter_and_validator_agree_on_random_bytes(image in proptest::collection::vec(any::<u8>(), 0..256)) {
            check(&image);
        }
    }

    #[test]
    fn an_excluded_instruction_is_invalid_and_never_runs() {
        // mov eax, 1; cli; int 0xd0
        check(&[0xB8, 1, 0, 0, 0, 0xFA, 0xCD, 0xD0]);
    }
}
