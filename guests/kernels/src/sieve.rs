//! Segmented sieve of Eratosthenes over the odd numbers below [`LIMIT`].

/// Primes are counted below this bound.
const LIMIT: u32 = 25_000_000;
/// Odd numbers per segment: 64 KiB of flags keeps the working set small.
const SEGMENT: u32 = 1 << 16;
/// Sieving primes: the odd primes up to sqrt(LIMIT) = 5000.
const SQRT_LIMIT: u32 = 5001;
/// There are 669 primes below 5001; a little slack.
const MAX_SMALL_PRIMES: usize = 700;

/// Counts the primes below 25,000,000 and hashes them; returns the count in the top byte mixed with a
/// rolling hash of all the primes, so that both a wrong count and a wrong prime show.
pub fn sieve() -> u32 {
    // Odd primes up to SQRT_LIMIT, by a plain sieve; index i stands for 2i+1.
    let mut small = [true; (SQRT_LIMIT / 2 + 1) as usize];
    let mut primes = [0u32; MAX_SMALL_PRIMES];
    let mut n_primes = 0;
    for i in 1..small.len() as u32 {
        if small[i as usize] {
            let p = 2 * i + 1;
            primes[n_primes] = p;
            n_primes += 1;
            let mut j = (p * p) / 2;
            while j < small.len() as u32 {
                small[j as usize] = false;
                j += p;
            }
        }
    }
    let primes = &primes[..n_primes];

    // next[k]: the odd-index of the next odd multiple of primes[k] still to strike.
    let mut next = [0u32; MAX_SMALL_PRIMES];
    for (slot, &p) in next.iter_mut().zip(primes) {
        *slot = p * p / 2;
    }

    let mut count: u32 = 1; // 2
    let mut hash: u32 = 2;
    let mut flags = [0u8; SEGMENT as usize];
    let end = LIMIT / 2;
    let mut base = 0;
    while base < end {
        let len = SEGMENT.min(end - base);
        let seg = &mut flags[..len as usize];
        seg.fill(1);
        for (k, &p) in primes.iter().enumerate() {
            let mut j = next[k];
            if j >= base + len {
                // Primes are increasing, so neither this one nor any later one reaches here.
                break;
            }
            while j < base + len {
                seg[(j - base) as usize] = 0;
                j += p;
            }
            next[k] = j;
        }
        if base == 0 {
            seg[0] = 0; // 1 is not prime
        }
        for (i, &flag) in seg.iter().enumerate() {
            if flag != 0 {
                let p = 2 * (base + i as u32) + 1;
                count += 1;
                hash = hash.rotate_left(5) ^ p;
            }
        }
        base += len;
    }
    (hash & 0x00FF_FFFF) ^ (count << 8)
}
