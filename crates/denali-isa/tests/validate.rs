//! The validator against hand-written encodings: accepted examples of every class of
//! `forms.txt`, rejected examples of every class of `excluded.txt`, and exhaustive sweeps over
//! one- and two-byte opcodes that tie the validator to the two tables.

use denali_isa::spec;
use denali_isa::validate::{self, class};
use iced_x86::code_asm::*;
use iced_x86::{Code, EncodingKind, Instruction};
use std::collections::HashSet;

/// Decodes one instruction that must use every byte of `bytes`.
fn decode(bytes: &[u8]) -> Instruction {
    let instruction = validate::decoder(bytes, 0x1000).decode();
    assert!(
        instruction.is_invalid() || instruction.len() == bytes.len(),
        "{bytes:02X?} decoded as {} bytes",
        instruction.len()
    );
    instruction
}

fn accepted(bytes: &[u8]) {
    let instruction = decode(bytes);
    if let Err(v) = validate::check(&instruction) {
        panic!("{bytes:02X?} ({:?}) rejected: {v}", instruction.code());
    }
}

fn rejected(bytes: &[u8], class: &str) -> String {
    let instruction = decode(bytes);
    match validate::check(&instruction) {
        Ok(()) => panic!("{bytes:02X?} ({:?}) accepted", instruction.code()),
        Err(v) => {
            assert_eq!(v.class, class, "{bytes:02X?}: {v}");
            v.to_string()
        }
    }
}

#[test]
fn accepts_every_class_of_forms() {
    let cases: &[(&str, &[u8])] = &[
        // mov
        ("mov eax,ecx", &[0x89, 0xC8]),
        ("mov ax,bx", &[0x66, 0x89, 0xD8]),
        ("mov cl,[eax]", &[0x8A, 0x08]),
        ("mov eax,[0x1234]", &[0xA1, 0x34, 0x12, 0x00, 0x00]),
        ("mov [0x1234],al", &[0xA2, 0x34, 0x12, 0x00, 0x00]),
        ("mov eax,[disp32]", &[0x8B, 0x05, 0x00, 0x10, 0x00, 0x00]),
        ("mov byte [eax],1", &[0xC6, 0x00, 0x01]),
        ("mov esi,imm32", &[0xBE, 0x78, 0x56, 0x34, 0x12]),
        ("mov eax,[esp+ecx*8-4]", &[0x8B, 0x44, 0xCC, 0xFC]),
        // alu
        ("add eax,-1", &[0x83, 0xC0, 0xFF]),
        ("add al,1", &[0x04, 0x01]),
        ("sub word [eax],5", &[0x66, 0x83, 0x28, 0x05]),
        ("adc edx,[ebx]", &[0x13, 0x13]),
        ("sbb eax,imm32", &[0x1D, 0x01, 0x00, 0x00, 0x80]),
        ("cmp byte [esi],0x7f", &[0x80, 0x3E, 0x7F]),
        ("test eax,eax", &[0x85, 0xC0]),
        ("test al,1", &[0xA8, 0x01]),
        ("inc ecx", &[0x41]),
        ("dec byte [eax]", &[0xFE, 0x08]),
        ("neg eax", &[0xF7, 0xD8]),
        ("not word [eax]", &[0x66, 0xF7, 0x10]),
        // shift
        ("shl eax,1", &[0xD1, 0xE0]),
        ("sar eax,cl", &[0xD3, 0xF8]),
        ("rol byte [eax],3", &[0xC0, 0x00, 0x03]),
        ("rcr ax,1", &[0x66, 0xD1, 0xD8]),
        ("shld eax,ebx,cl", &[0x0F, 0xA5, 0xD8]),
        ("shrd eax,edx,5", &[0x0F, 0xAC, 0xD0, 0x05]),
        // muldiv
        ("mul ecx", &[0xF7, 0xE1]),
        ("imul dword [eax]", &[0xF7, 0x28]),
        ("imul eax,ecx", &[0x0F, 0xAF, 0xC1]),
        ("imul eax,ebx,12", &[0x6B, 0xC3, 0x0C]),
        ("imul eax,[ebx],0x12345", &[0x69, 0x03, 0x45, 0x23, 0x01, 0x00]),
        ("div ecx", &[0xF7, 0xF1]),
        ("idiv byte [eax]", &[0xF6, 0x38]),
        // bit
        ("bt eax,5", &[0x0F, 0xBA, 0xE0, 0x05]),
        ("lock bts [eax],ecx", &[0xF0, 0x0F, 0xAB, 0x08]),
        ("btr eax,ecx", &[0x0F, 0xB3, 0xC8]),
        ("btc dword [eax],31", &[0x0F, 0xBA, 0x38, 0x1F]),
        ("bsf eax,ecx", &[0x0F, 0xBC, 0xC1]),
        ("bsr eax,[ecx]", &[0x0F, 0xBD, 0x01]),
        // setcc, cmov
        ("sete al", &[0x0F, 0x94, 0xC0]),
        ("setg byte [eax]", &[0x0F, 0x9F, 0x00]),
        ("cmovz eax,[ebx+ecx*4+8]", &[0x0F, 0x44, 0x44, 0x8B, 0x08]),
        ("cmovl ax,cx", &[0x66, 0x0F, 0x4C, 0xC1]),
        // jcc, loops
        ("je short", &[0x74, 0x00]),
        ("jne near", &[0x0F, 0x85, 0x00, 0x00, 0x00, 0x00]),
        ("jecxz", &[0xE3, 0x00]),
        ("loop", &[0xE2, 0xFE]),
        ("loope", &[0xE1, 0x00]),
        ("loopne", &[0xE0, 0x00]),
        // call, ret, jmp
        ("call rel32", &[0xE8, 0x00, 0x00, 0x00, 0x00]),
        ("call eax", &[0xFF, 0xD0]),
        ("call [eax+4]", &[0xFF, 0x50, 0x04]),
        ("ret", &[0xC3]),
        ("ret 8", &[0xC2, 0x08, 0x00]),
        ("rep ret", &[0xF3, 0xC3]),
        ("jmp short", &[0xEB, 0x00]),
        ("jmp near", &[0xE9, 0x00, 0x00, 0x00, 0x00]),
        ("jmp [eax*4+0x2000]", &[0xFF, 0x24, 0x85, 0x00, 0x20, 0x00, 0x00]),
        ("notrack jmp eax", &[0x3E, 0xFF, 0xE0]),
        // string
        ("movsb", &[0xA4]),
        ("rep movsd", &[0xF3, 0xA5]),
        ("rep stosb", &[0xF3, 0xAA]),
        ("stosw", &[0x66, 0xAB]),
        ("lodsd", &[0xAD]),
        ("repe cmpsb", &[0xF3, 0xA6]),
        ("repne scasb", &[0xF2, 0xAE]),
        // ext, xchg family, misc, lea
        ("movzx eax,byte [eax]", &[0x0F, 0xB6, 0x00]),
        ("movsx eax,ax", &[0x0F, 0xBF, 0xC0]),
        ("movzx ax,cl", &[0x66, 0x0F, 0xB6, 0xC1]),
        ("xchg eax,ecx", &[0x91]),
        ("xchg [eax],ecx", &[0x87, 0x08]),
        ("xchg ah,al", &[0x86, 0xE0]),
        ("lock cmpxchg [eax],ecx", &[0xF0, 0x0F, 0xB1, 0x08]),
        ("lock cmpxchg8b [esi]", &[0xF0, 0x0F, 0xC7, 0x0E]),
        ("xadd [eax],ecx", &[0x0F, 0xC1, 0x08]),
        ("lock xadd [eax],cx", &[0xF0, 0x66, 0x0F, 0xC1, 0x08]),
        ("bswap eax", &[0x0F, 0xC8]),
        ("xlatb", &[0xD7]),
        ("lea eax,[esp+4]", &[0x8D, 0x44, 0x24, 0x04]),
        // stack
        ("push ebp", &[0x55]),
        ("pop edi", &[0x5F]),
        ("push dword [eax]", &[0xFF, 0x30]),
        ("pop dword [eax]", &[0x8F, 0x00]),
        ("push 1", &[0x6A, 0x01]),
        ("push imm32", &[0x68, 0x00, 0x10, 0x00, 0x00]),
        ("pushad", &[0x60]),
        ("popad", &[0x61]),
        ("enter 16,0", &[0xC8, 0x10, 0x00, 0x00]),
        ("leave", &[0xC9]),
        // convert, flags
        ("cdq", &[0x99]),
        ("cwde", &[0x98]),
        ("cbw", &[0x66, 0x98]),
        ("cwd", &[0x66, 0x99]),
        ("lahf", &[0x9F]),
        ("sahf", &[0x9E]),
        ("pushfd", &[0x9C]),
        ("popfd", &[0x9D]),
        ("clc", &[0xF8]),
        ("stc", &[0xF9]),
        ("cmc", &[0xF5]),
        ("cld", &[0xFC]),
        ("std", &[0xFD]),
        // nop
        ("nop", &[0x90]),
        ("xchg ax,ax", &[0x66, 0x90]),
        ("nop [eax]", &[0x0F, 0x1F, 0x00]),
        ("nopw [eax+eax]", &[0x66, 0x0F, 0x1F, 0x44, 0x00, 0x00]),
        ("cs nopw (gas padding)", &[0x66, 0x2E, 0x0F, 0x1F, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00]),
        ("data16 data16 cs nopw", &[0x66, 0x66, 0x2E, 0x0F, 0x1F, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00]),
        ("pause", &[0xF3, 0x90]),
        ("endbr32", &[0xF3, 0x0F, 0x1E, 0xFB]),
        // virtual, breakpoint, io
        ("hlt", &[0xF4]),
        ("int 0xd0", &[0xCD, 0xD0]),
        ("int3", &[0xCC]),
        ("in eax,dx", &[0xED]),
        ("out dx,eax", &[0xEF]),
        ("out 0x10,eax", &[0xE7, 0x10]),
        ("in eax,0x20", &[0xE5, 0x20]),
        ("out 0x51,eax", &[0xE7, 0x51]),
    ];
    for (name, bytes) in cases {
        let instruction = decode(bytes);
        if let Err(v) = validate::check(&instruction) {
            panic!("{name} {bytes:02X?} rejected: {v}");
        }
    }
}

#[test]
fn accepts_code_assembled_with_code_asm() -> Result<(), IcedError> {
    let mut a = CodeAssembler::new(32)?;
    a.push(ebp)?;
    a.mov(ebp, esp)?;
    a.mov(eax, dword_ptr(ebp + 8))?;
    a.imul_3(eax, ecx, 12)?;
    a.shld(eax, ebx, cl)?;
    a.cmovz(eax, dword_ptr(ebx + ecx * 4 + 8))?;
    a.bswap(eax)?;
    a.lock().xadd(dword_ptr(eax), ecx)?;
    a.lock().add(dword_ptr(eax), ecx)?;
    a.lock().cmpxchg8b(qword_ptr(esi))?;
    a.rep().movsd()?;
    a.repne().scasb()?;
    a.enter(16u32, 0u32)?;
    a.leave()?;
    a.pushfd()?;
    a.popfd()?;
    a.lahf()?;
    a.movzx(eax, byte_ptr(esi))?;
    a.setne(al)?;
    a.out(0x10u32, eax)?;
    a.in_(eax, dx)?;
    a.int3()?;
    a.hlt()?;
    a.int(0xD0u32)?;
    a.ret_1(4u32)?;
    let bytes = a.assemble(0x1000)?;
    for line in denali_isa::disasm::sweep(&bytes, 0x1000) {
        assert_eq!(line.violation, None, "{:#x}: {}", line.addr, line.text);
    }
    Ok(())
}

#[test]
fn rejects_with_the_right_class() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("mov ds,ax", &[0x8E, 0xD8], class::SEGMENT),
        ("mov eax,ds", &[0x8C, 0xD8], class::SEGMENT),
        ("push ds", &[0x1E], class::SEGMENT),
        ("pop es", &[0x07], class::SEGMENT),
        ("les eax,[eax]", &[0xC4, 0x00], class::SEGMENT),
        ("lss esp,[eax]", &[0x0F, 0xB2, 0x20], class::SEGMENT),
        ("fs: mov eax,[eax]", &[0x64, 0x8B, 0x00], class::SEGMENT),
        ("es: rep movsb", &[0x26, 0xF3, 0xA4], class::SEGMENT),
        ("cs: jmp eax", &[0x2E, 0xFF, 0xE0], class::SEGMENT),
        ("branch hint", &[0x2E, 0x74, 0x00], class::SEGMENT),
        ("jmp 0x10:0x1000", &[0xEA, 0x00, 0x10, 0x00, 0x00, 0x10, 0x00], class::FAR),
        ("call far [eax]", &[0xFF, 0x18], class::FAR),
        ("retf", &[0xCB], class::FAR),
        ("iretd", &[0xCF], class::FAR),
        ("cli", &[0xFA], class::SYSTEM),
        ("sti", &[0xFB], class::SYSTEM),
        ("lgdt [eax]", &[0x0F, 0x01, 0x10], class::SYSTEM),
        ("sgdt [eax]", &[0x0F, 0x01, 0x00], class::SYSTEM),
        ("mov cr0,eax", &[0x0F, 0x22, 0xC0], class::SYSTEM),
        ("mov eax,dr0", &[0x0F, 0x21, 0xC0], class::SYSTEM),
        ("cpuid", &[0x0F, 0xA2], class::SYSTEM),
        ("rdtsc", &[0x0F, 0x31], class::SYSTEM),
        ("wrmsr", &[0x0F, 0x30], class::SYSTEM),
        ("sysenter", &[0x0F, 0x34], class::SYSTEM),
        ("sldt eax", &[0x0F, 0x00, 0xC0], class::SYSTEM),
        ("arpl", &[0x63, 0xC0], class::SYSTEM),
        ("int 0x80", &[0xCD, 0x80], class::INT),
        ("into", &[0xCE], class::INT),
        ("int1", &[0xF1], class::INT),
        ("bound", &[0x62, 0x00], class::INT),
        ("in al,dx", &[0xEC], class::IO),
        ("out dx,al", &[0xEE], class::IO),
        ("in ax,dx", &[0x66, 0xED], class::IO),
        ("insb", &[0x6C], class::IO),
        ("out 0x99,eax (port not in map)", &[0xE7, 0x99], class::IO),
        ("in eax,0x10 (an OUT port)", &[0xE5, 0x10], class::IO),
        ("out 0x20,eax (an IN port)", &[0xE7, 0x20], class::IO),
        ("fld dword [eax]", &[0xD9, 0x00], class::X87),
        ("fwait", &[0x9B], class::X87),
        ("movaps xmm0,xmm1", &[0x0F, 0x28, 0xC1], class::SIMD),
        ("emms", &[0x0F, 0x77], class::SIMD),
        ("vzeroupper", &[0xC5, 0xF8, 0x77], class::SIMD),
        ("mfence", &[0x0F, 0xAE, 0xF0], class::SIMD),
        ("mov eax,[bx]", &[0x67, 0x8B, 0x07], class::ADDR16),
        ("mov eax,[disp16]", &[0x67, 0xA1, 0x34, 0x12], class::ADDR16),
        ("jcxz", &[0x67, 0xE3, 0x00], class::ADDR16),
        ("loop cx", &[0x67, 0xE2, 0x00], class::ADDR16),
        ("rep movsb [di],[si]", &[0x67, 0xF3, 0xA4], class::ADDR16),
        ("xlat [bx]", &[0x67, 0xD7], class::ADDR16),
        ("daa", &[0x27], class::LEGACY),
        ("aam", &[0xD4, 0x0A], class::LEGACY),
        ("salc", &[0xD6], class::LEGACY),
        ("82 /0 alias", &[0x82, 0xC0, 0x01], class::LEGACY),
        ("test F6 /1 alias", &[0xF6, 0xC8, 0x01], class::LEGACY),
        ("sal D1 /6 alias", &[0xD1, 0xF0], class::LEGACY),
        ("bswap ax", &[0x66, 0x0F, 0xC8], class::LEGACY),
        ("o16 ret", &[0x66, 0xC3], class::LEGACY),
        ("o16 jmp rel16", &[0x66, 0xE9, 0x00, 0x00], class::LEGACY),
        ("o16 pushf", &[0x66, 0x9C], class::LEGACY),
        ("rep add", &[0xF3, 0x01, 0xC8], class::LEGACY),
        ("rep nop [eax]", &[0xF3, 0x0F, 0x1F, 0x00], class::LEGACY),
        ("rep ret 4", &[0xF3, 0xC2, 0x04, 0x00], class::LEGACY),
        ("reserved nop 0F 19", &[0x0F, 0x19, 0x00], class::LEGACY),
        ("popcnt", &[0xF3, 0x0F, 0xB8, 0xC1], class::NEWER),
        ("lzcnt", &[0xF3, 0x0F, 0xBD, 0xC1], class::NEWER),
        ("tzcnt", &[0xF3, 0x0F, 0xBC, 0xC1], class::NEWER),
        ("movbe", &[0x0F, 0x38, 0xF0, 0x00], class::NEWER),
        ("andn (BMI1)", &[0xC4, 0xE2, 0x70, 0xF2, 0xC2], class::NEWER),
        ("rdrand", &[0x0F, 0xC7, 0xF0], class::NEWER),
        ("endbr64", &[0xF3, 0x0F, 0x1E, 0xFA], class::NEWER),
        ("bnd jmp", &[0xF2, 0xE9, 0x00, 0x00, 0x00, 0x00], class::NEWER),
        ("xacquire lock add", &[0xF2, 0xF0, 0x01, 0x08], class::NEWER),
        ("ud2", &[0x0F, 0x0B], class::UNDECODABLE),
        ("ud0", &[0x0F, 0xFF, 0xC0], class::UNDECODABLE),
        ("lock mov [eax],eax (invalid lock)", &[0xF0, 0x89, 0x00], class::UNDECODABLE),
        ("lock add eax,ecx (register destination)", &[0xF0, 0x01, 0xC8], class::UNDECODABLE),
        ("lea with a register operand", &[0x8D, 0xC0], class::UNDECODABLE),
    ];
    for (name, bytes, class) in cases {
        let instruction = decode(bytes);
        match validate::check(&instruction) {
            Ok(()) => panic!("{name} {bytes:02X?} ({:?}) accepted", instruction.code()),
            Err(v) => assert_eq!(v.class, *class, "{name} {bytes:02X?}: {v}"),
        }
    }
}

#[test]
fn rules_name_the_instruction() {
    assert_eq!(rejected(&[0xFA], class::SYSTEM), "SYSTEM: cli is a privileged instruction");
    assert_eq!(rejected(&[0x8E, 0xD8], class::SEGMENT), "SEGMENT: mov ds,ax loads a segment register");
    assert_eq!(
        rejected(&[0x64, 0x8B, 0x00], class::SEGMENT),
        "SEGMENT: segment-override prefix fs on mov eax,fs:[eax]"
    );
    let rule = rejected(&[0xCD, 0x80], class::INT);
    assert!(rule.contains("int 0x80") && rule.contains("0xd0"), "{rule}");
    let rule = rejected(&[0xE7, 0x99], class::IO);
    assert!(rule.contains("port 0x99"), "{rule}");
}

#[test]
fn invalid_lock_is_legacy_to_a_relaxed_decoder() {
    // The strict decoder says INVALID; a decoder without iced's checks hands `check` the real
    // instruction, and the lock rule then names the class excluded.txt gives it.
    let bytes = [0xF0, 0x89, 0x00];
    let mut relaxed = iced_x86::Decoder::with_ip(32, &bytes, 0x1000, iced_x86::DecoderOptions::NO_INVALID_CHECK);
    let instruction = relaxed.decode();
    assert_eq!(instruction.code(), Code::Mov_rm32_r32);
    let v = validate::check(&instruction).expect_err("lock mov");
    assert_eq!(v.class, class::LEGACY, "{v}");
    accepted(&[0xF0, 0x01, 0x08]);
}

#[test]
fn every_validator_class_is_in_excluded_txt() {
    let excluded: Vec<&str> = spec::EXCLUDED.rows().iter().map(|r| r.cells[0]).collect();
    for class in class::ALL {
        assert!(excluded.contains(class), "class {class} is not a row of excluded.txt");
    }
    for class in &excluded {
        assert!(class::ALL.contains(class), "excluded.txt class {class} is unknown to the validator");
    }
}

#[test]
fn every_v1_row_of_forms_txt_names_a_real_code() {
    let rows = spec::FORMS.rows();
    let mut seen = HashSet::new();
    let mut previous: Option<(&str, &str)> = None;
    for row in &rows {
        let (form, class, v1) = (row.cells[0], row.cells[1], row.cells[3]);
        let at = format!("isa-spec/forms.txt:{}", row.line);
        assert!(v1 == "y" || v1 == "-", "{at}: v1 column must be y or -");
        let code = validate::code_by_name(form).unwrap_or_else(|| panic!("{at}: {form} is not an iced-x86 Code"));
        assert_ne!(code, Code::INVALID, "{at}");
        assert!(code.op_code().mode32(), "{at}: {form} is not valid in 32-bit mode");
        assert_eq!(code.op_code().encoding(), EncodingKind::Legacy, "{at}: {form}");
        assert_ne!(code.op_code().address_size(), 16, "{at}: {form} uses 16-bit addressing");
        assert!(seen.insert(code), "{at}: {form} is listed twice");
        assert!(class.chars().all(|c| c.is_ascii_lowercase()), "{at}: class {class} is not lower case");
        if let Some(prev) = previous {
            assert!(prev < (class, form), "{at}: rows are not sorted by class, then form");
        }
        previous = Some((class, form));
        if v1 == "y" {
            assert_eq!(validate::form_class(code), Some(class), "{at}");
        }
    }
    assert!(rows.len() > 400, "forms.txt has only {} rows", rows.len());
}

/// Byte patterns covering every one-byte opcode with every ModRM byte, and every two-byte
/// (0F) opcode with every ModRM byte, under the prefixes the subset cares about.
fn patterns() -> impl Iterator<Item = Vec<u8>> {
    const PREFIXES: &[&[u8]] = &[&[], &[0x66], &[0xF3], &[0xF2], &[0xF0]];
    const TAIL: [u8; 8] = [0x10, 0, 0, 0, 0, 0, 0, 0];
    PREFIXES.iter().flat_map(|prefix| {
        (0..=0xFFFFu32).flat_map(move |n| {
            let (hi, lo) = ((n >> 8) as u8, n as u8);
            let one = [prefix, &[hi, lo][..], &TAIL[..]].concat();
            let two = [prefix, &[0x0F, hi, lo][..], &TAIL[..]].concat();
            [one, two]
        })
    })
}

#[test]
fn exhaustive_opcodes_name_excluded_classes_and_reach_every_form() {
    let mut accepted_codes = HashSet::new();
    let mut instruction = Instruction::default();
    for bytes in patterns() {
        let mut decoder = validate::decoder(&bytes, 0x1000);
        decoder.decode_out(&mut instruction);
        match validate::check(&instruction) {
            Ok(()) => {
                assert!(validate::form_class(instruction.code()).is_some());
                accepted_codes.insert(instruction.code());
            }
            Err(v) => {
                assert!(class::ALL.contains(&v.class), "{bytes:02X?}: class {} not in excluded.txt", v.class);
                assert!(!v.rule.is_empty());
            }
        }
    }
    for row in spec::FORMS.rows().iter().filter(|r| r.cells[3] == "y") {
        let code = validate::code_by_name(row.cells[0]).expect("checked by the forms test");
        assert!(accepted_codes.contains(&code), "forms.txt:{}: {} is never accepted", row.line, row.cells[0]);
    }
}

#[test]
fn every_undefined_cell_of_forms_txt_parses() {
    for row in spec::FORMS.rows() {
        let at = format!("isa-spec/forms.txt:{}", row.line);
        let mask = validate::parse_flags(row.cells[2]).unwrap_or_else(|e| panic!("{at}: {e}"));
        let code = validate::code_by_name(row.cells[0]).unwrap_or_else(|| panic!("{at}: not a Code"));
        assert_eq!(validate::undefined_flags(code), mask, "{at}");
    }
    assert_eq!(validate::undefined_flags(Code::Add_rm32_r32), 0);
    assert_eq!(validate::undefined_flags(Code::And_rm32_r32), 0x010);
    assert_eq!(validate::undefined_flags(Code::Div_rm32), 0x8D5);
    assert_eq!(validate::undefined_flags(Code::Shl_rm32_1), 0x010);
    assert_eq!(validate::undefined_flags(Code::Shl_rm32_CL), 0x810);
    assert_eq!(validate::undefined_flags(Code::Rol_rm32_1), 0);
    assert_eq!(validate::undefined_flags(Code::Rol_rm32_imm8), 0x800);
    assert!(validate::parse_flags("CF,XF").is_err());
    assert!(validate::parse_flags("CF,CF").is_err());
    assert!(validate::parse_flags("").is_err());
}
