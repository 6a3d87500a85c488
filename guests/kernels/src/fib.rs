//! Naive doubly-recursive Fibonacci: a call- and stack-heavy workload.

use core::hint::black_box;

/// fib(N) makes about 2 * fib(N) calls.
const N: u32 = 34;

fn fib_rec(n: u32) -> u32 {
    if n < 2 { n } else { fib_rec(n - 1).wrapping_add(fib_rec(n - 2)) }
}

/// fib(N) by naive recursion, plus the sum of fib(0..N) to use a range of depths.
pub fn fib() -> u32 {
    // black_box keeps the compiler from evaluating the recursion at compile time.
    let n = black_box(N);
    let mut sum = 0u32;
    for k in 0..n - 4 {
        sum = sum.wrapping_add(fib_rec(black_box(k)));
    }
    fib_rec(n) ^ sum.rotate_left(16)
}
