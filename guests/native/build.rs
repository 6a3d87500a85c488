//! Puts this crate's directory on the linker search path, so that the `-Tlink.x` which
//! `guests/.cargo/config.toml` passes to every binary of the workspace finds this crate's own
//! `link.x` (a Linux program layout) rather than the guests' one. Search paths from build
//! scripts reach only the crate itself and its dependents, and this crate does not depend on
//! `denali-guest`, so the two scripts never meet in one link.

use std::{env, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rustc-link-search={}", dir.display());
    println!("cargo:rerun-if-changed=link.x");
    println!("cargo:rerun-if-changed=build.rs");
}
