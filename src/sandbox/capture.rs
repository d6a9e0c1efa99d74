//! Bounded capture of a child's stdout or stderr: the first and last bytes are kept, the
//! middle is counted and dropped, so a harness printing gigabytes never costs more than
//! the cap in memory.

use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Notify, watch};

/// What was kept of one output stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Captured {
    /// The first bytes, up to half the cap.
    pub head: Vec<u8>,
    /// The last bytes after `head`, up to half the cap. When nothing was dropped, `head`
    /// followed by `tail` is the whole stream.
    pub tail: Vec<u8>,
    /// Every byte the child wrote, kept or not.
    pub total_bytes: u64,
    /// True when bytes between `head` and `tail` were dropped.
    pub truncated: bool,
}

impl Captured {
    /// The kept bytes; when truncated, a marker line stands where the middle was.
    pub fn bytes(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.head.len() + self.tail.len() + 64);
        all.extend_from_slice(&self.head);
        if self.truncated {
            let dropped = self.total_bytes - (self.head.len() + self.tail.len()) as u64;
            all.extend_from_slice(format!("\n[autoharness: {dropped} bytes cut]\n").as_bytes());
        }
        all.extend_from_slice(&self.tail);
        all
    }

    /// The kept bytes as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// Keeps a head and a ring buffer for the tail, each at most `cap / 2` bytes.
pub(crate) struct Capture {
    head: Vec<u8>,
    head_cap: usize,
    ring: Vec<u8>,
    ring_cap: usize,
    /// Next write position in `ring` once it is full.
    ring_pos: usize,
    total_bytes: u64,
}

impl Capture {
    pub(crate) fn new(cap: usize) -> Self {
        let head_cap = cap.div_ceil(2);
        let ring_cap = cap - head_cap;
        Capture { head: Vec::new(), head_cap, ring: Vec::new(), ring_cap, ring_pos: 0, total_bytes: 0 }
    }

    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        self.total_bytes += bytes.len() as u64;
        if self.head.len() < self.head_cap {
            let take = bytes.len().min(self.head_cap - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if self.ring_cap == 0 || bytes.is_empty() {
            return;
        }
        // Only the last `ring_cap` bytes of this chunk can survive.
        if bytes.len() > self.ring_cap {
            bytes = &bytes[bytes.len() - self.ring_cap..];
        }
        if self.ring.len() < self.ring_cap {
            let take = bytes.len().min(self.ring_cap - self.ring.len());
            self.ring.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        for &byte in bytes {
            self.ring[self.ring_pos] = byte;
            self.ring_pos = (self.ring_pos + 1) % self.ring_cap;
        }
    }

    pub(crate) fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub(crate) fn finish(mut self) -> Captured {
        self.ring.rotate_left(self.ring_pos);
        let kept = (self.head.len() + self.ring.len()) as u64;
        Captured { head: self.head, tail: self.ring, total_bytes: self.total_bytes, truncated: kept < self.total_bytes }
    }
}

/// Read `reader` to its end into a capture of `cap` bytes. Once more than `flood_bytes`
/// have arrived, `flood` is notified (the caller kills the trial) and reading goes on,
/// discarding, so the child never blocks on a full pipe before the kill lands. Reading
/// ends early, with what was read, when `stop` turns true (a process out of reach holds
/// the pipe open).
pub(crate) async fn read_capped<R: AsyncRead + Unpin>(
    mut reader: R,
    cap: usize,
    flood_bytes: u64,
    flood: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> Captured {
    let mut capture = Capture::new(cap);
    let mut buf = vec![0u8; 64 * 1024];
    let mut flooded = false;
    loop {
        let read = tokio::select! {
            read = reader.read(&mut buf) => read,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        match read {
            Ok(0) => break,
            Ok(n) => {
                crate::crash::point("trial_output");
                if flooded {
                    capture.total_bytes += n as u64;
                    continue;
                }
                capture.push(&buf[..n]);
                if capture.total_bytes() > flood_bytes {
                    flooded = true;
                    flood.notify_one();
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    capture.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cap: usize, chunks: &[&[u8]], head: &[u8], tail: &[u8], truncated: bool) {
        let mut capture = Capture::new(cap);
        for chunk in chunks {
            capture.push(chunk);
        }
        let captured = capture.finish();
        assert_eq!(captured.head, head, "head");
        assert_eq!(captured.tail, tail, "tail");
        assert_eq!(captured.truncated, truncated);
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        assert_eq!(captured.total_bytes, total as u64);
    }

    #[test]
    fn sandbox_capture_keeps_head_and_tail() {
        check(8, &[b"abc"], b"abc", b"", false);
        check(8, &[b"abcdefgh"], b"abcd", b"efgh", false);
        check(8, &[b"abcdefghij"], b"abcd", b"ghij", true);
        check(8, &[b"ab", b"cd", b"ef", b"gh", b"ij", b"k"], b"abcd", b"hijk", true);
        check(8, &[b"abcde", b"fghijklmnop", b"q"], b"abcd", b"nopq", true);
        check(7, &[b"abcdefghij"], b"abcd", b"hij", true);
        check(0, &[b"abc"], b"", b"", true);
    }

    #[test]
    fn sandbox_capture_marks_the_cut() {
        let mut capture = Capture::new(4);
        capture.push(b"0123456789");
        let captured = capture.finish();
        assert_eq!(captured.text(), "01\n[autoharness: 6 bytes cut]\n89");
    }
}
