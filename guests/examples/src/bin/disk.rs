//! Writes blocks 0 to 7 of disk 0 with a pattern, flushes, reads them back and compares, then
//! prints a checksum of what it read. Needs a disk of at least 8 blocks (`denali run --disk
//! FILE`); exits 2 without one, 1 if anything failed.
#![no_std]
#![no_main]

use denali_guest::abi::{block, irq, port, status};
use denali_guest::{IDLE_FOREVER, idle, println};

denali_guest::entry!(main);

const BLOCK_SIZE: usize = 4096;
const BLOCKS: u32 = 8;

/// A DISK request block (`isa-spec/blocks.txt`); the kernel wants it 4-byte aligned.
#[repr(C, align(4))]
struct DiskBlock {
    op: u32,
    disk: u32,
    block: u32,
    addr: u32,
    tag: u32,
    status: u32,
}

const _: () = assert!(core::mem::size_of::<DiskBlock>() == block::disk::SIZE as usize);

#[repr(C, align(4096))]
struct Buffer([u8; BLOCK_SIZE]);

static mut BUFFER: Buffer = Buffer([0; BLOCK_SIZE]);

/// Submits one request and waits (idling with interrupts enabled) for its final status.
fn request(op: u32, block: u32) -> (u32, u32) {
    let mut request = DiskBlock { op, disk: 0, block, addr: (&raw mut BUFFER) as usize as u32, tag: block, status: 0 };
    let ptr = &raw mut request;
    // SAFETY: the block is aligned, on the stack and names a static buffer; the kernel writes
    // only its BLOCK and STATUS fields and, for a read, the buffer. The asm is not `nomem`.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port::DISK_REQUEST, in("eax") ptr, options(nostack, preserves_flags));
    }
    loop {
        // SAFETY: reads a field of the live block the kernel may have written meanwhile.
        let (status, block) = unsafe { (core::ptr::read_volatile(&raw const (*ptr).status), (*ptr).block) };
        if status != status::PENDING {
            return (status, block);
        }
        denali_guest::irq_enable(true);
        idle(IDLE_FOREVER);
        denali_guest::irq_enable(false);
        denali_guest::ack_irq(1 << irq::DISK);
    }
}

fn pattern(block: u32, i: usize) -> u8 {
    (block as usize * 31 + i * 7 + (i >> 8)) as u8
}

fn buffer() -> &'static mut [u8; BLOCK_SIZE] {
    // SAFETY: the guest is single-threaded and no request is in flight when this is called.
    unsafe { &mut *(&raw mut BUFFER).cast::<[u8; BLOCK_SIZE]>() }
}

fn main() -> u32 {
    let (info, blocks) = request(4, 0);
    if info != status::OK {
        println!("disk: no disk 0 (status {info}); run with --disk FILE");
        return 2;
    }
    if blocks < BLOCKS {
        println!("disk: disk 0 has {blocks} blocks; at least {BLOCKS} are needed");
        return 2;
    }
    for block in 0..BLOCKS {
        for (i, byte) in buffer().iter_mut().enumerate() {
            *byte = pattern(block, i);
        }
        let (status, _) = request(2, block);
        if status != status::OK {
            println!("disk: write of block {block} failed with status {status}");
            return 1;
        }
    }
    let (flushed, _) = request(3, 0);
    if flushed != status::OK {
        println!("disk: flush failed with status {flushed}");
        return 1;
    }
    // FNV-1a over every byte read back.
    let mut checksum: u32 = 0x811C_9DC5;
    for block in 0..BLOCKS {
        buffer().fill(0);
        let (status, _) = request(1, block);
        if status != status::OK {
            println!("disk: read of block {block} failed with status {status}");
            return 1;
        }
        for (i, &byte) in buffer().iter().enumerate() {
            if byte != pattern(block, i) {
                println!("disk: block {block} byte {i} reads {byte}, not what was written");
                return 1;
            }
            checksum = (checksum ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
    }
    println!("disk: wrote, flushed and read back {BLOCKS} blocks, checksum {checksum:08x}");
    0
}
