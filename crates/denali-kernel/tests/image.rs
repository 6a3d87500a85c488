//! Image parsing and the boot protocol's placement rules, on hand-built ELF32 files.

mod common;

use common::{Elf, PF_R, PT_DYNAMIC, PT_INTERP, PT_NOTE, Seg};
use denali_engine::GuestMemory;
use denali_kernel::{Image, ImageError, LoadError};

const MIB: u32 = 1 << 20;

#[test]
fn loads_segments_at_paddr_and_zero_fills() {
    let mut elf = Elf::valid();
    // p_paddr is where the bytes go, whatever p_vaddr says.
    elf.segments[1].vaddr = 0xC010_1000;
    let image = Image::from_elf(&elf.build()).unwrap();
    assert_eq!(image.entry, 0x10_0000);
    assert_eq!(image.segments.len(), 2);
    assert!(image.segments[0].executable);
    assert!(!image.segments[1].executable);
    assert_eq!(image.code().count(), 1);

    let mut fresh = GuestMemory::new(u64::from(2 * MIB)).unwrap();
    image.load_into(&mut fresh).unwrap();
    assert_eq!(fresh.bytes(0x10_0000, 7).unwrap(), &[0xB8, 7, 0, 0, 0, 0xCD, 0xD0]);
    assert_eq!(fresh.bytes(0x10_1000, 4).unwrap(), b"data");
    assert!(fresh.bytes(0x10_1004, 0x2000 - 4).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn skips_other_program_headers_and_empty_segments() {
    let mut elf = Elf::valid();
    elf.segments.push(Seg { p_type: PT_NOTE, paddr: 0, vaddr: 0, data: vec![1, 2, 3, 4], memsz: 4, flags: PF_R });
    elf.segments.push(Seg::load(0, &[], 0, PF_R)); // an empty PT_LOAD loads nothing, wherever it says
    let image = Image::from_elf(&elf.build()).unwrap();
    assert_eq!(image.segments.len(), 2);
    image.check_fits(2 * MIB).unwrap();
}

#[test]
fn rejects_files_that_are_not_elf() {
    assert_eq!(Image::from_elf(b"#!/bin/sh\necho hi\n"), Err(ImageError::NotElf));
    assert_eq!(Image::from_elf(b""), Err(ImageError::NotElf));
}

#[test]
fn rejects_elf64() {
    let mut elf = Elf::valid();
    elf.class = 2;
    let mut bytes = elf.build();
    bytes.resize(200, 0);
    assert_eq!(Image::from_elf(&bytes), Err(ImageError::Elf64));
}

#[test]
fn rejects_big_endian() {
    let mut elf = Elf::valid();
    elf.data_encoding = 2;
    assert_eq!(Image::from_elf(&elf.build()), Err(ImageError::BigEndian));
}

#[test]
fn rejects_other_machines() {
    let mut elf = Elf::valid();
    elf.machine = 62; // EM_X86_64
    let err = Image::from_elf(&elf.build()).unwrap_err();
    assert_eq!(err, ImageError::WrongMachine(62, "EM_X86_64"));
    assert!(err.to_string().contains("EM_X86_64"), "{err}");
}

#[test]
fn rejects_shared_objects_and_relocatables() {
    let mut elf = Elf::valid();
    elf.kind = 3; // ET_DYN
    let err = Image::from_elf(&elf.build()).unwrap_err();
    assert!(matches!(err, ImageError::WrongType(3, _)), "{err}");
    assert!(err.to_string().contains("ET_DYN"), "{err}");
    elf.kind = 1;
    assert!(matches!(Image::from_elf(&elf.build()), Err(ImageError::WrongType(1, _))));
}

#[test]
fn rejects_dynamic_linking() {
    for p_type in [PT_INTERP, PT_DYNAMIC] {
        let mut elf = Elf::valid();
        elf.segments
            .insert(1, Seg { p_type, paddr: 0x10_2000, vaddr: 0x10_2000, data: vec![0; 8], memsz: 8, flags: PF_R });
        let err = Image::from_elf(&elf.build()).unwrap_err();
        assert!(matches!(err, ImageError::Dynamic { index: 1, .. }), "{err}");
    }
}

#[test]
fn rejects_truncated_headers() {
    let bytes = Elf::valid().build();
    for len in [4, 15, 16, 30, 51] {
        let err = Image::from_elf(&bytes[..len]).unwrap_err();
        assert!(matches!(err, ImageError::BadHeader(_)), "{len} bytes: {err}");
    }
    // Header intact, program headers cut.
    let err = Image::from_elf(&bytes[..60]).unwrap_err();
    assert!(matches!(err, ImageError::BadProgramHeaders(_)), "{err}");
}

#[test]
fn rejects_truncated_segment_data() {
    let bytes = Elf::valid().build();
    let err = Image::from_elf(&bytes[..bytes.len() - 2]).unwrap_err();
    assert!(matches!(err, ImageError::Truncated { index: 1, .. }), "{err}");
    assert!(err.to_string().starts_with("segment 1:"), "{err}");
}

#[test]
fn rejects_file_size_larger_than_memory_size() {
    let mut elf = Elf::valid();
    elf.segments[1].memsz = 2;
    assert!(matches!(Image::from_elf(&elf.build()), Err(ImageError::FileLargerThanMemory { index: 1, .. })));
}

#[test]
fn rejects_a_segment_wrapping_the_address_space() {
    let mut elf = Elf::valid();
    elf.segments[1].paddr = 0xFFFF_F000;
    elf.segments[1].memsz = 0x2000;
    assert!(matches!(Image::from_elf(&elf.build()), Err(ImageError::Wraps { index: 1, .. })));
}

#[test]
fn rejects_elf_without_loadable_segments() {
    let mut elf = Elf::valid();
    elf.segments.clear();
    assert_eq!(Image::from_elf(&elf.build()), Err(ImageError::NoSegments));
}

#[test]
fn segment_beyond_memory_is_named() {
    let mut elf = Elf::valid();
    elf.segments[1] = Seg::load(0x10_0000 + 0x1000, &[1], MIB, PF_R);
    let image = Image::from_elf(&elf.build()).unwrap();
    let err = image.check_fits(MIB + 0x1000).unwrap_err();
    assert!(matches!(err, LoadError::DoesNotFit { index: 1, .. }));
    let mut elf = Elf::valid();
    elf.segments[1] = Seg::load(0x10_0000, &[1], MIB, PF_R);
    elf.segments.swap(0, 1);
    elf.segments[1].paddr = 0x8000;
    elf.entry = 0x8000;
    let image = Image::from_elf(&elf.build()).unwrap();
    assert_eq!(
        image.check_fits(MIB).unwrap_err().to_string(),
        "segment 0 (0x00100000..0x00200000) does not fit in 1 MiB of memory"
    );
    image.check_fits(2 * MIB).unwrap();
}

#[test]
fn segment_in_page_0_is_rejected() {
    let mut elf = Elf::valid();
    elf.segments[1] = Seg::load(0xF00, &[1; 0x200], 0x200, PF_R);
    let image = Image::from_elf(&elf.build()).unwrap();
    let err = image.check_fits(2 * MIB).unwrap_err();
    assert!(matches!(err, LoadError::OverlapsRegisterPage { index: 1, .. }));
    assert!(err.to_string().contains("overlaps the register page"), "{err}");
}

#[test]
fn entry_must_be_in_memory_outside_page_0() {
    let mut elf = Elf::valid();
    elf.entry = 0x40_0000;
    let image = Image::from_elf(&elf.build()).unwrap();
    assert!(matches!(image.check_fits(2 * MIB), Err(LoadError::EntryOutside { entry: 0x40_0000, .. })));
    elf.entry = 0x10;
    let image = Image::from_elf(&elf.build()).unwrap();
    assert!(matches!(image.check_fits(2 * MIB), Err(LoadError::EntryInRegisterPage { entry: 0x10 })));
}

#[test]
fn flat_images() {
    let image = Image::flat(&[0x90, 0xF4], 0x2000, None).unwrap();
    assert_eq!(image.entry, 0x2000);
    assert!(image.segments[0].executable);
    assert_eq!(Image::flat(&[0x90], 0x2000, Some(0x3000)).unwrap().entry, 0x3000);
    assert_eq!(Image::flat(&[], 0x2000, None), Err(ImageError::EmptyFlat));
    assert!(matches!(Image::flat(&[0; 16], 0xFFFF_FFF8, None), Err(ImageError::FlatWraps { .. })));
    assert!(matches!(
        Image::flat(&[0x90], 0x0800, None).unwrap().check_fits(MIB),
        Err(LoadError::OverlapsRegisterPage { .. })
    ));
    assert!(matches!(
        Image::flat(&[0x90; 16], 0x1FF8, None).unwrap().check_fits(0x2000),
        Err(LoadError::DoesNotFit { .. })
    ));
}

#[test]
fn unaligned_input_parses() {
    // Images embedded with include_bytes! have no alignment guarantee.
    let bytes = Elf::valid().build();
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    assert_eq!(Image::from_elf(&shifted[1..]).unwrap(), Image::from_elf(&bytes).unwrap());
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap fuzz: every prefix of a valid file and single-byte corruptions of it.
    let bytes = Elf::valid().build();
    for len in 0..bytes.len() {
        let _ = Image::from_elf(&bytes[..len]);
    }
    for i in 0..bytes.len() {
        for value in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
            let mut corrupt = bytes.clone();
            corrupt[i] = value;
            if let Ok(image) = Image::from_elf(&corrupt) {
                let _ = image.check_fits(2 * MIB);
            }
        }
    }
}
