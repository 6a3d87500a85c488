//! Quicksort (median-of-three, insertion sort for short ranges) of LCG-generated arrays.

/// Elements per array: 256 KiB of stack.
const LEN: usize = 64 * 1024;
/// Arrays generated and sorted.
const ROUNDS: u32 = 20;
/// Ranges shorter than this are finished by insertion sort.
const SMALL: usize = 16;

fn insertion_sort(v: &mut [u32]) {
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && v[j - 1] > x {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
}

fn quicksort_slice(mut v: &mut [u32]) {
    // Recurse into the smaller half and loop on the larger, so the depth stays O(log n).
    while v.len() > SMALL {
        let last = v.len() - 1;
        let mid = v.len() / 2;
        // Median of three to v[last] as the pivot.
        if v[mid] < v[0] {
            v.swap(mid, 0);
        }
        if v[last] < v[0] {
            v.swap(last, 0);
        }
        if v[mid] < v[last] {
            v.swap(mid, last);
        }
        let pivot = v[last];
        let mut store = 0;
        for i in 0..last {
            if v[i] < pivot {
                v.swap(i, store);
                store += 1;
            }
        }
        v.swap(store, last);
        let (left, right) = v.split_at_mut(store);
        let right = &mut right[1..];
        if left.len() < right.len() {
            quicksort_slice(left);
            v = right;
        } else {
            quicksort_slice(right);
            v = left;
        }
    }
    insertion_sort(v);
}

/// Sorts [`ROUNDS`] arrays of LCG output, checks each is sorted and hashes a sample of each.
pub fn quicksort() -> u32 {
    let mut v = [0u32; LEN];
    let mut state: u32 = 12345;
    let mut hash: u32 = 0;
    for _ in 0..ROUNDS {
        for x in v.iter_mut() {
            // Numerical Recipes' LCG; the high bits are the good ones.
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *x = state >> 8;
        }
        quicksort_slice(&mut v);
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "quicksort left the array unsorted");
        for &x in v.iter().step_by(LEN / 64) {
            hash = hash.rotate_left(3) ^ x;
        }
    }
    hash
}
