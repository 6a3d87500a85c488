//! The x86-64 backend: block cache, runtime loop and fallback to the interpreter.

mod arena;
mod checks;
mod ctx;
#[cfg(target_os = "linux")]
mod fault;
mod perf_map;
mod shared;
mod translate;

pub use shared::SharedJit;

use arena::Arena;
use ctx::{Ctx, Table};
use denali_abi::boot::PAGE_SIZE;
use denali_engine::{Cpu, Engine, Exit, GuestMemory, Interpreter, SharedCode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

const PAGE_SHIFT: u32 = PAGE_SIZE.trailing_zeros();
/// The guest status flags (CF PF AF ZF SF OF) that live in host flags inside a block.
const STATUS: u32 = 0x8D5;
/// Most cached entries (translated or not) before the cache is flushed whole.
const MAX_ENTRIES: usize = 1 << 16;
/// How often a tiered JIT lets the interpreter run a block (counted by the interpreter, per
/// decoded block) before it translates it.
/// Translating costs about 1-3 us per guest instruction, interpreting one about 10-20 ns, so
/// a block pays for its translation after roughly a hundred runs; code that runs fewer times
/// (start-up, the few thousand instructions of an idle VM in a large fleet) is never translated.
pub const TIER_UP: u32 = 128;
/// Writes to write-protected code a guarded memory may take before the JIT stops protecting
/// its code (and checks its stores again), beyond one per [`UNPROTECT_EVERY`] instructions
/// run. Each costs a fault (when translated code made it) and two protection changes, about
/// 10 us, on top of the retranslation that both ways of detecting the write pay; a guest that
/// rewrites translated code faster (code and hot data on one page) pays less with the check.
const UNPROTECTS: u64 = 64;
/// See [`UNPROTECTS`]: one write to protected code per million instructions (about a
/// millisecond) costs about 1 %.
const UNPROTECT_EVERY: u64 = 1_000_000;

/// A cached decision for one guest address.
#[derive(Clone, Copy)]
struct Entry {
    /// Offset of the host code in the arena (when `count > 0`).
    offset: usize,
    /// Guest instructions of the block; 0: run the interpreter for one instruction.
    count: u32,
    /// The block's chaining-table slot and the host address of its inner entry.
    slot: usize,
    inner: u64,
    /// Arena offset of the inner entry.
    inner_offset: usize,
    /// In the fleet's shared arena (`Jit::sharing`), not this JIT's own.
    shared: bool,
}

/// Cache counters, for benchmarks and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitStats {
    /// Blocks this JIT translated (into its own arena or, shared, into its fleet's).
    pub translations: u64,
    /// Blocks taken from the fleet's shared translations, translated by another VM (or by
    /// this one before it dropped them).
    pub shared_hits: u64,
    /// Guest instructions in the translated blocks.
    pub translated_instructions: u64,
    /// Nanoseconds spent translating (decode, validate, assemble, install).
    pub compile_ns: u64,
    /// Translated blocks entered, from the runtime or chained (a loop inside a block, or a
    /// block jumping to its own start, stays in one run).
    pub block_runs: u64,
    /// Blocks entered straight from another block (a hit in the chaining table, direct or
    /// indirect), without returning to the runtime.
    pub chain_hits: u64,
    /// Runtime lookups of a guest address in the block cache (after an exit from generated
    /// code or the interpreter).
    pub lookups: u64,
    /// Block entries refused because the rest of the budget was smaller than the block.
    pub budget_exits: u64,
    /// Instructions run by the interpreter fallback.
    pub interpreted: u64,
    /// Whole-cache flushes.
    pub flushes: u64,
    /// Blocks dropped because their code was written.
    pub invalidations: u64,
    /// Guard-region mode: guest accesses outside memory, and stores to write-protected code,
    /// that faulted in generated code and resumed at their instruction's stop exit.
    pub guard_faults: u64,
}

/// The basic-block JIT engine. Owns an interpreter for everything it does not translate.
///
/// `repr(C)`: what the runtime touches at every entry from a fleet's scheduler (a VM switch)
/// lies in four cache lines, the `Ctx`'s first two and the two after the `Ctx` (asserted
/// below); spread over the struct, they were seven lines, each a cache miss per switch in a
/// large fleet.
#[repr(C)]
pub struct Jit {
    /// What generated code reads and writes through `rdi`: in the JIT itself, so that the
    /// `Ctx`s of a fleet's VMs share pages (and their lines the page of the JIT's other hot
    /// fields) rather than take a TLB entry each per switch.
    ctx: Ctx,
    /// The last entry `cached` found, and its address (`u32::MAX`, never a block start inside
    /// memory, when none): a VM that loops in one block finds it here at every quantum
    /// without touching the block map, a cache miss per VM switch in a large fleet. Kept
    /// equal to `blocks[last.0]`: cleared wherever a block is dropped.
    last: (u32, Entry),
    /// `GuestMemory::code_write_count` when this JIT last dropped written blocks.
    seen: u64,
    /// The chaining table generated code jumps through (holds only live blocks). Made at the
    /// first translation: 64 KiB that a tiered JIT whose code stays cold never needs.
    table: Option<Table>,
    /// The fleet's shared translations, when this JIT takes and gives blocks there.
    sharing: Option<Arc<SharedJit>>,
    /// The counters of `JitStats` every entry updates (the others are in `stats`).
    counts: Counts,
    /// How often the interpreter runs a block before it is translated; 0 translates at once.
    tier_up: u32,
    /// The memory size the cached blocks were translated for (their bounds checks and
    /// direct exits hold it as an immediate); 0 before the first run.
    mem_size: u32,
    /// The cached blocks are for guard-region mode (a guarded memory: no bounds checks, faults
    /// resumed by `fault.rs`), not the checked mode.
    guarded: bool,
    /// The cached blocks address guest memory through the GS base (guard-region mode only).
    segment: bool,
    /// Whether guard-region mode may address memory through GS where the host allows it (see
    /// [`Jit::set_segment_addressing`]).
    segment_allowed: bool,
    /// The cached blocks are guard-region translations whose stores make no code-page check:
    /// the memory write-protects its pages holding cached code, so such a store faults.
    protected: bool,
    /// The last exit from generated code was a missed chaining-table lookup (direct or
    /// indirect) for the address the runtime enters next: only then does that block take its
    /// slot back (`cached`). Rewriting the slot at every entry cost a cache miss (the table is
    /// 64 KiB) per VM switch.
    missed: bool,
    stats: JitStats,
    interp: Interpreter,
    arena: Arena,
    blocks: AddrMap<Entry>,
    /// Block start addresses by the guest pages their bytes lie on.
    by_page: AddrMap<Vec<u32>>,
    /// The linkable direct exits (arena offsets of `jmp rel32` displacements) waiting for or
    /// linked to each guest address; entries in dropped code stay until the next flush
    /// (rewriting dead code is harmless, and the arena bounds them).
    incoming: AddrMap<Vec<usize>>,
    /// Where blocks are announced to `perf`, when `DENALI_JIT_PERF_MAP` is set.
    perf_map: Option<perf_map::PerfMap>,
    /// Guard-region mode: the arena's fault sites (`fault::Site`), sorted (blocks are appended
    /// at increasing offsets); those of dropped blocks stay until the next flush.
    faults: Vec<(u32, u32, u32)>,
}

/// The counters of [`JitStats`] that every entry into generated code updates.
#[derive(Default, Clone, Copy)]
struct Counts {
    block_runs: u64,
    chain_hits: u64,
    lookups: u64,
    budget_exits: u64,
}

const _: () = {
    use std::mem::offset_of;
    // The lines of an entry: the `Ctx`'s first two (asserted in `ctx.rs`), then lines 6 and 7.
    const fn line(at: usize) -> usize {
        at / 64
    }
    assert!(offset_of!(Jit, ctx) == 0 && size_of::<Ctx>() == 6 * 64);
    assert!(line(offset_of!(Jit, last)) == 6 && line(offset_of!(Jit, seen)) == 6);
    assert!(line(offset_of!(Jit, table) + size_of::<Option<Table>>() - 1) == 6);
    assert!(line(offset_of!(Jit, sharing)) == 7 && line(offset_of!(Jit, missed)) == 7);
};

/// `Jit::last` when it holds nothing.
const NO_LAST: (u32, Entry) = (u32::MAX, NO_ENTRY);
/// An entry that runs the interpreter for one instruction.
const NO_ENTRY: Entry = Entry { offset: 0, count: 0, slot: 0, inner: 0, inner_offset: 0, shared: false };

impl Jit {
    /// Whether this host has the CPU features the generated code needs (BMI2 for the
    /// flag-free shifts and rotates, SSE4.2 for the flag-free `crc32` hash).
    pub fn available() -> bool {
        std::is_x86_feature_detected!("bmi2") && std::is_x86_feature_detected!("sse4.2")
    }

    /// A JIT that translates every block the first time it runs, or `None` when this host
    /// lacks a CPU feature the generated code needs.
    pub fn new() -> Option<Jit> {
        Jit::with(Interpreter::new(), 0, None)
    }

    /// A JIT that interprets each block until it has run [`TIER_UP`] times, with an
    /// interpreter that shares decoded blocks through `shared`: for the many VMs of a fleet,
    /// most of whose code runs a few times. `None` as for [`Jit::new`].
    pub fn tiered(shared: Arc<SharedCode>) -> Option<Jit> {
        Jit::with(Interpreter::sharing(shared), TIER_UP, None)
    }

    /// A tiered JIT (as [`Jit::tiered`]) that also shares its translations with the other
    /// JITs of `translations`: it runs a block another one translated, from the first time
    /// its runtime looks for it, wherever its own memory holds the same bytes, and translates
    /// hot blocks into `translations` for the others. What fleets use.
    pub fn sharing(code: Arc<SharedCode>, translations: Arc<SharedJit>) -> Option<Jit> {
        Jit::with(Interpreter::sharing(code), TIER_UP, Some(translations))
    }

    fn with(interp: Interpreter, tier_up: u32, sharing: Option<Arc<SharedJit>>) -> Option<Jit> {
        if !Jit::available() {
            return None;
        }
        Some(Jit {
            interp,
            tier_up,
            arena: Arena::default(),
            sharing,
            blocks: AddrMap::default(),
            by_page: AddrMap::default(),
            seen: 0,
            ctx: Ctx::default(),
            table: None,
            stats: JitStats::default(),
            counts: Counts::default(),
            incoming: AddrMap::default(),
            perf_map: perf_map::PerfMap::from_env(),
            mem_size: 0,
            guarded: false,
            segment: false,
            segment_allowed: true,
            protected: false,
            faults: Vec::new(),
            last: NO_LAST,
            missed: false,
        })
    }

    /// Cache counters since creation.
    pub fn stats(&self) -> JitStats {
        let Counts { block_runs, chain_hits, lookups, budget_exits } = self.counts;
        JitStats { block_runs, chain_hits, lookups, budget_exits, ..self.stats }
    }

    /// Whether, in guard-region mode, generated code addresses guest memory through the GS
    /// segment base where the host lets user code set it (on by default): each access is then
    /// the guest's own instruction, its 32-bit address formed and wrapped by the CPU. Off, it
    /// forms each address with a `lea` first, as on hosts without that facility: for tests and
    /// comparisons of the two.
    pub fn set_segment_addressing(&mut self, on: bool) {
        self.segment_allowed = on;
    }

    /// Drops every block cached from pages written since the last call. A store to a marked
    /// page clears its mark and counts in `code_write_count`; the interpreter consumes the list
    /// of written pages itself, so the JIT looks at the marks of its own pages instead.
    fn sync(&mut self, mem: &GuestMemory) {
        if mem.code_write_count() == self.seen {
            return;
        }
        self.seen = mem.code_write_count();
        self.last = NO_LAST;
        let written: Vec<u32> = self.by_page.keys().copied().filter(|p| !mem.is_code_page(*p)).collect();
        let mut unlink = Vec::new();
        for page in written {
            if let Some(starts) = self.by_page.remove(&page) {
                for eip in starts {
                    if self.blocks.remove(&eip).is_some() {
                        self.stats.invalidations += 1;
                        // Jumps linked to it fall through to the table lookup again.
                        if let Some(fields) = self.incoming.get(&eip) {
                            unlink.extend(fields.iter().map(|&f| (f, 0)));
                        }
                    }
                    if let Some(table) = &mut self.table {
                        table.clear(eip);
                    }
                }
            }
        }
        if self.arena.patch(&unlink).is_none() {
            // The arena could not be rewritten: drop every block rather than keep a stale link.
            self.flush();
        }
    }

    fn table(&mut self) -> &mut Table {
        self.table.get_or_insert_with(Table::new)
    }

    /// Accounts what the interpreter retired since `before` and says whether its `exit` ends
    /// the run (anything but the budget running out).
    fn interpreted(&mut self, cpu: &Cpu, before: u64, left: &mut u64, exit: Exit) -> Option<Exit> {
        let done = cpu.instructions - before;
        self.stats.interpreted += done;
        *left -= done;
        (exit != Exit::BudgetExhausted).then_some(exit)
    }

    fn flush(&mut self) {
        self.last = NO_LAST;
        self.incoming.clear();
        if let Some(table) = &mut self.table {
            table.clear_all();
        }
        self.blocks.clear();
        self.by_page.clear();
        self.faults.clear();
        self.arena.flush();
        self.stats.flushes += 1;
    }

    /// The cached decision for `eip`, if there is one.
    fn cached(&mut self, eip: u32) -> Option<Entry> {
        self.counts.lookups += 1;
        let missed = std::mem::take(&mut self.missed);
        let e = if self.last.0 == eip {
            self.last.1
        } else {
            let e = self.blocks.get(&eip).copied()?;
            self.last = (eip, e);
            e
        };
        if missed && e.count > 0 {
            // Two hot blocks may share a slot: the one a lookup just missed takes it.
            self.table().set(e.slot, eip, e.inner);
        }
        Some(e)
    }

    /// Translates the block at `eip` (not cached), timing it.
    fn compile(&mut self, eip: u32, mem: &mut GuestMemory) -> Entry {
        if self.blocks.len() >= MAX_ENTRIES {
            self.flush();
        }
        let started = Instant::now();
        let entry = self.translate(eip, mem);
        self.stats.compile_ns += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        entry
    }

    /// Write-protects `mem`'s pages holding cached code (the blocks about to run and the
    /// interpreter's), unless writes to protected code have been too frequent; whether all of
    /// them are protected.
    fn protect(cpu: &Cpu, mem: &mut GuestMemory) -> bool {
        if mem.code_unprotects() > UNPROTECTS + cpu.instructions / UNPROTECT_EVERY {
            mem.stop_protecting_code();
        }
        mem.protect_code_pages()
    }

    /// Translates and installs the block at `eip` (or records that the interpreter runs it).
    fn translate(&mut self, eip: u32, mem: &mut GuestMemory) -> Entry {
        let t = translate::translate(eip, mem, self.guarded, self.segment, self.protected);
        let mut entry = NO_ENTRY;
        // Shared code has no fault sites: only the checked mode shares (fleets run it).
        if t.count > 0
            && !self.guarded
            && let Some(sharing) = &self.sharing
            && let Some(block) = sharing.publish(eip, mem, &t)
        {
            self.stats.translations += 1;
            self.stats.translated_instructions += u64::from(t.count);
            if let Some(map) = &mut self.perf_map {
                map.record(block.inner - (block.inner_offset - block.offset) as u64, &t.code, eip);
            }
            return self.take(eip, block, mem);
        }
        if t.count > 0 {
            if self.arena.next_offset(t.code.len()).is_none() {
                self.flush();
            }
            let offset = self.arena.next_offset(t.code.len()).and_then(|at| {
                let patches = self.link(eip, at, &t);
                self.arena.insert(&t.code, &patches)
            });
            if offset.is_none() {
                // The mapping failed: nothing may point into it any more.
                self.flush();
            }
            if let (Some(offset), Some(base)) = (offset, self.arena.base()) {
                let slot = ctx::slot(eip);
                let inner_offset = offset + t.inner;
                entry = Entry {
                    offset,
                    count: t.count,
                    slot,
                    inner: base + inner_offset as u64,
                    inner_offset,
                    shared: false,
                };
                #[allow(clippy::cast_possible_truncation, reason = "offsets below ARENA_SIZE")]
                self.faults.extend(t.faults.iter().map(|&(from, to, resume)| {
                    ((offset + from) as u32, (offset + to) as u32, (offset + resume) as u32)
                }));
                self.stats.translations += 1;
                self.stats.translated_instructions += u64::from(t.count);
                if let Some(map) = &mut self.perf_map {
                    map.record(base + offset as u64, &t.code, eip);
                }
                return self.install(eip, entry, t.last_byte, mem);
            }
        }
        // An entry with count 0 depends on no bytes: the interpreter decides afresh each time.
        self.blocks.insert(eip, entry);
        self.last = (eip, entry);
        entry
    }

    /// Enters the block `entry` at `eip`, translated from `mem`'s bytes `eip ..= last_byte`,
    /// in this JIT's cache and chaining table, and marks those bytes' pages: a store to them
    /// must drop it.
    fn install(&mut self, eip: u32, entry: Entry, last_byte: u32, mem: &mut GuestMemory) -> Entry {
        self.table().set(entry.slot, eip, entry.inner);
        for page in (eip >> PAGE_SHIFT)..=(last_byte >> PAGE_SHIFT) {
            if u64::from(page) << PAGE_SHIFT < u64::from(mem.size()) {
                mem.mark_code_page(page);
                self.by_page.entry(page).or_default().push(eip);
            }
        }
        self.blocks.insert(eip, entry);
        self.last = (eip, entry);
        entry
    }

    /// The block the fleet shares at `eip` for this VM's bytes there, taken as its own.
    fn adopt(&mut self, eip: u32, mem: &mut GuestMemory) -> Option<Entry> {
        if self.guarded {
            // Shared code is checked-mode code: correct on a guarded memory too, but slower
            // than this JIT's own guard-region translations.
            return None;
        }
        let block = self.sharing.as_ref()?.find(eip, mem)?;
        if self.blocks.len() >= MAX_ENTRIES {
            self.flush();
        }
        self.stats.shared_hits += 1;
        Some(self.take(eip, block, mem))
    }

    /// Installs the shared `block` at `eip` (whose bytes equal `mem`'s there) in this JIT's
    /// cache and chaining table, like a block it translated: a store to its pages drops it.
    /// Nothing links to it directly (a jump between the arenas may not reach, and shared code
    /// is never patched): blocks enter it through the chaining table.
    fn take(&mut self, eip: u32, block: shared::Shared, mem: &mut GuestMemory) -> Entry {
        let slot = ctx::slot(eip);
        let entry = Entry {
            offset: block.offset,
            count: block.count,
            slot,
            inner: block.inner,
            inner_offset: block.inner_offset,
            shared: true,
        };
        self.install(eip, entry, block.last_byte, mem)
    }

    /// Records the direct exits of `t` (to be inserted at arena offset `at`) and returns the
    /// patches that link them to blocks already translated, and link the exits already
    /// waiting for `eip` to it.
    fn link(&mut self, eip: u32, at: usize, t: &translate::Translation) -> Vec<arena::Patch> {
        let mut patches = Vec::new();
        for &(field, target) in &t.links {
            let field = at + field;
            self.incoming.entry(target).or_default().push(field);
            // Only to this arena's blocks: shared ones are entered through the table.
            if let Some(e) = self.blocks.get(&target).filter(|e| e.count > 0 && !e.shared) {
                patches.push((field, rel32(field, e.inner_offset)));
            }
        }
        if let Some(waiting) = self.incoming.get(&eip) {
            patches.extend(waiting.iter().map(|&field| (field, rel32(field, at + t.inner))));
        }
        patches
    }

    /// Runs translated code from the block `entry` (chained blocks follow while the budget
    /// `left` lasts); returns the instructions retired and whether it stopped before an
    /// instruction the interpreter must run.
    fn exec(&mut self, entry: Entry, cpu: &mut Cpu, mem: &mut GuestMemory, left: u64) -> (u64, bool) {
        // Generated code keeps the budget in a register and tests its sign through the high
        // dword, so a run gets at most 2^31 - 1 instructions (the loop gives the rest later).
        let given = left.min(i32::MAX as u64);
        let table = self.table.get_or_insert_with(Table::new);
        // Field by field, not `saved` (which no block reads before writing it): the two cache
        // lines every entry and exit touch anyway, not six.
        let ctx = &mut self.ctx;
        ctx.regs = cpu.regs;
        ctx.flags_in = ctx::flags_in(cpu.eflags);
        ctx.left = given + ctx::BUDGET_BIAS;
        ctx.flags_saved = 0;
        ctx.stopped = 0;
        ctx.budget_exits = 0;
        ctx.runs = 0;
        ctx.mem_base = mem.host_base() as u64;
        ctx.limit = (1u64 << 32) - u64::from(mem.size());
        ctx.code_pages = mem.code_page_table() as u64;
        ctx.one = 1;
        ctx.df = (cpu.eflags >> 10) & 1;
        #[cfg(target_os = "linux")]
        // Faults of guest accesses at these sites resume at their stop exits. (The mode first:
        // a fleet's shared entry need not read the arena's line.)
        let (running, resumed) = if self.guarded
            && !entry.shared
            && let Some(base) = self.arena.base()
        {
            (Some(fault::enter(base, arena::ARENA_SIZE, ctx.mem_base, &self.faults)), fault::resumed())
        } else {
            (None, 0)
        };
        match &self.sharing {
            Some(sharing) if entry.shared => sharing.call(entry.offset, ctx, table),
            _ => self.arena.call(entry.offset, ctx, table),
        }
        #[cfg(target_os = "linux")]
        if running.is_some() {
            drop(running);
            self.stats.guard_faults += fault::resumed() - resumed;
        }
        let ctx = &self.ctx;
        // Every exit but a budget exit and a stop is a lookup that missed (or a jump out of
        // memory, which the runtime does not look up).
        self.missed = ctx.stopped == 0 && ctx.budget_exits == 0;
        // `runs` counts the jumps that left a block for another (the last one, when it missed,
        // for the runtime): every other one entered its target.
        let hits = ctx.runs.saturating_sub(u64::from(self.missed));
        self.counts.chain_hits += hits;
        self.counts.block_runs += 1 + hits;
        self.counts.budget_exits += ctx.budget_exits;
        cpu.regs = ctx.regs;
        cpu.eip = ctx.eip;
        if ctx.flags_saved != 0 {
            cpu.eflags = (cpu.eflags & !STATUS) | ctx::flags_out(ctx.flags_out);
        }
        let done = given - (ctx.left - ctx::BUDGET_BIAS);
        cpu.instructions += done;
        (done, ctx.stopped != 0)
    }
}

/// Whether user code may set its GS base with `wrgsbase` (the kernel enabled FSGSBASE, Linux
/// 5.9 and later): the base translated code addresses guard-region memory through. Glibc and
/// Rust keep thread-local storage in FS, so GS is free for it.
fn segment_base_settable() -> bool {
    #[cfg(target_os = "linux")]
    {
        /// `HWCAP2_FSGSBASE` (`arch/x86/include/uapi/asm/hwcap2.h`).
        const FSGSBASE: libc::c_ulong = 1 << 1;
        static SETTABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        // SAFETY: `getauxval` only reads the auxiliary vector the kernel gave the process.
        *SETTABLE.get_or_init(|| unsafe { libc::getauxval(libc::AT_HWCAP2) } & FSGSBASE != 0)
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// The rel32 displacement of a `jmp` whose displacement field is at `field`, to `target`
/// (arena offsets; the arena is far smaller than 2 GiB).
fn rel32(field: usize, target: usize) -> i32 {
    #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation, reason = "offsets below ARENA_SIZE")]
    let rel = target as i64 - (field as i64 + 4);
    #[allow(clippy::cast_possible_truncation, reason = "|rel| < ARENA_SIZE")]
    let rel = rel as i32;
    rel
}

/// Whether the instruction at `eip` is a string instruction with a REP prefix.
fn rep_string(eip: u32, mem: &GuestMemory) -> bool {
    let Ok(window) = mem.fetch_window(eip, 15) else { return false };
    let ins = denali_isa::validate::decoder(window, eip).decode();
    ins.is_string_instruction() && (ins.has_rep_prefix() || ins.has_repne_prefix())
}

/// A multiplicative hash for guest addresses (the block map is hot; SipHash is not needed).
#[derive(Default, Clone, Copy)]
struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (u64::from(v) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}

type AddrMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<AddrHasher>>;

impl Engine for Jit {
    fn run(&mut self, cpu: &mut Cpu, mem: &mut GuestMemory, budget: u64) -> Exit {
        let mut left = budget;
        // Guard-region mode needs a guarded memory and the fault handler; else the checked mode
        // (which is also correct on a guarded memory).
        #[cfg(target_os = "linux")]
        let guarded = mem.is_guarded() && fault::install();
        #[cfg(not(target_os = "linux"))]
        let guarded = false;
        let segment = guarded && self.segment_allowed && segment_base_settable();
        // Stores to code may fault only where faults are resumed.
        let protected = guarded && Jit::protect(cpu, mem);
        if mem.size() != self.mem_size
            || guarded != self.guarded
            || segment != self.segment
            || protected != self.protected
        {
            // Blocks translated for another memory size would check the wrong bounds, those of
            // another mode would check none or not record their faults, or not check stores
            // to code that is no longer protected.
            if self.mem_size != 0 {
                self.flush();
            }
            self.mem_size = mem.size();
            self.guarded = guarded;
            self.segment = segment;
            self.protected = protected;
        }
        // The interpreter stopped before a hot block at EIP: translate it rather than ask again.
        let mut hot = false;
        loop {
            if left == 0 {
                return Exit::BudgetExhausted;
            }
            self.sync(mem);
            if cpu.eip < mem.size() {
                let eip = cpu.eip;
                // Not cached: translated by another VM of the fleet, for these bytes, is taken
                // at once.
                let entry = match self.cached(eip).or_else(|| self.adopt(eip, mem)) {
                    Some(entry) => Some(entry),
                    // Not translated yet: a tiered JIT lets the interpreter run it below.
                    None if self.tier_up > 0 && !hot => None,
                    None => Some(self.compile(eip, mem)),
                };
                hot = false;
                match entry {
                    None => {
                        // The interpreter counts block entries and stops before a block that
                        // has run `tier_up` times: translated next.
                        let before = cpu.instructions;
                        let exit;
                        (exit, hot) = self.interp.run_counting(cpu, mem, left, self.tier_up);
                        match self.interpreted(cpu, before, &mut left, exit) {
                            Some(exit) => return exit,
                            None => continue,
                        }
                    }
                    Some(entry) if entry.count > 0 && u64::from(entry.count) <= left => {
                        // Pages marked since the last run (this block's, the interpreter's)
                        // are protected before translated code can store to them.
                        if self.protected && !Jit::protect(cpu, mem) {
                            // Protection stopped: no block that relies on it may run.
                            self.flush();
                            self.protected = false;
                            continue;
                        }
                        let (done, stopped) = self.exec(entry, cpu, mem, left);
                        left -= done;
                        if !stopped {
                            continue;
                        }
                        // The block stopped before an instruction it could not complete (an
                        // access outside memory or a store to code): the interpreter runs that
                        // one.
                    }
                    Some(_) => {}
                }
            }
            let before = cpu.instructions;
            // A REP string instruction runs all its iterations (one retirement each) in one
            // call: `max(ECX, 1)` is exactly its retirement count when nothing faults.
            let steps = if cpu.regs[1] > 1 && rep_string(cpu.eip, mem) { left.min(u64::from(cpu.regs[1])) } else { 1 };
            let exit = self.interp.run(cpu, mem, steps);
            if let Some(exit) = self.interpreted(cpu, before, &mut left, exit) {
                return exit;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `Ctx` generated code runs on lives in the JIT's own allocation, apart from the
    /// 64 KiB chaining table: at the table's head it had a page of its own, a TLB miss at every
    /// switch to the VM in a large fleet.
    #[test]
    fn the_ctx_lives_in_the_jit_not_at_the_head_of_the_table() {
        let Some(mut jit) = Jit::new() else { return };
        let mut mem = GuestMemory::new(0x10000).unwrap();
        // 0x1000: inc eax; jmp 0x1000 (a block that chains through the table: not to its
        // own start).
        mem.write(0x1000, &[0x40, 0xEB, 0x00, 0xEB, 0xFB]).unwrap();
        let mut cpu = Cpu::new(0x1000, mem.size());
        assert_eq!(jit.run(&mut cpu, &mut mem, 1000), Exit::BudgetExhausted);
        assert!(jit.stats().chain_hits > 0, "{:?}", jit.stats());
        let table = jit.table.as_ref().expect("made at the first run of generated code");
        assert_eq!(jit.ctx.table, table.address());
        let start = std::ptr::from_ref(&jit) as usize;
        // A `Ctx` behind a pointer would coerce here too.
        let ctx = std::ptr::from_ref::<Ctx>(&jit.ctx) as usize;
        assert!(start <= ctx && ctx + size_of::<Ctx>() <= start + size_of::<Jit>());
        // Small enough that many VMs' JITs share a page.
        assert!(size_of::<Jit>() <= 2048, "{}", size_of::<Jit>());
    }
}
