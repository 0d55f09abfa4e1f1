//! The `jwt` guard end to end through the real `zilla` binary: the sse.proxy chain with a jwt
//! guard on the sse route (and on one http route), tokens signed here with keys made by the
//! `openssl` CLI, raw HTTP/1.1 sockets as clients and a scripted SSE backend on 127.0.0.1.
//!
//! Needs `target/debug/zilla` (`cargo build -p zilla`) and `openssl`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};
use zilla_test_support::{free_port, zilla_bin, Options, SseBackend, Zilla};

mod support;
use support::{now, rsa_key, sign, AUD, ISS};

const SECOND: Duration = Duration::from_secs(1);

struct Keys {
    rsa: EncodingKey,
    jwk: Value,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (rsa, jwk) = rsa_key("example");
        Keys { rsa, jwk }
    })
}

/// An RS256 token for `sub: alice` with `scope` and `exp`.
fn token(scope: &str, exp: u64) -> String {
    let claims = json!({ "iss": ISS, "aud": AUD, "sub": "alice", "scope": scope, "exp": exp });
    sign(&keys().rsa, "example", &claims)
}

fn config(port: u16, backend: u16) -> String {
    let jwk = serde_json::to_string(&keys().jwk).unwrap();
    let south = zilla_test_support::sse_upstream_bindings(backend);
    format!(
        r#"name: test
telemetry:
  metrics: [ guard.jwt.challenges, guard.jwt.authorizations ]
guards:
  authn_jwt:
    type: jwt
    options:
      issuer: {ISS}
      audience: {AUD}
      roles: scope
      challenge: 1
      keys: [ {jwk} ]
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
      versions: [ h2, http/1.1 ]
      authorization:
        authn_jwt:
          credentials:
            headers:
              authorization: "Bearer {{credentials}}"
            query:
              access_token: "{{credentials}}"
    routes:
      - when:
          - headers:
              :path: /events*
        exit: north_sse_server
      - when:
          - headers:
              :path: /guarded*
        guarded:
          authn_jwt: [ "proxy:stream" ]
        exit: north_sse_server
  north_sse_server:
    type: sse
    kind: server
    routes:
      - when:
          - path: /events*
        guarded:
          authn_jwt: [ "proxy:stream" ]
        exit: south_sse_client
      - when:
          - path: /guarded*
        guarded:
          authn_jwt: [ "proxy:stream" ]
        exit: south_sse_client
{south}"#
    )
}

fn start() -> (Zilla, SseBackend, u16) {
    let backend = SseBackend::start();
    let port = free_port();
    let zilla = Zilla::start(
        &zilla_bin(),
        &config(port, backend.port()),
        Options::default(),
    );
    zilla.wait_for("north_tcp_server listening on", 10 * SECOND);
    (zilla, backend, port)
}

/// An HTTP/1.1 GET on a raw socket.
struct Client {
    conn: TcpStream,
    seen: String,
    closed: bool,
}

impl Client {
    fn get(port: u16, path: &str, bearer: Option<&str>) -> Client {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let auth = bearer
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nhost: localhost:{port}\r\naccept: text/event-stream\r\n{auth}\r\n"
        )
        .unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Client {
            conn,
            seen: String::new(),
            closed: false,
        }
    }

    /// Reads until `needle` was seen (true) or the connection closed / `timeout` passed.
    fn read_until(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) && !self.closed && Instant::now() < deadline {
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

    /// Reads until the peer closes (or aborts); true if it did within `timeout`.
    fn read_to_close(&mut self, timeout: Duration) -> bool {
        self.read_until("\u{0}never\u{0}", timeout);
        self.closed
    }

    fn status(&mut self) -> String {
        self.read_until("\r\n", 5 * SECOND);
        self.seen.lines().next().unwrap_or_default().to_string()
    }
}

#[test]
fn unguarded_http_route_with_guarded_sse_route_answers_404_without_a_valid_token() {
    let (_zilla, backend, port) = start();
    let none = Client::get(port, "/events", None).status();
    assert!(none.starts_with("HTTP/1.1 404"), "{none}");
    let bad = Client::get(port, "/events", Some("not.a.token")).status();
    assert!(bad.starts_with("HTTP/1.1 404"), "{bad}");
    // A valid token without the role: the sse route exists, the token may not take it (Zilla
    // answers 404 here).
    let no_role = Client::get(port, "/events", Some(&token("proxy:read", now() + 3600))).status();
    assert!(no_role.starts_with("HTTP/1.1 403"), "{no_role}");
    let expired = Client::get(port, "/events", Some(&token("proxy:stream", now() - 5))).status();
    assert!(expired.starts_with("HTTP/1.1 404"), "{expired}");
    assert!(backend.requests().is_empty(), "nothing reached the backend");
}

#[test]
fn guarded_http_route_answers_401_then_403_for_a_bad_token_or_a_missing_role() {
    let (_zilla, backend, port) = start();
    let none = Client::get(port, "/guarded", None).status();
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    let bad = Client::get(port, "/guarded", Some("not.a.token")).status();
    assert!(bad.starts_with("HTTP/1.1 403"), "{bad}");
    let no_role = Client::get(port, "/guarded", Some(&token("proxy:read", now() + 3600))).status();
    assert!(no_role.starts_with("HTTP/1.1 403"), "{no_role}");
    let mut ok = Client::get(port, "/guarded", Some(&token("proxy:stream", now() + 3600)));
    assert!(ok.status().starts_with("HTTP/1.1 200"), "{}", ok.seen);
    assert!(backend.wait_requests(1, 5 * SECOND));
}

#[test]
fn valid_token_streams_events_by_header_and_by_query() {
    let (_zilla, backend, port) = start();
    let t = token("proxy:read proxy:stream", now() + 3600);
    let mut by_header = Client::get(port, "/events", Some(&t));
    assert!(
        by_header.read_until("\r\n\r\n", 5 * SECOND),
        "{}",
        by_header.seen
    );
    assert!(
        by_header.seen.starts_with("HTTP/1.1 200"),
        "{}",
        by_header.seen
    );
    let mut by_query = Client::get(port, &format!("/events?access_token={t}"), None);
    assert!(
        by_query.read_until("\r\n\r\n", 5 * SECOND),
        "{}",
        by_query.seen
    );
    assert!(
        by_query.seen.starts_with("HTTP/1.1 200"),
        "{}",
        by_query.seen
    );
    assert!(backend.wait_requests(2, 5 * SECOND));
    assert_eq!(backend.broadcast(b"id:1\ndata:hello\n\n"), 2);
    for c in [&mut by_header, &mut by_query] {
        assert!(c.read_until("data:hello\n\n", 5 * SECOND), "{}", c.seen);
        assert!(c.seen.contains("id:1\n"), "{}", c.seen);
    }
}

#[test]
fn expiring_token_is_challenged_then_the_stream_ends_at_exp() {
    let (zilla, backend, port) = start();
    let exp = now() + 2;
    let mut c = Client::get(port, "/events", Some(&token("proxy:stream", exp)));
    assert!(c.read_until("\r\n\r\n", 5 * SECOND), "{}", c.seen);
    assert!(c.seen.starts_with("HTTP/1.1 200"), "{}", c.seen);
    assert!(backend.wait_requests(1, 5 * SECOND));
    backend.broadcast(b"data:before\n\n");
    assert!(c.read_until("data:before\n\n", 5 * SECOND), "{}", c.seen);
    assert!(
        c.read_until("event:challenge\n", 5 * SECOND),
        "no challenge: {}",
        c.seen
    );
    assert!(
        c.seen.contains(
            "event:challenge\ndata:{\"method\":\"POST\",\"headers\":{\"content-type\":\"application/x-challenge-response\"}}\n\n"
        ),
        "{}",
        c.seen
    );
    // The guard counted the challenge and the token (`zilla metrics`, in zilla's directory).
    let out = Command::new(zilla_bin())
        .args(["metrics", "authn_jwt"])
        .current_dir(zilla.dir())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let value = |metric: &str| {
        table.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.get(3) == Some(&metric)).then(|| cols.last().map(|v| v.to_string()))?
        })
    };
    assert_eq!(
        value("guard.jwt.challenges").as_deref(),
        Some("1"),
        "{table}"
    );
    assert_eq!(
        value("guard.jwt.authorizations{result=ok}").as_deref(),
        Some("1"),
        "{table}"
    );
    assert!(c.read_to_close(5 * SECOND), "stream still open: {}", c.seen);
    let ended = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        ended >= exp as f64 - 0.05,
        "ended at {ended}, before exp {exp}"
    );
    assert!(
        backend.wait_open_at_most(0, 5 * SECOND),
        "the upstream closed too"
    );
}

#[test]
fn unreachable_keys_url_fails_the_config_with_a_located_error() {
    let dead = free_port();
    let config = format!(
        "name: test
guards:
  authn_jwt:
    type: jwt
    options:
      issuer: {ISS}
      audience: {AUD}
      keys: http://127.0.0.1:{dead}/.well-known/jwks.json
bindings:
  tcp0:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {} }}
    exit: echo0
  echo0:
    type: echo
    kind: server
",
        free_port()
    );
    let mut zilla = Zilla::start(&zilla_bin(), &config, Options::default());
    let line = zilla.wait_for("guards.authn_jwt.options.keys", 10 * SECOND);
    assert!(line.contains("cannot read the JWKS"), "{line}");
    let status = zilla.wait_exit(10 * SECOND).expect("zilla exits");
    assert_eq!(status.code(), Some(1));
}

/// An RS256 token with these claims, validly signed.
fn signed(claims: Value) -> String {
    sign(&keys().rsa, "example", &claims)
}

/// Validly signed tokens whose dates are out of range (an `exp` of 1e19 or 1e300 once panicked
/// the connection's task converting it to a time) are refused like any bad token, and the
/// gateway goes on serving.
#[test]
fn tokens_with_dates_out_of_range_are_refused_not_a_panic() {
    let (zilla, backend, port) = start();
    for (claim, value) in [
        ("exp", json!(1e19)),
        ("exp", json!(1e300)),
        ("exp", json!(-1)),
        ("exp", json!("tomorrow")),
        ("nbf", json!(1e300)),
        ("iat", json!(1e19)),
    ] {
        let mut claims = json!({ "iss": ISS, "aud": AUD, "sub": "alice", "scope": "proxy:stream", "exp": now() + 3600 });
        claims[claim] = value.clone();
        let token = signed(claims);
        let guarded = Client::get(port, "/guarded", Some(&token)).status();
        assert!(
            guarded.starts_with("HTTP/1.1 403"),
            "{claim} {value}: {guarded}"
        );
        let events = Client::get(port, "/events", Some(&token)).status();
        assert!(
            events.starts_with("HTTP/1.1 404"),
            "{claim} {value}: {events}"
        );
    }
    assert!(backend.requests().is_empty(), "nothing reached the backend");
    let mut ok = Client::get(port, "/events", Some(&token("proxy:stream", now() + 3600)));
    assert!(ok.status().starts_with("HTTP/1.1 200"), "{}", ok.seen);
    assert!(
        zilla.stderr().iter().all(|l| !l.contains("panicked")),
        "{:?}",
        zilla.stderr()
    );
}
