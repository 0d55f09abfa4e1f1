//! Running many replicas: three zilla replicas behind HAProxy in front of one backend (the
//! bundled `zilla-sse-server`, which replays from `Last-Event-ID`), 300 SSE clients that
//! reconnect as EventSource does. One replica is stopped with SIGTERM while events flow: its
//! clients' streams end cleanly, they reconnect through HAProxy to the others with their last
//! event id, and no client misses an event.
//!
//! Needs `haproxy` (apt-get install haproxy; `.ci/run` installs it) and
//! `target/debug/zilla-sse-server` (`cargo xtask test` builds it).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use zilla_test_support::{free_port, sse_proxy_config, sse_server_bin, Options, Zilla};

const SECOND: Duration = Duration::from_secs(1);
const CLIENTS: usize = 300;
const EVENTS: u64 = 60;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_config(port: u16, replicas: &[u16]) -> String {
    let servers: Vec<String> = replicas
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!("    server zilla{i} 127.0.0.1:{p} check inter 100ms fall 1 rise 2\n")
        })
        .collect();
    format!(
        "global\n    maxconn 4096\n\
defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\n    retries 3\n    option redispatch\n\
frontend sse\n    bind 127.0.0.1:{port}\n    default_backend zillas\n\
backend zillas\n    balance roundrobin\n{}",
        servers.concat()
    )
}

/// One client: reads events, and when its stream ends reconnects (after 100 ms, as an
/// EventSource's retry) with `Last-Event-ID`, until it has event `EVENTS`.
async fn client(url: String, reconnects: Arc<AtomicUsize>) -> Vec<u64> {
    let http = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut ids = Vec::new();
    let deadline = Instant::now() + 60 * SECOND;
    while ids.last() != Some(&EVENTS) && Instant::now() < deadline {
        let mut request = http.get(&url).header("accept", "text/event-stream");
        if let Some(last) = ids.last() {
            request = request.header("last-event-id", last.to_string());
            reconnects.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(response) = request.send().await {
            if response.status() == 200 {
                let mut events =
                    eventsource_stream::Eventsource::eventsource(response.bytes_stream());
                while let Some(Ok(event)) = events.next().await {
                    if let Ok(id) = event.id.parse::<u64>() {
                        ids.push(id);
                    }
                    if ids.last() == Some(&EVENTS) {
                        return ids;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ids
}

#[test]
fn stopping_a_replica_loses_no_event() {
    let haproxy_bin = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("haproxy is not installed: apt-get install haproxy");

    // The backend, counting the streams it serves.
    let (sse_port, input_port) = (free_port(), free_port());
    let mut backend = Command::new(sse_server_bin())
        .args([
            "--sse-port",
            &sse_port.to_string(),
            "--input-port",
            &input_port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let opened = Arc::new(AtomicUsize::new(0));
    let out = backend.stdout.take().unwrap();
    let counted = opened.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("stream opened") {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let _backend = Killed(backend);
    let deadline = Instant::now() + 10 * SECOND;
    while TcpStream::connect(("127.0.0.1", input_port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }

    // Three replicas, each draining for a second when stopped.
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut replicas: Vec<Zilla> = ports
        .iter()
        .map(|p| {
            Zilla::start(
                Path::new(env!("CARGO_BIN_EXE_zilla")),
                &sse_proxy_config(*p, sse_port),
                Options {
                    args: vec!["-P".into(), "zilla.engine.drain.timeout=1s".into()],
                    ..Options::default()
                },
            )
        })
        .collect();
    for r in &replicas {
        r.wait_for("listening on", 10 * SECOND);
    }
    let front = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(front, &ports)).unwrap();
    let _haproxy = Killed(
        Command::new(haproxy_bin)
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + 10 * SECOND;
    while TcpStream::connect(("127.0.0.1", front)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let reconnects = Arc::new(AtomicUsize::new(0));
    let url = format!("http://127.0.0.1:{front}/events");
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| runtime.spawn(client(url.clone(), reconnects.clone())))
        .collect();
    let deadline = Instant::now() + 20 * SECOND;
    while opened.load(Ordering::Relaxed) < CLIENTS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        opened.load(Ordering::Relaxed),
        CLIENTS,
        "every client's stream reached the backend"
    );

    // Publish while one replica stops.
    let publisher = Arc::new(Mutex::new(
        TcpStream::connect(("127.0.0.1", input_port)).unwrap(),
    ));
    let publish = |i: u64| {
        let mut p = publisher.lock().unwrap();
        writeln!(p, "{{\"data\":\"event {i}\",\"id\":\"{i}\"}}").unwrap();
    };
    let stopped = replicas.remove(0);
    for i in 1..=EVENTS {
        publish(i);
        if i == EVENTS / 3 {
            stopped.terminate();
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let results: Vec<Vec<u64>> = runtime.block_on(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let expected: Vec<u64> = (1..=EVENTS).collect();
    let incomplete: Vec<&Vec<u64>> = results.iter().filter(|ids| **ids != expected).collect();
    assert!(
        incomplete.is_empty(),
        "{} of {CLIENTS} clients missed or repeated events, e.g. {:?}",
        incomplete.len(),
        incomplete.first()
    );
    let reconnected = reconnects.load(Ordering::Relaxed);
    assert!(
        (CLIENTS / 6..CLIENTS).contains(&reconnected),
        "{reconnected} reconnects: the stopped replica's clients (about a third) moved"
    );
    let mut stopped = stopped;
    let status = stopped
        .wait_exit(10 * SECOND)
        .expect("the stopped replica exits");
    assert_eq!(status.code(), Some(0));
}
