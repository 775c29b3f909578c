//! Tests of the import reader: both formats, broken and oversized input, stopping, and
//! memory staying flat over tens of megabytes.

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
    let inputs: [(&[u8], &[u8]); 3] = [(b"", b"{\"a\":1}\n"), (b"[", b"{\"a\":1},"), (b"{}\n", b"\n\n\n\n\n\n\n\n")];
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
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak memory is the whole process's, and the other tests of this binary run beside
/// this one (argon2 alone takes megabytes a hash): the reading is taken in a process of
/// its own that runs `memory_stays_flat_over_50_mb_alone` and nothing else.
#[test]
fn memory_stays_flat_over_50_mb() {
    let name = format!("{}::memory_stays_flat_over_50_mb_alone", module_path!());
    let name = name.split_once("::").map_or(name.as_str(), |(_crate, path)| path);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--test-threads=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
#[ignore = "run alone, in a process of its own, by memory_stays_flat_over_50_mb"]
async fn memory_stays_flat_over_50_mb_alone() {
    stays_flat(50).await;
}

#[tokio::test]
#[ignore = "about 10 s of parsing in a debug build; run with --ignored"]
async fn memory_stays_flat_over_200_mb() {
    stays_flat(200).await;
}

async fn stays_flat(megabytes: u64) {
    // Lines run to about 165 bytes.
    let count = megabytes * 1_000_000 / 165;
    let counter = Arc::new(AtomicU64::new(0));
    let before = peak_rss_kib();
    let (source, _) = generated(move |i| {
        (i < count).then(|| {
            let line = format!(
                r#"{{"email":"user{i}@example.com","firstName":"Name{i}","lastName":"Surname","phone":"+420 7{}{:07}","groups":["Import test"],"meta":{{"source":"bench","n":{i}}}}}"#,
                [2, 3, 7, 9][(i / 10_000_000 % 4) as usize],
                i % 10_000_000
            );
            (line + "\n").into_bytes()
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
    assert!(counter.load(Ordering::Relaxed) > megabytes * 975_000, "read {counter:?} bytes");
    if let (Some(before), Some(after)) = (before, peak_rss_kib()) {
        // Holding the input whole would add all of it.
        assert!(after - before < 40 * 1024, "peak memory grew by {} KiB", after - before);
    }
}

#[tokio::test]
async fn prepared_batches_arrive_in_order_on_the_readers_thread() {
    let input = "{\"n\":0}\n{\"n\":1}\n[\n{\"n\":3}\n{\"n\":4}\n";
    let reader_thread = std::thread::current().id();
    let mut rx = spawn_reader_with(Cursor::new(input.as_bytes().to_vec()), 2, 1, move |items: Vec<Item>| {
        let elsewhere = std::thread::current().id() != reader_thread;
        (elsewhere, items.iter().map(|i| (i.index, i.value.is_ok())).collect::<Vec<_>>())
    });
    let mut batches = Vec::new();
    let end = loop {
        match rx.recv().await.expect("the reader ends with End") {
            Message::Batch((elsewhere, batch)) => {
                assert!(elsewhere, "prepared off the caller's thread");
                batches.push(batch);
            }
            Message::End(end) => break end,
        }
    };
    assert_eq!(end, End::Complete);
    assert_eq!(batches, vec![vec![(0, true), (1, true)], vec![(2, false), (3, true)], vec![(4, true)]]);
}
