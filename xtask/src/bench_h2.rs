//! `cargo xtask bench h2` (also part of `cargo xtask bench sse`): the SSE workloads with HTTP/2
//! on the client side, cleartext (prior knowledge) and over TLS (ALPN `h2`), 100 streams per
//! connection, zilla against nginx configured the same (`listen ... http2`, `ssl http2`), side
//! by side in one run. The upstream side stays HTTP/1.1 to the in-process backend of
//! `bench sse`.
//!
//! - saturation: 100 streams on one connection whose backend writes as fast as they take
//!   events: events per second delivered and proxy CPU-seconds per million events;
//! - fan-out: `--clients` streams (100 per connection) x `--rate` events/s of 256 B for
//!   `--seconds`: events delivered, proxy CPU per event, p50/p99 backend-write to client-read
//!   latency.

use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zilla_spec::Zilla;

use crate::bench::{
    count, flag_values, flush, free_port, local, nginx_or_install, positive, write_doc, TempDir,
};
use crate::bench_sse::{
    clock_ticks_per_second, event_data, find, machine_note, percentile_us, send, wait_for,
    zilla_bindings, Backend, NginxHttp, Profile, Proxy, EVENT_OVERHEAD, FLOOD_PATH, SENDERS,
};

/// Streams per HTTP/2 connection (zilla's default concurrent streams limit).
const STREAMS_PER_CONNECTION: usize = 100;
/// Size of each fan-out event.
const EVENT_SIZE: usize = 256;
const PASSWORD: &str = "bench-keystore";

/// Options of the h2 workloads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Args {
    /// Fan-out streams (a multiple of 100 is best).
    pub(crate) clients: usize,
    /// Fan-out events per second per stream.
    pub(crate) rate: f64,
    /// Seconds of each workload.
    pub(crate) seconds: f64,
    /// Where to write `perf` profiles of each proxy's fan-out (a profiling run).
    pub(crate) perf: Option<std::path::PathBuf>,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            clients: 1000,
            rate: 20.0,
            seconds: 5.0,
            perf: None,
        }
    }
}

const USAGE: &str =
    "usage: cargo xtask bench h2 [--clients N] [--rate R] [--seconds D] [--perf DIR]";

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args::default();
    for (flag, value) in flag_values(args)? {
        match flag.as_str() {
            "--clients" => parsed.clients = count(&flag, &value, 1, 9000)?,
            "--rate" => parsed.rate = positive(&flag, &value, 1000.0)?,
            "--seconds" => parsed.seconds = positive(&flag, &value, 600.0)?,
            "--perf" => parsed.perf = Some(value.into()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(parsed)
}

/// `cargo xtask bench h2`.
pub(crate) fn run(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("xtask bench h2: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = crate::bench::release_zilla() {
        eprintln!("xtask bench h2: {e}");
        return ExitCode::FAILURE;
    }
    match bench(&args) {
        Ok((table, complete)) => {
            match &args.perf {
                // perf slows what it samples: a profiling run's table is not the record.
                Some(dir) => println!(
                    "(profiling run: table not written to docs/bench; profiles in {})",
                    dir.display()
                ),
                None => write_results(&args, &table),
            }
            if complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("xtask bench h2: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The bench chain with HTTP/2 towards the client, over TLS when `tls`.
fn zilla_config(port: u16, backend: u16, tls: bool) -> String {
    let config = zilla_bindings(port, backend);
    if !tls {
        return config;
    }
    let config = config.replace(
        "    exit: north_http_server\n  north_http_server:",
        "    exit: north_tls_server\n  north_tls_server:\n    type: tls\n    kind: server\n    vault: server\n    options:\n      keys: [ localhost ]\n      alpn: [ h2 ]\n    exit: north_http_server\n  north_http_server:",
    );
    config.replacen(
        "bindings:\n",
        &format!(
            "vaults:\n  server:\n    type: filesystem\n    options:\n      keys:\n        store: localhost.p12\n        type: pkcs12\n        password: {PASSWORD}\nbindings:\n"
        ),
        1,
    )
}

/// How a client reaches a target.
#[derive(Clone)]
struct Dial {
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
}

fn connector(ca: &Path) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let cert = CertificateDer::from_pem_file(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    roots.add(cert).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One HTTP/2 connection, its driver spawned.
async fn connect(dial: &Dial) -> Result<h2::client::SendRequest<Bytes>, String> {
    let tcp = tokio::net::TcpStream::connect(local(dial.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20);
    match &dial.tls {
        None => {
            let (send, conn) = builder
                .handshake(tcp)
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            Ok(send)
        }
        Some(tls) => {
            let name =
                rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls handshake: {e}"))?;
            let (send, conn) = builder
                .handshake(stream)
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            Ok(send)
        }
    }
}

/// What the streams of a workload saw together.
#[derive(Default)]
struct Seen {
    events: AtomicU64,
    open: AtomicU64,
    errors: Mutex<Vec<String>>,
    latencies: Mutex<Vec<u64>>,
}

/// Reads one stream: counts events (and, with `epoch`, the latency of each from its stamp).
async fn stream(
    mut send: h2::client::SendRequest<Bytes>,
    port: u16,
    path: &'static str,
    epoch: Option<Instant>,
    seen: Arc<Seen>,
) {
    let outcome = async {
        let request = http::Request::get(format!("http://127.0.0.1:{port}{path}"))
            .header("accept", "text/event-stream")
            .body(())
            .map_err(|e| e.to_string())?;
        send = send.ready().await.map_err(|e| e.to_string())?;
        let (response, _) = send
            .send_request(request, true)
            .map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        if response.status() != 200 {
            return Err(format!("status {}", response.status()));
        }
        seen.open.fetch_add(1, Ordering::Relaxed);
        let mut body = response.into_body();
        let mut last = 0u8;
        let mut pending: Vec<u8> = Vec::new();
        let mut latencies = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
            match epoch {
                None => {
                    let mut events = 0;
                    for &b in chunk.iter() {
                        if last == b'\n' && b == b'\n' {
                            events += 1;
                        }
                        last = b;
                    }
                    seen.events.fetch_add(events, Ordering::Relaxed);
                }
                Some(epoch) => {
                    let now = epoch.elapsed().as_nanos() as u64;
                    pending.extend_from_slice(&chunk);
                    let mut start = 0;
                    let mut events = 0;
                    while let Some(end) = find(&pending[start..], b"\n\n") {
                        let event = &pending[start..start + end];
                        start += end + 2;
                        let Some(data) = event_data(event) else {
                            continue;
                        };
                        events += 1;
                        let stamp = data.split(|b| *b == b' ').next().unwrap_or_default();
                        if let Some(sent) = std::str::from_utf8(stamp)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                        {
                            if data.len() == EVENT_SIZE - EVENT_OVERHEAD {
                                latencies.push(now.saturating_sub(sent));
                            }
                        }
                    }
                    pending.drain(..start);
                    seen.events.fetch_add(events, Ordering::Relaxed);
                    if !latencies.is_empty() {
                        seen.latencies
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .append(&mut latencies);
                    }
                }
            }
        }
        seen.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut latencies);
        Ok::<(), String>(())
    }
    .await;
    if let Err(e) = outcome {
        seen.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e);
    }
}

/// Opens `n` streams to `path` (100 per connection) on a runtime of its own, which runs until
/// `stop` is raised.
fn open_streams(
    dial: &Dial,
    n: usize,
    path: &'static str,
    epoch: Option<Instant>,
    seen: &Arc<Seen>,
    stop: &Arc<AtomicBool>,
) -> Result<thread::JoinHandle<()>, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (dial, seen, stop) = (dial.clone(), seen.clone(), stop.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = thread::spawn(move || {
        runtime.block_on(async move {
            let mut left = n;
            while left > 0 {
                let streams = left.min(STREAMS_PER_CONNECTION);
                left -= streams;
                let send = match connect(&dial).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for _ in 0..streams {
                    tokio::spawn(stream(send.clone(), dial.port, path, epoch, seen.clone()));
                }
            }
            let _ = ready_tx.send(Ok(()));
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        runtime.shutdown_background();
    });
    ready_rx
        .recv()
        .map_err(|_| "client runtime ended".to_string())??;
    Ok(handle)
}

/// One target's numbers.
#[derive(Debug, Default, Clone)]
struct Results {
    saturation_events_s: f64,
    saturation_cpu_s_per_m: f64,
    sent: u64,
    delivered: u64,
    cpu_us_per_event: f64,
    /// The part of `cpu_us_per_event` spent in the kernel (stime).
    kernel_us_per_event: f64,
    p50_us: f64,
    p99_us: f64,
    problems: Vec<String>,
}

struct Target {
    name: String,
    dial: Dial,
    proxy: Proxy,
}

fn saturation(target: &Target, seconds: f64, ticks: f64, r: &mut Results) -> Result<(), String> {
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let handle = open_streams(
        &target.dial,
        STREAMS_PER_CONNECTION,
        FLOOD_PATH,
        None,
        &seen,
        &stop,
    )?;
    thread::sleep(Duration::from_millis(500));
    let (c0, t0) = (
        seen.events.load(Ordering::Relaxed),
        target.proxy.cpu_ticks()?,
    );
    let started = Instant::now();
    thread::sleep(Duration::from_secs_f64(seconds));
    let (c1, t1) = (
        seen.events.load(Ordering::Relaxed),
        target.proxy.cpu_ticks()?,
    );
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = handle.join();
    let open = seen.open.load(Ordering::Relaxed);
    if open < STREAMS_PER_CONNECTION as u64 {
        r.problems.push(format!(
            "saturation: {open} of {STREAMS_PER_CONNECTION} streams opened"
        ));
    }
    let events = c1.saturating_sub(c0);
    r.saturation_events_s = events as f64 / elapsed;
    r.saturation_cpu_s_per_m = t1.saturating_sub(t0) as f64 / ticks / (events.max(1) as f64 / 1e6);
    thread::sleep(Duration::from_millis(300));
    Ok(())
}

fn fan_out(
    target: &Target,
    backend: &Backend,
    args: &Args,
    ticks: f64,
    r: &mut Results,
) -> Result<(), String> {
    let n = args.clients;
    let per_stream = ((args.rate * args.seconds).round() as u64).max(1);
    backend.events().clear();
    let epoch = Instant::now();
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let handle = open_streams(&target.dial, n, "/events", Some(epoch), &seen, &stop)?;
    if let Err(e) = wait_for(
        "streams reached the backend",
        n,
        Duration::from_secs(20),
        || backend.events().len(),
    ) {
        stop.store(true, Ordering::Relaxed);
        let _ = handle.join();
        backend.events().clear();
        return Err(e);
    }
    let streams = std::mem::take(&mut *backend.events());
    let mut shares: Vec<Vec<(usize, std::net::TcpStream)>> =
        (0..SENDERS.min(n)).map(|_| Vec::new()).collect();
    let senders = shares.len();
    for (i, s) in streams.into_iter().enumerate() {
        shares[i % senders].push((i, s));
    }
    let cpu0 = target.proxy.times()?;
    let period_ns = (1e9 / args.rate) as u128;
    let start = Instant::now() + Duration::from_millis(20);
    let handles: Vec<_> = shares
        .into_iter()
        .map(|share| {
            thread::spawn(move || {
                send(
                    share, n, false, per_stream, period_ns, start, EVENT_SIZE, epoch,
                )
            })
        })
        .collect();
    let mut sent = 0;
    let mut upstreams = Vec::new();
    for h in handles {
        if let Ok(report) = h.join() {
            sent += report.sent;
            upstreams.extend(report.streams);
            r.problems.extend(report.errors.into_iter().take(1));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.events.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
    }
    let cpu1 = target.proxy.times()?;
    stop.store(true, Ordering::Relaxed);
    let _ = handle.join();
    drop(upstreams);
    let delivered = seen.events.load(Ordering::Relaxed);
    let mut latencies =
        std::mem::take(&mut *seen.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    latencies.sort_unstable();
    r.sent = sent;
    r.delivered = delivered;
    (r.cpu_us_per_event, r.kernel_us_per_event) = cpu1.us_per_event_since(cpu0, ticks, delivered);
    r.p50_us = percentile_us(&latencies, 0.5);
    r.p99_us = percentile_us(&latencies, 0.99);
    if delivered != sent {
        r.problems
            .push(format!("fan-out: {delivered} of {sent} events delivered"));
    }
    if let Some(e) = seen
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .first()
    {
        r.problems.push(format!("fan-out stream: {e}"));
    }
    thread::sleep(Duration::from_millis(300));
    Ok(())
}

/// Runs the h2 workloads; the table and whether every event arrived.
pub(crate) fn bench(args: &Args) -> Result<(String, bool), String> {
    let zilla_bin = crate::bench::zilla_binary();
    let work = TempDir::new()?;
    crate::certs::localhost(work.path(), "Bench CA", PASSWORD)?;
    let tls = connector(&work.path().join("ca.pem"))?;
    let backend = Backend::start()?;
    let mut zillas = Vec::new();
    let mut targets = Vec::new();
    for secure in [false, true] {
        let dir = work
            .path()
            .join(if secure { "zilla-tls" } else { "zilla-h2c" });
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        fs::copy(work.path().join("localhost.p12"), dir.join("localhost.p12"))
            .map_err(|e| e.to_string())?;
        let port = free_port()?;
        let path = dir.join("zilla.yaml");
        fs::write(&path, zilla_config(port, backend.port(), secure)).map_err(|e| e.to_string())?;
        let mut zilla = Zilla::start(&zilla_bin, &path, &[], Some(&dir))?;
        zilla.wait_listening(&[port], Duration::from_secs(10))?;
        targets.push(Target {
            name: format!("zilla {}", if secure { "tls" } else { "h2c" }),
            dial: Dial {
                port,
                tls: secure.then(|| tls.clone()),
            },
            proxy: Proxy::Single(zilla.pid()),
        });
        zillas.push(zilla);
    }
    let mut nginxes = Vec::new();
    match nginx_or_install() {
        None => println!("nginx not installed (apt-get install nginx) — peer columns skipped"),
        Some(bin) => {
            for secure in [false, true] {
                let dir = work
                    .path()
                    .join(if secure { "nginx-tls" } else { "nginx-h2c" });
                fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                let (listen, server) = if secure {
                    (
                        "ssl http2",
                        format!(
                            "ssl_certificate {};\n    ssl_certificate_key {};",
                            work.path().join("localhost.crt").display(),
                            work.path().join("localhost.key").display()
                        ),
                    )
                } else {
                    ("http2", String::new())
                };
                match NginxHttp::start_with(
                    &bin,
                    &dir,
                    backend.port(),
                    args.clients,
                    listen,
                    &server,
                ) {
                    Ok(n) => {
                        targets.push(Target {
                            name: format!("nginx {}", if secure { "tls" } else { "h2c" }),
                            dial: Dial {
                                port: n.port,
                                tls: secure.then(|| tls.clone()),
                            },
                            proxy: Proxy::Master(n.pid()),
                        });
                        nginxes.push(n);
                    }
                    Err(e) => {
                        println!("note: nginx could not be started — peer column skipped\n{e}")
                    }
                }
            }
        }
    }
    // zilla h2c, nginx h2c, zilla tls, nginx tls.
    targets.sort_by_key(|t| (t.name.ends_with("tls"), t.name.starts_with("nginx")));
    let ticks = clock_ticks_per_second();
    println!(
        "==> HTTP/2 to the clients ({STREAMS_PER_CONNECTION} streams a connection): saturation, then fan-out {} streams x {} events/s x {EVENT_SIZE} B for {} s",
        args.clients, args.rate, args.seconds
    );
    let mut results = Vec::new();
    for t in &targets {
        print!("  {:<10}", t.name);
        flush();
        let mut r = Results::default();
        saturation(t, args.seconds.min(5.0), ticks, &mut r)?;
        let recording = match &args.perf {
            Some(dir) => Some(Profile::record(
                dir,
                &format!("{}-fan-out", t.name.replace(' ', "-")),
                t.proxy,
            )?),
            None => None,
        };
        fan_out(t, &backend, args, ticks, &mut r)?;
        Profile::finish(recording)?;
        println!(
            " saturation {:.0} events/s ({:.2} CPU-s per M); fan-out {}/{} events, {:.1} us CPU/event, p99 {:.0} us",
            r.saturation_events_s, r.saturation_cpu_s_per_m, r.delivered, r.sent, r.cpu_us_per_event, r.p99_us
        );
        results.push((t.name.clone(), r));
    }
    drop(nginxes);
    for z in zillas {
        let _ = z.stop(Duration::from_secs(5));
    }
    let table = table(&results);
    print!("{table}");
    println!("{}", machine_note());
    let mut complete = true;
    for (name, r) in &results {
        for p in &r.problems {
            println!("problem: {name}: {p}");
            complete = false;
        }
    }
    Ok((table, complete))
}

fn table(results: &[(String, Results)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = write!(out, "\n{:<38}", "HTTP/2 to the client");
    for (name, _) in results {
        let _ = write!(out, "{name:>12}");
    }
    let pairs: Vec<(usize, usize)> = ["h2c", "tls"]
        .iter()
        .filter_map(|v| {
            let z = results
                .iter()
                .position(|(n, _)| n == &format!("zilla {v}"))?;
            let n = results
                .iter()
                .position(|(n, _)| n == &format!("nginx {v}"))?;
            Some((z, n))
        })
        .collect();
    for (z, _) in &pairs {
        let _ = write!(out, "{:>18}", format!("{}/nginx", results[*z].0));
    }
    out.push('\n');
    type Metric = (&'static str, fn(&Results) -> f64, usize);
    let metrics: [Metric; 7] = [
        (
            "saturation: events/s (100 streams)",
            |r| r.saturation_events_s,
            0,
        ),
        (
            "  proxy CPU-s per M events",
            |r| r.saturation_cpu_s_per_m,
            2,
        ),
        ("fan-out: events delivered", |r| r.delivered as f64, 0),
        ("  proxy CPU per event (us)", |r| r.cpu_us_per_event, 1),
        ("    of which kernel (us)", |r| r.kernel_us_per_event, 1),
        ("  latency p50 (us)", |r| r.p50_us, 0),
        ("  latency p99 (us)", |r| r.p99_us, 0),
    ];
    for (label, f, digits) in metrics {
        let _ = write!(out, "{label:<38}");
        for (_, r) in results {
            let _ = write!(out, "{:>12.*}", digits, f(r));
        }
        for (z, n) in &pairs {
            let (a, b) = (f(&results[*z].1), f(&results[*n].1));
            let ratio = if b > 0.0 {
                format!("{:.2}x", a / b)
            } else {
                "-".into()
            };
            let _ = write!(out, "{ratio:>18}");
        }
        out.push('\n');
    }
    out
}

/// Writes the table to `docs/bench/h2.md`.
pub(crate) fn write_results(args: &Args, table: &str) {
    let text = format!(
        "# `cargo xtask bench h2`: the latest run\n\n{}, {}. HTTP/2 towards the clients, cleartext (prior \
         knowledge) and TLS (ALPN h2), {STREAMS_PER_CONNECTION} streams a connection; HTTP/1.1 to \
         the backend. Saturation: 100 streams, events as fast as they are taken; fan-out: {} streams x \
         {} events/s x {EVENT_SIZE} B for {} s. zilla and nginx measured one after the other in this \
         one run.\n\n```\n{}\n```\n",
        crate::bench::utc_now(),
        machine_note(),
        args.clients,
        args.rate,
        args.seconds,
        table.trim(),
    );
    write_doc("h2.md", &text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_h2_args() {
        let args: Vec<String> = ["--clients", "200", "--rate=5", "--seconds", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            parse_args(&args).unwrap(),
            Args {
                clients: 200,
                rate: 5.0,
                seconds: 2.0,
                perf: None,
            }
        );
        let perf = parse_args(&["--perf".into(), "/tmp/p".into()])
            .unwrap()
            .perf;
        assert_eq!(perf, Some(std::path::PathBuf::from("/tmp/p")));
        assert!(parse_args(&["--clients".into(), "0".into()]).is_err());
    }

    #[test]
    fn the_tls_config_puts_a_tls_server_before_http() {
        let c = zilla_config(7000, 7001, true);
        assert!(c.contains("  north_tls_server:\n    type: tls\n"), "{c}");
        assert!(c.contains("vaults:\n  server:"), "{c}");
        assert!(c.find("north_tls_server:").unwrap() < c.find("north_http_server:").unwrap());
    }
}
