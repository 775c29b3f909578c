//! Hostile clients (API.md §8) over real sockets: headers that never finish, more
//! connections than the cap, bodies that pause or trickle, large bodies without a key,
//! and floods of unknown keys. Every test is bounded by its own deadlines and checks
//! behaviour only: what the client is answered and when its connection is closed, never
//! how fast the server is.
//!
//! Most exchanges are written by hand on a `TcpStream`, because what matters here is
//! what an HTTP client library hides: a request left half-sent, a body that never ends,
//! a connection closed with no answer at all.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bizkit_mirror::normalize::{ApiKey, ApiKeyKind};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};

use crate::support::child::{ChildServer, Running, DEMO_PROD};
use crate::support::{assert_error, split, Backend, TestDb};

const CREATE: &str = "/api/v1/customer/create";
const IMPORT: &str = "/api/v1/customer/import";
const MIB: usize = 1024 * 1024;
/// The largest body the server reads to find a key in it.
const KEYLESS_LIMIT: usize = 64 * 1024;
/// How long a test waits for what should happen within a second or two.
const PATIENCE: Duration = Duration::from_secs(5);

// ---- raw HTTP/1.1 over std sockets ----

/// One answer read off a socket.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// The status line and headers, as sent.
    head: String,
    body: Value,
}

impl Reply {
    /// A header's value (names compare case-insensitively).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[track_caller]
    fn assert_error(&self, status: u16, code: &str) {
        assert_error(&(self.status, self.body.clone()), status, code);
    }

    /// Asserts the server said it will not read another request on this connection.
    #[track_caller]
    fn assert_closes(&self) {
        assert_eq!(self.header("connection"), Some("close"), "{}", self.head);
    }
}

/// A connection to `addr` whose reads and writes give up after a while.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Reads until the server closes the connection (end of stream or reset) and returns
/// what it sent before; None if it is still open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left.min(Duration::from_millis(100)))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if timed_out(&e) => {}
            Err(_) => return Some(got),
        }
    }
}

/// True if the server neither answered nor closed the connection within `wait`.
fn still_open(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    matches!(stream.read(&mut [0u8; 1]), Err(e) if timed_out(&e))
}

/// Where the head ends, if it has.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Decodes a chunked body (as much of it as arrived).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size.filter(|n| *n > 0) else { break };
        let start = eol + 2;
        let end = (start + size).min(rest.len());
        body.extend_from_slice(&rest[start..end]);
        rest = rest.get(end + 2..).unwrap_or_default();
    }
    body
}

/// Parses one answer from the bytes a connection delivered.
fn parse(bytes: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(bytes);
    let end = head_end(bytes).unwrap_or_else(|| panic!("no complete answer in {text:?}"));
    let head = String::from_utf8_lossy(&bytes[..end - 4]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    let mut reply = Reply { status, head, body: Value::Null };
    let raw = if reply.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(&bytes[end..])
    } else {
        let length = reply.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(bytes.len() - end);
        bytes[end..(end + length).min(bytes.len())].to_vec()
    };
    reply.body = serde_json::from_slice(&raw).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into()));
    reply
}

/// Reads exactly one answer with a Content-Length body, leaving the connection open;
/// None if the connection ends (or nothing comes within 10 s) before a whole answer.
fn read_one(stream: &mut TcpStream) -> Option<Reply> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = head_end(&got) {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse().ok()))
                .expect("an answer with a Content-Length");
            if got.len() >= end + length {
                return Some(parse(&got));
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[track_caller]
fn read_reply(stream: &mut TcpStream) -> Reply {
    read_one(stream).expect("a whole answer")
}

/// Sends `head` (the request line and headers, without the blank line) and `body`, and
/// reads the answer until the server closes the connection. The body is written on a
/// thread of its own while the answer is read: a server that answers before reading the
/// body must be heard, and the writer may then be cut off. (A client that stops reading
/// once its write fails, as hyper's does, can miss that answer, since the server closes
/// without draining the rest of the body.)
fn exchange(addr: SocketAddr, head: &str, body: Vec<u8>) -> Reply {
    let mut stream = connect(addr);
    stream.write_all(format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&body);
    });
    let got = closed_within(&mut stream, Duration::from_secs(20)).expect("no answer and no close within 20 s");
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    parse(&got)
}

/// A request line and the headers of a JSON body of `length` bytes.
fn json_head(path: &str, length: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {length}")
}

/// A JSON object of exactly `size` bytes: `fields` plus a padding string.
fn json_of_size(fields: Value, size: usize) -> Vec<u8> {
    let mut object = fields;
    object["pad"] = json!("");
    let bare = serde_json::to_vec(&object).unwrap().len();
    assert!(size >= bare, "{size} bytes cannot hold {object}");
    object["pad"] = json!("x".repeat(size - bare));
    let bytes = serde_json::to_vec(&object).unwrap();
    assert_eq!(bytes.len(), size);
    bytes
}

/// `body` as HTTP/1.1 chunks of at most 16 KiB, with the final empty chunk if `finish`.
fn chunked(body: &[u8], finish: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 1000 + 16);
    for chunk in body.chunks(16 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    if finish {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    out
}

/// A well-formed PROD key that no database holds.
fn unknown_key() -> String {
    format!("PROD{}", Alphanumeric.sample_string(&mut rand::rng(), 28))
}

/// `GET /ping/v1` with this key, on a connection of its own.
fn ping(addr: SocketAddr, key: &str) -> Reply {
    exchange(addr, &format!("GET /ping/v1?apiKey={key} HTTP/1.1"), Vec::new())
}

/// The real binary with the demo seed over a fresh SQLite file, and `envs`.
fn demo_server(envs: &[(&str, &str)]) -> Running {
    ChildServer::new(["serve", "--demo"]).fresh_sqlite().envs(envs).start()
}

// ---- connections ----

/// A client that sends part of its headers and stops must not hold its connection: the
/// header read timeout closes it, and a keep-alive connection that goes quiet after a
/// request is closed the same way. Others are served as usual throughout.
#[test]
fn partial_headers_are_cut_off() {
    let server = demo_server(&[("HEADER_READ_TIMEOUT_SECONDS", "1")]);
    let mut stalled: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = connect(server.addr);
            stream.write_all(b"POST /api/v1/customer/create HTTP/1.1\r\nHost: x\r\n").unwrap();
            stream
        })
        .collect();
    assert!(still_open(&mut stalled[0], Duration::from_millis(200)), "closed before its timeout");
    // Another connection that finished one request and then went quiet.
    let mut quiet = connect(server.addr);
    write!(quiet, "GET /ping/v1?apiKey={DEMO_PROD} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut quiet).status, 200);

    assert_eq!(ping(server.addr, DEMO_PROD).status, 200, "others are served while some stall");
    for (i, stream) in stalled.iter_mut().enumerate() {
        let got = closed_within(stream, PATIENCE)
            .unwrap_or_else(|| panic!("connection {i} with half its headers still open after {PATIENCE:?}"));
        let got = String::from_utf8_lossy(&got);
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 4"), "connection {i} was answered: {got}");
    }
    assert!(closed_within(&mut quiet, PATIENCE).is_some(), "idle keep-alive connection still open after {PATIENCE:?}");
    assert_eq!(ping(server.addr, DEMO_PROD).status, 200, "served after the stalled ones are gone");
}

/// A connection that sends nothing at all, or only the start of HTTP/2's preface, holds
/// one of the capped connections as surely as half a request's headers does, and must be
/// closed as those are.
#[test]
fn silent_connections_are_cut_off() {
    let server = demo_server(&[("HEADER_READ_TIMEOUT_SECONDS", "1"), ("MAX_CONNECTIONS", "2")]);
    let mut silent = connect(server.addr);
    let mut preface = connect(server.addr);
    preface.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    let limit = PATIENCE * 2;
    assert!(closed_within(&mut silent, limit).is_some(), "a connection that sent nothing is open after {limit:?}");
    assert!(closed_within(&mut preface, limit).is_some(), "a half-sent preface is open after {limit:?}");
    assert_eq!(ping(server.addr, DEMO_PROD).status, 200);
}

/// Opens a connection and completes one keep-alive request on it; None if the server
/// closed it instead (it was over the cap).
fn held_connection(addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = connect(addr);
    write!(stream, "GET /ping/v1?apiKey={DEMO_PROD} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let reply = read_one(&mut stream)?;
    assert_eq!(reply.status, 200, "{}", reply.head);
    Some(stream)
}

/// Past `MAX_CONNECTIONS` a new connection is closed at once, unanswered, instead of
/// waiting in a queue; the connections already in keep being served, and once they
/// close new ones are admitted again.
#[test]
fn connection_cap_refuses_at_once() {
    let server = demo_server(&[("MAX_CONNECTIONS", "4"), ("HEADER_READ_TIMEOUT_SECONDS", "120")]);
    // The readiness probe's connection may still count for a moment: retry until four
    // are held.
    let deadline = Instant::now() + PATIENCE;
    let mut held = Vec::new();
    while held.len() < 4 {
        assert!(Instant::now() < deadline, "could not hold 4 connections; held {}", held.len());
        match held_connection(server.addr) {
            Some(stream) => held.push(stream),
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }

    for attempt in 0..3 {
        let mut extra = connect(server.addr);
        let _ = write!(extra, "GET /ping/v1?apiKey={DEMO_PROD} HTTP/1.1\r\nHost: x\r\n\r\n");
        let got = closed_within(&mut extra, PATIENCE)
            .unwrap_or_else(|| panic!("connection {} past the cap left hanging for {PATIENCE:?}", attempt + 5));
        assert!(got.is_empty(), "a connection past the cap was answered: {}", String::from_utf8_lossy(&got));
    }

    // The four already in are still served.
    for stream in &mut held {
        write!(stream, "GET /ping/v1?apiKey={DEMO_PROD} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_reply(stream).status, 200);
    }

    drop(held);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut stream = connect(server.addr);
        let answered =
            write!(stream, "GET /ping/v1?apiKey={DEMO_PROD} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_ok()
                && closed_within(&mut stream, PATIENCE).is_some_and(|got| got.starts_with(b"HTTP/1.1 200"));
        if answered {
            break;
        }
        assert!(Instant::now() < deadline, "still refused {PATIENCE:?} after the held connections closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.stderr().contains("connection cap reached"), "the refusal is not logged:\n{}", server.stderr());
}

// ---- slow bodies ----

/// A body that pauses longer than `BODY_IDLE_TIMEOUT_SECONDS` is answered 408
/// REQUEST_TIMEOUT, whether its key came first or is still to come inside it; a body that
/// trickles without pausing is cut off by `REQUEST_TIMEOUT_SECONDS`; the streaming import
/// is exempt from the latter and may take as long as its body keeps flowing.
#[test]
fn slow_bodies_answer_408() {
    let server = demo_server(&[("BODY_IDLE_TIMEOUT_SECONDS", "1"), ("REQUEST_TIMEOUT_SECONDS", "2")]);
    let addr = server.addr;

    for path in [format!("{CREATE}?apiKey={DEMO_PROD}"), CREATE.to_owned()] {
        let mut stream = connect(addr);
        write!(stream, "{}\r\nHost: x\r\n\r\n", json_head(&path, 100)).unwrap();
        stream.write_all(br#"{"email":"#).unwrap();
        let got = closed_within(&mut stream, Duration::from_secs(10)).expect("a paused body is still waited for");
        let reply = parse(&got);
        reply.assert_error(408, "REQUEST_TIMEOUT");
        reply.assert_closes();
    }

    // One byte every 300 ms: never idle for a second, never done within two.
    let mut stream = connect(addr);
    write!(stream, "{}\r\nHost: x\r\n\r\n", json_head(&format!("{CREATE}?apiKey={DEMO_PROD}"), 1000)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let (mut writer, stop) = (stream.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && writer.write_all(b" ").is_ok() {
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let got = closed_within(&mut stream, Duration::from_secs(10)).expect("a trickled body is still waited for");
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    parse(&got).assert_error(408, "REQUEST_TIMEOUT");

    // The import streams: three seconds of lines, each within the idle timeout.
    let lines: Vec<String> = (0..10).map(|i| format!("{{\"email\":\"slow{i}@example.com\"}}\n")).collect();
    let length: usize = lines.iter().map(String::len).sum();
    let mut stream = connect(addr);
    write!(
        stream,
        "POST {IMPORT}?apiKey={DEMO_PROD} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    for line in &lines {
        stream.write_all(line.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let reply = parse(&closed_within(&mut stream, Duration::from_secs(20)).expect("import answered"));
    assert_eq!(reply.status, 200, "{}\n{}", reply.head, reply.body);
    assert_eq!(reply.body["summary"]["ok"], 10, "{}", reply.body);
    assert_eq!(reply.body["summary"]["complete"], true, "{}", reply.body);
}

// ---- bodies without a key ----

// A body that would have to be read to find its key may be at most 64 KiB: a larger one
// is refused 401 without being read (declared, streamed, or not even sent), and without
// being parsed (garbage gets the same answer). Up to the limit, a key inside still works.
backend_test!(keyless_large_bodies_are_refused_unread, |app| {
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let raw = move |head: String, body: Vec<u8>| tokio::task::spawn_blocking(move || exchange(addr, &head, body));

    // Declared 1 MiB, nothing sent: the answer cannot have waited for the body.
    let reply = tokio::task::spawn_blocking(move || {
        let mut stream = connect(addr);
        write!(stream, "{}\r\nHost: x\r\n\r\n", json_head(CREATE, MIB)).unwrap();
        closed_within(&mut stream, PATIENCE).map(|got| parse(&got))
    })
    .await
    .unwrap()
    .expect("a keyless 1 MiB body was waited for");
    reply.assert_error(401, "PUBLIC_API_KEY_DOES_NOT_EXIST");
    reply.assert_closes();

    // 1 MiB sent in full, as JSON and as garbage.
    let body = json_of_size(json!({ "email": "big@example.com" }), MIB);
    let reply = raw(json_head(CREATE, MIB), body).await.unwrap();
    reply.assert_error(401, "PUBLIC_API_KEY_DOES_NOT_EXIST");
    reply.assert_closes();
    let reply = raw(json_head(CREATE, MIB), vec![b'{'; MIB]).await.unwrap();
    reply.assert_error(401, "PUBLIC_API_KEY_DOES_NOT_EXIST");

    // Chunked, with no length to refuse up front: 1 MiB in full, and a body that stops
    // after 64 KiB and a chunk without ever finishing. (Written by hand, since a client
    // that stops reading once its upload is cut off may miss the answer; see `exchange`.)
    let big = json_of_size(json!({ "email": "big@example.com", "apiKey": app.keys.prod }), MIB);
    let head = format!("POST {CREATE} HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked");
    let reply = raw(head.clone(), chunked(&big, true)).await.unwrap();
    reply.assert_error(401, "PUBLIC_API_KEY_DOES_NOT_EXIST");
    reply.assert_closes();
    let unfinished = chunked(&big[..KEYLESS_LIMIT + 16 * 1024], false);
    let reply = tokio::task::spawn_blocking(move || {
        let mut stream = connect(addr);
        write!(stream, "{head}\r\nHost: x\r\n\r\n").unwrap();
        stream.write_all(&unfinished).unwrap();
        closed_within(&mut stream, PATIENCE).map(|got| parse(&got))
    })
    .await
    .unwrap()
    .expect("a keyless chunked body was read past 64 KiB");
    reply.assert_error(401, "PUBLIC_API_KEY_DOES_NOT_EXIST");

    // The limit itself: 64 KiB with the key inside is read, one byte more is not.
    let key = app.keys.prod.clone();
    let at_limit = json_of_size(json!({ "email": "edge@example.com", "apiKey": key }), KEYLESS_LIMIT);
    let reply = raw(json_head(CREATE, KEYLESS_LIMIT), at_limit).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let over = json_of_size(json!({ "email": "edge@example.com", "apiKey": key }), KEYLESS_LIMIT + 1);
    raw(json_head(CREATE, KEYLESS_LIMIT + 1), over.clone())
        .await
        .unwrap()
        .assert_error(401, "PUBLIC_API_KEY_DOES_NOT_EXIST");
    let head = format!("POST {CREATE} HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked");
    raw(head, chunked(&over, true)).await.unwrap().assert_error(401, "PUBLIC_API_KEY_DOES_NOT_EXIST");

    // A small body naming its key, as BizKitHub's own clients send it.
    let res = app
        .client
        .post(app.url(CREATE))
        .json(&json!({ "apiKey": app.keys.prod, "email": "small@example.com" }))
        .send()
        .await
        .unwrap();
    let (status, body) = split(res).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["newAccount"], true, "{body}");
});

// A key in the query or the Bearer header is judged before the body is read: a bad one
// with a 1 MiB body is a 401 (never a 413), and a good one still gets 413 for it.
backend_test!(query_key_is_checked_before_the_body, |app| {
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let raw = move |head: String, body: Vec<u8>| tokio::task::spawn_blocking(move || exchange(addr, &head, body));
    let body = || json_of_size(json!({ "email": "big@example.com" }), MIB);

    let unknown = unknown_key();
    let reply = raw(json_head(&format!("{CREATE}?apiKey={unknown}"), MIB), body()).await.unwrap();
    reply.assert_error(401, "PUBLIC_API_KEY_DOES_NOT_EXIST");
    reply.assert_closes();
    let reply = raw(json_head(&format!("{CREATE}?apiKey=not-a-key"), MIB), body()).await.unwrap();
    reply.assert_error(401, "PUBLIC_API_KEY_INVALID_FORMAT");
    let reply = raw(format!("{}\r\nAuthorization: Bearer {unknown}", json_head(CREATE, MIB)), body()).await.unwrap();
    reply.assert_error(401, "PUBLIC_API_KEY_DOES_NOT_EXIST");

    // Declared but never sent: the refusal cannot have waited for it.
    let reply = tokio::task::spawn_blocking(move || {
        let mut stream = connect(addr);
        write!(stream, "{}\r\nHost: x\r\n\r\n", json_head(&format!("{CREATE}?apiKey={unknown}"), MIB)).unwrap();
        closed_within(&mut stream, PATIENCE).map(|got| parse(&got))
    })
    .await
    .unwrap()
    .expect("a bad key's body was waited for");
    reply.assert_error(401, "PUBLIC_API_KEY_DOES_NOT_EXIST");

    // A good key: the body is the problem now.
    let path = format!("{CREATE}?apiKey={}", app.keys.prod);
    let reply =
        raw(json_head(&path, MIB + 64), json_of_size(json!({ "email": "big@example.com" }), MIB + 64)).await.unwrap();
    reply.assert_error(413, "PAYLOAD_TOO_LARGE");
    reply.assert_closes();
    let bearer = format!("{}\r\nAuthorization: Bearer {}", json_head(CREATE, MIB + 64), app.keys.prod);
    let reply = raw(bearer, json_of_size(json!({ "email": "big@example.com" }), MIB + 64)).await.unwrap();
    reply.assert_error(413, "PAYLOAD_TOO_LARGE");
    // And a body within the limit is served, however large.
    let reply = raw(json_head(&path, MIB), body()).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
});

// ---- unknown keys ----

// An unknown key is remembered: once refused, it stays refused without another lookup,
// even if it appears in the database behind the server's back, until it is evicted.
backend_test!(unknown_keys_are_remembered, |app| {
    let key = ApiKey::generate(ApiKeyKind::Prod);
    let raw = key.expose().to_owned();
    let ping = |key: String| {
        let app = &app;
        async move { split(app.client.get(app.url("/ping/v1")).query(&[("apiKey", key)]).send().await.unwrap()).await }
    };
    assert_error(&ping(raw.clone()).await, 401, "PUBLIC_API_KEY_DOES_NOT_EXIST");
    app.store
        .insert_key("acme", &bizkit_mirror::server::new_key(&key, "late", vec!["customer:read".into()]))
        .await
        .expect("insert key");
    assert_error(&ping(raw.clone()).await, 401, "PUBLIC_API_KEY_DOES_NOT_EXIST");
    app.registry.evict_digest(&key.digest()).await;
    assert_eq!(ping(raw).await.0, 200, "an evicted unknown key is looked up again");
});

/// The real binary on a fresh database of either backend.
struct Child {
    server: Running,
    _db: TestDb,
}

async fn child(backend: Backend, envs: &[(&str, &str)]) -> Option<Child> {
    let Some(db) = TestDb::new(backend).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return None;
    };
    let server = ChildServer::new(["serve", "--demo"]).database_url(&db.url).envs(envs).start();
    Some(Child { server, _db: db })
}

/// `GET /ping/v1` with this key from this local address.
async fn ping_from(client: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    client.get(format!("{base}/ping/v1")).query(&[("apiKey", key)]).send().await.expect("request")
}

fn client_from(address: IpAddr) -> reqwest::Client {
    reqwest::Client::builder().local_address(address).timeout(Duration::from_secs(10)).build().unwrap()
}

/// A client address that keeps trying unknown keys gets 401 for as many as its budget
/// allows, then 429 RATE_LIMIT_EXCEEDED with Retry-After and no lookup; a valid key from
/// the same address keeps answering 200, and another address has a budget of its own.
async fn unknown_key_flood_is_slowed(backend: Backend) {
    // The valid key stays cached throughout (see `valid_key_outlives_its_cache_...`).
    let envs = [("AUTH_FAILURES_PER_MINUTE", "5"), ("KEY_CACHE_SECONDS", "300")];
    let Some(child) = child(backend, &envs).await else { return };
    let base = child.server.base.clone();
    let attacker = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(ping_from(&attacker, &base, DEMO_PROD).await.status(), 200);

    let mut seen = Vec::new();
    for _ in 0..20 {
        let res = ping_from(&attacker, &base, &unknown_key()).await;
        let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let got = split(res).await;
        match got.0 {
            401 => assert_error(&got, 401, "PUBLIC_API_KEY_DOES_NOT_EXIST"),
            429 => {
                assert_error(&got, 429, "RATE_LIMIT_EXCEEDED");
                assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)), "Retry-After {retry_after:?}");
            }
            other => panic!("unknown key answered {other}: {}", got.1),
        }
        seen.push(got.0);
        let (status, body) = split(ping_from(&attacker, &base, DEMO_PROD).await).await;
        assert_eq!(status, 200, "the valid key was refused after {seen:?}: {body}");
    }
    // The budget counts lookups of keys not seen lately: the valid key's first lookup
    // spent one of the five.
    let refused = seen.iter().take_while(|s| **s == 401).count();
    assert!((4..=6).contains(&refused), "401s before the first 429: {refused}; {seen:?}");
    assert!(seen[refused..].iter().all(|s| *s == 429), "the address was let back in too soon: {seen:?}");

    // Another address is judged on its own failures.
    let bystander = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    assert_error(
        &split(ping_from(&bystander, &base, &unknown_key()).await).await,
        401,
        "PUBLIC_API_KEY_DOES_NOT_EXIST",
    );
    assert_eq!(ping_from(&bystander, &base, DEMO_PROD).await.status(), 200);
}

/// A valid key whose cache entry expires while its address is refused lookups must still
/// be served: an address shared with a prober (a NAT, a proxy) must not lose its own
/// valid key.
async fn valid_key_outlives_its_cache_while_the_address_is_refused(backend: Backend) {
    let envs = [("AUTH_FAILURES_PER_MINUTE", "5"), ("KEY_CACHE_SECONDS", "1")];
    let Some(child) = child(backend, &envs).await else { return };
    let base = child.server.base.clone();
    let client = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(ping_from(&client, &base, DEMO_PROD).await.status(), 200);
    let mut refused = false;
    for _ in 0..10 {
        refused |= ping_from(&client, &base, &unknown_key()).await.status() == 429;
    }
    assert!(refused, "the address was never refused");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = split(ping_from(&client, &base, DEMO_PROD).await).await;
    assert_eq!(status, 200, "the valid key was refused once out of the cache: {body}");
}

/// Unknown keys sent all at once, each on a connection of its own, get no more lookups
/// than sent one after another: the budget holds however many requests are in flight.
async fn concurrent_unknown_keys_stay_within_the_budget(backend: Backend) {
    let Some(child) = child(backend, &[("AUTH_FAILURES_PER_MINUTE", "5")]).await else { return };
    let base = child.server.base.clone();
    // No connection reuse: every request is in flight on its own connection at once.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(10)).build().unwrap();
    let requests = (0..50).map(|_| {
        let (client, base) = (&client, &base);
        async move { ping_from(client, base, &unknown_key()).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(requests).await;
    let looked_up = statuses.iter().filter(|s| **s == 401).count();
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
    // Five within the budget.
    assert!(looked_up <= 5, "{looked_up} of 50 concurrent unknown keys were looked up with a budget of 5");
}

per_backend!(unknown_key_flood_is_slowed, super::unknown_key_flood_is_slowed);
per_backend!(
    valid_key_outlives_its_cache_while_the_address_is_refused,
    super::valid_key_outlives_its_cache_while_the_address_is_refused
);
per_backend!(concurrent_unknown_keys_stay_within_the_budget, super::concurrent_unknown_keys_stay_within_the_budget);
