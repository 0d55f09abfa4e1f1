//! The real `zilla` binary serving files to `curl`: tcp server → http server → http-filesystem →
//! filesystem, over a socket on 127.0.0.1.
//!
//! Needs `target/debug/zilla` (`cargo build -p zilla`) and `curl` (`apt-get install curl`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use zilla_test_support::{free_port, zilla_bin, Options, Zilla};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_curl() {
    let found = Command::new("curl").arg("--version").output().is_ok();
    assert!(found, "curl is not on PATH: apt-get install curl");
}

/// A curl response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Runs curl with `args` (the path is sent as is, never normalized) and parses its `-i` output.
fn curl(port: u16, path: &str, args: &[&str]) -> Response {
    let out = Command::new("curl")
        .args(["-s", "-i", "--path-as-is", "--max-time", "10"])
        .args(args)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {path} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn config(port: u16, location: &Path, symlinks: &str) -> String {
    format!(
        r#"name: test
bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options:
      host: 127.0.0.1
      port: {port}
    exit: north_http_server
  north_http_server:
    type: http
    kind: server
    exit: east_http_filesystem_mapping
  east_http_filesystem_mapping:
    type: http-filesystem
    kind: proxy
    routes:
      - when:
          - path: /{{path}}
            method: GET
          - path: /{{path}}
            method: HEAD
        with:
          path: ${{params.path}}
        exit: east_filesystem_server
  east_filesystem_server:
    type: filesystem
    kind: server
    options:
      location: "{}/"
      symlinks: {symlinks}
"#,
        location.display()
    )
}

struct Site {
    www: tempfile::TempDir,
    _outside: tempfile::TempDir,
    big: Vec<u8>,
}

fn site() -> Site {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "top secret\n").unwrap();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "<h1>hello</h1>\n").unwrap();
    let big: Vec<u8> = (0..3_000_017u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(www.path().join("big.bin"), &big).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        www.path().join("leak.txt"),
    )
    .unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path(), www.path().join("outdir")).unwrap();
    Site {
        www,
        _outside: outside,
        big,
    }
}

fn start(site: &Site, symlinks: &str) -> (Zilla, u16) {
    require_curl();
    let port = free_port();
    let zilla = Zilla::start(
        &zilla_bin(),
        &config(port, site.www.path(), symlinks),
        Options::default(),
    );
    zilla.wait_for("listening on", Duration::from_secs(20));
    (zilla, port)
}

#[test]
fn get_serves_a_file_with_type_length_and_etag() {
    let site = site();
    let (_zilla, port) = start(&site, "ignore");
    let r = curl(port, "/index.html", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("content-length"), Some("15"));
    assert!(r.header("etag").is_some(), "{r:?}");
    assert_eq!(r.body, b"<h1>hello</h1>\n");

    // The etag comes back as if-none-match: 304, no body.
    let etag = r.header("etag").unwrap().to_string();
    let r = curl(
        port,
        "/index.html",
        &["-H", &format!("if-none-match: {etag}")],
    );
    assert_eq!(r.status, 304, "{r:?}");
    assert!(r.body.is_empty());

    // HEAD: the same headers, no body.
    let r = curl(port, "/index.html", &["-I"]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some("15"));
    assert!(r.body.is_empty());
}

#[test]
fn a_large_file_arrives_whole() {
    let site = site();
    let (_zilla, port) = start(&site, "ignore");
    let r = curl(port, "/big.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body.len(), site.big.len());
    assert!(r.body == site.big, "content differs");
}

#[test]
fn missing_files_and_escapes_are_404_and_never_the_file() {
    let site = site();
    let (_zilla, port) = start(&site, "ignore");
    for path in [
        "/missing.html",
        "/../etc/passwd",
        "/../../../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/..%5c..%5cetc%5cpasswd",
        "//etc/passwd",
        "/leak.txt",
        "/outdir/secret.txt",
        "/",
    ] {
        let r = curl(port, path, &[]);
        assert_eq!(r.status, 404, "{path}: {r:?}");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("root:") && !body.contains("secret"),
            "{path} leaked {body}"
        );
    }
}

#[test]
fn followed_symlinks_still_cannot_leave_the_location() {
    let site = site();
    let (_zilla, port) = start(&site, "follow");
    for path in ["/leak.txt", "/outdir/secret.txt"] {
        let r = curl(port, path, &[]);
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert!(!String::from_utf8_lossy(&r.body).contains("secret"));
    }
    assert_eq!(curl(port, "/index.html", &[]).status, 200);
}

#[test]
fn the_example_serves_its_www_directory() {
    require_curl();
    let dir = workspace().join("examples/http.filesystem");
    let port = free_port();
    let config = std::fs::read_to_string(dir.join("zilla.yaml"))
        .unwrap()
        .replace("7115", &port.to_string());
    // `location: www/` is relative to the working directory; the property sets it instead.
    let root = format!(
        "zilla.binding.filesystem.server.root={}",
        dir.canonicalize().unwrap().display()
    );
    let zilla = Zilla::start(
        &zilla_bin(),
        &config,
        Options {
            args: vec!["-P".into(), root],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", Duration::from_secs(20));
    let r = curl(port, "/index.html", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.body, std::fs::read(dir.join("www/index.html")).unwrap());
}

#[test]
fn writes_are_405_with_allow_and_change_nothing() {
    require_curl();
    let site = site();
    let port = free_port();
    // A route without a method condition lets PUT through to the proxy, which refuses it.
    let config = config(port, site.www.path(), "ignore").replace(
        "            method: GET\n          - path: /{path}\n            method: HEAD\n",
        "",
    );
    assert!(!config.contains("method"), "{config}");
    let zilla = Zilla::start(&zilla_bin(), &config, Options::default());
    zilla.wait_for("listening on", Duration::from_secs(20));
    for method in ["PUT", "POST", "DELETE"] {
        let r = curl(
            port,
            "/index.html",
            &["-X", method, "--data", "overwritten"],
        );
        assert_eq!(r.status, 405, "{method}: {r:?}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
    assert_eq!(
        std::fs::read(site.www.path().join("index.html")).unwrap(),
        b"<h1>hello</h1>\n"
    );
    assert_eq!(curl(port, "/index.html", &[]).status, 200);
}
