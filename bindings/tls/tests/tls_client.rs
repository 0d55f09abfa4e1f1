//! The tls client through the real binary: tcp server -> tls client -> tcp client -> a TLS echo
//! server run by the test (tokio-rustls). Plaintext goes in, TLS goes to the backend, the
//! plaintext comes back.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{zilla_bin, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use zilla_test_support::{free_port, Options, Zilla};

const WAIT: Duration = Duration::from_secs(20);

/// What the backend saw of each handshake: (SNI, ALPN).
type Seen = Arc<Mutex<Vec<(Option<String>, Option<Vec<u8>>)>>>;

/// A TLS echo server on 127.0.0.1 with the `localhost` certificate; returns its port.
async fn backend(pki: &Pki, seen: Seen) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(pki.server_config(&["http/1.1"]));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                {
                    let conn = tls.get_ref().1;
                    seen.lock().unwrap().push((
                        conn.server_name().map(str::to_owned),
                        conn.alpn_protocol().map(<[u8]>::to_vec),
                    ));
                }
                let mut buf = vec![0u8; 8192];
                loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

fn start(pki: &Pki, port: u16, backend: u16, tls_options: &str) -> Zilla {
    let config = format!(
        r#"name: test
{vault}bindings:
  tcp_server0:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: tls_client0
  tls_client0:
    type: tls
    kind: client
    vault: my_servers
    options: {tls_options}
    exit: tcp_client0
  tcp_client0:
    type: tcp
    kind: client
    options: {{ host: 127.0.0.1, port: {backend} }}
"#,
        vault = pki.vault("my_servers"),
    );
    let zilla = Zilla::start(
        &zilla_bin(),
        &config,
        Options {
            args: vec!["-l".into()],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", WAIT);
    zilla
}

async fn round_trip(port: u16, message: &[u8]) -> Vec<u8> {
    // A refused handshake may reset the connection at any step: that is "nothing came back".
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)).await else {
        return Vec::new();
    };
    if tcp.write_all(message).await.is_err() || tcp.shutdown().await.is_err() {
        return Vec::new();
    }
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got)).await;
    got
}

#[test]
fn plaintext_in_tls_to_the_backend_plaintext_back() {
    let pki = Pki::generate();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = Seen::default();
    let backend = rt.block_on(backend(&pki, seen.clone()));
    let port = free_port();
    let _zilla = start(
        &pki,
        port,
        backend,
        "{ trust: [ca], sni: [localhost], alpn: [http/1.1] }",
    );
    let message = b"through tls and back\n".repeat(3000); // 63 KB
    let got = rt.block_on(round_trip(port, &message));
    assert_eq!(got.len(), message.len());
    assert_eq!(got, message);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(Some("localhost".to_string()), Some(b"http/1.1".to_vec()))],
        "the backend saw SNI and ALPN from options"
    );
}

#[test]
fn an_untrusted_backend_is_refused() {
    let pki = Pki::generate();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = Seen::default();
    let backend = rt.block_on(backend(&pki, seen.clone()));
    let port = free_port();
    // The backend's certificate is for `localhost`, not `wrong.test`: verification fails.
    let zilla = start(&pki, port, backend, "{ trust: [ca], sni: [wrong.test] }");
    let got = rt.block_on(round_trip(port, b"secret"));
    assert!(got.is_empty(), "nothing may come back, got {got:?}");
    // Zilla's name for a peer whose certificate does not verify.
    let line = zilla.wait_for("BINDING_TLS_PEER_NOT_VERIFIED", WAIT);
    assert!(
        line.contains("test:tls_client0") && line.contains("wrong.test"),
        "{line}"
    );
}
