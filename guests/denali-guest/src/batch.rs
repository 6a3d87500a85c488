//! Formatted output collected in a stack buffer and handed to a sink in as few calls as
//! possible: each call is an exit to the kernel (a guest's OUT) or a system call (the native
//! runtime of `guests/native`, which includes this file by path).

use core::fmt;

pub(crate) struct Batch<F: FnMut(&[u8]) -> fmt::Result> {
    sink: F,
    buf: [u8; 256],
    len: usize,
}

impl<F: FnMut(&[u8]) -> fmt::Result> Batch<F> {
    pub(crate) fn new(sink: F) -> Self {
        Batch { sink, buf: [0; 256], len: 0 }
    }

    /// Hands the buffered bytes to the sink. A long string may be split mid-character across
    /// two flushes; sinks write bytes, not text, so that is harmless.
    pub(crate) fn flush(&mut self) -> fmt::Result {
        let result = (self.sink)(&self.buf[..self.len]);
        self.len = 0;
        result
    }
}

impl<F: FnMut(&[u8]) -> fmt::Result> fmt::Write for Batch<F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.flush()?;
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}
