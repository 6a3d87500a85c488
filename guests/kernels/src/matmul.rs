//! Integer matrix multiplication with wrapping u32 arithmetic.

/// Matrix dimension: three N x N matrices of u32 take 192 KiB of stack.
const N: usize = 128;
/// Multiplications performed, each feeding the next.
const ROUNDS: u32 = 24;

type Matrix = [[u32; N]; N];

fn multiply(a: &Matrix, b: &Matrix, c: &mut Matrix) {
    // i-k-j order: the inner loop walks rows of b and c contiguously.
    for (c_row, a_row) in c.iter_mut().zip(a) {
        c_row.fill(0);
        for (&a_ik, b_row) in a_row.iter().zip(b) {
            for (c_ij, &b_kj) in c_row.iter_mut().zip(b_row) {
                *c_ij = c_ij.wrapping_add(a_ik.wrapping_mul(b_kj));
            }
        }
    }
}

/// Computes A <- A * B (mod 2^32) [`ROUNDS`] times from generated matrices; returns a hash of
/// the final A.
pub fn matmul() -> u32 {
    let mut rng = crate::XorShift32::new(0x0DDB_1A5E);
    let mut a = [[0u32; N]; N];
    let mut b = [[0u32; N]; N];
    let mut c = [[0u32; N]; N];
    for row in a.iter_mut().chain(b.iter_mut()) {
        for x in row.iter_mut() {
            // Small odd entries keep the products from collapsing to zero mod 2^32.
            *x = (rng.next_u32() & 0xFF) | 1;
        }
    }
    for _ in 0..ROUNDS {
        multiply(&a, &b, &mut c);
        core::mem::swap(&mut a, &mut c);
    }
    let mut hash = 0u32;
    for row in &a {
        for &x in row {
            hash = hash.rotate_left(7) ^ x;
        }
    }
    hash
}
