//! The registry catalogs against a registry speaking the REST APIs over real HTTP on
//! 127.0.0.1: lookups, caching, collapsed requests, 500s, timeouts, refused connections,
//! stale ids and recovery, with the events each transition reports.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use catalog_registry::{ApicurioFactory, KarapaceFactory, SchemaRegistryFactory};
use zilla_engine::{
    metric_descriptor, Catalog, ConfigErrors, Event, Events, Exporter, MetricScope, Metrics,
    PluginContext, PluginFactory, Properties,
};
use zilla_test_support::{free_port, FakeRegistry, RegistryMode};

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<(String, String)>>);

impl Exporter for Recorder {
    fn event(&self, e: &Event) {
        self.0
            .lock()
            .unwrap()
            .push((e.name.to_string(), e.message.clone()));
    }
}

impl Recorder {
    fn names(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
    fn messages(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }
}

struct Built {
    catalog: Arc<dyn Catalog>,
    events: Arc<Recorder>,
    metrics: Metrics,
}

fn cx(properties: &[&str]) -> (PluginContext, Arc<Recorder>) {
    let events = Arc::new(Recorder::default());
    let cx = PluginContext {
        index: 0,
        namespace: "test".into(),
        path: "catalogs.sr".into(),
        properties: Arc::new(Properties::from_args(properties.iter().copied())),
        config_dir: ".".into(),
        vault: None,
        events: Events::new(vec![events.clone() as Arc<dyn Exporter>]),
        metrics: MetricScope::new(
            Metrics::default(),
            ("test", "catalog", "sr"),
            ["catalog.registry.requests", "catalog.registry.failures"]
                .iter()
                .filter_map(|n| metric_descriptor(n))
                .collect(),
            Vec::new(),
        ),
        attributes: Vec::new(),
    };
    (cx, events)
}

fn build<F: PluginFactory<dyn Catalog>>(
    yaml: &str,
    properties: &[&str],
) -> Result<Built, ConfigErrors> {
    let (cx, events) = cx(properties);
    let options: F::Options = serde_yaml::from_str(yaml).expect("options parse");
    let metrics = cx.metrics.registry().clone();
    F::build(&cx, Some(options)).map(|catalog| Built {
        catalog,
        events,
        metrics,
    })
}

fn confluent(url: &str, max_age: u64) -> Built {
    build::<SchemaRegistryFactory>(
        &format!("url: {url}\nmax-age: {max_age}\n"),
        &["zilla.catalog.registry.timeout=500ms"],
    )
    .expect("builds")
}

/// Calls `f` until it returns `Some` or 5 s pass.
fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not reached within 5 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const SCHEMA: &str = r#"{"type":"object","required":["id"]}"#;
const SUBJECT_PATH: &str = "/subjects/items-snapshots-value/versions/latest";

#[test]
fn resolves_a_subject_and_answers_from_the_cache_afterwards() {
    let registry = FakeRegistry::start();
    registry.confluent_subject("items-snapshots-value", "latest", 9, SCHEMA);
    let b = confluent(&registry.url(), 300);
    assert_eq!(
        b.catalog.resolve_now("items-snapshots-value", "latest"),
        Some(9)
    );
    assert_eq!(b.catalog.schema(9).as_deref(), Some(SCHEMA));
    for _ in 0..1000 {
        assert_eq!(
            b.catalog.resolve("items-snapshots-value", "latest"),
            Some(9)
        );
        assert_eq!(b.catalog.schema(9).as_deref(), Some(SCHEMA));
    }
    assert_eq!(
        registry.count(SUBJECT_PATH),
        1,
        "one request, then the cache"
    );
    assert_eq!(
        registry.count("/schemas/ids/9"),
        0,
        "the subject's answer carried the schema text"
    );
    assert!(b.events.names().is_empty(), "{:?}", b.events.messages());
    assert_eq!(
        b.metrics.value("sr", "catalog.registry.requests", &[]),
        Some(1)
    );
    assert_eq!(
        b.catalog.decode(&[0, 0, 0, 0, 9, b'{', b'}']),
        Some((9, &b"{}"[..]))
    );
}

#[test]
fn concurrent_lookups_of_one_subject_send_one_request() {
    let registry = FakeRegistry::start();
    registry.confluent_subject("items-snapshots-value", "latest", 9, SCHEMA);
    let b = confluent(&registry.url(), 300);
    let catalog = b.catalog.clone();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let c = catalog.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    let _ = c.resolve("items-snapshots-value", "latest");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    eventually(|| catalog.resolve("items-snapshots-value", "latest"));
    assert_eq!(registry.count(SUBJECT_PATH), 1);
}

#[test]
fn a_failing_registry_is_reported_once_and_its_recovery_once() {
    let registry = FakeRegistry::start();
    registry.confluent_subject("items-snapshots-value", "latest", 9, SCHEMA);
    registry.set_mode(RegistryMode::Failing);
    let b = confluent(&registry.url(), 300);
    assert_eq!(
        b.catalog.resolve_now("items-snapshots-value", "latest"),
        None
    );
    for _ in 0..100 {
        assert_eq!(b.catalog.resolve("items-snapshots-value", "latest"), None);
    }
    assert_eq!(
        b.events.names(),
        ["CATALOG_SCHEMA_REGISTRY_UNRETRIEVABLE_SCHEMA_SUBJECT_VERSION"]
    );
    assert!(
        b.events.messages()[0].starts_with(
            "Unable to fetch schema for subject items-snapshots-value with version latest"
        ) && b.events.messages()[0].contains("500"),
        "{:?}",
        b.events.messages()
    );
    assert_eq!(
        registry.count(SUBJECT_PATH),
        1,
        "backing off, not hammering"
    );
    registry.set_mode(RegistryMode::Up);
    let started = Instant::now();
    assert_eq!(
        eventually(|| b.catalog.resolve("items-snapshots-value", "latest")),
        9
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "retried after about 1 s"
    );
    assert_eq!(
        b.events.names(),
        [
            "CATALOG_SCHEMA_REGISTRY_UNRETRIEVABLE_SCHEMA_SUBJECT_VERSION",
            "CATALOG_SCHEMA_REGISTRY_RETRIEVABLE_SCHEMA_SUBJECT_VERSION"
        ]
    );
    assert_eq!(
        b.events.messages()[1],
        "Successfully fetched schema for subject items-snapshots-value with version latest."
    );
    assert_eq!(
        b.metrics.value("sr", "catalog.registry.failures", &[]),
        Some(1)
    );
}

#[test]
fn a_known_id_keeps_serving_stale_while_the_registry_is_down() {
    let registry = FakeRegistry::start();
    registry.confluent_subject("items-snapshots-value", "latest", 9, SCHEMA);
    // max-age 0: every lookup after the first wants a fresh answer.
    let b = confluent(&registry.url(), 0);
    assert_eq!(
        b.catalog.resolve_now("items-snapshots-value", "latest"),
        Some(9)
    );
    registry.set_mode(RegistryMode::Failing);
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(
            b.catalog.resolve("items-snapshots-value", "latest"),
            Some(9),
            "stale, never nothing"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        b.events.names(),
        [
            "CATALOG_SCHEMA_REGISTRY_UNRETRIEVABLE_SCHEMA_SUBJECT_VERSION",
            "CATALOG_SCHEMA_REGISTRY_STALE_SCHEMA"
        ],
        "one event per transition, however many retries"
    );
    assert_eq!(
        b.events.messages()[1],
        "Unable to fetch schema for subject items-snapshots-value with version latest; using stale schema with id 9."
    );
    let failed = registry.count(SUBJECT_PATH) - 1;
    assert!(
        (1..=3).contains(&failed),
        "backoff 1 s, 2 s...: {failed} retries in 1.5 s"
    );
    // The registry comes back with a new version of the subject.
    registry.confluent_subject("items-snapshots-value", "latest", 10, SCHEMA);
    registry.set_mode(RegistryMode::Up);
    assert_eq!(
        eventually(|| b
            .catalog
            .resolve("items-snapshots-value", "latest")
            .filter(|id| *id == 10)),
        10
    );
    assert_eq!(
        b.events.names().last().map(String::as_str),
        Some("CATALOG_SCHEMA_REGISTRY_RETRIEVABLE_SCHEMA_SUBJECT_VERSION")
    );
}

#[test]
fn a_registry_that_never_answers_times_out() {
    let registry = FakeRegistry::start();
    registry.set_mode(RegistryMode::Hanging);
    let b = confluent(&registry.url(), 300);
    let started = Instant::now();
    assert_eq!(
        b.catalog.resolve_now("items-snapshots-value", "latest"),
        None
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        b.events.messages()[0].contains("did not answer in time"),
        "{:?}",
        b.events.messages()
    );
}

#[test]
fn a_refused_connection_is_reported_and_recovered_from() {
    let port = free_port();
    let b = confluent(&format!("http://127.0.0.1:{port}"), 300);
    assert_eq!(
        b.catalog.resolve_now("items-snapshots-value", "latest"),
        None
    );
    let m = b.events.messages();
    assert!(m[0].to_lowercase().contains("refused"), "{m:?}");
    let registry = FakeRegistry::start_on(port);
    registry.confluent_subject("items-snapshots-value", "latest", 9, SCHEMA);
    assert_eq!(
        eventually(|| b.catalog.resolve("items-snapshots-value", "latest")),
        9
    );
}

#[test]
fn a_failed_schema_id_is_retried_and_its_recovery_reported() {
    let registry = FakeRegistry::start();
    registry.answer("/schemas/ids/9", 500, "{}");
    let b = confluent(&registry.url(), 300);
    assert_eq!(b.catalog.schema(9), None);
    let names = eventually(|| Some(b.events.names()).filter(|n| !n.is_empty()));
    assert_eq!(names, ["CATALOG_SCHEMA_REGISTRY_UNRETRIEVABLE_SCHEMA_ID"]);
    assert!(b.events.messages()[0].starts_with("Unable to fetch schema id 9"));
    registry.answer(
        "/schemas/ids/9",
        200,
        r#"{"schema":"{\"type\":\"string\"}"}"#,
    );
    let text = eventually(|| b.catalog.schema(9));
    assert_eq!(&*text, r#"{"type":"string"}"#);
    assert_eq!(
        b.events.messages().last().map(String::as_str),
        Some("Successfully fetched schema id 9.")
    );
}

#[test]
fn credentials_are_sent_on_every_request() {
    let registry = FakeRegistry::start();
    registry.confluent_subject("items-snapshots-value", "latest", 9, SCHEMA);
    let b = build::<KarapaceFactory>(
        &format!(
            "url: {}\ncredentials:\n  headers:\n    authorization: Basic dXNlcjpzZWNyZXQ=\n",
            registry.url()
        ),
        &[],
    )
    .unwrap();
    assert_eq!(
        b.catalog.resolve_now("items-snapshots-value", "latest"),
        Some(9)
    );
    let requests = registry.requests();
    assert!(
        requests[0]
            .headers
            .contains(&("authorization".into(), "Basic dXNlcjpzZWNyZXQ=".into())),
        "{:?}",
        requests[0].headers
    );
}

#[test]
fn apicurio_resolves_artifacts_by_global_or_content_id() {
    let registry = FakeRegistry::start();
    registry.answer(
        "/apis/registry/v2/groups/default/artifacts/items/meta",
        200,
        r#"{"id":"items","version":"2","globalId":7,"contentId":3}"#,
    );
    registry.answer(
        "/apis/registry/v2/groups/default/artifacts/items/versions/1/meta",
        200,
        r#"{"id":"items","version":"1","globalId":5,"contentId":2}"#,
    );
    registry.answer_typed(
        "/apis/registry/v2/ids/globalIds/7",
        200,
        SCHEMA,
        "application/json",
    );
    registry.answer_typed(
        "/apis/registry/v2/ids/contentIds/3",
        200,
        SCHEMA,
        "application/json",
    );
    let b = build::<ApicurioFactory>(&format!("url: {}\n", registry.url()), &[]).unwrap();
    assert_eq!(b.catalog.resolve_now("items", "latest"), Some(7));
    assert_eq!(b.catalog.schema(7).as_deref(), Some(SCHEMA));
    assert_eq!(b.catalog.resolve_now("items", "1"), Some(5));
    assert_eq!(
        b.catalog.decode(&[0, 0, 0, 0, 0, 0, 0, 0, 7, b'x']),
        Some((7, &b"x"[..]))
    );
    let b = build::<ApicurioFactory>(
        &format!(
            "url: {}\ngroup-id: default\nuse-id: contentId\nid-encoding: legacy\n",
            registry.url()
        ),
        &[],
    )
    .unwrap();
    assert_eq!(b.catalog.resolve_now("items", "latest"), Some(3));
    assert_eq!(b.catalog.schema(3).as_deref(), Some(SCHEMA));
    assert_eq!(
        b.catalog.decode(&[0, 0, 0, 0, 3, b'x']),
        Some((3, &b"x"[..]))
    );
}

#[test]
fn bad_options_are_located_config_errors() {
    let e = build::<SchemaRegistryFactory>("url: ftp://reg:21\n", &[])
        .err()
        .unwrap();
    assert_eq!(e.0[0].path, "catalogs.sr.options.url");
    assert!(e.0[0].message.contains("http://"), "{}", e.0[0].message);
    let e = build::<SchemaRegistryFactory>("url: http://reg:8081\ntls:\n  trust: [ca]\n", &[])
        .err()
        .unwrap();
    assert_eq!(e.0[0].path, "catalogs.sr.options.tls");
    let e = build::<SchemaRegistryFactory>("url: https://reg:8081\ntls:\n  trust: [ca]\n", &[])
        .err()
        .unwrap();
    assert_eq!(e.0[0].path, "catalogs.sr.vault");
    let e = build::<SchemaRegistryFactory>(
        "url: http://reg:8081\ncredentials:\n  headers:\n    authorization: \"a\\nb\"\n",
        &[],
    )
    .err()
    .unwrap();
    assert_eq!(
        e.0[0].path,
        "catalogs.sr.options.credentials.headers.authorization"
    );
}
