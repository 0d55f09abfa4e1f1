//! The http server through the real `zilla` binary, driven by `curl` (HTTP/1.1 and HTTP/2 prior
//! knowledge) over real sockets: server-generated answers (404, CORS) and a proxied exchange
//! (tcp server -> http server -> http client -> tcp client -> a raw HTTP/1.1 backend).
//!
//! Needs `target/debug/zilla` (`cargo build -p zilla`) and `curl` (`apt-get install curl`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use zilla_test_support::{free_port, zilla_bin, Options, Zilla};

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "5"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("curl not runnable ({e}): apt-get install curl"));
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

/// Starts zilla: tcp server on `port` -> http server (with `options`) -> http client -> tcp
/// client to `backend`.
fn start(port: u16, options: &str, backend: u16) -> Zilla {
    let config = format!(
        r#"name: test
bindings:
  tcp0:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: http0
  http0:
    type: http
    kind: server
{options}
    routes:
      - when: [ {{ headers: {{ ":path": "/api/*" }} }} ]
        exit: http1
  http1:
    type: http
    kind: client
    options: {{ versions: [ http/1.1 ] }}
    exit: tcp1
  tcp1:
    type: tcp
    kind: client
    options: {{ host: 127.0.0.1, port: {backend} }}
"#
    );
    let z = Zilla::start(&zilla_bin(), &config, Options::default());
    z.wait_for("listening on", Duration::from_secs(10));
    z
}

#[test]
fn no_route_is_404_on_http1_and_h2() {
    let port = free_port();
    let _z = start(port, "", free_port());
    let url = format!("http://127.0.0.1:{port}/other");
    assert_eq!(
        curl(&["--http1.1", &url]),
        "HTTP/1.1 404 Not Found\nConnection: close\n\n"
    );
    assert_eq!(
        curl(&["--http2-prior-knowledge", &url]),
        "HTTP/2 404 \ncontent-length: 0\n\n"
    );
}

#[test]
fn cors_preflight_and_refusal() {
    let port = free_port();
    let options = "    options:\n      access-control:\n        policy: cross-origin\n        allow:\n          origins: [ \"http://app.example\" ]\n          credentials: true\n";
    let _z = start(port, options, free_port());
    let url = format!("http://127.0.0.1:{port}/api/items");
    let preflight = curl(&[
        "--http1.1",
        "-X",
        "OPTIONS",
        "-H",
        "Origin: http://app.example",
        "-H",
        "Access-Control-Request-Method: PUT",
        "-H",
        "Access-Control-Request-Headers: x-a",
        &url,
    ]);
    assert_eq!(
        preflight,
        "HTTP/1.1 204 No Content\nAccess-Control-Allow-Origin: http://app.example\nAccess-Control-Allow-Credentials: true\nVary: origin\nAccess-Control-Allow-Methods: PUT\nAccess-Control-Allow-Headers: x-a\n\n"
    );
    let refused = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Origin: http://evil.example",
        &url,
    ]);
    assert!(refused.starts_with("HTTP/2 403"), "{refused}");
}

/// A backend that answers one request per connection with a fixed body, reporting the request
/// head it received.
fn backend() -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            let mut reader = BufReader::new(socket.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send(format!("{head}{}", String::from_utf8_lossy(&body)));
            let _ = socket.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
            );
        }
    });
    (port, rx)
}

#[test]
fn proxied_request_and_response_on_http1_and_h2() {
    let (backend, heads) = backend();
    let port = free_port();
    let _z = start(port, "", backend);
    let url = format!("http://127.0.0.1:{port}/api/items?x=1");

    let h1 = curl(&["--http1.1", "-d", "payload", &url]);
    assert_eq!(
        h1,
        "HTTP/1.1 200 OK\nContent-Type: text/plain\nTransfer-Encoding: chunked\n\nhello world"
    );
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        head.starts_with("POST /api/items?x=1 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.ends_with("payload"), "{head}");

    let h2 = curl(&["--http2-prior-knowledge", &url]);
    assert_eq!(h2, "HTTP/2 200 \ncontent-type: text/plain\n\nhello world");
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        head.starts_with("GET /api/items?x=1 HTTP/1.1\r\n"),
        "{head}"
    );
}
