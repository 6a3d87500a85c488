//! The byte protocol between the oracle (host side) and its helper process.
//!
//! Everything is little-endian 32-bit words, with raw bytes where memory contents travel.
//!
//! After it has set itself up, the helper writes `HELLO_MAGIC, VERSION`; if a set-up system
//! call fails it writes `FAIL_MAGIC, step, return value` instead and exits.
//!
//! A request is one case:
//!
//! | word  | meaning |
//! |-------|---------|
//! | 0     | `REQUEST_MAGIC` |
//! | 1, 2  | code address (EIP) and code length in bytes |
//! | 3     | number of data regions (at most `MAX_REGIONS`) |
//! | 4, 5  | timeout: seconds and microseconds |
//! | 6..14 | EDI ESI EBP (ignored) EBX EDX ECX EAX: the order POPAD pops them |
//! | 14    | EFLAGS |
//! | 15    | ESP |
//! | 16    | EIP |
//!
//! followed by each region as `addr, len, len bytes`, then the code bytes. The header layout
//! is the helper's own state block, so it can load the registers with `popad; popfd`.
//!
//! The reply is `RESULT_WORDS` words (`RESULT_MAGIC`, signal number, trap number, error code,
//! `si_addr`, EDI ESI EBP ESP EBX EDX ECX EAX, EIP, EFLAGS: the interrupted context of the
//! signal that ended the case) followed by the final bytes of each region, in request order.
//!
//! Between two cases the helper maps the whole case window afresh, so nothing a case wrote
//! (inside or outside its regions) can leak into the next one.

use std::time::Duration;

use crate::case::{Case, State};

pub const HELLO_MAGIC: u32 = u32::from_le_bytes(*b"DnOH");
pub const FAIL_MAGIC: u32 = u32::from_le_bytes(*b"DnOF");
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"DnOQ");
pub const RESULT_MAGIC: u32 = u32::from_le_bytes(*b"DnOR");
/// Bumped whenever the layout below changes.
pub const VERSION: u32 = 1;

/// Words in a request header.
pub const HEADER_WORDS: usize = 17;
/// Word index of the POPAD block in the request header.
pub const HEADER_POPAD: usize = 6;
/// Words in a reply header.
pub const RESULT_WORDS: usize = 15;
/// Most data regions a case may have (the helper's region table).
pub const MAX_REGIONS: usize = 128;

/// Appends the request for `case` to `out`, with `eflags` as the initial EFLAGS.
pub fn encode_request(out: &mut Vec<u8>, case: &Case, eflags: u32, timeout: Duration) {
    let s = &case.init;
    let secs = u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX);
    let header: [u32; HEADER_WORDS] = [
        REQUEST_MAGIC,
        s.eip,
        case.code.len() as u32,
        case.memory.len() as u32,
        secs,
        timeout.subsec_micros(),
        s.edi,
        s.esi,
        s.ebp,
        0,
        s.ebx,
        s.edx,
        s.ecx,
        s.eax,
        eflags,
        s.esp,
        s.eip,
    ];
    for word in header {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for region in &case.memory {
        out.extend_from_slice(&region.addr.to_le_bytes());
        out.extend_from_slice(&(region.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&region.data);
    }
    out.extend_from_slice(&case.code);
}

/// The interrupted context of the signal that ended a case, as the helper saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawResult {
    pub signal: u32,
    pub trapno: u32,
    pub error_code: u32,
    pub si_addr: u32,
    /// Registers, native EIP and native EFLAGS, unmasked.
    pub state: State,
}

/// Parses a reply header.
pub fn decode_result(bytes: &[u8; RESULT_WORDS * 4]) -> Result<RawResult, String> {
    let mut w = [0u32; RESULT_WORDS];
    for (i, word) in w.iter_mut().enumerate() {
        *word = u32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    }
    if w[0] != RESULT_MAGIC {
        return Err(format!("bad result magic {:#010x}", w[0]));
    }
    let [edi, esi, ebp, esp, ebx, edx, ecx, eax] = [w[5], w[6], w[7], w[8], w[9], w[10], w[11], w[12]];
    Ok(RawResult {
        signal: w[1],
        trapno: w[2],
        error_code: w[3],
        si_addr: w[4],
        state: State { eax, ecx, edx, ebx, esp, ebp, esi, edi, eip: w[13], eflags: w[14] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Region;

    #[test]
    fn request_layout() {
        let case = Case {
            form: "X".into(),
            code: vec![0x01, 0xd8],
            init: State::with_regs([1, 2, 3, 4, 5, 6, 7, 8], 0x10_0000, 0x202),
            memory: vec![Region { addr: 0x20_0000, data: vec![9] }],
        };
        let mut out = Vec::new();
        encode_request(&mut out, &case, 0x246, Duration::from_millis(1500));
        let word = |i: usize| u32::from_le_bytes(out[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!(word(0), REQUEST_MAGIC);
        assert_eq!((word(1), word(2), word(3)), (0x10_0000, 2, 1));
        assert_eq!((word(4), word(5)), (1, 500_000));
        // POPAD order: EDI ESI EBP - EBX EDX ECX EAX.
        assert_eq!(&(6..14).map(word).collect::<Vec<_>>(), &[8, 7, 6, 0, 4, 3, 2, 1]);
        assert_eq!((word(14), word(15), word(16)), (0x246, 5, 0x10_0000));
        assert_eq!(out.len(), HEADER_WORDS * 4 + 8 + 1 + 2);
        assert_eq!(&out[out.len() - 3..], &[9, 0x01, 0xd8]);
    }

    #[test]
    fn bad_magic_is_an_error() {
        assert!(decode_result(&[0; RESULT_WORDS * 4]).is_err());
    }
}
