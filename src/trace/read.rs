//! Opening a trace file: transparent gzip/zstd, a sniffed head, and a stream of JSON
//! records (JSONL lines, concatenated documents, or the elements of a top-level array).
//!
//! Memory stays bounded by the largest single record, not by the file: JSONL is read a
//! line at a time and big top-level arrays are streamed element by element. A record
//! larger than [`MAX_RECORD_BYTES`] is an error naming its place, never an allocation of
//! that size.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::Path;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value;

/// Bytes sniffed from the start of the (decompressed) file for detection.
pub const HEAD_BYTES: usize = 64 * 1024;
/// One JSON record (a line, a document, an array element) may not be larger than this.
pub const MAX_RECORD_BYTES: u64 = 256 * 1024 * 1024;
/// Files up to this size are read whole and parsed from memory (serde_json is about
/// twice as fast from a slice as from a reader); larger ones are streamed.
pub const IN_MEMORY_BYTES: u64 = 64 * 1024 * 1024;

/// Where a record sits in its file, for error messages people can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pos {
    Line(u64),
    Byte(u64),
    Element(u64),
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pos::Line(n) => write!(f, "line {n}"),
            Pos::Byte(n) => write!(f, "byte {n}"),
            Pos::Element(n) => write!(f, "array element {n}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub value: Value,
    pub pos: Pos,
}

/// A record that could not be read. `fatal` means nothing after it can be read either.
#[derive(Debug, Clone)]
pub struct RecordError {
    pub pos: Pos,
    pub message: String,
    pub fatal: bool,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

/// How the JSON values are laid out in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// One value per line (JSONL / NDJSON).
    Lines,
    /// A top-level array: each element is a record.
    Array,
    /// One document, or several concatenated (pretty-printed console output).
    Documents,
}

/// What the first bytes say before any JSON parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    Json(Container),
    Empty,
    Binary(String),
    Text,
}

pub struct Opened {
    pub compression: Compression,
    pub head: Vec<u8>,
    pub sniff: Sniff,
    /// Size on disk (compressed size for compressed files).
    pub size: u64,
    body: Body,
}

/// The whole file, head included.
enum Body {
    Stream(Box<dyn BufRead + Send>),
    /// An uncompressed file already read whole (to hash it): parsed where it lies.
    Memory(Vec<u8>),
}

impl Opened {
    /// Turn the file into a record stream (consumes the reader).
    pub fn records(self, container: Container) -> Records {
        match self.body {
            Body::Stream(reader) => Records::new(reader, container, self.size, self.compression),
            Body::Memory(bytes) => Records::from_bytes(bytes, container),
        }
    }

    /// The whole (decompressed) file as a byte stream, head included.
    pub fn into_reader(self) -> Box<dyn Read + Send> {
        match self.body {
            Body::Stream(reader) => Box::new(reader),
            Body::Memory(bytes) => Box::new(Cursor::new(bytes)),
        }
    }
}

pub fn open(path: &Path) -> io::Result<Opened> {
    let file = File::open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    open_reader(Box::new(file), size)
}

pub fn open_reader(raw: Box<dyn Read + Send>, size: u64) -> io::Result<Opened> {
    let mut raw = BufReader::with_capacity(256 * 1024, raw);
    let magic = raw.fill_buf()?.get(..4).map(|m| m.to_vec()).unwrap_or_default();
    let (compression, mut reader): (Compression, Box<dyn Read + Send>) = if magic.starts_with(&[0x1f, 0x8b]) {
        (Compression::Gzip, Box::new(flate2::bufread::MultiGzDecoder::new(raw)))
    } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        let decoder = ruzstd::decoding::StreamingDecoder::new(raw)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
        (Compression::Zstd, Box::new(decoder))
    } else {
        (Compression::None, Box::new(raw))
    };
    let mut head = Vec::with_capacity(HEAD_BYTES.min(size.saturating_add(16) as usize));
    (&mut reader).take(HEAD_BYTES as u64).read_to_end(&mut head)?;
    let sniff = sniff(&head);
    let chained = Cursor::new(head.clone()).chain(reader);
    let body = Body::Stream(Box::new(BufReader::with_capacity(256 * 1024, chained)));
    Ok(Opened { compression, head, sniff, size, body })
}

thread_local! {
    /// The buffer the thread's last whole file was read into, kept for its next one: fresh
    /// memory for every file cost the kernel a page fault and a zeroed page per 4 KiB
    /// (`clear_page_erms` was the top symbol of a `mine` profile).
    static FILE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Read a whole file into the thread's reused buffer (see [`open_bytes`]).
pub fn read_whole(path: &std::path::Path) -> io::Result<Vec<u8>> {
    let mut buf = FILE_BUFFER.take();
    buf.clear();
    File::open(path)?.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Give a whole-file buffer back for the thread's next file.
fn recycle(buf: Vec<u8>) {
    if buf.capacity() as u64 <= IN_MEMORY_BYTES {
        FILE_BUFFER.set(buf);
    }
}

/// [`open_reader`] for a file already in memory. Uncompressed bytes are not copied
/// through readers again: they are parsed in place.
pub fn open_bytes(bytes: Vec<u8>) -> io::Result<Opened> {
    let size = bytes.len() as u64;
    if bytes.starts_with(&[0x1f, 0x8b]) || bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return open_reader(Box::new(Cursor::new(bytes)), size);
    }
    let head = bytes[..bytes.len().min(HEAD_BYTES)].to_vec();
    let sniff = sniff(&head);
    Ok(Opened { compression: Compression::None, head, sniff, size, body: Body::Memory(bytes) })
}

/// Classify the head bytes: JSON and its container, empty, binary, or text.
pub fn sniff(head: &[u8]) -> Sniff {
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let Some(first) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Sniff::Empty;
    };
    if body.len() >= 5 && is_length_prefixed_proto(body) {
        return Sniff::Binary("length-prefixed protobuf (OTLP `format: proto`)".into());
    }
    if body[..body.len().min(8192)].contains(&0) {
        return Sniff::Binary("binary data (NUL bytes)".into());
    }
    let json_start = matches!(body[first], b'{' | b'[');
    if let Err(e) = std::str::from_utf8(body) {
        // A multi-byte character cut at the end of the head is fine, and in a file that
        // starts as JSON a bad byte is one bad record (reported with its line), not a
        // binary file.
        if e.error_len().is_some() && !json_start {
            return Sniff::Binary(format!("invalid UTF-8 at byte {}", e.valid_up_to()));
        }
    }
    match body[first] {
        b'[' => Sniff::Json(Container::Array),
        b'{' => {
            // JSONL when the first line holds one complete value and something follows it.
            let rest = &body[first..];
            match memchr::memchr(b'\n', rest) {
                Some(nl) if first_line_is_a_value(&rest[..nl]) => Sniff::Json(Container::Lines),
                _ => Sniff::Json(Container::Documents),
            }
        }
        _ => Sniff::Text,
    }
}

/// A line holding one complete JSON value (bad UTF-8 inside strings forgiven: it is that
/// line's problem, reported when it is read).
fn first_line_is_a_value(line: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
        || serde_json::from_str::<serde::de::IgnoredAny>(&String::from_utf8_lossy(line)).is_ok()
}

fn is_length_prefixed_proto(body: &[u8]) -> bool {
    let len = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
    body[4] == 0x0a && len > 0 && len < (1 << 30) && body[0] == 0
}

/// A pull stream of records with look-ahead for detection.
pub struct Records {
    source: Source,
    peeked: VecDeque<Result<Record, RecordError>>,
    done: bool,
}

enum Source {
    Lines(LineReader),
    Values(std::vec::IntoIter<Result<Record, RecordError>>),
    Channel(std::sync::mpsc::Receiver<Result<Record, RecordError>>),
}

impl Records {
    fn new(mut reader: Box<dyn BufRead + Send>, container: Container, size: u64, compression: Compression) -> Records {
        let small = compression == Compression::None && size <= IN_MEMORY_BYTES;
        let source = match container {
            Container::Lines => Source::Lines(LineReader { reader, line_no: 0, buf: Vec::new() }),
            Container::Array if !small => Source::Channel(stream_array(reader)),
            Container::Array | Container::Documents => {
                let mut bytes = Vec::new();
                if compression == Compression::None {
                    bytes.reserve_exact(size.min(MAX_RECORD_BYTES + 1) as usize);
                }
                match read_bounded(&mut reader, &mut bytes) {
                    Err(e) => Source::Values(
                        vec![Err(RecordError {
                            pos: Pos::Byte(bytes.len() as u64),
                            message: format!("read error: {e}"),
                            fatal: true,
                        })]
                        .into_iter(),
                    ),
                    Ok(_) => return Records::from_bytes(bytes, container),
                }
            }
        };
        Records { source, peeked: VecDeque::new(), done: false }
    }

    /// Records of a whole file's bytes.
    fn from_bytes(bytes: Vec<u8>, container: Container) -> Records {
        let items = match container {
            Container::Lines => {
                let lines = LineReader { reader: Box::new(Cursor::new(bytes)), line_no: 0, buf: Vec::new() };
                return Records { source: Source::Lines(lines), peeked: VecDeque::new(), done: false };
            }
            _ if bytes.len() as u64 > MAX_RECORD_BYTES => vec![Err(RecordError {
                pos: Pos::Byte(0),
                message: format!(
                    "a single JSON document over the {} MiB record limit; split it into JSONL",
                    MAX_RECORD_BYTES >> 20
                ),
                fatal: true,
            })],
            Container::Documents if looks_like_lines(&bytes) => return Records::from_bytes(bytes, Container::Lines),
            _ => {
                let items = parse_documents(&bytes, container);
                recycle(bytes);
                items
            }
        };
        Records { source: Source::Values(items.into_iter()), peeked: VecDeque::new(), done: false }
    }

    /// The complete records of a file's head (see [`HEAD_BYTES`]): enough to tell what the
    /// file is without reading it all. A record cut at the end of the head is an error item.
    pub fn from_head(head: &[u8], container: Container) -> Records {
        Records::from_bytes(head.to_vec(), container)
    }

    /// Records from values already in memory (tests, nested containers).
    pub fn from_values(values: Vec<Value>) -> Records {
        let items: Vec<_> = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| Ok(Record { value, pos: Pos::Element(i as u64) }))
            .collect();
        Records { source: Source::Values(items.into_iter()), peeked: VecDeque::new(), done: false }
    }

    fn pull(&mut self) -> Option<Result<Record, RecordError>> {
        if self.done {
            return None;
        }
        let item = match &mut self.source {
            Source::Lines(lines) => lines.next(),
            Source::Values(values) => values.next(),
            Source::Channel(rx) => rx.recv().ok(),
        };
        match &item {
            None => self.done = true,
            Some(Err(e)) if e.fatal => self.done = true,
            _ => {}
        }
        item
    }

    /// Look at up to `n` upcoming successfully-read records without consuming them.
    pub fn peek(&mut self, n: usize) -> Vec<&Record> {
        while self.peeked.iter().filter(|r| r.is_ok()).count() < n {
            match self.pull() {
                Some(item) => {
                    let fatal = matches!(&item, Err(e) if e.fatal);
                    self.peeked.push_back(item);
                    if fatal {
                        break;
                    }
                }
                None => break,
            }
        }
        self.peeked.iter().filter_map(|r| r.as_ref().ok()).take(n).collect()
    }
}

impl Iterator for Records {
    type Item = Result<Record, RecordError>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.peeked.pop_front() {
            return Some(item);
        }
        self.pull()
    }
}

/// Append `chunk` to `buf`. Past 32 MiB the buffer is sized for the whole record limit at
/// once: pages never written cost no memory, while doubling to the limit would hold the
/// old buffers too (mimalloc's `realloc` copies where glibc's remaps, and keeps what it
/// frees for a while), about 2.4× the record at the peak.
fn push_bounded(buf: &mut Vec<u8>, chunk: &[u8]) {
    const JUMP: usize = 32 << 20;
    let limit = MAX_RECORD_BYTES as usize + 1;
    let needed = buf.len() + chunk.len();
    if needed > buf.capacity() && needed > JUMP && buf.capacity() < limit {
        buf.reserve_exact(limit.max(needed) - buf.len());
    }
    buf.extend_from_slice(chunk);
}

/// Read `reader` into `buf` up to `MAX_RECORD_BYTES + 1` bytes (one more than the limit, so
/// the caller can tell a record over the limit).
fn read_bounded(reader: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<()> {
    let limit = MAX_RECORD_BYTES as usize + 1;
    while buf.len() < limit {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        let n = available.len().min(limit - buf.len());
        push_bounded(buf, &available[..n]);
        reader.consume(n);
    }
    Ok(())
}

struct LineReader {
    reader: Box<dyn BufRead + Send>,
    line_no: u64,
    buf: Vec<u8>,
}

impl LineReader {
    /// Read one line into `buf` without holding more than MAX_RECORD_BYTES of it.
    /// Returns Ok(false) at EOF, Ok(true) for a line, Err(too long) after skipping it.
    fn read_line(&mut self) -> io::Result<Option<bool>> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(if any { Some(!too_long) } else { None });
            }
            any = true;
            let (chunk, found) = match memchr::memchr(b'\n', available) {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            if !too_long {
                if (self.buf.len() + chunk.len()) as u64 > MAX_RECORD_BYTES {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    push_bounded(&mut self.buf, chunk);
                }
            }
            let consumed = found.unwrap_or(available.len());
            self.reader.consume(consumed);
            if found.is_some() {
                return Ok(Some(!too_long));
            }
        }
    }
}

impl Iterator for LineReader {
    type Item = Result<Record, RecordError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line_no += 1;
            let pos = Pos::Line(self.line_no);
            match self.read_line() {
                Ok(None) => return None,
                Err(e) => {
                    return Some(Err(RecordError { pos, message: format!("read error: {e}"), fatal: true }));
                }
                Ok(Some(false)) => {
                    return Some(Err(RecordError {
                        pos,
                        message: format!("line longer than the {} MiB record limit, skipped", MAX_RECORD_BYTES >> 20),
                        fatal: false,
                    }));
                }
                Ok(Some(true)) => {}
            }
            let line = trim_line(&self.buf);
            if line.is_empty() {
                continue;
            }
            return Some(match parse_value(line) {
                Ok(value) => Ok(Record { value, pos }),
                Err(e) => Err(RecordError { pos, message: describe_json_error(&e), fatal: false }),
            });
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let start = line.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(line.len());
    let end = line.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &line[start..end.max(start)]
}

/// JSONL whose first line was longer than the sniffed head: the first line is one
/// complete value and another value starts on the next line.
fn looks_like_lines(bytes: &[u8]) -> bool {
    let Some(nl) = memchr::memchr(b'\n', bytes) else { return false };
    let rest = &bytes[nl + 1..];
    let next = rest.iter().position(|b| !b.is_ascii_whitespace());
    next.is_some_and(|i| matches!(rest[i], b'{' | b'[')) && first_line_is_a_value(trim_line(&bytes[..nl]))
}

/// Strict JSON first; on failure, retry with the lenient rewrite of Python's bare
/// `NaN`/`Infinity` (seen in real research dumps) before giving up.
fn parse_value(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(first) => {
            if let Some(fixed) = lenient_rewrite(bytes) {
                if let Ok(v) = serde_json::from_slice(&fixed) {
                    return Ok(v);
                }
            }
            Err(first)
        }
    }
}

pub fn describe_json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "truncated JSON",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected JSON",
        serde_json::error::Category::Io => "read error",
    };
    let msg = e.to_string();
    // serde_json appends " at line L column C"; keep the reason, we add the place.
    let reason = msg.split(" at line ").next().unwrap_or(&msg);
    // serde_json's own words do not say what the limit is.
    let reason = if reason == "recursion limit exceeded" {
        "recursion limit exceeded: nesting deeper than 128 levels"
    } else {
        reason
    };
    if e.line() > 0 {
        format!("{what} ({reason}) at line {} column {}", e.line(), e.column())
    } else {
        format!("{what} ({reason})")
    }
}

/// Replace bare `NaN`, `Infinity`, `-Infinity` outside strings with `null` and drop
/// trailing commas. Returns None when there was nothing to rewrite.
fn lenient_rewrite(bytes: &[u8]) -> Option<Vec<u8>> {
    if memchr::memmem::find(bytes, b"NaN").is_none()
        && memchr::memmem::find(bytes, b"Infinity").is_none()
        && memchr::memchr(b',', bytes).is_none()
    {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    let mut changed = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        let rest = &bytes[i..];
        let token = [&b"-Infinity"[..], b"Infinity", b"NaN"].into_iter().find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.extend_from_slice(b"null");
            i += t.len();
            changed = true;
            continue;
        }
        if b == b',' {
            // A trailing comma before `}` or `]` (hand-edited JSON).
            let next = rest[1..].iter().find(|c| !c.is_ascii_whitespace());
            if matches!(next, Some(b'}' | b']')) {
                i += 1;
                changed = true;
                continue;
            }
        }
        if b == b'"' {
            in_string = true;
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

/// Strict JSON first. Only when that meets a syntax error is the lenient rewrite (Python's
/// bare `NaN`, trailing commas…) tried: a pre-pass to find out would read every byte twice.
fn parse_documents(bytes: &[u8], container: Container) -> Vec<Result<Record, RecordError>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let (out, syntax_error) = parse_strict(bytes, container);
    if syntax_error {
        if let Some(fixed) = lenient_rewrite(bytes) {
            return parse_strict(&fixed, container).0;
        }
    }
    out
}

/// The records of `bytes`, and whether reading stopped at a syntax error.
fn parse_strict(bytes: &[u8], container: Container) -> (Vec<Result<Record, RecordError>>, bool) {
    let mut out = Vec::new();
    let syntax = |e: &serde_json::Error| e.classify() == serde_json::error::Category::Syntax;
    // The common case, one well-formed value, goes through sonic-rs's SIMD scanner; anything
    // else (several documents, an error to report) through serde_json, whose positions and
    // messages the records carry.
    // A whole file that is one value: an array's elements are the records of an array file.
    let whole = |value: Value| match (container, value) {
        (Container::Array, Value::Array(items)) => {
            items.into_iter().enumerate().map(|(i, value)| Ok(Record { value, pos: Pos::Element(i as u64) })).collect()
        }
        (_, value) => vec![Ok(Record { value, pos: Pos::Byte(0) })],
    };
    if let Ok(value) = sonic_rs::from_slice::<Value>(bytes) {
        return (whole(value), false);
    }
    if container == Container::Array {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => return (whole(value), false),
            Err(e) => {
                // Keep the complete elements before the problem, as the streamed path does.
                let mut de = serde_json::Deserializer::from_slice(bytes);
                let _ = CollectElements { out: &mut out }.deserialize(&mut de);
                out.push(Err(RecordError {
                    pos: Pos::Byte(byte_offset(bytes, &e)),
                    message: describe_json_error(&e),
                    fatal: true,
                }));
                return (out, syntax(&e));
            }
        }
    }
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(value)) => out.push(Ok(Record { value, pos: Pos::Byte(start as u64) })),
            Some(Err(e)) => {
                out.push(Err(RecordError {
                    pos: Pos::Byte(byte_offset(bytes, &e)),
                    message: describe_json_error(&e),
                    fatal: true,
                }));
                return (out, syntax(&e));
            }
        }
    }
    (out, false)
}

/// Byte offset of a serde_json error from its line/column.
fn byte_offset(bytes: &[u8], e: &serde_json::Error) -> u64 {
    let (line, column) = (e.line(), e.column());
    if line == 0 {
        return 0;
    }
    let mut offset = 0usize;
    for _ in 1..line {
        match memchr::memchr(b'\n', &bytes[offset..]) {
            Some(i) => offset += i + 1,
            None => break,
        }
    }
    (offset + column.saturating_sub(1)) as u64
}

/// Stream the elements of a large top-level array from a reader, on a thread, through a
/// bounded channel, so only a few elements are in memory at once.
fn stream_array(reader: Box<dyn BufRead + Send>) -> std::sync::mpsc::Receiver<Result<Record, RecordError>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(8);
    std::thread::spawn(move || {
        let mut de = serde_json::Deserializer::from_reader(reader);
        let seed = ElementSink { tx: tx.clone() };
        if let Err(e) = seed.deserialize(&mut de) {
            let _ = tx.send(Err(RecordError {
                pos: Pos::Line(e.line() as u64),
                message: describe_json_error(&e),
                fatal: true,
            }));
        }
    });
    rx
}

struct ElementSink {
    tx: std::sync::mpsc::SyncSender<Result<Record, RecordError>>,
}

impl<'de> DeserializeSeed<'de> for ElementSink {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ElementSink {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0u64;
        while let Some(value) = seq.next_element::<Value>()? {
            if self.tx.send(Ok(Record { value, pos: Pos::Element(i) })).is_err() {
                // The consumer stopped reading; drain nothing more.
                return Ok(());
            }
            i += 1;
        }
        Ok(())
    }
}

/// Collects the elements of a top-level array until the first error.
struct CollectElements<'a> {
    out: &'a mut Vec<Result<Record, RecordError>>,
}

impl<'de> DeserializeSeed<'de> for CollectElements<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CollectElements<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0u64;
        while let Some(value) = seq.next_element::<Value>()? {
            self.out.push(Ok(Record { value, pos: Pos::Element(i) }));
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(bytes: &[u8]) -> (Sniff, Vec<Result<Record, RecordError>>) {
        let opened = open_reader(Box::new(Cursor::new(bytes.to_vec())), bytes.len() as u64).unwrap();
        let sniff = opened.sniff.clone();
        match sniff.clone() {
            Sniff::Json(c) => (sniff, opened.records(c).collect()),
            _ => (sniff, vec![]),
        }
    }

    #[test]
    fn jsonl_with_a_broken_line_goes_on() {
        let (sniff, recs) = records(b"{\"a\":1}\n{\"a\":\n\n{\"a\":3}\n");
        assert_eq!(sniff, Sniff::Json(Container::Lines));
        assert_eq!(recs.len(), 3);
        assert!(recs[0].is_ok());
        let err = recs[1].as_ref().unwrap_err();
        assert_eq!(err.pos, Pos::Line(2));
        assert!(!err.fatal);
        assert_eq!(recs[2].as_ref().unwrap().pos, Pos::Line(4));
    }

    #[test]
    fn concatenated_pretty_documents() {
        let (sniff, recs) = records(b"{\n  \"a\": 1\n}\n{\n  \"a\": 2\n}\n");
        assert_eq!(sniff, Sniff::Json(Container::Documents));
        assert_eq!(recs.len(), 2);
        assert!(recs.iter().all(|r| r.is_ok()));
    }

    #[test]
    fn bare_nan_is_read_as_null() {
        let (_, recs) = records(b"[{\"x\": NaN, \"s\": \"NaN stays\"}]");
        let v = &recs[0].as_ref().unwrap().value;
        assert_eq!(v["x"], Value::Null);
        assert_eq!(v["s"], "NaN stays");
    }

    #[test]
    fn trailing_commas_are_forgiven() {
        let (_, recs) = records(b"{\"a\": [1, 2,], \"s\": \",]\",\n}");
        let v = &recs[0].as_ref().unwrap().value;
        assert_eq!(v["a"], serde_json::json!([1, 2]));
        assert_eq!(v["s"], ",]");
    }

    #[test]
    fn truncated_document_names_the_place() {
        let (_, recs) = records(b"{\"a\": [1, 2,");
        let err = recs[0].as_ref().unwrap_err();
        assert!(err.message.contains("truncated"), "{}", err.message);
        assert!(err.fatal);
    }

    #[test]
    fn gzip_is_transparent() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"{\"a\":1}\n{\"a\":2}\n").unwrap();
        let gz = enc.finish().unwrap();
        let opened = open_reader(Box::new(Cursor::new(gz.clone())), gz.len() as u64).unwrap();
        assert_eq!(opened.compression, Compression::Gzip);
        assert_eq!(opened.sniff, Sniff::Json(Container::Lines));
        assert_eq!(opened.records(Container::Lines).count(), 2);
    }

    #[test]
    fn sniffs_binary_and_text_and_empty() {
        assert_eq!(sniff(b"   \n"), Sniff::Empty);
        assert_eq!(sniff(b"# README\nhello"), Sniff::Text);
        assert!(matches!(sniff(b"\x00\x01\x02\x03garbage"), Sniff::Binary(_)));
        assert!(matches!(sniff(b"ab\xff\xfecd"), Sniff::Binary(_)));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let (_, recs) = records(deep.as_bytes());
        assert!(recs[0].is_err());
    }

    #[test]
    fn large_array_streams_through_the_channel() {
        let body = format!("[{}]", (0..1000).map(|i| format!("{{\"i\":{i}}}")).collect::<Vec<_>>().join(","));
        let opened = open_reader(Box::new(Cursor::new(body.clone().into_bytes())), u64::MAX).unwrap();
        let recs: Vec<_> = opened.records(Container::Array).collect();
        assert_eq!(recs.len(), 1000);
        assert_eq!(recs[999].as_ref().unwrap().value["i"], 999);
    }
}
