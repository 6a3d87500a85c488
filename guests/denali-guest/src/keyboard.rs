//! The keyboard (`KBD_GETC`): queued input bytes, one IN each.

use denali_abi::port;

/// The next input byte, or `None` when no input is queued.
#[inline]
pub fn getc() -> Option<u8> {
    let value: u32;
    // SAFETY: a 32-bit IN from the keyboard port only returns a value in EAX.
    unsafe {
        core::arch::asm!("in eax, dx", in("dx") port::KBD_GETC, out("eax") value,
            options(nomem, nostack, preserves_flags));
    }
    u8::try_from(value).ok()
}

/// Reads a decimal number typed on the keyboard: leading spaces and tabs are skipped, the
/// digits read up to the first other byte (which is consumed) or the end of input. `None` when
/// no digit was typed or the number does not fit in a `u32`.
pub fn read_u32() -> Option<u32> {
    let mut byte = getc();
    while matches!(byte, Some(b' ' | b'\t')) {
        byte = getc();
    }
    let mut value: Option<u32> = None;
    while let Some(digit @ b'0'..=b'9') = byte {
        value = Some(value.unwrap_or(0).checked_mul(10)?.checked_add(u32::from(digit - b'0'))?);
        byte = getc();
    }
    value
}
