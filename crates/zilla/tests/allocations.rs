//! Heap allocations per event on the SSE proxy's path, counted: a figure that does not depend
//! on the machine's speed or load, so CI can hold it. The `examples/sse.proxy` chain runs in
//! process on one engine thread (the only thread whose allocations are counted); an event is
//! written to the backend and read by the client one at a time (one event per socket read on
//! every hop: the fan-out case), a thousand times.
//!
//! The budget is what the path allocates today plus a little: raising it is a decision, taken
//! with a reason in the commit. ARCHITECTURE.md ("Hot path") says what each allocation is.

use std::alloc::System;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use binding_http as _;
use binding_sse_client as _;
use binding_sse_server as _;
use binding_tcp as _;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use zilla_engine::config::Config;
use zilla_engine::{build, BuildEnv, Properties};
use zilla_test_support::{free_port, sse_proxy_config, SseBackend};

/// Allocations per event the path may make (measured: see the test's output).
const BUDGET: f64 = 2.2;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Reads from `c` until `n` whole events (`\n\n`) arrived.
fn read_events(c: &mut TcpStream, n: usize, buf: &mut [u8], last: &mut u8) {
    let mut seen = 0;
    while seen < n {
        let got = c.read(buf).expect("the stream stays open");
        assert!(got > 0, "the stream ended");
        for &b in &buf[..got] {
            if *last == b'\n' && b == b'\n' {
                seen += 1;
            }
            *last = b;
        }
    }
}

/// Allocations (every thread of the test) per event of `EVENTS` events written to the
/// backend and read through `port`, one at a time, after a warm-up.
fn per_event(port: u16, backend: &SseBackend, stream: usize) -> f64 {
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(backend.wait_requests(stream + 1, Duration::from_secs(5)));
    let event = format!("data:{}\n\n", "x".repeat(250));
    let (mut buf, mut last) = (vec![0u8; 64 * 1024], 0u8);
    // The response head and warm-up events (buffers and pools reach their steady size).
    for _ in 0..200 {
        assert!(backend.send_to(stream, event.as_bytes()));
        read_events(&mut client, 1, &mut buf, &mut last);
    }
    const EVENTS: usize = 1000;
    let region = Region::new(GLOBAL);
    for _ in 0..EVENTS {
        assert!(backend.send_to(stream, event.as_bytes()));
        read_events(&mut client, 1, &mut buf, &mut last);
    }
    let change = region.change();
    (change.allocations + change.reallocations) as f64 / EVENTS as f64
}

#[test]
fn allocations_per_event_stay_within_budget() {
    let backend = SseBackend::start();
    // What the test's own backend and client allocate, measured straight against the backend.
    let baseline = per_event(backend.port(), &backend, 0);
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
    let graph = runtime.block_on(async {
        let graph =
            build(&config, &BuildEnv::new(Properties::default())).unwrap_or_else(|d| panic!("{d}"));
        graph.attach().expect("listens");
        graph
    });
    // The engine runs on its own thread meanwhile.
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let engine = std::thread::spawn(move || runtime.block_on(stopped.notified()));
    let through = per_event(port, &backend, 1);
    stop.notify_one();
    engine.join().unwrap();
    drop(graph);
    let zilla = through - baseline;
    println!(
        "allocations per event through zilla: {zilla:.2} (measured {through:.2}, minus {baseline:.2} \
         by the test's backend and client; budget {BUDGET})"
    );
    assert!(
        zilla <= BUDGET,
        "{zilla:.2} allocations per event, over the budget of {BUDGET}: find the new one \
         (heaptrack, or this test), remove it, or raise the budget with a reason"
    );
}
