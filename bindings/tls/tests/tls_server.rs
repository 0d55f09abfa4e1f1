//! The tls server through the real binary: tcp server -> tls server -> echo, driven by a rustls
//! client over 127.0.0.1.

mod support;

use std::time::Duration;

use rustls::pki_types::ServerName;
use support::{zilla_bin, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zilla_test_support::{free_port, Options, Zilla};

const WAIT: Duration = Duration::from_secs(20);

fn start(pki: &Pki, port: u16, tls_options: &str, args: &[&str]) -> Zilla {
    let config = format!(
        r#"name: test
{vault}bindings:
  tcp_server0:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: tls_server0
  tls_server0:
    type: tls
    kind: server
    vault: my_servers
    options: {tls_options}
    routes:
      - when: [ {{ authority: localhost }} ]
        exit: echo_server0
      - when: [ {{ alpn: echo }} ]
        exit: echo_server0
  echo_server0:
    type: echo
    kind: server
"#,
        vault = pki.vault("my_servers"),
    );
    let zilla = Zilla::start(
        &zilla_bin(),
        &config,
        Options {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", WAIT);
    zilla
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Connects with TLS; returns the stream or the handshake error.
async fn connect(
    pki: &Pki,
    port: u16,
    sni: &str,
    alpn: &[&str],
    identity: Option<&str>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = TlsConnector::from(pki.client_config(alpn, identity));
    connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
}

/// Writes `message`, then reads until `message.len()` bytes came back, EOF or an error.
async fn echo(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    message: &[u8],
) -> std::io::Result<Vec<u8>> {
    tls.write_all(message).await?;
    tls.flush().await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < message.len() {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("timed out reading the echo"))??;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

#[test]
fn echo_over_tls_with_zillas_alpn_choice() {
    let pki = Pki::generate();
    let port = free_port();
    let _zilla = start(
        &pki,
        port,
        "{ keys: [localhost], alpn: [h2, http/1.1] }",
        &[],
    );
    runtime().block_on(async {
        // Zilla picks the client's first protocol that options.alpn accepts (not the server's).
        let mut tls = connect(&pki, port, "localhost", &["http/1.1", "h2"], None)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let message = b"hello over tls\n".repeat(2000); // 30 KB: several records each way
        assert_eq!(echo(&mut tls, &message).await.unwrap(), message);
        // close_notify from the client ends the stream; the echo ends its reply: clean EOF.
        tls.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).await.expect("clean close");
        assert!(rest.is_empty());
    });
}

#[test]
fn routes_on_sni_and_alpn_after_the_handshake() {
    let pki = Pki::generate();
    let port = free_port();
    let _zilla = start(&pki, port, "{ keys: [localhost], alpn: [h2] }", &[]);
    runtime().block_on(async {
        // SNI `a.example.test` matches no `authority` and ALPN offers nothing routable: the
        // handshake completes (the certificate covers the name) and zilla closes the session.
        let mut tls = connect(&pki, port, "a.example.test", &["h2"], None)
            .await
            .expect("handshake");
        let got = echo(&mut tls, b"anyone there?").await;
        assert!(
            got.as_ref().map_or(true, Vec::is_empty),
            "no route: nothing may be echoed, got {got:?}"
        );

        // The same name offering `echo`: no `options.alpn` match, but a route's `when.alpn`
        // allows it, so zilla selects it and routes on it.
        let mut tls = connect(&pki, port, "a.example.test", &["echo"], None)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"echo"[..]));
        assert_eq!(echo(&mut tls, b"ping").await.unwrap(), b"ping");
    });
}

#[test]
fn mutual_required_rejects_an_untrusted_client_certificate() {
    let pki = Pki::generate();
    let port = free_port();
    let zilla = start(
        &pki,
        port,
        "{ keys: [localhost], trust: [ca], mutual: required }",
        &["-l"],
    );
    runtime().block_on(async {
        // A client certificate from the trusted CA works.
        let mut tls = connect(&pki, port, "localhost", &[], Some("client"))
            .await
            .expect("handshake with a trusted client certificate");
        assert_eq!(echo(&mut tls, b"trusted").await.unwrap(), b"trusted");

        // One from another CA does not: with TLS 1.3 the client may finish its side of the
        // handshake first, so the failure shows as an error (alert) or EOF on the first read.
        for identity in [Some("intruder"), None] {
            match connect(&pki, port, "localhost", &[], identity).await {
                Err(_) => {}
                Ok(mut tls) => {
                    let got = echo(&mut tls, b"let me in").await;
                    assert!(
                        got.as_ref().map_or(true, Vec::is_empty),
                        "{identity:?}: nothing may be echoed, got {got:?}"
                    );
                }
            }
        }
    });
    let line = zilla.wait_for("BINDING_TLS_PEER_NOT_VERIFIED", WAIT);
    assert!(line.contains("test:tls_server0"), "{line}");

    // Plain text where a handshake should be: Zilla's protocol rejection.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut plain, b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n").unwrap();
    let line = zilla.wait_for("BINDING_TLS_PROTOCOL_REJECTED", WAIT);
    assert!(line.contains("test:tls_server0"), "{line}");
}

#[test]
fn handshake_timeout_closes_the_connection() {
    let pki = Pki::generate();
    let port = free_port();
    let zilla = start(
        &pki,
        port,
        "{ keys: [localhost] }",
        &["-l", "-P", "zilla.binding.tls.handshake.timeout=1s"],
    );
    runtime().block_on(async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 64];
        // Say nothing: zilla gives up after 1s and closes (reset or EOF).
        let read = tokio::time::timeout(Duration::from_secs(8), tcp.read(&mut buf))
            .await
            .expect("zilla closes a silent connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(started.elapsed() >= Duration::from_millis(900));
    });
    zilla.wait_for("BINDING_TLS_HANDSHAKE_TIMEOUT", WAIT);
}

#[test]
fn config_errors_name_the_key_to_fix() {
    let pki = Pki::generate();
    let port = free_port();
    let config = format!(
        "name: test\n{}bindings:\n  tcp_server0:\n    type: tcp\n    kind: server\n    options: {{ host: 127.0.0.1, port: {port} }}\n    exit: tls_server0\n  tls_server0:\n    type: tls\n    kind: server\n    vault: my_servers\n    options: {{ keys: [example] }}\n    exit: echo_server0\n  echo_server0:\n    type: echo\n    kind: server\n",
        pki.vault("my_servers")
    );
    let mut zilla = Zilla::start(&zilla_bin(), &config, Options::default());
    let status = zilla.wait_exit(WAIT).expect("zilla exits");
    assert_eq!(status.code(), Some(1));
    let line = zilla.wait_for("bindings.tls_server0.options.keys", WAIT);
    assert!(
        line.contains("no key 'example'") && line.contains("its aliases: localhost"),
        "{line}"
    );

    let wrong = config.replace(
        &format!("password: {}", support::PASSWORD),
        "password: wrong",
    );
    let mut zilla = Zilla::start(&zilla_bin(), &wrong, Options::default());
    assert_eq!(zilla.wait_exit(WAIT).and_then(|s| s.code()), Some(1));
    let line = zilla.wait_for("vaults.my_servers.options.keys.password", WAIT);
    assert!(line.contains("wrong password"), "{line}");
}

#[test]
fn signers_select_the_keys_a_ca_issued() {
    let pki = Pki::generate();
    let port = free_port();
    let config = |signer: &str| {
        format!(
            "name: test\nvaults:\n  my_servers:\n    type: filesystem\n    options:\n      keys: {{ store: {keys}, password: {pw} }}\n      signers: {{ store: {signer}, type: pem }}\nbindings:\n  tcp_server0:\n    type: tcp\n    kind: server\n    options: {{ host: 127.0.0.1, port: {port} }}\n    exit: tls_server0\n  tls_server0:\n    type: tls\n    kind: server\n    vault: my_servers\n    options: {{ signers: [{alias}] }}\n    exit: echo_server0\n  echo_server0:\n    type: echo\n    kind: server\n",
            keys = pki.path("keys.p12"),
            pw = support::PASSWORD,
            signer = pki.path(&format!("{signer}.pem")),
            alias = signer,
        )
    };
    // The test CA issued the `localhost` key: it is selected and serves.
    let zilla = Zilla::start(&zilla_bin(), &config("ca"), Options::default());
    zilla.wait_for("listening on", WAIT);
    runtime().block_on(async {
        let mut tls = connect(&pki, port, "localhost", &[], None)
            .await
            .expect("handshake");
        assert_eq!(echo(&mut tls, b"signed").await.unwrap(), b"signed");
    });
    drop(zilla);
    // Another CA issued none of the keys: a config error says so.
    let mut zilla = Zilla::start(&zilla_bin(), &config("rogue"), Options::default());
    assert_eq!(zilla.wait_exit(WAIT).and_then(|s| s.code()), Some(1));
    let line = zilla.wait_for("bindings.tls_server0.options.signers", WAIT);
    assert!(line.contains("was issued by these signers"), "{line}");
}

/// tcp -> tls (the key from `store`) -> http -> echo, the http.echo shape over TLS.
fn https_echo(pki: &Pki, port: u16, store: &str) -> Zilla {
    let config = format!(
        "name: test
vaults:
  my_servers:
    type: filesystem
    options:
      keys: {store}
bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: north_tls_server
  north_tls_server:
    type: tls
    kind: server
    vault: my_servers
    options: {{ keys: [ localhost ], sni: [ localhost ], alpn: [ h2, http/1.1 ] }}
    exit: north_http_server
  north_http_server:
    type: http
    kind: server
    exit: north_echo_server
  north_echo_server:
    type: echo
    kind: server
",
        store = store.replace("DIR", &pki.dir().display().to_string()),
    );
    Zilla::start(&zilla_bin(), &config, Options::default())
}

/// Zilla's example keystores hold an X.509 version 1 certificate in a legacy-encrypted PKCS#12
/// store: it loads with one warning and is served to curl (trusting the CA) over h2 and
/// http/1.1.
#[test]
fn a_version_1_certificate_in_a_legacy_keystore_is_served() {
    let pki = Pki::generate();
    pki.legacy_stores();
    let port = free_port();
    let zilla = https_echo(
        &pki,
        port,
        &format!(
            "{{ store: DIR/v1.p12, type: pkcs12, password: {}}}",
            support::PASSWORD
        ),
    );
    zilla.wait_for("listening on", WAIT);
    let warning = zilla.wait_for("X.509 version 1 certificate", WAIT);
    assert!(warning.contains("key 'localhost'"), "{warning}");
    for version in ["--http1.1", "--http2"] {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "5", version, "--cacert"])
            .arg(pki.ca_pem())
            .args(["-d", "Hello, world", "-H", "Content-Type: text/plain"])
            .arg(format!("https://localhost:{port}/"))
            .output()
            .expect("curl is installed (apt-get install curl)");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Hello, world",
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A certificate that cannot be served stays a load error with the reason: one whose validity
/// has ended, and one whose public key is not the private key's.
#[test]
fn certificates_that_cannot_be_served_are_load_errors() {
    let pki = Pki::generate();
    pki.legacy_stores();
    for (store, reason) in [
        (
            "{ store: DIR/expired/localhost.pem, type: pem }",
            "its certificate is not valid now",
        ),
        (
            "{ store: DIR/mismatch/localhost.pem, type: pem }",
            "the private key does not match its certificate's public key",
        ),
    ] {
        let mut zilla = https_echo(&pki, free_port(), store);
        assert_eq!(
            zilla.wait_exit(WAIT).and_then(|s| s.code()),
            Some(1),
            "{store}"
        );
        let line = zilla.wait_for("bindings.north_tls_server.options.keys", WAIT);
        assert!(line.contains("key 'localhost' cannot be used:"), "{line}");
        assert!(line.contains(reason), "{line}");
    }
}
