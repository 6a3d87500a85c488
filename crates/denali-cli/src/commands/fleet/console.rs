//! Where each fleet VM's console goes: lines on stdout prefixed with the VM id, one file per VM,
//! or nowhere; chosen per group of VMs.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use denali_fleet::ConsoleFactory;

use crate::args::ConsoleMode;
use crate::error::Failure;
use crate::source::io_reason;

/// The console factory of a fleet whose VMs `starts[i]..starts[i + 1]` use `modes[i]`
/// (`starts` ascending, from 0). Directories of `files:` modes are created now, so a bad one
/// fails before any VM boots; `origin` names where each mode was given.
pub fn factory(starts: Vec<u32>, modes: &[(ConsoleMode, String)]) -> Result<ConsoleFactory, Failure> {
    for (mode, origin) in modes {
        if let ConsoleMode::Files(dir) = mode {
            std::fs::create_dir_all(dir).map_err(|e| {
                Failure::input(format!("{origin}: {}: cannot create: {}", dir.display(), io_reason(&e)))
            })?;
        }
    }
    let modes: Vec<ConsoleMode> = modes.iter().map(|(mode, _)| mode.clone()).collect();
    Ok(Arc::new(move |id| {
        // The last group that starts at or before `id`.
        let group = starts.partition_point(|&start| start <= id).saturating_sub(1);
        match modes.get(group).unwrap_or(&ConsoleMode::None) {
            ConsoleMode::None => Ok(Box::new(io::sink()) as Box<dyn Write + Send>),
            ConsoleMode::Prefix => Ok(Box::new(Prefixed { id, line: Vec::new() })),
            ConsoleMode::Files(dir) => open(dir, id),
        }
    }))
}

fn open(dir: &Path, id: u32) -> io::Result<Box<dyn Write + Send>> {
    Ok(Box::new(BufWriter::new(File::create(dir.join(format!("vm-{id}.txt")))?)))
}

/// A console that writes whole lines to stdout, each prefixed with the VM id, so the output
/// of many VMs interleaves by line and not by byte.
struct Prefixed {
    id: u32,
    line: Vec<u8>,
}

impl Prefixed {
    fn emit(&mut self) -> io::Result<()> {
        let mut out = format!("[vm {}] ", self.id).into_bytes();
        out.append(&mut self.line);
        if out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        io::stdout().lock().write_all(&out)
    }
}

impl Write for Prefixed {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        for &b in bytes {
            self.line.push(b);
            if b == b'\n' {
                self.emit()?;
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

impl Drop for Prefixed {
    fn drop(&mut self) {
        // A last line without a newline is still shown when the VM ends.
        if !self.line.is_empty() {
            let _ = self.emit();
        }
    }
}
