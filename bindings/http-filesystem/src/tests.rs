//! The proxy through the engine: a config with an http-filesystem proxy in front of a filesystem
//! server is built into a graph, and http streams are opened on the proxy as the http server
//! does.

use std::sync::Arc;

use bytes::Bytes;
use proto_http::{Headers, Http, HttpBegin};
use zilla_engine::config::Config;
use zilla_engine::{build, BuildEnv};
use zilla_engine::{BindingId, Frame, Graph, Properties};

use binding_filesystem as _;

fn env() -> BuildEnv {
    BuildEnv::new(Properties::default())
}

/// `routes` is the YAML of the proxy's routes, indented for `routes:`.
fn graph(location: &str, routes: &str, symlinks: &str) -> Arc<Graph> {
    let yaml = format!(
        r#"name: test
bindings:
  http_filesystem:
    type: http-filesystem
    kind: proxy
    routes:
{routes}
  fs:
    type: filesystem
    kind: server
    options:
      location: "{location}"
      symlinks: {symlinks}
"#
    );
    let config = Config::parse("zilla.yaml", &yaml, |_| None).expect("config parses");
    build(&config, &env()).unwrap_or_else(|d| panic!("graph builds: {d}"))
}

const GET_ROUTE: &str = r#"      - when:
          - path: /{path}
            method: GET
          - path: /{path}
            method: HEAD
        with:
          path: ${params.path}
        exit: fs"#;

fn build_errors(routes: &str) -> String {
    let yaml = format!(
        "name: t\nbindings:\n  hf:\n    type: http-filesystem\n    kind: proxy\n{routes}\n  fs:\n    type: filesystem\n    kind: server\n    options: {{location: /tmp/}}\n"
    );
    let config = Config::parse("zilla.yaml", &yaml, |_| None).expect("config parses");
    match build(&config, &env()) {
        Ok(_) => panic!("expected build errors"),
        Err(d) => d.to_string(),
    }
}

#[derive(Debug)]
enum Outcome {
    /// The proxy refused the stream with this reset status and headers.
    Refused(u16, Headers),
    /// A response: headers, body, ended cleanly.
    Response(Headers, Vec<u8>, bool),
}

impl Outcome {
    fn status(&self) -> u16 {
        match self {
            Outcome::Refused(s, _) => *s,
            Outcome::Response(h, _, _) => h.get_str(":status").unwrap().parse().unwrap(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        match self {
            Outcome::Refused(_, h) | Outcome::Response(h, _, _) => h.get_str(name),
        }
    }

    fn body(&self) -> &[u8] {
        match self {
            Outcome::Refused(..) => b"",
            Outcome::Response(_, b, _) => b,
        }
    }
}

async fn request(graph: &Arc<Graph>, method: &str, path: &str, extra: &[(&str, &str)]) -> Outcome {
    let mut headers = Headers::new();
    headers.append(":method", Bytes::from(method.to_string()));
    headers.append(":scheme", "http");
    headers.append(":authority", "localhost:8080");
    headers.append(":path", Bytes::from(path.to_string()));
    for (n, v) in extra {
        headers.append(Bytes::from(n.to_string()), Bytes::from(v.to_string()));
    }
    let (tx, mut rx) = match graph.open::<Http>(BindingId(0), HttpBegin { headers }, None) {
        Ok(halves) => halves,
        Err(reset) => {
            let r = reset.0.expect("reset carries the status");
            return Outcome::Refused(r.status, r.headers);
        }
    };
    tx.end(None);
    let headers = match rx.recv().await {
        Some(Frame::Begin(b)) => b.headers,
        other => panic!("expected a response begin, got {other:?}"),
    };
    let mut body = Vec::new();
    loop {
        match rx.recv().await {
            Some(Frame::Data(d)) => body.extend_from_slice(&d.payload.unwrap_or_default()),
            Some(Frame::End(_)) => return Outcome::Response(headers, body, true),
            Some(Frame::Abort(_)) | None => return Outcome::Response(headers, body, false),
            Some(_) => {}
        }
    }
}

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>hello</h1>\n").unwrap();
    std::fs::create_dir(dir.path().join("css")).unwrap();
    std::fs::write(dir.path().join("css/site.css"), "h1{}").unwrap();
    dir
}

fn loc(dir: &tempfile::TempDir) -> String {
    format!("{}/", dir.path().display())
}

#[tokio::test]
async fn get_serves_the_file_with_its_headers() {
    let dir = site();
    let g = graph(&loc(&dir), GET_ROUTE, "ignore");
    let r = request(&g, "GET", "/index.html", &[]).await;
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("content-length"), Some("15"));
    assert!(r.header("etag").is_some_and(|e| e.starts_with('"')));
    assert!(r
        .header("last-modified")
        .is_some_and(|d| d.ends_with(" GMT")));
    assert_eq!(r.body(), b"<h1>hello</h1>\n");
    assert!(matches!(r, Outcome::Response(_, _, true)));

    let r = request(&g, "GET", "/css/site.css?v=3", &[]).await;
    assert_eq!(r.status(), 200, "query string is removed before matching");
    assert_eq!(r.header("content-type"), Some("text/css"));
    assert_eq!(r.body(), b"h1{}");
}

#[tokio::test]
async fn head_answers_headers_only() {
    let dir = site();
    let g = graph(&loc(&dir), GET_ROUTE, "ignore");
    let r = request(&g, "HEAD", "/index.html", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-length"), Some("15"));
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert!(r.body().is_empty());
}

#[tokio::test]
async fn matching_if_none_match_answers_304() {
    let dir = site();
    let g = graph(&loc(&dir), GET_ROUTE, "ignore");
    let first = request(&g, "GET", "/index.html", &[]).await;
    let etag = first.header("etag").unwrap().to_string();
    let r = request(&g, "GET", "/index.html", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.body().is_empty());
    let r = request(&g, "GET", "/index.html", &[("if-none-match", "\"stale\"")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.body().len(), 15);
}

#[tokio::test]
async fn missing_files_directories_and_escapes_answer_404_without_content() {
    let dir = site();
    let g = graph(&loc(&dir), GET_ROUTE, "ignore");
    for path in [
        "/missing.html",
        "/css",
        "/css/",
        "/../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/css/..%2f..%2f..%2fetc%2fpasswd",
        "//etc/passwd",
        "/..%5c..%5cetc%5cpasswd",
        "/index.html%00.txt",
    ] {
        let r = request(&g, "GET", path, &[]).await;
        assert_eq!(r.status(), 404, "{path}: {r:?}");
        assert_eq!(r.header("content-length"), Some("0"), "{path}");
        assert!(r.body().is_empty(), "{path} leaked content");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_outside_the_location_are_never_served() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    let dir = site();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        dir.path().join("secret.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.path().join("index.html"), dir.path().join("home.html"))
        .unwrap();
    let ignore = graph(&loc(&dir), GET_ROUTE, "ignore");
    assert_eq!(
        request(&ignore, "GET", "/secret.txt", &[]).await.status(),
        404
    );
    assert_eq!(
        request(&ignore, "GET", "/home.html", &[]).await.status(),
        404
    );
    let follow = graph(&loc(&dir), GET_ROUTE, "follow");
    assert_eq!(
        request(&follow, "GET", "/secret.txt", &[]).await.status(),
        404
    );
    let r = request(&follow, "GET", "/home.html", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.body(), b"<h1>hello</h1>\n");
}

#[tokio::test]
async fn unmatched_requests_are_refused_with_404() {
    let dir = site();
    let g = graph(&loc(&dir), GET_ROUTE, "ignore");
    // `/{path}` needs at least one character; POST matches no route (the route is GET/HEAD).
    for (method, path) in [("GET", "/"), ("POST", "/index.html"), ("GET", "")] {
        let r = request(&g, method, path, &[]).await;
        assert!(
            matches!(r, Outcome::Refused(404, _)),
            "{method} {path}: {r:?}"
        );
    }
}

#[tokio::test]
async fn writes_are_answered_405_with_allow() {
    let dir = site();
    let routes = "      - when:\n          - path: /{path}\n        with:\n          path: ${params.path}\n        exit: fs";
    let g = graph(&loc(&dir), routes, "ignore");
    for method in ["PUT", "POST", "DELETE"] {
        let r = request(&g, method, "/index.html", &[]).await;
        assert!(matches!(r, Outcome::Refused(405, _)), "{method}: {r:?}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("index.html")).unwrap(),
        "<h1>hello</h1>\n"
    );
}

#[tokio::test]
async fn with_directory_and_embedded_params_pick_the_file() {
    let dir = site();
    let routes = r#"      - when:
          - path: /styles/{name}
        with:
          directory: css
          path: ${params.name}.css
        exit: fs
      - when:
          - path: /home
        with:
          path: index.html
        exit: fs"#;
    let g = graph(&loc(&dir), routes, "ignore");
    let r = request(&g, "GET", "/styles/site", &[]).await;
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.body(), b"h1{}");
    let r = request(&g, "GET", "/home", &[]).await;
    assert_eq!(r.body(), b"<h1>hello</h1>\n");
    assert!(matches!(
        request(&g, "GET", "/index.html", &[]).await,
        Outcome::Refused(404, _)
    ));
}

#[tokio::test]
async fn a_binding_exit_serves_the_request_path() {
    let dir = site();
    let yaml = format!(
        "name: t\nbindings:\n  hf:\n    type: http-filesystem\n    kind: proxy\n    exit: fs\n  fs:\n    type: filesystem\n    kind: server\n    options: {{location: \"{}\"}}\n",
        loc(&dir)
    );
    let g = build(
        &Config::parse("zilla.yaml", &yaml, |_| None).unwrap(),
        &env(),
    )
    .unwrap();
    let r = request(&g, "GET", "/css/site.css", &[]).await;
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.body(), b"h1{}");
}

#[test]
fn config_errors_say_what_to_do() {
    let no_exit = build_errors("");
    assert!(no_exit.contains("needs an `exit` or `routes`"), "{no_exit}");

    let uncaptured = build_errors(
        "    routes:\n      - when: [{path: \"/{file}\"}]\n        with: {path: \"${params.path}\"}\n        exit: fs",
    );
    assert!(
        uncaptured.contains("routes[0].with.path") && uncaptured.contains("add `{path}`"),
        "{uncaptured}"
    );

    let empty_with = build_errors(
        "    routes:\n      - when: [{path: \"/{path}\"}]\n        with: {}\n        exit: fs",
    );
    assert!(empty_with.contains("needs a `path`"), "{empty_with}");

    let bad_pattern = build_errors(
        "    routes:\n      - when: [{path: \"/{path\"}]\n        with: {path: \"${params.path}\"}\n        exit: fs",
    );
    assert!(bad_pattern.contains("not closed"), "{bad_pattern}");

    let bad_method = build_errors(
        "    routes:\n      - when: [{path: \"/{path}\", method: FETCH}]\n        exit: fs",
    );
    assert!(bad_method.contains("routes[0].when[0]"), "{bad_method}");

    let options = build_errors("    options: {location: /tmp/}\n    exit: fs");
    assert!(options.contains("options"), "{options}");
}

#[test]
fn http_dates_are_imf_fixdate() {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
    assert_eq!(super::http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(
        super::http_date(std::time::UNIX_EPOCH),
        "Thu, 01 Jan 1970 00:00:00 GMT"
    );
    let leap = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
    assert_eq!(super::http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
}

#[test]
fn schema_describes_every_key() {
    use binding_filesystem as _;
    let schema = zilla_engine::schema().to_string();
    for text in [
        "Pattern for the request path without its query",
        "Request method the route is restricted to",
        "File path relative to the filesystem location",
        "Directory relative to the filesystem location",
        "The directory served, ending with `/`",
        "Whether symbolic links under the location are followed",
    ] {
        assert!(schema.contains(text), "schema lacks {text:?}");
    }
}
