//! The example proxy between a real tcp server and an echo (or a tcp client), over real sockets.

use std::time::Duration;

use binding_echo as _;
use binding_example_proxy as _;
use binding_tcp as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zilla_engine::config::Config;
use zilla_engine::{build, BuildEnv, Graph, Properties};
use zilla_test_support::free_port;

fn graph(yaml: &str) -> Result<std::sync::Arc<Graph>, String> {
    let config = Config::parse("zilla.yaml", yaml, |_| None).map_err(|d| d.to_string())?;
    build(&config, &BuildEnv::new(Properties::default())).map_err(|d| d.to_string())
}

fn config(port: u16, exit: &str, extra: &str) -> String {
    format!(
        "name: test\nbindings:\n  tcp0:\n    type: tcp\n    kind: server\n    options: {{ host: 127.0.0.1, port: {port} }}\n    exit: relay0\n  relay0:\n    type: example-proxy\n    kind: proxy\n    exit: {exit}\n  echo0:\n    type: echo\n    kind: server\n{extra}"
    )
}

#[tokio::test]
async fn relays_both_directions_and_the_clean_end() {
    let port = free_port();
    let g = graph(&config(port, "echo0", "")).expect("valid config");
    g.attach().expect("listens");
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    c.write_all(b"Hello, relay").await.unwrap();
    let mut buf = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
        .await
        .expect("echoed in time")
        .unwrap();
    assert_eq!(&buf, b"Hello, relay");
    // Half-close: the End goes to echo, whose End comes back as end of file.
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .expect("ended in time")
        .unwrap();
    assert_eq!(n, 0);
    g.detach();
}

#[tokio::test]
async fn a_failing_exit_closes_the_client_connection() {
    let port = free_port();
    let closed = free_port();
    let client = format!(
        "  tcp1:\n    type: tcp\n    kind: client\n    options: {{ host: 127.0.0.1, port: {closed} }}\n"
    );
    let g = graph(&config(port, "tcp1", &client)).expect("valid config");
    g.attach().expect("listens");
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = c.write_all(b"anyone there?").await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("the refusal reaches the client in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected the connection to close, got {read:?}"
    );
    g.detach();
}

#[test]
fn a_proxy_without_an_exit_is_a_config_error() {
    let yaml = "name: test\nbindings:\n  relay0:\n    type: example-proxy\n    kind: proxy\n";
    let e = graph(yaml).expect_err("refused");
    assert!(
        e.contains(
            "zilla.yaml:4:9: bindings.relay0: a example-proxy proxy needs an `exit` or `routes`"
        ),
        "{e}"
    );
}
