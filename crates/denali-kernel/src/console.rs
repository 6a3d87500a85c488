//! The console device: a byte sink the guest writes through `CONSOLE_PUTC` and
//! `CONSOLE_WRITE`. Output is buffered and flushed when the VM idles or stops, so a chatty
//! guest does not cost a host write per byte. The buffer exists only while it holds output, so
//! the many quiet VMs of a fleet pay nothing for it.

use std::io::{self, Write};

/// Buffered bytes that make a host write even before the next flush.
const FLUSH_AT: usize = 8192;

pub(crate) struct Console {
    sink: Box<dyn Write + Send>,
    buffer: Vec<u8>,
}

impl Console {
    pub(crate) fn new(sink: Box<dyn Write + Send>) -> Console {
        Console { sink, buffer: Vec::new() }
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buffer.len() + bytes.len() > FLUSH_AT {
            self.write_out()?;
            if bytes.len() >= FLUSH_AT {
                return self.sink.write_all(bytes);
            }
        }
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.sink.flush()
    }

    /// Hands the buffer to the sink and frees it.
    fn write_out(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        self.sink.write_all(&buffer)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        // What a VM wrote last reaches its sink even when nobody flushed (as BufWriter did).
        let _ = self.flush();
    }
}
