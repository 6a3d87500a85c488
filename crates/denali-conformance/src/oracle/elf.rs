//! A minimal ELF32 executable writer for the oracle's helper program.
//!
//! The helper is a static i386 Linux program with no libc, no sections and no dynamic
//! linking, so the kernel needs only the file header and two program headers: one `PT_LOAD`
//! segment that maps the whole file (headers included) read/write/execute at a fixed address,
//! with extra zeroed memory after it (`memsz > filesz`) for the helper's variables, stacks and
//! buffers; and a `PT_GNU_STACK` header without the execute bit. The latter matters: without it
//! the kernel gives 32-bit programs the `READ_IMPLIES_EXEC` personality, every readable page
//! becomes executable, and the oracle could no longer see a jump out of a case's code page as an
//! instruction-fetch fault.

/// Size of the ELF32 file header.
const EHDR_SIZE: u32 = 52;
/// Size of one ELF32 program header.
const PHDR_SIZE: u32 = 32;
/// Number of program headers written.
const PHDR_COUNT: u32 = 2;
/// Bytes before the first byte of code: the headers, rounded up so the code starts aligned.
pub const HEADERS_SIZE: u32 = 0x80;

const PT_LOAD: u32 = 1;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// An executable image: `code` is loaded at `base + HEADERS_SIZE`, the segment spans
/// `memory_size` bytes from `base`, and execution starts at `entry`.
pub struct Image<'a> {
    pub base: u32,
    pub code: &'a [u8],
    pub memory_size: u32,
    pub entry: u32,
}

/// Builds the ELF file for `image`, or says why the image does not fit its segment.
pub fn write(image: &Image<'_>) -> Result<Vec<u8>, String> {
    let code_len = u32::try_from(image.code.len()).map_err(|_| "helper code too large".to_string())?;
    let file_size = HEADERS_SIZE.checked_add(code_len).ok_or_else(|| "helper code too large".to_string())?;
    if file_size > image.memory_size {
        return Err(format!(
            "helper file ({file_size:#x} bytes) is larger than its segment ({:#x} bytes)",
            image.memory_size
        ));
    }
    if !image.base.is_multiple_of(0x1000) {
        return Err(format!("helper base {:#x} is not page aligned", image.base));
    }
    const _: () = assert!(EHDR_SIZE + PHDR_COUNT * PHDR_SIZE <= HEADERS_SIZE);

    let mut out = Vec::with_capacity(file_size as usize);
    // e_ident: magic, ELFCLASS32, ELFDATA2LSB, EV_CURRENT, ELFOSABI_SYSV, padding.
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 1, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    push16(&mut out, 2); // e_type: ET_EXEC
    push16(&mut out, 3); // e_machine: EM_386
    push32(&mut out, 1); // e_version
    push32(&mut out, image.entry);
    push32(&mut out, EHDR_SIZE); // e_phoff: right after this header
    push32(&mut out, 0); // e_shoff: no section headers
    push32(&mut out, 0); // e_flags
    push16(&mut out, EHDR_SIZE as u16);
    push16(&mut out, PHDR_SIZE as u16);
    push16(&mut out, PHDR_COUNT as u16);
    push16(&mut out, 40); // e_shentsize (unused, the customary value)
    push16(&mut out, 0); // e_shnum
    push16(&mut out, 0); // e_shstrndx

    // PT_LOAD: the whole file at `base`, then zeroed memory up to `memory_size`.
    push32(&mut out, PT_LOAD);
    push32(&mut out, 0); // p_offset
    push32(&mut out, image.base); // p_vaddr
    push32(&mut out, image.base); // p_paddr
    push32(&mut out, file_size);
    push32(&mut out, image.memory_size);
    push32(&mut out, PF_R | PF_W | PF_X);
    push32(&mut out, 0x1000);

    // PT_GNU_STACK, not executable: keeps READ_IMPLIES_EXEC off (see the module comment).
    push32(&mut out, PT_GNU_STACK);
    for _ in 0..5 {
        push32(&mut out, 0);
    }
    push32(&mut out, PF_R | PF_W);
    push32(&mut out, 16);

    out.resize(HEADERS_SIZE as usize, 0);
    out.extend_from_slice(image.code);
    Ok(out)
}

fn push16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn push32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_where_the_kernel_looks() {
        let code = [0x90, 0xcc];
        let file =
            write(&Image { base: 0x4000_0000, code: &code, memory_size: 0x2000, entry: 0x4000_0080 }).expect("fits");
        assert_eq!(&file[..4], b"\x7fELF");
        assert_eq!(file.len(), 0x82);
        assert_eq!(u32::from_le_bytes(file[24..28].try_into().unwrap()), 0x4000_0080);
        // First program header: PT_LOAD with filesz 0x82 and memsz 0x2000.
        let ph = &file[52..84];
        assert_eq!(u32::from_le_bytes(ph[0..4].try_into().unwrap()), PT_LOAD);
        assert_eq!(u32::from_le_bytes(ph[16..20].try_into().unwrap()), 0x82);
        assert_eq!(u32::from_le_bytes(ph[20..24].try_into().unwrap()), 0x2000);
        assert_eq!(&file[0x80..], &code);
    }

    #[test]
    fn too_large_code_is_an_error() {
        let code = vec![0x90; 0x2000];
        assert!(write(&Image { base: 0x4000_0000, code: &code, memory_size: 0x1000, entry: 0 }).is_err());
    }
}
