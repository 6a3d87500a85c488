//! The block of state a translated block reads and writes through `rdi`.

/// Byte offsets of `Ctx`'s fields, used in the generated code. What every entry from the
/// runtime writes or every exit stores lies in the first two cache lines; `saved` (written
/// only by the blocks that use it) comes after them, so a switch to a VM touches two lines of
/// its `Ctx`, not six.
pub(crate) const FLAGS_IN: i32 = 32;
pub(crate) const LEFT: i32 = 40;
pub(crate) const EIP: i32 = 48;
pub(crate) const COUNT: i32 = 52;
pub(crate) const FLAGS_SAVED: i32 = 56;
pub(crate) const STOPPED: i32 = 60;
pub(crate) const FLAGS_OUT: i32 = 64;
pub(crate) const BUDGET_EXITS: i32 = 72;
pub(crate) const RUNS: i32 = 80;
pub(crate) const MEM_BASE: i32 = 88;
pub(crate) const LIMIT: i32 = 96;
pub(crate) const CODE_PAGES: i32 = 104;
pub(crate) const ONE: i32 = 112;
pub(crate) const DF: i32 = 116;
pub(crate) const TABLE: i32 = 120;
pub(crate) const SAVED: i32 = 128;

/// Added to the budget while generated code holds it (`Ctx::left`, r11): with the budget below
/// 2^31, the high dword of `r11 - n` is 1 while `n` instructions fit and 0 once they do not,
/// which `jecxz` tests flag-free in one instruction.
pub(crate) const BUDGET_BIAS: u64 = 1 << 32;

/// Slots of the chaining table (a power of two): `[tag, inner entry address]` pairs.
pub(crate) const SLOTS: usize = 4096;
/// Bits of a slot number; the slot is the top `SLOT_BITS` of the CRC-32C hash.
const SLOT_BITS: u32 = SLOTS.trailing_zeros();

/// The chaining-table slot of a guest address: the top bits of what the host's `crc32`
/// instruction computes from accumulator 0 and data `eip` (CRC-32C). Generated code hashes
/// indirect targets with that instruction (it touches no flag, unlike a multiply), so this
/// function must match it bit for bit.
pub(crate) fn slot(eip: u32) -> usize {
    // crc ^= data, then 32 reflected steps of the Castagnoli polynomial.
    let mut crc = eip;
    for _ in 0..32 {
        crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
    }
    (crc >> (32 - SLOT_BITS)) as usize
}

/// The tag of a live slot for `eip`: its bitwise complement, so that `eip + tag + 1` is zero
/// exactly on a match (a flag-free `lea` test) and the empty tag 0 matches no guest address.
pub(crate) fn tag(eip: u32) -> u64 {
    !u64::from(eip)
}

/// The `Ctx::flags_in` image of the status flags of `eflags`.
pub(crate) fn flags_in(eflags: u32) -> u64 {
    u64::from(eflags & 0xD5) | (u64::from(eflags >> 11 & 1) << 15)
}

/// The status flags (CF PF AF ZF SF OF, the others 0) of a `Ctx::flags_out` image.
pub(crate) fn flags_out(image: u64) -> u32 {
    #[allow(clippy::cast_possible_truncation, reason = "two bytes")]
    let image = image as u32;
    (image >> 8 & 0xD5) | (image & 1) << 11
}

/// Guest registers and the runtime's inputs and outputs of one block execution.
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct Ctx {
    /// Guest registers, in encoding order (offset 0).
    pub regs: [u32; 8],
    /// The guest status flags an outer entry loads: byte 0 is the low byte of EFLAGS (SF ZF
    /// AF PF CF, for `sahf`), byte 1 is 0x80 when OF is set, else 0 (see [`flags_in`]).
    pub flags_in: u64,
    /// Budget left plus [`BUDGET_BIAS`]; each block entry takes its instruction count from it
    /// (or exits).
    pub left: u64,
    /// Where the guest continues.
    pub eip: u32,
    /// Instructions of the last block run that did not retire (refunded to `left` at exit).
    pub count: u32,
    /// 1 when `flags_out` holds the guest's status flags.
    pub flags_saved: u32,
    /// 1 when the run stopped before an instruction it could not complete (a failed check).
    pub stopped: u32,
    /// The status flags the block saved at exit, when `flags_saved` is 1: byte 0 is OF
    /// (`seto`), byte 1 the low byte of EFLAGS (`lahf`) (see [`flags_out`]).
    pub flags_out: u64,
    /// 1 when a block's inner entry found the budget too small (the run then stops), else 0.
    pub budget_exits: u64,
    /// Jumps from a block to another block (or, when the lookup misses, to the runtime):
    /// counted on the way out, so that a loop inside a block costs no count per pass.
    pub runs: u64,
    /// Host address of guest address 0.
    pub mem_base: u64,
    /// 2^32 - memory size.
    pub limit: u64,
    /// Host address of the code-page table.
    pub code_pages: u64,
    /// The constant 1: generated code shifts it right by a code-page byte (`shrx` takes its
    /// source from memory), which gives 0 exactly on a flagged page, flag-free.
    pub one: u32,
    /// The guest's DF (0 or 1): constant while generated code runs, since every instruction
    /// that changes it (CLD, STD, POPFD, IRET) falls back to the interpreter.
    pub df: u32,
    /// Host address of the VM's chaining [`Table`]. Apart from the `Ctx`, so that the `Ctx`
    /// can live in the JIT's own small allocation, packed with other VMs' on a page: a
    /// `Ctx` at the head of the 64 KiB table had a page of its own, a TLB miss (nested paging)
    /// at every switch to the VM in a large fleet. A lookup pays one load, from a line the
    /// entry touched anyway.
    pub table: u64,
    /// Operands instruction i of a block saves for a fixup its exits may apply (SHR's
    /// original operand: the overflow flag is its top bit). Written by the block before any
    /// exit reads it, so the runtime never initialises it.
    pub saved: Saved,
}

/// One u32 per instruction of the longest block.
#[repr(transparent)]
pub(crate) struct Saved(pub [u32; super::translate::MAX_BLOCK]);

impl Default for Saved {
    fn default() -> Saved {
        Saved([0; super::translate::MAX_BLOCK])
    }
}

/// A VM's chaining table, which generated code reaches through [`Ctx::table`]: `SLOTS` pairs
/// of u64, [`tag`] of the block's guest address (0: empty) and host address of the block's
/// inner entry. Holds only live blocks.
pub(crate) struct Table(Box<[u64; 2 * SLOTS]>);

impl Table {
    /// An empty table: 64 KiB, made only when a VM's JIT first runs generated code (a tiered
    /// JIT whose code stays cold never needs it). Zeroed on the heap, never on the stack.
    #[cold]
    pub fn new() -> Table {
        let pairs: Box<[u64]> = vec![0; 2 * SLOTS].into_boxed_slice();
        // A thin pointer (the length is the type's): the table's field in the `Jit` is one
        // word of the line the runtime reads at every entry.
        Table(pairs.try_into().unwrap_or_else(|_| unreachable!("2 * SLOTS elements")))
    }

    /// Host address of slot 0 (stable while the table lives: the pairs are on the heap).
    pub fn address(&self) -> u64 {
        self.0.as_ptr() as u64
    }

    /// Enters `inner` (a block's inner entry) for `eip` in its slot.
    pub fn set(&mut self, slot: usize, eip: u32, inner: u64) {
        self.0[2 * slot] = tag(eip);
        self.0[2 * slot + 1] = inner;
    }

    /// Empties the slot of `eip` if it holds `eip`'s block.
    pub fn clear(&mut self, eip: u32) {
        let at = 2 * slot(eip);
        if self.0[at] == tag(eip) {
            self.0[at] = 0;
        }
    }

    /// Empties every slot.
    pub fn clear_all(&mut self) {
        self.0.fill(0);
    }
}

const _: () = {
    assert!(std::mem::offset_of!(Ctx, flags_in) == FLAGS_IN as usize);
    assert!(std::mem::offset_of!(Ctx, flags_out) == FLAGS_OUT as usize);
    assert!(std::mem::offset_of!(Ctx, mem_base) == MEM_BASE as usize);
    assert!(std::mem::offset_of!(Ctx, limit) == LIMIT as usize);
    assert!(std::mem::offset_of!(Ctx, code_pages) == CODE_PAGES as usize);
    assert!(std::mem::offset_of!(Ctx, eip) == EIP as usize);
    assert!(std::mem::offset_of!(Ctx, count) == COUNT as usize);
    assert!(std::mem::offset_of!(Ctx, flags_saved) == FLAGS_SAVED as usize);
    assert!(std::mem::offset_of!(Ctx, stopped) == STOPPED as usize);
    assert!(std::mem::offset_of!(Ctx, left) == LEFT as usize);
    assert!(std::mem::offset_of!(Ctx, budget_exits) == BUDGET_EXITS as usize);
    assert!(std::mem::offset_of!(Ctx, saved) == SAVED as usize);
    assert!(std::mem::offset_of!(Ctx, one) == ONE as usize);
    assert!(std::mem::offset_of!(Ctx, df) == DF as usize);
    assert!(std::mem::offset_of!(Ctx, table) == TABLE as usize);
    assert!(std::mem::offset_of!(Ctx, runs) == RUNS as usize);
    // Everything but `saved` in the first two cache lines.
    assert!(SAVED == 128);
};
