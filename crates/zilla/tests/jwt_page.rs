//! `examples/sse.proxy.jwt` as shipped (its zilla.yaml and page; ports moved to free ones, the
//! keystore and the JWT key made here), in headless Chromium over HTTPS with HTTP/2, driven and
//! read through the DevTools protocol: the page streams events in order; with a short-lived
//! token it answers zilla's challenge with a fresh one and keeps receiving past the first
//! token's expiry; with a token without the role it shows the refusal. A screenshot of the page
//! with its events is written to the test's output folder.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use zilla_test_support::{free_port, Options, SseBackend, Zilla};

#[path = "../../../bindings/tls/tests/support/mod.rs"]
mod tls;

const SECOND: Duration = Duration::from_secs(1);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Setup {
    zilla: Zilla,
    backend: SseBackend,
    port: u16,
    key: EncodingKey,
    spki: String,
    _pki: tls::Pki,
}

fn openssl_out(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn setup() -> Setup {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sse.proxy.jwt");
    let pki = tls::Pki::generate();
    // The SPKI hash of the server certificate, for Chromium to trust it.
    let pubkey = openssl_out(
        &["x509", "-in", "localhost.crt", "-pubkey", "-noout"],
        pki.dir(),
    );
    std::fs::write(pki.dir().join("localhost.pub"), pubkey).unwrap();
    let der = openssl_out(
        &["pkey", "-pubin", "-in", "localhost.pub", "-outform", "der"],
        pki.dir(),
    );
    std::fs::write(pki.dir().join("localhost.der"), der).unwrap();
    let digest = openssl_out(&["dgst", "-sha256", "-binary", "localhost.der"], pki.dir());
    let spki = base64_std(&digest);

    let pem = openssl_out(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        pki.dir(),
    );
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let jwk =
        serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap()).unwrap();
    let n = jwk["n"].as_str().unwrap().to_string();

    let backend = SseBackend::start();
    let port = free_port();
    let config = std::fs::read_to_string(root.join("zilla.yaml"))
        .unwrap()
        .replace("7143", &port.to_string())
        .replace("port: 8001", &format!("port: {}", backend.port()));
    let mut files = vec![(
        "tls/localhost.p12".to_string(),
        std::fs::read(pki.dir().join("keys.p12")).unwrap(),
    )];
    for page in ["index.html", "app.js"] {
        files.push((
            format!("www/{page}"),
            std::fs::read(root.join("www").join(page)).unwrap(),
        ));
    }
    let zilla = Zilla::start(
        Path::new(env!("CARGO_BIN_EXE_zilla")),
        &config,
        Options {
            env: vec![
                ("KEYSTORE_PASSWORD".into(), tls::PASSWORD.into()),
                ("JWT_N".into(), n),
            ],
            files,
            ..Options::default()
        },
    );
    zilla.wait_for("north_tcp_server listening on", 10 * SECOND);
    Setup {
        zilla,
        backend,
        port,
        key,
        spki,
        _pki: pki,
    }
}

fn base64_std(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = c.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - c.len()));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn token(key: &EncodingKey, scope: &str, exp: u64) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("example".into());
    let claims = json!({ "iss": "https://auth.example.com", "aud": "https://api.example.com",
        "sub": "alice", "scope": scope, "exp": exp });
    encode(&h, &claims, key).unwrap()
}

/// Headless Chromium with a DevTools connection to its page.
struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> &'static str {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is not installed: apt-get install chromium")
}

impl Browser {
    fn open(url: &str, spki: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1200,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--ignore-certificate-errors-spki-list={spki}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run chromium");
        // Chromium writes the port it took to DevToolsActivePort.
        let file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + 20 * SECOND;
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.lines().next()?.parse().ok())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "chromium did not open DevTools");
            std::thread::sleep(Duration::from_millis(100));
        };
        let ws_url = loop {
            let targets = http_get(port, "/json/list");
            let targets: Value = serde_json::from_str(&targets).unwrap_or(Value::Null);
            if let Some(url) = targets
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            {
                break url.to_string();
            }
            assert!(Instant::now() < deadline, "no page in chromium");
            std::thread::sleep(Duration::from_millis(100));
        };
        let (ws, _) = tungstenite::connect(ws_url).expect("DevTools websocket");
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
            tcp.set_read_timeout(Some(10 * SECOND)).unwrap();
        }
        Browser {
            child,
            ws,
            next: 0,
            _profile: profile,
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(tungstenite::Message::text(
                json!({ "id": id, "method": method, "params": params }).to_string(),
            ))
            .unwrap();
        loop {
            let message = self.ws.read().expect("DevTools answer");
            if let Ok(v) = serde_json::from_str::<Value>(message.to_text().unwrap_or("")) {
                if v["id"] == id {
                    return v["result"].clone();
                }
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        )["result"]["value"]
            .clone()
    }

    /// The ids of the event rows (type `message`), in order.
    fn ids(&mut self) -> Vec<String> {
        let v = self.eval(
            "[...document.querySelectorAll('#events tbody tr.message td:nth-child(2)')].map(td => td.textContent)",
        );
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    }

    fn text(&mut self, selector: &str) -> String {
        self.eval(&format!("document.querySelector('{selector}').textContent"))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn wait(&mut self, what: &str, timeout: Duration, f: impl Fn(&mut Browser) -> bool) {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: page {:?} ({:?}), status {:?}, rows {:?}",
                self.eval("location.href"),
                self.eval("document.title + ' ' + document.body.innerText.slice(0, 300)"),
                self.text("#status"),
                self.eval("document.querySelector('#events tbody').innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&mut self, name: &str) -> PathBuf {
        let data = self.call("Page.captureScreenshot", json!({ "format": "png" }))["data"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let png = decode_base64(&data);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::new();
    for c in clean.chunks(4) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(value(*b)) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..c.len()]);
    }
    out
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(
        c,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n"
    );
    let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
    let mut out = String::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
        if out.trim_end().ends_with(']') {
            break;
        }
    }
    out.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

fn page(port: u16, token: &str, renew: &str) -> String {
    format!("https://localhost:{port}/#token={token}&renew={renew}")
}

#[test]
fn the_page_streams_events_in_order() {
    let s = setup();
    let t = token(&s.key, "proxy:stream", now() + 3600);
    let mut browser = Browser::open(&page(s.port, &t, ""), &s.spki);
    assert!(
        s.backend.wait_requests(1, 20 * SECOND),
        "the page never subscribed"
    );
    browser.wait("open", 10 * SECOND, |b| b.text("#state") == "open");
    for i in 1..=5 {
        assert!(s
            .backend
            .send_to(0, format!("id:{i}\ndata:event {i}\n\n").as_bytes()));
    }
    browser.wait("five events", 10 * SECOND, |b| b.ids().len() == 5);
    assert_eq!(browser.ids(), ["1", "2", "3", "4", "5"]);
    // Over HTTP/2, as Zilla's example serves it.
    let protocol = browser.eval("performance.getEntriesByType('navigation')[0].nextHopProtocol");
    assert_eq!(protocol, "h2");
    let shot = browser.screenshot("sse.proxy.jwt-page.png");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 1000,
        "{}",
        shot.display()
    );
    drop(s.zilla);
}

#[test]
fn a_short_lived_token_is_renewed_when_challenged_and_the_stream_goes_on() {
    let s = setup();
    // Expires in 6 s; the config challenges 10 s before exp, so at once.
    let exp = now() + 6;
    let short = token(&s.key, "proxy:stream", exp);
    let fresh = token(&s.key, "proxy:stream", now() + 3600);
    let mut browser = Browser::open(&page(s.port, &short, &fresh), &s.spki);
    assert!(s.backend.wait_requests(1, 20 * SECOND));
    browser.wait("the challenge and its answer", 15 * SECOND, |b| {
        b.text("#why").contains("renewed")
    });
    let challenges = browser.eval("document.querySelectorAll('#events tr.challenge').length");
    assert_eq!(challenges, 1);
    // Past the first token's exp, events still arrive on the same stream.
    while now() <= exp + 1 {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(s.backend.send_to(0, b"id:1\ndata:after exp\n\n"));
    browser.wait("an event after exp", 10 * SECOND, |b| b.ids() == ["1"]);
    assert_eq!(
        s.backend.requests().len(),
        1,
        "the same upstream stream, no reconnect"
    );
    assert_eq!(browser.text("#state"), "open");
}

#[test]
fn a_token_without_the_role_shows_the_refusal() {
    let s = setup();
    let t = token(&s.key, "proxy:read", now() + 3600);
    let mut browser = Browser::open(&page(s.port, &t, ""), &s.spki);
    browser.wait("the refusal", 20 * SECOND, |b| b.text("#state") == "closed");
    let why = browser.text("#why");
    assert!(why.contains("lacks the role proxy:stream"), "{why}");
    assert!(
        s.backend.requests().is_empty(),
        "nothing reached the backend"
    );
}
