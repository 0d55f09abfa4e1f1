//! The `asyncapi` binding through the real binary: Zilla's `asyncapi.sse.proxy` example as
//! shipped (curl as the client), a 2.6.0 document, `-v` printing what was generated, every
//! document error as a located config error, and a reload with a broken document keeping the
//! running config serving.

#[path = "../../../bindings/tls/tests/support/mod.rs"]
mod tls_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use zilla_test_support::{free_port, run, Options, SseBackend, Zilla};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zilla"))
}

fn example(file: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/asyncapi.sse.proxy");
    std::fs::read_to_string(root.join(file)).unwrap()
}

/// curl -N on `url` for `seconds`, its output.
fn curl(url: &str, seconds: &str) -> std::process::Child {
    Command::new("curl")
        .args(["-sN", "--max-time", seconds, url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl is installed (apt-get install curl)")
}

/// `examples/asyncapi.sse.proxy` as shipped: its zilla.yaml with only the listening port moved
/// to a free one, the backend named by `SSE_SERVER_HOST`/`SSE_SERVER_PORT` as Zilla's compose
/// file does, and the input of Zilla's own test (one good and one bad event).
#[test]
fn the_bundled_asyncapi_example_proxies_and_validates() {
    let backend = SseBackend::start();
    let port = free_port();
    let config = example("zilla.yaml").replace("localhost:7114", &format!("localhost:{port}"));
    let zilla = Zilla::start(
        bin(),
        &config,
        Options {
            env: vec![
                ("SSE_SERVER_HOST".into(), "127.0.0.1".into()),
                ("SSE_SERVER_PORT".into(), backend.port().to_string()),
            ],
            files: vec![(
                "specs/sse-asyncapi.yaml".into(),
                example("specs/sse-asyncapi.yaml").into_bytes(),
            )],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on tcp://", Duration::from_secs(20));
    let client = curl(&format!("http://127.0.0.1:{port}/events/1"), "4");
    assert!(
        backend.wait_requests(1, Duration::from_secs(5)),
        "curl's stream reached the backend"
    );
    assert_eq!(
        backend.requests()[0].lines().next().unwrap_or(""),
        "GET /events/1 HTTP/1.1"
    );
    assert!(backend.send_to(
        0,
        b"event:event name\ndata:{\"id\":1,\"name\":\"Hello World!\"}\n\n"
    ));
    assert!(backend.send_to(
        0,
        b"event:event name\ndata:{\"id\":-1,\"name\":\"Hello bad World!\"}\n\n"
    ));
    let out = client.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "event:event name\ndata:{\"id\":1,\"name\":\"Hello World!\"}\n\n"
    );
    zilla.wait_for(
        "zilla-asyncapi-sse-proxy:sse_proxy_server/my-asyncapi-spec:sse_server0",
        Duration::from_secs(5),
    );
    zilla.wait_for(
        "MODEL_JSON_VALIDATION_FAILED A message payload failed validation. [/id] -1 is less than the minimum of 0 (event dropped; json, catalog catalog0 subject showEventById-event-value version latest)",
        Duration::from_secs(5),
    );
}

const DOC_2_6: &str = r#"{
  "asyncapi": "2.6.0",
  "info": { "title": "Prices", "version": "1.0.0" },
  "servers": { "plain": { "url": "localhost:7114", "protocol": "http" } },
  "channels": {
    "/prices/{symbol}": {
      "parameters": { "symbol": { "schema": { "type": "string" } } },
      "subscribe": {
        "operationId": "streamPrices",
        "bindings": { "x-zilla-sse": { "method": "GET" } },
        "message": {
          "payload": {
            "type": "object",
            "required": [ "price" ],
            "properties": { "price": { "type": "number", "exclusiveMinimum": 0 } },
            "additionalProperties": false
          }
        }
      }
    }
  }
}"#;

/// A JSON 2.6.0 document (Zilla validates 2.6.0 but serves none of its operations; an SSE
/// `subscribe` is served here), `-v` printing the generated namespaces, and keywords Zilla
/// drops (`exclusiveMinimum`, `additionalProperties`) enforced.
#[test]
fn a_2_6_json_document_is_served_and_minus_v_prints_what_was_generated() {
    let backend = SseBackend::start();
    let port = free_port();
    let config = format!(
        "name: prices
catalogs:
  docs:
    type: filesystem
    options:
      subjects:
        prices: {{ path: prices.json }}
bindings:
  prices_server:
    type: asyncapi
    kind: server
    options:
      specs:
        prices: {{ catalog: {{ docs: {{ subject: prices }} }}, servers: [ 'http://127.0.0.1:{port}' ] }}
    exit: prices_client
  prices_client:
    type: asyncapi
    kind: client
    options:
      specs:
        prices: {{ catalog: {{ docs: {{ subject: prices }} }} }}
      tcp: {{ host: 127.0.0.1, port: {backend} }}
",
        backend = backend.port()
    );
    let zilla = Zilla::start(
        bin(),
        &config,
        Options {
            args: vec!["-v".into()],
            files: vec![("prices.json".into(), DOC_2_6.as_bytes().to_vec())],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on tcp://", Duration::from_secs(20));
    let stdout = zilla.stdout().join("\n");
    assert!(
        stdout.contains("# generated: prices:prices_server/prices\n---\nname: prices:prices_server/prices\ncatalogs:"),
        "{stdout}"
    );
    assert!(stdout.contains("          :path: /prices/*\n"), "{stdout}");
    assert!(
        stdout.contains("# generated: prices:prices_client/prices"),
        "{stdout}"
    );
    let client = curl(&format!("http://127.0.0.1:{port}/prices/ACME"), "3");
    assert!(backend.wait_requests(1, Duration::from_secs(5)));
    for event in [
        &b"data:{\"price\":0}\n\n"[..],
        b"data:{\"price\":1.5,\"extra\":true}\n\n",
        b"data:{\"price\":2.5}\n\n",
    ] {
        assert!(backend.send_to(0, event));
    }
    let out = client.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "data:{\"price\":2.5}\n\n"
    );
}

/// Runs `zilla start` on `config` with `files` beside it; (exit code, stderr).
fn start(config: &str, files: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("zilla.yaml"), config).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let (code, _, stderr) = run(bin(), &["start", "-c", "zilla.yaml"], dir.path());
    (code, stderr)
}

const CONFIG: &str = "name: test
catalogs:
  docs:
    type: filesystem
    options:
      subjects:
        events:
          path: doc.yaml
bindings:
  server0:
    type: asyncapi
    kind: server
    options:
      specs:
        events:
          catalog:
            docs:
              subject: events
      tcp: { host: 127.0.0.1, port: 0 }
    exit: client0
  client0:
    type: asyncapi
    kind: client
    options:
      specs:
        events:
          catalog:
            docs:
              subject: events
      tcp: { host: 127.0.0.1, port: 1 }
";

/// Each document error stops start-up with one located line per binding reading the document:
/// the config key of the spec, the document, its line and column, the JSON pointer and the
/// problem.
#[test]
fn document_errors_stop_start_up_naming_the_pointer() {
    let doc = example("specs/sse-asyncapi.yaml");
    let cases = [
        (
            "- not: [ yaml".to_string(),
            "zilla.yaml:16:18: bindings.server0.options.specs.events: the AsyncAPI document events (catalog docs, version latest): not YAML or JSON:",
        ),
        (
            doc.replace("$ref: \"#/channels/showEventById\"", "$ref: \"#/channels/showEvent\""),
            "zilla.yaml:16:18: bindings.server0.options.specs.events: the AsyncAPI document events (catalog docs, version latest), line 29 column 13 (/operations/getEvents/channel/$ref): unresolved reference (#/channels/showEvent)",
        ),
        (
            doc.replace("    action: receive\n", "    action: receive\n    messages:\n      - $ref: '#/channels/events/messages/event'\n"),
            "zilla.yaml:16:18: bindings.server0.options.specs.events: the AsyncAPI document events (catalog docs, version latest), line 29 column 7 (/operations/getEvents/messages/0): operation 'getEvents' names message 'event', which its channel 'showEventById' does not have",
        ),
        (
            doc.replace("action: receive", "action: listen"),
            "zilla.yaml:16:18: bindings.server0.options.specs.events: the AsyncAPI document events (catalog docs, version latest), line 27 column 13 (/operations/getEvents/action): an operation's `action` is `send` or `receive`",
        ),
        (
            doc.replace("  title: AsyncAPI Eventstore\n", ""),
            "zilla.yaml:16:18: bindings.server0.options.specs.events: the AsyncAPI document events (catalog docs, version latest), line 3 column 10 (/info): does not follow the AsyncAPI 3.0.0 schema: \"title\" is a required property",
        ),
        (
            doc.replace("asyncapi: 3.0.0", "asyncapi: 3.1.0"),
            "zilla.yaml:16:18: bindings.server0.options.specs.events: the AsyncAPI document events (catalog docs, version latest), line 1 column 11 (/asyncapi): AsyncAPI version '3.1.0' is not supported (3.0.0, or 2.6.0)",
        ),
    ];
    for (text, expected) in cases {
        let (code, stderr) = start(CONFIG, &[("doc.yaml", &text)]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.lines().any(|l| l.starts_with(expected)),
            "expected a line starting\n  {expected}\nin stderr:\n{stderr}"
        );
        // The client reads the same document and says so too.
        let client = expected.replace("16:18: bindings.server0", "27:18: bindings.client0");
        assert!(
            stderr.lines().any(|l| l.starts_with(&client)),
            "expected a line starting\n  {client}\nin stderr:\n{stderr}"
        );
    }
}

/// Config mistakes around the binding: an unknown subject, the proxy kind, a Kafka option, a
/// security mapping naming a scheme the document lacks.
#[test]
fn config_errors_around_the_binding_are_located() {
    let doc = example("specs/sse-asyncapi.yaml");
    let cases = [
        (
            CONFIG.replace("              subject: events\n      tcp: { host: 127.0.0.1, port: 0 }", "              subject: evnts\n      tcp: { host: 127.0.0.1, port: 0 }"),
            "zilla.yaml:18:24: bindings.server0.options.specs.events.catalog.docs.subject: the AsyncAPI document evnts (catalog docs, version latest) cannot be found in the catalog",
        ),
        (
            CONFIG.replace("    kind: server\n", "    kind: proxy\n"),
            "zilla.yaml:12:11: bindings.server0.kind: the asyncapi proxy kind maps operations onto Kafka or MQTT; it is not supported for SSE: use an asyncapi server whose exit is an asyncapi client",
        ),
        (
            CONFIG.replace("      tcp: { host: 127.0.0.1, port: 1 }\n", "      tcp: { host: 127.0.0.1, port: 1 }\n      kafka: { sasl: {} }\n"),
            "zilla.yaml:31:7: bindings.client0.options.kafka: `kafka` composites are not supported: this gateway serves SSE operations",
        ),
        (
            CONFIG.replace("              subject: events\n      tcp: { host: 127.0.0.1, port: 0 }", "              subject: events\n          security: { bearer: authn }\n      tcp: { host: 127.0.0.1, port: 0 }"),
            "zilla.yaml:19:23: bindings.server0.options.specs.events.security.bearer: no guard named 'authn'",
        ),
    ];
    for (config, expected) in cases {
        let (code, stderr) = start(&config, &[("doc.yaml", &doc)]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.lines().any(|l| l.starts_with(expected)),
            "expected a line starting\n  {expected}\nin stderr:\n{stderr}"
        );
    }
}

/// A reload whose document is broken is reported and the running config keeps serving.
#[test]
fn a_broken_document_on_reload_keeps_the_running_config() {
    let backend = SseBackend::start();
    let port = free_port();
    let config = CONFIG
        .replace("port: 0 }", &format!("port: {port} }}"))
        .replace("port: 1 }", &format!("port: {} }}", backend.port()));
    let zilla = Zilla::start(
        bin(),
        &config,
        Options {
            args: vec!["-Pzilla.engine.config.watch.interval=100ms".into()],
            files: vec![(
                "doc.yaml".into(),
                example("specs/sse-asyncapi.yaml").into_bytes(),
            )],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on tcp://", Duration::from_secs(20));
    std::fs::write(zilla.dir().join("doc.yaml"), "asyncapi: 3.0.0\nchannels: [").unwrap();
    zilla.rewrite_config(&format!("# touched\n{config}"));
    zilla.wait_for(
        "zilla: config not reloaded: the running config keeps serving",
        Duration::from_secs(20),
    );
    let client = curl(&format!("http://127.0.0.1:{port}/events/7"), "3");
    assert!(backend.wait_requests(1, Duration::from_secs(5)));
    assert!(backend.send_to(0, b"data:{\"id\":7}\n\n"));
    let out = client.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "data:{\"id\":7}\n\n");
}

/// The document from a schema registry (fetched once at load), served over HTTPS by the
/// generated tls server with the keys of the binding's vault, to curl trusting the test CA.
#[test]
fn a_document_from_a_registry_served_over_https() {
    use zilla_test_support::FakeRegistry;

    let pki = tls_support::Pki::generate();
    let registry = FakeRegistry::start();
    let doc: serde_json::Value = serde_yaml::from_str(&example("specs/sse-asyncapi.yaml")).unwrap();
    registry.confluent_subject("eventstore", "latest", 7, &doc.to_string());
    let backend = SseBackend::start();
    let port = free_port();
    let config = format!(
        "name: test
{vault}catalogs:
  sr:
    type: schema-registry
    options: {{ url: '{url}' }}
bindings:
  server0:
    type: asyncapi
    kind: server
    vault: server
    options:
      specs:
        events:
          servers: [ 'https://localhost:{port}' ]
          catalog: {{ sr: {{ subject: eventstore }} }}
      tls: {{ keys: [ localhost ], alpn: [ h2, http/1.1 ] }}
    exit: client0
  client0:
    type: asyncapi
    kind: client
    options:
      specs:
        events:
          server: 'http://127.0.0.1:{backend}'
          catalog: {{ sr: {{ subject: eventstore }} }}
",
        vault = pki.vault("server"),
        url = registry.url(),
        backend = backend.port(),
    );
    let zilla = Zilla::start(bin(), &config, Options::default());
    zilla.wait_for("listening on tcp://", Duration::from_secs(20));
    for (i, version) in ["--http1.1", "--http2"].into_iter().enumerate() {
        let client = Command::new("curl")
            .args(["-sN", "--max-time", "3", version, "--cacert"])
            .arg(pki.ca_pem())
            .arg(format!("https://localhost:{port}/events/{i}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl is installed (apt-get install curl)");
        assert!(
            backend.wait_requests(i + 1, Duration::from_secs(5)),
            "{version}"
        );
        assert!(backend.send_to(i, b"data:{\"id\":-1}\n\n"));
        assert!(backend.send_to(i, b"data:{\"id\":1}\n\n"));
        let out = client.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "data:{\"id\":1}\n\n",
            "{version}"
        );
    }
    assert_eq!(
        registry.count("/subjects/eventstore/versions/latest"),
        1,
        "both bindings read the one cached answer"
    );
}
