//! Tasks per SSE stream on the `examples/sse.proxy` chain, counted on the engine's runtime: a
//! figure that does not depend on the machine, so CI holds it. Each task of a stream costs its
//! state in memory for as long as the stream is open, and a wake-up and a pipe hop per event;
//! the one-way hops (the sse client's parse, the http client's body decoding) run in their
//! reader's task instead (ARCHITECTURE.md, "Streams"). What is left: the tcp server's
//! connection, the http server's, the sse server's stream, and the tcp client's connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use binding_http as _;
use binding_sse_client as _;
use binding_sse_server as _;
use binding_tcp as _;
use zilla_engine::config::Config;
use zilla_engine::{build, BuildEnv, Properties};
use zilla_test_support::{free_port, sse_proxy_config, SseBackend};

/// Tasks an open SSE stream may keep (see the module's doc).
const TASKS_PER_STREAM: usize = 4;

const STREAMS: usize = 20;

/// Waits until `f` holds (the engine runs on its own thread).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_open_sse_stream_keeps_four_tasks() {
    let backend = SseBackend::start();
    let port = free_port();
    let config = Config::parse(
        "zilla.yaml",
        &sse_proxy_config(port, backend.port()),
        |_| None,
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = runtime.metrics();
    let graph = runtime.block_on(async {
        let graph =
            build(&config, &BuildEnv::new(Properties::default())).unwrap_or_else(|d| panic!("{d}"));
        graph.attach().expect("listens");
        graph
    });
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let engine = std::thread::spawn(move || runtime.block_on(stopped.notified()));
    let idle = metrics.num_alive_tasks();

    let mut clients = Vec::new();
    for _ in 0..STREAMS {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(
            b"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
        )
        .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        clients.push(c);
    }
    assert!(backend.wait_requests(STREAMS, Duration::from_secs(10)));
    // Every stream answered and carrying events.
    let mut buf = [0u8; 4096];
    assert_eq!(backend.broadcast(b"data:hello\n\n"), STREAMS);
    for c in &mut clients {
        let mut seen = Vec::new();
        while !seen.windows(12).any(|w| w == b"data:hello\n\n") {
            let n = c.read(&mut buf).expect("the stream is open");
            assert!(n > 0, "the stream ended");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(seen.starts_with(b"HTTP/1.1 200"), "{seen:?}");
    }
    let open = metrics.num_alive_tasks();
    let per_stream = (open - idle) as f64 / STREAMS as f64;
    println!("tasks per open SSE stream: {per_stream} ({idle} before, {open} with {STREAMS} open)");
    assert!(
        per_stream <= TASKS_PER_STREAM as f64,
        "{per_stream} tasks per stream, over {TASKS_PER_STREAM}: a hop that only transforms one \
         way should run in its reader's task (zilla_engine::Source)"
    );

    // Closed streams leave no task behind.
    drop(clients);
    eventually("the streams' tasks to end", || {
        metrics.num_alive_tasks() <= idle
    });
    stop.notify_one();
    engine.join().unwrap();
    drop(graph);
}
