//! What VMs of one image share, and that sharing is invisible to them: copy-on-write memory
//! from a `MemoryTemplate`, and decoded blocks from a `SharedCode`.
mod common;
use common::*;
use denali_engine::residency::PageMap;
use denali_engine::{Cpu, Engine, Exit, GuestMemory, Interpreter, MemoryTemplate, SharedCode};
use iced_x86::code_asm::*;

const PAGE: u32 = 0x1000;

/// A template whose pages 1 to 4 hold distinct non-zero bytes.
fn template() -> MemoryTemplate {
    let mut mem = GuestMemory::new(MEM_SIZE).unwrap();
    for page in 1..=4u32 {
        mem.fill(page * PAGE, PAGE as usize, page as u8).unwrap();
    }
    MemoryTemplate::new(&mem)
}

#[test]
fn a_write_by_one_vm_is_not_seen_by_another_vm_of_the_same_template() {
    let template = template();
    let mut a = GuestMemory::from_template(&template).unwrap();
    let b = GuestMemory::from_template(&template).unwrap();
    assert_eq!(a.read_u8(2 * PAGE).unwrap(), 2);
    a.write_u32(2 * PAGE, 0xDEAD_BEEF).unwrap();
    a.write_u32(9 * PAGE, 7).unwrap(); // a zero page of the template
    assert_eq!(a.read_u32(2 * PAGE).unwrap(), 0xDEAD_BEEF);
    assert_eq!(b.read_u32(2 * PAGE).unwrap(), 0x0202_0202);
    assert_eq!(b.read_u32(9 * PAGE).unwrap(), 0);
    // A memory made after the write still starts from the template.
    let c = GuestMemory::from_template(&template).unwrap();
    assert_eq!(c.read_u32(2 * PAGE).unwrap(), 0x0202_0202);
    assert_eq!(c.read_u32(9 * PAGE).unwrap(), 0);
}

#[test]
#[cfg(target_os = "linux")]
fn pages_a_vm_only_reads_stay_shared_and_a_written_page_becomes_its_own() {
    let template = template();
    assert!(template.is_shareable(), "Linux can back a template with a file");
    let pagemap = PageMap::open().expect("Linux has /proc/self/pagemap");
    let mut a = GuestMemory::from_template(&template).unwrap();
    let b = GuestMemory::from_template(&template).unwrap();
    assert!(a.is_copy_on_write() && b.is_copy_on_write());
    for page in 1..=4 {
        assert_eq!(a.read_u8(page * PAGE).unwrap(), page as u8);
        assert_eq!(b.read_u8(page * PAGE).unwrap(), page as u8);
    }
    let read = pagemap.residency(&a).unwrap();
    assert_eq!(read.private, 0, "reading copies nothing: {read:?}");
    assert!(read.shared >= 4, "the four pages read are the template's: {read:?}");
    a.write_u8(3 * PAGE, 0xFF).unwrap();
    let written = pagemap.residency(&a).unwrap();
    assert_eq!(written.private, 1, "one written page is A's own: {written:?}");
    assert_eq!(written.shared, read.shared - 1);
    assert_eq!(pagemap.residency(&b).unwrap().private, 0, "B copied nothing");
}

#[test]
#[cfg(target_os = "linux")]
fn a_slot_given_to_a_new_vm_holds_the_template_not_what_the_last_vm_wrote() {
    let template = template();
    let mut a = GuestMemory::from_template(&template).unwrap();
    assert!(a.is_copy_on_write());
    a.write_u32(2 * PAGE, 0xDEAD_BEEF).unwrap();
    a.write_u32(9 * PAGE, 0x5EC2_E700).unwrap();
    let slot = a.host_base();
    drop(a);
    let mut b = GuestMemory::from_template(&template).unwrap();
    // The last slot given back is the next given out: this is the same host memory.
    assert_eq!(b.host_base(), slot, "the slot was not reused, so this test checks nothing");
    assert_eq!(b.read_u32(2 * PAGE).unwrap(), 0x0202_0202);
    assert_eq!(b.read_u32(9 * PAGE).unwrap(), 0);
}

#[test]
fn memories_of_one_template_stay_apart_across_many_slots_and_mappings() {
    let template = template();
    // More VMs than one shared mapping holds (16 MiB of 128 KiB slots): several mappings.
    let count = 300u32;
    let mut vms: Vec<GuestMemory> = (0..count).map(|_| GuestMemory::from_template(&template).unwrap()).collect();
    for (i, vm) in (0..count).zip(&mut vms) {
        vm.write_u32(2 * PAGE + 4, i).unwrap();
        vm.write_u32(9 * PAGE, !i).unwrap();
    }
    for (i, vm) in (0..count).zip(&mut vms) {
        assert_eq!(vm.read_u32(2 * PAGE).unwrap(), 0x0202_0202, "vm {i}: a page it wrote keeps the rest");
        assert_eq!(vm.read_u32(2 * PAGE + 4).unwrap(), i, "vm {i} sees its own write");
        assert_eq!(vm.read_u32(9 * PAGE).unwrap(), !i, "vm {i} sees its own write");
        assert_eq!(vm.read_u32(4 * PAGE).unwrap(), 0x0404_0404, "vm {i} sees the template");
        assert_eq!(vm.read_u32(5 * PAGE).unwrap(), 0, "vm {i} sees the template");
    }
    // A VM booted after all those writes starts from the template.
    let fresh = GuestMemory::from_template(&template).unwrap();
    assert_eq!(fresh.read_u32(2 * PAGE + 4).unwrap(), 0x0202_0202);
    assert_eq!(fresh.read_u32(9 * PAGE).unwrap(), 0);
}

/// `mov eax, [DATA]; add eax, 1; int 0xd0`, at CODE.
fn program() -> Vec<u8> {
    assemble(|a| {
        a.mov(eax, dword_ptr(DATA))?;
        a.add(eax, 1)?;
        a.int(0xd0)
    })
}

fn run_shared(shared: &std::sync::Arc<SharedCode>, code: &[u8]) -> u32 {
    let mut mem = GuestMemory::new(MEM_SIZE).unwrap();
    mem.write(CODE, code).unwrap();
    mem.write_u32(DATA, 41).unwrap();
    let mut cpu = Cpu::new(CODE, STACK_TOP);
    match Interpreter::sharing(std::sync::Arc::clone(shared)).run(&mut cpu, &mut mem, 1000) {
        Exit::Terminate { status, .. } => status,
        other => panic!("expected terminate, got {other:?}"),
    }
}

#[test]
fn a_vm_whose_code_differs_decodes_its_own_block() {
    let shared = SharedCode::new();
    let code = program();
    assert_eq!(run_shared(&shared, &code), 42);
    assert_eq!(shared.blocks(), 1);
    // Same bytes: the block is reused, nothing new is shared.
    assert_eq!(run_shared(&shared, &code), 42);
    assert_eq!(shared.blocks(), 1);
    // Same address, other bytes (add eax, 2): the shared block must not be used.
    let mut other = code.clone();
    let imm = other.iter().rposition(|b| *b == 1).unwrap();
    other[imm] = 2;
    assert_eq!(run_shared(&shared, &other), 43);
    assert_eq!(shared.blocks(), 2);
    assert_eq!(run_shared(&shared, &code), 42);
}

#[test]
fn code_rewritten_after_taking_a_shared_block_is_decoded_again() {
    let shared = SharedCode::new();
    let code = program();
    assert_eq!(run_shared(&shared, &code), 42);
    let mut mem = GuestMemory::new(MEM_SIZE).unwrap();
    mem.write(CODE, &code).unwrap();
    mem.write_u32(DATA, 41).unwrap();
    let mut engine = Interpreter::sharing(std::sync::Arc::clone(&shared));
    let mut cpu = Cpu::new(CODE, STACK_TOP);
    assert!(matches!(engine.run(&mut cpu, &mut mem, 1000), Exit::Terminate { status: 42, .. }));
    let imm = code.iter().rposition(|b| *b == 1).unwrap() as u32;
    mem.write_u8(CODE + imm, 5).unwrap();
    let mut cpu = Cpu::new(CODE, STACK_TOP);
    assert!(matches!(engine.run(&mut cpu, &mut mem, 1000), Exit::Terminate { status: 46, .. }));
}
