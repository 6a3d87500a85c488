//! Capture of the frames crossing the switch, in the classic pcap format (tcpdump, Wireshark),
//! written with the `pcap-file` crate.
//!
//! A capture that fails to write stops capturing and keeps the error for the host to report at
//! the end: a full disk on the host must not stop the VMs.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapPacket, PcapWriter};

/// Frames longer than this are cut in the capture (never on the switch); the NIC's limit.
const SNAPLEN: u32 = 65535;

/// A pcap file being written.
pub struct Capture {
    writer: Option<PcapWriter<BufWriter<Box<dyn Write + Send>>>>,
    error: Option<io::Error>,
    frames: u64,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").field("frames", &self.frames).field("error", &self.error).finish()
    }
}

impl Capture {
    /// Creates `path` and writes the pcap header.
    pub fn create(path: &Path) -> io::Result<Capture> {
        Capture::new(Box::new(File::create(path)?))
    }

    /// Writes the pcap header to `sink`.
    pub fn new(sink: Box<dyn Write + Send>) -> io::Result<Capture> {
        let writer = PcapWriter::new(BufWriter::new(sink)).map_err(io::Error::other)?;
        Ok(Capture { writer: Some(writer), error: None, frames: 0 })
    }

    /// Records one frame, stamped with the host's wall-clock time.
    pub fn record(&mut self, frame: &[u8]) {
        let Some(writer) = &mut self.writer else { return };
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let data = &frame[..frame.len().min(SNAPLEN as usize)];
        match writer.write_packet(&PcapPacket::new(stamp, len, data)) {
            Ok(_) => self.frames += 1,
            Err(e) => {
                self.error = Some(io::Error::other(e));
                self.writer = None;
            }
        }
    }

    /// Frames recorded so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flushes and closes the file; reports the first error of the whole capture.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(writer) = self.writer.take() {
            writer.into_writer().flush()?;
        }
        self.error.take().map_or(Ok(()), Err)
    }
}
