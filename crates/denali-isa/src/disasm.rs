//! The disassembler used by `denali disasm`, `denali check` and diagnostics: Intel syntax in
//! lower case with `0x` hex (so the virtual instructions print as `virtual-instructions.txt`
//! writes them), and a linear sweep that runs the validator on every instruction.

use crate::validate::{self, Violation, class};
use iced_x86::{Decoder, DecoderError, DecoderOptions, Formatter, Instruction, IntelFormatter};
use std::cell::RefCell;

thread_local! {
    // Building a formatter allocates its option strings; diagnostics format one instruction at
    // a time, so each thread keeps one.
    static FORMATTER: RefCell<IntelFormatter> = RefCell::new(new_formatter());
}

fn new_formatter() -> IntelFormatter {
    let mut formatter = IntelFormatter::new();
    let options = formatter.options_mut();
    options.set_hex_prefix("0x");
    options.set_hex_suffix("");
    options.set_uppercase_hex(false);
    options.set_show_branch_size(false);
    formatter
}

/// The instruction in Intel syntax, lower case, e.g. `mov eax,[ebx+ecx*4+8]` or `int 0xd0`.
pub fn format(instruction: &Instruction) -> String {
    let mut text = String::new();
    FORMATTER.with(|formatter| match formatter.try_borrow_mut() {
        Ok(mut formatter) => formatter.format(instruction, &mut text),
        // Only reachable if formatting re-entered itself; a fresh formatter is still correct.
        Err(_) => new_formatter().format(instruction, &mut text),
    });
    text
}

/// One line of a linear sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Guest address of the first byte.
    pub addr: u32,
    /// The bytes of the instruction (one byte for an undecodable one).
    pub bytes: Vec<u8>,
    /// The disassembly, or `(bad)` for an undecodable byte.
    pub text: String,
    /// Why the instruction is outside the subset, if it is.
    pub violation: Option<Violation>,
}

/// Decodes `code`, loaded at guest address `base`, from start to end. An undecodable byte
/// becomes a one-byte UNDECODABLE line and the sweep resumes at the next byte, as a linear
/// sweep cannot know where the next instruction really starts.
///
/// The one exception is a byte sequence that is invalid only because of a prefix the
/// architecture forbids there (such as `lock mov`): it is reported whole, with its disassembly
/// and the class of the prefix rule it breaks, because that says more than `(bad)`.
pub fn sweep(code: &[u8], base: u32) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut offset = 0usize;
    let mut instruction = Instruction::default();
    while offset < code.len() {
        let addr = base.wrapping_add(offset as u32);
        let rest = &code[offset..];
        let mut decoder = validate::decoder(rest, addr);
        decoder.decode_out(&mut instruction);
        let line = if instruction.is_invalid() {
            undecodable(rest, addr, decoder.last_error())
        } else {
            let len = instruction.len().clamp(1, rest.len());
            Line {
                addr,
                bytes: rest[..len].to_vec(),
                text: format(&instruction),
                violation: validate::check(&instruction).err(),
            }
        };
        offset += line.bytes.len();
        lines.push(line);
    }
    lines
}

fn undecodable(rest: &[u8], addr: u32, error: DecoderError) -> Line {
    // Decoding again without iced's validity checks separates "valid opcode, forbidden prefix"
    // from bytes that mean nothing at all.
    let mut relaxed = Decoder::with_ip(32, rest, u64::from(addr), DecoderOptions::NO_INVALID_CHECK);
    let instruction = relaxed.decode();
    // `check` rejects INVALID itself, so an Err here with a real Code is a prefix rule.
    if let (false, Err(violation)) = (instruction.is_invalid(), validate::check(&instruction)) {
        let len = instruction.len().clamp(1, rest.len());
        return Line { addr, bytes: rest[..len].to_vec(), text: format(&instruction), violation: Some(violation) };
    }
    let rule = match error {
        DecoderError::NoMoreBytes => format!("truncated instruction at byte {:#04x}", rest[0]),
        _ => format!("byte {:#04x} does not start a valid IA-32 instruction", rest[0]),
    };
    Line {
        addr,
        bytes: rest[..1].to_vec(),
        text: "(bad)".to_owned(),
        violation: Some(Violation { class: class::UNDECODABLE, rule }),
    }
}
