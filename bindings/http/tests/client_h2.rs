//! The http client speaking HTTP/2 (`versions: [h2]`, prior knowledge) to backends run here with
//! the `h2` crate's server: driven directly through the graph, and end to end through the real
//! `zilla` binary with curl speaking HTTP/1.1 in front.

use std::future::{poll_fn, Future};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use binding_http as _;
use binding_tcp as _;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use proto_http::{Headers, Http, HttpBegin, HttpTrailers};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Barrier};
use zilla_engine::config::Config;
use zilla_engine::{build, BuildEnv};
use zilla_engine::{BindingId, Data, Frame, Graph, Properties, Rx, Tx};
use zilla_test_support::{free_port, zilla_bin, Options, Zilla};

/// Builds a graph `http0 (http client, versions: [h2]) -> tcp0 (tcp client)` with `properties`.
fn graph(properties: &[&str]) -> (Arc<Graph>, BindingId) {
    let yaml = "\
name: test
bindings:
  http0:
    type: http
    kind: client
    options:
      versions: [h2]
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

fn request(method: &str, port: u16, path: &str, extra: &[(&str, &str)]) -> Headers {
    let authority = format!("127.0.0.1:{port}");
    let mut h = headers(&[
        (":method", method),
        (":scheme", "http"),
        (":authority", &authority),
        (":path", path),
    ]);
    for (n, v) in extra {
        h.append(n.to_string(), v.to_string());
    }
    h
}

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

fn open(graph: &Arc<Graph>, id: BindingId, h: Headers) -> (Tx<Http>, Rx<Http>) {
    graph
        .open::<Http>(id, HttpBegin { headers: h }, None)
        .unwrap_or_else(|_| panic!("the http client refused the stream"))
}

async fn next(rx: &mut Rx<Http>) -> Option<Frame<Http>> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a reply frame within 10s")
}

async fn read_reply(rx: &mut Rx<Http>) -> Reply {
    let mut begin = None;
    let mut body = Vec::new();
    loop {
        match next(rx).await {
            Some(Frame::Begin(b)) => begin = Some(b.headers),
            Some(Frame::Data(d)) => {
                body.extend_from_slice(d.payload.as_deref().unwrap_or_default())
            }
            Some(Frame::Flush) => {}
            Some(Frame::End(ext)) => {
                let trailers = ext.map(|t| t.0);
                return Reply {
                    begin: begin.unwrap_or_default(),
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

async fn exchange(graph: &Arc<Graph>, id: BindingId, h: Headers) -> Reply {
    let (tx, mut rx) = open(graph, id, h);
    tx.end(None);
    read_reply(&mut rx).await
}

/// An HTTP/2 backend (prior knowledge): every request goes to `handler`.
struct Backend {
    port: u16,
    accepted: Arc<AtomicUsize>,
    /// Connections the client closed (or that failed).
    closed: Arc<AtomicUsize>,
}

async fn backend<F, Fut>(handler: F) -> Backend
where
    F: Fn(http::Request<RecvStream>, SendResponse<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    backend_with(None, handler).await
}

/// A backend announcing `max_streams` as its SETTINGS_MAX_CONCURRENT_STREAMS.
async fn backend_with<F, Fut>(max_streams: Option<u32>, handler: F) -> Backend
where
    F: Fn(http::Request<RecvStream>, SendResponse<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let ends = closed.clone();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let ends = ends.clone();
            tokio::spawn(async move {
                let mut builder = h2::server::Builder::new();
                if let Some(n) = max_streams {
                    builder.max_concurrent_streams(n);
                }
                if let Ok(mut conn) = builder.handshake(socket).await {
                    while let Some(Ok((request, respond))) = conn.accept().await {
                        tokio::spawn(handler(request, respond));
                    }
                }
                ends.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Backend {
        port,
        accepted,
        closed,
    }
}

fn response(status: u16, pairs: &[(&str, &str)]) -> http::Response<()> {
    let mut r = http::Response::builder().status(status);
    for (n, v) in pairs {
        r = r.header(*n, *v);
    }
    r.body(()).unwrap()
}

/// Reads a whole request body.
async fn body_of(body: &mut RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("request data");
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_is_sent_as_http2_and_the_response_proxied() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let b = backend(move |request, mut respond| {
        let seen_tx = seen_tx.clone();
        async move {
            let (parts, _) = request.into_parts();
            seen_tx.send(parts).unwrap();
            let mut send = respond
                .send_response(
                    response(
                        200,
                        &[("content-type", "text/plain"), ("x-upstream", "yes")],
                    ),
                    false,
                )
                .unwrap();
            send.send_data(Bytes::from_static(b"hello"), true).unwrap();
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    let h = request(
        "GET",
        b.port,
        "/hello?x=1",
        &[
            ("accept", "*/*"),
            ("connection", "keep-alive"),
            ("te", "gzip"),
        ],
    );
    let reply = exchange(&graph, id, h).await;
    assert_eq!(reply.status(), "200");
    assert_eq!(reply.begin.get_str("content-type"), Some("text/plain"));
    assert_eq!(reply.begin.get_str("x-upstream"), Some("yes"));
    assert_eq!(reply.body, b"hello");
    assert_eq!(reply.ended, Ended::End(None));

    let parts = seen.recv().await.unwrap();
    assert_eq!(parts.version, http::Version::HTTP_2);
    assert_eq!(parts.method, http::Method::GET);
    assert_eq!(
        parts.uri.to_string(),
        format!("http://127.0.0.1:{}/hello?x=1", b.port)
    );
    assert_eq!(parts.headers.get("accept").unwrap(), "*/*");
    assert!(parts.headers.get("connection").is_none());
    assert!(parts.headers.get("te").is_none());
    assert!(parts.headers.get("host").is_none());
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_connection() {
    // Neither response is sent before both requests arrived: both streams are open at once.
    let barrier = Arc::new(Barrier::new(2));
    let b = backend(move |request, mut respond| {
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            let body = format!("{} over {:?}", request.uri().path(), request.version());
            let mut send = respond.send_response(response(200, &[]), false).unwrap();
            send.send_data(Bytes::from(body), true).unwrap();
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    let one = exchange(&graph, id, request("GET", b.port, "/one", &[]));
    let two = exchange(&graph, id, request("GET", b.port, "/two", &[]));
    let (one, two) = tokio::join!(one, two);
    assert_eq!(one.body, b"/one over HTTP/2.0");
    assert_eq!(two.body, b"/two over HTTP/2.0");
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);

    // And again: the pooled connection is reused.
    let (three, four) = tokio::join!(
        exchange(&graph, id, request("GET", b.port, "/three", &[])),
        exchange(&graph, id, request("GET", b.port, "/four", &[])),
    );
    assert_eq!(three.body, b"/three over HTTP/2.0");
    assert_eq!(four.body, b"/four over HTTP/2.0");
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_concurrent_streams_queue_on_the_connection() {
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (o, m) = (open.clone(), most.clone());
    let b = backend_with(Some(1), move |request, mut respond| {
        let (open, most) = (o.clone(), m.clone());
        async move {
            let now = open.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            open.fetch_sub(1, Ordering::SeqCst);
            let mut send = respond.send_response(response(200, &[]), false).unwrap();
            send.send_data(Bytes::from(request.uri().path().to_string()), true)
                .unwrap();
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    let replies = futures_join(
        (0..4)
            .map(|i| exchange(&graph, id, request("GET", b.port, &format!("/{i}"), &[])))
            .collect(),
    )
    .await;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status(), "200");
        assert_eq!(reply.body, format!("/{i}").as_bytes());
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "one stream at a time");
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "queued, not a second connection"
    );
}

/// Awaits every future, concurrently, in order.
async fn futures_join<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut handles = Vec::new();
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    handles.extend(outputs.into_iter().map(|o| o.expect("done")));
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_idle_timeout() {
    let b = backend(|_, mut respond| async move {
        let mut send = respond.send_response(response(200, &[]), false).unwrap();
        send.send_data(Bytes::from_static(b"ok"), true).unwrap();
    })
    .await;
    let (graph, id) = graph(&["zilla.binding.http.client.idle.timeout=200ms"]);
    let reply = exchange(&graph, id, request("GET", b.port, "/", &[])).await;
    assert_eq!(reply.body, b"ok");
    let started = std::time::Instant::now();
    while b.closed.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the idle connection is closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = exchange(&graph, id, request("GET", b.port, "/", &[])).await;
    assert_eq!(reply.body, b"ok");
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_response_chunks_arrive_as_sent() {
    let (go_tx, go_rx) = mpsc::unbounded_channel::<()>();
    let go_rx = Arc::new(tokio::sync::Mutex::new(go_rx));
    let b = backend(move |_, mut respond| {
        let go_rx = go_rx.clone();
        async move {
            let mut send = respond
                .send_response(
                    response(200, &[("content-type", "text/event-stream")]),
                    false,
                )
                .unwrap();
            let mut go = go_rx.lock().await;
            for i in 1..=3 {
                send.send_data(Bytes::from(format!("data: event {i}\n\n")), false)
                    .unwrap();
                // The next event only once the client saw this one.
                if go.recv().await.is_none() {
                    return;
                }
            }
            send.send_data(Bytes::new(), true).unwrap();
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    let (tx, mut rx) = open(&graph, id, request("GET", b.port, "/events", &[]));
    tx.end(None);
    match next(&mut rx).await {
        Some(Frame::Begin(begin)) => {
            assert_eq!(begin.headers.get_str(":status"), Some("200"));
            assert_eq!(
                begin.headers.get_str("content-type"),
                Some("text/event-stream")
            );
        }
        other => panic!("expected begin, got {other:?}"),
    }
    for i in 1..=3 {
        match next(&mut rx).await {
            Some(Frame::Data(d)) => {
                assert_eq!(
                    d.payload.as_deref(),
                    Some(format!("data: event {i}\n\n").as_bytes())
                );
            }
            other => panic!("expected event {i}, got {other:?}"),
        }
        go_tx.send(()).unwrap();
    }
    assert!(matches!(next(&mut rx).await, Some(Frame::End(None))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_and_trailers_are_sent() {
    let b = backend(|request, mut respond| async move {
        let (parts, mut body) = request.into_parts();
        let received = body_of(&mut body).await;
        let trailers = body.trailers().await.unwrap();
        let mut send = respond
            .send_response(
                response(
                    200,
                    &[(
                        "x-length",
                        parts
                            .headers
                            .get("content-length")
                            .map_or("none", |v| v.to_str().unwrap()),
                    )],
                ),
                false,
            )
            .unwrap();
        send.send_data(Bytes::from(received), false).unwrap();
        let mut out = http::HeaderMap::new();
        let got = trailers
            .and_then(|t| t.get("x-checksum").cloned())
            .unwrap_or_else(|| http::HeaderValue::from_static("none"));
        out.insert("x-got-checksum", got);
        send.send_trailers(out).unwrap();
    })
    .await;
    let (graph, id) = graph(&[]);

    // With a length.
    let (mut tx, mut rx) = open(
        &graph,
        id,
        request("POST", b.port, "/upload", &[("content-length", "11")]),
    );
    for piece in [&b"hello "[..], b"world"] {
        tx.send(Frame::Data(Data::bytes(Bytes::from_static(piece))))
            .await
            .unwrap();
    }
    tx.end(None);
    let reply = read_reply(&mut rx).await;
    assert_eq!(reply.status(), "200");
    assert_eq!(reply.begin.get_str("x-length"), Some("11"));
    assert_eq!(reply.body, b"hello world");
    assert_eq!(
        reply.ended,
        Ended::End(Some(headers(&[("x-got-checksum", "none")])))
    );

    // Streamed without a length (larger than one window), with trailers.
    let (mut tx, mut rx) = open(&graph, id, request("PUT", b.port, "/upload", &[]));
    let big = vec![b'x'; 200_000];
    let sender = tokio::spawn(async move {
        for chunk in big.chunks(10_000) {
            tx.send(Frame::Data(Data::bytes(Bytes::copy_from_slice(chunk))))
                .await
                .unwrap();
        }
        tx.end(Some(HttpTrailers(headers(&[("x-checksum", "abc")]))));
    });
    let reply = read_reply(&mut rx).await;
    sender.await.unwrap();
    assert_eq!(reply.status(), "200");
    assert_eq!(reply.begin.get_str("x-length"), Some("none"));
    assert_eq!(reply.body.len(), 200_000);
    assert_eq!(
        reply.ended,
        Ended::End(Some(headers(&[("x-got-checksum", "abc")])))
    );
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_reset_cancels_only_its_stream() {
    let (reset_tx, reset_rx) = mpsc::unbounded_channel::<Reason>();
    let reset_rx = Arc::new(tokio::sync::Mutex::new(reset_rx));
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let seen = reasons.clone();
    let b = backend(move |request, mut respond| {
        let reset_tx = reset_tx.clone();
        let reset_rx = reset_rx.clone();
        let seen = seen.clone();
        async move {
            let mut send = respond.send_response(response(200, &[]), false).unwrap();
            if request.uri().path() == "/slow" {
                send.send_data(Bytes::from_static(b"first"), false).unwrap();
                let reason = poll_fn(|cx| send.poll_reset(cx)).await.unwrap();
                reset_tx.send(reason).unwrap();
            } else {
                // Answers only after the other stream was reset.
                let reason = reset_rx.lock().await.recv().await.unwrap();
                seen.lock().unwrap().push(reason);
                send.send_data(Bytes::from_static(b"still here"), true)
                    .unwrap();
            }
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    let (slow_tx, mut slow_rx) = open(&graph, id, request("GET", b.port, "/slow", &[]));
    slow_tx.end(None);
    assert!(matches!(next(&mut slow_rx).await, Some(Frame::Begin(_))));
    assert!(matches!(next(&mut slow_rx).await, Some(Frame::Data(_))));
    let (fast_tx, mut fast_rx) = open(&graph, id, request("GET", b.port, "/fast", &[]));
    fast_tx.end(None);
    assert!(matches!(next(&mut fast_rx).await, Some(Frame::Begin(_))));
    // The app resets its reply of /slow.
    drop(slow_rx);
    let reply = read_reply(&mut fast_rx).await;
    assert_eq!(reply.body, b"still here");
    assert_eq!(reply.ended, Ended::End(None));
    assert_eq!(*reasons.lock().unwrap(), vec![Reason::CANCEL]);

    // An app aborting its request cancels that stream too; the connection lives on.
    let (abort_tx, mut abort_rx) = open(
        &graph,
        id,
        request("POST", b.port, "/slow", &[("content-length", "100")]),
    );
    assert!(matches!(next(&mut abort_rx).await, Some(Frame::Begin(_))));
    let (fast_tx, mut fast_rx) = open(&graph, id, request("GET", b.port, "/fast", &[]));
    fast_tx.end(None);
    assert!(matches!(next(&mut fast_rx).await, Some(Frame::Begin(_))));
    abort_tx.abort(None);
    let reply = read_reply(&mut fast_rx).await;
    assert_eq!(reply.body, b"still here");
    assert_eq!(
        *reasons.lock().unwrap(),
        vec![Reason::CANCEL, Reason::CANCEL]
    );
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_is_502() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (graph, id) = graph(&[]);
    let reply = exchange(&graph, id, request("GET", port, "/", &[])).await;
    assert_eq!(reply.status(), "502");
    assert_eq!(reply.ended, Ended::End(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_before_the_response_is_502() {
    // A server that reads the preface then closes with GOAWAY, without answering.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(socket).await else {
                    return;
                };
                if let Some(Ok((_request, _respond))) = conn.accept().await {
                    conn.abrupt_shutdown(Reason::INTERNAL_ERROR);
                    let _ = poll_fn(|cx| conn.poll_closed(cx)).await;
                }
            });
        }
    });
    let (graph, id) = graph(&[]);
    let reply = exchange(&graph, id, request("GET", port, "/", &[])).await;
    assert_eq!(reply.status(), "502");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_head_in_time_is_504() {
    let (reset_tx, mut reset_rx) = mpsc::unbounded_channel();
    let b = backend(move |_, mut respond| {
        let reset_tx = reset_tx.clone();
        async move {
            let reason = poll_fn(|cx| respond.poll_reset(cx)).await;
            let _ = reset_tx.send(reason.ok());
        }
    })
    .await;
    let (graph, id) = graph(&["zilla.binding.http.client.response.timeout=300ms"]);
    let started = std::time::Instant::now();
    let reply = exchange(&graph, id, request("GET", b.port, "/", &[])).await;
    assert_eq!(reply.status(), "504");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The stream that timed out is cancelled upstream.
    let reason = tokio::time::timeout(Duration::from_secs(5), reset_rx.recv())
        .await
        .expect("reset within 5s");
    assert_eq!(reason, Some(Some(Reason::CANCEL)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_app_backpressures_only_its_stream() {
    // The backend writes 1 MiB on /big; the app reads nothing for a while. The backend cannot
    // get far beyond the windows, and /small on the same connection still completes.
    let written = Arc::new(AtomicUsize::new(0));
    let count = written.clone();
    let b = backend(move |request, mut respond| {
        let count = count.clone();
        async move {
            let mut send = respond.send_response(response(200, &[]), false).unwrap();
            if request.uri().path() == "/small" {
                send.send_data(Bytes::from_static(b"ok"), true).unwrap();
                return;
            }
            let mut left = 1 << 20;
            while left > 0 {
                send.reserve_capacity(16_384.min(left));
                let Some(Ok(n)) = poll_fn(|cx| send.poll_capacity(cx)).await else {
                    return;
                };
                let n = n.min(left);
                send.send_data(Bytes::from(vec![b'x'; n]), left == n)
                    .unwrap();
                left -= n;
                count.fetch_add(n, Ordering::SeqCst);
            }
        }
    })
    .await;
    let (graph, id) = graph(&[]);
    let (tx, mut big) = open(&graph, id, request("GET", b.port, "/big", &[]));
    tx.end(None);
    assert!(matches!(next(&mut big).await, Some(Frame::Begin(_))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stalled = written.load(Ordering::SeqCst);
    assert!(
        stalled < 400_000,
        "the backend wrote {stalled} bytes to an app that reads nothing"
    );
    let small = exchange(&graph, id, request("GET", b.port, "/small", &[])).await;
    assert_eq!(small.body, b"ok");
    let reply = read_reply(&mut big).await;
    assert_eq!(reply.body.len(), 1 << 20);
    assert_eq!(reply.ended, Ended::End(None));
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn curl_http11_in_front_http2_behind_through_the_binary() {
    let found = Command::new("curl").arg("--version").output().is_ok();
    assert!(found, "curl is not on PATH: apt-get install curl");
    // The backend runs on its own runtime.
    let (port_tx, port_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let b = backend(|request, mut respond| async move {
                let body = format!("{} over {:?}\n", request.uri(), request.version());
                let mut send = respond
                    .send_response(response(200, &[("content-type", "text/plain")]), false)
                    .unwrap();
                send.send_data(Bytes::from(body), true).unwrap();
            })
            .await;
            port_tx.send((b.port, b.accepted.clone())).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let (peer, accepted) = port_rx.blocking_recv().unwrap();
    let port = free_port();
    let config = format!(
        "\
name: test
bindings:
  tcp_server:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: http_server
  http_server:
    type: http
    kind: server
    options: {{ versions: [http/1.1] }}
    exit: http_client
  http_client:
    type: http
    kind: client
    options:
      versions: [h2]
      overrides: {{ \":authority\": \"127.0.0.1:{peer}\" }}
    exit: tcp_client
  tcp_client:
    type: tcp
    kind: client
"
    );
    let zilla = Zilla::start(&zilla_bin(), &config, Options::default());
    zilla.wait_for("listening on", Duration::from_secs(10));
    for path in ["/one", "/two?x=1"] {
        let out = Command::new("curl")
            .args(["--http1.1", "-sS", "--max-time", "10", "-i"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "curl failed: {text} {:?}", out.stderr);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/plain\r\n"), "{text}");
        assert!(
            text.ends_with(&format!("http://127.0.0.1:{peer}{path} over HTTP/2.0\n")),
            "{text}"
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "both requests ride one upstream HTTP/2 connection"
    );
}
