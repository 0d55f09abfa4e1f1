//! Identity through the real `zilla` binary: the jwt guard's `attributes`, identity headers
//! sent to the backend from the verified token only, dynamic roles (`${params.tenant}`,
//! `${method}:${path}`), sessions that belong to their connection, and what each kind of bad
//! token gets. Clients are raw HTTP/1.1 sockets and reqwest over HTTP/2; the backend is a
//! scripted server on 127.0.0.1 that records the request heads it receives.
//!
//! Needs `target/debug/zilla` (`cargo build -p zilla`) and `openssl`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};
use zilla_test_support::{free_port, zilla_bin, Options, SseBackend, Zilla};

mod support;
use support::{now, rsa_key, sign, AUD, ISS};

const SECOND: Duration = Duration::from_secs(1);
const FAILED: &str = "GUARD_JWT_AUTHORIZATION_FAILED";

struct Keys {
    rsa: EncodingKey,
    jwk: Value,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (rsa, jwk) = rsa_key("k1");
        Keys { rsa, jwk }
    })
}

/// Claims of a valid token of `sub` in `tenant` with `scope`, an hour to live.
fn claims(sub: &str, tenant: &str, scope: &str) -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": sub, "scope": scope, "exp": now() + 3600,
        "org": { "tenant": tenant },
    })
}

fn signed(claims: &Value) -> String {
    sign(&keys().rsa, "k1", claims)
}

fn config(port: u16, backend: u16) -> String {
    let jwk = serde_json::to_string(&keys().jwk).unwrap();
    format!(
        r#"name: test
guards:
  jwt0:
    type: jwt
    options:
      issuer: {ISS}
      audience: {AUD}
      roles: scope
      challenge: 1
      attributes:
        tenant: org.tenant
      keys: [ {jwk} ]
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
      authorization:
        jwt0:
          credentials:
            headers:
              authorization: "Bearer {{credentials}}"
    routes:
      - when:
          - headers:
              :path: /tenants/{{tenant}}/items*
        guarded:
          jwt0: [ "tenant:${{params.tenant}}" ]
        with:
          headers:
            overrides:
              x-tenant: ${{guarded['jwt0'].attributes.tenant}}
              x-user: ${{guarded['jwt0'].identity}}
              x-path-tenant: ${{params.tenant}}
        exit: http1
      - when:
          - headers:
              :path: /audit/*
        guarded:
          jwt0: [ "${{method}}:${{path}}" ]
        exit: http1
      - when:
          - headers:
              :path: /events*
        guarded:
          jwt0: [ stream ]
        exit: sse0
  sse0:
    type: sse
    kind: server
    exit: sse1
  sse1:
    type: sse
    kind: client
    exit: http1
  http1:
    type: http
    kind: client
    options:
      versions: [ http/1.1 ]
    exit: tcp1
  tcp1:
    type: tcp
    kind: client
    options: {{ host: 127.0.0.1, port: {backend} }}
telemetry:
  exporters:
    stdout0:
      type: stdout
"#
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
    zilla.wait_for("tcp0 listening on", 10 * SECOND);
    (zilla, backend, port)
}

/// Sends a GET with `headers` on a fresh connection; returns the status line and then drops
/// the connection.
fn status(port: u16, path: &str, headers: &[(&str, &str)]) -> String {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    status_line(&mut conn)
}

fn status_line(conn: &mut TcpStream) -> String {
    conn.set_read_timeout(Some(5 * SECOND)).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(2).any(|w| w == b"\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Waits until `needle` was printed `n` times.
fn wait_count(zilla: &Zilla, needle: &str, n: usize) -> usize {
    let deadline = Instant::now() + 5 * SECOND;
    while zilla.count(needle) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // A little longer, to see a count that goes beyond.
    std::thread::sleep(Duration::from_millis(50));
    zilla.count(needle)
}

/// The backend receives who is asking from the verified token: the client's own `x-tenant` and
/// `x-user` never get through, replaced when the session has the value and removed when not.
#[test]
fn identity_headers_come_from_the_token_never_from_the_client() {
    let (_zilla, backend, port) = start();
    let acme = signed(&claims("alice", "acme", "tenant:acme"));
    let line = status(
        port,
        "/tenants/acme/items",
        &[
            ("authorization", &bearer(&acme)),
            ("x-tenant", "globex"),
            ("x-user", "mallory"),
        ],
    );
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    assert!(backend.wait_requests(1, 5 * SECOND));
    let head = backend.requests()[0].to_ascii_lowercase();
    assert!(head.starts_with("get /tenants/acme/items "), "{head}");
    assert!(head.contains("\r\nx-tenant: acme\r\n"), "{head}");
    assert!(head.contains("\r\nx-user: alice\r\n"), "{head}");
    assert!(head.contains("\r\nx-path-tenant: acme\r\n"), "{head}");
    assert!(
        !head.contains("globex") && !head.contains("mallory"),
        "{head}"
    );

    // A token without the claim: the header the client sent is removed, not passed on.
    let mut no_tenant = claims("carol", "", "tenant:acme");
    no_tenant.as_object_mut().unwrap().remove("org");
    let line = status(
        port,
        "/tenants/acme/items",
        &[
            ("authorization", &bearer(&signed(&no_tenant))),
            ("x-tenant", "globex"),
        ],
    );
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    assert!(backend.wait_requests(2, 5 * SECOND));
    let head = backend.requests()[1].to_ascii_lowercase();
    assert!(!head.contains("x-tenant"), "{head}");
    assert!(head.contains("\r\nx-user: carol\r\n"), "{head}");
}

/// `tenant:${params.tenant}`: a token of acme opens acme's path and gets 403 on globex's,
/// before anything opens upstream; `${method}:${path}` takes the request's method and path.
#[test]
fn dynamic_roles_isolate_tenants_and_take_method_and_path() {
    let (_zilla, backend, port) = start();
    let acme = bearer(&signed(&claims("alice", "acme", "tenant:acme")));
    let globex = bearer(&signed(&claims("bob", "globex", "tenant:globex")));
    let auth = |t: &str| vec![("authorization", t.to_string())];
    let get = |path: &str, token: &str| {
        let h = auth(token);
        let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        status(port, path, &h)
    };
    assert!(get("/tenants/acme/items", &acme).starts_with("HTTP/1.1 200"));
    assert!(get("/tenants/globex/items", &globex).starts_with("HTTP/1.1 200"));
    assert!(backend.wait_requests(2, 5 * SECOND));
    assert!(get("/tenants/globex/items", &acme).starts_with("HTTP/1.1 403"));
    assert!(get("/tenants/acme/items/1", &globex).starts_with("HTTP/1.1 403"));
    // A path that only looks like a tenant's: no route at all.
    assert!(get("/tenants/acme", &acme).starts_with("HTTP/1.1 404"));

    let auditor = bearer(&signed(&claims("dave", "acme", "GET:/audit/log")));
    assert!(get("/audit/log", &auditor).starts_with("HTTP/1.1 200"));
    assert!(get("/audit/other", &auditor).starts_with("HTTP/1.1 403"));
    // The same path with another method needs another role.
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "DELETE /audit/log HTTP/1.1\r\nhost: localhost\r\nauthorization: {auditor}\r\n\r\n"
    )
    .unwrap();
    assert!(status_line(&mut conn).starts_with("HTTP/1.1 403"));

    std::thread::sleep(Duration::from_millis(200));
    let paths: Vec<String> = backend
        .requests()
        .iter()
        .map(|h| h.split(' ').nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        paths,
        ["/tenants/acme/items", "/tenants/globex/items", "/audit/log"],
        "refused requests never reach the backend"
    );
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Replaces part `i` (0 header, 1 payload, 2 signature) of `token`.
fn with_part(token: &str, i: usize, part: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[i] = part.to_string();
    parts.join(".")
}

/// Every kind of bad token is refused (`403`: credentials were sent), never reaches the backend,
/// and is one `GUARD_JWT_AUTHORIZATION_FAILED` line in Zilla's words (`JWT token authorization
/// failed for identity (<sub once the signature verified>). <reason>`), with none of the token.
#[test]
fn bad_tokens_are_refused_with_one_event_each_and_no_token_text() {
    let (zilla, backend, port) = start();
    let good_claims = claims("alice", "acme", "tenant:acme");
    let good = signed(&good_claims);
    let with = |k: &str, v: Value| {
        let mut c = good_claims.clone();
        c[k] = v;
        signed(&c)
    };
    // HS256 keyed with the RSA public key's own text, the classic confusion attack.
    let hs256_with_public_key = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("k1".into());
        let secret = serde_json::to_string(&keys().jwk).unwrap();
        jsonwebtoken::encode(
            &h,
            &good_claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        b64(good_claims.to_string().as_bytes())
    );
    let mut tampered_signature = good.clone();
    let at = tampered_signature.len() - 10;
    let flipped = if &tampered_signature[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    tampered_signature.replace_range(at..at + 1, flipped);
    let mut escalated = good_claims.clone();
    escalated["scope"] = "tenant:acme tenant:globex".into();
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", unsigned, "for identity (). Malformed token: "),
        (
            "HS256 with the public key as secret",
            hs256_with_public_key,
            "for identity (). Invalid alg or key.",
        ),
        (
            "unknown kid",
            sign(&keys().rsa, "k2", &good_claims),
            "for identity (). Invalid alg or key.",
        ),
        (
            "tampered header",
            with_part(
                &good,
                0,
                &b64(br#"{"alg":"RS256","typ":"JOSE","kid":"k1"}"#),
            ),
            "for identity (). Unable to verify key signature.",
        ),
        (
            "tampered payload",
            with_part(&good, 1, &b64(escalated.to_string().as_bytes())),
            "for identity (). Unable to verify key signature.",
        ),
        (
            "tampered signature",
            tampered_signature,
            "for identity (). Unable to verify key signature.",
        ),
        (
            "exp passed",
            with("exp", json!(now() - 10)),
            "for identity (alice). Token is expired.",
        ),
        (
            "nbf ahead",
            with("nbf", json!(now() + 600)),
            "for identity (alice). Token is expired.",
        ),
        (
            "wrong iss",
            with("iss", json!("https://evil.example.com")),
            "for identity (alice). Invalid issuer or audience.",
        ),
        (
            "wrong aud",
            with("aud", json!(["https://other.example.com"])),
            "for identity (alice). Invalid issuer or audience.",
        ),
        (
            "not base64",
            "%%%.@@@.!!!".to_string(),
            "for identity (). Malformed token: ",
        ),
        (
            "payload not an object (signed)",
            sign(&keys().rsa, "k1", &json!([1, 2, 3])),
            "for identity (). Malformed token: ",
        ),
        (
            "header not an object",
            with_part(&good, 0, &b64(b"\"RS256\"")),
            "for identity (). Malformed token: ",
        ),
        (
            "not a JWT at all",
            "hello".to_string(),
            "for identity (). Malformed token: ",
        ),
    ];
    for (i, (what, token, reason)) in cases.iter().enumerate() {
        let line = status(
            port,
            "/tenants/acme/items",
            &[("authorization", &bearer(token))],
        );
        assert!(line.starts_with("HTTP/1.1 403"), "{what}: {line}");
        assert_eq!(
            wait_count(&zilla, FAILED, i + 1),
            i + 1,
            "{what}: one event"
        );
        let event = zilla
            .stdout()
            .into_iter()
            .filter(|l| l.contains(FAILED))
            .nth(i)
            .unwrap();
        assert!(event.contains(reason), "{what}: {event}");
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(
                !event.contains(part),
                "{what}: the event shows the token: {event}"
            );
        }
    }
    // A megabyte of token is bounded by the request head limit, before any guard runs.
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let huge = format!(
        "GET /tenants/acme/items HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}",
        "a".repeat(1 << 20)
    );
    for chunk in huge.as_bytes().chunks(16 * 1024) {
        if conn.write_all(chunk).is_err() {
            break;
        }
    }
    let line = status_line(&mut conn);
    assert!(line.starts_with("HTTP/1.1 431"), "1 MB token: {line}");

    assert!(backend.requests().is_empty(), "nothing reached the backend");
    // And the gateway still serves a good token.
    let line = status(
        port,
        "/tenants/acme/items",
        &[("authorization", &bearer(&good))],
    );
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    assert!(
        zilla.stderr().iter().all(|l| !l.contains("panicked")),
        "{:?}",
        zilla.stderr()
    );
}

/// A session belongs to its connection (HTTP/2): a fresh token sent as a challenge response on
/// one connection renews the streams of that connection only; another connection's stream with
/// the same subject still ends at its own `exp`, and a stream ends when its connection does.
#[test]
fn sessions_belong_to_their_connection() {
    let (_zilla, backend, port) = start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let url = format!("http://127.0.0.1:{port}/events");
        let h2 = || {
            reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap()
        };
        let exp = now() + 3;
        let short = signed(&json!({ "iss": ISS, "aud": AUD, "sub": "alice", "scope": "stream", "exp": exp }));
        let long = signed(&json!({ "iss": ISS, "aud": AUD, "sub": "alice", "scope": "stream", "exp": now() + 3600 }));
        let renew = |client: &reqwest::Client| {
            client
                .post(&url)
                .header("authorization", bearer(&long))
                .header("content-type", "application/x-challenge-response")
                .header("content-length", "0")
                .send()
        };

        // Connection A streams with the short token; connection B, same subject, renews.
        let a = h2();
        let mut stream_a = a
            .get(&url)
            .header("authorization", bearer(&short))
            .send()
            .await
            .unwrap();
        assert_eq!(stream_a.status(), 200);
        assert_eq!(stream_a.version(), reqwest::Version::HTTP_2);
        let b = h2();
        assert_eq!(renew(&b).await.unwrap().status(), 204);

        // Connection C streams with the short token and renews on its own connection.
        let c = h2();
        let mut stream_c = c
            .get(&url)
            .header("authorization", bearer(&short))
            .send()
            .await
            .unwrap();
        assert_eq!(stream_c.status(), 200);
        assert_eq!(renew(&c).await.unwrap().status(), 204);

        // A ends at its exp, whatever B did.
        let ended = tokio::time::timeout(6 * SECOND, async {
            loop {
                match stream_a.chunk().await {
                    Ok(Some(_)) => continue,
                    _ => break now(),
                }
            }
        })
        .await
        .expect("A's stream ends at its token's exp");
        assert!(ended + 1 >= exp, "ended at {ended}, exp {exp}");

        // C goes on past exp.
        tokio::time::sleep(Duration::from_secs((exp + 2).saturating_sub(now()))).await;
        assert_eq!(backend.open_streams(), 1, "C's upstream is still open");
        backend.send_to(1, b"data:still here\n\n");
        let chunk = tokio::time::timeout(5 * SECOND, async {
            loop {
                match stream_c.chunk().await.unwrap() {
                    Some(c) if c.starts_with(b"data:") => break c,
                    Some(_) => continue,
                    None => panic!("C's stream ended"),
                }
            }
        })
        .await
        .expect("C receives events after exp");
        assert_eq!(&chunk[..], b"data:still here\n\n");

        // C's connection closes: its session's stream ends upstream.
        drop(stream_c);
        drop(c);
        let b2 = backend.clone();
        let closed = tokio::task::spawn_blocking(move || b2.wait_open_at_most(0, 5 * SECOND))
            .await
            .unwrap();
        assert!(closed, "C's upstream closed with its connection");
    });
}
