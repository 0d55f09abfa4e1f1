//! Shared feeds (beyond Zilla, the sse server's `options.share`) through the real binary:
//! clients of one feed share one upstream stream; a reconnecting client gets what it missed
//! from memory (inside the window) or goes upstream itself (outside it); the upstream is opened
//! again with the last id when it ends; a slow client is dropped without slowing the others;
//! tenants never share when the identity is part of the key; one client's token expiring ends
//! only its stream; the last client leaving closes the upstream after the linger time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use zilla_test_support::{free_port, Options, SseBackend, Zilla};

const SECOND: Duration = Duration::from_secs(1);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zilla"))
}

/// The sse proxy chain; `share` is the sse server's `options.share` (YAML flow), `guard` the
/// guards section and the sse route's `guarded`.
fn config(port: u16, backend: u16, share: Option<&str>, guard: Option<(&str, &str)>) -> String {
    let options = share.map_or(String::new(), |s| {
        format!("    options:\n      share: {s}\n")
    });
    let (guards, guarded, auth) = match guard {
        Some((guards, roles)) => (
            guards.to_string(),
            format!("    routes:\n      - guarded: {{ jwt0: [ {roles} ] }}\n        exit: south_sse_client\n"),
            "    options:\n      authorization:\n        jwt0:\n          credentials:\n            headers: { authorization: \"Bearer {credentials}\" }\n",
        ),
        None => (String::new(), "    exit: south_sse_client\n".to_string(), ""),
    };
    let south = zilla_test_support::sse_upstream_bindings(backend);
    format!(
        r#"name: example
{guards}bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: north_http_server
  north_http_server:
    type: http
    kind: server
{auth}    exit: north_sse_server
  north_sse_server:
    type: sse
    kind: server
{options}{guarded}{south}"#
    )
}

fn start(config: &str) -> Zilla {
    let zilla = Zilla::start(bin(), config, Options::default());
    zilla.wait_for("north_tcp_server listening on", 10 * SECOND);
    zilla
}

/// An SSE client on a raw socket.
struct Client {
    conn: TcpStream,
    seen: String,
    closed: bool,
}

impl Client {
    fn get(port: u16, path: &str, extra: &str) -> Client {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n{extra}\r\n"
        )
        .unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Client {
            conn,
            seen: String::new(),
            closed: false,
        }
    }

    fn read_until(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 65536];
        // Only the new bytes (and a needle's length before them) are searched each read.
        let mut from = 0;
        while !self.seen[from..].contains(needle) && !self.closed && Instant::now() < deadline {
            from = self.seen.len().saturating_sub(needle.len());
            while !self.seen.is_char_boundary(from) {
                from -= 1;
            }
            match self.conn.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => self.closed = true,
            }
        }
        self.seen.contains(needle)
    }

    /// The ids of the events read so far, in order.
    fn ids(&self) -> Vec<String> {
        self.seen
            .lines()
            .filter_map(|l| l.strip_prefix("id:"))
            .map(str::to_string)
            .collect()
    }
}

fn event(id: u32) -> Vec<u8> {
    format!("id:{id}\ndata:event {id}\n\n").into_bytes()
}

#[test]
fn clients_of_a_feed_share_one_upstream_and_without_share_each_has_its_own() {
    let backend = SseBackend::start();
    let port = free_port();
    let _zilla = start(&config(port, backend.port(), Some("{ linger: 1 }"), None));
    let mut a: Vec<Client> = (0..3).map(|_| Client::get(port, "/events/a", "")).collect();
    let mut b = Client::get(port, "/events/b", "");
    for c in a.iter_mut().chain([&mut b]) {
        assert!(c.read_until("\r\n\r\n", 5 * SECOND), "{}", c.seen);
        assert!(c.seen.starts_with("HTTP/1.1 200"), "{}", c.seen);
    }
    std::thread::sleep(Duration::from_millis(300));
    let paths: Vec<String> = backend
        .requests()
        .iter()
        .map(|h| h.split(' ').nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(paths.len(), 2, "one upstream per feed: {paths:?}");
    let ia = paths.iter().position(|p| p == "/events/a").unwrap();
    let ib = paths.iter().position(|p| p == "/events/b").unwrap();
    for i in 1..=3 {
        assert!(backend.send_to(ia, &event(i)));
    }
    assert!(backend.send_to(ib, &event(9)));
    for c in &mut a {
        assert!(c.read_until("data:event 3\n\n", 5 * SECOND), "{}", c.seen);
        assert_eq!(c.ids(), ["1", "2", "3"]);
    }
    assert!(b.read_until("data:event 9\n\n", 5 * SECOND));
    assert_eq!(b.ids(), ["9"]);

    // Without `share`, as Zilla: each client its own upstream stream.
    let backend = SseBackend::start();
    let port = free_port();
    let _plain = start(&config(port, backend.port(), None, None));
    let _clients: Vec<Client> = (0..3).map(|_| Client::get(port, "/events/a", "")).collect();
    assert!(backend.wait_requests(3, 5 * SECOND));
}

#[test]
fn a_reconnecting_client_is_replayed_from_memory_inside_the_window_and_goes_upstream_outside() {
    let backend = SseBackend::start();
    let port = free_port();
    let _zilla = start(&config(
        port,
        backend.port(),
        Some("{ linger: 5, replay: { events: 5 } }"),
        None,
    ));
    // One client keeps the feed open throughout.
    let mut keeper = Client::get(port, "/events", "");
    assert!(backend.wait_requests(1, 5 * SECOND));
    let mut leaving = Client::get(port, "/events", "");
    assert!(leaving.read_until("\r\n\r\n", 5 * SECOND));
    for i in 1..=3 {
        assert!(backend.send_to(0, &event(i)));
    }
    assert!(leaving.read_until("data:event 3\n\n", 5 * SECOND));
    drop(leaving);
    for i in 4..=5 {
        assert!(backend.send_to(0, &event(i)));
    }
    assert!(keeper.read_until("data:event 5\n\n", 5 * SECOND));

    // Back with Last-Event-ID 3: 4 and 5 from memory, then the live 6; no new upstream.
    let mut back = Client::get(port, "/events", "last-event-id: 3\r\n");
    assert!(
        back.read_until("data:event 5\n\n", 5 * SECOND),
        "{}",
        back.seen
    );
    assert!(backend.send_to(0, &event(6)));
    assert!(
        back.read_until("data:event 6\n\n", 5 * SECOND),
        "{}",
        back.seen
    );
    assert_eq!(back.ids(), ["4", "5", "6"], "no duplicate, no gap");
    assert_eq!(
        backend.requests().len(),
        1,
        "the backend was not asked again"
    );

    // Events 7 to 12: the window (5 events) now starts at 8. An id older than that goes
    // upstream as its own stream, with its Last-Event-ID.
    for i in 7..=12 {
        assert!(backend.send_to(0, &event(i)));
    }
    assert!(keeper.read_until("data:event 12\n\n", 5 * SECOND));
    let mut old = Client::get(port, "/events", "last-event-id: 6\r\n");
    assert!(
        backend.wait_requests(2, 5 * SECOND),
        "an id outside the window goes upstream"
    );
    let head = backend.requests()[1].to_ascii_lowercase();
    assert!(head.contains("\r\nlast-event-id: 6\r\n"), "{head}");
    assert!(backend.send_to(1, &event(13)));
    assert!(
        old.read_until("data:event 13\n\n", 5 * SECOND),
        "{}",
        old.seen
    );
    assert_eq!(old.ids(), ["13"]);
    // Inside the window still works: 8 is the oldest kept.
    let mut recent = Client::get(port, "/events", "last-event-id: 8\r\n");
    assert!(
        recent.read_until("data:event 12\n\n", 5 * SECOND),
        "{}",
        recent.seen
    );
    assert_eq!(recent.ids(), ["9", "10", "11", "12"]);
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn an_ended_upstream_is_opened_again_with_the_last_id_and_clients_stay() {
    let backend = SseBackend::start();
    let port = free_port();
    let zilla = start(&config(port, backend.port(), Some("{ linger: 1 }"), None));
    let mut clients: Vec<Client> = (0..2).map(|_| Client::get(port, "/events", "")).collect();
    assert!(backend.wait_requests(1, 5 * SECOND));
    for i in 1..=2 {
        assert!(backend.send_to(0, &event(i)));
    }
    for c in &mut clients {
        assert!(c.read_until("data:event 2\n\n", 5 * SECOND));
    }
    backend.end(0);
    assert!(
        backend.wait_requests(2, 5 * SECOND),
        "the feed reopens its upstream"
    );
    let head = backend.requests()[1].to_ascii_lowercase();
    assert!(head.contains("\r\nlast-event-id: 2\r\n"), "{head}");
    assert!(
        backend.send_to(1, &event(3)),
        "the reopened stream is open: {:?}, {} open\n{}",
        backend.requests(),
        backend.open_streams(),
        zilla.stderr().join("\n")
    );
    for c in &mut clients {
        assert!(c.read_until("data:event 3\n\n", 5 * SECOND), "{}", c.seen);
        assert!(!c.closed, "the client's stream went on");
        assert_eq!(c.ids(), ["1", "2", "3"]);
    }
}

/// When the upstream goes away for good, the feed ends and its clients reconnect with their
/// last id, as EventSource does: they share one new upstream stream, opened after that id.
#[test]
fn clients_coming_back_with_the_same_last_id_share_one_new_upstream() {
    let backend = SseBackend::start();
    let port = free_port();
    let _zilla = start(&config(port, backend.port(), Some("{ linger: 1 }"), None));
    let mut clients: Vec<Client> = (0..3).map(|_| Client::get(port, "/events", "")).collect();
    assert!(backend.wait_requests(1, 5 * SECOND));
    for i in 1..=2 {
        assert!(backend.send_to(0, &event(i)));
    }
    for c in &mut clients {
        assert!(c.read_until("data:event 2\n\n", 5 * SECOND), "{}", c.seen);
    }
    // Ended, reopened once with id 2, ended again: the feed is over.
    backend.end(0);
    assert!(backend.wait_requests(2, 5 * SECOND));
    backend.end(1);
    for c in &mut clients {
        c.read_until("\r\n0\r\n\r\n", 5 * SECOND);
        assert!(
            c.seen.ends_with("\r\n0\r\n\r\n"),
            "ended cleanly: {:?}",
            c.seen
        );
    }
    // Back with Last-Event-ID 2: one new upstream stream between the three, after id 2.
    let mut back: Vec<Client> = (0..3)
        .map(|_| Client::get(port, "/events", "last-event-id: 2\r\n"))
        .collect();
    assert!(backend.wait_requests(3, 5 * SECOND));
    for c in &mut back {
        assert!(c.read_until("\r\n\r\n", 5 * SECOND), "{}", c.seen);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(backend.requests().len(), 3, "one upstream for the three");
    let head = backend.requests()[2].to_ascii_lowercase();
    assert!(head.contains("\r\nlast-event-id: 2\r\n"), "{head}");
    assert!(backend.send_to(2, &event(3)));
    for c in &mut back {
        assert!(c.read_until("data:event 3\n\n", 5 * SECOND), "{}", c.seen);
        assert_eq!(c.ids(), ["3"]);
    }
}

#[test]
fn a_slow_client_is_dropped_while_the_others_keep_their_rate() {
    let backend = SseBackend::start();
    let port = free_port();
    let zilla = start(&config(
        port,
        backend.port(),
        Some("{ linger: 1, queue: 64 }"),
        None,
    ));
    let slow = Client::get(port, "/events", "");
    assert!(backend.wait_requests(1, 5 * SECOND));
    let readers: Vec<Client> = (0..2).map(|_| Client::get(port, "/events", "")).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(backend.requests().len(), 1);
    const EVENTS: u32 = 3000;
    let handles: Vec<_> = readers
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                c.read_until(&format!("data:event {EVENTS} "), 60 * SECOND);
                c.ids().len()
            })
        })
        .collect();
    // 12 MB at about 20 MB/s: the readers keep up; the client that reads nothing falls more
    // than its queue behind once its socket buffers are full.
    let pad = "x".repeat(4000);
    for i in 1..=EVENTS {
        assert!(backend.send_to(0, format!("id:{i}\ndata:event {i} {pad}\n\n").as_bytes()));
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for h in handles {
        assert_eq!(h.join().unwrap(), EVENTS as usize, "a reader missed events");
    }
    zilla.wait_for(
        "client too far behind its shared feed: dropping it",
        10 * SECOND,
    );
    drop(slow);
}

fn tenants_key() -> (String, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sse.proxy.tenants");
    let yaml = std::fs::read_to_string(root.join("zilla.yaml")).unwrap();
    let n = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("n: "))
        .unwrap()
        .to_string();
    let token = |t: &str| {
        std::fs::read_to_string(root.join(format!("tokens/{t}.jwt")))
            .unwrap()
            .trim()
            .to_string()
    };
    (n, token("acme"), token("globex"))
}

#[test]
fn with_the_identity_in_the_key_tenants_never_share() {
    let (n, acme, globex) = tenants_key();
    let guards = format!(
        "guards:\n  jwt0:\n    type: jwt\n    options:\n      issuer: https://auth.example.com\n      audience: https://api.example.com\n      keys: [ {{ kty: RSA, kid: tenants, alg: RS256, e: AQAB, n: {n} }} ]\n"
    );
    let backend = SseBackend::start();
    let port = free_port();
    let _zilla = start(&config(
        port,
        backend.port(),
        Some("{ identity: true, linger: 1 }"),
        Some((&guards, "")),
    ));
    let bearer = |t: &str| format!("authorization: Bearer {t}\r\n");
    let mut a1 = Client::get(port, "/events", &bearer(&acme));
    let mut a2 = Client::get(port, "/events", &bearer(&acme));
    let mut g = Client::get(port, "/events", &bearer(&globex));
    for c in [&mut a1, &mut a2, &mut g] {
        assert!(c.read_until("\r\n\r\n", 5 * SECOND), "{}", c.seen);
        assert!(c.seen.starts_with("HTTP/1.1 200"), "{}", c.seen);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(backend.requests().len(), 2, "acme's feed and globex's");
}

#[test]
fn one_clients_token_expiring_ends_only_its_stream() {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl");
    let key = EncodingKey::from_rsa_pem(&out.stdout).unwrap();
    let jwk =
        serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap()).unwrap();
    let n = jwk["n"].as_str().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |exp: u64| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("k".into());
        encode(
            &h,
            &json!({ "iss": "https://auth.example.com", "aud": "https://api.example.com",
                "sub": "alice", "scope": "stream", "exp": exp }),
            &key,
        )
        .unwrap()
    };
    let guards = format!(
        "guards:\n  jwt0:\n    type: jwt\n    options:\n      issuer: https://auth.example.com\n      audience: https://api.example.com\n      keys: [ {{ kty: RSA, kid: k, alg: RS256, e: AQAB, n: {n} }} ]\n"
    );
    let backend = SseBackend::start();
    let port = free_port();
    let _zilla = start(&config(
        port,
        backend.port(),
        Some("{ linger: 1 }"),
        Some((&guards, "stream")),
    ));
    let exp = now + 2;
    let mut short = Client::get(
        port,
        "/events",
        &format!("authorization: Bearer {}\r\n", token(exp)),
    );
    let mut long = Client::get(
        port,
        "/events",
        &format!("authorization: Bearer {}\r\n", token(now + 3600)),
    );
    for c in [&mut short, &mut long] {
        assert!(c.read_until("\r\n\r\n", 5 * SECOND), "{}", c.seen);
        assert!(c.seen.starts_with("HTTP/1.1 200"), "{}", c.seen);
    }
    assert!(backend.wait_requests(1, 5 * SECOND));
    assert!(backend.send_to(0, &event(1)));
    assert!(short.read_until("data:event 1\n\n", 5 * SECOND));
    // The short token's stream ends at its exp...
    let mut ended = false;
    let deadline = Instant::now() + 5 * SECOND;
    while !ended && Instant::now() < deadline {
        short.read_until("\u{0}", Duration::from_millis(200));
        ended = short.closed;
    }
    assert!(
        ended,
        "the expired client's stream did not end: {}",
        short.seen
    );
    // ...and the other goes on, on the same upstream.
    assert!(backend.send_to(0, &event(2)));
    assert!(
        long.read_until("data:event 2\n\n", 5 * SECOND),
        "{}",
        long.seen
    );
    assert_eq!(long.ids(), ["1", "2"]);
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn the_last_client_leaving_closes_the_upstream_after_the_linger_time() {
    let backend = SseBackend::start();
    let port = free_port();
    let _zilla = start(&config(port, backend.port(), Some("{ linger: 1.5 }"), None));
    let clients: Vec<Client> = (0..3).map(|_| Client::get(port, "/events", "")).collect();
    assert!(backend.wait_requests(1, 5 * SECOND));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(backend.open_streams(), 1);
    let left = Instant::now();
    drop(clients);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(backend.open_streams(), 1, "still lingering");
    assert!(
        backend.wait_open_at_most(0, 5 * SECOND),
        "the upstream closed"
    );
    let after = left.elapsed();
    assert!(
        after >= Duration::from_millis(1400),
        "closed after {after:?}"
    );
    // A client coming back opens the feed again.
    let _again = Client::get(port, "/events", "");
    assert!(backend.wait_requests(2, 5 * SECOND));
}

#[test]
fn share_is_in_zilla_schema_and_a_wrong_key_is_a_located_error() {
    let (code, schema, stderr) = zilla_test_support::run(bin(), &["schema"], Path::new("."));
    assert_eq!(code, 0, "{stderr}");
    let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let yaml = |share: &str| -> serde_json::Value {
        serde_yaml::from_str(&config(7000, 7001, Some(share), None)).unwrap()
    };
    assert!(validator.is_valid(&yaml(
        "{ identity: true, headers: [ x-tenant ], replay: { events: 10, bytes: 4096, age: 60 }, queue: 8, linger: 1 }"
    )));
    assert!(!validator.is_valid(&yaml("{ replay: { evnts: 10 } }")));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zilla.yaml");
    std::fs::write(
        &file,
        config(7000, 7001, Some("{ replay: { evnts: 10 } }"), None),
    )
    .unwrap();
    let (code, stdout, stderr) = zilla_test_support::run(
        bin(),
        &["validate", "-c", file.to_str().unwrap()],
        dir.path(),
    );
    let out = format!("{stdout}{stderr}");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("zilla.yaml:16:26: bindings.north_sse_server.options.share.replay.evnts"),
        "{out}"
    );

    // Values out of range are located errors too, each named.
    let validate = |text: String| {
        std::fs::write(&file, text).unwrap();
        let (code, stdout, stderr) = zilla_test_support::run(
            bin(),
            &["validate", "-c", file.to_str().unwrap()],
            dir.path(),
        );
        (code, format!("{stdout}{stderr}"))
    };
    let (code, out) = validate(config(
        7000,
        7001,
        Some("{ queue: 0, linger: -1, replay: { events: 0, bytes: 0, age: 0 } }"),
        None,
    ));
    assert_eq!(code, 1, "{out}");
    for key in [
        "queue",
        "linger",
        "replay.events",
        "replay.bytes",
        "replay.age",
    ] {
        assert!(
            out.contains(&format!("bindings.north_sse_server.options.share.{key}: ")),
            "{key}: {out}"
        );
    }
    // `share` is the sse server's: on the client it is an error that says where it goes.
    let (code, out) = validate(config(7000, 7001, None, None).replace(
        "    type: sse\n    kind: client\n",
        "    type: sse\n    kind: client\n    options:\n      share: {}\n",
    ));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("bindings.south_sse_client.options.share: shared feeds are an sse server's"),
        "{out}"
    );
}

/// A feed whose upstream is refused answers every client waiting on it with the refusal, as an
/// unshared stream would be answered, and a later client tries the upstream again.
#[test]
fn a_refused_upstream_is_answered_to_every_client_of_the_feed() {
    let nothing_there = free_port();
    let port = free_port();
    let _zilla = start(&config(port, nothing_there, Some("{ linger: 1 }"), None));
    let mut clients: Vec<Client> = (0..3).map(|_| Client::get(port, "/events", "")).collect();
    for c in &mut clients {
        assert!(c.read_until("\r\n\r\n", 5 * SECOND), "{}", c.seen);
        assert!(c.seen.starts_with("HTTP/1.1 502"), "{}", c.seen);
    }
    let mut later = Client::get(port, "/events", "");
    assert!(later.read_until("\r\n\r\n", 5 * SECOND), "{}", later.seen);
    assert!(later.seen.starts_with("HTTP/1.1 502"), "{}", later.seen);
    // Not a refusal remembered: once the upstream is there, the next client reaches it.
    let upstream = std::net::TcpListener::bind(("127.0.0.1", nothing_there)).unwrap();
    let _next = Client::get(port, "/events", "");
    upstream.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + 5 * SECOND;
    loop {
        match upstream.accept() {
            Ok(_) => break,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("the next client's request never reached the upstream: {e}"),
        }
    }
}
