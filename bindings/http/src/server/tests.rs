//! In-process tests of the http server: a graph built from a real config, raw request bytes
//! written on the `tcp` stream the server accepts, the exact response bytes read back. A test
//! application binding (`test-app`) and a test guard (`test-guard`) are registered for this
//! test binary only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use proto_http::{Headers, Http, HttpBegin, HttpReset, HttpTrailers};
use proto_tcp::{Tcp, TcpBegin};
use zilla_engine::config::Config;
use zilla_engine::{build, BuildEnv, ConfigErrors};
use zilla_engine::{
    AnyHandler, Binding, BindingContext, BindingDescriptor, BindingFactory, BindingId, Frame,
    Graph, Guard, GuardDescriptor, Handler, Kind, Nothing, PluginContext, PluginFactory,
    Properties, Protocols, Reset, Rx, Session, Stream, Tx,
};

// ---- the test application -------------------------------------------------------------------

struct AppFactory;

zilla_engine::inventory::submit! { BindingDescriptor::new::<AppFactory>() }

impl BindingFactory for AppFactory {
    const TYPE: &'static str = "test-app";
    const KINDS: &'static [Kind] = &[Kind::Server];
    type Options = Nothing;
    type When = Nothing;
    type With = Nothing;

    fn protocols(_: Kind) -> Protocols {
        Protocols::accepts::<Http>()
    }

    fn build(_: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        Ok(Box::new(App))
    }
}

struct App;

impl Binding for App {
    fn handler(&self) -> Option<AnyHandler> {
        Some(AnyHandler::new::<Http>(Arc::new(App)))
    }
}

/// How many `/gone` responses saw their client leave.
static GONE: AtomicUsize = AtomicUsize::new(0);

fn status_begin(status: u16, headers: &[(&str, &str)]) -> Frame<Http> {
    let mut begin = HttpBegin::status(status);
    for (n, v) in headers {
        begin
            .headers
            .append(Bytes::from(n.to_string()), Bytes::from(v.to_string()));
    }
    Frame::Begin(begin)
}

impl Handler<Http> for App {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Http>) -> Result<(), Reset<Http>> {
        let path = stream
            .begin
            .headers
            .get_str(":path")
            .unwrap_or("")
            .to_string();
        match path.as_str() {
            "/reject" => return Err(Reset(None)),
            "/reject405" => {
                let mut headers = Headers::new();
                headers.append("allow", "GET");
                return Err(Reset::with(HttpReset {
                    status: 405,
                    headers,
                }));
            }
            _ => {}
        }
        graph.spawn(app(path, stream));
        Ok(())
    }
}

async fn app(path: String, stream: Stream<Http>) {
    let Stream {
        begin,
        session,
        mut rx,
        mut tx,
        ..
    } = stream;
    match path.as_str() {
        // Replies with the request headers and body, chunked, and the trailers it got.
        p if p.starts_with("/echo") || p.starts_with("/items") || p.starts_with("/secure") => {
            let mut body = Vec::new();
            for (n, v) in begin.headers.iter() {
                body.extend_from_slice(n);
                body.extend_from_slice(b"=");
                body.extend_from_slice(v);
                body.extend_from_slice(b"\n");
            }
            if let Some(s) = &session {
                body.extend_from_slice(format!("identity={:?}\n", s.identity).as_bytes());
            }
            let mut trailers = None;
            while let Some(frame) = rx.recv().await {
                match frame {
                    Frame::Data(d) => body.extend_from_slice(&d.payload.unwrap_or_default()),
                    Frame::End(ext) => {
                        trailers = ext;
                        break;
                    }
                    Frame::Abort(_) => return,
                    _ => {}
                }
            }
            if let Some(t) = trailers {
                for (n, v) in t.0.iter() {
                    body.extend_from_slice(b"trailer ");
                    body.extend_from_slice(n);
                    body.extend_from_slice(b"=");
                    body.extend_from_slice(v);
                    body.extend_from_slice(b"\n");
                }
            }
            let _ = tx.send(status_begin(200, &[])).await;
            let _ = tx.data(Bytes::from(body)).await;
            tx.end(None);
        }
        // An event stream: one event now, one when the test asks, until the client leaves.
        "/gone" | "/events" => {
            if tx
                .send(status_begin(200, &[("content-type", "text/event-stream")]))
                .await
                .is_err()
            {
                return;
            }
            let _ = tx.data(Bytes::from_static(b"data: one\n\n")).await;
            tokio::select! {
                _ = tx.reset() => { GONE.fetch_add(1, Ordering::SeqCst); }
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
            drop(rx);
        }
        // A guarded event stream reporting challenges as events.
        "/session" => {
            let _ = tx
                .send(status_begin(200, &[("content-type", "text/event-stream")]))
                .await;
            // `challenged` also wakes on reset; a reset makes the next write fail.
            loop {
                let _ = tx.challenged().await;
                if tx
                    .data(Bytes::from_static(b"event: challenge\n\n"))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        "/trailers" => {
            let _ = tx
                .send(status_begin(200, &[("content-type", "text/plain")]))
                .await;
            let _ = tx.data(Bytes::from_static(b"abc")).await;
            let mut t = Headers::new();
            t.append("x-checksum", "42");
            tx.end(Some(HttpTrailers(t)));
        }
        "/length" => {
            let _ = tx.send(status_begin(200, &[("content-length", "5")])).await;
            let _ = tx.data(Bytes::from_static(b"hello")).await;
            tx.end(None);
        }
        "/abort" => {
            let _ = tx.send(status_begin(200, &[])).await;
            let _ = tx.data(Bytes::from_static(b"partial")).await;
            tx.abort(None);
        }
        // Refused after the open: both halves dropped before a reply.
        "/drop" => {}
        _ => {
            let _ = tx.send(status_begin(200, &[("content-length", "0")])).await;
            tx.end(None);
        }
    }
}

// ---- the test guard ---------------------------------------------------------------------------

#[derive(Debug)]
struct TestGuard(zilla_engine::GuardId);

struct TestGuardFactory;

zilla_engine::inventory::submit! { GuardDescriptor::new::<TestGuardFactory>() }

impl PluginFactory<dyn Guard> for TestGuardFactory {
    const TYPE: &'static str = "test-guard";
    type Options = Nothing;

    fn build(cx: &PluginContext, _: Option<Nothing>) -> Result<Arc<dyn Guard>, ConfigErrors> {
        Ok(Arc::new(TestGuard(cx.guard_id())))
    }
}

impl Guard for TestGuard {
    /// `alice` is valid for long; `short` is challenged after 300 ms and expires after 900 ms.
    fn reauthorize(&self, credentials: &str) -> Option<Arc<Session>> {
        let now = SystemTime::now();
        let (challenge, expire) = match credentials {
            "alice" => (None, None),
            "short" => (
                Some(now + Duration::from_millis(300)),
                Some(now + Duration::from_millis(900)),
            ),
            _ => return None,
        };
        Some(Arc::new(Session {
            guard: self.0,
            identity: Some(Arc::from(credentials)),
            expires_at: expire,
            challenge_at: challenge,
            attributes: Vec::new(),
            data: Box::new(()),
        }))
    }

    fn verify(&self, _: &Session, roles: &[String]) -> bool {
        !roles.iter().any(|r| r == "nobody")
    }
}

// ---- the harness ------------------------------------------------------------------------------

const CONFIG: &str = r#"
name: test
guards:
  g0:
    type: test-guard
bindings:
  http0:
    type: http
    kind: server
    routes:
      - when: [ { headers: { ":path": "/items/{id}" } } ]
        with: { headers: { overrides: { x-item: "item-${params.id}" } } }
        exit: app0
      - when: [ { headers: { ":path": "/none" } } ]
        exit: app0
      - when: [ { headers: { ":path": "/*", ":authority": "*:80" } } ]
        exit: app0
  app0:
    type: test-app
    kind: server
  http1:
    type: http
    kind: server
    options:
      authorization:
        g0:
          credentials:
            headers: { authorization: "Bearer {credentials}" }
            query: { access_token: "{credentials}" }
    routes:
      - when: [ { headers: { ":path": "/secure/*" } } ]
        guarded: { g0: [] }
        exit: app0
      - when: [ { headers: { ":path": "/session" } } ]
        guarded: { g0: [] }
        exit: app0
      - when: [ { headers: { ":path": "/admin" } } ]
        guarded: { g0: [ nobody ] }
        exit: app0
"#;

const OPEN: BindingId = BindingId(0);
const GUARDED: BindingId = BindingId(2);

fn graph() -> Arc<Graph> {
    let config = Config::parse("zilla.yaml", CONFIG, |_| None).expect("config parses");
    let env = BuildEnv::new(Properties::default());
    build(&config, &env).unwrap_or_else(|d| panic!("graph builds: {d:?}"))
}

/// One client connection, as the tcp server would hand it to the http server.
struct Client {
    tx: Option<Tx<Tcp>>,
    rx: Rx<Tcp>,
    buf: BytesMut,
}

impl Client {
    fn connect(graph: &Arc<Graph>, server: BindingId) -> Client {
        let (tx, rx) = graph
            .open::<Tcp>(server, TcpBegin::default(), None)
            .expect("server accepts");
        Client {
            tx: Some(tx),
            rx,
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, bytes: &str) {
        let tx = self.tx.as_mut().expect("open");
        tx.data(Bytes::from(bytes.to_string())).await.expect("sent");
    }

    /// Reads exactly `expected`.
    async fn expect(&mut self, expected: &str) {
        while self.buf.len() < expected.len() {
            match self.frame().await {
                Some(Frame::Data(d)) => self.buf.extend_from_slice(&d.payload.unwrap_or_default()),
                Some(Frame::Begin(_) | Frame::Flush) => {}
                other => panic!(
                    "expected {expected:?}, got {:?} then {other:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
        let got = self.buf.split_to(expected.len());
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    /// Reads everything up to the end of the connection; returns it with the terminal frame.
    async fn rest(&mut self) -> (String, &'static str) {
        loop {
            match self.frame().await {
                Some(Frame::Data(d)) => self.buf.extend_from_slice(&d.payload.unwrap_or_default()),
                Some(Frame::Begin(_) | Frame::Flush) => {}
                Some(f) => {
                    let all = String::from_utf8_lossy(&self.buf).to_string();
                    self.buf.clear();
                    return (all, f.kind());
                }
                None => panic!("frames after the end"),
            }
        }
    }

    async fn frame(&mut self) -> Option<Frame<Tcp>> {
        tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .expect("no response within 5s")
    }
}

// ---- tests ------------------------------------------------------------------------------------

#[tokio::test]
async fn each_data_frame_is_written_as_one_chunk_at_once() {
    let g = graph();
    let mut c = Client::connect(&g, OPEN);
    c.send("GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    // The first event arrives while the response is still open.
    c.expect("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nb\r\ndata: one\n\n\r\n").await;
}

#[tokio::test]
async fn client_leaving_resets_the_response_at_once() {
    let g = graph();
    let mut c = Client::connect(&g, OPEN);
    c.send("GET /gone HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    c.expect("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nb\r\ndata: one\n\n\r\n").await;
    let before = GONE.load(Ordering::SeqCst);
    drop(c.tx.take()); // the client resets its connection
    for _ in 0..100 {
        if GONE.load(Ordering::SeqCst) > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the application did not see the client leave within 1s");
}

#[tokio::test]
async fn rejected_requests_get_404_or_the_reset_status_and_keep_the_connection() {
    let g = graph();
    let mut c = Client::connect(&g, OPEN);
    c.send("GET /reject HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    c.expect("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        .await;
    c.send("GET /reject405 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    c.expect("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n\r\n")
        .await;
    c.send("GET /drop HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    c.expect("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        .await;
}

#[tokio::test]
async fn no_route_is_404_and_closes() {
    let g = graph();
    let mut c = Client::connect(&g, OPEN);
    c.send("GET /x HTTP/1.1\r\nHost: localhost:8080\r\n\r\n")
        .await;
    let (bytes, end) = c.rest().await;
    assert_eq!(bytes, "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
    assert_eq!(end, "END");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_with_bodies() {
    let g = graph();
    let mut c = Client::connect(&g, OPEN);
    c.send(concat!(
        "POST /echo/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
        "POST /echo/2 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        "3\r\nabc\r\n0\r\nX-Sum: 7\r\n\r\n",
        "GET /length HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    ))
    .await;
    let body1 = ":method=POST\n:scheme=http\n:authority=localhost:80\n:path=/echo/1\ncontent-length=5\nhello";
    c.expect(&format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body1}\r\n0\r\n\r\n",
        body1.len()
    ))
    .await;
    let body2 =
        ":method=POST\n:scheme=http\n:authority=localhost:80\n:path=/echo/2\nabctrailer x-sum=7\n";
    c.expect(&format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body2}\r\n0\r\n\r\n",
        body2.len()
    ))
    .await;
    let (rest, end) = c.rest().await;
    assert_eq!(
        rest,
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    );
    assert_eq!(end, "END");
}

#[tokio::test]
async fn trailers_abort_and_head() {
    let g = graph();
    let mut c = Client::connect(&g, OPEN);
    c.send("GET /trailers HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    c.expect("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 42\r\n\r\n").await;
    c.send("HEAD /length HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    c.expect("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        .await;
    c.send("GET /abort HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let (bytes, end) = c.rest().await;
    assert_eq!(
        bytes,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n"
    );
    assert_eq!(end, "ABORT", "an aborted response aborts the connection");
}

#[tokio::test]
async fn route_params_become_header_overrides() {
    let g = graph();
    let mut c = Client::connect(&g, OPEN);
    c.send("GET /items/42?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let body =
        ":method=GET\n:scheme=http\n:authority=localhost:80\n:path=/items/42?x=1\nx-item=item-42\n";
    c.expect(&format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    ))
    .await;
}

#[tokio::test]
async fn decode_errors_answer_and_close() {
    let g = graph();
    for (request, status) in [
        ("GET / HTTP/1.1\r\n\r\n", "400 Bad Request"),
        ("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", "501 Not Implemented"),
        (
            "GET / HTTP/3.0\r\nHost: a\r\n\r\n",
            "505 HTTP Version Not Supported",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            "501 Not Implemented",
        ),
    ] {
        let mut c = Client::connect(&g, OPEN);
        c.send(request).await;
        let (bytes, end) = c.rest().await;
        assert_eq!(
            bytes,
            format!("HTTP/1.1 {status}\r\nConnection: close\r\n\r\n")
        );
        assert_eq!(end, "END");
    }
}

#[tokio::test]
async fn authorization_401_403_and_session() {
    let g = graph();
    for (request, expected) in [
        (
            "GET /secure/a HTTP/1.1\r\nHost: a\r\n\r\n",
            "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n",
        ),
        (
            "GET /secure/a HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer mallory\r\n\r\n",
            "HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n",
        ),
        // A route for the path, but not for this session's roles: 403 (Zilla: 404).
        (
            "GET /admin HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer alice\r\n\r\n",
            "HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n",
        ),
        (
            "GET /nowhere HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer alice\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let mut c = Client::connect(&g, GUARDED);
        c.send(request).await;
        assert_eq!(c.rest().await.0, expected);
    }
    let mut c = Client::connect(&g, GUARDED);
    c.send("GET /secure/a?access_token=alice HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let body = ":method=GET\n:scheme=http\n:authority=a:80\n:path=/secure/a?access_token=alice\nidentity=Some(\"alice\")\n";
    c.expect(&format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    ))
    .await;
    c.send("POST /anything HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer alice\r\nContent-Type: application/x-challenge-response\r\nContent-Length: 0\r\n\r\n").await;
    c.expect("HTTP/1.1 204 No Content\r\n\r\n").await;
}

#[tokio::test]
async fn guarded_response_is_challenged_then_ended_at_expiry() {
    let g = graph();
    let mut c = Client::connect(&g, GUARDED);
    let started = std::time::Instant::now();
    c.send("GET /session HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer short\r\n\r\n")
        .await;
    c.expect(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    c.expect("12\r\nevent: challenge\n\n\r\n").await;
    let challenged = started.elapsed();
    assert!(challenged >= Duration::from_millis(250), "{challenged:?}");
    let (rest, end) = c.rest().await;
    assert_eq!(rest, "");
    assert_eq!(end, "ABORT");
    let expired = started.elapsed();
    assert!(expired >= Duration::from_millis(850), "{expired:?}");
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let bad = r#"
name: test
bindings:
  http0:
    type: http
    kind: server
    options:
      versions: []
      authorization:
        nope:
          credentials:
            headers: { authorization: "Bearer" }
    routes:
      - when: [ { headers: { ":path": "/a/{id" } } ]
        exit: app0
  app0:
    type: test-app
    kind: server
"#;
    let config = Config::parse("zilla.yaml", bad, |_| None).expect("config parses");
    let env = BuildEnv::new(Properties::default());
    let errors = format!("{:?}", build(&config, &env).expect_err("invalid"));
    for needle in [
        "no HTTP version allowed",
        "no guard named 'nope'",
        "unclosed '{'",
    ] {
        assert!(errors.contains(needle), "{needle} in {errors}");
    }
}

// ---- the session timer ------------------------------------------------------------------------

/// A guarded stream waits on its session's deadlines beside every frame: the sleep is made once
/// and reused (not put in and out of the timer wheel per frame), and still fires on time, first
/// the challenge, then the expiry.
#[tokio::test]
async fn a_session_timer_makes_its_sleep_once_and_fires_on_time() {
    let now = SystemTime::now();
    let session = Arc::new(Session {
        guard: zilla_engine::GuardId(0),
        identity: Some(Arc::from("alice")),
        expires_at: Some(now + Duration::from_millis(300)),
        challenge_at: Some(now + Duration::from_millis(100)),
        attributes: Vec::new(),
        data: Box::new(()),
    });
    let mut timer = super::SessionTimer::new(Some(&session), None, None);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    // Frames come and go: the timer is polled many times before a deadline.
    assert!(timer.poll_next(&mut cx).is_pending());
    let made = timer
        .sleep
        .as_ref()
        .map(|s| std::ptr::from_ref::<tokio::time::Sleep>(s))
        .expect("a sleep for the deadline");
    for _ in 0..100 {
        assert!(timer.poll_next(&mut cx).is_pending());
    }
    assert_eq!(
        timer
            .sleep
            .as_ref()
            .map(|s| std::ptr::from_ref::<tokio::time::Sleep>(s)),
        Some(made),
        "the same sleep, not one per poll"
    );
    let started = std::time::Instant::now();
    assert_eq!(timer.next().await, super::TimerEvent::Challenge);
    let at = started.elapsed();
    assert!(
        at >= Duration::from_millis(50) && at < Duration::from_secs(2),
        "{at:?}"
    );
    assert_eq!(timer.next().await, super::TimerEvent::Expire);
    let at = started.elapsed();
    assert!(
        at >= Duration::from_millis(150) && at < Duration::from_secs(2),
        "{at:?}"
    );
    // The same sleep, moved to the later deadline.
    assert_eq!(
        timer
            .sleep
            .as_ref()
            .map(|s| std::ptr::from_ref::<tokio::time::Sleep>(s)),
        Some(made)
    );
    // Nothing left to wait for: no sleep kept for the rest of the stream.
    assert!(timer.poll_next(&mut cx).is_pending());
    assert!(timer.sleep.is_none());
}
