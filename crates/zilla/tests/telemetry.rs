//! Telemetry through the real binary: the `prometheus` exporter scraped with curl while events
//! flow through the sse proxy chain (exact counts of streams, requests, events and drops),
//! Zilla's selection rule, the endpoint's `405`/`404`, and `promtool check metrics` on what it
//! serves.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zilla_test_support::{free_port, Options, SseBackend, Zilla};

const SECOND: Duration = Duration::from_secs(1);

fn config(port: u16, backend: u16, prometheus: u16) -> String {
    format!(
        r#"name: example
telemetry:
  metrics:
    - stream.opens.received
    - stream.active.received
    - stream.closes.received
    - stream.errors.received
    - http.active.requests
    - http.duration
    - http.request.size
    - http.response.size
    - sse.events.received
    - sse.events.sent
    - sse.events.dropped
    - sse.streams.active
    - sse.event.latency
  exporters:
    prometheus0:
      type: prometheus
      options:
        endpoints:
          - scheme: http
            port: {prometheus}
            path: /metrics
catalogs:
  inline0:
    type: inline
    options:
      subjects:
        event:
          schema: '{{"type":"object"}}'
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
    telemetry:
      metrics: [ "stream.*", "http.*" ]
      attributes:
        zone: eu-1
    exit: north_sse_server
  north_sse_server:
    type: sse
    kind: server
    options:
      requests:
        - path: ^/checked
          content:
            model: json
            catalog:
              inline0:
                - subject: event
    telemetry:
      metrics: [ "sse.*" ]
    exit: south_sse_client
  south_sse_client:
    type: sse
    kind: client
    telemetry:
      metrics: [ "sse.events.*" ]
    exit: south_http_client
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
"#
    )
}

fn start(args: &[&str]) -> (Zilla, SseBackend, u16, u16) {
    let backend = SseBackend::start();
    let (port, prometheus) = (free_port(), free_port());
    let zilla = Zilla::start(
        Path::new(env!("CARGO_BIN_EXE_zilla")),
        &config(port, backend.port(), prometheus),
        Options {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Options::default()
        },
    );
    zilla.wait_for("north_tcp_server listening on", 10 * SECOND);
    (zilla, backend, port, prometheus)
}

/// The scraped text, with curl as the client.
fn scrape(prometheus: u16) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{prometheus}/metrics"))
        .output()
        .expect("curl is installed (apt-get install curl)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

/// Scrapes until `name{labels}` equals `want` (or 10 s pass); returns the last text.
fn scrape_until(prometheus: u16, name: &str, labels: &[(&str, &str)], want: f64) -> String {
    let deadline = Instant::now() + 10 * SECOND;
    loop {
        let text = scrape(prometheus);
        if sample(&text, name, labels) == Some(want) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An SSE client on a raw socket.
struct Client {
    conn: TcpStream,
    seen: String,
}

impl Client {
    fn get(port: u16, path: &str) -> Client {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Client {
            conn,
            seen: String::new(),
        }
    }

    fn read_until(&mut self, needle: &str) -> bool {
        let deadline = Instant::now() + 5 * SECOND;
        let mut buf = [0u8; 8192];
        while !self.seen.contains(needle) && Instant::now() < deadline {
            if let Ok(n) = self.conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        self.seen.contains(needle)
    }
}

fn backend_index(backend: &SseBackend, path: &str) -> usize {
    backend
        .requests()
        .iter()
        .position(|h| h.starts_with(&format!("GET {path} ")))
        .unwrap_or_else(|| panic!("no request for {path}"))
}

#[test]
fn prometheus_counts_streams_requests_events_and_drops_exactly() {
    let (_zilla, backend, port, prometheus) =
        start(&["-P", "zilla.binding.sse.maximum.event.size=256"]);
    let mut checked = Client::get(port, "/checked");
    assert!(backend.wait_requests(1, 5 * SECOND));
    let mut plain = Client::get(port, "/plain");
    assert!(backend.wait_requests(2, 5 * SECOND));
    let (c, p) = (
        backend_index(&backend, "/checked"),
        backend_index(&backend, "/plain"),
    );
    // /checked: 3 valid, 1 invalid (not JSON), 1 too large; /plain: 4 events.
    for event in [
        "data:{\"n\":1}\n\n".to_string(),
        "data:nope\n\n".to_string(),
        format!("data:{{\"big\":\"{}\"}}\n\n", "x".repeat(300)),
        "data:{\"n\":2}\n\n".to_string(),
        "data:{\"n\":3}\n\n".to_string(),
    ] {
        assert!(backend.send_to(c, event.as_bytes()));
    }
    for i in 1..=4 {
        assert!(backend.send_to(p, format!("id:{i}\ndata:plain {i}\n\n").as_bytes()));
    }
    assert!(checked.read_until("data:{\"n\":3}\n\n"), "{}", checked.seen);
    assert!(plain.read_until("data:plain 4\n\n"), "{}", plain.seen);
    assert!(!checked.seen.contains("nope") && !checked.seen.contains("big"));

    let ns = ("namespace", "example");
    let sse = ("binding", "north_sse_server");
    let client = ("binding", "south_sse_client");
    let http = ("binding", "north_http_server");
    let text = scrape_until(prometheus, "sse_events_sent_total", &[ns, sse], 7.0);
    let v = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    assert_eq!(v("sse_events_sent_total", &[ns, sse]), Some(7.0), "{text}");
    assert_eq!(
        v("sse_events_received_total", &[ns, sse]),
        Some(8.0),
        "{text}"
    );
    assert_eq!(
        v(
            "sse_events_dropped_total",
            &[ns, sse, ("reason", "invalid")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "sse_events_dropped_total",
            &[ns, sse, ("reason", "no-schema")]
        ),
        Some(0.0)
    );
    assert_eq!(v("sse_events_received_total", &[ns, client]), Some(8.0));
    assert_eq!(v("sse_events_sent_total", &[ns, client]), Some(8.0));
    assert_eq!(
        v(
            "sse_events_dropped_total",
            &[ns, client, ("reason", "too-large")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(v("sse_streams_active", &[ns, sse]), Some(2.0));
    // Each event the checked stream wrote is one latency sample; the plain one may batch.
    let latency = v("sse_event_latency_milliseconds_count", &[ns, sse]).unwrap();
    assert!((4.0..=7.0).contains(&latency), "{latency}");
    // The http server: two connections received, two requests in flight; its attribute.
    let zone = ("zone", "eu-1");
    assert_eq!(
        v("stream_opens_received_total", &[ns, http, zone]),
        Some(2.0)
    );
    assert_eq!(v("stream_active_received", &[ns, http, zone]), Some(2.0));
    assert_eq!(v("http_active_requests", &[ns, http, zone]), Some(2.0));
    // Selection: the tcp server has no telemetry; stream.data.* is not listed at the top;
    // the sse client's regex does not select sse.streams.active.
    assert!(!text.contains("binding=\"north_tcp_server\""), "{text}");
    assert!(!text.contains("stream_data_"), "{text}");
    assert_eq!(v("sse_streams_active", &[ns, client]), None);

    // A client leaves: its connection closes, its request is done and measured.
    drop(plain);
    let text = scrape_until(prometheus, "stream_active_received", &[ns, http], 1.0);
    let v = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    assert_eq!(
        v("stream_active_received", &[ns, http]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(v("http_active_requests", &[ns, http]), Some(1.0));
    assert_eq!(
        v("http_duration_milliseconds_count", &[ns, http]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "http_duration_milliseconds_bucket",
            &[ns, http, ("le", "+Inf")]
        ),
        Some(1.0)
    );
    let body = v("http_response_size_bytes_sum", &[ns, http]).unwrap();
    assert!(body >= 4.0 * 14.0, "the plain stream's bytes: {body}");
    assert_eq!(v("sse_streams_active", &[ns, sse]), Some(1.0));
}

#[test]
fn the_endpoint_answers_get_only_and_passes_promtool() {
    let (_zilla, backend, port, prometheus) = start(&[]);
    let mut c = Client::get(port, "/plain");
    assert!(backend.wait_requests(1, 5 * SECOND));
    assert!(backend.send_to(0, b"data:one\n\n"));
    assert!(c.read_until("data:one\n\n"));

    let status = |args: &[&str], path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .arg(format!("http://127.0.0.1:{prometheus}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status(&["-X", "POST"], "/metrics"), "405");
    assert_eq!(status(&[], "/other"), "404");
    assert_eq!(status(&[], "/metrics"), "200");

    let text = scrape(prometheus);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: apt-get install prometheus");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Zilla's names keep durations in milliseconds, which promtool's lint would have in
    // seconds: that advice is the only finding allowed. Anything else (a parse error, a
    // missing help text, a counter without `_total`) fails.
    let findings: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.ends_with("use base unit \"seconds\" instead of \"milliseconds\""))
        .collect();
    assert!(findings.is_empty(), "promtool: {report}\n{text}");
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "promtool exit {:?}: {report}",
        out.status.code()
    );
    assert!(
        text.contains("# TYPE http_duration_milliseconds histogram"),
        "{text}"
    );
}

/// `zilla.binding.sse.slow.client=drop`: a client that stops reading is cut after the timeout,
/// and the event it could not take is counted as dropped for a slow consumer.
#[test]
fn a_slow_consumer_is_counted() {
    let (_zilla, backend, port, prometheus) = start(&[
        "-P",
        "zilla.binding.sse.slow.client=drop",
        "-P",
        "zilla.binding.sse.slow.client.timeout=1s",
    ]);
    let c = Client::get(port, "/checked");
    assert!(backend.wait_requests(1, 5 * SECOND));
    backend.set_write_timeout(0, Duration::from_millis(200));
    // The client never reads: once its socket and the pipes are full, the stream waits for
    // credit, and after a second it is dropped.
    let event = format!("data:{{\"pad\":\"{}\"}}\n\n", "x".repeat(4000));
    let deadline = Instant::now() + 20 * SECOND;
    while Instant::now() < deadline && backend.send_to(0, event.as_bytes()) {}
    let labels = [("binding", "north_sse_server"), ("reason", "slow-consumer")];
    let text = scrape_until(prometheus, "sse_events_dropped_total", &labels, 1.0);
    assert_eq!(
        sample(&text, "sse_events_dropped_total", &labels),
        Some(1.0),
        "{text}"
    );
    drop(c);
}

fn tenants_key() -> (String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sse.proxy.tenants");
    let yaml = std::fs::read_to_string(root.join("zilla.yaml")).unwrap();
    let n = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("n: "))
        .expect("the example's key")
        .to_string();
    let token = std::fs::read_to_string(root.join("tokens/acme.jwt"))
        .unwrap()
        .trim()
        .to_string();
    (n, token)
}

fn events_config(
    (port, dns_port, backend, prometheus): (u16, u16, u16, u16),
    collector: &str,
    n: &str,
) -> String {
    let south = zilla_test_support::sse_upstream_bindings(backend);
    format!(
        r#"name: example
telemetry:
  metrics: [ guard.jwt.authorizations, http.active.requests ]
  exporters:
    stdout0:
      type: stdout
    prometheus0:
      type: prometheus
      options:
        endpoints: [ {{ scheme: http, port: {prometheus} }} ]
    otlp0:
      type: otlp
      options:
        interval: 0.2
        endpoint: {{ location: {collector} }}
guards:
  jwt0:
    type: jwt
    options:
      issuer: https://auth.example.com
      audience: https://api.example.com
      keys: [ {{ kty: RSA, kid: tenants, alg: RS256, e: AQAB, n: {n} }} ]
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
      authorization:
        jwt0:
          credentials:
            headers: {{ authorization: "Bearer {{credentials}}" }}
            query: {{ access_token: "{{credentials}}" }}
    telemetry:
      metrics: [ "http.*" ]
    routes:
      - guarded: {{ jwt0: [ "tenant:acme" ] }}
        exit: north_sse_server
  north_sse_server:
    type: sse
    kind: server
    exit: south_sse_client
{south}
  dns_tcp_server:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {dns_port} }}
    exit: dns_tcp_client
  dns_tcp_client:
    type: tcp
    kind: client
    options: {{ host: zilla-test.invalid, port: 9 }}
"#
    )
}

/// The stdout exporter prints Zilla's events, one line each in Zilla's format with the stream's
/// trace id, and no credential ever shows: not in a log line, not in a metric.
#[test]
fn stdout_events_as_zilla_and_no_credentials_anywhere() {
    let (n, token) = tenants_key();
    let backend = SseBackend::start();
    let collector = zilla_test_support::OtlpCollector::start();
    let (port, dns_port, prometheus) = (free_port(), free_port(), free_port());
    let zilla = Zilla::start(
        Path::new(env!("CARGO_BIN_EXE_zilla")),
        &events_config(
            (port, dns_port, backend.port(), prometheus),
            &collector.url(),
            &n,
        ),
        Options::default(),
    );
    zilla.wait_for("north_tcp_server listening on", 10 * SECOND);

    // A request with the token in the query: accepted, the line without the query.
    let mut ok = Client::get(port, &format!("/events?access_token={token}"));
    assert!(backend.wait_requests(1, 5 * SECOND));
    assert!(backend.send_to(0, b"data:hello\n\n"));
    assert!(ok.read_until("data:hello\n\n"), "{}", ok.seen);
    let line = zilla.wait_for("BINDING_HTTP_REQUEST_ACCEPTED", 5 * SECOND);
    let (prefix, rest) = line.split_once(" [").unwrap();
    assert_eq!(prefix, "example:north_http_server");
    let (time, rest) = rest.split_once("] [0x").unwrap();
    assert_eq!(time.len(), "06/Dec/2026:06:10:46 +0000".len(), "{line}");
    let (trace, rest) = rest.split_once("d] ").unwrap();
    assert!(
        trace.len() == 16 && u64::from_str_radix(trace, 16).unwrap() > 0,
        "{line}"
    );
    assert_eq!(
        rest,
        "BINDING_HTTP_REQUEST_ACCEPTED alice GET http://localhost:80/events"
    );

    // A tampered token in the header: refused, in Zilla's words.
    let mut bad = token.clone();
    let at = bad.len() - 10;
    let flipped = if &bad[at..=at] == "A" { "B" } else { "A" };
    bad.replace_range(at..=at, flipped);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "GET /events HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {bad}\r\ncookie: session=secret-cookie\r\n\r\n"
    )
    .unwrap();
    let line = zilla.wait_for("GUARD_JWT_AUTHORIZATION_FAILED", 5 * SECOND);
    assert!(
        line.ends_with(
            "GUARD_JWT_AUTHORIZATION_FAILED JWT token authorization failed for identity (). Unable to verify key signature."
        ),
        "{line}"
    );

    // A name that does not resolve.
    let _dns = TcpStream::connect(("127.0.0.1", dns_port)).unwrap();
    let line = zilla.wait_for("BINDING_TCP_DNS_FAILED", 10 * SECOND);
    assert!(
        line.starts_with("example:dns_tcp_client ")
            && line.ends_with("BINDING_TCP_DNS_FAILED zilla-test.invalid"),
        "{line}"
    );

    // A config that does not load: said once, the running config keeps serving.
    zilla.rewrite_config("name: example\nbindings:\n  x: { type: nope, kind: server }\n");
    let line = zilla.wait_for("ENGINE_CONFIG_WATCHER_FAILED", 10 * SECOND);
    assert!(line.contains("Config not reloaded: 1 error(s)"), "{line}");

    let text = scrape(prometheus);
    let counted = |result: &str| {
        sample(
            &text,
            "guard_jwt_authorizations_total",
            &[("guard", "jwt0"), ("result", result)],
        )
    };
    assert_eq!(counted("ok"), Some(1.0), "{text}");
    assert_eq!(counted("bad-signature"), Some(1.0), "{text}");

    // No part of a credential anywhere: stdout, stderr, the scrape, what the collector got.
    assert!(collector.wait(5 * SECOND, |c| {
        c.logs()
            .iter()
            .any(|l| format!("{l:?}").contains("guard.jwt.authorization.failed"))
    }));
    let everything = format!(
        "{}\n{}\n{}\n{:?}\n{:?}",
        zilla.stdout().join("\n"),
        zilla.stderr().join("\n"),
        text,
        collector.logs(),
        collector.metrics()
    );
    for part in token.split('.').chain(bad.split('.')) {
        assert!(
            !everything.contains(part),
            "a token part leaked:\n{everything}"
        );
    }
    for secret in ["access_token", "secret-cookie", "Bearer"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
    assert_eq!(zilla.count("ENGINE_CONFIG_WATCHER_FAILED"), 1);
}

mod otlp {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    use zilla_test_support::{ExportMetricsServiceRequest, OtlpCollector};

    fn text(kv: &[KeyValue], key: &str) -> Option<String> {
        kv.iter()
            .find(|k| k.key == key)
            .and_then(|k| match k.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
    }

    /// The value of counter `name` for binding `binding` in `r`.
    fn counter(r: &ExportMetricsServiceRequest, name: &str, binding: &str) -> Option<i64> {
        let m = r.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)?;
        let Some(metric::Data::Sum(s)) = &m.data else {
            return None;
        };
        assert!(s.is_monotonic && s.aggregation_temporality == 2, "{m:?}");
        s.data_points.iter().find_map(|p| {
            let value = match p.value {
                Some(number_data_point::Value::AsInt(v)) => v,
                _ => -1,
            };
            (text(&p.attributes, "binding").as_deref() == Some(binding)).then_some(value)
        })
    }

    fn config(port: u16, backend: u16, collector: &str) -> String {
        let south = zilla_test_support::sse_upstream_bindings(backend);
        format!(
            r#"name: example
telemetry:
  attributes:
    service.namespace: example
    deployment.environment: test
  metrics: [ sse.events.sent, stream.opens.received, http.duration ]
  exporters:
    otlp0:
      type: otlp
      options:
        interval: 0.2
        signals: [ metrics, logs ]
        endpoint:
          location: {collector}
bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: north_http_server
  north_http_server:
    type: http
    kind: server
    options: {{ versions: [ http/1.1 ] }}
    telemetry: {{ metrics: [ "stream.*", "http.*" ] }}
    exit: north_sse_server
  north_sse_server:
    type: sse
    kind: server
    telemetry: {{ metrics: [ "sse.*" ] }}
    exit: south_sse_client
{south}"#
        )
    }

    /// Metrics and events reach a collector on 127.0.0.1 over OTLP/HTTP (protobuf), with the
    /// resource attributes, exact values, Zilla's histogram bounds, and through an outage.
    #[test]
    fn metrics_and_events_reach_a_collector() {
        let collector = OtlpCollector::start();
        let backend = SseBackend::start();
        let port = free_port();
        let zilla = Zilla::start(
            Path::new(env!("CARGO_BIN_EXE_zilla")),
            &config(port, backend.port(), &collector.url()),
            Options::default(),
        );
        zilla.wait_for("north_tcp_server listening on", 10 * SECOND);
        let mut c = Client::get(port, "/events");
        assert!(backend.wait_requests(1, 5 * SECOND));
        for i in 1..=3 {
            assert!(backend.send_to(0, format!("data:{i}\n\n").as_bytes()));
        }
        assert!(c.read_until("data:3\n\n"));
        drop(c);

        let sent = |c: &OtlpCollector| {
            c.metrics()
                .last()
                .and_then(|r| counter(r, "sse.events.sent", "north_sse_server"))
        };
        assert!(
            collector.wait(10 * SECOND, |c| sent(c) == Some(3)),
            "{:?}",
            collector.metrics().last()
        );
        let r = collector.metrics().last().cloned().unwrap();
        let resource = r.resource_metrics[0].resource.clone().unwrap();
        assert_eq!(
            text(&resource.attributes, "service.namespace").as_deref(),
            Some("example")
        );
        assert_eq!(
            text(&resource.attributes, "deployment.environment").as_deref(),
            Some("test")
        );
        assert_eq!(
            counter(&r, "stream.opens.received", "north_http_server"),
            Some(1)
        );
        // The finished request's duration, with Zilla's power-of-two bounds.
        assert!(collector.wait(10 * SECOND, |c| {
            c.metrics().last().is_some_and(|r| {
                r.resource_metrics[0].scope_metrics[0]
                    .metrics
                    .iter()
                    .any(|m| {
                        matches!(&m.data, Some(metric::Data::Histogram(h))
                        if m.name == "http.duration" && m.unit == "nanoseconds"
                            && h.data_points.iter().any(|p| p.count == 1
                                && p.explicit_bounds.len() == 62
                                && p.explicit_bounds[0] == 2.0
                                && p.bucket_counts.len() == 63))
                    })
            })
        }));
        // The request was an event: a log record.
        assert!(collector.wait(10 * SECOND, |c| c.logs().iter().any(|l| {
            l.resource_logs[0].scope_logs[0]
                .log_records
                .iter()
                .any(|r| {
                    text(&r.attributes, "event.name").as_deref()
                        == Some("binding.http.request.accepted")
                        && r.trace_id.len() == 16
                })
        })));
        let seen = collector.seen();
        assert!(seen
            .iter()
            .all(|(m, _, ct, _)| m == "POST" && ct == "application/x-protobuf"));

        // The collector goes down, then up: sending resumes.
        collector.set_failing(true);
        let refused = |c: &OtlpCollector| c.seen().iter().filter(|s| s.3).count();
        assert!(collector.wait(5 * SECOND, |c| refused(c) >= 2));
        let before = collector.metrics().len();
        collector.set_failing(false);
        assert!(collector.wait(5 * SECOND, |c| c.metrics().len() > before));
        let warned = zilla
            .stderr()
            .iter()
            .chain(zilla.stdout().iter())
            .filter(|l| l.contains("otlp: cannot send to the collector"))
            .count();
        assert_eq!(warned, 1, "one warning per outage");
    }
}

/// `zilla metrics`, run in the engine's directory, prints every recorded metric as a table;
/// `--binding` and `--namespace` filter it; without a running engine it says what to do.
#[test]
fn zilla_metrics_prints_the_running_engines_values() {
    let (zilla, backend, port, _prometheus) = start(&[]);
    let mut c = Client::get(port, "/plain");
    assert!(backend.wait_requests(1, 5 * SECOND));
    for i in 1..=5 {
        assert!(backend.send_to(0, format!("data:{i}\n\n").as_bytes()));
    }
    assert!(c.read_until("data:5\n\n"));
    let bin = Path::new(env!("CARGO_BIN_EXE_zilla"));
    let metrics = |args: &[&str]| {
        let out = Command::new(bin)
            .arg("metrics")
            .args(args)
            .current_dir(zilla.dir())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, table, _) = metrics(&[]);
    assert_eq!(code, Some(0), "{table}");
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("namespace") && header.contains("binding") && header.ends_with("value"),
        "{table}"
    );
    let row = |table: &str, binding: &str, metric: &str| {
        table.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 4 && cols[1] == binding && cols[2] == metric)
                .then(|| cols[3..].join(" "))
        })
    };
    assert_eq!(
        row(&table, "north_sse_server", "sse.events.sent").as_deref(),
        Some("5"),
        "{table}"
    );
    assert_eq!(
        row(
            &table,
            "north_http_server",
            "http.active.requests{zone=eu-1}"
        )
        .as_deref(),
        Some("1"),
        "{table}"
    );
    let (_, only, _) = metrics(&["--binding", "north_sse_server"]);
    assert!(
        only.lines().skip(1).all(|l| l.contains("north_sse_server")),
        "{only}"
    );
    assert!(only.lines().count() > 2, "{only}");
    let (_, none, _) = metrics(&["--namespace", "other"]);
    assert!(none.starts_with("no metrics recorded"), "{none}");

    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .arg("metrics")
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no running engine at .zilla/engine/metrics.sock"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `examples/sse.proxy.metrics` as shipped (ports moved to free ones): events counted and
/// scraped, every metric its Grafana dashboard queries present, every dashboard query valid
/// PromQL (`promtool check rules`), and its Prometheus config valid (`promtool check config`).
#[test]
fn the_metrics_example_feeds_its_dashboard() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sse.proxy.metrics");
    let backend = SseBackend::start();
    let (port, prometheus) = (free_port(), free_port());
    let config = std::fs::read_to_string(root.join("zilla.yaml"))
        .unwrap()
        .replace("port: 7114", &format!("port: {port}"))
        .replace("port: 8001", &format!("port: {}", backend.port()))
        .replace("port: 7190", &format!("port: {prometheus}"));
    let zilla = Zilla::start(
        Path::new(env!("CARGO_BIN_EXE_zilla")),
        &config,
        Options::default(),
    );
    zilla.wait_for("north_tcp_server listening on", 10 * SECOND);
    let curl = Command::new("curl")
        .args(["-sN", "--max-time", "3"])
        .arg(format!("http://127.0.0.1:{port}/events"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl is installed (apt-get install curl)");
    assert!(backend.wait_requests(1, 5 * SECOND));
    for i in 1..=3 {
        assert!(backend.send_to(0, format!("id:{i}\ndata:event {i}\n\n").as_bytes()));
    }
    let out = curl.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("data:event 3"));
    let ns = ("namespace", "example");
    let text = scrape_until(
        prometheus,
        "sse_events_sent_total",
        &[ns, ("binding", "north_sse_server")],
        3.0,
    );
    assert_eq!(
        sample(
            &text,
            "sse_events_sent_total",
            &[ns, ("binding", "north_sse_server")]
        ),
        Some(3.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "stream_data_sent_bytes_total",
            &[ns, ("binding", "north_http_server")]
        )
        .is_some_and(|b| b > 0.0),
        "{text}"
    );

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().replace("$namespace", ".*"))
        .collect();
    assert!(exprs.len() >= 9);
    // Every metric a panel reads is served (the guard's only with a jwt guard).
    let names = [
        "sse_streams_active",
        "http_active_requests",
        "sse_events_sent_total",
        "sse_events_received_total",
        "sse_events_dropped_total",
        "sse_event_latency_milliseconds_bucket",
        "http_duration_milliseconds_bucket",
        "stream_opens_received_total",
        "stream_errors_received_total",
        "stream_data_sent_bytes_total",
        "stream_data_received_bytes_total",
    ];
    for name in names {
        assert!(
            exprs.iter().any(|e| e.contains(name)),
            "no panel reads {name}"
        );
        assert!(
            text.contains(&format!("\n{name}{{")),
            "{name} is not served:\n{text}"
        );
    }
    // The queries are valid PromQL.
    let dir = tempfile::tempdir().unwrap();
    let rules: Vec<String> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "      - record: zilla:panel{i}\n        expr: {}\n",
                serde_json::to_string(e).unwrap()
            )
        })
        .collect();
    let rules_file = dir.path().join("rules.yml");
    std::fs::write(
        &rules_file,
        format!(
            "groups:\n  - name: dashboard\n    rules:\n{}",
            rules.concat()
        ),
    )
    .unwrap();
    let check = |args: &[&Path]| {
        let out = Command::new("promtool")
            .args(["check"])
            .args(args)
            .output()
            .expect("promtool is not installed: apt-get install prometheus");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, report) = check(&[Path::new("rules"), &rules_file]);
    assert!(ok, "{report}");
    let (ok, report) = check(&[Path::new("config"), &root.join("prometheus.yml")]);
    assert!(ok, "{report}");
}
