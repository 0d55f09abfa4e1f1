//! Fault injection through the real binary: the backend killed mid-stream and restarted,
//! 10,000 connections opened and dropped (half reset mid-stream), a slow reader among 1,000
//! clients, reloads while 1,000 streams flow, idle connections probed by TCP keepalive, and
//! half-open clients (in a network namespace whose loopback goes down) reaped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zilla_test_support::{free_port, rss_kib, sse_server_bin, Options, SseBackend, Zilla};

const SECOND: Duration = Duration::from_secs(1);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zilla"))
}

fn config(port: u16, backend: u16) -> String {
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
    options: {{ versions: [ http/1.1 ] }}
    routes:
      - when: [ {{ headers: {{ ":path": "/events*" }} }} ]
        exit: north_sse_server
  north_sse_server:
    type: sse
    kind: server
    exit: south_sse_client
{south}"#
    )
}

fn get(port: u16, extra: &str) -> std::io::Result<TcpStream> {
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        c,
        "GET /events HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n{extra}\r\n"
    )?;
    Ok(c)
}

/// Reads from `c` until `needle`, the end of the connection, or `timeout`; returns what it read
/// and whether the connection ended.
fn read_until(c: &mut TcpStream, needle: &str, timeout: Duration) -> (String, bool) {
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let deadline = Instant::now() + timeout;
    let mut seen = String::new();
    let mut buf = [0u8; 8192];
    while !seen.contains(needle) && Instant::now() < deadline {
        match c.read(&mut buf) {
            Ok(0) => return (seen, true),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (seen, true),
        }
    }
    (seen, false)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

struct Backend {
    child: Child,
}

impl Backend {
    fn start(sse_port: u16, input_port: u16) -> Backend {
        let mut child = Command::new(sse_server_bin())
            .args([
                "--sse-port",
                &sse_port.to_string(),
                "--input-port",
                &input_port.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(out).lines() {});
        let deadline = Instant::now() + 10 * SECOND;
        while TcpStream::connect(("127.0.0.1", input_port)).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Backend { child }
    }

    fn publish(input_port: u16, id: u32) {
        let mut p = TcpStream::connect(("127.0.0.1", input_port)).unwrap();
        writeln!(p, "{{\"data\":\"event {id}\",\"id\":\"{id}\"}}").unwrap();
        let mut ok = String::new();
        BufReader::new(p).read_line(&mut ok).unwrap();
        assert_eq!(ok.trim(), "ok");
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The backend dies mid-stream: the client's stream ends at once (no hang), zilla stays up and
/// answers 502 while there is no backend, and once it is back a client reconnecting with its
/// `Last-Event-ID` gets the stream again.
#[test]
fn a_backend_killed_mid_stream_ends_streams_and_they_resume_after_it_restarts() {
    let (sse_port, input_port) = (free_port(), free_port());
    let backend = Backend::start(sse_port, input_port);
    let port = free_port();
    let mut zilla = Zilla::start(bin(), &config(port, sse_port), Options::default());
    zilla.wait_for("listening on", 10 * SECOND);
    let mut c = get(port, "").unwrap();
    let (seen, _) = read_until(&mut c, "\r\n\r\n", 5 * SECOND);
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    Backend::publish(input_port, 1);
    let (seen, _) = read_until(&mut c, "data:event 1\n\n", 5 * SECOND);
    assert!(seen.contains("id:1\n"), "{seen}");

    drop(backend); // SIGKILL
    let started = Instant::now();
    let (seen, ended) = read_until(&mut c, "\r\n0\r\n\r\n", 5 * SECOND);
    assert!(
        ended || seen.contains("\r\n0\r\n\r\n"),
        "the stream hangs after its backend died: {seen:?}"
    );
    assert!(started.elapsed() < 3 * SECOND);
    assert!(
        zilla.wait_exit(Duration::from_millis(100)).is_none(),
        "zilla exited"
    );
    let mut down = get(port, "").unwrap();
    let (seen, _) = read_until(&mut down, "\r\n\r\n", 5 * SECOND);
    assert!(seen.starts_with("HTTP/1.1 502"), "{seen}");

    let _backend = Backend::start(sse_port, input_port);
    let mut again = get(port, "last-event-id: 1\r\n").unwrap();
    let (seen, _) = read_until(&mut again, "\r\n\r\n", 5 * SECOND);
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    Backend::publish(input_port, 2);
    let (seen, _) = read_until(&mut again, "data:event 2\n\n", 5 * SECOND);
    assert!(seen.contains("id:2\n"), "{seen}");
}

/// 10,000 connections opened and dropped, half of them reset mid-stream: open file
/// descriptors come back to where they were, memory stays within 5% (after a warm-up that
/// lets the allocator settle), and no stream is left open on any binding (`zilla metrics`:
/// every `stream.active.*` gauge back to 0, as many streams ended, cleanly or not, as opened).
#[test]
fn churn_leaves_fds_and_memory_where_they_were() {
    let backend = SseBackend::start();
    let port = free_port();
    // Every binding counts its streams.
    let counted = format!(
        "telemetry:\n  metrics: [ stream.active.received, stream.active.sent, stream.opens.received, stream.closes.received, stream.errors.received ]\n{}",
        config(port, backend.port()).replace("    kind: ", "    telemetry: { metrics: [ \"stream.*\" ] }\n    kind: ")
    );
    let zilla = Zilla::start(bin(), &counted, Options::default());
    zilla.wait_for("listening on", 10 * SECOND);
    let pid = zilla.pid();
    let cycle = |i: usize| {
        let mut c = get(port, "").unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        if i.is_multiple_of(2) {
            // Reset mid-stream: SO_LINGER 0 sends an RST on close.
            socket2::SockRef::from(&c)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    };
    let settle = |what: &str| {
        assert!(
            backend.wait_open_at_most(0, 20 * SECOND),
            "{what}: streams still open upstream"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    for i in 0..1000 {
        cycle(i);
    }
    settle("warm-up");
    let (fds, rss) = (open_fds(pid), rss_kib(pid).unwrap());
    for i in 0..10_000 {
        cycle(i);
    }
    settle("churn");
    let (fds_after, rss_after) = (open_fds(pid), rss_kib(pid).unwrap());
    assert_eq!(
        fds_after, fds,
        "open file descriptors after 10,000 connections"
    );
    assert!(
        rss_after * 100 <= rss * 105,
        "RSS {rss} KiB before, {rss_after} KiB after 10,000 connections"
    );
    let out = Command::new(bin())
        .arg("metrics")
        .current_dir(zilla.dir())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(String, String, u64)> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((
                cols.get(1)?.to_string(),
                cols.get(2)?.to_string(),
                cols.get(3)?.parse().ok()?,
            ))
        })
        .collect();
    let value = |binding: &str, metric: &str| {
        rows.iter()
            .find(|(b, m, _)| b == binding && m == metric)
            .map(|r| r.2)
    };
    assert_eq!(
        value("north_tcp_server", "stream.active.sent"),
        Some(0),
        "the tcp server has streams left:\n{table}"
    );
    for binding in [
        "north_http_server",
        "north_sse_server",
        "south_sse_client",
        "south_http_client",
        "south_tcp_client",
    ] {
        assert_eq!(
            value(binding, "stream.active.received"),
            Some(0),
            "{binding} has streams left:\n{table}"
        );
        let opens = value(binding, "stream.opens.received").unwrap_or(0);
        assert!(opens >= 11_000, "{binding} counted {opens} opens:\n{table}");
        let ended = value(binding, "stream.closes.received").unwrap_or(0)
            + value(binding, "stream.errors.received").unwrap_or(0);
        assert_eq!(
            ended, opens,
            "{binding}: every stream opened ended:\n{table}"
        );
    }
}

/// 1,000 streams flow while the config is reloaded twice: a valid change that leaves their
/// route alone drops none of them, and an invalid one keeps the running config serving them.
#[test]
fn reloads_under_load_drop_no_stream() {
    let backend = SseBackend::start();
    let port = free_port();
    let zilla = Zilla::start(
        bin(),
        &config(port, backend.port()),
        Options {
            args: vec![
                "-P".into(),
                "zilla.engine.config.watch.interval=100ms".into(),
            ],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", 10 * SECOND);
    const STREAMS: usize = 1000;
    let mut clients: Vec<TcpStream> = (0..STREAMS).map(|_| get(port, "").unwrap()).collect();
    assert!(backend.wait_requests(STREAMS, 30 * SECOND));
    let expect_everywhere = |clients: &mut Vec<TcpStream>, event: &str| {
        assert_eq!(
            backend.broadcast(format!("data:{event}\n\n").as_bytes()),
            STREAMS
        );
        for (i, c) in clients.iter_mut().enumerate() {
            let (seen, _) = read_until(c, &format!("data:{event}\n\n"), 10 * SECOND);
            assert!(
                seen.contains(&format!("data:{event}\n\n")),
                "stream {i}: {seen:?}"
            );
        }
    };
    expect_everywhere(&mut clients, "before");

    // A valid change: another route, another binding.
    let changed = config(port, backend.port()).replace(
        "      - when: [ { headers: { \":path\": \"/events*\" } } ]\n        exit: north_sse_server\n",
        "      - when: [ { headers: { \":path\": \"/events*\" } } ]\n        exit: north_sse_server\n      - when: [ { headers: { \":path\": \"/other*\" } } ]\n        exit: echo0\n",
    ) + "  echo0:\n    type: echo\n    kind: server\n";
    zilla.rewrite_config(&changed);
    zilla.wait_for("config reloaded", 10 * SECOND);
    expect_everywhere(&mut clients, "after-valid");

    // An invalid one.
    zilla.rewrite_config(&changed.replace("exit: echo0", "exit: echo1"));
    zilla.wait_for("config not reloaded", 10 * SECOND);
    expect_everywhere(&mut clients, "after-invalid");
    assert_eq!(backend.open_streams(), STREAMS);
}

/// Accepted connections are probed by TCP keepalive (`ss` shows its timer), so a client that
/// vanished without FIN or RST is found and its stream reaped.
#[test]
fn accepted_connections_are_probed_by_keepalive() {
    if Command::new("ss").arg("-V").output().is_err() {
        panic!("ss is not installed: apt-get install iproute2");
    }
    let backend = SseBackend::start();
    let port = free_port();
    let zilla = Zilla::start(
        bin(),
        &config(port, backend.port()),
        Options {
            args: vec!["-P".into(), "zilla.binding.tcp.keepalive.idle=30s".into()],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", 10 * SECOND);
    let mut c = get(port, "").unwrap();
    let (seen, _) = read_until(&mut c, "\r\n\r\n", 5 * SECOND);
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    let out = Command::new("ss")
        .args([
            "-tno",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("timer:(keepalive,"), "{text}");
}

/// A client that stops reading among 1,000 that keep up: the slow-client policy cuts it (and
/// says so), every other client gets every event, and zilla's memory stays bounded.
#[test]
fn a_slow_reader_among_a_thousand_is_cut_and_the_others_get_everything() {
    let backend = SseBackend::start();
    let port = free_port();
    let zilla = Zilla::start(
        bin(),
        &config(port, backend.port()),
        Options {
            args: vec![
                "-P".into(),
                "zilla.binding.sse.slow.client=drop".into(),
                "-P".into(),
                "zilla.binding.sse.slow.client.timeout=1s".into(),
            ],
            ..Options::default()
        },
    );
    zilla.wait_for("listening on", 10 * SECOND);
    let rss = rss_kib(zilla.pid()).unwrap();
    let slow = get(port, "").unwrap();
    assert!(backend.wait_requests(1, 5 * SECOND));
    const READERS: usize = 999;
    let readers: Vec<TcpStream> = (0..READERS).map(|_| get(port, "").unwrap()).collect();
    assert!(backend.wait_requests(READERS + 1, 30 * SECOND));
    backend.set_write_timeout(0, Duration::from_millis(200));
    // The slow client's stream is flooded until zilla cuts it...
    let flood = {
        let backend = backend.clone();
        std::thread::spawn(move || {
            let event = format!("data:{}\n\n", "x".repeat(16_000));
            let deadline = Instant::now() + 30 * SECOND;
            while Instant::now() < deadline && backend.send_to(0, event.as_bytes()) {}
        })
    };
    // ...while the readers, draining on threads, get 100 events each.
    const EVENTS: usize = 100;
    let handles: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            std::thread::spawn(move || {
                c.set_read_timeout(Some(30 * SECOND)).unwrap();
                let mut seen = 0usize;
                let mut buf = vec![0u8; 16384];
                let mut text = String::new();
                while seen < EVENTS {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            text.push_str(&String::from_utf8_lossy(&buf[..n]));
                            seen = text.matches("data:event").count();
                        }
                    }
                }
                (i, seen)
            })
        })
        .collect();
    for e in 0..EVENTS {
        for i in 1..=READERS {
            backend.send_to(i, format!("data:event {e}\n\n").as_bytes());
        }
    }
    let short: Vec<(usize, usize)> = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|(_, seen)| *seen < EVENTS)
        .collect();
    assert!(short.is_empty(), "readers that missed events: {short:?}");
    flood.join().unwrap();
    zilla.wait_for("client too far behind: dropping it", 10 * SECOND);
    let grown = rss_kib(zilla.pid()).unwrap().saturating_sub(rss);
    assert!(grown < 64 * 1024, "zilla grew by {grown} KiB");
    drop(slow);
}

/// Runs a command inside a network namespace of its own, removed on drop.
struct Netns(String);

impl Netns {
    /// `None` (and why) where namespaces cannot be made (not root, no `ip`).
    fn new() -> Result<Netns, String> {
        let name = format!("zilla-test-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("cannot run `ip` ({e}): apt-get install iproute2"))?;
        if !out.status.success() {
            return Err(format!(
                "`ip netns add` failed (root is needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let ns = Netns(name);
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.command(args).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Established connections whose local port is `port`.
    fn established(&self, port: u16) -> usize {
        self.run(&[
            "ss",
            "-Htn",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ])
        .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(usize::MAX)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Half-open clients (the peer vanishes: no FIN, no RST) are reaped: in a network namespace of
/// its own, zilla accepts two idle connections, then the namespace's loopback goes down so no
/// packet passes either way. With keepalive at 1 s x 2 probes and TCP_USER_TIMEOUT at 3 s zilla
/// drops its end within seconds; a zilla with the defaults (60 s) still holds its own.
#[test]
fn half_open_clients_are_reaped_by_keepalive() {
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("skipped: half-open clients need a network namespace: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let start = |port: u16, props: &[&str]| -> Child {
        let file = dir.path().join(format!("zilla-{port}.yaml"));
        std::fs::write(
            &file,
            format!(
                "name: halfopen\nbindings:\n  tcp0:\n    type: tcp\n    kind: server\n    options: {{ host: 127.0.0.1, port: {port} }}\n    exit: echo0\n  echo0:\n    type: echo\n    kind: server\n"
            ),
        )
        .unwrap();
        let mut args = vec![
            bin().to_str().unwrap(),
            "start",
            "-c",
            file.to_str().unwrap(),
        ];
        for p in props {
            args.extend(["-P", p]);
        }
        let mut child = ns
            .command(&args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(
            lines.any(|l| l.is_ok_and(|l| l.contains("listening on"))),
            "zilla did not start in the namespace"
        );
        child
    };
    let (reaping, holding) = (7301, 7302);
    let mut reaper = start(
        reaping,
        &[
            "zilla.binding.tcp.keepalive.idle=1s",
            "zilla.binding.tcp.keepalive.interval=1s",
            "zilla.binding.tcp.keepalive.count=2",
            "zilla.binding.tcp.user.timeout=3s",
        ],
    );
    let mut holder = start(holding, &[]);
    // Idle clients, inside the namespace (bash's /dev/tcp), that never send FIN or RST.
    let mut clients: Vec<Child> = [reaping, holding]
        .iter()
        .map(|port| {
            ns.command(&[
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; sleep 30"),
            ])
            .spawn()
            .unwrap()
        })
        .collect();
    let deadline = Instant::now() + 5 * SECOND;
    while (ns.established(reaping) != 1 || ns.established(holding) != 1)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!((ns.established(reaping), ns.established(holding)), (1, 1));
    // The peer vanishes: nothing passes any more.
    ns.run(&["ip", "link", "set", "lo", "down"]).unwrap();
    let down = Instant::now();
    let deadline = down + 10 * SECOND;
    while ns.established(reaping) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let reaped = down.elapsed();
    assert_eq!(
        ns.established(reaping),
        0,
        "the half-open connection was not reaped"
    );
    assert!(reaped < 8 * SECOND, "reaped after {reaped:?}");
    assert_eq!(
        ns.established(holding),
        1,
        "with the defaults it is held for 60 s"
    );
    for c in clients.iter_mut().chain([&mut reaper, &mut holder]) {
        let _ = c.kill();
        let _ = c.wait();
    }
}
