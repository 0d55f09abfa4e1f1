//! Connections that never get going are closed through the real binary, with the request
//! timeout at 300 ms: an HTTP/2 connection that sent only its preface (or the preface and
//! SETTINGS) and no stream, and one that never even sent the preface. Before, none had a
//! deadline and each held its socket and task forever.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use zilla_test_support::{free_port, zilla_bin, Options, Zilla};

fn start() -> (Zilla, u16) {
    let port = free_port();
    let config = format!(
        "name: test
bindings:
  tcp0:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: http0
  http0:
    type: http
    kind: server
    options: {{ versions: [ h2, http/1.1 ] }}
    routes:
      - when: [ {{ headers: {{ ':path': /never }} }} ]
        exit: echo0
  echo0:
    type: echo
    kind: server
"
    );
    let zilla = Zilla::start(
        &zilla_bin(),
        &config,
        Options {
            args: vec!["-Pzilla.binding.http.server.request.timeout=300ms".into()],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", Duration::from_secs(20));
    (zilla, port)
}

/// Sends `bytes`, then reads until the connection ends; how long that took, and what came.
fn ends_after(port: u16, bytes: &[u8]) -> (Duration, Vec<u8>) {
    use std::io::Write;
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(bytes).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0; 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection was still open after 5s ({e}); got {got:02x?}"),
        }
    }
    (started.elapsed(), got)
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const GOAWAY: &[u8] = &[0, 0, 8, 7, 0, 0, 0, 0, 0];

#[test]
fn http2_connections_without_a_stream_are_closed() {
    let (_zilla, port) = start();
    for (what, bytes) in [
        ("the preface alone", PREFACE.to_vec()),
        ("the preface and SETTINGS", [PREFACE, SETTINGS].concat()),
    ] {
        let (took, got) = ends_after(port, &bytes);
        assert!(took < Duration::from_secs(3), "{what}: {took:?}");
        assert!(
            got.windows(GOAWAY.len()).any(|w| w == GOAWAY),
            "{what}: a GOAWAY before closing: {got:02x?}"
        );
    }
}

#[test]
fn a_connection_that_sends_nothing_is_closed() {
    let (_zilla, port) = start();
    let (took, got) = ends_after(port, b"");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(got.is_empty(), "{got:02x?}");
}
