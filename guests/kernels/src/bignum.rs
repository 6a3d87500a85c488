//! Arbitrary-precision arithmetic with u32 limbs: a big factorial.

/// Computes N!.
const N: u32 = 12_000;
/// Limbs enough for 12000! (about 145,000 bits, 4,530 limbs).
const MAX_LIMBS: usize = 4_608;

/// A little-endian number of u32 limbs, multiplied in place by a u32.
fn mul_small(limbs: &mut [u32; MAX_LIMBS], len: &mut usize, m: u32) {
    let mut carry = 0u64;
    for limb in &mut limbs[..*len] {
        let product = u64::from(*limb) * u64::from(m) + carry;
        *limb = product as u32;
        carry = product >> 32;
    }
    if carry != 0 {
        assert!(*len < MAX_LIMBS, "bignum overflow");
        limbs[*len] = carry as u32;
        *len += 1;
    }
}

/// N! with schoolbook limb arithmetic; returns the limb count in the high half and a rolling
/// hash of the limbs in the low half.
pub fn bignum() -> u64 {
    let mut limbs = [0u32; MAX_LIMBS];
    limbs[0] = 1;
    let mut len = 1;
    for m in 2..=N {
        mul_small(&mut limbs, &mut len, m);
    }
    let mut hash = 0u32;
    for &limb in &limbs[..len] {
        hash = hash.rotate_left(9) ^ limb;
    }
    (len as u64) << 32 | u64::from(hash)
}
