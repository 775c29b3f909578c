//! Bulk import input: a JSON array or NDJSON of items, read incrementally on the blocking pool and
//! handed out in bounded batches, so memory stays flat however large the input.
//!
//! At most `depth + 2` batches exist at once (the channel's, the one being filled, the one the
//! consumer holds), plus the item being read and a 64 KiB input buffer. An HTTP body becomes a blocking `Read` with
//! `tokio_util::io::SyncIoBridge::new(StreamReader::new(body.into_data_stream().map_err(io::Error::other)))`,
//! created inside the handler so the bridge captures the runtime, then goes to [`spawn_reader`].

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::{self, Deserializer as _, SeqAccess, Visitor};
use serde_json::Value;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonArray,
    Ndjson,
}

/// One item of the input, numbered from 0 in input order. `Err` carries a message for an item
/// that is not valid JSON (NDJSON: that line; the reader goes on with the next line). A line
/// longer than `MAX_ITEM_BYTES` is an `Err` item too, and is skipped without buffering it whole.
#[derive(Debug)]
pub struct Item {
    pub index: u64,
    pub value: Result<Value, String>,
}

/// Longest accepted item (one NDJSON line / one array element), in bytes.
///
/// An array element can only be measured by parsing it, so for arrays the limit is checked after
/// parsing (counting the separator before the element), and an element past
/// [`MAX_ARRAY_ELEMENT_BYTES`] ends the input instead, to bound what parsing it may hold.
pub const MAX_ITEM_BYTES: usize = 1024 * 1024;

/// An array element this long stops the reader with [`End::Failed`]: unlike an NDJSON line it
/// cannot be skipped without parsing, and parsing it builds it in memory.
pub const MAX_ARRAY_ELEMENT_BYTES: usize = 4 * MAX_ITEM_BYTES;

/// Large enough that the per-call overhead of the underlying reader (a body chunk, a syscall)
/// is amortised; small next to the items a batch holds.
const READ_BUFFER: usize = 64 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// How the input ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Read to the end.
    Complete,
    /// The input cannot be read further (a JSON array with a syntax error, a body that is not an
    /// array/NDJSON, an I/O error from the reader); the message says where (byte offset or item
    /// index). Items before it were delivered.
    Failed(String),
}

/// What the reader sends: batches of items (or what `spawn_reader_with` made of each),
/// then how the input ended.
#[derive(Debug)]
pub enum Message<B = Vec<Item>> {
    Batch(B),
    End(End),
}

/// Picks the format from the first non-whitespace byte: `[` is a JSON array, anything else
/// NDJSON. The reader still yields every byte, except that leading whitespace filling a whole
/// buffer is consumed to look past it (neither format gives it meaning).
pub fn sniff<R: BufRead>(reader: &mut R) -> io::Result<Format> {
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(Format::Ndjson);
        }
        if let Some(&first) = buf.iter().find(|b| !b.is_ascii_whitespace()) {
            return Ok(if first == b'[' { Format::JsonArray } else { Format::Ndjson });
        }
        let n = buf.len();
        reader.consume(n);
    }
}

/// Reads `reader` on tokio's blocking pool (spawn_blocking) and sends batches of up to `batch`
/// items (at least 1) over a bounded channel of capacity `depth` (at least 1), so a slow
/// consumer stalls the reader instead of letting items pile up. The last message is the `End`.
/// If the receiver is dropped, the reader stops promptly. Must be called within a tokio runtime.
/// A UTF-8 byte order mark at the start is skipped, as some editors write one.
pub fn spawn_reader<R: Read + Send + 'static>(reader: R, batch: usize, depth: usize) -> mpsc::Receiver<Message> {
    spawn_reader_with(reader, batch, depth, |items| items)
}

/// `spawn_reader`, sending what `prepare` makes of each batch, made on the reader's thread:
/// the consumer finds the next batch ready, not waiting to be prepared.
pub fn spawn_reader_with<R, B, F>(reader: R, batch: usize, depth: usize, prepare: F) -> mpsc::Receiver<Message<B>>
where
    R: Read + Send + 'static,
    B: Send + 'static,
    F: FnMut(Vec<Item>) -> B + Send + 'static,
{
    let (tx, rx) = mpsc::channel(depth.max(1));
    tokio::task::spawn_blocking(move || {
        let mut sink = Sink { tx, prepare, batch: Vec::new(), size: batch.max(1) };
        let mut input = BufReader::with_capacity(READ_BUFFER, reader);
        match read_all(&mut input, &mut sink) {
            Ok(end) => sink.finish(end),
            // Nobody wants the rest. Some more of it is read and dropped all the same: a
            // connection closed with unread input is reset, and the reset would take the
            // answer already sent with it.
            Err(Stopped) => {
                let _ = io::copy(&mut input.take(DRAIN_AFTER_STOP), &mut io::sink());
            }
        }
    });
    rx
}

/// Input read and dropped after the consumer stopped, at most.
const DRAIN_AFTER_STOP: u64 = 16 * 1024 * 1024;

/// Counts the bytes read through it into a shared counter (for a progress display and
/// the import's byte limit), failing the read once more than `limit` bytes have come.
pub struct CountingReader<R> {
    inner: R,
    counter: Arc<AtomicU64>,
    limit: u64,
}

impl<R> CountingReader<R> {
    pub fn new(inner: R, counter: Arc<AtomicU64>) -> CountingReader<R> {
        CountingReader { inner, counter, limit: u64::MAX }
    }

    /// Fails the read that would take the count past `limit`.
    pub fn with_limit(mut self, limit: u64) -> CountingReader<R> {
        self.limit = limit;
        self
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.counter.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.limit {
            return Err(io::Error::other(format!("the input is larger than {} bytes", self.limit)));
        }
        Ok(n)
    }
}

/// The receiver is gone: nobody wants the rest.
struct Stopped;

struct Sink<B, F> {
    tx: mpsc::Sender<Message<B>>,
    prepare: F,
    batch: Vec<Item>,
    size: usize,
}

impl<B, F: FnMut(Vec<Item>) -> B> Sink<B, F> {
    fn push(&mut self, item: Item) -> Result<(), Stopped> {
        self.batch.push(item);
        if self.batch.len() >= self.size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Stopped> {
        if self.batch.is_empty() {
            return Ok(());
        }
        // A caller's huge batch size should not become one huge allocation up front.
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(self.size.min(1024)));
        self.tx.blocking_send(Message::Batch((self.prepare)(full))).map_err(|_| Stopped)
    }

    /// Checked where no item is sent for a while (blank lines, skipping a long line), so a
    /// dropped receiver still stops the reader.
    fn check(&self) -> Result<(), Stopped> {
        if self.tx.is_closed() {
            Err(Stopped)
        } else {
            Ok(())
        }
    }

    fn finish(mut self, end: End) {
        if self.flush().is_ok() {
            let _ = self.tx.blocking_send(Message::End(end));
        }
    }
}

fn read_all<R: Read, B, F: FnMut(Vec<Item>) -> B>(
    reader: &mut BufReader<R>,
    sink: &mut Sink<B, F>,
) -> Result<End, Stopped> {
    let start = loop {
        match reader.fill_buf() {
            Ok(buf) => break if buf.starts_with(UTF8_BOM) { UTF8_BOM.len() } else { 0 },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Ok(End::Failed(format!("reading the input at byte 0: {e}"))),
        }
    };
    reader.consume(start);
    let format = match sniff(reader) {
        Ok(format) => format,
        Err(e) => return Ok(End::Failed(format!("reading the input at byte {start}: {e}"))),
    };
    match format {
        Format::Ndjson => read_ndjson(reader, sink, start as u64),
        Format::JsonArray => read_array(reader, sink, start as u64),
    }
}

enum Line {
    Eof,
    Text,
    TooLong,
}

fn read_ndjson<R: BufRead, B, F: FnMut(Vec<Item>) -> B>(
    reader: &mut R,
    sink: &mut Sink<B, F>,
    mut pos: u64,
) -> Result<End, Stopped> {
    let mut line = Vec::new();
    let mut index = 0;
    let mut line_no = 0;
    loop {
        sink.check()?;
        line_no += 1;
        let value = match read_line(reader, &mut line, &mut pos, sink) {
            Err(e) => return Ok(End::Failed(format!("reading line {line_no} at byte {pos} (item {index}): {e}"))),
            Ok(Line::Eof) => return Ok(End::Complete),
            Ok(Line::TooLong) => Err(format!("line {line_no}: longer than {MAX_ITEM_BYTES} bytes")),
            Ok(Line::Text) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(Line::Text) => parse_line(&line, line_no),
        };
        sink.push(Item { index, value })?;
        index += 1;
    }
}

/// Reads one line into `line` without its `\n` or `\r\n`, never holding more than
/// `MAX_ITEM_BYTES` + 2 bytes of it: a longer line is read past, not kept.
fn read_line<R: BufRead, B, F: FnMut(Vec<Item>) -> B>(
    reader: &mut R,
    line: &mut Vec<u8>,
    pos: &mut u64,
    sink: &Sink<B, F>,
) -> io::Result<Line> {
    const LIMIT: usize = MAX_ITEM_BYTES + 2;
    line.clear();
    // `read_until` finds the newline with std's optimised search; `take` bounds what it keeps.
    let n = reader.by_ref().take(LIMIT as u64).read_until(b'\n', line)?;
    *pos += n as u64;
    if n == 0 {
        return Ok(Line::Eof);
    }
    let ended = line.last() == Some(&b'\n');
    if !ended && n == LIMIT {
        line.clear();
        skip_line(reader, pos, sink)?;
        return Ok(Line::TooLong);
    }
    if ended {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(if line.len() > MAX_ITEM_BYTES { Line::TooLong } else { Line::Text })
}

/// Discards up to and including the next `\n`, one buffer at a time.
fn skip_line<R: BufRead, B, F: FnMut(Vec<Item>) -> B>(
    reader: &mut R,
    pos: &mut u64,
    sink: &Sink<B, F>,
) -> io::Result<()> {
    while sink.check().is_ok() {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(());
        }
        let (used, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        reader.consume(used);
        *pos += used as u64;
        if found {
            return Ok(());
        }
    }
    Ok(())
}

fn parse_line(line: &[u8], line_no: u64) -> Result<Value, String> {
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("line {line_no}: not valid UTF-8 after byte {}", e.valid_up_to()))?;
    serde_json::from_str(text).map_err(|e| {
        // serde_json places the error within the line as "line 1 column N"; say it as the input's line.
        let full = e.to_string();
        let message = full.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())).unwrap_or(&full);
        format!("line {line_no}, column {}: {message}", e.column())
    })
}

/// Where the array parser is, shared between the reader it pulls from and the visitor that
/// measures elements; single-threaded, inside the blocking task.
#[derive(Default)]
struct Position {
    read: Cell<u64>,
    element_start: Cell<Option<u64>>,
    too_long: Cell<bool>,
}

struct Tracked<'a, R> {
    inner: R,
    position: &'a Position,
}

impl<R: Read> Read for Tracked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = self.position.read.get() + n as u64;
        self.position.read.set(read);
        if let Some(start) = self.position.element_start.get() {
            if read - start > MAX_ARRAY_ELEMENT_BYTES as u64 {
                self.position.too_long.set(true);
                return Err(io::Error::other("array element too long"));
            }
        }
        Ok(n)
    }
}

fn read_array<R: BufRead, B, F: FnMut(Vec<Item>) -> B>(
    reader: &mut R,
    sink: &mut Sink<B, F>,
    start: u64,
) -> Result<End, Stopped> {
    let position = Position::default();
    position.read.set(start);
    let mut de = serde_json::Deserializer::from_reader(Tracked { inner: reader, position: &position });
    let mut next = 0;
    let parsed = de.deserialize_seq(Elements { sink, position: &position, next: &mut next });
    let at = position.read.get();
    match parsed {
        Ok(()) => Ok(match de.end() {
            Ok(()) => End::Complete,
            Err(e) => End::Failed(format!("after the array, near byte {at}: {e}")),
        }),
        // The visitor's only way to give up is a dropped receiver, which stays dropped.
        Err(_) if sink.tx.is_closed() => Err(Stopped),
        Err(_) if position.too_long.get() => Ok(End::Failed(format!(
            "item {next}, near byte {at}: longer than {MAX_ARRAY_ELEMENT_BYTES} bytes; the rest of the array is not read"
        ))),
        Err(e) => Ok(End::Failed(format!("item {next}, near byte {at}: {e}"))),
    }
}

struct Elements<'a, B, F> {
    sink: &'a mut Sink<B, F>,
    position: &'a Position,
    next: &'a mut u64,
}

impl<'de, B, F: FnMut(Vec<Item>) -> B> Visitor<'de> for Elements<'_, B, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let stopped = |_: Stopped| de::Error::custom("the receiver is gone");
        loop {
            self.sink.check().map_err(stopped)?;
            let start = self.position.read.get();
            self.position.element_start.set(Some(start));
            let Some(element) = seq.next_element::<Value>()? else { break };
            let len = self.position.read.get() - start;
            let value = if len > MAX_ITEM_BYTES as u64 {
                Err(format!("item {}: longer than {MAX_ITEM_BYTES} bytes", *self.next))
            } else {
                Ok(element)
            };
            self.sink.push(Item { index: *self.next, value }).map_err(stopped)?;
            *self.next += 1;
        }
        self.position.element_start.set(None);
        Ok(())
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
