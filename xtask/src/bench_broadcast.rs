//! `cargo xtask bench broadcast` (also the last part of `cargo xtask bench sse`): one feed, many
//! clients, zilla with shared feeds (`options.share`, beyond Zilla) against zilla without them
//! against nginx, side by side in one run.
//!
//! The backend lives in this process and serves one feed: every request gets the same events
//! (`id:<k>`, the write time, padding to 256 bytes) at `--rate` per second; a request with a
//! `Last-Event-ID` first gets what it missed from the backend's log, as a backend that honours
//! it does. Workloads:
//! - broadcast: N clients on the feed (each `--clients` value): upstream connections the backend
//!   saw, events delivered against expected, proxy CPU-seconds per million delivered events,
//!   p99 backend-write to client-read latency;
//! - reconnect storm: 1,000 clients drop at once and reconnect with their last id: events missed
//!   or duplicated (must be 0) and requests that reached the backend (0 for a shared feed whose
//!   window holds the ids).

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use zilla_spec::Zilla;

use crate::bench::{
    count, flag_values, flush, free_port, local, nginx_or_install, positive, write_doc, TempDir,
};
use crate::bench_sse::{
    clock_ticks_per_second, event_data, find, lock, machine_note, percentile_us, zilla_bindings,
    NginxHttp, Proxy, SseDecoder, CLIENT_STACK,
};

/// Bytes of each event, as written by the backend (without chunk framing).
const EVENT_SIZE: usize = 256;
/// Clients of the reconnect storm.
const STORM_CLIENTS: usize = 1000;
/// Path of the feed.
const FEED_PATH: &str = "/events/feed";

/// Options of the broadcast workload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Args {
    /// Client counts, one broadcast run each.
    pub(crate) clients: Vec<usize>,
    /// Events per second the backend writes.
    pub(crate) rate: f64,
    /// Seconds of events per run.
    pub(crate) seconds: f64,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            clients: vec![1000, 5000],
            rate: 10.0,
            seconds: 10.0,
        }
    }
}

const USAGE: &str =
    "usage: cargo xtask bench broadcast [--clients N[,N...]] [--rate R] [--seconds D]";

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args::default();
    for (flag, value) in flag_values(args)? {
        match flag.as_str() {
            "--clients" => {
                parsed.clients = value
                    .split(',')
                    .map(|n| count(&flag, n.trim(), 1, 9000))
                    .collect::<Result<_, _>>()?
            }
            "--rate" => parsed.rate = positive(&flag, &value, 1000.0)?,
            "--seconds" => parsed.seconds = positive(&flag, &value, 600.0)?,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(parsed)
}

/// `cargo xtask bench broadcast`.
pub(crate) fn run(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("xtask bench broadcast: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = crate::bench::release_zilla() {
        eprintln!("xtask bench broadcast: {e}");
        return ExitCode::FAILURE;
    }
    match bench(&args) {
        Ok((table, true)) => {
            write_results(&args, &table);
            ExitCode::SUCCESS
        }
        Ok((table, false)) => {
            write_results(&args, &table);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xtask bench broadcast: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The feed backend.
struct FeedBackend {
    port: u16,
    shared: Arc<FeedShared>,
}

#[derive(Default)]
struct FeedShared {
    state: Mutex<FeedState>,
    /// Requests answered since the start.
    requests: AtomicU64,
}

#[derive(Default)]
struct FeedState {
    /// Every event written so far, as a chunk: event `k` at `k - 1`.
    log: Vec<Vec<u8>>,
    streams: Vec<TcpStream>,
}

const RESPONSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

impl FeedBackend {
    fn start() -> Result<FeedBackend, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("backend listen: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let shared = Arc::new(FeedShared::default());
        let accepting = shared.clone();
        thread::Builder::new()
            .name("feed-backend".into())
            .spawn(move || {
                for stream in listener.incoming().map_while(Result::ok) {
                    let shared = accepting.clone();
                    thread::spawn(move || {
                        let _ = accept(&shared, stream);
                    });
                }
            })
            .map_err(|e| format!("backend thread: {e}"))?;
        Ok(FeedBackend { port, shared })
    }

    fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Writes event `k` to every stream (and the log).
    fn publish(&self, k: u64, epoch: Instant) {
        let stamp = epoch.elapsed().as_nanos().to_string();
        let head = format!("id:{k}\ndata:{stamp} ");
        let mut event = head.into_bytes();
        event.resize(EVENT_SIZE - 2, b'x');
        event.extend_from_slice(b"\n\n");
        let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
        chunk.extend_from_slice(&event);
        chunk.extend_from_slice(b"\r\n");
        let mut state = lock(&self.shared.state);
        state.streams.retain_mut(|s| s.write_all(&chunk).is_ok());
        state.log.push(chunk);
    }

    /// Closes every stream and forgets the log.
    fn reset(&self) {
        let mut state = lock(&self.shared.state);
        state.streams.clear();
        state.log.clear();
    }
}

fn accept(shared: &FeedShared, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0; 2048];
    while find(&head, b"\r\n\r\n").is_none() {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() > 64 * 1024 {
            return Err(ErrorKind::InvalidData.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let last: Option<usize> = text
        .lines()
        .find_map(|l| l.strip_prefix("last-event-id:"))
        .and_then(|v| v.trim().parse().ok());
    shared.requests.fetch_add(1, Ordering::Relaxed);
    stream.write_all(RESPONSE_HEAD)?;
    let mut state = lock(&shared.state);
    if let Some(last) = last {
        for chunk in state.log.iter().skip(last) {
            stream.write_all(chunk)?;
        }
    }
    state.streams.push(stream);
    Ok(())
}

/// What the clients of a run saw, together.
#[derive(Default)]
struct Seen {
    /// Response heads read (connections attached; a client reconnecting counts again).
    ready: AtomicUsize,
    events: AtomicU64,
    missed: AtomicU64,
    duplicated: AtomicU64,
    /// Streams that ended or failed unasked.
    failures: AtomicU64,
}

/// One client: reads the feed, checks ids follow each other; when `storm` is raised it drops
/// its connection once and reconnects at once with its last id.
fn client(
    port: u16,
    epoch: Instant,
    seen: Arc<Seen>,
    storm: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Vec<u64> {
    let mut latencies = Vec::new();
    let mut last: Option<u64> = None;
    let mut stormed = false;
    let mut buf = vec![0u8; 16 * 1024];
    'connect: while !stop.load(Ordering::Relaxed) {
        let extra = last.map_or(String::new(), |l| format!("last-event-id: {l}\r\n"));
        let Ok(mut conn) = TcpStream::connect(local(port)) else {
            seen.failures.fetch_add(1, Ordering::Relaxed);
            return latencies;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
        let request = format!(
            "GET {FEED_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n{extra}\r\n"
        );
        if conn.write_all(request.as_bytes()).is_err() {
            seen.failures.fetch_add(1, Ordering::Relaxed);
            return latencies;
        }
        let mut decoder = SseDecoder::default();
        let mut head = false;
        while !stop.load(Ordering::Relaxed) {
            if !stormed && storm.load(Ordering::Relaxed) {
                stormed = true;
                continue 'connect;
            }
            match conn.read(&mut buf) {
                Ok(0) => {
                    seen.failures.fetch_add(1, Ordering::Relaxed);
                    return latencies;
                }
                Ok(n) => {
                    let now = epoch.elapsed().as_nanos() as u64;
                    let decoded = decoder.push(&buf[..n], |event| {
                        let id = event.split(|b| *b == b'\n').find_map(|l| {
                            std::str::from_utf8(l.strip_prefix(b"id:")?)
                                .ok()?
                                .parse::<u64>()
                                .ok()
                        });
                        let (Some(id), Some(data)) = (id, event_data(event)) else {
                            return;
                        };
                        match last {
                            Some(l) if id <= l => {
                                seen.duplicated.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            Some(l) if id > l + 1 => {
                                seen.missed.fetch_add(id - l - 1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                        last = Some(id);
                        seen.events.fetch_add(1, Ordering::Relaxed);
                        let stamp = data.split(|b| *b == b' ').next().unwrap_or_default();
                        if let Some(sent) = std::str::from_utf8(stamp)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                        {
                            latencies.push(now.saturating_sub(sent));
                        }
                    });
                    if decoder.head_done() && !head {
                        head = true;
                        seen.ready.fetch_add(1, Ordering::Relaxed);
                    }
                    if decoded.is_err() {
                        seen.failures.fetch_add(1, Ordering::Relaxed);
                        return latencies;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    seen.failures.fetch_add(1, Ordering::Relaxed);
                    return latencies;
                }
            }
        }
    }
    latencies
}

/// One target's numbers for one run.
#[derive(Debug, Default, Clone)]
struct Run {
    upstreams: u64,
    expected: u64,
    delivered: u64,
    cpu_s_per_m: Option<f64>,
    p99_ms: f64,
    rss_mib: Option<f64>,
    missed: u64,
    duplicated: u64,
    failures: u64,
    /// Storm only: requests that reached the backend while the clients reconnected.
    storm_requests: u64,
}

struct Target {
    name: &'static str,
    port: u16,
    proxy: Proxy,
    /// Seconds a feed lingers after its last client (0 when not shared).
    linger: f64,
}

/// Runs `n` clients on the feed for `events` events; with `storm`, every client drops and
/// reconnects with its last id after half of them.
fn run_clients(
    target: &Target,
    backend: &FeedBackend,
    n: usize,
    events: u64,
    rate: f64,
    storm: bool,
    ticks_per_second: f64,
) -> Result<Run, String> {
    backend.reset();
    let epoch = Instant::now();
    let seen = Arc::new(Seen::default());
    let storming = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let requests_before = backend.requests();
    let mut handles: Vec<JoinHandle<Vec<u64>>> = Vec::with_capacity(n);
    for i in 0..n {
        let (seen2, storming, stop) = (seen.clone(), storming.clone(), stop.clone());
        let port = target.port;
        handles.push(
            thread::Builder::new()
                .name(format!("feed-client-{i}"))
                .stack_size(CLIENT_STACK)
                .spawn(move || client(port, epoch, seen2, storming, stop))
                .map_err(|e| format!("client thread {i}: {e}"))?,
        );
        // Do not outrun the proxy's accept queue.
        if i % 64 == 63 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while seen.ready.load(Ordering::Relaxed) + 256 < i && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(2));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.ready.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let finish = |stop: &AtomicBool, handles: Vec<JoinHandle<Vec<u64>>>| {
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().unwrap_or_default());
        }
        all
    };
    let ready = seen.ready.load(Ordering::Relaxed);
    if ready < n {
        finish(&stop, handles);
        return Err(format!("only {ready} of {n} clients attached within 30 s"));
    }
    let upstreams = backend.requests() - requests_before;
    let rss = target.proxy.rss_kib().ok();
    let cpu0 = target.proxy.cpu_ticks()?;
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut storm_requests = 0;
    for k in 1..=events {
        let due = start + period * (k as u32 - 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        if storm && k == events / 2 + 1 {
            // Every client drops and reconnects with its last id, at once; then the feed goes on.
            let before = backend.requests();
            storming.store(true, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(500));
            let deadline = Instant::now() + Duration::from_secs(10);
            while seen.ready.load(Ordering::Relaxed) < 2 * n && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            storm_requests = backend.requests() - before;
        }
        backend.publish(k, epoch);
    }
    let expected = events * n as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.events.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
    }
    let cpu1 = target.proxy.cpu_ticks()?;
    let mut latencies = finish(&stop, handles);
    latencies.sort_unstable();
    let delivered = seen.events.load(Ordering::Relaxed);
    // Events a client never got at its end count as missed too.
    let missed = seen.missed.load(Ordering::Relaxed) + expected.saturating_sub(delivered);
    let cpu_s = cpu1.saturating_sub(cpu0) as f64 / ticks_per_second;
    // Let the proxy close its upstreams (a shared feed lingers) before the next run.
    thread::sleep(Duration::from_secs_f64(target.linger + 0.5));
    Ok(Run {
        upstreams,
        expected,
        delivered,
        cpu_s_per_m: Some(cpu_s / (delivered.max(1) as f64 / 1e6)),
        p99_ms: percentile_us(&latencies, 0.99) / 1000.0,
        rss_mib: rss.map(|k| k as f64 / 1024.0),
        missed,
        duplicated: seen.duplicated.load(Ordering::Relaxed),
        failures: seen.failures.load(Ordering::Relaxed),
        storm_requests,
    })
}

/// Runs every workload on every target; the table, and whether every event arrived once.
pub(crate) fn bench(args: &Args) -> Result<(String, bool), String> {
    let zilla_bin = crate::bench::zilla_binary();
    let backend = FeedBackend::start()?;
    let work = TempDir::new()?;
    let mut zillas = Vec::new();
    let mut targets = Vec::new();
    for (name, share) in [("shared", true), ("zilla", false)] {
        let dir = work.path().join(name);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let port = free_port()?;
        let mut config = zilla_bindings(port, backend.port);
        if share {
            config = config.replace(
                "  north_sse_server:\n    type: sse\n    kind: server\n",
                "  north_sse_server:\n    type: sse\n    kind: server\n    options:\n      share:\n        linger: 1\n        replay: { events: 1000 }\n",
            );
        }
        let path = dir.join("zilla.yaml");
        fs::write(&path, config).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let mut zilla = Zilla::start(&zilla_bin, &path, &[], Some(&dir))?;
        zilla.wait_listening(&[port], Duration::from_secs(10))?;
        targets.push(Target {
            name: if share { "zilla shared" } else { "zilla" },
            port,
            proxy: Proxy::Single(zilla.pid()),
            linger: if share { 1.0 } else { 0.0 },
        });
        zillas.push(zilla);
    }
    let most = args.clients.iter().copied().max().unwrap_or(1000);
    let mut nginx = None;
    match nginx_or_install() {
        None => println!("nginx not installed (apt-get install nginx) — peer column skipped"),
        Some(bin) => match NginxHttp::start(&bin, work.path(), backend.port, most) {
            Ok(n) => {
                targets.push(Target {
                    name: "nginx",
                    port: n.port,
                    proxy: Proxy::Master(n.pid()),
                    linger: 0.0,
                });
                nginx = Some(n);
            }
            Err(e) => println!("note: nginx could not be started — peer column skipped\n{e}"),
        },
    }
    let ticks = clock_ticks_per_second();
    let events = ((args.rate * args.seconds).round() as u64).max(2);
    let mut runs: Vec<(String, Vec<Run>)> = Vec::new();
    for &n in &args.clients {
        println!(
            "==> broadcast: {n} clients on one feed, {} events/s for {} s",
            args.rate, args.seconds
        );
        let mut row = Vec::new();
        for t in &targets {
            print!("  {:<13}", t.name);
            flush();
            let r = run_clients(t, &backend, n, events, args.rate, false, ticks)?;
            println!(
                " upstreams {}, {}/{} events, {:.2} CPU-s per M, p99 {:.2} ms",
                r.upstreams,
                r.delivered,
                r.expected,
                r.cpu_s_per_m.unwrap_or(0.0),
                r.p99_ms
            );
            row.push(r);
        }
        runs.push((format!("{n} clients"), row));
    }
    println!("==> reconnect storm: {STORM_CLIENTS} clients drop and reconnect with their last id at once");
    let storm_events = ((args.rate * 4.0).round() as u64).max(4);
    let mut row = Vec::new();
    for t in &targets {
        print!("  {:<13}", t.name);
        flush();
        let r = run_clients(
            t,
            &backend,
            STORM_CLIENTS,
            storm_events,
            args.rate,
            true,
            ticks,
        )?;
        println!(
            " missed {}, duplicated {}, backend requests during the storm {}",
            r.missed, r.duplicated, r.storm_requests
        );
        row.push(r);
    }
    runs.push(("storm".into(), row));
    drop(nginx);
    for z in zillas {
        let _ = z.stop(Duration::from_secs(5));
    }
    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    let table = table(&names, &runs);
    print!("{table}");
    println!("{}", machine_note());
    let complete = runs.iter().all(|(_, row)| {
        row.iter().all(|r| {
            r.missed == 0 && r.duplicated == 0 && r.failures == 0 && r.delivered == r.expected
        })
    });
    if !complete {
        println!("problem: some client missed, repeated or lost events (see the table)");
    }
    Ok((table, complete))
}

fn table(names: &[&str], runs: &[(String, Vec<Run>)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = write!(out, "\n{:<46}", "broadcast (one feed)");
    for n in names {
        let _ = write!(out, "{n:>14}");
    }
    out.push('\n');
    let mut line = |label: String, cells: Vec<String>| {
        let _ = write!(out, "{label:<46}");
        for c in cells {
            let _ = write!(out, "{c:>14}");
        }
        out.push('\n');
    };
    for (what, row) in runs {
        let cells = |f: &dyn Fn(&Run) -> String| row.iter().map(f).collect::<Vec<_>>();
        if what == "storm" {
            line(
                format!("storm ({STORM_CLIENTS}): events missed / duplicated"),
                cells(&|r| format!("{} / {}", r.missed, r.duplicated)),
            );
            line(
                "storm: requests that reached the backend".into(),
                cells(&|r| r.storm_requests.to_string()),
            );
            continue;
        }
        line(
            format!("{what}: upstream connections"),
            cells(&|r| r.upstreams.to_string()),
        );
        line(
            format!("{what}: events delivered / expected"),
            cells(&|r| format!("{}/{}", r.delivered, r.expected)),
        );
        line(
            format!("{what}: proxy CPU-s per M events"),
            cells(&|r| r.cpu_s_per_m.map_or("-".into(), |c| format!("{c:.2}"))),
        );
        line(
            format!("{what}: p99 latency ms"),
            cells(&|r| format!("{:.2}", r.p99_ms)),
        );
        line(
            format!("{what}: proxy RSS MiB (clients attached)"),
            cells(&|r| r.rss_mib.map_or("-".into(), |m| format!("{m:.1}"))),
        );
    }
    out
}

/// Writes the table to `docs/bench/broadcast.md`.
pub(crate) fn write_results(args: &Args, table: &str) {
    let text = format!(
        "# `cargo xtask bench broadcast`: the latest run\n\n{}, {}. One feed, {:?} clients, {} events/s of \
         {EVENT_SIZE} B for {} s; zilla with `options.share`, zilla without it and nginx measured one \
         after the other in this one run.\n\n```\n{}\n```\n",
        crate::bench::utc_now(),
        machine_note(),
        args.clients,
        args.rate,
        args.seconds,
        table.trim(),
    );
    write_doc("broadcast.md", &text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broadcast_args() {
        let args: Vec<String> = ["--clients", "10,20", "--rate=5", "--seconds", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            parse_args(&args).unwrap(),
            Args {
                clients: vec![10, 20],
                rate: 5.0,
                seconds: 2.0
            }
        );
        assert!(parse_args(&["--clients".into(), "0".into()]).is_err());
        assert!(parse_args(&["--bogus".into(), "1".into()]).is_err());
    }
}
