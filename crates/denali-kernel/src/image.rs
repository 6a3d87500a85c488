//! Guest images and the boot protocol's loading rules.
//!
//! Two formats: ELF32 executables (little-endian, `EM_386`, `ET_EXEC`, statically linked) and
//! raw flat images loaded at an address the user names. Parsing ([`Image::from_elf`],
//! [`Image::flat`]) needs no VM; whether an image fits a given memory is checked separately
//! ([`Image::check_fits`]) so that `denali check` and `denali disasm` work on any image.
//!
//! ELF segments load at `p_paddr`, the physical address: guests run with flat physical memory
//! and no paging, so the physical address is where the bytes must be. Linkers set it equal to
//! `p_vaddr` for the images Denali runs; where the two differ, `p_paddr` wins.

use denali_abi::boot::FIRST_LOAD_ADDR;
use denali_engine::{GuestMemory, OutOfBounds};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, FileKind};

use crate::size::format_size;

/// One contiguous range of guest memory an image fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Index of the program header it came from (0 for a flat image), for messages.
    pub index: usize,
    /// Guest physical address of the first byte.
    pub addr: u32,
    /// The bytes copied from the file; the rest up to `mem_size` is zero.
    pub data: Vec<u8>,
    /// Size in memory, at least `data.len()`.
    pub mem_size: u32,
    /// Whether the segment holds code (`PF_X`; the whole of a flat image).
    pub executable: bool,
}

impl Segment {
    /// The first address past the segment, as u64 because it may be 2^32.
    pub fn end(&self) -> u64 {
        u64::from(self.addr) + u64::from(self.mem_size)
    }
}

/// A parsed guest image: what to put where, and where to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub entry: u32,
    pub segments: Vec<Segment>,
}

/// Why a file is not a loadable image. Messages do not name the file: the caller does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("not an ELF file (use --flat for a raw image)")]
    NotElf,
    #[error("is a 64-bit ELF file; Denali guests are 32-bit (ELFCLASS32)")]
    Elf64,
    #[error("is a big-endian ELF file; Denali guests are little-endian (ELFDATA2LSB)")]
    BigEndian,
    #[error("ELF header is invalid or truncated: {0}")]
    BadHeader(String),
    #[error("ELF machine is {0} ({1}); Denali guests are EM_386 (3)")]
    WrongMachine(u16, &'static str),
    #[error("ELF type is {0} ({1}); Denali guests are statically linked executables (ET_EXEC)")]
    WrongType(u16, &'static str),
    #[error("program headers are invalid or truncated: {0}")]
    BadProgramHeaders(String),
    #[error("segment {index} is {what}; Denali guests are statically linked")]
    Dynamic { index: usize, what: &'static str },
    #[error("segment {index}: file size {filesz:#x} is larger than its memory size {memsz:#x}")]
    FileLargerThanMemory { index: usize, filesz: u32, memsz: u32 },
    #[error(
        "segment {index}: its {filesz:#x} bytes at file offset {offset:#x} run past the end of the file ({file_len:#x} bytes)"
    )]
    Truncated { index: usize, offset: u32, filesz: u32, file_len: usize },
    #[error("segment {index} (0x{start:08x}..0x{end:09x}) wraps past the end of the 32-bit address space")]
    Wraps { index: usize, start: u32, end: u64 },
    #[error("has no loadable (PT_LOAD) segment")]
    NoSegments,
    #[error("flat image is empty")]
    EmptyFlat,
    #[error("flat image of {len:#x} bytes at 0x{load:08x} runs past the end of the 32-bit address space")]
    FlatWraps { load: u32, len: usize },
}

/// Why a parsed image cannot be loaded into a memory of a given size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error(
        "segment {index} (0x{start:08x}..0x{end:08x}) overlaps the register page (page 0); images load at or above 0x{FIRST_LOAD_ADDR:x}"
    )]
    OverlapsRegisterPage { index: usize, start: u32, end: u64 },
    #[error("segment {index} (0x{start:08x}..0x{end:08x}) does not fit in {} of memory", format_size(u64::from(*.mem_size)))]
    DoesNotFit { index: usize, start: u32, end: u64, mem_size: u32 },
    #[error("entry point 0x{entry:08x} is outside the {} of memory", format_size(u64::from(*.mem_size)))]
    EntryOutside { entry: u32, mem_size: u32 },
    #[error("entry point 0x{entry:08x} is in the register page (page 0)")]
    EntryInRegisterPage { entry: u32 },
}

impl Image {
    /// Parses an ELF32 executable.
    pub fn from_elf(data: &[u8]) -> Result<Image, ImageError> {
        let mut storage = Vec::new();
        let data = aligned(data, &mut storage);
        match FileKind::parse(data) {
            Ok(FileKind::Elf32) => {}
            Ok(FileKind::Elf64) => return Err(ImageError::Elf64),
            _ => {
                // FileKind rejects an ELF whose header is cut short; say so rather than
                // "not an ELF file" when the magic is there.
                if data.starts_with(&elf::ELFMAG) {
                    return Err(ImageError::BadHeader("the file is shorter than an ELF header".to_owned()));
                }
                return Err(ImageError::NotElf);
            }
        }
        let header = elf::FileHeader32::<Endianness>::parse(data).map_err(|e| ImageError::BadHeader(e.to_string()))?;
        if header.e_ident().data != elf::ELFDATA2LSB {
            return Err(ImageError::BigEndian);
        }
        let endian = Endianness::Little;
        let machine = header.e_machine(endian);
        if machine != elf::EM_386 {
            return Err(ImageError::WrongMachine(machine, machine_name(machine)));
        }
        let kind = header.e_type(endian);
        if kind != elf::ET_EXEC {
            return Err(ImageError::WrongType(kind, type_name(kind)));
        }
        let headers = header.program_headers(endian, data).map_err(|e| ImageError::BadProgramHeaders(e.to_string()))?;
        let mut segments = Vec::new();
        for (index, ph) in headers.iter().enumerate() {
            match ph.p_type(endian) {
                elf::PT_INTERP => {
                    return Err(ImageError::Dynamic { index, what: "PT_INTERP (it asks for a dynamic loader)" });
                }
                elf::PT_DYNAMIC => {
                    return Err(ImageError::Dynamic { index, what: "PT_DYNAMIC (dynamic linking information)" });
                }
                elf::PT_LOAD => {}
                _ => continue,
            }
            let (filesz, memsz, offset) = (ph.p_filesz(endian), ph.p_memsz(endian), ph.p_offset(endian));
            if filesz > memsz {
                return Err(ImageError::FileLargerThanMemory { index, filesz, memsz });
            }
            if memsz == 0 {
                continue;
            }
            let addr = ph.p_paddr(endian);
            let end = u64::from(addr) + u64::from(memsz);
            if end > 1 << 32 {
                return Err(ImageError::Wraps { index, start: addr, end });
            }
            let bytes = ph.data(endian, data).map_err(|()| ImageError::Truncated {
                index,
                offset,
                filesz,
                file_len: data.len(),
            })?;
            segments.push(Segment {
                index,
                addr,
                data: bytes.to_vec(),
                mem_size: memsz,
                executable: ph.p_flags(endian) & elf::PF_X != 0,
            });
        }
        if segments.is_empty() {
            return Err(ImageError::NoSegments);
        }
        Ok(Image { entry: header.e_entry(endian), segments })
    }

    /// A raw image: the whole file is code and data, loaded at `load`; execution starts at
    /// `entry`, or at `load` when it is `None`.
    pub fn flat(data: &[u8], load: u32, entry: Option<u32>) -> Result<Image, ImageError> {
        if data.is_empty() {
            return Err(ImageError::EmptyFlat);
        }
        let mem_size = u32::try_from(data.len())
            .ok()
            .filter(|len| load.checked_add(*len).is_some())
            .ok_or(ImageError::FlatWraps { load, len: data.len() })?;
        Ok(Image {
            entry: entry.unwrap_or(load),
            segments: vec![Segment { index: 0, addr: load, data: data.to_vec(), mem_size, executable: true }],
        })
    }

    /// Checks the boot protocol's placement rules against a memory of `mem_size` bytes: every
    /// segment lies in `FIRST_LOAD_ADDR..mem_size`, and the entry point is in memory outside
    /// page 0.
    pub fn check_fits(&self, mem_size: u32) -> Result<(), LoadError> {
        for s in &self.segments {
            if s.addr < FIRST_LOAD_ADDR {
                return Err(LoadError::OverlapsRegisterPage { index: s.index, start: s.addr, end: s.end() });
            }
            if s.end() > u64::from(mem_size) {
                return Err(LoadError::DoesNotFit { index: s.index, start: s.addr, end: s.end(), mem_size });
            }
        }
        if self.entry >= mem_size {
            return Err(LoadError::EntryOutside { entry: self.entry, mem_size });
        }
        if self.entry < FIRST_LOAD_ADDR {
            return Err(LoadError::EntryInRegisterPage { entry: self.entry });
        }
        Ok(())
    }

    /// Copies the segments into `memory`, which must be freshly zeroed: the zero fill past each
    /// segment's file bytes is the memory's own.
    pub fn load_into(&self, memory: &mut GuestMemory) -> Result<(), LoadError> {
        self.check_fits(memory.size())?;
        for s in &self.segments {
            // check_fits has placed every segment inside memory, so this cannot fail; map the
            // impossible case to the same error rather than panicking.
            memory.write(s.addr, &s.data).map_err(|OutOfBounds(_)| LoadError::DoesNotFit {
                index: s.index,
                start: s.addr,
                end: s.end(),
                mem_size: memory.size(),
            })?;
        }
        Ok(())
    }

    /// The executable segments, in file order: what `check` and `disasm` sweep.
    pub fn code(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(|s| s.executable)
    }
}

/// `data`, copied into `storage` if it is not 8-byte aligned: `object` reads ELF headers in
/// place as structs of aligned integers, and an image embedded with `include_bytes!` or sliced
/// from a larger buffer has no alignment guarantee.
fn aligned<'a>(data: &'a [u8], storage: &'a mut Vec<u8>) -> &'a [u8] {
    const ALIGN: usize = 8;
    if data.as_ptr().align_offset(ALIGN) == 0 {
        return data;
    }
    storage.resize(data.len() + ALIGN, 0);
    let start = storage.as_ptr().align_offset(ALIGN).min(ALIGN);
    storage[start..start + data.len()].copy_from_slice(data);
    &storage[start..start + data.len()]
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        elf::EM_X86_64 => "EM_X86_64",
        elf::EM_ARM => "EM_ARM",
        elf::EM_AARCH64 => "EM_AARCH64",
        elf::EM_RISCV => "EM_RISCV",
        elf::EM_NONE => "EM_NONE",
        _ => "unsupported",
    }
}

fn type_name(kind: u16) -> &'static str {
    match kind {
        elf::ET_NONE => "ET_NONE",
        elf::ET_REL => "ET_REL, an object file: link it first",
        elf::ET_DYN => "ET_DYN, a shared object or position-independent executable",
        elf::ET_CORE => "ET_CORE, a core dump",
        _ => "unknown",
    }
}
