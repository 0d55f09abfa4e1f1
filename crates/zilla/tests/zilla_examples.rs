//! Zilla's example shapes (`tests/zilla-examples/*/etc/zilla.yaml`, written here in the same
//! shape as Zilla's) start through the real binary and answer the request each of Zilla's
//! READMEs shows. Only what a container provides is changed: free ports for the fixed ones,
//! 127.0.0.1 for compose host names, a temporary `www/`, and keystores made now by `openssl` in
//! Zilla's kind (an X.509 version 1 `localhost` certificate, legacy-encrypted PKCS#12,
//! `KEYSTORE_PASSWORD=generated`). `zilla validate` accepts each one as it is.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use zilla_test_support::{free_port, run, Options, SseBackend, Zilla};

const WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "generated";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zilla"))
}

fn fixture(example: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/zilla-examples")
        .join(example)
        .join("etc/zilla.yaml");
    std::fs::read_to_string(path).unwrap()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): apt-get install openssl"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Keystores as Zilla's examples ship them, made once: `test-ca.crt` (an X.509 v1 CA),
/// `localhost.p12` (a v1 leaf for CN=localhost, legacy encryption, password `generated`),
/// `nginx.p12` (a v3 leaf for `nginx`, for the https origin) and `truststore.p12` (the CA as
/// alias `nginx`).
fn tls_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pass = format!("pass:{PASSWORD}");
        // A version 1 CA too (self-signed by `x509 -req -signkey`: no extensions).
        let ca = |args: &str| openssl(d, &args.split(' ').collect::<Vec<_>>());
        ca("req -newkey rsa:2048 -nodes -keyout ca.key -out ca.csr -subj /CN=TestCA");
        ca("x509 -req -in ca.csr -signkey ca.key -days 2 -out test-ca.crt");
        for (name, ext) in [
            ("localhost", None),
            ("nginx", Some("subjectAltName=DNS:nginx\n")),
        ] {
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let subj = format!("/CN={name}");
            openssl(
                d,
                &[
                    "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                    &subj,
                ],
            );
            let mut args = vec![
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "test-ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &crt,
            ];
            let extfile = format!("{name}.ext");
            if let Some(ext) = ext {
                std::fs::write(d.join(&extfile), ext).unwrap();
                args.extend(["-extfile", &extfile]);
            }
            openssl(d, &args);
            let p12 = format!("{name}.p12");
            openssl(
                d,
                &[
                    "pkcs12",
                    "-export",
                    "-legacy",
                    "-inkey",
                    &key,
                    "-in",
                    &crt,
                    "-certfile",
                    "test-ca.crt",
                    "-name",
                    name,
                    "-out",
                    &p12,
                    "-passout",
                    &pass,
                ],
            );
        }
        openssl(
            d,
            &[
                "pkcs12",
                "-export",
                "-legacy",
                "-nokeys",
                "-in",
                "test-ca.crt",
                "-caname",
                "nginx",
                "-out",
                "truststore.p12",
                "-passout",
                &pass,
            ],
        );
        dir
    })
    .path()
}

fn file(name: &str) -> Vec<u8> {
    std::fs::read(tls_dir().join(name)).unwrap()
}

fn with_keystores() -> Options {
    Options {
        env: vec![("KEYSTORE_PASSWORD".into(), PASSWORD.into())],
        files: vec![
            ("tls/localhost.p12".into(), file("localhost.p12")),
            ("tls/truststore.p12".into(), file("truststore.p12")),
        ],
        ..Options::default()
    }
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl is installed (apt-get install curl)")
}

fn ca() -> String {
    tls_dir().join("test-ca.crt").display().to_string()
}

/// The RSA key of the jwt examples' guard, and its modulus for the config.
fn jwt_key() -> &'static (EncodingKey, String) {
    static KEY: OnceLock<(EncodingKey, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let out = Command::new("openssl")
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
        let jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        let AlgorithmParameters::RSA(rsa) = jwk.algorithm else {
            panic!("an RSA key")
        };
        (key, rsa.n)
    })
}

/// A token as the examples' READMEs mint it (`iss`, `aud`, `sub`, `scope`, an hour to live).
fn token(scope: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("example".into());
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({
        "iss": "https://auth.example.com", "aud": "https://api.example.com",
        "sub": "example", "scope": scope, "exp": exp,
    });
    encode(&header, &claims, &jwt_key().0).unwrap()
}

/// `zilla validate` on the fixture as written (with its keystores and password).
fn validates(example: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    let config = fixture(example).replace("RSA_MODULUS", &jwt_key().1);
    std::fs::write(dir.path().join("zilla.yaml"), config).unwrap();
    for f in ["localhost.p12", "truststore.p12"] {
        std::fs::write(dir.path().join("tls").join(f), file(f)).unwrap();
    }
    let out = Command::new(bin())
        .args(["validate", "-c", "zilla.yaml"])
        .current_dir(dir.path())
        .env("KEYSTORE_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{example}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "zilla.yaml: valid\n");
}

#[test]
fn tcp_echo() {
    validates("tcp.echo");
    let port = free_port();
    let zilla = Zilla::start(
        bin(),
        &fixture("tcp.echo").replace("12345", &port.to_string()),
        Options::default(),
    );
    zilla.wait_for("listening on", WAIT);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"Hello, world\n").unwrap();
    let mut echoed = [0; 13];
    conn.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"Hello, world\n");
}

#[test]
fn http_echo() {
    validates("http.echo");
    let port = free_port();
    let zilla = Zilla::start(
        bin(),
        &fixture("http.echo").replace("7114", &port.to_string()),
        Options::default(),
    );
    zilla.wait_for("listening on", WAIT);
    let url = format!("http://localhost:{port}/");
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let out = curl(&[
            "-d",
            "Hello, world",
            "-H",
            "Content-Type: text/plain",
            "-X",
            "POST",
            &url,
            version,
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Hello, world",
            "{version}"
        );
    }
}

#[test]
fn http_filesystem() {
    validates("http.filesystem");
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "<h1>Welcome</h1>\n").unwrap();
    let port = free_port();
    let config = fixture("http.filesystem")
        .replace("7114", &port.to_string())
        .replace("/var/www/", &format!("{}/", www.path().display()));
    let zilla = Zilla::start(bin(), &config, Options::default());
    zilla.wait_for("listening on", WAIT);
    let out = curl(&[&format!("http://localhost:{port}/index.html")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "<h1>Welcome</h1>\n");
}

/// The https origin Zilla's http.proxy puts behind it (nginx there): a zilla serving
/// http.echo over TLS with a certificate for `nginx`, h2 by ALPN.
fn https_origin() -> (Zilla, u16) {
    let port = free_port();
    let config = format!(
        "name: origin
vaults:
  origin:
    type: filesystem
    options:
      keys: {{ store: tls/nginx.p12, type: pkcs12, password: {PASSWORD} }}
bindings:
  tcp0:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: tls0
  tls0:
    type: tls
    kind: server
    vault: origin
    options: {{ keys: [ nginx ], alpn: [ h2 ] }}
    exit: http0
  http0:
    type: http
    kind: server
    exit: echo0
  echo0:
    type: echo
    kind: server
"
    );
    let zilla = Zilla::start(
        bin(),
        &config,
        Options {
            files: vec![("tls/nginx.p12".into(), file("nginx.p12"))],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", WAIT);
    (zilla, port)
}

#[test]
fn http_proxy() {
    validates("http.proxy");
    let (_origin, origin_port) = https_origin();
    let port = free_port();
    let config = fixture("http.proxy")
        .replace("7143", &port.to_string())
        .replace("host: nginx", "host: 127.0.0.1")
        .replace("port: 443", &format!("port: {origin_port}"));
    let zilla = Zilla::start(bin(), &config, with_keystores());
    zilla.wait_for("listening on", WAIT);
    let warning = zilla.wait_for("X.509 version 1 certificate", WAIT);
    assert!(warning.contains("key 'localhost'"), "{warning}");
    let out = curl(&[
        "--cacert",
        &ca(),
        "--http2",
        "-d",
        "Hello, proxy",
        "-H",
        "Content-Type: text/plain",
        &format!("https://localhost:{port}/"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello, proxy",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn http_proxy_jwt() {
    validates("http.proxy.jwt");
    let port = free_port();
    let config = fixture("http.proxy.jwt")
        .replace("7114", &port.to_string())
        .replace("RSA_MODULUS", &jwt_key().1);
    let zilla = Zilla::start(bin(), &config, Options::default());
    zilla.wait_for("listening on", WAIT);
    let url = format!("http://localhost:{port}/");
    let status = |args: &[&str]| {
        let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        all.extend(args);
        all.push(&url);
        String::from_utf8(curl(&all).stdout).unwrap()
    };
    assert_eq!(status(&[]), "401", "no token");
    let wrong = format!("Authorization: Bearer {}", token("other:scope"));
    // Zilla answers 404; the route exists and the token lacks its role, so we answer 403.
    assert_eq!(
        status(&["-H", &wrong]),
        "403",
        "a token without echo:stream"
    );
    let bearer = format!("Authorization: Bearer {}", token("echo:stream"));
    let out = curl(&[
        "-H",
        &bearer,
        "-H",
        "Content-Type: text/plain",
        "-d",
        "Hello, World",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello, World");
}

#[test]
fn sse_proxy_jwt() {
    validates("sse.proxy.jwt");
    let backend = SseBackend::start();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "<h1>Events</h1>\n").unwrap();
    let port = free_port();
    let config = fixture("sse.proxy.jwt")
        .replace("7143", &port.to_string())
        .replace("RSA_MODULUS", &jwt_key().1)
        .replace("host: sse-server", "host: 127.0.0.1")
        .replace("port: 8001", &format!("port: {}", backend.port()))
        .replace("/var/www/", &format!("{}/", www.path().display()));
    let zilla = Zilla::start(bin(), &config, with_keystores());
    zilla.wait_for("listening on", WAIT);
    let base = format!("https://localhost:{port}");
    // The page is served to anyone.
    let page = curl(&["--cacert", &ca(), "--http2", &format!("{base}/index.html")]);
    assert_eq!(String::from_utf8_lossy(&page.stdout), "<h1>Events</h1>\n");
    // The stream needs a token with proxy:stream.
    let refused = curl(&[
        "--cacert",
        &ca(),
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/events"),
    ]);
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "404");
    let client = Command::new("curl")
        .args(["-sN", "--max-time", "3", "--http2", "--cacert", &ca()])
        .arg(format!(
            "{base}/events?access_token={}",
            token("proxy:stream")
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        backend.wait_requests(1, WAIT),
        "the stream reached the backend"
    );
    assert!(backend.send_to(0, b"data:Hello, world\n\n"));
    let out = client.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "data:Hello, world\n\n"
    );
}

/// `zilla validate` reports every error of a broken config, located, and exits 1; it opens no
/// listener (the config's port stays free).
#[test]
fn validate_reports_every_error_and_listens_on_nothing() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = fixture("http.echo")
        .replace("7114", &port.to_string())
        .replace("exit: north_echo_server", "exit: north_echo_sever")
        .replace("type: echo", "type: ecoh");
    std::fs::write(dir.path().join("zilla.yaml"), config).unwrap();
    let (code, stdout, stderr) = run(bin(), &["validate", "-c", "zilla.yaml"], dir.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    for expected in [
        "zilla.yaml:16:11: bindings.north_echo_server.type: unknown binding type 'ecoh'",
        "zilla.yaml: 2 error(s)",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
    assert!(
        stderr.contains("bindings.north_http_server.exit: no binding named 'north_echo_sever'"),
        "{stderr}"
    );
    // It never listened.
    std::net::TcpListener::bind(("0.0.0.0", port)).expect("the port stays free");
}
