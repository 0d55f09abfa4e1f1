//! The jwt guard's JWKS URL through the real `zilla` binary, against identity providers run
//! here on 127.0.0.1: hostile answers at start are config errors (never a panic, one deadline
//! for the whole fetch); a provider that rotates its key is followed (a token of the new key
//! passes within one refetch, the old key is retired at the next refresh); unknown `kid`s fetch
//! at most once per window; a provider that fails keeps the last good keys serving.
//!
//! Needs `target/debug/zilla` (`cargo build -p zilla`) and `openssl`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};
use zilla_test_support::{free_port, zilla_bin, Options, Zilla};

mod support;
use support::{now, rsa_key, sign, AUD, ISS};

const WAIT: Duration = Duration::from_secs(20);

fn token(key: &EncodingKey, kid: &str) -> String {
    let claims =
        json!({ "iss": ISS, "aud": AUD, "sub": "alice", "scope": "read", "exp": now() + 3600 });
    sign(key, kid, &claims)
}

/// What the provider answers each request with, for now.
#[derive(Clone)]
enum Answer {
    /// 200 with this body (and an optional `Cache-Control`).
    Json(String),
    /// An arbitrary raw answer, then close.
    Raw(Vec<u8>),
    /// A status line with no body.
    Status(u16),
    /// A valid answer written one byte every `Duration`.
    Drip(Duration),
    /// A 200 with a body of this many bytes.
    Huge(usize),
}

/// A JWKS server on 127.0.0.1 that counts requests.
struct Provider {
    port: u16,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
}

impl Provider {
    fn start(answer: Answer) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(AtomicUsize::new(0));
        let (a, r) = (answer.clone(), requests.clone());
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (a, r) = (a.clone(), r.clone());
                thread::spawn(move || serve(conn, &a, &r));
            }
        });
        Provider {
            port,
            answer,
            requests,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/.well-known/jwks.json", self.port)
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(conn: TcpStream, answer: &Mutex<Answer>, requests: &AtomicUsize) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let mut out = conn.try_clone().unwrap();
        let answer = answer.lock().unwrap().clone();
        let ok = match answer {
            Answer::Json(body) => write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .is_ok(),
            Answer::Raw(bytes) => {
                let _ = out.write_all(&bytes);
                thread::sleep(Duration::from_secs(30));
                return;
            }
            Answer::Status(code) => {
                write!(out, "HTTP/1.1 {code} Nope\r\ncontent-length: 0\r\n\r\n").is_ok()
            }
            Answer::Drip(every) => {
                for b in b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"keys\":[]}" {
                    if out.write_all(&[*b]).is_err() {
                        return;
                    }
                    thread::sleep(every);
                }
                true
            }
            Answer::Huge(n) => {
                let _ = write!(out, "HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
                let block = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < n && out.write_all(&block).is_ok() {
                    sent += block.len();
                }
                return;
            }
        };
        if !ok {
            return;
        }
    }
}

/// tcp -> http (bearer tokens for the guard) -> a guarded route to echo.
fn config(port: u16, keys_url: &str) -> String {
    format!(
        "name: test
guards:
  authn_jwt:
    type: jwt
    options:
      issuer: {ISS}
      audience: {AUD}
      keys: {keys_url}
bindings:
  tcp0:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: http0
  http0:
    type: http
    kind: server
    options:
      versions: [ http/1.1 ]
      authorization:
        authn_jwt:
          credentials:
            headers:
              authorization: Bearer {{credentials}}
    routes:
      - guarded: {{ authn_jwt: [ read ] }}
        exit: echo0
  echo0:
    type: echo
    kind: server
telemetry:
  exporters:
    stdout0:
      type: stdout
"
    )
}

/// The status of a POST with `token`.
fn status(port: u16, token: &str) -> u16 {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "POST / HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi"
    )
    .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

/// Hostile answers at start: each is a config error naming the URL and the cause, within one
/// deadline (2 s here), and the process exits 1; nothing panics.
#[test]
fn hostile_answers_at_start_are_config_errors() {
    let cases = [
        (
            Answer::Raw(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nxxxx"
                    .to_vec(),
            ),
            "",
        ),
        (Answer::Huge(10 << 20), "larger than 1024 KiB"),
        (
            Answer::Drip(Duration::from_millis(500)),
            "no complete answer within 2s",
        ),
        (
            Answer::Json("<html>not json</html>".into()),
            "not a JWKS document",
        ),
        (Answer::Json("[1, 2]".into()), "not a JWKS document"),
        (Answer::Status(500), "answered 500"),
    ];
    for (answer, cause) in cases {
        let provider = Provider::start(answer);
        let started = Instant::now();
        let mut zilla = Zilla::start(
            &zilla_bin(),
            &config(free_port(), &provider.url()),
            Options {
                args: vec!["-Pzilla.guard.jwt.keys.timeout=2s".into()],
                ..Options::default()
            },
        );
        let status = zilla.wait_exit(WAIT).expect("zilla exits");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(status.code(), Some(1), "{:?}", zilla.stderr());
        let line = zilla.wait_for("guards.authn_jwt.options.keys", WAIT);
        assert!(
            line.contains(&format!("cannot read the JWKS at {}:", provider.url()))
                && line.contains(cause),
            "{line}"
        );
        assert!(
            zilla.stderr().iter().all(|l| !l.contains("panicked")),
            "{:?}",
            zilla.stderr()
        );
    }
}

/// A `{}` answer starts with no keys (Zilla): every token is refused.
#[test]
fn an_empty_answer_gives_no_keys() {
    let provider = Provider::start(Answer::Json("{}".into()));
    let port = free_port();
    let zilla = Zilla::start(
        &zilla_bin(),
        &config(port, &provider.url()),
        Options::default(),
    );
    zilla.wait_for("listening on", WAIT);
    let (key, _) = rsa_key("a");
    assert_eq!(status(port, &token(&key, "a")), 403);
}

fn jwks(keys: &[&Value]) -> Answer {
    Answer::Json(json!({ "keys": keys }).to_string())
}

/// The provider rotates from key `a` to key `b`: a token of `b` is refused until the one fetch
/// it causes answers, then accepted; `a` is retired at the next refresh; each change is an
/// event. Meanwhile the provider fails once: `a` keeps serving, and the failure and the
/// recovery are one event each.
#[test]
fn rotated_keys_are_followed_and_a_failing_provider_keeps_the_last_keys() {
    let (key_a, jwk_a) = rsa_key("a");
    let (key_b, jwk_b) = rsa_key("b");
    let provider = Provider::start(jwks(&[&jwk_a]));
    let port = free_port();
    let zilla = Zilla::start(
        &zilla_bin(),
        &config(port, &provider.url()),
        Options {
            args: vec![
                "-Pzilla.guard.jwt.keys.refresh=1s".into(),
                "-Pzilla.guard.jwt.keys.refetch=1s".into(),
            ],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", WAIT);
    assert_eq!(status(port, &token(&key_a, "a")), 200);

    // The provider fails (10 MB, then not JSON, then 503): the last good keys keep serving,
    // and that is said once.
    provider.set(Answer::Huge(10 << 20));
    zilla.wait_for(
        "GUARD_JWT_KEYS_UNRETRIEVABLE Unable to fetch keys from",
        WAIT,
    );
    assert_eq!(status(port, &token(&key_a, "a")), 200);
    for answer in [
        Answer::Json("<html>down</html>".into()),
        Answer::Status(503),
    ] {
        let seen = provider.requests();
        provider.set(answer);
        let deadline = Instant::now() + WAIT;
        while provider.requests() < seen + 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        assert!(provider.requests() >= seen + 2, "the refresh goes on");
        assert_eq!(status(port, &token(&key_a, "a")), 200);
    }

    // It comes back with both keys, then only with `b`.
    provider.set(jwks(&[&jwk_a, &jwk_b]));
    zilla.wait_for("GUARD_JWT_KEYS_RETRIEVABLE Successfully fetched keys", WAIT);
    zilla.wait_for("GUARD_JWT_KEY_ADDED Key b added", WAIT);
    provider.set(jwks(&[&jwk_b]));
    zilla.wait_for("GUARD_JWT_KEY_RETIRED Key a retired", WAIT);
    assert_eq!(status(port, &token(&key_b, "b")), 200);
    assert_eq!(
        status(port, &token(&key_a, "a")),
        403,
        "a retired key verifies nothing"
    );
    assert_eq!(
        zilla.count("GUARD_JWT_KEYS_UNRETRIEVABLE Unable"),
        1,
        "one event per transition"
    );
}

/// A token of a key the guard does not have yet causes one fetch, and it then passes, without
/// waiting for the refresh interval.
#[test]
fn an_unknown_kid_fetches_the_keys_again() {
    let (key_a, jwk_a) = rsa_key("a");
    let (key_b, jwk_b) = rsa_key("b");
    let provider = Provider::start(jwks(&[&jwk_a]));
    let port = free_port();
    let zilla = Zilla::start(
        &zilla_bin(),
        &config(port, &provider.url()),
        Options {
            args: vec!["-Pzilla.guard.jwt.keys.refetch=0s".into()],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", WAIT);
    provider.set(jwks(&[&jwk_a, &jwk_b]));
    let b = token(&key_b, "b");
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(port, &b) != 200 {
        assert!(Instant::now() < deadline, "the new key was never fetched");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status(port, &token(&key_a, "a")), 200);
    assert!(provider.requests() >= 2);
}

/// A thousand tokens naming unknown `kid`s cause at most one fetch per window (30 s, the
/// default): junk cannot make the gateway hammer the identity provider.
#[test]
fn unknown_kids_refetch_at_most_once_per_window() {
    let (key_a, jwk_a) = rsa_key("a");
    let provider = Provider::start(jwks(&[&jwk_a]));
    let port = free_port();
    let zilla = Zilla::start(
        &zilla_bin(),
        &config(port, &provider.url()),
        Options::default(),
    );
    zilla.wait_for("listening on", WAIT);
    assert_eq!(provider.requests(), 1, "the fetch at start");
    // The first refetch is allowed 30 s after start. A forged kid per request: the kid is
    // looked up before the signature is checked, so `a`'s signature over another header will do.
    let signed = token(&key_a, "a");
    let mut parts = signed.split('.');
    let (_, claims, signature) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
    for i in 0..1000 {
        let header = base64_url(&json!({ "alg": "RS256", "kid": format!("junk-{i}") }).to_string());
        assert_eq!(status(port, &format!("{header}.{claims}.{signature}")), 403);
    }
    thread::sleep(Duration::from_millis(300));
    assert!(provider.requests() <= 2, "{} requests", provider.requests());
}

/// Base64url without padding.
fn base64_url(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}
