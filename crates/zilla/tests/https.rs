//! The edge a browser talks to: curl over HTTPS (HTTP/1.1 and HTTP/2 by ALPN) through
//! tcp → tls → http server, proxied by the http client to a plain HTTP backend, and static files
//! through http-filesystem → filesystem. Certificates are generated for the test (openssl CLI).

#[path = "../../../bindings/tls/tests/support/mod.rs"]
mod tls_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tls_support::Pki;
use zilla_test_support::{free_port, Options, Zilla};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zilla"))
}

/// A plain HTTP/1.1 backend answering every request with its method and path (keep-alive).
fn backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let reply = format!("backend saw {}", line.trim_end());
                    let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{reply}", reply.len());
                }
            });
        }
    });
    port
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-w",
            "\n%{http_version} %{http_code} %{content_type}",
        ])
        .args(args)
        .output()
        .expect("curl is not installed: apt-get install curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, meta) = text.rsplit_once('\n').unwrap_or(("", &text));
    (body.to_string(), meta.to_string())
}

#[test]
fn https_h2_and_http11_proxy_and_static_files() {
    let pki = Pki::generate();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(
        www.path().join("index.html"),
        "<h1>hello from a file</h1>\n",
    )
    .unwrap();
    let (port, backend) = (free_port(), backend());
    let config = format!(
        "name: test
{vault}bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: north_tls_server
  north_tls_server:
    type: tls
    kind: server
    vault: server
    options:
      keys: [ localhost ]
      sni: [ localhost ]
      alpn: [ h2, http/1.1 ]
    exit: north_http_server
  north_http_server:
    type: http
    kind: server
    options:
      versions: [ h2, http/1.1 ]
    routes:
      - when:
          - headers:
              :scheme: https
              :path: /files/*
        exit: east_http_filesystem
    exit: south_http_client
  east_http_filesystem:
    type: http-filesystem
    kind: proxy
    routes:
      - when:
          - path: /files/{{path}}
        with:
          path: ${{params.path}}
        exit: east_filesystem
  east_filesystem:
    type: filesystem
    kind: server
    options:
      location: {www}/
  south_http_client:
    type: http
    kind: client
    options:
      versions: [ http/1.1 ]
    exit: south_tcp_client
  south_tcp_client:
    type: tcp
    kind: client
    options: {{ host: 127.0.0.1, port: {backend} }}
",
        vault = pki.vault("server"),
        www = www.path().display(),
    );
    let zilla = Zilla::start(bin(), &config, Options::default());
    zilla.wait_for("north_tcp_server listening on", Duration::from_secs(10));
    let ca = pki.ca_pem();
    let base = format!("https://localhost:{port}");

    let (body, meta) = curl(&[
        "--cacert",
        &ca,
        "--http1.1",
        &format!("{base}/api/items?x=1"),
    ]);
    assert_eq!(body, "backend saw GET /api/items?x=1 HTTP/1.1");
    assert_eq!(meta, "1.1 200 text/plain");

    let (body, meta) = curl(&["--cacert", &ca, "--http2", &format!("{base}/api/items")]);
    assert_eq!(body, "backend saw GET /api/items HTTP/1.1");
    assert_eq!(meta, "2 200 text/plain", "HTTP/2 chosen by ALPN");

    let (body, meta) = curl(&[
        "--cacert",
        &ca,
        "--http2",
        &format!("{base}/files/index.html"),
    ]);
    assert_eq!(body, "<h1>hello from a file</h1>\n");
    assert_eq!(meta, "2 200 text/html");

    let (_, meta) = curl(&[
        "--cacert",
        &ca,
        "--http1.1",
        &format!("{base}/files/missing.html"),
    ]);
    assert!(meta.starts_with("1.1 404"), "{meta}");

    // An untrusted certificate is refused by curl: the chain really is the test CA's.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", &format!("{base}/api")])
        .status()
        .unwrap();
    assert_eq!(
        out.code(),
        Some(60),
        "curl without --cacert must fail verification (exit 60)"
    );
}

/// Zilla as an HTTPS client: curl (HTTP/1.1) → zilla → http client → tls client (ALPN h2) →
/// zilla's own TLS server speaking HTTP/2 → static files. The upstream hop negotiates h2 by ALPN
/// and verifies the test CA; an upstream the CA did not sign is refused with 502.
#[test]
fn tls_client_negotiates_h2_by_alpn_to_an_https_origin() {
    let pki = Pki::generate();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("data.json"), "{\"ok\":true}\n").unwrap();
    let origin_port = free_port();
    let origin = format!(
        "name: origin
{vault}bindings:
  tcp0:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {origin_port} }}
    exit: tls0
  tls0:
    type: tls
    kind: server
    vault: server
    options: {{ keys: [ localhost ], alpn: [ h2 ] }}
    exit: http0
  http0:
    type: http
    kind: server
    options: {{ versions: [ h2 ] }}
    exit: fs_mapping
  fs_mapping:
    type: http-filesystem
    kind: proxy
    routes:
      - when: [ {{ path: \"/{{path}}\" }} ]
        with: {{ path: \"${{params.path}}\" }}
        exit: fs
  fs:
    type: filesystem
    kind: server
    options: {{ location: {www}/ }}
",
        vault = pki.vault("server"),
        www = www.path().display(),
    );
    let origin = Zilla::start(bin(), &origin, Options::default());
    origin.wait_for("tcp0 listening on", Duration::from_secs(10));

    let edge_port = free_port();
    let edge = |sni: &str| {
        format!(
            "name: edge
{vault}bindings:
  tcp0:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {edge_port} }}
    exit: http0
  http0:
    type: http
    kind: server
    options: {{ versions: [ http/1.1 ] }}
    exit: http_client0
  http_client0:
    type: http
    kind: client
    options:
      versions: [ h2, http/1.1 ]
      overrides: {{ \":authority\": \"{sni}:{origin_port}\" }}
    exit: tls_client0
  tls_client0:
    type: tls
    kind: client
    vault: server
    options: {{ trust: [ ca ], sni: [ {sni} ], alpn: [ h2 ] }}
    exit: tcp_client0
  tcp_client0:
    type: tcp
    kind: client
    options: {{ host: 127.0.0.1, port: {origin_port} }}
",
            vault = pki.vault("server"),
        )
    };
    let zilla = Zilla::start(bin(), &edge("localhost"), Options::default());
    zilla.wait_for("tcp0 listening on", Duration::from_secs(10));
    let (body, meta) = curl(&[
        "--http1.1",
        &format!("http://127.0.0.1:{edge_port}/data.json"),
    ]);
    assert_eq!(body, "{\"ok\":true}\n");
    assert_eq!(meta, "1.1 200 application/json");
    drop(zilla);

    // A name the certificate does not cover: verification fails, the client gets 502.
    let zilla = Zilla::start(bin(), &edge("wrong.invalid"), Options::default());
    zilla.wait_for("tcp0 listening on", Duration::from_secs(10));
    let (_, meta) = curl(&[
        "--http1.1",
        &format!("http://127.0.0.1:{edge_port}/data.json"),
    ]);
    assert!(meta.starts_with("1.1 502"), "{meta}");
}
