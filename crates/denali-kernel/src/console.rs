//! The console device: a byte sink the guest writes through `CONSOLE_PUTC` and
//! `CONSOLE_WRITE`. Output is buffered and flushed when the VM stops, so a chatty guest does
//! not cost a host write per byte.

use std::io::{self, BufWriter, Write};

pub(crate) struct Console {
    sink: BufWriter<Box<dyn Write>>,
}

impl Console {
    pub(crate) fn new(sink: Box<dyn Write>) -> Console {
        Console { sink: BufWriter::new(sink) }
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sink.write_all(bytes)
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}
