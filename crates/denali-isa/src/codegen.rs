//! Renders the files derived from `isa-spec/`: the constants of `denali-abi` and the generated
//! tables inside `isa-spec/README.md`. The `spec_codegen` test compares them with the committed
//! files and rewrites them when `DENALI_BLESS=1` is set.

use crate::spec::{self, Row, Table};
use std::fmt::Write;

/// Path of the generated Rust module, relative to the repository root.
pub const ABI_PATH: &str = "crates/denali-abi/src/generated.rs";
/// Path of the spec document whose marked regions are generated.
pub const SPEC_DOC_PATH: &str = "isa-spec/README.md";

const BANNER: &str = "// @generated from isa-spec/*.txt by crates/denali-isa/src/codegen.rs.\n\
// Do not edit: change the tables, then run `DENALI_BLESS=1 cargo test -p denali-isa --test spec_codegen`.\n";

/// The full text of `crates/denali-abi/src/generated.rs`.
pub fn render_abi() -> String {
    let mut out = String::from(BANNER);
    out.push('\n');

    module(&mut out, "vreg", "Offsets of the virtual registers in page 0 (`vregs.txt`).", |out| {
        for row in spec::VREGS.rows() {
            let (name, offset, width, writer) = (row.cells[0], row.number(&spec::VREGS, 1), row.cells[2], row.cells[3]);
            doc(out, &format!("{} Width {width} bytes; written by the {writer}.", row.cells[4]));
            let _ = writeln!(out, "    pub const {name}: u32 = {offset:#05x};");
            let _ = writeln!(out, "    /// Width in bytes of [`{name}`].");
            let _ = writeln!(out, "    pub const {name}_WIDTH: u32 = {width};");
        }
    });

    module(&mut out, "port", "I/O ports (`ports.txt`). Every port takes 32-bit accesses.", |out| {
        let rows = spec::PORTS.rows();
        for row in &rows {
            doc(out, &format!("{} ({}, {}).", row.cells[4], row.cells[2].to_uppercase(), row.cells[3]));
            let _ = writeln!(out, "    pub const {}: u16 = {:#04x};", row.cells[0], row.number(&spec::PORTS, 1));
        }
        let _ = writeln!(
            out,
            "    /// Every port with its name and whether it is read (`true`: IN) or written (`false`: OUT)."
        );
        let _ = writeln!(out, "    pub const ALL: &[(&str, u16, bool)] = &[");
        for row in &rows {
            let _ = writeln!(out, "        (\"{}\", {}, {}),", row.cells[0], row.cells[0], row.cells[2] == "in");
        }
        let _ = writeln!(out, "    ];");
    });

    module(&mut out, "block", "Field offsets of request blocks (`blocks.txt`).", |out| {
        let rows = spec::BLOCKS.rows();
        let mut blocks: Vec<&str> = rows.iter().map(|r| r.cells[0]).collect();
        blocks.dedup();
        for block in blocks {
            let _ = writeln!(out, "    /// Fields of a {block} request block.");
            let _ = writeln!(out, "    pub mod {} {{", block.to_lowercase());
            let mut size = 0;
            for row in rows.iter().filter(|r| r.cells[0] == block) {
                let offset = row.number(&spec::BLOCKS, 2);
                size = size.max(offset + 4);
                let _ = writeln!(out, "        /// {}", row.cells[3]);
                let _ = writeln!(out, "        pub const {}: u32 = {:#04x};", row.cells[1], offset);
            }
            let _ = writeln!(out, "        /// Size of the block in bytes.");
            let _ = writeln!(out, "        pub const SIZE: u32 = {size};");
            let _ = writeln!(out, "    }}");
        }
    });

    constants(&mut out, "status", "Status codes written into request blocks (`status.txt`).", &spec::STATUS, "u32");
    constants(
        &mut out,
        "irq",
        "Interrupt sources: bit numbers in `IRQ_PENDING` (`interrupts.txt`).",
        &spec::INTERRUPTS,
        "u32",
    );
    constants(
        &mut out,
        "exception",
        "Exception kinds, as in `FAULT_KIND` (`exceptions.txt`).",
        &spec::EXCEPTIONS,
        "u32",
    );
    constants(&mut out, "boot", "Memory and boot constants (`boot.txt`).", &spec::BOOT, "u32");

    module(&mut out, "vinsn", "Encodings of the virtual instructions (`virtual-instructions.txt`).", |out| {
        for row in spec::VIRTUAL_INSTRUCTIONS.rows() {
            let bytes = hex_bytes(&spec::VIRTUAL_INSTRUCTIONS, &row);
            let list: Vec<String> = bytes.iter().map(|b| format!("{b:#04x}")).collect();
            doc(out, row.cells[2]);
            let _ = writeln!(out, "    pub const {}: &[u8] = &[{}];", row.cells[0], list.join(", "));
        }
    });
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// Decodes the `bytes` column of `virtual-instructions.txt` (hex digits, no spaces).
pub fn hex_bytes(table: &Table, row: &Row) -> Vec<u8> {
    let text = row.cells[1];
    assert!(text.len().is_multiple_of(2), "isa-spec/{}:{}: odd number of hex digits", table.file, row.line);
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex byte")).collect()
}

fn module(out: &mut String, name: &str, docs: &str, body: impl FnOnce(&mut String)) {
    let _ = writeln!(out, "/// {docs}");
    let _ = writeln!(out, "pub mod {name} {{");
    body(out);
    let _ = writeln!(out, "}}\n");
}

fn constants(out: &mut String, name: &str, docs: &str, table: &Table, ty: &str) {
    module(out, name, docs, |out| {
        for row in table.rows() {
            doc(out, row.cells[2]);
            let _ = writeln!(out, "    pub const {}: {ty} = {};", row.cells[0], row.cells[1]);
        }
    });
}

fn doc(out: &mut String, text: &str) {
    let _ = writeln!(out, "    /// {text}");
}

/// Markdown tables generated into the spec document, by marker name.
pub fn render_doc_sections() -> Vec<(&'static str, String)> {
    vec![
        ("vregs", markdown(&spec::VREGS, &["Name", "Offset", "Width", "Writer", "Meaning"])),
        ("ports", markdown(&spec::PORTS, &["Name", "Port", "Dir", "Device", "Operation"])),
        ("blocks", markdown(&spec::BLOCKS, &["Block", "Field", "Offset", "Meaning"])),
        ("status", markdown(&spec::STATUS, &["Status", "Value", "Meaning"])),
        ("interrupts", markdown(&spec::INTERRUPTS, &["Source", "Bit", "Meaning"])),
        ("exceptions", markdown(&spec::EXCEPTIONS, &["Kind", "Code", "Raised by"])),
        ("virtual-instructions", markdown(&spec::VIRTUAL_INSTRUCTIONS, &["Name", "Bytes", "Semantics"])),
        ("boot", markdown(&spec::BOOT, &["Constant", "Value", "Meaning"])),
        ("excluded", markdown(&spec::EXCLUDED, &["Class", "Why it is excluded"])),
    ]
}

fn markdown(table: &Table, headers: &[&str]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
    for row in table.rows() {
        let cells: Vec<String> = row.cells.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// Replaces every `<!-- generated:NAME -->` ... `<!-- end generated -->` region of `doc` with the
/// freshly rendered table. Returns an error naming a marker that is missing.
pub fn splice_doc(doc: &str) -> Result<String, String> {
    let mut text = doc.to_owned();
    for (name, table) in render_doc_sections() {
        let open = format!("<!-- generated:{name} -->\n");
        let close = "<!-- end generated -->";
        let start = text.find(&open).ok_or_else(|| format!("{SPEC_DOC_PATH}: missing marker {open}"))? + open.len();
        let end =
            start + text[start..].find(close).ok_or_else(|| format!("{SPEC_DOC_PATH}: unclosed marker {name}"))?;
        text.replace_range(start..end, &table);
    }
    Ok(text)
}
