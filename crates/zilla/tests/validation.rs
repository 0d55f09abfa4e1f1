//! Event validation through the whole SSE proxy, built in process so the test can read the
//! counters and the events it reports: invalid events are dropped and counted by reason, the
//! stream goes on, each rejection is one event naming the binding, the schema and the pointer.

#[path = "../../../bindings/tls/tests/support/mod.rs"]
mod tls_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use binding_http as _;
use binding_sse_client as _;
use binding_sse_server as _;
use binding_tcp as _;
use catalog_filesystem as _;
use model_json as _;
use zilla_engine::config::Config;
use zilla_engine::{build, BuildEnv, Event, Exporter, Properties};
use zilla_test_support::{free_port, SseBackend};

#[derive(Debug, Default)]
struct Collect(Mutex<Vec<Event>>);

impl Exporter for Collect {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
}

const SCHEMA: &str = r#"{
  "type": "object",
  "properties": { "id": { "type": "integer", "minimum": 0 }, "name": { "type": "string" } },
  "required": ["id"]
}"#;

fn config(port: u16, backend: u16) -> String {
    let south = zilla_test_support::sse_upstream_bindings(backend);
    format!(
        "name: test
catalogs:
  host_filesystem:
    type: filesystem
    options:
      subjects:
        event:
          path: event.schema.json
bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: north_http_server
  north_http_server:
    type: http
    kind: server
    options:
      versions: [ http/1.1 ]
    exit: north_sse_server
  north_sse_server:
    type: sse
    kind: server
    options:
      requests:
        - path: ^/events
          content:
            model: json
            catalog:
              host_filesystem:
                - subject: event
    telemetry:
      metrics: [ \"sse.*\" ]
    exit: south_sse_client
{south}"
    )
}

/// Reads from `conn` until `want` has arrived (or the time is up); returns all it read.
fn read_until(conn: &mut TcpStream, want: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains(want) {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_are_dropped_counted_and_reported_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("event.schema.json"), SCHEMA).unwrap();
    let backend = SseBackend::start();
    let port = free_port();
    let config = config(port, backend.port())
        + "telemetry:\n  metrics: [ sse.events.received, sse.events.sent, sse.events.dropped ]\n";
    let config = Config::parse("zilla.yaml", &config, |_| None).unwrap();
    let events = Arc::new(Collect::default());
    let mut env = BuildEnv::new(Properties::default());
    env.config_dir = dir.path().to_path_buf();
    env.exporters.push(events.clone());
    let graph = build(&config, &env).unwrap_or_else(|d| panic!("{d}"));
    graph.attach().expect("listens");

    let stream = tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(
            b"GET /events/1 HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
        )
        .unwrap();
        assert!(
            backend.wait_requests(1, Duration::from_secs(5)),
            "reached the backend"
        );
        for event in [
            &b"data:{\"id\":-1}\n\n"[..],                  // breaks minimum: 0
            b"id:1\ndata:{\"id\":1,\"name\":\"one\"}\n\n", // valid
            b"data:{\"id\":\n\n",                          // not JSON
            b"data:{\"name\":\"no id\"}\n\n",              // misses a required property
            b"id:2\ndata:{\"id\":2}\n\n",                  // valid
        ] {
            assert!(backend.send_to(0, event));
        }
        read_until(&mut c, "data:{\"id\":2}", Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(
        stream.contains("id:1\ndata:{\"id\":1,\"name\":\"one\"}\n\n"),
        "{stream}"
    );
    assert!(stream.contains("id:2\ndata:{\"id\":2}\n\n"), "{stream}");
    assert!(
        !stream.contains("-1") && !stream.contains("no id"),
        "{stream}"
    );

    let metrics = graph.metrics();
    let count = |reason| {
        metrics.value(
            "north_sse_server",
            "sse.events.dropped",
            &[("reason", reason)],
        )
    };
    assert_eq!(count("invalid"), Some(3));
    assert_eq!(count("no-schema"), Some(0));
    let value = |m| metrics.value("north_sse_server", m, &[]);
    assert_eq!(value("sse.events.received"), Some(5));
    assert_eq!(value("sse.events.sent"), Some(2));

    let events = events.0.lock().unwrap();
    let rejected: Vec<&Event> = events
        .iter()
        .filter(|e| e.name == "MODEL_JSON_VALIDATION_FAILED")
        .collect();
    assert_eq!(rejected.len(), 3, "{events:?}");
    assert!(rejected.iter().all(|e| e.source == "test:north_sse_server"));
    assert!(
        rejected[0].message.starts_with(
            "A message payload failed validation. [/id] -1 is less than the minimum of 0"
        ),
        "{}",
        rejected[0].message
    );
    assert!(
        rejected[0].message.ends_with(
            "(event dropped; json, catalog host_filesystem subject event version latest)"
        ),
        "{}",
        rejected[0].message
    );
    assert!(
        rejected[2]
            .message
            .contains("[/] \"id\" is a required property"),
        "{}",
        rejected[2].message
    );
    graph.detach();
}

/// Events that arrive together (one read, forwarded as one frame when they need no encoding)
/// are each checked: the invalid ones are dropped and counted, the valid ones go out byte for
/// byte as they came, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_arrive_together_are_checked_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("event.schema.json"), SCHEMA).unwrap();
    let backend = SseBackend::start();
    let port = free_port();
    let config = config(port, backend.port())
        + "telemetry:\n  metrics: [ sse.events.received, sse.events.sent, sse.events.dropped ]\n";
    let config = Config::parse("zilla.yaml", &config, |_| None).unwrap();
    let mut env = BuildEnv::new(Properties::default());
    env.config_dir = dir.path().to_path_buf();
    let graph = build(&config, &env).unwrap_or_else(|d| panic!("{d}"));
    graph.attach().expect("listens");

    let stream = tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(
            b"GET /events/1 HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
        )
        .unwrap();
        assert!(backend.wait_requests(1, Duration::from_secs(5)));
        // One write: the proxy reads them together.
        let together = concat!(
            "id:1\ndata:{\"id\":1}\n\n",
            "id:2\ndata:{\"id\":-2}\n\n",
            "event:tick\ndata:{\"id\":3,\ndata:\"name\":\"three\"}\n\n",
            "data:not json\n\n",
            "id:5\ndata:{\"id\":5}\n\n",
            "id:6\n\n",
        );
        assert!(backend.send_to(0, together.as_bytes()));
        assert!(backend.send_to(0, b"id:7\ndata:{\"id\":7}\n\n"));
        read_until(&mut c, "data:{\"id\":7}\n\n", Duration::from_secs(5))
    })
    .await
    .unwrap();
    let body = stream
        .split("\r\n\r\n")
        .skip(1)
        .collect::<Vec<_>>()
        .join("\r\n\r\n");
    let events: String = body
        .split("\r\n")
        .filter(|part| part.contains('\n'))
        .collect();
    assert_eq!(
        events,
        concat!(
            "id:1\ndata:{\"id\":1}\n\n",
            "event:tick\ndata:{\"id\":3,\ndata:\"name\":\"three\"}\n\n",
            "id:5\ndata:{\"id\":5}\n\n",
            "id:6\n\n",
            "id:7\ndata:{\"id\":7}\n\n",
        ),
        "{stream}"
    );
    let metrics = graph.metrics();
    let dropped = metrics.value(
        "north_sse_server",
        "sse.events.dropped",
        &[("reason", "invalid")],
    );
    assert_eq!(dropped, Some(2));
    assert_eq!(
        metrics.value("north_sse_server", "sse.events.received", &[]),
        Some(7)
    );
    assert_eq!(
        metrics.value("north_sse_server", "sse.events.sent", &[]),
        Some(5)
    );
    graph.detach();
}

/// `examples/sse.proxy.validate` as shipped (only its two ports moved to free ones), through
/// the real binary, with curl as the client: the invalid event is dropped and logged, the valid
/// one arrives.
#[test]
fn the_bundled_validate_example_drops_the_invalid_event() {
    use std::process::{Command, Stdio};
    use zilla_test_support::{Options, Zilla};

    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sse.proxy.validate");
    let backend = SseBackend::start();
    let port = free_port();
    let config = std::fs::read_to_string(root.join("zilla.yaml"))
        .unwrap()
        .replace("port: 7114", &format!("port: {port}"))
        .replace("port: 8001", &format!("port: {}", backend.port()));
    let schema = std::fs::read(root.join("schemas/event.json")).unwrap();
    let zilla = Zilla::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_zilla")),
        &config,
        Options {
            files: vec![("schemas/event.json".into(), schema)],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on tcp://", Duration::from_secs(10));
    let curl = Command::new("curl")
        .args(["-sN", "--max-time", "3"])
        .arg(format!("http://127.0.0.1:{port}/events"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl is installed (apt-get install curl)");
    assert!(
        backend.wait_requests(1, Duration::from_secs(5)),
        "curl's stream reached the backend"
    );
    assert!(backend.send_to(0, b"id:1\ndata:{\"id\":-1,\"name\":\"Bad\"}\n\n"));
    assert!(backend.send_to(0, b"id:2\ndata:{\"id\":1,\"name\":\"Hello World!\"}\n\n"));
    let out = curl.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out, "id:2\ndata:{\"id\":1,\"name\":\"Hello World!\"}\n\n");
    zilla.wait_for(
        "MODEL_JSON_VALIDATION_FAILED A message payload failed validation. [/id] -1 is less than the minimum of 0 (event dropped; json, catalog host_filesystem subject event version latest)",
        Duration::from_secs(5),
    );
}

/// A `schema-registry` catalog through the real binary: while the registry fails, events are
/// dropped (never passed unvalidated) and the outage is logged once; once it answers, the
/// schema is fetched in the background and valid events flow on the same stream.
#[test]
fn a_registry_catalog_drops_events_until_the_registry_answers() {
    use zilla_test_support::{FakeRegistry, Options, RegistryMode, Zilla};

    let registry = FakeRegistry::start();
    registry.confluent_subject("event-value", "latest", 9, SCHEMA);
    registry.set_mode(RegistryMode::Failing);
    let backend = SseBackend::start();
    let port = free_port();
    let config = config(port, backend.port())
        .replace(
            "  host_filesystem:\n    type: filesystem\n    options:\n      subjects:\n        event:\n          path: event.schema.json\n",
            &format!("  sr:\n    type: schema-registry\n    options:\n      url: {}\n      max-age: 300\n", registry.url()),
        )
        .replace(
            "              host_filesystem:\n                - subject: event\n",
            "              sr:\n                - subject: event-value\n",
        )
        + "telemetry:\n  exporters:\n    stdout0:\n      type: stdout\n";
    let zilla = Zilla::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_zilla")),
        &config,
        Options::default(),
    );
    zilla.wait_for("listening on tcp://", Duration::from_secs(10));
    zilla.wait_for(
        "CATALOG_SCHEMA_REGISTRY_UNRETRIEVABLE_SCHEMA_SUBJECT_VERSION Unable to fetch schema for subject event-value with version latest",
        Duration::from_secs(5),
    );
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    assert!(backend.wait_requests(1, Duration::from_secs(5)));
    assert!(backend.send_to(0, b"id:1\ndata:{\"id\":1,\"name\":\"early\"}\n\n"));
    zilla.wait_for(
        "MODEL_JSON_VALIDATION_FAILED A message payload failed validation. The schema (catalog sr subject event-value version latest) is not known.",
        Duration::from_secs(5),
    );
    registry.set_mode(RegistryMode::Up);
    zilla.wait_for(
        "CATALOG_SCHEMA_REGISTRY_RETRIEVABLE_SCHEMA_SUBJECT_VERSION Successfully fetched schema for subject event-value",
        Duration::from_secs(5),
    );
    assert!(backend.send_to(0, b"id:2\ndata:{\"id\":-5,\"name\":\"bad\"}\n\n"));
    assert!(backend.send_to(0, b"id:3\ndata:{\"id\":3,\"name\":\"late\"}\n\n"));
    let got = read_until(&mut conn, "late", Duration::from_secs(5));
    assert!(
        got.contains("id:3\ndata:{\"id\":3,\"name\":\"late\"}\n\n"),
        "{got}"
    );
    assert!(!got.contains("early") && !got.contains("bad"), "{got}");
}

/// The `sr` catalog and the SSE chain of [`config`], reading `event-value` from a schema
/// registry at `url` through `vault` with `tls`.
fn registry_config(port: u16, backend: u16, url: &str, vault: &str, tls: &str) -> String {
    config(port, backend)
        .replace(
            "  host_filesystem:\n    type: filesystem\n    options:\n      subjects:\n        event:\n          path: event.schema.json\n",
            &format!("  sr:\n    type: schema-registry\n    vault: {vault}\n    options:\n      url: {url}\n      tls: {tls}\n"),
        )
        .replace(
            "              host_filesystem:\n                - subject: event\n",
            "              sr:\n                - subject: event-value\n",
        )
        + "telemetry:\n  exporters:\n    stdout0:\n      type: stdout\n"
}

#[test]
fn a_registry_over_https_is_reached_with_trust_and_client_keys_from_the_vault() {
    use tls_support::Pki;
    use zilla_test_support::{FakeRegistry, Options, Zilla};

    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_zilla"));
    let pki = Pki::generate();
    let registry = FakeRegistry::start();
    registry.confluent_subject("event-value", "latest", 9, SCHEMA);
    // The registry behind a TLS server that requires a client certificate from the test CA
    // (a second zilla: tcp -> tls (mutual: required) -> tcp to the plain registry).
    let front = free_port();
    let front_config = format!(
        "name: front
{vault}bindings:
  tcp0:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {front} }}
    exit: tls0
  tls0:
    type: tls
    kind: server
    vault: server
    options: {{ keys: [ localhost ], trust: [ ca ], mutual: required }}
    exit: tcp1
  tcp1:
    type: tcp
    kind: client
    options: {{ host: 127.0.0.1, port: {registry} }}
",
        vault = pki.vault("server"),
        registry = registry.port(),
    );
    let front_zilla = Zilla::start(bin, &front_config, Options::default());
    front_zilla.wait_for("listening on tcp://", Duration::from_secs(10));
    let url = format!("https://localhost:{front}");

    // Without a client key the handshake is refused: the subject stays unknown, and that is
    // reported, not passed unvalidated.
    let backend = SseBackend::start();
    let port = free_port();
    let config = format!(
        "{}{}",
        pki.vault("server"),
        registry_config(
            port,
            backend.port(),
            &url,
            "server_client",
            "{ trust: [ ca ] }"
        )
    );
    let refused = Zilla::start(bin, &config, Options::default());
    refused.wait_for(
        "CATALOG_SCHEMA_REGISTRY_UNRETRIEVABLE_SCHEMA_SUBJECT_VERSION Unable to fetch schema for subject event-value with version latest",
        Duration::from_secs(10),
    );
    drop(refused);
    assert_eq!(registry.count("/subjects/event-value/versions/latest"), 0);

    // With the client key the lookup goes through; events are validated against the schema.
    let backend = SseBackend::start();
    let port = free_port();
    let config = format!(
        "{}{}",
        pki.vault("server"),
        registry_config(
            port,
            backend.port(),
            &url,
            "server_client",
            "{ trust: [ ca ], keys: [ client ] }"
        )
    );
    let zilla = Zilla::start(bin, &config, Options::default());
    zilla.wait_for("listening on tcp://", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while registry.count("/subjects/event-value/versions/latest") == 0 {
        assert!(Instant::now() < deadline, "the registry was never asked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    assert!(backend.wait_requests(1, Duration::from_secs(5)));
    assert!(backend.send_to(0, b"id:1\ndata:{\"id\":-1,\"name\":\"bad\"}\n\n"));
    assert!(backend.send_to(0, b"id:2\ndata:{\"id\":2,\"name\":\"good\"}\n\n"));
    let got = read_until(&mut conn, "good", Duration::from_secs(5));
    assert!(
        got.contains("id:2\ndata:{\"id\":2,\"name\":\"good\"}\n\n"),
        "{got}"
    );
    assert!(!got.contains("bad"), "{got}");
    zilla.wait_for(
        "MODEL_JSON_VALIDATION_FAILED A message payload failed validation. [/id]",
        Duration::from_secs(5),
    );
}
