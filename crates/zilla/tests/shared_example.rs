//! `examples/sse.proxy.shared` as shipped (only its two ports moved to free ones), through the
//! real binary with curl and the bundled backend (`zilla-sse-server`), as its README shows:
//! three clients, one upstream stream; a client reconnecting with `Last-Event-ID` replayed from
//! zilla's memory without a new upstream stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zilla_test_support::{free_port, sse_server_bin, Options, Zilla};

const SECOND: Duration = Duration::from_secs(1);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// curl's output, read on a thread.
fn curl(args: &[&str]) -> (Killed, mpsc::Receiver<String>) {
    let mut child = Command::new("curl")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl is installed (apt-get install curl)");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (Killed(child), rx)
}

/// Lines until `want` is among them (or the timeout).
fn lines_until(rx: &mpsc::Receiver<String>, want: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    while !lines.iter().any(|l| l == want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    lines
}

fn publish(input: u16, json: &str) {
    let mut c = TcpStream::connect(("127.0.0.1", input)).unwrap();
    c.write_all(json.as_bytes()).unwrap();
    c.write_all(b"\n").unwrap();
    let _ = c.shutdown(std::net::Shutdown::Write);
    let _ = c.read(&mut [0u8; 16]);
}

#[test]
fn the_shared_example_opens_one_upstream_and_replays_from_memory() {
    let (sse_port, input_port, port) = (free_port(), free_port(), free_port());
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
    let backend_out = backend.stdout.take().unwrap();
    let _backend = Killed(backend);
    let (opened_tx, opened) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(backend_out).lines().map_while(Result::ok) {
            if line.contains("stream opened") && opened_tx.send(line).is_err() {
                return;
            }
        }
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sse.proxy.shared");
    let config = std::fs::read_to_string(root.join("zilla.yaml"))
        .unwrap()
        .replace("port: 7114", &format!("port: {port}"))
        .replace("port: 8001", &format!("port: {sse_port}"));
    let zilla = Zilla::start(
        Path::new(env!("CARGO_BIN_EXE_zilla")),
        &config,
        Options::default(),
    );
    zilla.wait_for("listening on tcp://", 10 * SECOND);
    let url = format!("http://127.0.0.1:{port}/events");

    let clients: Vec<_> = (0..3).map(|_| curl(&["-sN", &url])).collect();
    let first = opened
        .recv_timeout(5 * SECOND)
        .expect("the upstream opened");
    assert!(first.contains("GET /events"), "{first}");
    std::thread::sleep(Duration::from_millis(500));
    publish(input_port, r#"{"data":"Hello, world","id":"1"}"#);
    publish(input_port, r#"{"data":"Hello again","id":"2"}"#);
    for (_, rx) in &clients {
        let lines = lines_until(rx, "data:Hello again", 5 * SECOND);
        let events: Vec<&String> = lines.iter().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            events,
            ["id:1", "data:Hello, world", "id:2", "data:Hello again"],
            "{lines:?}"
        );
    }
    assert!(
        opened.recv_timeout(Duration::from_millis(300)).is_err(),
        "three clients, one upstream stream"
    );

    // Reconnecting with Last-Event-ID 1: event 2 from zilla's window, no new upstream stream.
    let (_again, rx) = curl(&["-sN", "-H", "Last-Event-ID: 1", &url]);
    let lines = lines_until(&rx, "data:Hello again", 5 * SECOND);
    let events: Vec<&String> = lines.iter().filter(|l| !l.is_empty()).collect();
    assert_eq!(events, ["id:2", "data:Hello again"], "{lines:?}");
    assert!(
        opened.recv_timeout(Duration::from_millis(300)).is_err(),
        "the replay did not reach the backend"
    );
}
