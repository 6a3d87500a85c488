//! The disassembler's text and the linear sweep's handling of bytes that do not decode.

use denali_isa::disasm::{self, Line};
use denali_isa::validate::{self, class};

fn text(bytes: &[u8]) -> String {
    disasm::format(&validate::decoder(bytes, 0x1000).decode())
}

#[test]
fn formats_intel_syntax_in_lower_case_with_0x_hex() {
    assert_eq!(text(&[0xCD, 0xD0]), "int 0xd0");
    assert_eq!(text(&[0xF4]), "hlt");
    assert_eq!(text(&[0x0F, 0x44, 0x44, 0x8B, 0x08]), "cmove eax,[ebx+ecx*4+8]");
    assert_eq!(text(&[0xF3, 0xA5]), "rep movsd [edi],[esi]");
    assert_eq!(text(&[0xE7, 0x10]), "out 0x10,eax");
    assert_eq!(text(&[0x8E, 0xD8]), "mov ds,ax");
}

#[test]
fn formats_the_virtual_instructions_as_the_spec_writes_them() {
    for row in denali_isa::spec::VIRTUAL_INSTRUCTIONS.rows() {
        let bytes = denali_isa::codegen::hex_bytes(&denali_isa::spec::VIRTUAL_INSTRUCTIONS, &row);
        // The description opens with the disassembly in backquotes, e.g. "`hlt`: idle ...".
        let description = row.cells[row.cells.len() - 1];
        let written = description.split('`').nth(1).unwrap_or_default();
        assert_eq!(text(&bytes), written, "virtual-instructions.txt:{}", row.line);
        assert_eq!(validate::check(&validate::decoder(&bytes, 0x1000).decode()), Ok(()));
    }
}

#[test]
fn sweep_decodes_in_order() {
    // push ebp; mov ebp,esp; out 0x10,eax; leave; ret
    let code = [0x55, 0x89, 0xE5, 0xE7, 0x10, 0xC9, 0xC3];
    let lines = disasm::sweep(&code, 0x2000);
    let summary: Vec<(u32, usize, &str)> = lines.iter().map(|l| (l.addr, l.bytes.len(), l.text.as_str())).collect();
    assert_eq!(
        summary,
        [
            (0x2000, 1, "push ebp"),
            (0x2001, 2, "mov ebp,esp"),
            (0x2003, 2, "out 0x10,eax"),
            (0x2005, 1, "leave"),
            (0x2006, 1, "ret")
        ]
    );
    assert!(lines.iter().all(|l| l.violation.is_none()));
}

#[test]
fn sweep_steps_over_an_undecodable_byte() {
    // 0F 04 is no instruction; the sweep resumes at 04, which is `add al,0x90`.
    let lines = disasm::sweep(&[0x0F, 0x04, 0x90], 0x1000);
    assert_eq!(
        lines[0],
        Line {
            addr: 0x1000,
            bytes: vec![0x0F],
            text: "(bad)".to_owned(),
            violation: Some(validate::Violation {
                class: class::UNDECODABLE,
                rule: "byte 0x0f does not start a valid IA-32 instruction".to_owned()
            }),
        }
    );
    assert_eq!((lines[1].addr, lines[1].text.as_str()), (0x1001, "add al,0x90"));
    assert_eq!(lines.len(), 2);
}

#[test]
fn sweep_reports_a_truncated_instruction_byte_by_byte() {
    let lines = disasm::sweep(&[0x90, 0xB8, 0x01], 0x1000);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].violation, None);
    for line in &lines[1..] {
        let v = line.violation.as_ref().expect("truncated");
        assert_eq!((v.class, line.bytes.len()), (class::UNDECODABLE, 1), "{v}");
    }
    assert!(lines[1].violation.as_ref().is_some_and(|v| v.rule.contains("truncated")));
}

#[test]
fn sweep_reports_a_forbidden_lock_whole() {
    let lines = disasm::sweep(&[0xF0, 0x89, 0x00, 0xC3], 0x1000);
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[0].bytes.len(), lines[0].text.as_str()), (3, "lock mov [eax],eax"));
    assert_eq!(lines[0].violation.as_ref().map(|v| v.class), Some(class::LEGACY));
    assert_eq!(lines[1].text, "ret");
}

#[test]
fn sweep_covers_arbitrary_bytes_exactly() {
    // A fixed pseudo-random stream: the sweep must neither panic nor lose or repeat a byte.
    let mut state = 0x1234_5678u32;
    let code: Vec<u8> = (0..1 << 16)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    let base = 0xFFFF_F000; // the sweep's addresses wrap rather than overflow
    let lines = disasm::sweep(&code, base);
    let mut next = base;
    let mut joined = Vec::with_capacity(code.len());
    for line in &lines {
        assert_eq!(line.addr, next);
        assert!(!line.bytes.is_empty() && line.bytes.len() <= 15);
        if let Some(v) = &line.violation {
            assert!(class::ALL.contains(&v.class), "{v}");
        }
        next = next.wrapping_add(line.bytes.len() as u32);
        joined.extend_from_slice(&line.bytes);
    }
    assert_eq!(joined, code);
}
