//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`, which the compiler calls for copies,
//! fills and comparisons. Hosted targets get them from libc; a guest has none, and the
//! `compiler_builtins` shipped for i586-unknown-linux-gnu leaves them out.
//!
//! The copies and fills are `rep movs`/`rep stos` in inline assembly, for two reasons: written
//! as Rust loops, the compiler could recognise the loop as a memcpy and compile it into a call
//! to itself; and one string instruction is one decode for an interpreter. The ABI guarantees
//! DF clear on entry and requires it clear on return. Rust does not let inline assembly name ESI
//! on x86-32 (LLVM may use it as a base pointer), so the copies swap their source pointer into it
//! by hand and restore it afterwards. The swapped operands are pinned to named registers:
//! a `reg` operand may itself be allocated to ESI, and the swap would then destroy it.

use core::arch::asm;

/// # Safety
/// `dest` and `src` must be valid for `n` bytes and must not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid; dwords first, then the 0-3 byte tail.
    unsafe {
        asm!(
            "xchg esi, eax",
            "rep movsd",
            "mov ecx, edx",
            "rep movsb",
            "mov esi, eax",
            inout("eax") src => _,
            in("edx") n & 3,
            inout("ecx") n >> 2 => _,
            inout("edi") dest => _,
            options(nostack, preserves_flags),
        );
    }
    dest
}

/// # Safety
/// `dest` and `src` must be valid for `n` bytes; they may overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // dest is below src or past its end: a forward copy never reads a byte it overwrote.
        // SAFETY: forwarded from the caller; the overlap case is excluded above.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: the caller guarantees both ranges are valid. dest overlaps src from above, so
    // copy backwards, from the last byte, with DF set only for the duration of the copy.
    unsafe {
        asm!(
            "xchg esi, eax",
            "std",
            "rep movsb",
            "cld",
            "mov esi, eax",
            inout("eax") src.wrapping_add(n).wrapping_sub(1) => _,
            inout("ecx") n => _,
            inout("edi") dest.wrapping_add(n).wrapping_sub(1) => _,
            options(nostack),
        );
    }
    dest
}

/// # Safety
/// `dest` must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    let byte = c as u8 as u32;
    // SAFETY: the caller guarantees the range is valid; dwords of the replicated byte, then
    // the 0-3 byte tail.
    unsafe {
        asm!(
            "rep stosd",
            "mov ecx, {tail}",
            "rep stosb",
            tail = in(reg) n & 3,
            inout("ecx") n >> 2 => _,
            inout("edi") dest => _,
            in("eax") byte.wrapping_mul(0x0101_0101),
            options(nostack, preserves_flags),
        );
    }
    dest
}

/// # Safety
/// `a` and `b` must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: `i < n` and the caller guarantees both ranges are valid for `n` bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// `a` and `b` must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { memcmp(a, b, n) }
}
