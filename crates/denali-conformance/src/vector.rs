//! The vector files: one gzip-compressed JSON-lines file per form, `<dir>/<Form>.jsonl.gz`,
//! and `<dir>/MANIFEST.json`, which records where and how the vectors were generated.
//!
//! Each line of a form's file is one [`Vector`] as `serde_json` writes it (see `case.rs` and
//! `conformance/README.md`). Files are written with a zero gzip timestamp, so regenerating the
//! same vectors gives byte-identical files and no spurious diffs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::bufread::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::case::Vector;

/// The version of the file format this crate reads and writes (`Manifest::format`).
pub const FORMAT: u32 = 1;
/// The file name of the manifest inside a vectors directory.
pub const MANIFEST_FILE: &str = "MANIFEST.json";
/// What every vector file's name ends with, after the form.
pub const EXTENSION: &str = ".jsonl.gz";

/// `MANIFEST.json`: what generated the vectors, and how many cases each form has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The file format version, [`FORMAT`].
    pub format: u32,
    /// The host CPU's model name (e.g. from `/proc/cpuinfo`), the oracle of the `cpu` forms.
    pub cpu: String,
    /// The host CPU's vendor string, e.g. `GenuineIntel`.
    pub vendor: String,
    /// When the vectors were generated (an ISO 8601 date).
    pub generated: String,
    /// The program that generated them, e.g. `denali 0.1.0`.
    pub generator: String,
    /// Every form with vectors, by name.
    pub forms: BTreeMap<String, FormEntry>,
}

/// One form's entry in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormEntry {
    /// Number of vectors (lines) in the form's file.
    pub cases: usize,
    /// Where the expected results come from.
    pub source: Source,
}

/// The oracle of a form's expected results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Run natively on the host CPU.
    Cpu,
    /// Computed from the spec: the forms the spec defines rather than the CPU (`hlt`,
    /// `int 0xd0`, `in`, `out`).
    Spec,
}

/// Why vector files could not be read or written. Every variant names the file, and the line
/// where there is one.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The gzip stream broke off or is corrupt at this line.
    #[error("{}:{line}: {source}", path.display())]
    Read { path: PathBuf, line: usize, source: io::Error },
    #[error("{}:{line}: not a vector: {source}", path.display())]
    Json { path: PathBuf, line: usize, source: serde_json::Error },
    #[error("{}:{line}: the case is of form {found}, but the file is for {expected}", path.display())]
    WrongForm { path: PathBuf, line: usize, found: String, expected: String },
    #[error("{}: not a manifest: {source}", path.display())]
    Manifest { path: PathBuf, source: serde_json::Error },
    #[error("{}: format {found} is not supported (this runner reads format {FORMAT})", path.display())]
    Format { path: PathBuf, found: u32 },
    #[error("{form:?} is not a form name (an iced-x86 Code name: letters, digits and underscores)")]
    BadForm { form: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> VectorError + '_ {
    move |source| VectorError::Io { path: path.to_owned(), source }
}

/// The file holding `form`'s vectors inside `dir`.
pub fn form_path(dir: &Path, form: &str) -> PathBuf {
    dir.join(format!("{form}{EXTENSION}"))
}

/// Form names become file names, so anything but an iced `Code` name is refused rather than
/// allowed to reach outside the directory.
fn check_form_name(form: &str) -> Result<(), VectorError> {
    if !form.is_empty() && form.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(VectorError::BadForm { form: form.to_owned() })
    }
}

/// Writes `vectors` as `dir/<form>.jsonl.gz`, creating `dir` if needed, and returns the path.
/// Every vector must be of `form`. The file is written under a temporary name and renamed, so
/// an interrupted run never leaves a truncated vector file behind.
pub fn write_form(dir: &Path, form: &str, vectors: &[Vector]) -> Result<PathBuf, VectorError> {
    check_form_name(form)?;
    let path = form_path(dir, form);
    if let Some((index, vector)) = vectors.iter().enumerate().find(|(_, v)| v.case.form != form) {
        return Err(VectorError::WrongForm {
            path,
            line: index + 1,
            found: vector.case.form.clone(),
            expected: form.to_owned(),
        });
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let temp = dir.join(format!(".{form}{EXTENSION}.tmp"));
    let write = || -> io::Result<()> {
        let file = File::create(&temp)?;
        // GzEncoder::new writes a zero mtime and no file name: reproducible output.
        let mut out = GzEncoder::new(BufWriter::new(file), Compression::default());
        for vector in vectors {
            serde_json::to_writer(&mut out, vector)?;
            out.write_all(b"\n")?;
        }
        out.finish()?.into_inner().map_err(io::IntoInnerError::into_error)?.sync_all()
    };
    if let Err(source) = write() {
        let _ = std::fs::remove_file(&temp);
        return Err(VectorError::Io { path: temp, source });
    }
    std::fs::rename(&temp, &path).map_err(io_error(&path))?;
    Ok(path)
}

/// Reads every vector of one form's file. Blank lines are skipped. When the file is named
/// `<Form>.jsonl.gz`, every vector must be of that form.
pub fn read_form(path: &Path) -> Result<Vec<Vector>, VectorError> {
    let file = File::open(path).map_err(io_error(path))?;
    let expected = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(EXTENSION));
    // MultiGzDecoder: a file made by appending gzip members (`cat a.gz b.gz`) is still valid.
    let reader = BufReader::new(MultiGzDecoder::new(BufReader::new(file)));
    let mut vectors = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line_no = index + 1;
        let text = line.map_err(|source| VectorError::Read { path: path.to_owned(), line: line_no, source })?;
        if text.trim().is_empty() {
            continue;
        }
        let vector: Vector = serde_json::from_str(&text).map_err(|source| VectorError::Json {
            path: path.to_owned(),
            line: line_no,
            source,
        })?;
        if let Some(expected) = expected.filter(|e| vector.case.form != *e) {
            return Err(VectorError::WrongForm {
                path: path.to_owned(),
                line: line_no,
                found: vector.case.form,
                expected: expected.to_owned(),
            });
        }
        vectors.push(vector);
    }
    Ok(vectors)
}

/// Reads `dir/MANIFEST.json`, or `None` when there is none.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, VectorError> {
    let path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(VectorError::Io { path, source }),
    };
    // Check the version before the rest, so a future format gets a clear message rather than
    // a complaint about some field it renamed.
    #[derive(Deserialize)]
    struct Version {
        format: u32,
    }
    let other = serde_json::from_str::<Version>(&text).ok().map(|v| v.format).filter(|f| *f != FORMAT);
    if let Some(found) = other {
        return Err(VectorError::Format { path, found });
    }
    serde_json::from_str(&text).map(Some).map_err(|source| VectorError::Manifest { path, source })
}

/// Writes `dir/MANIFEST.json` (pretty-printed, one key a line, so that diffs stay readable).
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<PathBuf, VectorError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let path = dir.join(MANIFEST_FILE);
    let mut text = serde_json::to_string_pretty(manifest)
        .map_err(|source| VectorError::Manifest { path: path.clone(), source })?;
    text.push('\n');
    std::fs::write(&path, text).map_err(io_error(&path))?;
    Ok(path)
}

/// The forms that have a vector file in `dir`, sorted by name.
pub fn list_forms(dir: &Path) -> Result<Vec<String>, VectorError> {
    let mut forms = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        // Non-UTF-8 names and hidden files (the temporary files of `write_form`) are not forms.
        let Some(form) = name.to_str().and_then(|n| n.strip_suffix(EXTENSION)) else { continue };
        if check_form_name(form).is_ok() {
            forms.push(form.to_owned());
        }
    }
    forms.sort();
    Ok(forms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_names_cannot_leave_the_directory() {
        for bad in ["", "../x", "a/b", "Add rm", ".hidden"] {
            assert!(matches!(check_form_name(bad), Err(VectorError::BadForm { .. })), "{bad:?}");
        }
        assert!(check_form_name("Add_rm32_r32").is_ok());
    }

    #[test]
    fn the_manifest_serialises_as_documented() {
        let manifest = Manifest {
            format: FORMAT,
            cpu: "Test CPU".into(),
            vendor: "GenuineIntel".into(),
            generated: "2025-01-01".into(),
            generator: "denali 0.1.0".into(),
            forms: [("Hlt".to_owned(), FormEntry { cases: 3, source: Source::Spec })].into(),
        };
        let text = serde_json::to_string(&manifest).unwrap();
        assert!(text.contains(r#""forms":{"Hlt":{"cases":3,"source":"spec"}}"#), "{text}");
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), manifest);
    }
}
