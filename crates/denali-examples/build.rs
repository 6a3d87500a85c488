//! Builds the guest workspace (`guests/`) for i586 with a nested cargo and copies the example
//! ELF images, and the native Linux builds of the compute kernels (`guests/native`), into
//! OUT_DIR, where `src/lib.rs` includes them.
//!
//! The nested build uses its own target directory (`target/guests`): sharing the outer one
//! would deadlock on the build-directory lock the outer cargo holds. It runs in `guests/` so
//! that the guests' `.cargo/config.toml` (target, linker, link script) and the repository's
//! `rust-toolchain.toml` apply, and without the variables the outer build exports, which would
//! otherwise retarget or reconfigure it (RUSTFLAGS for the host, a clippy wrapper, ...).

use std::{
    env,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

const GUEST_TARGET: &str = "i586-unknown-linux-gnu";

/// The binaries of `guests/examples`, bundled in this order by `src/lib.rs`.
const GUESTS: &[&str] = &[
    "hello",
    "sieve",
    "crc32",
    "sha256",
    "quicksort",
    "fib",
    "matmul",
    "bignum",
    "idle",
    "disk",
    "fault",
    "pingpong",
    "pingpong-busy",
];

/// The compute kernels whose native builds (`guests/native`, binaries `native-<kernel>`) are
/// bundled as `native-<kernel>.elf`.
const NATIVE: &[&str] = &["sieve", "crc32", "sha256", "quicksort", "fib", "matmul", "bignum"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let repo = manifest_dir.parent().and_then(Path::parent).expect("crate lives at <repo>/crates/denali-examples");
    let guests = repo.join("guests");
    let target_dir = repo.join("target").join("guests");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    rerun_if_changed(&guests, &guests);
    rerun_if_changed(&repo.join("isa-spec"), &guests);
    rerun_if_changed(&repo.join("crates").join("denali-abi"), &guests);
    println!("cargo:rerun-if-changed={}", repo.join("rust-toolchain.toml").display());
    println!("cargo:rerun-if-changed=build.rs");

    ensure_target_installed(&guests);

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = clean_command(&cargo, &guests);
    build
        .arg("build")
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        .arg("--release")
        .arg("--target-dir")
        .arg(&target_dir);
    let output = build.output().unwrap_or_else(|e| panic!("could not run {}: {e}", cargo.to_string_lossy()));
    if !output.status.success() {
        panic!(
            "building the guests failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let built = target_dir.join(GUEST_TARGET).join("release");
    for name in GUESTS {
        copy_image(&built.join(name), &out_dir.join(format!("{name}.elf")));
    }
    for name in NATIVE {
        copy_image(&built.join(format!("native-{name}")), &out_dir.join(format!("native-{name}.elf")));
    }
}

/// Copies a built image into OUT_DIR. Copying only changed images keeps OUT_DIR's mtimes, and
/// so rebuilds of this crate, quiet when the guests did not change.
fn copy_image(from: &Path, to: &Path) {
    let image = fs::read(from).unwrap_or_else(|e| panic!("built image {} missing: {e}", from.display()));
    if fs::read(to).ok().as_deref() != Some(image.as_slice()) {
        fs::write(to, &image).unwrap_or_else(|e| panic!("cannot write {}: {e}", to.display()));
    }
}

/// Prints `rerun-if-changed` for every file and directory under `dir`, except build output.
/// Directories are listed so that added files are noticed too; `guests/` itself is not, since
/// cargo scans a listed directory recursively and would then see `guests/target` churn.
fn rerun_if_changed(dir: &Path, guests: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    if dir != guests {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else { continue };
        if file_type.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rerun_if_changed(&path, guests);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// A command in `dir` without the environment the outer cargo set up for this build script.
fn clean_command(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir);
    for (key, _) in env::vars_os() {
        if leaks_from_outer_build(&key) {
            command.env_remove(&key);
        }
    }
    command
}

fn leaks_from_outer_build(key: &OsString) -> bool {
    let Some(key) = key.to_str() else { return false };
    const EXACT: &[&str] = &[
        "TARGET",
        "HOST",
        "OUT_DIR",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
    ];
    // CARGO_HOME says where cargo's caches live and stays; every other CARGO_* variable is
    // either per-package information or configuration meant for the outer build (target,
    // target dir, rustflags, profile overrides, jobserver).
    EXACT.contains(&key)
        || (key.starts_with("CARGO_") && key != "CARGO_HOME")
        || key.starts_with("RUSTC")
        || key.starts_with("RUSTDOC")
        || key.starts_with("__CARGO")
}

/// Installs the i586 target with rustup if the toolchain building the guests lacks it.
fn ensure_target_installed(guests: &Path) {
    let output = clean_command("rustc", guests).args(["--print", "target-libdir", "--target", GUEST_TARGET]).output();
    let has_core = output.ok().filter(|o| o.status.success()).is_some_and(|o| {
        let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        fs::read_dir(dir)
            .is_ok_and(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libcore-")))
    });
    if has_core {
        return;
    }
    println!("cargo:warning=the {GUEST_TARGET} target is missing: running `rustup target add {GUEST_TARGET}`");
    let status = clean_command("rustup", guests).args(["target", "add", GUEST_TARGET]).status();
    if !status.is_ok_and(|s| s.success()) {
        panic!(
            "the example guests need the {GUEST_TARGET} Rust target and `rustup target add {GUEST_TARGET}` failed; \
             install it by hand and rebuild"
        );
    }
}
