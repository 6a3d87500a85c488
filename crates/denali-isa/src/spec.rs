//! Reader for the line-oriented tables in `isa-spec/`.
//!
//! Every table has the same shape: `#` starts a comment line, blank lines are ignored, and each
//! row is a fixed number of whitespace-separated columns whose last column (a description) takes
//! the rest of the line. The tables are compiled in, so the validator and the code generator
//! always read the same text as the document.

/// One table: its file name and its rows.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub file: &'static str,
    pub text: &'static str,
    /// Number of columns, the free-text last one included.
    pub columns: usize,
}

macro_rules! table {
    ($name:ident, $file:literal, $columns:literal) => {
        pub const $name: Table =
            Table { file: $file, text: include_str!(concat!("../../../isa-spec/", $file)), columns: $columns };
    };
}

table!(VREGS, "vregs.txt", 5);
table!(PORTS, "ports.txt", 5);
table!(BLOCKS, "blocks.txt", 4);
table!(STATUS, "status.txt", 3);
table!(INTERRUPTS, "interrupts.txt", 3);
table!(EXCEPTIONS, "exceptions.txt", 3);
table!(VIRTUAL_INSTRUCTIONS, "virtual-instructions.txt", 3);
table!(BOOT, "boot.txt", 3);
table!(FORMS, "forms.txt", 5);
table!(EXCLUDED, "excluded.txt", 2);

/// A row of a table, with its 1-based line number for error messages.
#[derive(Debug, Clone)]
pub struct Row {
    pub line: usize,
    pub cells: Vec<&'static str>,
}

impl Row {
    /// Parses cell `i` as a number written in decimal or with a `0x` prefix.
    pub fn number(&self, table: &Table, i: usize) -> u64 {
        parse_number(self.cells[i]).unwrap_or_else(|| {
            panic!("isa-spec/{}:{}: column {} is not a number: {:?}", table.file, self.line, i + 1, self.cells[i])
        })
    }
}

/// Parses `123` or `0x7B`.
pub fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

impl Table {
    /// The rows of the table. A malformed row is a defect in the spec, found by the tests that
    /// read every table, so it panics with the file and line rather than returning an error.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (index, line) in self.text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut cells = Vec::with_capacity(self.columns);
            let mut rest = trimmed;
            for _ in 0..self.columns - 1 {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                cells.push(&rest[..end]);
                rest = rest[end..].trim_start();
            }
            assert!(
                !rest.is_empty() && cells.iter().all(|c| !c.is_empty()),
                "isa-spec/{}:{}: expected {} columns",
                self.file,
                index + 1,
                self.columns
            );
            cells.push(rest);
            rows.push(Row { line: index + 1, cells });
        }
        rows
    }
}
