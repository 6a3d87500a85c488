//! Human-readable memory sizes for messages ("1 MiB", "12 KiB", "12345 bytes"), so that errors
//! name sizes the way a user wrote them on the command line.

/// Formats `bytes` with the largest binary unit that divides it exactly.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::format_size;

    #[test]
    fn picks_the_largest_exact_unit() {
        assert_eq!(format_size(1 << 20), "1 MiB");
        assert_eq!(format_size(0x3000), "12 KiB");
        assert_eq!(format_size(0xFFFF_F000), "4194300 KiB");
        assert_eq!(format_size(12345), "12345 bytes");
        assert_eq!(format_size(0), "0 bytes");
    }
}
