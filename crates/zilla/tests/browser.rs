//! A real browser: headless Chromium loads a page served by zilla (http-filesystem) whose
//! `EventSource` connects through the SSE proxy. It receives typed events, and when the upstream
//! ends the stream it reconnects after zilla's `retry:` with `Last-Event-ID`, which reaches the
//! backend.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use zilla_test_support::{free_port, Options, SseBackend, Zilla};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zilla"))
}

/// The page logs what its `EventSource` receives and, after the second event, reports the log by
/// opening one more event stream whose path carries it (the backend records every request).
const PAGE: &str = r#"<!doctype html>
<html><body><pre id="log"></pre><script>
let log = '';
const es = new EventSource('/events');
es.addEventListener('greeting', e => { log += 'greeting:' + e.lastEventId + ':' + e.data + ';'; });
es.onmessage = e => {
  log += 'message:' + e.lastEventId + ':' + e.data + ';';
  es.close();
  new EventSource('/events/report/' + encodeURIComponent(log));
};
</script></body></html>
"#;

#[test]
fn chromium_event_source_receives_events_and_reconnects_with_last_event_id() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is not installed: apt-get install chromium");
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), PAGE).unwrap();
    let backend = SseBackend::start();
    let port = free_port();
    let config = format!(
        "name: test
bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: north_http_server
  north_http_server:
    type: http
    kind: server
    routes:
      - when:
          - headers:
              :path: /events*
        exit: north_sse_server
    exit: east_http_filesystem
  east_http_filesystem:
    type: http-filesystem
    kind: proxy
    routes:
      - when: [ {{ path: \"/{{path}}\" }} ]
        with: {{ path: \"${{params.path}}\" }}
        exit: east_filesystem
  east_filesystem:
    type: filesystem
    kind: server
    options: {{ location: {www}/ }}
  north_sse_server:
    type: sse
    kind: server
    options:
      retry: 200
    exit: south_sse_client
  south_sse_client:
    type: sse
    kind: client
    exit: south_http_client
  south_http_client:
    type: http
    kind: client
    exit: south_tcp_client
  south_tcp_client:
    type: tcp
    kind: client
    options: {{ host: 127.0.0.1, port: {backend} }}
",
        www = www.path().display(),
        backend = backend.port(),
    );
    let zilla = Zilla::start(bin(), &config, Options::default());
    zilla.wait_for("north_tcp_server listening on", Duration::from_secs(10));

    // The backend's side of the story, in the order the browser drives it.
    let b = backend.clone();
    let origin = std::thread::spawn(move || {
        if !b.wait_requests(1, Duration::from_secs(20)) {
            return Err("the page's EventSource never connected");
        }
        b.send_to(0, b"id:1\nevent:greeting\ndata:hello\n\n");
        b.end(0);
        if !b.wait_requests(2, Duration::from_secs(10)) {
            return Err("the browser did not reconnect");
        }
        b.send_to(1, b"id:2\ndata:again\n\n");
        Ok(())
    });

    let profile = tempfile::tempdir().unwrap();
    // --virtual-time-budget keeps the page running (and never ends while a stream is open): the
    // test reads the outcome from the backend, then stops the browser.
    let mut browser = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=60000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://127.0.0.1:{port}/index.html"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run chromium");
    let seen = origin.join().expect("origin thread");
    let reported = backend.wait_requests(3, Duration::from_secs(10));
    let _ = browser.kill();
    let _ = browser.wait();
    let requests = backend.requests();
    assert_eq!(seen, Ok(()), "requests: {requests:?}");
    assert!(
        !requests[0].to_ascii_lowercase().contains("last-event-id"),
        "{}",
        requests[0]
    );
    assert!(
        requests[1]
            .to_ascii_lowercase()
            .contains("\r\nlast-event-id: 1\r\n"),
        "the reconnect did not carry Last-Event-ID: {}",
        requests[1]
    );
    assert!(reported, "the page never reported: {requests:?}");
    assert!(
        requests[2].starts_with(
            "GET /events/report/greeting%3A1%3Ahello%3Bmessage%3A2%3Aagain%3B HTTP/1.1\r\n"
        ),
        "the page saw something else: {}",
        requests[2]
    );
}
