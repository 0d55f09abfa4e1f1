//! The http client driven directly through the graph (an app opening `http` streams) against
//! small HTTP/1.1 backends on 127.0.0.1, through the real tcp client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use binding_http as _;
use binding_tcp as _;
use bytes::Bytes;
use proto_http::{Headers, Http, HttpBegin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use zilla_engine::config::Config;
use zilla_engine::{build, BuildEnv};
use zilla_engine::{BindingId, Frame, Graph, Properties, Rx, Tx};

/// Builds a graph `http0 (http client) -> tcp0 (tcp client, no options)` with `properties`.
fn graph(properties: &[&str]) -> (Arc<Graph>, BindingId) {
    let yaml = "\
name: test
bindings:
  http0:
    type: http
    kind: client
    options:
      versions: [http/1.1]
    exit: tcp0
  tcp0:
    type: tcp
    kind: client
";
    let config = Config::parse("zilla.yaml", yaml, |_| None).expect("valid config");
    let env = BuildEnv::new(Properties::from_args(properties.iter().copied()));
    let graph = build(&config, &env).unwrap_or_else(|e| panic!("graph: {e:?}"));
    let id = graph.binding_id("test:http0").expect("http0 is built");
    (graph, id)
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    Headers::from_pairs(pairs)
}

fn get(port: u16, path: &str) -> Headers {
    headers(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", &format!("127.0.0.1:{port}")),
        (":path", path),
        ("accept", "*/*"),
    ])
}

/// How a reply ended.
#[derive(Debug, PartialEq)]
enum Ended {
    End(Option<Headers>),
    Abort,
}

#[derive(Debug)]
struct Reply {
    begin: Headers,
    body: Vec<u8>,
    ended: Ended,
}

impl Reply {
    fn status(&self) -> &str {
        self.begin.get_str(":status").unwrap_or("")
    }
}

/// Opens a request, sends `body` (if any) and ends it; returns the reply halves.
fn open(graph: &Arc<Graph>, id: BindingId, h: Headers, body: &[&[u8]]) -> (Tx<Http>, Rx<Http>) {
    let (mut tx, rx) = graph
        .open::<Http>(id, HttpBegin { headers: h }, None)
        .unwrap_or_else(|_| panic!("the http client refused the stream"));
    for piece in body {
        tx.push(Frame::Data(zilla_engine::Data::bytes(
            Bytes::copy_from_slice(piece),
        )))
        .expect("request data");
    }
    (tx, rx)
}

async fn read_reply(rx: &mut Rx<Http>) -> Reply {
    let mut begin = None;
    let mut body = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("reply within 10s");
        match frame {
            Some(Frame::Begin(b)) => begin = Some(b.headers),
            Some(Frame::Data(d)) => {
                body.extend_from_slice(d.payload.as_deref().unwrap_or_default())
            }
            Some(Frame::Flush) => {}
            Some(Frame::End(ext)) => {
                let trailers = ext.map(|t| t.0);
                return Reply {
                    begin: begin.expect("begin before end"),
                    body,
                    ended: Ended::End(trailers),
                };
            }
            Some(Frame::Abort(_)) | None => {
                return Reply {
                    begin: begin.unwrap_or_default(),
                    body,
                    ended: Ended::Abort,
                }
            }
        }
    }
}

async fn exchange(graph: &Arc<Graph>, id: BindingId, h: Headers, body: &[&[u8]]) -> Reply {
    let (tx, mut rx) = open(graph, id, h, body);
    tx.end(None);
    read_reply(&mut rx).await
}

/// A backend: every accepted connection is handed to `serve` with its index; the requests
/// heads (and bodies) it reads are reported on the returned channel.
struct Backend {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

async fn backend<F, Fut>(serve: F) -> Backend
where
    F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(socket, n));
        }
    });
    Backend { port, accepted }
}

/// Reads up to the end of a request head; `None` if the connection closed first.
async fn read_head(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at + 4]).into_owned();
            buf.drain(..at + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads until `buf` ends with `suffix`.
async fn read_until(socket: &mut TcpStream, buf: &mut Vec<u8>, suffix: &[u8]) -> Vec<u8> {
    while !buf.ends_with(suffix) {
        let mut chunk = [0u8; 4096];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    std::mem::take(buf)
}

/// Closes with RST (linger 0 never blocks).
#[allow(deprecated)]
fn reset(socket: TcpStream) {
    let _ = socket.set_linger(Some(Duration::ZERO));
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_are_proxied_exactly() {
    let (heads_tx, mut heads) = mpsc::unbounded_channel();
    let b = backend(move |mut s, _| {
        let heads_tx = heads_tx.clone();
        async move {
            let mut buf = Vec::new();
            let head = read_head(&mut s, &mut buf).await.expect("request");
            heads_tx.send(head).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Upstream: Yes\r\nContent-Length: 5\r\n\r\nhello")
                .await
                .unwrap();
            let _ = read_head(&mut s, &mut buf).await;
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    let reply = exchange(&graph, id, get(b.port, "/hello?x=1"), &[]).await;
    assert_eq!(reply.status(), "200");
    assert_eq!(reply.begin.get_str("content-type"), Some("text/plain"));
    assert_eq!(reply.begin.get_str("x-upstream"), Some("Yes"));
    assert_eq!(reply.begin.get_str("content-length"), Some("5"));
    assert_eq!(reply.body, b"hello");
    assert_eq!(reply.ended, Ended::End(None));
    assert_eq!(
        heads.recv().await.unwrap(),
        format!(
            "GET /hello?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: */*\r\n\r\n",
            b.port
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_connection() {
    let b = backend(|mut s, _| async move {
        let mut buf = Vec::new();
        let mut n = 0;
        while read_head(&mut s, &mut buf).await.is_some() {
            n += 1;
            let body = format!("response {n}");
            let out = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(out.as_bytes()).await.unwrap();
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    for n in 1..=3 {
        let reply = exchange(&graph, id, get(b.port, "/"), &[]).await;
        assert_eq!(reply.body, format!("response {n}").as_bytes());
    }
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection for all requests"
    );
}

/// An app that leaves after the head of a response whose body has already arrived (an sse
/// client refusing an error status) does not cost the connection: it goes back to the pool as
/// if the body had been read, and a `Connection: close` one is closed cleanly (FIN, not RST).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_leaving_after_a_complete_response_keeps_or_closes_the_connection_cleanly() {
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let b = backend(move |mut s, _| {
        let ended_tx = ended_tx.clone();
        async move {
            let mut buf = Vec::new();
            let mut n = 0;
            while read_head(&mut s, &mut buf).await.is_some() {
                n += 1;
                let close = if n == 2 { "Connection: close\r\n" } else { "" };
                let out = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n{close}\r\noops"
                );
                s.write_all(out.as_bytes()).await.unwrap();
                if n == 2 {
                    // How zilla leaves the closed connection: a FIN reads as 0, a RST fails.
                    let mut byte = [0u8; 1];
                    let how = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await;
                    ended_tx.send(matches!(how, Ok(Ok(0)))).unwrap();
                    return;
                }
            }
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    for _ in 0..2 {
        let (tx, mut rx) = open(&graph, id, get(b.port, "/events"), &[]);
        tx.end(None);
        match rx.recv().await {
            Some(Frame::Begin(begin)) => assert_eq!(begin.headers.get_str(":status"), Some("500")),
            other => panic!("{other:?}"),
        }
        // Let the body arrive, then leave without reading it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(rx);
    }
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "the first connection went back to the pool and served the second request"
    );
    assert!(ended.recv().await.unwrap(), "closed with a FIN, not reset");
}

/// The connection is back in the pool before the app sees the response end, so a request sent
/// the moment it does (as a server answering pipelined requests sends it) reuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_as_the_response_ends_reuses_the_connection() {
    let b = backend(|mut s, _| async move {
        let mut buf = Vec::new();
        while read_head(&mut s, &mut buf).await.is_some() {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    for _ in 0..300 {
        let (tx, mut rx) = open(&graph, id, get(b.port, "/"), &[]);
        tx.end(None);
        loop {
            match next(&mut rx).await {
                Some(Frame::End(_)) => break,
                Some(Frame::Abort(_)) | None => panic!("reply aborted"),
                Some(_) => {}
            }
        }
    }
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection for all requests"
    );
}

/// The upstream closes a kept-alive connection just as the next request arrives on it (its
/// keep-alive timeout racing the request): a request without a body goes again, once, on a
/// new connection, and the app gets the answer, not a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_closed_as_it_is_reused_is_retried_on_a_new_one() {
    let b = backend(|mut s, n| async move {
        let mut buf = Vec::new();
        if read_head(&mut s, &mut buf).await.is_some() {
            let body = format!("from connection {n}");
            let out = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(out.as_bytes()).await.unwrap();
        }
        // The next request on this connection is read, then the connection closes unanswered.
        if n == 0 {
            let _ = read_head(&mut s, &mut buf).await;
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    let first = exchange(&graph, id, get(b.port, "/"), &[]).await;
    assert_eq!(first.body, b"from connection 0");
    let second = exchange(&graph, id, get(b.port, "/"), &[]).await;
    assert_eq!(second.status(), "200");
    assert_eq!(second.body, b"from connection 1");
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}

/// Only a safe method is sent again: a `DELETE` on a kept-alive connection the upstream closes
/// unanswered gets `502`, and reaches no second connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_request_on_a_closed_kept_alive_connection_is_not_sent_again() {
    let b = backend(|mut s, _| async move {
        let mut buf = Vec::new();
        if read_head(&mut s, &mut buf).await.is_some() {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
        }
        let _ = read_head(&mut s, &mut buf).await;
    })
    .await;
    let (graph, id) = graph(&[]);
    assert_eq!(
        exchange(&graph, id, get(b.port, "/"), &[]).await.body,
        b"ok"
    );
    let mut delete = get(b.port, "/");
    delete.set(":method", "DELETE");
    let reply = exchange(&graph, id, delete, &[]).await;
    assert_eq!(reply.status(), "502");
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_response_is_not_reused() {
    let b = backend(|mut s, _| async move {
        let mut buf = Vec::new();
        if read_head(&mut s, &mut buf).await.is_some() {
            s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
                .await
                .unwrap();
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    for _ in 0..2 {
        let reply = exchange(&graph, id, get(b.port, "/"), &[]).await;
        assert_eq!(reply.body, b"until close");
        assert_eq!(reply.ended, Ended::End(None));
        assert!(reply.begin.get("connection").is_none());
    }
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}

async fn next(rx: &mut Rx<Http>) -> Option<Frame<Http>> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("frame within 5s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_events_are_forwarded_one_by_one_then_trailers() {
    let (go_tx, go_rx) = mpsc::unbounded_channel::<()>();
    let go_rx = Arc::new(tokio::sync::Mutex::new(go_rx));
    let b = backend(move |mut s, _| {
        let go_rx = go_rx.clone();
        async move {
            let mut buf = Vec::new();
            read_head(&mut s, &mut buf).await.expect("request");
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            let mut go = go_rx.lock().await;
            for event in ["data: one\n\n", "data: two\n\n"] {
                go.recv().await;
                let chunk = format!("{:x};ext=1\r\n{event}\r\n", event.len());
                s.write_all(chunk.as_bytes()).await.unwrap();
            }
            go.recv().await;
            s.write_all(b"0\r\nX-Done: yes\r\n\r\n").await.unwrap();
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    let (tx, mut rx) = open(&graph, id, get(b.port, "/events"), &[]);
    tx.end(None);
    let Some(Frame::Begin(begin)) = next(&mut rx).await else {
        panic!("expected begin")
    };
    assert_eq!(begin.headers.get_str(":status"), Some("200"));
    assert_eq!(
        begin.headers.get_str("content-type"),
        Some("text/event-stream")
    );
    assert!(begin.headers.get("transfer-encoding").is_none());
    for event in ["data: one\n\n", "data: two\n\n"] {
        go_tx.send(()).unwrap();
        // Each event arrives on its own, before the backend sends anything more.
        match next(&mut rx).await {
            Some(Frame::Data(d)) => assert_eq!(d.payload.as_deref(), Some(event.as_bytes())),
            other => panic!("expected data, got {other:?}"),
        }
    }
    go_tx.send(()).unwrap();
    match next(&mut rx).await {
        Some(Frame::End(Some(ext))) => {
            let trailers = ext;
            assert_eq!(trailers.0.get_str("x-done"), Some("yes"));
        }
        other => panic!("expected end with trailers, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_502() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (graph, id) = graph(&[]);
    let reply = exchange(&graph, id, get(port, "/"), &[]).await;
    assert_eq!(reply.status(), "502");
    assert_eq!(reply.ended, Ended::End(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_or_close_before_response_is_502() {
    let b = backend(|mut s, n| async move {
        let mut buf = Vec::new();
        read_head(&mut s, &mut buf).await;
        if n == 0 {
            reset(s);
        } else {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await.unwrap();
            drop(s);
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    for _ in 0..2 {
        let reply = exchange(&graph, id, get(b.port, "/"), &[]).await;
        assert_eq!(reply.status(), "502");
        assert_eq!(reply.ended, Ended::End(None));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_response_is_502() {
    let b = backend(|mut s, _| async move {
        let mut buf = Vec::new();
        read_head(&mut s, &mut buf).await;
        s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await.unwrap();
        let _ = read_head(&mut s, &mut buf).await;
    })
    .await;
    let (graph, id) = graph(&[]);
    let reply = exchange(&graph, id, get(b.port, "/"), &[]).await;
    assert_eq!(reply.status(), "502");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_head_in_time_is_504() {
    let b = backend(|mut s, _| async move {
        let mut buf = Vec::new();
        read_head(&mut s, &mut buf).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let (graph, id) = graph(&["zilla.binding.http.client.response.timeout=300ms"]);
    let started = std::time::Instant::now();
    let reply = exchange(&graph, id, get(b.port, "/"), &[]).await;
    assert_eq!(reply.status(), "504");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_is_503_with_retry_after() {
    let b = backend(|mut s, _| async move {
        let mut buf = Vec::new();
        read_head(&mut s, &mut buf).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let (graph, id) = graph(&["zilla.binding.http.maximum.connections=1"]);
    let (first_tx, _first_rx) = open(&graph, id, get(b.port, "/slow"), &[]);
    first_tx.end(None);
    // Wait until the first request holds the only connection.
    for _ in 0..100 {
        if b.accepted.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = exchange(&graph, id, get(b.port, "/"), &[]).await;
    assert_eq!(reply.status(), "503");
    assert_eq!(reply.begin.get_str("retry-after"), Some("0"));
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_gone_closes_the_upstream_connection_at_once() {
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let b = backend(move |mut s, _| {
        let closed_tx = closed_tx.clone();
        async move {
            let mut buf = Vec::new();
            read_head(&mut s, &mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                .await
                .unwrap();
            // Wait for the connection to close; it must not take until a timeout.
            let mut byte = [0u8; 1];
            let closed = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await;
            closed_tx
                .send(matches!(closed, Ok(Ok(0)) | Ok(Err(_))))
                .unwrap();
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    let (tx, mut rx) = open(&graph, id, get(b.port, "/events"), &[]);
    tx.end(None);
    assert!(matches!(rx.recv().await, Some(Frame::Begin(_))));
    assert!(matches!(rx.recv().await, Some(Frame::Data(_))));
    drop(rx); // the browser went away
    assert!(closed.recv().await.unwrap(), "upstream connection closed");

    // A request aborted mid-body closes its connection too, and the next request gets a new one.
    let before = b.accepted.load(Ordering::SeqCst);
    let (tx, mut rx) = open(&graph, id, get(b.port, "/events"), &[]);
    assert!(matches!(rx.recv().await, Some(Frame::Begin(_))));
    tx.abort(None);
    assert!(closed.recv().await.unwrap(), "upstream connection closed");
    assert_eq!(b.accepted.load(Ordering::SeqCst), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failure_after_response_began_aborts_the_reply() {
    let b = backend(|mut s, _| async move {
        let mut buf = Vec::new();
        read_head(&mut s, &mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
    })
    .await;
    let (graph, id) = graph(&[]);
    let reply = exchange(&graph, id, get(b.port, "/"), &[]).await;
    assert_eq!(reply.status(), "200");
    assert_eq!(reply.body, b"partial");
    assert_eq!(reply.ended, Ended::Abort);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_framed() {
    let (bodies_tx, mut bodies) = mpsc::unbounded_channel();
    let b = backend(move |mut s, _| {
        let bodies_tx = bodies_tx.clone();
        async move {
            let mut buf = Vec::new();
            while let Some(head) = read_head(&mut s, &mut buf).await {
                let body = if head.contains("Transfer-Encoding: chunked") {
                    read_until(&mut s, &mut buf, b"0\r\n\r\n").await
                } else {
                    while buf.len() < 11 {
                        let mut chunk = [0u8; 64];
                        let n = s.read(&mut chunk).await.unwrap();
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    std::mem::take(&mut buf)
                };
                bodies_tx
                    .send(format!("{head}{}", String::from_utf8_lossy(&body)))
                    .unwrap();
                s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                    .await
                    .unwrap();
            }
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    let authority = format!("127.0.0.1:{}", b.port);
    let post = headers(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", &authority),
        (":path", "/items"),
        ("content-type", "text/plain"),
    ]);
    let reply = exchange(&graph, id, post, &[b"hello ", b"world"]).await;
    assert_eq!(reply.status(), "204");
    assert_eq!(
        bodies.recv().await.unwrap(),
        format!("POST /items HTTP/1.1\r\nHost: {authority}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")
    );
    let put = headers(&[
        (":method", "PUT"),
        (":scheme", "http"),
        (":authority", &authority),
        (":path", "/items/1"),
        ("content-length", "11"),
    ]);
    let reply = exchange(&graph, id, put, &[b"hello ", b"world"]).await;
    assert_eq!(reply.status(), "204");
    assert_eq!(
        bodies.recv().await.unwrap(),
        format!(
            "PUT /items/1 HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 11\r\n\r\nhello world"
        )
    );
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_response_body_arrives_whole() {
    const SIZE: usize = 100 * 1024;
    let b = backend(|mut s, _| async move {
        let mut buf = Vec::new();
        read_head(&mut s, &mut buf).await;
        let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        s.write_all(&body).await.unwrap();
        let _ = read_head(&mut s, &mut buf).await;
    })
    .await;
    let (graph, id) = graph(&[]);
    let reply = exchange(&graph, id, get(b.port, "/big"), &[]).await;
    assert_eq!(reply.body.len(), SIZE);
    assert!(reply
        .body
        .iter()
        .enumerate()
        .all(|(i, &c)| c == (i % 251) as u8));
    assert_eq!(reply.ended, Ended::End(None));
}
