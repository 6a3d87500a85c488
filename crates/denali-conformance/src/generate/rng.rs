//! A small deterministic PRNG (SplitMix64) with operand values biased towards the edges where
//! flag and overflow logic goes wrong. Own code rather than the `rand` crate so that vectors
//! generated from a seed never change when a dependency does.

/// SplitMix64: one 64-bit state, statistically good enough for test data, trivially seedable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (((self.next_u64() >> 32) * (u64::from(hi - lo) + 1)) >> 32) as u32
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u32, den: u32) -> bool {
        self.below(den) < num
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u32) as usize]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u32() as u8).collect()
    }

    /// A 32-bit value: half the time an edge of some operand width (so 8- and 16-bit operands
    /// see their own edges in the low bits, and AH-style registers in bits 8..16), otherwise
    /// uniform.
    pub fn edge32(&mut self) -> u32 {
        const EDGES: &[u32] = &[
            0,
            1,
            2,
            0xFFFF_FFFF,
            0xFFFF_FFFE,
            0x7FFF_FFFF,
            0x8000_0000,
            0x8000_0001,
            0x7F,
            0x80,
            0xFF,
            0x7FFF,
            0x8000,
            0xFFFF,
            0x7F00,
            0x8000,
            0xFF00,
            0x0000_FFFF,
            0xFFFF_0000,
            0x0F0F_0F0F,
        ];
        match self.below(8) {
            0..=2 => self.pick(EDGES),
            // Upper bits random, low byte or word at an edge: the 8/16-bit forms must ignore
            // (and preserve) the rest of the register.
            3 => (self.u32() & 0xFFFF_FF00) | self.pick(&[0, 1, 0x7F, 0x80, 0xFF]),
            4 => (self.u32() & 0xFFFF_0000) | self.pick(&[0, 1, 0x7FFF, 0x8000, 0xFFFF]),
            5 => self.small_signed(),
            _ => self.u32(),
        }
    }

    /// A small value of either sign (-16..=16): products that do not overflow, counts, bits.
    pub fn small_signed(&mut self) -> u32 {
        (self.range(0, 32) as i32 - 16) as u32
    }

    /// An 8-bit immediate, edge-biased.
    pub fn edge8(&mut self) -> u8 {
        if self.chance(1, 2) { self.pick(&[0, 1, 2, 0x7F, 0x80, 0x81, 0xFE, 0xFF]) } else { self.u32() as u8 }
    }

    /// A 16-bit immediate, edge-biased.
    pub fn edge16(&mut self) -> u16 {
        match self.below(4) {
            0 => self.pick(&[0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0xFFFE]),
            1 => self.small_signed() as u16,
            _ => self.u32() as u16,
        }
    }
}
