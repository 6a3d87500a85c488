//! Fleet manifests: `denali fleet MANIFEST.toml` runs the mixed fleet a TOML file describes
//! (the schema is in README.md, section Fleets, and `examples/fleet.toml`).
//!
//! A manifest is read in two passes. serde (with `deny_unknown_fields`) checks its shape:
//! unknown fields, wrong types, malformed TOML. Then [`load`] checks what the shape cannot
//! say (one image source per group, counts, sizes, files that must exist) and loads the images
//! into a [`Plan`]. Every error names the file, the line and column, and the field, for
//! example ``fleet.toml:12:9: field `group[2].count`: the count must be at least 1``: the
//! schema keeps the span of each field it checks later (`toml::Spanned`), and an error of the
//! first pass is placed by finding the innermost key whose span holds the error's position.
//!
//! Relative paths in a manifest are relative to the manifest's directory.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use denali_fleet::InterruptMode;
use denali_kernel::Image;
use denali_kernel::devices::disk::BLOCK_SIZE;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

use crate::args::{self, EngineKind};
use crate::commands::fleet::plan::{DiskPlan, GroupPlan, Located, Plan};
use crate::commands::fleet::{DEFAULT_MEM, DEFAULT_QUANTUM};
use crate::error::Failure;
use crate::source::io_reason;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    fleet: FleetTable,
    #[serde(default)]
    group: Vec<Spanned<GroupTable>>,
}

/// `[fleet]`: settings for the whole fleet; each is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetTable {
    threads: Option<Spanned<u64>>,
    quantum: Option<Spanned<u64>>,
    interrupts: Option<Interrupts>,
    mem_budget: Option<Spanned<SizeText>>,
    max_instructions: Option<u64>,
    engine: Option<EngineKind>,
    console: Option<Spanned<String>>,
    pcap: Option<Spanned<String>>,
    keyboard_stdin: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Interrupts {
    Batched,
    Synchronous,
}

/// `[[group]]`: VMs of one image with the same settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupTable {
    /// Only for the reader.
    #[serde(rename = "name")]
    _name: Option<String>,
    image: Option<Spanned<String>>,
    example: Option<Spanned<String>>,
    flat: Option<Spanned<String>>,
    load: Option<Spanned<u32>>,
    entry: Option<Spanned<u32>>,
    count: Option<Spanned<u64>>,
    mem: Option<Spanned<SizeText>>,
    engine: Option<EngineKind>,
    #[serde(default)]
    disks: Vec<DiskTable>,
    keyboard_script: Option<Spanned<String>>,
    console: Option<Spanned<String>>,
    network: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskTable {
    path: Spanned<String>,
    #[serde(default)]
    read_only: bool,
    /// Create a missing file of this size.
    size: Option<Spanned<SizeText>>,
}

/// A memory size as written: `"64K"` or a number of bytes; parsed when it is checked.
#[derive(Debug, Clone)]
struct SizeText(String);

impl<'de> Deserialize<'de> for SizeText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SizeText, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64K\" or \"16M\", or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<SizeText, E> {
                Ok(SizeText(text.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<SizeText, E> {
                Ok(SizeText(bytes.to_string()))
            }
            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<SizeText, E> {
                Ok(SizeText(bytes.to_string()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Reads, checks and loads the manifest at `path`.
pub fn load(path: &Path) -> Result<Plan, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::input(format!("{}: cannot read: {}", path.display(), io_reason(&e))))?;
    parse(Manifest { name: path.display().to_string(), dir: base_dir(path), text })
}

fn parse(manifest: Manifest) -> Result<Plan, Failure> {
    let file: ManifestFile = toml::from_str(&manifest.text).map_err(|e| manifest.shape_error(&e))?;
    manifest.plan(file)
}

/// The directory relative paths start from.
fn base_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The manifest's text and what messages and paths need.
struct Manifest {
    /// The path as given, for messages.
    name: String,
    dir: PathBuf,
    text: String,
}

impl Manifest {
    /// `FILE:LINE:COLUMN` of a byte offset (both from 1).
    fn position(&self, offset: usize) -> String {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{column}", self.name)
    }

    /// Where `field` is, for messages: ``FILE:LINE:COLUMN: field `FIELD` ``.
    fn at(&self, span: &Range<usize>, field: &str) -> String {
        format!("{}: field `{field}`", self.position(span.start))
    }

    fn error<T>(&self, value: &Spanned<T>, field: &str, message: impl fmt::Display) -> Failure {
        Failure::input(format!("{}: {message}", self.at(&value.span(), field)))
    }

    /// Places an error of serde's pass: at its span, naming the innermost field there.
    fn shape_error(&self, error: &toml::de::Error) -> Failure {
        let message = error.message().trim_end();
        let Some(span) = error.span() else { return Failure::input(format!("{}: {message}", self.name)) };
        match field_at(&self.text, span.start) {
            Some(field) => Failure::input(format!("{}: {message}", self.at(&span, &field))),
            // Malformed TOML: quote what is there, as the message may not (`duplicate key`).
            None => {
                let quoted = self.text.get(span.clone()).and_then(|t| t.lines().next()).unwrap_or("").trim();
                let near = if quoted.is_empty() || quoted.len() > 40 { String::new() } else { format!(": `{quoted}`") };
                Failure::input(format!("{}: {message}{near}", self.position(span.start)))
            }
        }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        self.dir.join(path)
    }

    fn plan(&self, file: ManifestFile) -> Result<Plan, Failure> {
        if file.group.is_empty() {
            return Err(Failure::input(format!(
                "{}: the manifest has no [[group]] of VMs (each needs an image or an example)",
                self.position(0)
            )));
        }
        let fleet = &file.fleet;
        let mut images = HashMap::new();
        let groups = file
            .group
            .iter()
            .enumerate()
            .map(|(index, group)| self.group(index, group, &mut images))
            .collect::<Result<Vec<_>, _>>()?;
        let threads = fleet.threads.as_ref().map(|t| self.at_least_one(t, "fleet.threads")).transpose()?;
        let quantum = fleet.quantum.as_ref().map(|q| self.at_least_one(q, "fleet.quantum")).transpose()?;
        let mem_budget = match &fleet.mem_budget {
            Some(size) => {
                Some(args::parse_budget(&size.get_ref().0).map_err(|e| self.error(size, "fleet.mem_budget", e))?)
            }
            None => None,
        };
        let console = match &fleet.console {
            Some(mode) => self.console(mode, "fleet.console")?,
            None => Located::new(args::ConsoleMode::Prefix, "the default console"),
        };
        Ok(Plan {
            groups,
            threads,
            quantum: quantum.unwrap_or(DEFAULT_QUANTUM),
            interrupts: match fleet.interrupts {
                Some(Interrupts::Synchronous) => InterruptMode::Synchronous,
                Some(Interrupts::Batched) | None => InterruptMode::Batched,
            },
            mem_budget,
            max_instructions: fleet.max_instructions,
            engine: fleet.engine.unwrap_or_else(EngineKind::host_default),
            console,
            pcap: fleet
                .pcap
                .as_ref()
                .map(|p| Located::new(self.resolve(p.get_ref()), self.at(&p.span(), "fleet.pcap"))),
            keyboard_stdin: fleet
                .keyboard_stdin
                .as_ref()
                .map(|id| Located::new(*id.get_ref(), self.at(&id.span(), "fleet.keyboard_stdin"))),
        })
    }

    fn at_least_one(&self, value: &Spanned<u64>, field: &str) -> Result<u64, Failure> {
        match *value.get_ref() {
            0 => Err(self.error(value, field, "must be at least 1")),
            n => Ok(n),
        }
    }

    /// A disk size: whole 4096-byte blocks, at least one, numbered in 32 bits.
    fn disk_size(&self, size: &Spanned<SizeText>, field: &str) -> Result<u64, Failure> {
        let bytes = args::parse_budget(&size.get_ref().0).map_err(|e| self.error(size, field, e))?;
        let block = u64::from(BLOCK_SIZE);
        if bytes == 0 || !bytes.is_multiple_of(block) || bytes / block > u64::from(u32::MAX) {
            return Err(self.error(
                size,
                field,
                format!("'{}' is not a whole number of 4096-byte blocks (from 4K to 16T)", size.get_ref().0),
            ));
        }
        Ok(bytes)
    }

    fn console(&self, mode: &Spanned<String>, field: &str) -> Result<Located<args::ConsoleMode>, Failure> {
        let parsed = args::parse_console(mode.get_ref()).map_err(|e| self.error(mode, field, e))?;
        let parsed = match parsed {
            args::ConsoleMode::Files(dir) => args::ConsoleMode::Files(self.dir.join(dir)),
            other => other,
        };
        Ok(Located::new(parsed, self.at(&mode.span(), field)))
    }

    fn group(
        &self,
        index: usize,
        spanned: &Spanned<GroupTable>,
        images: &mut HashMap<String, Arc<Image>>,
    ) -> Result<GroupPlan, Failure> {
        let group = spanned.get_ref();
        let field = |name: &str| format!("group[{index}].{name}");
        let count = match &group.count {
            Some(count) => {
                let n = self.at_least_one(count, &field("count"))?;
                u32::try_from(n)
                    .map_err(|_| self.error(count, &field("count"), "is more than 32-bit VM ids can number"))?
            }
            None => 1,
        };
        let mem = match &group.mem {
            Some(size) => args::parse_mem(&size.get_ref().0).map_err(|e| self.error(size, &field("mem"), e))?,
            None => DEFAULT_MEM,
        };
        let (image, image_field) = self.image(index, spanned, images)?;
        if let Err(e) = image.check_fits(mem) {
            return Err(match &group.mem {
                Some(size) => self.error(size, &field("mem"), e),
                None => {
                    self.error(image_field, &field(image_field_name(group)), format!("{e} (the default mem is 16M)"))
                }
            });
        }
        let keyboard_script = match &group.keyboard_script {
            Some(path) => {
                let resolved = self.resolve(path.get_ref());
                let bytes = std::fs::read(&resolved).map_err(|e| {
                    self.error(
                        path,
                        &field("keyboard_script"),
                        format!("{}: cannot read: {}", resolved.display(), io_reason(&e)),
                    )
                })?;
                Some(Arc::from(bytes))
            }
            None => None,
        };
        let disks = group
            .disks
            .iter()
            .enumerate()
            .map(|(d, disk)| {
                let path = disk.path.get_ref();
                if path.is_empty() {
                    return Err(self.error(
                        &disk.path,
                        &field(&format!("disks[{d}].path")),
                        "the disk needs a file name",
                    ));
                }
                let create_size = disk
                    .size
                    .as_ref()
                    .map(|size| self.disk_size(size, &field(&format!("disks[{d}].size"))))
                    .transpose()?;
                Ok(Located::new(
                    DiskPlan { path: self.resolve(path), read_only: disk.read_only, create_size },
                    self.at(&disk.path.span(), &field(&format!("disks[{d}].path"))),
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let console = group.console.as_ref().map(|mode| self.console(mode, &field("console"))).transpose()?;
        Ok(GroupPlan {
            image,
            count,
            mem,
            engine: group.engine,
            disks,
            keyboard_script,
            console,
            network: group.network.unwrap_or(true),
        })
    }

    /// The group's image, from exactly one of `image`, `example` and `flat`, with the field
    /// that named it; images named twice are loaded once.
    fn image<'g>(
        &self,
        index: usize,
        spanned: &'g Spanned<GroupTable>,
        images: &mut HashMap<String, Arc<Image>>,
    ) -> Result<(Arc<Image>, &'g Spanned<String>), Failure> {
        let group = spanned.get_ref();
        let field = |name: &str| format!("group[{index}].{name}");
        let mut sources: Vec<(&str, &Spanned<String>)> =
            [("image", &group.image), ("example", &group.example), ("flat", &group.flat)]
                .into_iter()
                .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
                .collect();
        // In the file's order, so an error points at the second one written.
        sources.sort_by_key(|(_, value)| value.span().start);
        let (kind, name) = match sources.as_slice() {
            [] => {
                return Err(Failure::input(format!(
                    "{}: group[{index}] has no image: give one of image (an ELF file), example (a bundled guest) \
                     or flat (a raw image, with load)",
                    self.position(spanned.span().start)
                )));
            }
            [one] => *one,
            [(first, _), (second, value), ..] => {
                return Err(self.error(value, &field(second), format!("a group has one image: {first} is given too")));
            }
        };
        for (extra, value) in [("load", &group.load), ("entry", &group.entry)] {
            if let (Some(value), false) = (value, kind == "flat") {
                return Err(self.error(value, &field(extra), "is only for a flat image"));
            }
        }
        let key = format!("{kind}:{}", name.get_ref());
        if let (Some(image), false) = (images.get(&key), kind == "flat") {
            return Ok((Arc::clone(image), name));
        }
        let here = |message: String| self.error(name, &field(kind), message);
        let image = match kind {
            "example" => {
                let example = denali_examples::find(name.get_ref()).ok_or_else(|| {
                    let known: Vec<&str> =
                        denali_examples::ALL.iter().chain(denali_examples::DEVICES).map(|e| e.name).collect();
                    here(format!("unknown example '{}' (the examples are: {})", name.get_ref(), known.join(", ")))
                })?;
                Image::from_elf(example.elf).map_err(|e| here(e.to_string()))?
            }
            _ => {
                let path = self.resolve(name.get_ref());
                let data = std::fs::read(&path)
                    .map_err(|e| here(format!("{}: cannot read: {}", path.display(), io_reason(&e))))?;
                if kind == "flat" {
                    let Some(load) = &group.load else {
                        return Err(here("a flat image needs load (its load address)".to_owned()));
                    };
                    let entry = group.entry.as_ref().map(|e| *e.get_ref());
                    Image::flat(&data, *load.get_ref(), entry).map_err(|e| here(format!("{}: {e}", path.display())))?
                } else {
                    Image::from_elf(&data).map_err(|e| here(format!("{}: {e}", path.display())))?
                }
            }
        };
        let image = Arc::new(image);
        images.insert(key, Arc::clone(&image));
        Ok((image, name))
    }
}

/// Which of `image`, `example` and `flat` a group (with exactly one) gives.
fn image_field_name(group: &GroupTable) -> &'static str {
    if group.image.is_some() {
        "image"
    } else if group.example.is_some() {
        "example"
    } else {
        "flat"
    }
}

/// The dotted path (`group[2].disks[0].path`) of the innermost key or value of the TOML
/// document `text` whose span holds `offset`; `None` if there is none (or `text` does not
/// parse).
fn field_at(text: &str, offset: usize) -> Option<String> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    table_path(root.get_ref(), offset, &mut path).then(|| path.concat())
}

fn table_path(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table {
        let dot = if path.is_empty() { "" } else { "." };
        path.push(format!("{dot}{}", key.get_ref()));
        if value_path(value, offset, path) || key.span().contains(&offset) {
            return true;
        }
        path.pop();
    }
    false
}

/// Whether `offset` lies in `value`, pushing the path inside it that holds it.
fn value_path(value: &Spanned<toml::de::DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
    match value.get_ref() {
        toml::de::DeValue::Table(table) => table_path(table, offset, path) || value.span().contains(&offset),
        toml::de::DeValue::Array(array) => {
            for (index, item) in array.iter().enumerate() {
                path.push(format!("[{index}]"));
                if value_path(item, offset, path) {
                    return true;
                }
                path.pop();
            }
            value.span().contains(&offset)
        }
        _ => value.span().contains(&offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_by_position() {
        let text = "[fleet]\nthreads = 2\n\n[[group]]\nexample = \"hello\"\n\n[[group]]\ncount = 3\n\
                    disks = [{ path = \"a\" }, { path = \"b\", read_only = true }]\n";
        let at = |needle: &str| field_at(text, text.find(needle).unwrap());
        assert_eq!(at("2\n").as_deref(), Some("fleet.threads"));
        assert_eq!(at("\"hello\"").as_deref(), Some("group[0].example"));
        assert_eq!(at("3\n").as_deref(), Some("group[1].count"));
        assert_eq!(at("\"b\"").as_deref(), Some("group[1].disks[1].path"));
        assert_eq!(at("true").as_deref(), Some("group[1].disks[1].read_only"));
        assert_eq!(at("read_only").as_deref(), Some("group[1].disks[1].read_only"));
    }

    /// Damaged manifests give errors, never panics, and every error is placed in the file.
    #[test]
    fn damaged_manifests_are_errors() {
        let valid = include_str!("../../../examples/fleet.toml");
        let dir = std::env::temp_dir().join(format!("denali-manifest-damage-{}", std::process::id()));
        let manifest = |text: String| Manifest { name: "m.toml".to_owned(), dir: dir.clone(), text };
        let mut damaged = 0;
        for (at, _) in valid.char_indices().step_by(3) {
            for insert in ["", "\"", "0", "[", "é", "\n", "=", "{id}"] {
                let mut text = valid.to_owned();
                if insert.is_empty() {
                    text.remove(at);
                } else {
                    text.insert_str(at, insert);
                }
                if let Err(failure) = parse(manifest(text)) {
                    damaged += 1;
                    assert!(failure.message.starts_with("m.toml:"), "{}", failure.message);
                    assert!(!failure.message.contains('\n'), "{}", failure.message);
                }
            }
        }
        assert!(damaged > 1000, "{damaged} damaged manifests refused");
    }

    /// The schema README.md shows is the one the parser takes.
    #[test]
    fn the_readme_example_has_the_right_shape() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\n").expect("README has a TOML example") + "```toml\n".len();
        let example = &readme[start..];
        let example = &example[..example.find("```").unwrap()];
        let file: ManifestFile = toml::from_str(example).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.group.len(), 3);
        assert_eq!(file.group[2].get_ref().disks.len(), 2);
        let file: Result<ManifestFile, _> = toml::from_str(include_str!("../../../examples/fleet.toml"));
        assert!(file.is_ok(), "{file:?}");
    }
}
