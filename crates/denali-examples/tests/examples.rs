//! Checks the bundled guest images' ELF headers by hand (no ELF crate: the point is to check
//! what the loader will see) and that the host-side checksums are deterministic.

use denali_examples::{ALL, find};

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[test]
fn every_image_is_a_static_elf32_i386_executable() {
    for example in ALL {
        let elf = example.elf;
        let name = example.name;
        assert!(elf.len() > 52, "{name}: too short for an ELF header");
        assert_eq!(&elf[..4], b"\x7fELF", "{name}: magic");
        assert_eq!(elf[4], 1, "{name}: ELFCLASS32");
        assert_eq!(elf[5], 1, "{name}: little-endian");
        assert_eq!(u16_at(elf, 16), 2, "{name}: ET_EXEC");
        assert_eq!(u16_at(elf, 18), 3, "{name}: EM_386");
        let entry = u32_at(elf, 24);
        assert!(entry >= 0x1000, "{name}: entry {entry:#x} in the register page");

        // Program headers: loadable segments above page 0, only code executable, no
        // interpreter or dynamic section.
        let (phoff, phentsize, phnum) = (u32_at(elf, 28) as usize, u16_at(elf, 42) as usize, u16_at(elf, 44));
        assert_eq!(phentsize, 32, "{name}: Elf32_Phdr size");
        let mut executable_segments = 0;
        for i in 0..usize::from(phnum) {
            let ph = &elf[phoff + i * phentsize..][..phentsize];
            let (p_type, vaddr, filesz, memsz, flags) =
                (u32_at(ph, 0), u32_at(ph, 8), u32_at(ph, 16), u32_at(ph, 20), u32_at(ph, 24));
            assert!(p_type != 2 && p_type != 3, "{name}: PT_DYNAMIC or PT_INTERP");
            if p_type == 1 {
                assert!(vaddr >= 0x1000, "{name}: segment at {vaddr:#x} overlaps page 0");
                assert!(filesz <= memsz, "{name}: filesz > memsz");
                if flags & 1 != 0 {
                    executable_segments += 1;
                    assert_eq!(flags & 2, 0, "{name}: writable code segment");
                    assert!((vaddr..vaddr + memsz).contains(&entry), "{name}: entry outside code");
                }
            }
        }
        assert_eq!(executable_segments, 1, "{name}: exactly one executable segment");
    }
}

#[test]
fn names_are_unique_and_findable() {
    for (i, example) in ALL.iter().enumerate() {
        assert_eq!(find(example.name).unwrap().elf, example.elf);
        assert!(ALL[..i].iter().all(|e| e.name != example.name), "{} listed twice", example.name);
    }
    assert!(find("no-such-guest").is_none());
}

#[test]
fn hello_output_names_vm_and_memory() {
    let out = (find("hello").unwrap().expected_output.unwrap())();
    assert_eq!(out, "Hello from a Denali guest!\nHello from Denali VM 0 with 16 MiB of memory\n");
}

#[test]
fn compute_checksums_are_deterministic_and_well_formed() {
    for example in ALL.iter().filter(|e| e.name != "hello") {
        let expected = example.expected_output.expect("compute guests have a known output");
        let first = expected();
        assert_eq!(first, expected(), "{}: checksum differs between runs", example.name);
        let hex = first
            .strip_prefix(example.name)
            .and_then(|s| s.strip_prefix(": "))
            .and_then(|s| s.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("{}: malformed output {first:?}", example.name));
        assert!(hex.len() == 8 || hex.len() == 16, "{}: {hex:?}", example.name);
        assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{}: {hex:?}", example.name);
    }
}

/// One checksum pinned to a value computed by an independent implementation (a Python sieve
/// counting pi(25,000,000) = 1,565,927 primes, with the same hash), so that a kernel that is
/// deterministic but wrong does not go unnoticed. Resizing the kernel means recomputing this.
#[test]
fn sieve_checksum_matches_the_prime_count() {
    assert_eq!(kernels::sieve(), 0x171a_25cd);
}
