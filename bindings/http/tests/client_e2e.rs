//! End to end through the real `zilla` binary: curl -> tcp server -> http server -> http client
//! -> tcp client -> a backend on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zilla_test_support::{free_port, zilla_bin, Options, Zilla};

fn curl() -> &'static str {
    let found = Command::new("curl").arg("--version").output().is_ok();
    assert!(found, "curl is not on PATH: apt-get install curl");
    "curl"
}

/// A backend answering every request on a connection with its path and the connection's number.
fn backend() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { break };
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::spawn(move || {
                let mut reader = BufReader::new(socket.try_clone().expect("clone"));
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        if header == "\r\n" {
                            break;
                        }
                    }
                    let body = format!("{path} on connection {n}\n");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

#[test]
fn curl_requests_are_proxied_over_one_reused_upstream_connection() {
    let curl = curl();
    let (peer, accepted) = backend();
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
      versions: [http/1.1]
      overrides: {{ \":authority\": \"127.0.0.1:{peer}\" }}
    exit: tcp_client
  tcp_client:
    type: tcp
    kind: client
"
    );
    let zilla = Zilla::start(&zilla_bin(), &config, Options::default());
    zilla.wait_for("listening on", Duration::from_secs(10));
    for (i, path) in ["/one", "/two"].iter().enumerate() {
        let out = Command::new(curl)
            .args(["--http1.1", "-sS", "--max-time", "10", "-i"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "curl failed: {text} {:?}", out.stderr);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/plain\r\n"), "{text}");
        assert!(
            text.ends_with(&format!("{path} on connection 1\n")),
            "request {i} must reuse the first upstream connection: {text}"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // The upstream goes away: the next request is answered 502, not hung.
    let dead = free_port();
    let config = config.replace(&format!("127.0.0.1:{peer}"), &format!("127.0.0.1:{dead}"));
    drop(zilla);
    let zilla = Zilla::start(&zilla_bin(), &config, Options::default());
    zilla.wait_for("listening on", Duration::from_secs(10));
    let out = Command::new(curl)
        .args(["--http1.1", "-sS", "--max-time", "10", "-o", "/dev/null"])
        .args(["-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "502");
}
