//! The files derived from `isa-spec/` must match the tables. Run with `DENALI_BLESS=1` to
//! rewrite them after changing a table.

use denali_isa::codegen;
use std::path::PathBuf;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(path: &str, expected: &str) {
    let file = repo_root().join(path);
    let actual = std::fs::read_to_string(&file).unwrap_or_default();
    if actual == expected {
        return;
    }
    if std::env::var_os("DENALI_BLESS").is_some() {
        std::fs::write(&file, expected).expect("write generated file");
        return;
    }
    panic!("{path} is stale: run `DENALI_BLESS=1 cargo test -p denali-isa --test spec_codegen` and commit the result");
}

#[test]
fn abi_constants_match_the_tables() {
    check(codegen::ABI_PATH, &codegen::render_abi());
}

#[test]
fn spec_document_tables_match_the_tables() {
    let doc = std::fs::read_to_string(repo_root().join(codegen::SPEC_DOC_PATH)).expect("read isa-spec/README.md");
    let expected = codegen::splice_doc(&doc).unwrap_or_else(|e| panic!("{e}"));
    check(codegen::SPEC_DOC_PATH, &expected);
}
