//! The SSE proxy end to end: real clients (curl over HTTP/1.1 and HTTP/2, an SSE client
//! library, raw sockets) through the real binary (tcp → http → sse server → sse client → http →
//! tcp) to a real backend on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zilla_test_support::{free_port, rss_kib, Options, SseBackend, Zilla};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zilla"))
}

const SECOND: Duration = Duration::from_secs(1);

fn config(port: u16, backend: u16) -> String {
    let south = zilla_test_support::sse_upstream_bindings(backend);
    format!(
        "name: test
bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: north_http_server
  north_http_server:
    type: http
    kind: server
    options:
      versions: [ h2, http/1.1 ]
    routes:
      - when:
          - headers:
              :path: /events*
        exit: north_sse_server
  north_sse_server:
    type: sse
    kind: server
    exit: south_sse_client
{south}"
    )
}

fn start(extra: &[&str]) -> (Zilla, SseBackend, u16) {
    let backend = SseBackend::start();
    let port = free_port();
    let options = Options {
        args: extra.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    };
    let zilla = Zilla::start(bin(), &config(port, backend.port()), options);
    zilla.wait_for("north_tcp_server listening on", 10 * SECOND);
    (zilla, backend, port)
}

fn require(program: &str, package: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{program} is not installed: apt-get install {package}"
    );
}

/// Runs curl in the background, collecting its stdout.
fn curl(args: &[&str]) -> (std::process::Child, mpsc::Receiver<Vec<u8>>) {
    require("curl", "curl");
    let mut child = Command::new("curl")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn read_until(rx: &mpsc::Receiver<Vec<u8>>, got: &mut Vec<u8>, expected: &[u8], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !got.windows(expected.len()).any(|w| w == expected) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(_) => panic!(
                "did not receive {:?}; got {:?}",
                String::from_utf8_lossy(expected),
                String::from_utf8_lossy(got)
            ),
        }
    }
}

fn curl_receives_events(version: &str) {
    let (_zilla, backend, port) = start(&[]);
    let url = format!("http://127.0.0.1:{port}/events");
    let (mut child, rx) = curl(&["-N", "-s", version, &url]);
    assert!(
        backend.wait_requests(1, 5 * SECOND),
        "the request reached the backend"
    );
    let mut got = Vec::new();
    backend.broadcast(b"id:1\nevent:greeting\ndata:Hello, world\n\n");
    read_until(
        &rx,
        &mut got,
        b"id:1\nevent:greeting\ndata:Hello, world\n\n",
        5 * SECOND,
    );
    backend.broadcast(b"data:line one\ndata:line two\n\n");
    read_until(
        &rx,
        &mut got,
        b"data:line one\ndata:line two\n\n",
        5 * SECOND,
    );
    // The upstream ends: so does the client's stream, cleanly.
    backend.end(0);
    let deadline = Instant::now() + 5 * SECOND;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "curl did not finish after the upstream ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "curl exit status {status}");
}

#[test]
fn curl_receives_events_over_http11() {
    curl_receives_events("--http1.1");
}

#[test]
fn curl_receives_events_over_h2_prior_knowledge() {
    curl_receives_events("--http2-prior-knowledge");
}

fn get(port: u16, extra: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(5 * SECOND)).unwrap();
    write!(s, "GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n{extra}\r\n").unwrap();
    s
}

fn read_head(s: &mut TcpStream) -> String {
    zilla_test_support::read_head(s).expect("connection closed during the response head")
}

/// An upstream that does not answer with an event stream refuses the client's: a 4xx status
/// passes through, a 5xx becomes `502`, and so does a `200` of another content type; each is
/// logged with its reason.
#[test]
fn upstream_answers_that_are_not_event_streams_refuse_the_stream() {
    let answers: [&[u8]; 3] = [
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>",
    ];
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = upstream.local_addr().unwrap().port();
    // The answers in order, whichever connection a request comes on (a refused stream's
    // kept-alive connection serves the next request).
    let answers = std::sync::Arc::new(std::sync::Mutex::new(answers.into_iter()));
    std::thread::spawn(move || {
        for conn in upstream.incoming() {
            let (mut conn, answers) = (conn.unwrap(), answers.clone());
            std::thread::spawn(move || {
                while zilla_test_support::read_head(&mut conn).is_some() {
                    let Some(answer) = answers.lock().unwrap().next() else {
                        return;
                    };
                    conn.write_all(answer).unwrap();
                }
            });
        }
    });
    let port = free_port();
    let zilla = Zilla::start(bin(), &config(port, backend), Options::default());
    zilla.wait_for("north_tcp_server listening on", 10 * SECOND);
    for (expected, why) in [
        ("HTTP/1.1 404 Not Found\r\n", "upstream answered 404"),
        ("HTTP/1.1 502 Bad Gateway\r\n", "upstream answered 503"),
        (
            "HTTP/1.1 502 Bad Gateway\r\n",
            "upstream answered with text/html, not text/event-stream",
        ),
    ] {
        let mut s = get(port, "");
        let head = read_head(&mut s);
        assert!(head.starts_with(expected), "{head}");
        zilla.wait_for(why, 5 * SECOND);
    }
}

#[test]
fn response_head_and_last_event_id() {
    let (_zilla, backend, port) = start(&[]);
    let mut s = get(port, "Last-Event-ID: 42\r\n");
    assert!(backend.wait_requests(1, 5 * SECOND));
    let request = backend.requests()[0].to_ascii_lowercase();
    assert!(request.starts_with("get /events http/1.1\r\n"), "{request}");
    assert!(request.contains("\r\nlast-event-id: 42\r\n"), "{request}");
    assert!(
        request.contains("\r\naccept: text/event-stream\r\n"),
        "{request}"
    );
    backend.broadcast(b"data:x\n\n");
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
}

#[test]
fn client_going_away_closes_the_upstream_at_once() {
    let (_zilla, backend, port) = start(&[]);
    let mut s = get(port, "");
    assert!(backend.wait_requests(1, 5 * SECOND));
    backend.broadcast(b"data:x\n\n");
    read_head(&mut s);
    assert_eq!(backend.open_streams(), 1);
    drop(s);
    assert!(
        backend.wait_open_at_most(0, 2 * SECOND),
        "the upstream request was not closed when the client left"
    );
}

#[test]
fn idle_streams_get_keep_alive_comments() {
    let (_zilla, backend, port) = start(&["-P", "zilla.binding.sse.maximum.idle.time=1"]);
    let mut s = get(port, "");
    assert!(backend.wait_requests(1, 5 * SECOND));
    backend.broadcast(b"data:x\n\n");
    read_head(&mut s);
    let mut body = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + 5 * SECOND;
    while !String::from_utf8_lossy(&body).contains("3\r\n:\n\n\r\n") {
        assert!(
            Instant::now() < deadline,
            "no keep-alive comment: {:?}",
            String::from_utf8_lossy(&body)
        );
        let n = s.read(&mut buf).unwrap();
        body.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_client_that_stops_reading_costs_bounded_memory_and_others_keep_receiving() {
    let (zilla, backend, port) = start(&[]);
    // The slow client: asks for the stream, then never reads.
    let _slow = get(port, "");
    assert!(backend.wait_requests(1, 5 * SECOND));
    // The fast client reads everything.
    let mut fast = get(port, "");
    assert!(backend.wait_requests(2, 5 * SECOND));
    backend.set_write_timeout(0, Duration::from_millis(500));
    let before = rss_kib(zilla.pid()).expect("rss");

    let event = format!("data:{}\n\n", "x".repeat(8 * 1024));
    let events = 4096; // 32 MiB in all
    let reader = std::thread::spawn(move || {
        read_head(&mut fast);
        let mut total = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let needle = b"data:";
        let mut seen = 0usize;
        let mut tail = Vec::new();
        while seen < events {
            let n = fast.read(&mut buf).expect("fast client read");
            assert!(n > 0, "fast client stream closed after {seen} events");
            total += n;
            tail.extend_from_slice(&buf[..n]);
            seen += tail.windows(needle.len()).filter(|w| w == needle).count();
            let keep = tail.len().min(needle.len() - 1);
            tail.drain(..tail.len() - keep);
        }
        total
    });
    let mut slow_sent = 0;
    let mut slow_blocked = false;
    for _ in 0..events {
        assert!(backend.send_to(1, event.as_bytes()), "fast stream closed");
        if !slow_blocked {
            if backend.send_to(0, event.as_bytes()) {
                slow_sent += 1;
            } else {
                slow_blocked = true;
            }
        }
    }
    let total = reader.join().unwrap();
    assert!(
        total >= events * event.len(),
        "fast client got {total} bytes"
    );
    assert!(
        slow_blocked,
        "backpressure never reached the backend: {slow_sent} events went to the slow client"
    );
    let after = rss_kib(zilla.pid()).expect("rss");
    let growth = after.saturating_sub(before);
    assert!(growth < 8 * 1024, "zilla grew by {growth} KiB while a client did not read (before {before} KiB, after {after} KiB)");
}

/// A real SSE client library (reqwest + eventsource-stream), as an SDK would consume the stream.
#[test]
fn an_sse_client_library_receives_typed_events() {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;

    let (_zilla, backend, port) = start(&[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend2 = backend.clone();
    let events = runtime.block_on(async move {
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/events"))
            .header("accept", "text/event-stream")
            .header("last-event-id", "7")
            .send();
        // The response head arrives with the first event: publish from another thread.
        let publisher = std::thread::spawn(move || {
            assert!(backend2.wait_requests(1, 5 * SECOND));
            backend2.broadcast(b"id:8\nevent:price\ndata:{\"p\":1}\n\n");
            backend2.broadcast(b": comment\n\nid:9\ndata:a\ndata:b\n\n");
        });
        let response = tokio::time::timeout(5 * SECOND, response)
            .await
            .expect("response in time")
            .expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut stream = response.bytes_stream().eventsource();
        let mut events = Vec::new();
        while events.len() < 2 {
            let event = tokio::time::timeout(5 * SECOND, stream.next())
                .await
                .expect("event in time");
            events.push(event.expect("stream open").expect("valid event"));
        }
        publisher.join().unwrap();
        events
    });
    assert!(backend.requests()[0]
        .to_ascii_lowercase()
        .contains("last-event-id: 7\r\n"));
    assert_eq!(
        (
            events[0].id.as_str(),
            events[0].event.as_str(),
            events[0].data.as_str()
        ),
        ("8", "price", "{\"p\":1}")
    );
    assert_eq!(
        (
            events[1].id.as_str(),
            events[1].event.as_str(),
            events[1].data.as_str()
        ),
        ("9", "message", "a\nb")
    );
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Streams that end, from either side, leave no socket, task or memory behind.
#[test]
fn streams_leave_nothing_behind() {
    let (zilla, backend, port) = start(&[]);
    // Warm up (pools, buffers), then take the baseline.
    let mut s = get(port, "");
    assert!(backend.wait_requests(1, 5 * SECOND));
    backend.broadcast(b"data:warm\n\n");
    read_head(&mut s);
    drop(s);
    assert!(backend.wait_open_at_most(0, 2 * SECOND));
    std::thread::sleep(Duration::from_millis(200));
    let fds = open_fds(zilla.pid());
    let rss = rss_kib(zilla.pid()).expect("rss");

    let mut seen = 1;
    for round in 0..3 {
        // Clients leave.
        let clients: Vec<TcpStream> = (0..100).map(|_| get(port, "")).collect();
        seen += 100;
        assert!(
            backend.wait_requests(seen, 5 * SECOND),
            "round {round}: requests reached the backend"
        );
        drop(clients);
        assert!(
            backend.wait_open_at_most(0, 5 * SECOND),
            "round {round}: upstreams closed after clients left"
        );
        // Upstreams end.
        let mut clients: Vec<TcpStream> = (0..100).map(|_| get(port, "")).collect();
        seen += 100;
        assert!(backend.wait_requests(seen, 5 * SECOND));
        for i in seen - 100..seen {
            backend.send_to(i, b"data:bye\n\n");
            backend.end(i);
        }
        for c in &mut clients {
            // The response ends with the chunked terminator (the connection is kept alive).
            let mut rest = Vec::new();
            let mut buf = [0u8; 1024];
            while !rest.ends_with(b"data:bye\n\n\r\n0\r\n\r\n") {
                let n = c.read(&mut buf).expect("client stream ends cleanly");
                assert!(
                    n > 0,
                    "connection closed before the response ended: {:?}",
                    String::from_utf8_lossy(&rest)
                );
                rest.extend_from_slice(&buf[..n]);
            }
        }
        drop(clients);
    }
    let deadline = Instant::now() + 5 * SECOND;
    while open_fds(zilla.pid()) > fds && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        open_fds(zilla.pid()) <= fds,
        "zilla holds {} fds, {fds} before the streams",
        open_fds(zilla.pid())
    );
    let grown = rss_kib(zilla.pid()).unwrap().saturating_sub(rss);
    assert!(
        grown < 4 * 1024,
        "zilla grew by {grown} KiB over 600 finished streams"
    );
}

/// HTTP/2: a client that resets one stream (RST_STREAM) closes that stream's upstream at once,
/// while another stream on the same connection keeps receiving events.
#[test]
fn h2_stream_reset_closes_its_upstream_only() {
    let (_zilla, backend, port) = start(&[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/events");
        let first = client.get(&url).send();
        let b = backend.clone();
        let publisher = std::thread::spawn(move || {
            assert!(b.wait_requests(1, 5 * SECOND));
            b.send_to(0, b"data:one\n\n");
        });
        let first = tokio::time::timeout(5 * SECOND, first)
            .await
            .unwrap()
            .unwrap();
        publisher.join().unwrap();
        assert_eq!(first.version(), reqwest::Version::HTTP_2);
        let second = client.get(&url).send();
        let b = backend.clone();
        let publisher = std::thread::spawn(move || {
            assert!(b.wait_requests(2, 5 * SECOND));
            b.send_to(1, b"data:two\n\n");
        });
        let mut second = tokio::time::timeout(5 * SECOND, second)
            .await
            .unwrap()
            .unwrap();
        publisher.join().unwrap();
        assert_eq!(backend.open_streams(), 2);

        drop(first); // RST_STREAM(CANCEL) on a connection that stays open
        let b = backend.clone();
        let closed = tokio::task::spawn_blocking(move || b.wait_open_at_most(1, 2 * SECOND))
            .await
            .unwrap();
        assert!(closed, "the reset stream's upstream was not closed");
        assert_eq!(
            backend.open_streams(),
            1,
            "the other stream's upstream stays"
        );
        let chunk = tokio::time::timeout(5 * SECOND, second.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(&chunk[..], b"data:two\n\n");
        backend.send_to(1, b"data:three\n\n");
        let chunk = tokio::time::timeout(5 * SECOND, second.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(&chunk[..], b"data:three\n\n");
    });
}

/// `zilla.binding.sse.slow.client=drop`: a client that stays too far behind is dropped (its
/// upstream closed, the choice logged), instead of holding its upstream forever.
#[test]
fn slow_client_policy_drop_cuts_a_client_that_stays_behind() {
    let (zilla, backend, port) = start(&[
        "-P",
        "zilla.binding.sse.slow.client=drop",
        "-P",
        "zilla.binding.sse.slow.client.timeout=1s",
    ]);
    let _slow = get(port, "");
    assert!(backend.wait_requests(1, 5 * SECOND));
    backend.set_write_timeout(0, Duration::from_millis(200));
    let event = format!("data:{}\n\n", "x".repeat(8 * 1024));
    let deadline = Instant::now() + 10 * SECOND;
    // Fill every buffer on the way until the backend can no longer write.
    while backend.send_to(0, event.as_bytes()) {
        assert!(
            Instant::now() < deadline,
            "the backend never felt backpressure"
        );
    }
    zilla.wait_for("client too far behind: dropping it", 5 * SECOND);
    assert!(
        backend.wait_open_at_most(0, 5 * SECOND),
        "the dropped client's upstream was not closed"
    );
}
