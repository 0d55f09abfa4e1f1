//! What an operator meets in production, through the real binary: a port another zilla holds,
//! the ready file, graceful drain on SIGTERM (and a second signal), running out of file
//! descriptors, an HTTP/2 rapid-reset flood, and the connection limit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use zilla_test_support::{free_port, Options, SseBackend, Zilla};

const SECOND: Duration = Duration::from_secs(1);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zilla"))
}

fn sse_config(port: u16, backend: u16) -> String {
    let south = zilla_test_support::sse_upstream_bindings(backend);
    format!(
        r#"name: example
bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: {port} }}
    exit: north_http_server
  north_http_server:
    type: http
    kind: server
    exit: north_sse_server
  north_sse_server:
    type: sse
    kind: server
    exit: south_sse_client
{south}"#
    )
}

/// An SSE client on a raw socket.
struct Client {
    conn: TcpStream,
    seen: String,
    closed: bool,
}

impl Client {
    fn get(port: u16) -> std::io::Result<Client> {
        let mut conn = TcpStream::connect(("127.0.0.1", port))?;
        conn.write_all(
            b"GET /events HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n",
        )?;
        conn.set_read_timeout(Some(Duration::from_millis(50)))?;
        Ok(Client {
            conn,
            seen: String::new(),
            closed: false,
        })
    }

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
}

#[test]
fn a_second_zilla_on_a_port_another_holds_fails_like_any_server() {
    let backend = SseBackend::start();
    let port = free_port();
    let config = sse_config(port, backend.port());
    let first = Zilla::start(bin(), &config, Options::default());
    first.wait_for("listening on", 10 * SECOND);
    let mut second = Zilla::start(bin(), &config, Options::default());
    let status = second.wait_exit(10 * SECOND).expect("the second one exits");
    assert_eq!(status.code(), Some(1));
    let stderr = second.stderr().join("\n");
    assert!(
        stderr.contains(&format!(
            "example:north_tcp_server: cannot listen on 127.0.0.1:{port}: Address already in use"
        )),
        "{stderr}"
    );
    // The first one still has all the traffic.
    let mut c = Client::get(port).unwrap();
    assert!(c.read_until("\r\n\r\n", 5 * SECOND));
    assert!(c.seen.starts_with("HTTP/1.1 200"), "{}", c.seen);
}

#[test]
fn sigterm_drains_streams_then_ends_them_cleanly_and_a_second_signal_stops_at_once() {
    let backend = SseBackend::start();
    let port = free_port();
    let mut zilla = Zilla::start(
        bin(),
        &sse_config(port, backend.port()),
        Options {
            args: vec!["-P".into(), "zilla.engine.drain.timeout=2s".into()],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", 10 * SECOND);
    let ready = zilla.dir().join(".zilla/engine/ready");
    assert!(
        ready.exists(),
        "the ready file is written once the config is applied"
    );
    let mut c = Client::get(port).unwrap();
    assert!(backend.wait_requests(1, 5 * SECOND));
    assert!(backend.send_to(0, b"id:1\ndata:before\n\n"));
    assert!(c.read_until("data:before\n\n", 5 * SECOND), "{}", c.seen);

    let stopped_at = Instant::now();
    zilla.terminate();
    zilla.wait_for("stopping: no new connections", 5 * SECOND);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!ready.exists(), "the ready file goes when draining starts");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no new connections while draining"
    );
    // The open stream still gets events while it drains...
    assert!(backend.send_to(0, b"id:2\ndata:during\n\n"));
    assert!(c.read_until("data:during\n\n", SECOND), "{}", c.seen);
    // ...then ends cleanly (the chunked terminator), so the client reconnects elsewhere.
    assert!(c.read_until("\r\n0\r\n\r\n", 5 * SECOND), "{}", c.seen);
    let status = zilla.wait_exit(5 * SECOND).expect("zilla exits");
    assert_eq!(status.code(), Some(0));
    let took = stopped_at.elapsed();
    assert!(
        (1800..4500).contains(&took.as_millis()),
        "the drain took {took:?}"
    );

    // With a long drain, a second signal stops at once.
    let port = free_port();
    let mut zilla = Zilla::start(bin(), &sse_config(port, backend.port()), Options::default());
    zilla.wait_for("listening on", 10 * SECOND);
    let _c = Client::get(port).unwrap();
    assert!(backend.wait_requests(2, 5 * SECOND));
    zilla.terminate();
    zilla.wait_for("stopping: no new connections", 5 * SECOND);
    assert!(
        zilla.wait_exit(Duration::from_millis(500)).is_none(),
        "draining"
    );
    zilla.terminate();
    let status = zilla
        .wait_exit(2 * SECOND)
        .expect("the second signal stops it");
    assert_eq!(status.code(), Some(0));
    zilla.wait_for("second signal: stopping now", SECOND);
}

/// With 64 file descriptors, zilla warns at start, says "out of file descriptors" when clients
/// exhaust them (not a bare 502), stays up, and serves again once they are freed.
#[test]
fn running_out_of_file_descriptors_is_explained_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        panic!("prlimit is not installed: apt-get install util-linux");
    }
    let backend = SseBackend::start();
    let port = free_port();
    let zilla = Zilla::start(
        bin(),
        &sse_config(port, backend.port()),
        Options {
            prefix: vec!["prlimit".into(), "--nofile=64:64".into()],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", 10 * SECOND);
    zilla.wait_for(
        "the open files limit allows about 32 proxied streams",
        SECOND,
    );
    // One after the other, each answered before the next: the first ones are served until the
    // descriptors run out (all at once, accepted connections alone can use them up).
    let mut clients: Vec<Client> = Vec::new();
    for _ in 0..60 {
        if let Ok(mut c) = Client::get(port) {
            c.read_until("\r\n\r\n", Duration::from_millis(500));
            clients.push(c);
        }
    }
    let served = clients
        .iter()
        .filter(|c| c.seen.starts_with("HTTP/1.1 200"))
        .count();
    assert!(
        (5..60).contains(&served),
        "{served} of 60 clients served: {:?}\n{}",
        clients
            .iter()
            .map(|c| c.seen.lines().next().unwrap_or("").to_string())
            .collect::<Vec<_>>(),
        zilla.stderr().join("\n")
    );
    let line = zilla.wait_for("out of file descriptors", 5 * SECOND);
    assert!(line.contains("raise the open files limit"), "{line}");
    drop(clients);
    assert!(backend.wait_open_at_most(0, 10 * SECOND));
    std::thread::sleep(Duration::from_millis(300));
    // Recovered: a new client gets its events.
    let mut c = Client::get(port).unwrap();
    assert!(c.read_until("\r\n\r\n", 5 * SECOND), "{}", c.seen);
    assert!(c.seen.starts_with("HTTP/1.1 200"), "{}", c.seen);
    // Its 200 came from the backend, whose streams are all closed but this one's.
    assert!(backend.broadcast(b"data:again\n\n") >= 1);
    assert!(c.read_until("data:again\n\n", 5 * SECOND), "{}", c.seen);
}

/// An HTTP/2 client that opens and cancels streams as fast as it can (CVE-2023-44487) has its
/// connection closed with ENHANCE_YOUR_CALM; zilla keeps serving others.
#[test]
fn an_http2_rapid_reset_flood_closes_the_connection() {
    let backend = SseBackend::start();
    let port = free_port();
    let zilla = Zilla::start(
        bin(),
        &sse_config(port, backend.port()),
        Options {
            args: vec![
                "-P".into(),
                "zilla.binding.http.server.max.client.resets=50".into(),
            ],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", 10 * SECOND);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(connection);
        let mut sent = 0;
        for _ in 0..2000 {
            let request = http::Request::get(format!("http://127.0.0.1:{port}/events"))
                .body(())
                .unwrap();
            let ready = match h2.ready().await {
                Ok(r) => r,
                Err(_) => break,
            };
            h2 = ready;
            match h2.send_request(request, true) {
                Ok((response, _)) => {
                    sent += 1;
                    // Give the server a moment to accept it, then cancel (RST_STREAM).
                    let _ = tokio::time::timeout(Duration::from_millis(2), response).await;
                }
                Err(_) => break,
            }
        }
        let ended = tokio::time::timeout(5 * SECOND, conn).await;
        (sent, ended.is_ok())
    });
    let (sent, closed) = refused;
    assert!(closed, "the connection was not closed after {sent} resets");
    assert!(sent < 2000, "all {sent} streams were taken");
    zilla.wait_for("rapid reset", 5 * SECOND);
    // Others are still served.
    let mut c = Client::get(port).unwrap();
    assert!(c.read_until("\r\n\r\n", 5 * SECOND), "{}", c.seen);
    assert!(c.seen.starts_with("HTTP/1.1 200"), "{}", c.seen);
}

/// `zilla.binding.tcp.max.connections`: at the limit a new connection waits in the backlog
/// (said in the log) and is served as soon as another closes.
#[test]
fn at_the_connection_limit_new_connections_wait_until_one_closes() {
    let port = free_port();
    let config = format!(
        "name: limit\nbindings:\n  tcp0:\n    type: tcp\n    kind: server\n    options: {{ host: 127.0.0.1, port: {port} }}\n    exit: echo0\n  echo0:\n    type: echo\n    kind: server\n"
    );
    let zilla = Zilla::start(
        bin(),
        &config,
        Options {
            // Several workers, each with an accept loop: the limit holds across them.
            args: vec![
                "-w".into(),
                "4".into(),
                "-P".into(),
                "zilla.binding.tcp.max.connections=2".into(),
            ],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", 10 * SECOND);
    let echo = |c: &mut TcpStream, text: &[u8], wait: Duration| -> Vec<u8> {
        c.write_all(text).unwrap();
        c.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 64];
        match c.read(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => Vec::new(),
        }
    };
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(echo(&mut first, b"one", 5 * SECOND), b"one");
    assert_eq!(echo(&mut second, b"two", 5 * SECOND), b"two");
    // The third connects (the kernel's backlog) but is not served...
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(echo(&mut third, b"three", Duration::from_millis(700)), b"");
    zilla.wait_for("connection limit reached", 5 * SECOND);
    // ...until one of the others closes.
    drop(first);
    third.set_read_timeout(Some(5 * SECOND)).unwrap();
    let mut buf = [0u8; 16];
    let n = third.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"three");
    assert_eq!(echo(&mut second, b"still", 5 * SECOND), b"still");
}

/// A second engine started in the same directory leaves the first one's ready file (and its
/// `zilla metrics` socket) alone, and stopping it does not remove them.
#[test]
fn a_second_engine_in_the_same_directory_leaves_the_first_ones_ready_file_alone() {
    let first_port = free_port();
    let echo = |port: u16| {
        format!(
            "name: ready\nbindings:\n  tcp0:\n    type: tcp\n    kind: server\n    options: {{ host: 127.0.0.1, port: {port} }}\n    exit: echo0\n  echo0:\n    type: echo\n    kind: server\n"
        )
    };
    let first = Zilla::start(bin(), &echo(first_port), Options::default());
    first.wait_for("listening on", 10 * SECOND);
    let ready = first.dir().join(".zilla/engine/ready");
    assert!(ready.exists());

    let mut second = Zilla::start(
        bin(),
        &echo(free_port()),
        Options {
            args: vec![
                "-P".into(),
                format!(
                    "zilla.engine.directory={}",
                    first.dir().join(".zilla/engine").display()
                ),
            ],
            ..Options::default()
        },
    );
    second.wait_for("another engine serves this engine directory", 10 * SECOND);
    second.terminate();
    assert!(
        second.wait_exit(10 * SECOND).is_some(),
        "the second engine stops"
    );
    // The first engine's metrics socket is still its own.
    let (code, out, err) = zilla_test_support::run(bin(), &["metrics"], first.dir());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        ready.exists(),
        "the second engine removed the first one's ready file"
    );
}

/// A config change saved while the engine drains is not applied: nothing starts listening again
/// on a stopping engine.
#[test]
fn a_config_change_during_the_drain_is_not_applied() {
    let (port, moved) = (free_port(), free_port());
    let echo = |port: u16| {
        format!(
            "name: drain\nbindings:\n  tcp0:\n    type: tcp\n    kind: server\n    options: {{ host: 127.0.0.1, port: {port} }}\n    exit: echo0\n  echo0:\n    type: echo\n    kind: server\n"
        )
    };
    let zilla = Zilla::start(
        bin(),
        &echo(port),
        Options {
            args: vec![
                "-P".into(),
                "zilla.engine.config.watch.interval=100ms".into(),
                "-P".into(),
                "zilla.engine.drain.timeout=5s".into(),
            ],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", 10 * SECOND);
    // An open connection keeps the drain going.
    let _open = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    zilla.terminate();
    zilla.wait_for("stopping: no new connections", 5 * SECOND);
    zilla.rewrite_config(&echo(moved));
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        TcpStream::connect(("127.0.0.1", moved)).is_err(),
        "a draining engine started listening on the changed config's port"
    );
    assert_eq!(zilla.count("config reloaded"), 0);
}
