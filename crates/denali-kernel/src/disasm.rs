//! Disassembly of the instruction at a guest address, for traces and fault diagnostics.

use denali_engine::GuestMemory;
use iced_x86::Instruction;

/// Longest IA-32 instruction.
const MAX_INSTRUCTION_LEN: usize = 15;

/// The instruction at `eip`: its bytes and text, or `<outside memory>` when EIP is not a
/// memory address. An instruction cut off by the end of memory, or bytes that decode to
/// nothing, read `(bad)`; one outside the subset is followed by the rule it breaks.
pub fn at(memory: &GuestMemory, eip: u32) -> (Vec<u8>, String) {
    let Ok(window) = memory.fetch_window(eip, MAX_INSTRUCTION_LEN) else {
        return (Vec::new(), "<outside memory>".to_owned());
    };
    let mut decoder = denali_isa::validate::decoder(window, eip);
    let mut instruction = Instruction::default();
    decoder.decode_out(&mut instruction);
    if instruction.is_invalid() {
        return (window[..1].to_vec(), "(bad)".to_owned());
    }
    let len = instruction.len().clamp(1, window.len());
    let mut text = denali_isa::disasm::format(&instruction);
    // Say why an INVALID fault happened, in the validator's words.
    if let Err(violation) = denali_isa::validate::check(&instruction) {
        text += &format!("  ; {violation}");
    }
    (window[..len].to_vec(), text)
}

/// Just the text of [`at`].
pub fn text_at(memory: &GuestMemory, eip: u32) -> String {
    at(memory, eip).1
}
