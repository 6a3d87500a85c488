//! Where each fleet VM's console goes: lines on stdout prefixed with the VM id, one file per VM,
//! or nowhere; chosen per group of VMs.
//!
//! The prefixed lines of all VMs go to stdout in batches ([`Lines`]): a write per line, with
//! every idle VM of a large fleet printing a line or two per wake-up, was a fifth of the
//! fleet's CPU time when stdout is a pipe. A line reaches stdout within [`LINGER`] (or sooner,
//! when [`BATCH`] bytes are waiting), and all of them before the fleet's summary.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use denali_fleet::ConsoleFactory;

use crate::args::ConsoleMode;
use crate::error::Failure;
use crate::source::io_reason;

/// Longest a prefixed line waits before it is written to stdout.
const LINGER: Duration = Duration::from_millis(20);
/// Waiting bytes that are written at once.
const BATCH: usize = 32 << 10;

/// The console factory of a fleet whose VMs `starts[i]..starts[i + 1]` use `modes[i]`
/// (`starts` ascending, from 0), and the stdout batches of its prefixed consoles, which the
/// caller finishes when the fleet has ended. Directories of `files:` modes are created now, so
/// a bad one fails before any VM boots; `origin` names where each mode was given.
pub fn factory(starts: Vec<u32>, modes: &[(ConsoleMode, String)]) -> Result<(ConsoleFactory, Arc<Lines>), Failure> {
    for (mode, origin) in modes {
        if let ConsoleMode::Files(dir) = mode {
            std::fs::create_dir_all(dir).map_err(|e| {
                Failure::input(format!("{origin}: {}: cannot create: {}", dir.display(), io_reason(&e)))
            })?;
        }
    }
    let modes: Vec<ConsoleMode> = modes.iter().map(|(mode, _)| mode.clone()).collect();
    let lines = Lines::new(modes.contains(&ConsoleMode::Prefix));
    let shared = Arc::clone(&lines);
    let factory: ConsoleFactory = Arc::new(move |id| {
        // The last group that starts at or before `id`.
        let group = starts.partition_point(|&start| start <= id).saturating_sub(1);
        match modes.get(group).unwrap_or(&ConsoleMode::None) {
            ConsoleMode::None => Ok(Box::new(io::sink()) as Box<dyn Write + Send>),
            ConsoleMode::Prefix => Ok(Box::new(Prefixed { id, line: Vec::new(), out: Arc::clone(&shared) })),
            ConsoleMode::Files(dir) => open(dir, id),
        }
    });
    Ok((factory, lines))
}

fn open(dir: &Path, id: u32) -> io::Result<Box<dyn Write + Send>> {
    Ok(Box::new(BufWriter::new(File::create(dir.join(format!("vm-{id}.txt")))?)))
}

/// The prefixed lines waiting for stdout, shared by a fleet's consoles.
pub struct Lines {
    pending: Mutex<Pending>,
    /// Signalled when the fleet has ended.
    finished: Condvar,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Why stdout failed, once it has: every later line fails the same way.
    failed: Option<io::ErrorKind>,
    finished: bool,
}

impl Lines {
    /// Batches for stdout, with a thread that writes them every [`LINGER`] when `prefixed`.
    fn new(prefixed: bool) -> Arc<Lines> {
        let lines = Arc::new(Lines { pending: Mutex::default(), finished: Condvar::new() });
        if prefixed {
            let writer = Arc::clone(&lines);
            // Without the thread (it could not be made) lines wait for a full batch or the end.
            let _ = std::thread::Builder::new().name("console".into()).spawn(move || writer.write_every_linger());
        }
        lines
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, line: &[u8]) -> io::Result<()> {
        let mut pending = self.lock();
        if let Some(kind) = pending.failed {
            return Err(kind.into());
        }
        pending.bytes.extend_from_slice(line);
        if pending.bytes.len() >= BATCH { write_out(&mut pending) } else { Ok(()) }
    }

    fn write_every_linger(&self) {
        let mut pending = self.lock();
        while !pending.finished {
            pending = self.finished.wait_timeout(pending, LINGER).unwrap_or_else(PoisonError::into_inner).0;
            // A failure is kept in `failed`, where the next line (or `finish`) reports it.
            let _ = write_out(&mut pending);
        }
    }

    /// Writes what is waiting and stops the writing thread: the fleet has ended (its VMs, and
    /// so their consoles, are gone). Fails if stdout failed at any point.
    pub fn finish(&self) -> io::Result<()> {
        let mut pending = self.lock();
        pending.finished = true;
        self.finished.notify_all();
        write_out(&mut pending)?;
        pending.failed.map_or(Ok(()), |kind| Err(kind.into()))
    }
}

/// Writes the waiting bytes to stdout (under the lock, so batches keep their order).
fn write_out(pending: &mut Pending) -> io::Result<()> {
    if pending.bytes.is_empty() || pending.failed.is_some() {
        return Ok(());
    }
    let mut out = io::stdout().lock();
    let written = out.write_all(&pending.bytes).and_then(|()| out.flush());
    pending.bytes.clear();
    if let Err(e) = &written {
        pending.failed = Some(e.kind());
    }
    written
}

/// A console that writes whole lines to stdout, each prefixed with the VM id, so the output
/// of many VMs interleaves by line and not by byte.
struct Prefixed {
    id: u32,
    line: Vec<u8>,
    out: Arc<Lines>,
}

impl Prefixed {
    fn emit(&mut self) -> io::Result<()> {
        let mut out = format!("[vm {}] ", self.id).into_bytes();
        out.append(&mut self.line);
        if out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        self.out.push(&out)
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

    /// The line reaches stdout within [`LINGER`]; this only reports whether stdout failed.
    fn flush(&mut self) -> io::Result<()> {
        self.out.lock().failed.map_or(Ok(()), |kind| Err(kind.into()))
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
