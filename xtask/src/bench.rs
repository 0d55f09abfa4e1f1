//! `cargo xtask bench tcp`: tcp proxy benchmark, direct vs zilla (vs nginx).
//!
//! Everything runs on 127.0.0.1. The backends live in this process: a sink
//! that discards what it reads (bulk throughput) and an echo server (round
//! trips). Each measurement runs directly against a backend, through zilla
//! (tcp server -> tcp client) and, if installed, through nginx's stream
//! proxy.

use std::env;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use zilla_spec::Zilla;

use crate::{cargo, target_dir, workspace_root};

/// Size of one round-trip message.
const MESSAGE: usize = 64;
/// Write size for the bulk test.
const BULK_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone)]
struct Args {
    seconds: f64,
    bytes: u64,
    connections: usize,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        seconds: 5.0,
        bytes: 1 << 30,
        connections: 50,
    };
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("tcp") => {}
        Some(other) => {
            return Err(format!(
                "unknown benchmark `{other}` (available: tcp, sse, h2, broadcast, validate)"
            ))
        }
        None => {
            return Err("which benchmark? (available: tcp, sse, h2, broadcast, validate)".into())
        }
    }
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--seconds" => {
                let v = value()?;
                parsed.seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && s.is_finite())
                    .ok_or_else(|| format!("invalid --seconds `{v}`"))?;
            }
            "--bytes" => parsed.bytes = parse_bytes(&value()?)?,
            "--connections" => {
                let v = value()?;
                parsed.connections = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| format!("invalid --connections `{v}` (1..=1000)"))?;
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(parsed)
}

/// The `--flag value` and `--flag=value` pairs of `args`, in order.
pub(crate) fn flag_values(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let value = inline
            .or_else(|| it.next().cloned())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        pairs.push((flag, value));
    }
    Ok(pairs)
}

/// A number in (0, `max`].
pub(crate) fn positive(flag: &str, value: &str, max: f64) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && *v <= max && v.is_finite())
        .ok_or_else(|| format!("invalid {flag} `{value}` (0 < {flag} <= {max})"))
}

/// A count in `min..=max`.
pub(crate) fn count(flag: &str, value: &str, min: usize, max: usize) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("invalid {flag} `{value}` ({min}..={max})"))
}

/// Names a zilla binary for the benchmarks to measure instead of building one (to compare two
/// builds against the same peer).
const BENCH_BINARY: &str = "ZILLA_BENCH_BINARY";

/// Builds zilla in release mode (the benchmarks measure that), or checks the binary
/// `ZILLA_BENCH_BINARY` names; the binary's path.
pub(crate) fn release_zilla() -> Result<PathBuf, String> {
    if let Some(bin) = chosen_binary() {
        chosen_exists(&bin)?;
        println!("==> measuring {} ({BENCH_BINARY})", bin.display());
        return Ok(bin);
    }
    let root = workspace_root();
    println!("==> cargo build --release -p zilla");
    let built = cargo(&root)
        .args(["build", "--release", "-p", "zilla"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !built.success() {
        return Err("zilla failed to build".into());
    }
    Ok(zilla_binary())
}

/// An error that says what to do when the binary `ZILLA_BENCH_BINARY` names is not there.
fn chosen_exists(bin: &Path) -> Result<(), String> {
    if bin.is_file() {
        return Ok(());
    }
    Err(format!(
        "{BENCH_BINARY}={}: no such file (give a zilla binary, or unset it to build one)",
        bin.display()
    ))
}

fn chosen_binary() -> Option<PathBuf> {
    std::env::var_os(BENCH_BINARY).map(PathBuf::from)
}

/// The zilla binary the benchmarks run: `ZILLA_BENCH_BINARY`, or the release build.
pub(crate) fn zilla_binary() -> PathBuf {
    chosen_binary().unwrap_or_else(|| target_dir(&workspace_root()).join("release").join("zilla"))
}

/// Sends signal `name` (`TERM`, `INT`, `KILL`) to `pid` with kill(1).
pub(crate) fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The time now, `YYYY-MM-DD HH:MM UTC`, for the results a run writes.
pub(crate) fn utc_now() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|d| d.trim().to_string())
        .unwrap_or_default()
}

/// Writes `text` to `docs/bench/<name>` and says where (or why not).
pub(crate) fn write_doc(name: &str, text: &str) {
    let path = workspace_root().join("docs").join("bench").join(name);
    let written = path
        .parent()
        .map(fs::create_dir_all)
        .and_then(Result::ok)
        .and_then(|()| fs::write(&path, text).ok());
    match written {
        Some(()) => println!("(written to {})", path.display()),
        None => println!("note: could not write {}", path.display()),
    }
}

/// Parses `1073741824`, `64K`, `512M`, `1G`, `1GiB` (binary multiples).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let err = || format!("invalid byte count `{text}` (e.g. 1G, 512M, 1048576)");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| err())?;
    let suffix = suffix.to_ascii_lowercase();
    let unit: u64 = match suffix.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(err()),
    };
    n.checked_mul(unit).filter(|n| *n > 0).ok_or_else(err)
}

pub(crate) fn run(args: &[String]) -> ExitCode {
    if args.first().map(String::as_str) == Some("sse") {
        return crate::bench_sse::run(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("h2") {
        return crate::bench_h2::run(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("broadcast") {
        return crate::bench_broadcast::run(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("validate") {
        return crate::bench_validate::run(&args[1..]);
    }
    let args = match parse_args(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "xtask bench: {e}\nusage: cargo xtask bench tcp [--seconds N] [--bytes N] [--connections N]\n       \
                 cargo xtask bench sse [--clients N] [--rate R] [--size S] [--seconds D] [--idle M]\n       \
                 cargo xtask bench h2|broadcast|validate (see cargo xtask help)"
            );
            return ExitCode::from(2);
        }
    };
    match bench_tcp(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where a proxy (or the backend itself) accepts connections.
#[derive(Debug, Clone)]
struct Target {
    name: &'static str,
    sink: SocketAddr,
    echo: SocketAddr,
}

/// The measurements for one target.
#[derive(Debug, Clone, Default)]
struct Results {
    bulk_mb_s: f64,
    rtt_msgs_s: f64,
    rtt_p50_us: f64,
    rtt_p99_us: f64,
    concurrent_msgs_s: f64,
}

fn bench_tcp(args: &Args) -> Result<(), String> {
    let zilla_bin = release_zilla()?;

    let work = TempDir::new()?;
    let sink = spawn_backend(Backend::Sink)?;
    let echo = spawn_backend(Backend::Echo)?;
    let mut targets = vec![Target {
        name: "direct",
        sink,
        echo,
    }];

    // zilla: tcp server -> tcp client, one chain per backend
    let zilla_sink = free_port()?;
    let zilla_echo = free_port()?;
    let config = work.path().join("zilla.yaml");
    fs::write(&config, zilla_config()).map_err(|e| format!("writing {}: {e}", config.display()))?;
    let env = [
        ("ZILLA_SINK_PORT", zilla_sink),
        ("ZILLA_ECHO_PORT", zilla_echo),
        ("SINK_PORT", sink.port()),
        ("ECHO_PORT", echo.port()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    println!("==> starting {}", zilla_bin.display());
    let mut zilla = Zilla::start(&zilla_bin, &config, &env, Some(work.path()))?;
    zilla.wait_listening(&[zilla_sink, zilla_echo], Duration::from_secs(10))?;
    targets.push(Target {
        name: "zilla",
        sink: local(zilla_sink),
        echo: local(zilla_echo),
    });

    // nginx, when installed
    let mut nginx = None;
    match find_program("nginx") {
        None => println!(
            "note: nginx not installed (apt-get install nginx libnginx-mod-stream) — peer column skipped"
        ),
        Some(bin) => match Nginx::start(&bin, work.path(), sink, echo) {
            Ok(n) => {
                targets.push(Target {
                    name: "nginx",
                    sink: local(n.sink_port),
                    echo: local(n.echo_port),
                });
                nginx = Some(n);
            }
            Err(e) => println!("note: nginx could not be started — peer column skipped\n{e}"),
        },
    }

    println!(
        "==> measuring: bulk {} per target, {}s of 64-byte round trips on 1 connection, \
         {}s on {} connections",
        human_bytes(args.bytes),
        args.seconds,
        args.seconds,
        args.connections
    );
    let mut results = Vec::new();
    let mut failure = None;
    for target in &targets {
        match measure(target, args) {
            Ok(r) => results.push((target.name, r)),
            Err(e) => {
                failure = Some(format!("{}: {e}", target.name));
                break;
            }
        }
    }

    if let Some(nginx) = nginx {
        nginx.stop();
    }
    let stopped = zilla.stop(Duration::from_secs(5));
    if !stopped.graceful {
        println!("note: zilla {}", stopped.describe());
    }
    if let Some(e) = failure {
        return Err(format!("{e}\nzilla stderr:\n{}", stopped.stderr));
    }
    print_table(&results, args.connections);
    Ok(())
}

fn measure(target: &Target, args: &Args) -> Result<Results, String> {
    let seconds = Duration::from_secs_f64(args.seconds);
    print!("  {:<7} bulk ", target.name);
    flush();
    let bulk_mb_s = bulk(target.sink, args.bytes)?;
    print!("{bulk_mb_s:.0} MB/s, round trips ");
    flush();
    let (rtt_msgs_s, mut latencies) = round_trips(target.echo, seconds)?;
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    print!("{rtt_msgs_s:.0}/s, {} connections ", args.connections);
    flush();
    let concurrent_msgs_s = concurrent(target.echo, args.connections, seconds)?;
    println!("{concurrent_msgs_s:.0}/s");
    Ok(Results {
        bulk_mb_s,
        rtt_msgs_s,
        rtt_p50_us: pct(0.50),
        rtt_p99_us: pct(0.99),
        concurrent_msgs_s,
    })
}

/// Pushes `bytes` into the sink, half-closes, and waits for the sink to
/// close (so every byte was delivered). Returns MB/s (10^6 bytes).
fn bulk(addr: SocketAddr, bytes: u64) -> Result<f64, String> {
    let mut stream = connect(addr)?;
    let chunk = vec![0x5a_u8; BULK_CHUNK];
    let started = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream
            .write_all(&chunk[..n])
            .map_err(|e| format!("bulk write: {e}"))?;
        left -= n as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("bulk shutdown: {e}"))?;
    let mut buf = [0; 64];
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(_) => return Err("sink sent data".into()),
        Err(e) => return Err(format!("waiting for the sink to finish: {e}")),
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(bytes as f64 / elapsed / 1e6)
}

/// 64-byte request/response round trips on one connection for `duration`.
/// Returns (messages per second, latencies in nanoseconds).
fn round_trips(addr: SocketAddr, duration: Duration) -> Result<(f64, Vec<u64>), String> {
    let mut stream = connect(addr)?;
    let request = [0x42_u8; MESSAGE];
    let mut response = [0_u8; MESSAGE];
    // warm up
    for _ in 0..100 {
        round_trip(&mut stream, &request, &mut response)?;
    }
    let mut latencies = Vec::with_capacity(1 << 20);
    let started = Instant::now();
    while started.elapsed() < duration {
        let t = Instant::now();
        round_trip(&mut stream, &request, &mut response)?;
        latencies.push(t.elapsed().as_nanos() as u64);
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, latencies))
}

fn round_trip(stream: &mut TcpStream, request: &[u8], response: &mut [u8]) -> Result<(), String> {
    stream
        .write_all(request)
        .map_err(|e| format!("round trip write: {e}"))?;
    stream
        .read_exact(response)
        .map_err(|e| format!("round trip read: {e}"))?;
    if response != request {
        return Err("echo returned different bytes".into());
    }
    Ok(())
}

/// Round trips on `connections` connections at once; total messages/s.
fn concurrent(addr: SocketAddr, connections: usize, duration: Duration) -> Result<f64, String> {
    let streams = (0..connections)
        .map(|_| connect(addr))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Arc::new(Barrier::new(connections + 1));
    let handles: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let start = Arc::clone(&start);
            thread::spawn(move || -> Result<u64, String> {
                let request = [0x43_u8; MESSAGE];
                let mut response = [0_u8; MESSAGE];
                start.wait();
                let started = Instant::now();
                let mut count = 0;
                while started.elapsed() < duration {
                    round_trip(&mut stream, &request, &mut response)?;
                    count += 1;
                }
                Ok(count)
            })
        })
        .collect();
    start.wait();
    let started = Instant::now();
    let mut total = 0;
    let mut error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => error = Some(e),
            Err(_) => error = Some("client thread panicked".into()),
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

fn print_table(results: &[(&str, Results)], connections: usize) {
    type Metric = (String, fn(&Results) -> f64, usize);
    let metrics: [Metric; 5] = [
        ("bulk throughput (MB/s)".into(), |r| r.bulk_mb_s, 0),
        ("1 conn round trips (msg/s)".into(), |r| r.rtt_msgs_s, 0),
        ("1 conn latency p50 (us)".into(), |r| r.rtt_p50_us, 1),
        ("1 conn latency p99 (us)".into(), |r| r.rtt_p99_us, 1),
        (
            format!("{connections} conns round trips (msg/s)"),
            |r| r.concurrent_msgs_s,
            0,
        ),
    ];
    let direct = results.iter().find(|(n, _)| *n == "direct").map(|(_, r)| r);
    let mut header = format!("\n{:<30}", "metric");
    for (name, _) in results {
        header.push_str(&format!("{name:>12}"));
        if *name != "direct" {
            header.push_str(&format!("{:>14}", format!("{name}/direct")));
        }
    }
    println!("{header}");
    println!("{}", "-".repeat(header.trim_start().len()));
    for (label, get, decimals) in metrics {
        let mut row = format!("{label:<30}");
        for (name, r) in results {
            row.push_str(&format!("{:>12.*}", decimals, get(r)));
            if *name != "direct" {
                let ratio = direct
                    .map(|d| get(r) / get(d))
                    .filter(|x| x.is_finite())
                    .map(|x| format!("{x:.2}x"))
                    .unwrap_or_else(|| "-".into());
                row.push_str(&format!("{ratio:>14}"));
            }
        }
        println!("{row}");
    }
    println!("(latency ratios above 1 and throughput ratios below 1 mean slower than direct)");
}

pub(crate) fn flush() {
    let _ = std::io::stdout().flush();
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 => format!("{:.0} MiB", n as f64 / f64::from(1 << 20)),
        n => format!("{n} bytes"),
    }
}

pub(crate) fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot allocate a port: {e}"))
}

fn zilla_config() -> &'static str {
    "\
name: bench
bindings:
  app0:
    type: tcp
    kind: server
    options:
      host: 127.0.0.1
      port: ${{env.ZILLA_SINK_PORT}}
    exit: app1
  app1:
    type: tcp
    kind: client
    options:
      host: 127.0.0.1
      port: ${{env.SINK_PORT}}
  app2:
    type: tcp
    kind: server
    options:
      host: 127.0.0.1
      port: ${{env.ZILLA_ECHO_PORT}}
    exit: app3
  app3:
    type: tcp
    kind: client
    options:
      host: 127.0.0.1
      port: ${{env.ECHO_PORT}}
"
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    /// Reads and discards until EOF, then closes.
    Sink,
    /// Writes back every byte it reads; ends its output at EOF.
    Echo,
}

/// Starts a backend on a free port; it serves each connection on its own
/// thread until the process exits.
fn spawn_backend(kind: Backend) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("backend listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            thread::spawn(move || serve(kind, stream));
        }
    });
    Ok(addr)
}

fn serve(kind: Backend, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0; BULK_CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Backend::Echo = kind {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// nginx running a `stream` proxy in front of the two backends.
#[derive(Debug)]
struct Nginx {
    child: Child,
    sink_port: u16,
    echo_port: u16,
}

impl Nginx {
    fn start(bin: &Path, dir: &Path, sink: SocketAddr, echo: SocketAddr) -> Result<Nginx, String> {
        let sink_port = free_port()?;
        let echo_port = free_port()?;
        let module = [
            "/usr/lib/nginx/modules/ngx_stream_module.so",
            "/usr/share/nginx/modules/ngx_stream_module.so",
        ]
        .into_iter()
        .find(|m| Path::new(m).exists())
        .map(|m| format!("load_module {m};\n"))
        .unwrap_or_default();
        let body = format!(
            "events {{ worker_connections 4096; }}\n\
             stream {{\n  \
               server {{ listen 127.0.0.1:{sink_port}; proxy_pass {sink}; }}\n  \
               server {{ listen 127.0.0.1:{echo_port}; proxy_pass {echo}; }}\n\
             }}\n"
        );
        let child = launch_nginx(bin, dir, &module, &body, &[sink_port, echo_port])?;
        Ok(Nginx {
            child,
            sink_port,
            echo_port,
        })
    }

    fn stop(mut self) {
        stop_nginx(&mut self.child);
    }
}

/// Writes `dir/nginx.conf` (`prelude`, then `worker_processes 2`, `daemon
/// off`, pid file and error log in `dir`, then `body`), starts nginx on it
/// and waits up to 5s until every port in `ports` accepts connections.
pub(crate) fn launch_nginx(
    bin: &Path,
    dir: &Path,
    prelude: &str,
    body: &str,
    ports: &[u16],
) -> Result<Child, String> {
    let conf = dir.join("nginx.conf");
    let error_log = dir.join("nginx-error.log");
    let text = format!(
        "{prelude}worker_processes 2;\ndaemon off;\npid {pid};\nerror_log {log} warn;\n{body}",
        pid = dir.join("nginx.pid").display(),
        log = error_log.display(),
    );
    fs::write(&conf, text).map_err(|e| format!("writing {}: {e}", conf.display()))?;
    println!("==> starting {} -c {}", bin.display(), conf.display());
    let mut child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(&error_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start nginx: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr);
            }
            let log = fs::read_to_string(&error_log).unwrap_or_default();
            return Err(format!("nginx exited ({status}):\n{stderr}{log}"));
        }
        let ready = ports.iter().all(|p| TcpStream::connect(local(*p)).is_ok());
        if ready {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("nginx did not start listening within 5s".into());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM to the nginx master, up to 5s for it to exit, then SIGKILL.
pub(crate) fn stop_nginx(child: &mut Child) {
    signal(child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            stop_nginx(&mut self.child);
        }
    }
}

/// Finds an executable on PATH (or in the usual sbin directories).
/// nginx, installed from Debian's packages when it is missing (as root, with apt-get), so the
/// peer column is there on a fresh machine; `None` (and why) when it cannot be had.
pub(crate) fn nginx_or_install() -> Option<PathBuf> {
    if let Some(bin) = find_program("nginx") {
        return Some(bin);
    }
    println!("==> nginx is not installed: apt-get install nginx (for the peer column)");
    let installed = std::process::Command::new("apt-get")
        .args(["install", "-y", "-qq", "nginx"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        println!("note: could not install nginx (not root, or no apt-get)");
    }
    find_program("nginx")
}

pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Result<TempDir, String> {
        // One folder per TempDir: benchmarks nest runs (bench sse runs broadcast and h2) and
        // tests run in parallel; a shared name had one overwrite or delete another's files.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = env::temp_dir().join(format!("zilla-bench-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_binary_that_is_not_there_says_what_to_do() {
        let e = chosen_exists(Path::new("/nonexistent/zilla")).unwrap_err();
        assert!(
            e.contains("ZILLA_BENCH_BINARY=/nonexistent/zilla: no such file"),
            "{e}"
        );
        assert!(e.contains("unset it to build one"), "{e}");
        assert!(chosen_exists(Path::new(env!("CARGO"))).is_ok());
    }

    #[test]
    fn parses_byte_counts() {
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("64K"), Ok(64 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("1T").is_err());
        assert!(parse_bytes("G").is_err());
    }

    #[test]
    fn parses_bench_args() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let a = args(&[
            "tcp",
            "--seconds",
            "2",
            "--bytes=256M",
            "--connections",
            "10",
        ])
        .unwrap();
        assert_eq!((a.seconds, a.bytes, a.connections), (2.0, 256 << 20, 10));
        let a = args(&["tcp"]).unwrap();
        assert_eq!((a.seconds, a.bytes, a.connections), (5.0, 1 << 30, 50));
        assert!(args(&[]).is_err());
        assert!(args(&["udp"]).is_err());
        assert!(args(&["tcp", "--seconds"]).is_err());
        assert!(args(&["tcp", "--seconds", "-1"]).is_err());
        assert!(args(&["tcp", "--fast"]).is_err());
    }

    #[test]
    fn measures_against_in_process_backends() {
        let sink = spawn_backend(Backend::Sink).unwrap();
        let echo = spawn_backend(Backend::Echo).unwrap();
        assert!(bulk(sink, 8 << 20).unwrap() > 0.0);
        let (rate, latencies) = round_trips(echo, Duration::from_millis(100)).unwrap();
        assert!(rate > 0.0 && !latencies.is_empty());
        assert!(concurrent(echo, 4, Duration::from_millis(100)).unwrap() > 0.0);
    }
}
