//! Table-driven CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) of generated data.

/// Bytes per generated buffer.
const BUFFER: usize = 64 * 1024;
/// Buffers generated and checksummed.
const ROUNDS: u32 = 384;

fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    for (n, entry) in table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        *entry = c;
    }
    table
}

fn update(table: &[u32; 256], mut crc: u32, data: &[u8]) -> u32 {
    for &byte in data {
        crc = table[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-32 of a stream of [`ROUNDS`] buffers of xorshift output, each generated in turn.
pub fn crc32() -> u32 {
    let table = make_table();
    // The standard check value: catches a wrong table before it costs a long run.
    assert_eq!(!update(&table, !0, b"123456789"), 0xCBF4_3926);
    let mut rng = crate::XorShift32::new(0xC0FF_EE00);
    let mut buffer = [0u8; BUFFER];
    let mut crc = !0u32;
    for _ in 0..ROUNDS {
        for chunk in buffer.chunks_exact_mut(4) {
            chunk.copy_from_slice(&rng.next_u32().to_le_bytes());
        }
        crc = update(&table, crc, &buffer);
    }
    !crc
}
