//! Bulk import input: a JSON array or NDJSON of items, read incrementally on the blocking pool and
//! handed out in bounded batches, so memory stays flat however large the input.
//!
//! At most `depth + 2` batches exist at once (the channel's, the one being filled, the one the
//! consumer holds), plus one item's text. An HTTP body becomes a blocking `Read` with
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

#[derive(Debug)]
pub enum Message {
    Batch(Vec<Item>),
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
    let (tx, rx) = mpsc::channel(depth.max(1));
    tokio::task::spawn_blocking(move || {
        let mut sink = Sink { tx, batch: Vec::new(), size: batch.max(1) };
        if let Ok(end) = read_all(reader, &mut sink) {
            sink.finish(end);
        }
    });
    rx
}

/// Counts the bytes read through it into a shared counter, for a progress display.
pub struct CountingReader<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    pub fn new(inner: R, counter: Arc<AtomicU64>) -> CountingReader<R> {
        CountingReader { inner, counter }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The receiver is gone: nobody wants the rest.
struct Stopped;

struct Sink {
    tx: mpsc::Sender<Message>,
    batch: Vec<Item>,
    size: usize,
}

impl Sink {
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
        self.tx.blocking_send(Message::Batch(full)).map_err(|_| Stopped)
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

fn read_all<R: Read>(reader: R, sink: &mut Sink) -> Result<End, Stopped> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let start = loop {
        match reader.fill_buf() {
            Ok(buf) => break if buf.starts_with(UTF8_BOM) { UTF8_BOM.len() } else { 0 },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Ok(End::Failed(format!("reading the input at byte 0: {e}"))),
        }
    };
    reader.consume(start);
    let format = match sniff(&mut reader) {
        Ok(format) => format,
        Err(e) => return Ok(End::Failed(format!("reading the input at byte {start}: {e}"))),
    };
    match format {
        Format::Ndjson => read_ndjson(&mut reader, sink, start as u64),
        Format::JsonArray => read_array(&mut reader, sink, start as u64),
    }
}

enum Line {
    Eof,
    Text,
    TooLong,
}

fn read_ndjson<R: BufRead>(reader: &mut R, sink: &mut Sink, mut pos: u64) -> Result<End, Stopped> {
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
fn read_line<R: BufRead>(reader: &mut R, line: &mut Vec<u8>, pos: &mut u64, sink: &Sink) -> io::Result<Line> {
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
fn skip_line<R: BufRead>(reader: &mut R, pos: &mut u64, sink: &Sink) -> io::Result<()> {
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

fn read_array<R: BufRead>(reader: &mut R, sink: &mut Sink, start: u64) -> Result<End, Stopped> {
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

struct Elements<'a> {
    sink: &'a mut Sink,
    position: &'a Position,
    next: &'a mut u64,
}

impl<'de> Visitor<'de> for Elements<'_> {
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
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    async fn collect<R: Read + Send + 'static>(reader: R, batch: usize) -> (Vec<Item>, End, Vec<usize>) {
        let mut rx = spawn_reader(reader, batch, 2);
        let (mut items, mut sizes) = (Vec::new(), Vec::new());
        loop {
            match rx.recv().await.expect("the reader ends with End") {
                Message::Batch(b) => {
                    assert!(!b.is_empty() && b.len() <= batch.max(1));
                    sizes.push(b.len());
                    items.extend(b);
                }
                Message::End(end) => {
                    assert!(rx.recv().await.is_none(), "End is the last message");
                    return (items, end, sizes);
                }
            }
        }
    }

    async fn read_str(input: &str) -> (Vec<Item>, End) {
        let (items, end, _) = collect(Cursor::new(input.as_bytes().to_vec()), 3).await;
        (items, end)
    }

    fn ok(item: &Item) -> &Value {
        item.value.as_ref().expect("a valid item")
    }

    fn err(item: &Item) -> &str {
        item.value.as_ref().expect_err("an error item")
    }

    fn indexes(items: &[Item]) -> Vec<u64> {
        items.iter().map(|i| i.index).collect()
    }

    #[test]
    fn sniff_peeks_without_consuming() {
        for (input, format) in [(" \n [1]", Format::JsonArray), ("{\"a\":1}", Format::Ndjson), ("", Format::Ndjson)] {
            let mut reader = BufReader::new(input.as_bytes());
            assert_eq!(sniff(&mut reader).unwrap(), format);
            let mut rest = String::new();
            reader.read_to_string(&mut rest).unwrap();
            assert_eq!(rest, input);
        }
    }

    #[tokio::test]
    async fn ndjson_items_in_batches() {
        let input: String = (0..5).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        let (items, end, sizes) = collect(Cursor::new(input.into_bytes()), 2).await;
        assert_eq!(end, End::Complete);
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(indexes(&items), [0, 1, 2, 3, 4]);
        assert_eq!(ok(&items[3])["n"], 3);
        // A batch size of 0 means 1 rather than a stuck reader.
        let (_, _, sizes) = collect(Cursor::new(b"1\n2\n".to_vec()), 0).await;
        assert_eq!(sizes, [1, 1]);
    }

    #[tokio::test]
    async fn ndjson_crlf_blank_lines_and_last_line_without_newline() {
        let (items, end) = read_str("\r\n{\"a\":1}\r\n  \t\r\n\n{\"a\":2}\r\n\r\n{\"a\":3}").await;
        assert_eq!(end, End::Complete);
        assert_eq!(indexes(&items), [0, 1, 2]);
        assert_eq!(items.iter().map(|i| ok(i)["a"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[tokio::test]
    async fn ndjson_bad_line_is_an_error_item_and_reading_goes_on() {
        let (items, end) = read_str("{\"a\":1}\n\n{\"a\":\n[1,2]\n\"text\"\n").await;
        assert_eq!(end, End::Complete);
        assert_eq!(indexes(&items), [0, 1, 2, 3]);
        assert!(err(&items[1]).starts_with("line 3, column 5: "), "{}", err(&items[1]));
        assert_eq!(ok(&items[2]), &serde_json::json!([1, 2]));
        assert_eq!(ok(&items[3]), "text");
    }

    #[tokio::test]
    async fn ndjson_invalid_utf8_is_an_error_item() {
        let (items, end, _) = collect(Cursor::new(b"{\"a\":\"\xff\"}\n{\"a\":1}\n".to_vec()), 10).await;
        assert_eq!(end, End::Complete);
        assert_eq!(err(&items[0]), "line 1: not valid UTF-8 after byte 6");
        assert_eq!(ok(&items[1])["a"], 1);
    }

    #[tokio::test]
    async fn ndjson_overlong_line_is_skipped() {
        let at_limit = format!("\"{}\"", "y".repeat(MAX_ITEM_BYTES - 2));
        let mut input = b"{\"a\":1}\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * MAX_ITEM_BYTES + 5));
        input.extend(b"\n{\"a\":2}\n");
        input.extend(format!("{at_limit}\r\n{at_limit}x\n{{\"a\":3}}").as_bytes());
        let (items, end, _) = collect(Cursor::new(input), 10).await;
        assert_eq!(end, End::Complete);
        assert_eq!(indexes(&items), [0, 1, 2, 3, 4, 5]);
        assert_eq!(err(&items[1]), format!("line 2: longer than {MAX_ITEM_BYTES} bytes"));
        assert_eq!(ok(&items[2])["a"], 2);
        assert_eq!(ok(&items[3]).as_str().map(str::len), Some(MAX_ITEM_BYTES - 2));
        assert_eq!(err(&items[4]), format!("line 5: longer than {MAX_ITEM_BYTES} bytes"));
        assert_eq!(ok(&items[5])["a"], 3);
    }

    #[tokio::test]
    async fn empty_input_is_complete_with_no_items() {
        for input in ["", " \n\r\n\t "] {
            let (items, end) = read_str(input).await;
            assert!(items.is_empty());
            assert_eq!(end, End::Complete);
        }
    }

    #[tokio::test]
    async fn byte_order_mark_is_skipped() {
        let (items, end) = read_str("\u{feff}{\"a\":1}\n").await;
        assert_eq!((items.len(), end), (1, End::Complete));
        let (items, end) = read_str("\u{feff}[1,2]").await;
        assert_eq!((items.len(), end), (2, End::Complete));
    }

    #[tokio::test]
    async fn array_items_in_order() {
        let (items, end) = read_str(" [\n  {\"a\": 1},\n  {\"a\": {\"b\": [2]}},\n  3, \"four\", null\n]\n\t ").await;
        assert_eq!(end, End::Complete);
        assert_eq!(indexes(&items), [0, 1, 2, 3, 4]);
        assert_eq!(ok(&items[1])["a"]["b"][0], 2);
        assert_eq!(ok(&items[4]), &Value::Null);
        let (items, end) = read_str("[ ]").await;
        assert!(items.is_empty());
        assert_eq!(end, End::Complete);
    }

    #[tokio::test]
    async fn array_syntax_error_ends_after_the_items_before_it() {
        let (items, end) = read_str("[{\"a\":1},{\"a\":2},{\"a\":3},{\"a\" 4},{\"a\":5}]").await;
        assert_eq!(indexes(&items), [0, 1, 2]);
        let End::Failed(message) = end else { panic!("expected Failed") };
        assert!(message.starts_with("item 3, near byte 31: expected `:`"), "{message}");
        let (items, end) = read_str("[1,2").await;
        assert_eq!(items.len(), 2);
        assert!(matches!(end, End::Failed(m) if m.starts_with("item 2")));
    }

    #[tokio::test]
    async fn garbage_after_the_array_fails() {
        let (items, end) = read_str("[1,2] x").await;
        assert_eq!(items.len(), 2);
        let End::Failed(message) = end else { panic!("expected Failed") };
        assert!(message.starts_with("after the array, near byte"), "{message}");
        let (_, end) = read_str("[1][2]").await;
        assert!(matches!(end, End::Failed(_)));
    }

    #[tokio::test]
    async fn array_oversized_element_is_an_error_item_and_a_huge_one_ends_the_input() {
        let big = "z".repeat(MAX_ITEM_BYTES + 10);
        let (items, end) = read_str(&format!("[1,\"{big}\",3]")).await;
        assert_eq!(end, End::Complete);
        assert_eq!(err(&items[1]), format!("item 1: longer than {MAX_ITEM_BYTES} bytes"));
        assert_eq!(ok(&items[2]), 3);
        let huge = "z".repeat(MAX_ARRAY_ELEMENT_BYTES + 10);
        let (items, end) = read_str(&format!("[1,\"{huge}\",3]")).await;
        assert_eq!(items.len(), 1);
        assert!(matches!(end, End::Failed(m) if m.contains("item 1") && m.contains("longer than")));
    }

    /// Fails with an I/O error after its data.
    struct Broken(Cursor<Vec<u8>>);

    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::other("connection reset")),
                n => Ok(n),
            }
        }
    }

    #[tokio::test]
    async fn io_error_fails_after_the_items_before_it() {
        let (items, end, _) = collect(Broken(Cursor::new(b"1\n2\n".to_vec())), 10).await;
        assert_eq!(items.len(), 2);
        assert_eq!(end, End::Failed("reading line 3 at byte 4 (item 2): connection reset".into()));
        let (items, end, _) = collect(Broken(Cursor::new(b"[1,2,".to_vec())), 10).await;
        assert_eq!(items.len(), 2);
        assert!(matches!(end, End::Failed(m) if m.contains("connection reset")));
    }

    /// Input made one piece at a time by `next(i)` until it says `None`, as a large upload would
    /// arrive; `dropped` tells when the reader is done with it.
    struct Generated<F> {
        next: F,
        i: u64,
        piece: Vec<u8>,
        at: usize,
        dropped: Arc<AtomicBool>,
    }

    fn generated<F: FnMut(u64) -> Option<Vec<u8>>>(next: F) -> (Generated<F>, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        (Generated { next, i: 0, piece: Vec::new(), at: 0, dropped: dropped.clone() }, dropped)
    }

    fn endless(head: &'static [u8], body: &'static [u8]) -> (impl Read + Send + 'static, Arc<AtomicBool>) {
        generated(move |i| Some(if i == 0 { head } else { body }.to_vec()))
    }

    impl<F: FnMut(u64) -> Option<Vec<u8>>> Read for Generated<F> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            while self.at == self.piece.len() {
                let Some(piece) = (self.next)(self.i) else { return Ok(0) };
                (self.piece, self.at, self.i) = (piece, 0, self.i + 1);
            }
            let n = buf.len().min(self.piece.len() - self.at);
            buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl<F> Drop for Generated<F> {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    async fn finishes(dropped: &AtomicBool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if dropped.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn dropped_receiver_stops_the_reader() {
        let inputs: [(&[u8], &[u8]); 3] =
            [(b"", b"{\"a\":1}\n"), (b"[", b"{\"a\":1},"), (b"{}\n", b"\n\n\n\n\n\n\n\n")];
        for (head, body) in inputs {
            let (reader, dropped) = endless(head, body);
            let mut rx = spawn_reader(reader, 1, 1);
            assert!(matches!(rx.recv().await, Some(Message::Batch(_))));
            drop(rx);
            assert!(finishes(&dropped).await, "the reader of {:?} did not stop", String::from_utf8_lossy(body));
        }
    }

    #[tokio::test]
    async fn slow_consumer_stalls_the_reader() {
        let counter = Arc::new(AtomicU64::new(0));
        let (reader, dropped) = endless(b"", b"{\"email\":\"a@example.com\"}\n");
        let mut rx = spawn_reader(CountingReader::new(reader, counter.clone()), 100, 2);
        assert!(matches!(rx.recv().await, Some(Message::Batch(_))));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let read = counter.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(counter.load(Ordering::Relaxed), read, "the reader goes on while nobody receives");
        // The channel's batches, the one being filled and one buffer of input.
        assert!(read < (READ_BUFFER + 5 * 100 * 27) as u64, "read {read} bytes ahead");
        drop(rx);
        assert!(finishes(&dropped).await);
    }

    #[test]
    fn counting_reader_adds_what_it_reads() {
        let counter = Arc::new(AtomicU64::new(5));
        let mut reader = CountingReader::new(&b"hello world"[..], counter.clone());
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), 16);
        assert_eq!(reader.into_inner(), b"");
    }

    /// Peak resident memory of this process, where the platform says it.
    fn peak_rss_kib() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    async fn stays_flat(megabytes: u64) {
        // Lines run to about 170 bytes.
        let count = megabytes * 1_000_000 / 170;
        let counter = Arc::new(AtomicU64::new(0));
        let before = peak_rss_kib();
        let (source, _) = generated(|i| {
            (i < count).then(|| {
                format!(
                    r#"{{"email":"user{i}@example.com","firstName":"Name{i}","lastName":"Surname","phone":"+420 7{:08}","groups":["Import test"],"meta":{{"source":"bench","n":{i}}}}}"#,
                    i % 100_000_000
                )
                .into_bytes()
            })
        });
        let mut rx = spawn_reader(CountingReader::new(source, counter.clone()), 1000, 4);
        let (mut seen, mut last) = (0u64, None);
        while let Some(message) = rx.recv().await {
            match message {
                Message::Batch(batch) => {
                    for item in batch {
                        assert_eq!(item.index, seen);
                        assert!(item.value.is_ok());
                        seen += 1;
                    }
                }
                Message::End(end) => last = Some(end),
            }
        }
        assert_eq!(last, Some(End::Complete));
        assert_eq!(seen, count);
        assert!(counter.load(Ordering::Relaxed) >= megabytes * 950_000);
        if let (Some(before), Some(after)) = (before, peak_rss_kib()) {
            // Holding the input whole would add 200 MB; other tests running alongside add a few.
            assert!(after - before < 96 * 1024, "peak memory grew by {} KiB", after - before);
        }
    }

    #[tokio::test]
    async fn memory_stays_flat_over_200_mb() {
        stays_flat(200).await;
    }
}
