//! `cargo xtask bench sse`: SSE fan-out benchmark, direct vs zilla (vs nginx).
//!
//! Everything runs on 127.0.0.1. The backend lives in this process: it
//! accepts `GET /events` requests, answers with a chunked
//! `text/event-stream` head and then, from a few sender threads, writes each
//! stream `--rate` events per second of `--size` bytes for `--seconds`
//! seconds. Every event carries the time it was written (nanoseconds since an
//! `Instant` shared with the clients), so each client computes backend-write
//! to client-read latency. Requests for `/events/idle` get the head and
//! nothing else; they measure the proxy's memory per idle stream (opened,
//! closed and opened again, which tells memory kept by the allocator from
//! memory leaked per stream).
//!
//! The same measurements run directly against the backend, through zilla
//! (the `examples/sse.proxy` chain: tcp server -> http server -> sse server ->
//! sse client -> http client -> tcp client) and, if installed, through nginx
//! (`proxy_pass` with buffering off). For the proxies it also reads their CPU
//! time and RSS from `/proc`.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use zilla_spec::Zilla;

use crate::bench::{
    count, flag_values, flush, free_port, launch_nginx, local, nginx_or_install, positive,
    stop_nginx, write_doc, TempDir,
};

/// Stack size of the client threads (one per stream).
pub(crate) const CLIENT_STACK: usize = 64 * 1024;
/// Backend threads writing events; each owns a share of the streams.
pub(crate) const SENDERS: usize = 2;
/// Streams that may be connected but not yet seen by the backend.
const CONNECT_AHEAD: usize = 64;
/// Bytes of an event that are not the data value: `data:` and `\n\n`.
pub(crate) const EVENT_OVERHEAD: usize = 7;
/// File descriptors kept free for everything but the streams.
const SPARE_FDS: u64 = 128;
/// Path the idle streams ask for (routed by `/events*` like the others).
const IDLE_PATH: &str = "/events/idle";
/// Path of the saturation streams: the backend writes events as fast as they are taken.
pub(crate) const FLOOD_PATH: &str = "/events/flood";
/// Streams of the saturation workload.
const FLOOD_CLIENTS: usize = 100;

#[derive(Debug, Clone, PartialEq)]
struct Args {
    clients: usize,
    rate: f64,
    size: usize,
    seconds: f64,
    idle: usize,
    workers: Option<usize>,
    /// Where to write `perf` profiles of zilla's and nginx's saturation and fan-out (a
    /// profiling run: its tables are printed, not written to docs/bench).
    perf: Option<PathBuf>,
}

const USAGE: &str = "usage: cargo xtask bench sse [--clients N] [--rate R] [--size S] [--seconds D] [--idle M] [--workers N] [--perf DIR]";

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        clients: 1000,
        rate: 20.0,
        size: 256,
        seconds: 10.0,
        idle: 1000,
        workers: None,
        perf: None,
    };
    for (flag, value) in flag_values(args)? {
        match flag.as_str() {
            "--clients" => parsed.clients = count(&flag, &value, 1, 20_000)?,
            "--rate" => parsed.rate = positive(&flag, &value, 10_000.0)?,
            "--size" => parsed.size = count(&flag, &value, 48, 64 * 1024)?,
            "--seconds" => parsed.seconds = positive(&flag, &value, 600.0)?,
            "--idle" => parsed.idle = count(&flag, &value, 1, 50_000)?,
            "--workers" => parsed.workers = Some(count(&flag, &value, 1, 256)?),
            "--perf" => parsed.perf = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if events_per_stream(&parsed) == 0 {
        return Err("--rate x --seconds must be at least 1 event per stream".into());
    }
    Ok(parsed)
}

fn events_per_stream(args: &Args) -> u64 {
    (args.rate * args.seconds).round() as u64
}

pub(crate) fn run(args: &[String]) -> ExitCode {
    let mut args = match parse_args(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("xtask bench sse: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    fit_fd_limit(&mut args);
    match bench_sse(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask bench sse: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Each stream costs this process two descriptors (client and backend end);
/// shrinks the stream counts when the soft `RLIMIT_NOFILE` is too low.
fn fit_fd_limit(args: &mut Args) {
    let Some((soft, hard)) = open_file_limit() else {
        return;
    };
    let streams = args.clients.max(args.idle) as u64;
    let needed = 2 * streams + SPARE_FDS;
    if soft >= needed {
        return;
    }
    let fit = (soft.saturating_sub(SPARE_FDS) / 2).max(1) as usize;
    println!(
        "note: the open-file limit is {soft} (hard {hard}); {streams} streams need {needed}. \
         Raise it in the shell first, e.g. `ulimit -n {}`. Running with at most {fit} streams.",
        needed.max(65_536).min(hard.max(needed))
    );
    args.clients = args.clients.min(fit);
    args.idle = args.idle.min(fit);
}

/// The soft and hard `Max open files` of this process.
fn open_file_limit() -> Option<(u64, u64)> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let parse = |f: Option<&str>| match f? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    Some((parse(fields.next())?, parse(fields.next())?))
}

/// A process whose CPU time and memory are measured.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Proxy {
    /// One process.
    Single(u32),
    /// nginx: the master and its worker children.
    Master(u32),
}

impl Proxy {
    fn pids(self) -> Vec<u32> {
        match self {
            Proxy::Single(pid) => vec![pid],
            Proxy::Master(pid) => {
                let mut pids = vec![pid];
                pids.extend(children_of(pid));
                pids
            }
        }
    }

    /// utime + stime of every process, in clock ticks.
    pub(crate) fn cpu_ticks(self) -> Result<u64, String> {
        self.pids().into_iter().map(cpu_ticks).sum()
    }

    /// Scheduling of every thread of every process (`/proc/PID/task/TID/schedstat`): time
    /// waiting on a run queue for a core, in nanoseconds, and the times it was given one.
    pub(crate) fn run_queue(self) -> RunQueue {
        let mut total = RunQueue::default();
        for pid in self.pids() {
            let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let Ok(text) = fs::read_to_string(task.path().join("schedstat")) else {
                    continue;
                };
                let fields: Vec<u64> = text
                    .split_whitespace()
                    .filter_map(|f| f.parse().ok())
                    .collect();
                if let [_, wait_ns, slices] = fields[..] {
                    total.wait_ns += wait_ns;
                    total.slices += slices;
                }
            }
        }
        total
    }

    /// CPU time of every process and the kernel's part of it (one read of each `stat`).
    pub(crate) fn times(self) -> Result<CpuTimes, String> {
        let mut sum = CpuTimes::default();
        for pid in self.pids() {
            let (user, system) = stat_times(pid)?;
            sum.total += user + system;
            sum.kernel += system;
        }
        Ok(sum)
    }

    /// VmRSS of every process, in KiB.
    pub(crate) fn rss_kib(self) -> Result<u64, String> {
        self.pids().into_iter().map(rss_kib).sum()
    }
}

/// CPU time of a proxy, in clock ticks ([`Proxy::times`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CpuTimes {
    /// utime + stime.
    pub(crate) total: u64,
    /// stime: time the kernel spent on the proxy's behalf.
    pub(crate) kernel: u64,
}

impl CpuTimes {
    /// Microseconds of CPU and of kernel time per event from `before` to `self`.
    pub(crate) fn us_per_event_since(
        self,
        before: CpuTimes,
        ticks_per_second: f64,
        events: u64,
    ) -> (f64, f64) {
        let per = |a: u64, b: u64| {
            a.saturating_sub(b) as f64 / ticks_per_second * 1e6 / events.max(1) as f64
        };
        (
            per(self.total, before.total),
            per(self.kernel, before.kernel),
        )
    }
}

/// Run-queue figures of a proxy's threads, summed ([`Proxy::run_queue`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RunQueue {
    /// Nanoseconds spent runnable but waiting for a core.
    pub(crate) wait_ns: u64,
    /// Times a thread was put on a core.
    pub(crate) slices: u64,
}

impl RunQueue {
    /// Mean wait for a core per time put on one, in microseconds, from `before` to `self`.
    pub(crate) fn wait_us_since(self, before: RunQueue) -> Option<f64> {
        let slices = self.slices.checked_sub(before.slices).filter(|n| *n > 0)?;
        Some(self.wait_ns.saturating_sub(before.wait_ns) as f64 / 1e3 / slices as f64)
    }
}

/// The fields of `/proc/PID/stat` after the command name (state is [0]).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

pub(crate) fn cpu_ticks(pid: u32) -> Result<u64, String> {
    stat_times(pid).map(|(user, system)| user + system)
}

/// utime and stime of `pid`, in clock ticks.
fn stat_times(pid: u32) -> Result<(u64, u64), String> {
    let fields = stat_fields(pid).ok_or_else(|| format!("cannot read /proc/{pid}/stat"))?;
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the name.
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (field(11), field(12)) {
        (Some(u), Some(s)) => Ok((u, s)),
        _ => Err(format!("unexpected /proc/{pid}/stat")),
    }
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(*pid)
                .and_then(|f| f.get(1)?.parse::<u32>().ok())
                .is_some_and(|ppid| ppid == parent)
        })
        .collect()
}

pub(crate) fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// The in-process SSE backend.
#[derive(Debug)]
pub(crate) struct Backend {
    addr: SocketAddr,
    shared: Arc<BackendShared>,
}

#[derive(Debug, Default)]
struct BackendShared {
    /// Streams that asked for events, head sent, waiting for a run.
    events: Mutex<Vec<TcpStream>>,
    /// Idle streams, head sent; nothing more is written.
    idle: Mutex<Vec<TcpStream>>,
    /// Connections that failed before the head was sent.
    rejected: AtomicU64,
}

const RESPONSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

impl Backend {
    /// Listens on a free port; one thread accepts, reads each request head
    /// and answers with the response head, then parks the stream.
    pub(crate) fn start() -> Result<Backend, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("backend listen: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(BackendShared::default());
        let accepting = Arc::clone(&shared);
        thread::Builder::new()
            .name("sse-backend".into())
            .spawn(move || {
                for stream in listener.incoming().map_while(Result::ok) {
                    if accept(&accepting, stream).is_err() {
                        accepting.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| format!("backend thread: {e}"))?;
        Ok(Backend { addr, shared })
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    pub(crate) fn events(&self) -> MutexGuard<'_, Vec<TcpStream>> {
        lock(&self.shared.events)
    }

    fn idle(&self) -> MutexGuard<'_, Vec<TcpStream>> {
        lock(&self.shared.idle)
    }
}

fn accept(shared: &BackendShared, mut stream: TcpStream) -> std::io::Result<()> {
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
    let request_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let idle = find(request_line, IDLE_PATH.as_bytes()).is_some();
    stream.write_all(RESPONSE_HEAD)?;
    if find(request_line, FLOOD_PATH.as_bytes()).is_some() {
        // As fast as the stream takes them, until the client goes: 64 events of 256 B a write.
        stream.set_write_timeout(None)?;
        let chunk = flood_chunk();
        thread::spawn(move || while stream.write_all(&chunk).is_ok() {});
        return Ok(());
    }
    if idle {
        lock(&shared.idle).push(stream);
    } else {
        lock(&shared.events).push(stream);
    }
    Ok(())
}

/// One chunk of 64 events of 256 bytes each (`id:`, `data:`), framed as upstreams write them.
fn flood_chunk() -> Vec<u8> {
    let mut events = Vec::new();
    for i in 0..64u32 {
        let head = format!("id:{i}\ndata:");
        let pad = 256 - head.len() - 2;
        events.extend_from_slice(head.as_bytes());
        events.resize(events.len() + pad, b'x');
        events.extend_from_slice(b"\n\n");
    }
    let mut chunk = format!("{:x}\r\n", events.len()).into_bytes();
    chunk.extend_from_slice(&events);
    chunk.extend_from_slice(b"\r\n");
    chunk
}

/// The saturation workload: [`FLOOD_CLIENTS`] streams whose backend writes as fast as each
/// takes events; events per second delivered over `seconds`, and the proxy's CPU per event.
fn saturation(
    target: &Target,
    seconds: f64,
    ticks_per_second: f64,
    results: &mut Results,
) -> Result<(), String> {
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..FLOOD_CLIENTS {
        let mut c = open_stream(target.port, FLOOD_PATH)?;
        c.set_read_timeout(Some(Duration::from_millis(200))).ok();
        let (count, done) = (count.clone(), done.clone());
        readers.push(
            thread::Builder::new()
                .stack_size(CLIENT_STACK)
                .spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut last = 0u8;
                    while !done.load(Ordering::Relaxed) {
                        match c.read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => {
                                let mut events = 0;
                                for &b in &buf[..n] {
                                    if last == b'\n' && b == b'\n' {
                                        events += 1;
                                    }
                                    last = b;
                                }
                                count.fetch_add(events, Ordering::Relaxed);
                            }
                            Err(_) => {}
                        }
                    }
                })
                .map_err(|e| format!("client thread: {e}"))?,
        );
    }
    thread::sleep(Duration::from_millis(500));
    let cpu = |t: &Target| t.proxy.map(Proxy::times).transpose();
    let (c0, t0) = (count.load(Ordering::Relaxed), cpu(target)?);
    let started = Instant::now();
    thread::sleep(Duration::from_secs_f64(seconds));
    let (c1, t1) = (count.load(Ordering::Relaxed), cpu(target)?);
    let elapsed = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    let events = c1 - c0;
    results.saturation_events_s = Some(events as f64 / elapsed);
    if let (Some(t0), Some(t1)) = (t0, t1) {
        // CPU-seconds per million events are microseconds per event.
        let (cpu, kernel) = t1.us_per_event_since(t0, ticks_per_second, events);
        results.saturation_cpu_s_per_m = Some(cpu);
        results.saturation_kernel_s_per_m = Some(kernel);
    }
    Ok(())
}

/// Appends one event as one chunk: `data:<ns> xxx…\n\n`, `size` bytes in all.
fn encode_event(out: &mut Vec<u8>, size: usize, sent_ns: u64) {
    let stamp = sent_ns.to_string();
    let pad = size - EVENT_OVERHEAD - stamp.len() - 1;
    out.extend_from_slice(format!("{size:x}\r\ndata:{stamp} ").as_bytes());
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"\n\n\r\n");
}

/// Incremental reader of an SSE response: the head, the chunked (or
/// identity) body and the events in it.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    raw: Vec<u8>,
    body: Vec<u8>,
    head_done: bool,
    chunked: bool,
    /// Bytes left in the current chunk.
    chunk_left: usize,
    /// The CRLF after a chunk's data is still to come.
    chunk_crlf: bool,
    /// The last chunk arrived.
    ended: bool,
}

impl SseDecoder {
    /// Feeds bytes read from the socket; calls `on_event` with each complete
    /// event (without its blank line).
    pub(crate) fn push(
        &mut self,
        data: &[u8],
        mut on_event: impl FnMut(&[u8]),
    ) -> Result<(), String> {
        self.raw.extend_from_slice(data);
        if !self.head_done {
            let Some(end) = find(&self.raw, b"\r\n\r\n") else {
                return Ok(());
            };
            let head = String::from_utf8_lossy(&self.raw[..end]).to_ascii_lowercase();
            let status = head.lines().next().unwrap_or_default();
            if status.split_whitespace().nth(1) != Some("200") {
                return Err(format!("response `{status}`"));
            }
            self.chunked = head
                .lines()
                .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
            self.head_done = true;
            self.raw.drain(..end + 4);
        }
        if self.chunked {
            self.dechunk()?;
        } else {
            self.body.append(&mut self.raw);
        }
        let mut start = 0;
        while let Some(end) = find(&self.body[start..], b"\n\n") {
            on_event(&self.body[start..start + end]);
            start += end + 2;
        }
        self.body.drain(..start);
        Ok(())
    }

    /// The response head has been read (and was a 200).
    pub(crate) fn head_done(&self) -> bool {
        self.head_done
    }

    fn dechunk(&mut self) -> Result<(), String> {
        let mut at = 0;
        while !self.ended {
            if self.chunk_left > 0 {
                let n = self.chunk_left.min(self.raw.len() - at);
                if n == 0 {
                    break;
                }
                self.body.extend_from_slice(&self.raw[at..at + n]);
                self.chunk_left -= n;
                at += n;
                continue;
            }
            if self.chunk_crlf {
                if self.raw.len() - at < 2 {
                    break;
                }
                if &self.raw[at..at + 2] != b"\r\n" {
                    return Err("chunk not followed by CRLF".into());
                }
                at += 2;
                self.chunk_crlf = false;
            }
            let Some(eol) = find(&self.raw[at..], b"\r\n") else {
                break;
            };
            let line = String::from_utf8_lossy(&self.raw[at..at + eol]).into_owned();
            let hex = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| format!("bad chunk size line `{line}`"))?;
            at += eol + 2;
            if size == 0 {
                self.ended = true;
            } else {
                self.chunk_left = size;
                self.chunk_crlf = true;
            }
        }
        self.raw.drain(..at);
        Ok(())
    }
}

/// The value of an event's first `data:` line.
pub(crate) fn event_data(event: &[u8]) -> Option<&[u8]> {
    event.split(|b| *b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let value = line.strip_prefix(b"data:")?;
        Some(value.strip_prefix(b" ").unwrap_or(value))
    })
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientReport {
    events: u64,
    malformed: u64,
    /// Latencies of every event but the stream's first.
    latencies_ns: Vec<u64>,
    /// Latency of the stream's first event (the response head comes with it
    /// through some proxies).
    first_ns: Option<u64>,
    error: Option<String>,
}

fn client(
    mut stream: TcpStream,
    epoch: Instant,
    size: usize,
    expected: u64,
    received: &AtomicU64,
    stop: &AtomicBool,
) -> ClientReport {
    let mut report = ClientReport {
        latencies_ns: Vec::with_capacity(expected as usize),
        ..ClientReport::default()
    };
    let mut decoder = SseDecoder::default();
    let mut buf = vec![0; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => {
                report.error = Some(format!(
                    "stream closed by the server after {} events",
                    report.events
                ));
                break;
            }
            Ok(n) => {
                let now = epoch.elapsed().as_nanos() as u64;
                let before = report.events;
                let decoded = decoder.push(&buf[..n], |event| {
                    let Some(data) = event_data(event) else {
                        return; // a comment (keep-alive)
                    };
                    report.events += 1;
                    let stamp = data.split(|b| *b == b' ').next().unwrap_or_default();
                    match std::str::from_utf8(stamp).ok().and_then(|s| s.parse().ok()) {
                        Some(sent) if data.len() == size - EVENT_OVERHEAD => {
                            let latency = now.saturating_sub(sent);
                            if report.events == 1 {
                                report.first_ns = Some(latency);
                            } else {
                                report.latencies_ns.push(latency);
                            }
                        }
                        _ => report.malformed += 1,
                    }
                });
                received.fetch_add(report.events - before, Ordering::Relaxed);
                if let Err(e) = decoded {
                    report.error = Some(e);
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                report.error = Some(format!("read after {} events: {e}", report.events));
                break;
            }
        }
    }
    report
}

fn request(path: &str, port: u16) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n\r\n"
    )
}

fn open_stream(port: u16, path: &str) -> Result<TcpStream, String> {
    let addr = local(port);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .write_all(request(path, port).as_bytes())
        .map_err(|e| format!("sending the request to {addr}: {e}"))?;
    Ok(stream)
}

/// Waits until `count()` reaches `target`, or fails after `timeout`.
pub(crate) fn wait_for(
    what: &str,
    target: usize,
    timeout: Duration,
    count: impl Fn() -> usize,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let n = count();
        if n >= target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "only {n} of {target} {what} within {}s",
                timeout.as_secs()
            ));
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// One target's numbers; `None` where it does not apply (the direct run has
/// no proxy process) or was not measured.
#[derive(Debug, Clone, Default)]
struct Results {
    sent: u64,
    delivered: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    p99_later_us: f64,
    first_p50_us: f64,
    first_max_us: f64,
    cpu_us_per_event: Option<f64>,
    /// The part of `cpu_us_per_event` spent in the kernel (stime).
    kernel_us_per_event: Option<f64>,
    /// Mean time a proxy thread waited for a core each time it was woken (fan-out).
    run_queue_wait_us: Option<f64>,
    rss_base_mib: Option<f64>,
    idle_kib_per_stream: Option<f64>,
    /// RSS still held per stream after the idle streams closed.
    idle_kept_kib_per_stream: Option<f64>,
    /// Growth per stream when the idle streams are opened a second time.
    idle_again_kib_per_stream: Option<f64>,
    /// Broadcast burst: latency p50 and p99.
    burst_p50_us: Option<f64>,
    burst_p99_us: Option<f64>,
    /// Fan-out p99 of the others while one client reads nothing and is flooded.
    slow_p99_us: Option<f64>,
    /// Process start to listening, in milliseconds.
    ready_ms: Option<f64>,
    /// Saturation: events per second delivered to [`FLOOD_CLIENTS`] streams.
    saturation_events_s: Option<f64>,
    /// Saturation: proxy CPU-seconds per million events.
    saturation_cpu_s_per_m: Option<f64>,
    /// The part of `saturation_cpu_s_per_m` spent in the kernel (stime).
    saturation_kernel_s_per_m: Option<f64>,
    problems: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Target {
    name: &'static str,
    port: u16,
    proxy: Option<Proxy>,
}

/// nginx as an HTTP reverse proxy; stopped (with its workers) on drop.
#[derive(Debug)]
pub(crate) struct NginxHttp {
    child: Child,
    pub(crate) port: u16,
}

impl NginxHttp {
    pub(crate) fn start(
        bin: &Path,
        dir: &Path,
        backend: u16,
        streams: usize,
    ) -> Result<NginxHttp, String> {
        NginxHttp::start_with(bin, dir, backend, streams, "", "")
    }

    /// With `listen` parameters after the address (`http2`, `ssl http2`) and more `server`
    /// directives (certificates).
    pub(crate) fn start_with(
        bin: &Path,
        dir: &Path,
        backend: u16,
        streams: usize,
        listen: &str,
        server: &str,
    ) -> Result<NginxHttp, String> {
        let port = free_port()?;
        let connections = (2 * streams + 64).max(4096);
        let nofile = open_file_limit()
            .map(|(soft, _)| soft.min(1 << 20))
            .unwrap_or(4096);
        let temp = |name: &str| dir.join(name).display().to_string();
        let prelude = format!("worker_rlimit_nofile {nofile};\n");
        let body = format!(
            "events {{ worker_connections {connections}; }}\n\
             http {{\n  \
               access_log off;\n  \
               client_body_temp_path {};\n  \
               proxy_temp_path {};\n  \
               fastcgi_temp_path {};\n  \
               uwsgi_temp_path {};\n  \
               scgi_temp_path {};\n  \
               server {{\n    \
                 listen 127.0.0.1:{port} {listen};\n    \
                 {server}\n    \
                 location / {{\n      \
                   proxy_pass http://127.0.0.1:{backend};\n      \
                   proxy_http_version 1.1;\n      \
                   proxy_buffering off;\n      \
                   proxy_cache off;\n      \
                   proxy_read_timeout 1h;\n    \
                 }}\n  \
               }}\n\
             }}\n",
            temp("client_body"),
            temp("proxy"),
            temp("fastcgi"),
            temp("uwsgi"),
            temp("scgi"),
        );
        let child = launch_nginx(bin, dir, &prelude, &body, &[port])?;
        Ok(NginxHttp { child, port })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NginxHttp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let workers = children_of(self.pid());
            stop_nginx(&mut self.child);
            // A SIGKILLed master leaves its workers behind: end them too.
            for pid in workers {
                let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if name.trim() == "nginx" {
                    crate::bench::signal(pid, "KILL");
                }
            }
        }
    }
}

/// Returns whether every target delivered every event.
fn bench_sse(args: &Args) -> Result<bool, String> {
    let zilla_bin = crate::bench::release_zilla()?;

    let work = TempDir::new()?;
    let backend = Backend::start()?;
    let mut targets = vec![Target {
        name: "direct",
        port: backend.port(),
        proxy: None,
    }];

    let zilla_port = free_port()?;
    let config = work.path().join("zilla.yaml");
    fs::write(&config, zilla_config(zilla_port, backend.port(), None))
        .map_err(|e| format!("writing {}: {e}", config.display()))?;
    if let Some(workers) = args.workers {
        // zilla-spec's launcher passes the lines of zilla.args beside the config to zilla.
        fs::write(work.path().join("zilla.args"), format!("-w\n{workers}\n"))
            .map_err(|e| format!("writing zilla.args: {e}"))?;
    }
    println!("==> starting {}", zilla_bin.display());
    let started = Instant::now();
    let mut zilla = Zilla::start(&zilla_bin, &config, &[], Some(work.path()))?;
    zilla.wait_listening(&[zilla_port], Duration::from_secs(10))?;
    let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
    targets.push(Target {
        name: "zilla",
        port: zilla_port,
        proxy: Some(Proxy::Single(zilla.pid())),
    });

    // The same chain with every metric recorded on every binding and a Prometheus endpoint:
    // what counting costs.
    let metered_work = TempDir::new()?;
    let metered_port = free_port()?;
    let metered_config = metered_work.path().join("zilla.yaml");
    fs::write(
        &metered_config,
        zilla_config(metered_port, backend.port(), Some(free_port()?)),
    )
    .map_err(|e| format!("writing {}: {e}", metered_config.display()))?;
    if let Some(workers) = args.workers {
        fs::write(
            metered_work.path().join("zilla.args"),
            format!("-w\n{workers}\n"),
        )
        .map_err(|e| format!("writing zilla.args: {e}"))?;
    }
    let mut metered = Zilla::start(&zilla_bin, &metered_config, &[], Some(metered_work.path()))?;
    metered.wait_listening(&[metered_port], Duration::from_secs(10))?;
    targets.push(Target {
        name: "zilla+m",
        port: metered_port,
        proxy: Some(Proxy::Single(metered.pid())),
    });

    let mut nginx = None;
    let mut nginx_ready_ms = None;
    match nginx_or_install() {
        None => println!("nginx not installed (apt-get install nginx) — peer column skipped"),
        Some(bin) => {
            let streams = args.clients.max(args.idle);
            let started = Instant::now();
            match NginxHttp::start(&bin, work.path(), backend.port(), streams) {
                Ok(n) => {
                    nginx_ready_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                    targets.push(Target {
                        name: "nginx",
                        port: n.port,
                        proxy: Some(Proxy::Master(n.pid())),
                    });
                    nginx = Some(n);
                }
                Err(e) => println!("note: nginx could not be started — peer column skipped\n{e}"),
            }
        }
    }

    let per_stream = events_per_stream(args);
    println!(
        "==> measuring: {} idle streams (proxies only), then {} clients x {} events/s x {} B \
         for {}s ({} events per stream, {} in all)",
        args.idle,
        args.clients,
        args.rate,
        args.size,
        args.seconds,
        per_stream,
        per_stream * args.clients as u64,
    );
    let epoch = Instant::now();
    let ticks_per_second = clock_ticks_per_second();
    let mut results = Vec::new();
    let mut failure = None;
    for target in &targets {
        match measure(target, &backend, args, epoch, ticks_per_second) {
            Ok(mut r) => {
                r.ready_ms = match target.name {
                    "zilla" => Some(ready_ms),
                    "nginx" => nginx_ready_ms,
                    _ => None,
                };
                results.push((target.name, r));
            }
            Err(e) => {
                failure = Some(format!("{}: {e}", target.name));
                break;
            }
        }
    }

    drop(nginx);
    let _ = metered.stop(Duration::from_secs(5));
    let stopped = zilla.stop(Duration::from_secs(5));
    if !stopped.graceful {
        println!("note: zilla {}", stopped.describe());
    }
    let rejected = backend.shared.rejected.load(Ordering::Relaxed);
    if rejected > 0 {
        println!("note: the backend dropped {rejected} connections before answering");
    }
    if let Some(e) = failure {
        return Err(format!("{e}\nzilla stderr:\n{}", tail(&stopped.stderr, 30)));
    }
    let table = table(&results);
    print!("{table}");
    println!("{}", machine_note());
    if let Some(dir) = &args.perf {
        // perf slows the proxies it samples: these figures are not comparable to a plain run.
        println!(
            "(profiling run: tables not written to docs/bench; profiles in {})",
            dir.display()
        );
        return Ok(results.iter().all(|(_, r)| r.problems.is_empty()));
    }
    write_results(args, &table);
    let mut complete = true;
    for (name, r) in &results {
        for problem in &r.problems {
            println!("problem: {name}: {problem}");
        }
        if r.delivered != r.sent || !r.problems.is_empty() {
            complete = false;
        }
    }
    if !complete && !stopped.stderr.trim().is_empty() {
        println!("zilla stderr:\n{}", tail(&stopped.stderr, 30));
    }
    // One feed to many clients: shared feeds (beyond Zilla) against unshared against nginx.
    let broadcast = crate::bench_broadcast::Args::default();
    let (table, delivered) = crate::bench_broadcast::bench(&broadcast)?;
    crate::bench_broadcast::write_results(&broadcast, &table);
    // HTTP/2 towards the clients, cleartext and TLS, zilla against nginx.
    let h2 = crate::bench_h2::Args::default();
    let (table, h2_delivered) = crate::bench_h2::bench(&h2)?;
    crate::bench_h2::write_results(&h2, &table);
    Ok(complete && delivered && h2_delivered)
}

fn measure(
    target: &Target,
    backend: &Backend,
    args: &Args,
    epoch: Instant,
    ticks_per_second: f64,
) -> Result<Results, String> {
    print!("  {:<7}", target.name);
    flush();
    let mut results = Results::default();
    if let Some(proxy) = target.proxy {
        let first = idle_memory(target.port, backend, args.idle, proxy)?;
        let again = idle_memory(target.port, backend, args.idle, proxy)?;
        let per_stream = |kib: u64, base: u64| kib.saturating_sub(base) as f64 / args.idle as f64;
        results.rss_base_mib = Some(first.before as f64 / 1024.0);
        results.idle_kib_per_stream = Some(per_stream(first.open, first.before));
        results.idle_kept_kib_per_stream = Some(per_stream(first.closed, first.before));
        results.idle_again_kib_per_stream = Some(per_stream(again.open, again.before));
        print!(
            " idle: {:.2} KiB/stream over {:.1} MiB ({:.2} kept after close, {:.2} on reopening);",
            per_stream(first.open, first.before),
            first.before as f64 / 1024.0,
            per_stream(first.closed, first.before),
            per_stream(again.open, again.before),
        );
        flush();
    }
    let recording = Profile::start(args, target, "saturation")?;
    saturation(
        target,
        args.seconds.min(5.0),
        ticks_per_second,
        &mut results,
    )?;
    Profile::finish(recording)?;
    print!(
        " saturation: {:.0} events/s{};",
        results.saturation_events_s.unwrap_or(0.0),
        results
            .saturation_cpu_s_per_m
            .map(|c| format!(", {c:.2} CPU-s per M events"))
            .unwrap_or_default()
    );
    flush();
    let recording = Profile::start(args, target, "fan-out")?;
    fan_out(
        target,
        backend,
        args,
        (false, false),
        epoch,
        ticks_per_second,
        &mut results,
    )?;
    Profile::finish(recording)?;
    // A broadcast burst: every stream gets an event at the same instant, five times a second.
    let bursts = Args {
        rate: 5.0,
        seconds: args.seconds.min(4.0),
        ..args.clone()
    };
    fan_out(
        target,
        backend,
        &bursts,
        (true, false),
        epoch,
        ticks_per_second,
        &mut results,
    )?;
    // The fan-out again with one client that reads nothing while its stream is flooded.
    let slow = Args {
        seconds: args.seconds.min(5.0),
        ..args.clone()
    };
    fan_out(
        target,
        backend,
        &slow,
        (false, true),
        epoch,
        ticks_per_second,
        &mut results,
    )?;
    println!(
        " fan-out: {}/{} events, p50 {:.0} us, p99 {:.0} us{}",
        results.delivered,
        results.sent,
        results.p50_us,
        results.p99_us,
        results
            .cpu_us_per_event
            .map(|c| format!(", {c:.1} us CPU/event"))
            .unwrap_or_default()
    );
    Ok(results)
}

/// `perf record` sampling one proxy during one workload (`--perf DIR`); dropping it stops
/// the sampling (a workload that failed leaves no perf behind).
pub(crate) struct Profile {
    child: std::process::Child,
    data: PathBuf,
}

impl Profile {
    /// Starts sampling `target` (zilla's plain chain and nginx only) when `--perf` is given.
    fn start(args: &Args, target: &Target, workload: &str) -> Result<Option<Profile>, String> {
        match (&args.perf, target.proxy) {
            (Some(dir), Some(proxy)) if matches!(target.name, "zilla" | "nginx") => {
                Profile::record(dir, &format!("{}-{workload}", target.name), proxy).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Samples `proxy` into `DIR/NAME.data` (perf's own messages into `DIR/NAME.log`) until
    /// [`Profile::finish`].
    pub(crate) fn record(dir: &Path, name: &str, proxy: Proxy) -> Result<Profile, String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let data = dir.join(format!("{name}.data"));
        let log = fs::File::create(data.with_extension("log"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let pids: Vec<String> = proxy.pids().iter().map(u32::to_string).collect();
        let child = std::process::Command::new("perf")
            .args(["record", "-q", "-F", "999", "-o"])
            .arg(&data)
            .args(["-p", &pids.join(",")])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run perf (apt-get install linux-perf): {e}"))?;
        // perf needs a moment to attach before the workload starts.
        thread::sleep(Duration::from_millis(300));
        Ok(Profile { child, data })
    }

    /// Stops sampling and writes the hottest symbols beside the data (`NAME.txt`); an error
    /// with perf's own words when it recorded nothing.
    pub(crate) fn finish(profile: Option<Profile>) -> Result<(), String> {
        let Some(p) = profile else {
            return Ok(());
        };
        let data = p.data.clone();
        drop(p);
        let report = std::process::Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--percent-limit",
                "0.5",
            ])
            .args(["--sort", "dso,symbol", "-i"])
            .arg(&data)
            .output()
            .map_err(|e| format!("perf report: {e}"))?;
        if !report.status.success() || report.stdout.is_empty() {
            let log = fs::read_to_string(data.with_extension("log")).unwrap_or_default();
            return Err(format!(
                "perf recorded nothing into {} ({}{}); perf_event_paranoid may forbid it: \
                 sysctl kernel.perf_event_paranoid=1",
                data.display(),
                log.trim(),
                String::from_utf8_lossy(&report.stderr).trim()
            ));
        }
        fs::write(data.with_extension("txt"), &report.stdout)
            .map_err(|e| format!("{}: {e}", data.display()))
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        // SIGINT: perf writes what it sampled and exits.
        crate::bench::signal(self.child.id(), "INT");
        let _ = self.child.wait();
    }
}

/// Proxy RSS in KiB around one round of idle streams.
#[derive(Debug, Clone, Copy)]
struct IdleRss {
    before: u64,
    open: u64,
    closed: u64,
}

/// Opens `count` idle streams and closes them again, reading the proxy's
/// RSS before, while they are open and after they closed.
fn idle_memory(
    port: u16,
    backend: &Backend,
    count: usize,
    proxy: Proxy,
) -> Result<IdleRss, String> {
    backend.idle().clear();
    let before = proxy.rss_kib()?;
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        clients.push(open_stream(port, IDLE_PATH)?);
        if i + 1 >= CONNECT_AHEAD {
            wait_for(
                "idle streams reached the backend",
                i + 1 - CONNECT_AHEAD,
                Duration::from_secs(10),
                || backend.idle().len(),
            )?;
        }
    }
    wait_for(
        "idle streams reached the backend",
        count,
        Duration::from_secs(10),
        || backend.idle().len(),
    )?;
    thread::sleep(Duration::from_millis(500));
    let after = proxy.rss_kib()?;
    drop(clients);
    thread::sleep(Duration::from_millis(200));
    backend.idle().clear();
    thread::sleep(Duration::from_millis(300));
    Ok(IdleRss {
        before,
        open: after,
        closed: proxy.rss_kib()?,
    })
}

fn fan_out(
    target: &Target,
    backend: &Backend,
    args: &Args,
    (burst, slow): (bool, bool),
    epoch: Instant,
    ticks_per_second: f64,
    results: &mut Results,
) -> Result<(), String> {
    let n = args.clients;
    let per_stream = events_per_stream(args);
    backend.events().clear();
    // A client that never reads, flooded by its backend stream with 16 KiB events for as long
    // as the proxy takes them: what it costs the others.
    let flood_stop = Arc::new(AtomicBool::new(false));
    let mut slow_client = None;
    let mut flood = None;
    if slow {
        let client = open_stream(target.port, "/events")?;
        wait_for(
            "slow stream reached the backend",
            1,
            Duration::from_secs(10),
            || backend.events().len(),
        )?;
        let mut upstream = backend.events().remove(0);
        upstream
            .set_write_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let stop = flood_stop.clone();
        flood = Some(thread::spawn(move || {
            let mut event = Vec::new();
            encode_event(&mut event, 16 * 1024, 0);
            while !stop.load(Ordering::Relaxed) {
                match upstream.write_all(&event) {
                    Ok(()) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => return,
                }
            }
        }));
        slow_client = Some(client);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut clients: Vec<JoinHandle<ClientReport>> = Vec::with_capacity(n);
    let outcome = (|| -> Result<(), String> {
        for i in 0..n {
            let stream = open_stream(target.port, "/events")?;
            stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
            let size = args.size;
            let handle = thread::Builder::new()
                .name(format!("sse-client-{i}"))
                .stack_size(CLIENT_STACK)
                .spawn(move || client(stream, epoch, size, per_stream, &received, &stop))
                .map_err(|e| format!("client thread {i}: {e}"))?;
            clients.push(handle);
            if i + 1 >= CONNECT_AHEAD {
                wait_for(
                    "streams reached the backend",
                    i + 1 - CONNECT_AHEAD,
                    Duration::from_secs(10),
                    || backend.events().len(),
                )?;
            }
        }
        wait_for(
            "streams reached the backend",
            n,
            Duration::from_secs(10),
            || backend.events().len(),
        )
    })();
    if let Err(e) = outcome {
        stop.store(true, Ordering::Relaxed);
        for handle in clients {
            let _ = handle.join();
        }
        backend.events().clear();
        return Err(e);
    }

    let streams = std::mem::take(&mut *backend.events());
    let mut shares: Vec<Vec<(usize, TcpStream)>> =
        (0..SENDERS.min(n)).map(|_| Vec::new()).collect();
    let senders = shares.len();
    for (i, stream) in streams.into_iter().enumerate() {
        shares[i % senders].push((i, stream));
    }
    let cpu_before = target.proxy.map(Proxy::times).transpose()?;
    let queue_before = target.proxy.map(Proxy::run_queue);
    let period_ns = (1e9 / args.rate) as u128;
    let start = Instant::now() + Duration::from_millis(20);
    let size = args.size;
    let sender_handles: Vec<_> = shares
        .into_iter()
        .map(|share| {
            thread::spawn(move || send(share, n, burst, per_stream, period_ns, start, size, epoch))
        })
        .collect();
    let mut sent = 0;
    let mut lag = Duration::ZERO;
    let mut upstreams = Vec::new();
    let mut send_errors = Vec::new();
    for handle in sender_handles {
        match handle.join() {
            Ok(report) => {
                sent += report.sent;
                lag = lag.max(report.max_lag);
                upstreams.extend(report.streams);
                send_errors.extend(report.errors);
            }
            Err(_) => send_errors.push("sender thread panicked".into()),
        }
    }
    let sending = start.elapsed();
    // Let the last events arrive.
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::Relaxed) < sent && Instant::now() < drain_deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let window = start.elapsed();
    let cpu_after = target.proxy.map(Proxy::times).transpose()?;
    let queue_after = target.proxy.map(Proxy::run_queue);
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::with_capacity(sent as usize);
    let mut firsts = Vec::with_capacity(n);
    let mut delivered = 0;
    let mut malformed = 0;
    let mut client_errors = Vec::new();
    for handle in clients {
        match handle.join() {
            Ok(report) => {
                delivered += report.events;
                malformed += report.malformed;
                latencies.extend(report.latencies_ns);
                firsts.extend(report.first_ns);
                client_errors.extend(report.error);
            }
            Err(_) => client_errors.push("client thread panicked".into()),
        }
    }
    drop(upstreams);
    flood_stop.store(true, Ordering::Relaxed);
    if let Some(flood) = flood {
        let _ = flood.join();
    }
    drop(slow_client);
    thread::sleep(Duration::from_millis(300));

    if slow {
        latencies.extend_from_slice(&firsts);
        latencies.sort_unstable();
        results.slow_p99_us = Some(percentile_us(&latencies, 0.99));
        if delivered < sent {
            results.problems.push(format!(
                "with a slow reader: {} of {sent} events not delivered",
                sent - delivered
            ));
        }
        summarize_errors(&mut results.problems, "slow-reader client", client_errors);
        summarize_errors(&mut results.problems, "slow-reader backend", send_errors);
        return Ok(());
    }
    if burst {
        latencies.extend_from_slice(&firsts);
        latencies.sort_unstable();
        results.burst_p50_us = Some(percentile_us(&latencies, 0.50));
        results.burst_p99_us = Some(percentile_us(&latencies, 0.99));
        if delivered < sent {
            results.problems.push(format!(
                "burst: {} of {sent} events not delivered",
                sent - delivered
            ));
        }
        summarize_errors(&mut results.problems, "burst client", client_errors);
        summarize_errors(&mut results.problems, "burst backend", send_errors);
        return Ok(());
    }
    latencies.sort_unstable();
    firsts.sort_unstable();
    results.p99_later_us = percentile_us(&latencies, 0.99);
    results.first_p50_us = percentile_us(&firsts, 0.50);
    results.first_max_us = percentile_us(&firsts, 1.0);
    latencies.extend_from_slice(&firsts);
    latencies.sort_unstable();
    results.sent = sent;
    results.delivered = delivered;
    results.p50_us = percentile_us(&latencies, 0.50);
    results.p99_us = percentile_us(&latencies, 0.99);
    results.p999_us = percentile_us(&latencies, 0.999);
    results.max_us = percentile_us(&latencies, 1.0);
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        let (cpu, kernel) = b.us_per_event_since(a, ticks_per_second, delivered);
        results.cpu_us_per_event = Some(cpu);
        results.kernel_us_per_event = Some(kernel);
    }
    if let (Some(a), Some(b)) = (queue_before, queue_after) {
        results.run_queue_wait_us = b.wait_us_since(a);
    }
    let planned = Duration::from_secs_f64(args.seconds);
    if sending > planned + planned / 10 + Duration::from_millis(100) {
        results.problems.push(format!(
            "the backend fell behind: sending took {:.2}s for {:.2}s of events (max lag {:.1} ms); \
             the machine is overloaded",
            sending.as_secs_f64(),
            planned.as_secs_f64(),
            lag.as_secs_f64() * 1e3
        ));
    }
    if delivered < sent {
        results.problems.push(format!(
            "{} of {sent} events not delivered {:.1}s after the last was sent",
            sent - delivered,
            (window - sending).as_secs_f64()
        ));
    }
    if delivered > sent {
        results
            .problems
            .push(format!("{delivered} events delivered but only {sent} sent"));
    }
    if malformed > 0 {
        results.problems.push(format!(
            "{malformed} events arrived altered (bad size or stamp)"
        ));
    }
    summarize_errors(&mut results.problems, "client", client_errors);
    summarize_errors(&mut results.problems, "backend", send_errors);
    Ok(())
}

/// The `p` quantile of sorted nanoseconds, in microseconds.
pub(crate) fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    let i = ((sorted_ns.len() as f64 * p) as usize).min(sorted_ns.len().saturating_sub(1));
    sorted_ns.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

/// Adds the first error and how many there were in all.
fn summarize_errors(problems: &mut Vec<String>, side: &str, errors: Vec<String>) {
    if let Some(first) = errors.first() {
        let more = match errors.len() {
            1 => String::new(),
            n => format!(" (and {} more {side} errors)", n - 1),
        };
        problems.push(format!("{side}: {first}{more}"));
    }
}

#[derive(Debug)]
pub(crate) struct SendReport {
    pub(crate) sent: u64,
    pub(crate) max_lag: Duration,
    /// Kept open until the clients are done.
    pub(crate) streams: Vec<TcpStream>,
    pub(crate) errors: Vec<String>,
}

/// Writes `per_stream` events to each stream in `share`; stream `i` of `n`
/// gets its events at `start + k * period + i * period / n` (or, with `burst`, every stream at
/// `start + k * period`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn send(
    share: Vec<(usize, TcpStream)>,
    n: usize,
    burst: bool,
    per_stream: u64,
    period_ns: u128,
    start: Instant,
    size: usize,
    epoch: Instant,
) -> SendReport {
    let mut streams: Vec<(usize, Option<TcpStream>)> =
        share.into_iter().map(|(i, s)| (i, Some(s))).collect();
    let mut report = SendReport {
        sent: 0,
        max_lag: Duration::ZERO,
        streams: Vec::new(),
        errors: Vec::new(),
    };
    let mut chunk = Vec::with_capacity(size + 16);
    for k in 0..per_stream {
        for (i, slot) in &mut streams {
            let Some(stream) = slot else { continue };
            // Spread over the period, or (a broadcast burst) all at its start.
            let offset = if burst {
                u128::from(k) * period_ns
            } else {
                (u128::from(k) * n as u128 + *i as u128) * period_ns / n as u128
            };
            let due = start + Duration::from_nanos(offset as u64);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            } else {
                report.max_lag = report.max_lag.max(now - due);
            }
            chunk.clear();
            encode_event(&mut chunk, size, epoch.elapsed().as_nanos() as u64);
            match stream.write_all(&chunk) {
                Ok(()) => report.sent += 1,
                Err(e) => {
                    report.errors.push(format!("write to stream {i}: {e}"));
                    *slot = None;
                }
            }
        }
    }
    report.streams = streams.into_iter().filter_map(|(_, s)| s).collect();
    report
}

fn table(results: &[(&str, Results)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    type Metric = (&'static str, fn(&Results) -> Option<f64>, usize, bool);
    let metrics: [Metric; 25] = [
        (
            "saturation: events/s (100 streams)",
            |r| r.saturation_events_s,
            0,
            true,
        ),
        (
            "  proxy CPU-s per M events",
            |r| r.saturation_cpu_s_per_m,
            2,
            true,
        ),
        (
            "    of which kernel",
            |r| r.saturation_kernel_s_per_m,
            2,
            true,
        ),
        ("events sent", |r| Some(r.sent as f64), 0, false),
        ("events delivered", |r| Some(r.delivered as f64), 0, false),
        (
            "delivered (% of sent)",
            |r| Some(100.0 * r.delivered as f64 / r.sent.max(1) as f64),
            2,
            false,
        ),
        ("latency p50 (us)", |r| Some(r.p50_us), 0, true),
        ("latency p99 (us)", |r| Some(r.p99_us), 0, true),
        ("latency p99.9 (us)", |r| Some(r.p999_us), 0, true),
        ("latency max (us)", |r| Some(r.max_us), 0, true),
        (
            "  p99 without 1st events (us)",
            |r| Some(r.p99_later_us),
            0,
            true,
        ),
        (
            "  1st event of stream p50 (us)",
            |r| Some(r.first_p50_us),
            0,
            true,
        ),
        (
            "  1st event of stream max (us)",
            |r| Some(r.first_max_us),
            0,
            true,
        ),
        ("proxy CPU per event (us)", |r| r.cpu_us_per_event, 2, true),
        ("  of which kernel (us)", |r| r.kernel_us_per_event, 2, true),
        (
            "proxy wait for a core per wake-up (us)",
            |r| r.run_queue_wait_us,
            1,
            true,
        ),
        ("burst: latency p50 (us)", |r| r.burst_p50_us, 0, true),
        ("burst: latency p99 (us)", |r| r.burst_p99_us, 0, true),
        ("slow reader flooded: p99 (us)", |r| r.slow_p99_us, 0, true),
        (
            "  / fan-out p99",
            |r| r.slow_p99_us.map(|s| s / r.p99_us.max(1.0)),
            2,
            false,
        ),
        ("proxy RSS, no streams (MiB)", |r| r.rss_base_mib, 1, true),
        ("start to ready (ms)", |r| r.ready_ms, 1, true),
        (
            "idle memory per stream (KiB)",
            |r| r.idle_kib_per_stream,
            2,
            true,
        ),
        (
            "  still held after close (KiB)",
            |r| r.idle_kept_kib_per_stream,
            2,
            true,
        ),
        (
            "  on reopening (KiB)",
            |r| r.idle_again_kib_per_stream,
            2,
            true,
        ),
    ];
    let get = |name: &str| results.iter().find(|(n, _)| *n == name).map(|(_, r)| r);
    let mut ratios: Vec<(String, &Results, &Results)> = Vec::new();
    if let Some(direct) = get("direct") {
        for (name, r) in results.iter().filter(|(n, _)| *n != "direct") {
            ratios.push((format!("{name}/direct"), r, direct));
        }
    }
    if let (Some(z), Some(n)) = (get("zilla"), get("nginx")) {
        ratios.push(("zilla/nginx".into(), z, n));
    }
    if let (Some(m), Some(z)) = (get("zilla+m"), get("zilla")) {
        ratios.push(("zilla+m/zilla".into(), m, z));
    }
    let mut header = format!("\n{:<36}", "metric");
    for (name, _) in results {
        header.push_str(&format!("{name:>12}"));
    }
    for (label, _, _) in &ratios {
        header.push_str(&format!("{label:>14}"));
    }
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{}", "-".repeat(header.trim_start().len()));
    for (label, value, decimals, with_ratio) in metrics {
        let mut row = format!("{label:<36}");
        for (_, r) in results {
            let cell = value(r)
                .map(|v| format!("{v:.decimals$}"))
                .unwrap_or_else(|| "-".into());
            row.push_str(&format!("{cell:>12}"));
        }
        for (_, a, b) in &ratios {
            let ratio = match (with_ratio, value(a), value(b)) {
                (true, Some(x), Some(y)) => Some(x / y).filter(|r| r.is_finite()),
                _ => None,
            };
            let cell = ratio
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "-".into());
            row.push_str(&format!("{cell:>14}"));
        }
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(
        out,
        "(latency: backend write to client read. CPU and memory: the proxy process(es) from \
         /proc)"
    );
    out
}

/// Writes the table of this run, with its date, machine and workload, to
/// `docs/bench/sse.md` (the README's performance section points there).
fn write_results(args: &Args, table: &str) {
    let date = crate::bench::utc_now();
    let text = format!(
        "# `cargo xtask bench sse`: the latest run\n\n{} ({}). Workloads: saturation ({FLOOD_CLIENTS} \
         streams, the backend writes 256-byte events as fast as each stream takes them); fan-out \
         ({} streams x {} events/s x {} B for {} s); {} idle streams. Direct, zilla, zilla+m (every \
         metric recorded) and nginx measured one after the other in this one run.\n\n```\n{}\n```\n",
        date.trim(),
        machine_note().trim_start_matches("machine: "),
        args.clients,
        args.rate,
        args.size,
        args.seconds,
        args.idle,
        table.trim(),
    );
    write_doc("sse.md", &text);
}

pub(crate) fn machine_note() -> String {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!(
        "machine: nproc {cpus}, {model}, load average {load} (client, backend and proxy share it)"
    )
}

/// The bench's zilla.yaml; with `metrics`, every metric is recorded on every binding and served
/// on that Prometheus port.
fn zilla_config(port: u16, backend: u16, metrics: Option<u16>) -> String {
    let telemetry = metrics.map_or_else(String::new, |prometheus| {
        let names: Vec<String> = [
            "stream.active.received", "stream.active.sent", "stream.opens.received",
            "stream.opens.sent", "stream.closes.received", "stream.closes.sent",
            "stream.errors.received", "stream.errors.sent", "stream.data.received",
            "stream.data.sent", "http.active.requests", "http.duration", "http.request.size",
            "http.response.size", "sse.events.received", "sse.events.sent",
            "sse.events.dropped", "sse.streams.active", "sse.event.latency",
        ]
        .iter()
        .map(|n| format!("    - {n}\n"))
        .collect();
        format!(
            "telemetry:\n  metrics:\n{}  exporters:\n    prometheus0:\n      type: prometheus\n      options:\n        endpoints: [ {{ scheme: http, port: {prometheus} }} ]\n",
            names.concat()
        )
    });
    let config = zilla_bindings(port, backend);
    if metrics.is_none() {
        return config;
    }
    // Every binding selects every metric.
    let selected = config.replace(
        "    kind: ",
        "    telemetry:\n      metrics: [ \".*\" ]\n    kind: ",
    );
    format!("{telemetry}{selected}")
}

pub(crate) fn zilla_bindings(port: u16, backend: u16) -> String {
    format!(
        "\
name: bench
bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options:
      host: 127.0.0.1
      port: {port}
    exit: north_http_server
  north_http_server:
    type: http
    kind: server
    options:
      versions:
        - h2
        - http/1.1
      access-control:
        policy: cross-origin
    routes:
      - when:
          - headers:
              :path: /events*
        exit: north_sse_server
  north_sse_server:
    type: sse
    kind: server
    routes:
      - when:
          - path: /events*
        exit: south_sse_client
  south_sse_client:
    type: sse
    kind: client
    exit: south_http_client
  south_http_client:
    type: http
    kind: client
    options:
      versions:
        - http/1.1
    exit: south_tcp_client
  south_tcp_client:
    type: tcp
    kind: client
    options:
      host: 127.0.0.1
      port: {backend}
"
    )
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args, String> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_options() {
        let a = args(&[]).unwrap();
        assert_eq!(
            (a.clients, a.rate, a.size, a.seconds, a.idle),
            (1000, 20.0, 256, 10.0, 1000)
        );
        let a = args(&[
            "--clients",
            "100",
            "--seconds=3",
            "--idle",
            "200",
            "--rate",
            "5",
        ])
        .unwrap();
        assert_eq!((a.clients, a.seconds, a.idle, a.rate), (100, 3.0, 200, 5.0));
        assert_eq!(a.perf, None);
        let a = args(&["--perf", "/tmp/profiles"]).unwrap();
        assert_eq!(a.perf, Some(PathBuf::from("/tmp/profiles")));
        assert!(args(&["--perf"]).is_err());
        assert!(args(&["--clients"]).is_err());
        assert!(args(&["--clients", "0"]).is_err());
        assert!(args(&["--size", "10"]).is_err());
        assert!(args(&["--rate", "0.01", "--seconds", "1"]).is_err());
        assert!(args(&["--fast", "1"]).is_err());
    }

    #[test]
    fn events_have_the_requested_size_and_decode() {
        let mut wire = RESPONSE_HEAD.to_vec();
        encode_event(&mut wire, 256, 123_456_789);
        encode_event(&mut wire, 256, 7);
        assert_eq!(wire.len(), RESPONSE_HEAD.len() + 2 * (256 + 7));
        wire.extend_from_slice(b"3\r\n:\n\n\r\n0\r\n\r\n");
        // Byte by byte, so every split point is exercised.
        let mut decoder = SseDecoder::default();
        let mut stamps = Vec::new();
        for b in &wire {
            decoder
                .push(std::slice::from_ref(b), |event| {
                    if let Some(data) = event_data(event) {
                        assert_eq!(data.len(), 256 - EVENT_OVERHEAD);
                        let stamp = data.split(|b| *b == b' ').next().unwrap();
                        stamps.push(String::from_utf8(stamp.to_vec()).unwrap());
                    }
                })
                .unwrap();
        }
        assert_eq!(stamps, ["123456789", "7"]);
        assert!(decoder.ended);
    }

    #[test]
    fn decoder_reads_rechunked_and_identity_bodies() {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                     4;x=y\r\ndata\r\n9\r\n: 1\n\ndata\r\n5\r\n: 2\n\n\r\n";
        decoder
            .push(wire, |e| {
                events.push(String::from_utf8(e.to_vec()).unwrap())
            })
            .unwrap();
        assert_eq!(events, ["data: 1", "data: 2"]);

        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        decoder
            .push(b"HTTP/1.1 200 OK\r\n\r\ndata:a\n\nda", |e| {
                events.push(e.to_vec())
            })
            .unwrap();
        assert_eq!(events, [b"data:a".to_vec()]);
        assert!(SseDecoder::default()
            .push(b"HTTP/1.1 404 Not Found\r\n\r\n", |_| {})
            .is_err());
    }

    #[test]
    fn reads_proc() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(cpu_ticks(me).is_ok());
        assert!(open_file_limit().is_some());
        assert!(children_of(me).is_empty() || !children_of(me).contains(&me));
        // Some CPU, the kernel's part of it; and this process's threads were scheduled.
        let spin = |until: Instant| while Instant::now() < until {};
        let before = Proxy::Single(me).times().unwrap();
        let queued = Proxy::Single(me).run_queue();
        spin(Instant::now() + Duration::from_millis(50));
        let after = Proxy::Single(me).times().unwrap();
        assert!(after.total > before.total, "{before:?} {after:?}");
        assert!(after.kernel <= after.total);
        assert!(Proxy::Single(me).run_queue().slices >= queued.slices);
        assert!(queued.slices > 0, "schedstat read: {queued:?}");
    }

    #[test]
    fn per_event_figures() {
        let before = CpuTimes {
            total: 100,
            kernel: 40,
        };
        let after = CpuTimes {
            total: 300,
            kernel: 90,
        };
        // 200 ticks at 100 a second over 1,000 events: 2 ms, 2,000 us an event; kernel 500.
        assert_eq!(
            after.us_per_event_since(before, 100.0, 1000),
            (2000.0, 500.0)
        );
        // No event: per one, not a division by zero.
        assert_eq!(after.us_per_event_since(before, 100.0, 0).0, 2e6);
        let q0 = RunQueue {
            wait_ns: 1_000,
            slices: 10,
        };
        let q1 = RunQueue {
            wait_ns: 51_000,
            slices: 20,
        };
        assert_eq!(q1.wait_us_since(q0), Some(5.0));
        assert_eq!(q0.wait_us_since(q0), None, "never woken: no mean");
    }

    /// A profile that recorded nothing says so, with perf's words, instead of an empty file.
    #[test]
    fn a_profile_of_nothing_is_an_error() {
        let dir = crate::bench::TempDir::new().unwrap();
        // No such process (pids are below 2^22).
        let failed = Profile::record(dir.path(), "nothing", Proxy::Single(u32::MAX >> 1))
            .and_then(|p| Profile::finish(Some(p)));
        let e = failed.unwrap_err();
        assert!(e.contains("perf"), "{e}");
        assert!(!dir.path().join("nothing.txt").exists());
    }
}

#[cfg(test)]
pub(crate) mod config_tests {
    /// `zilla validate` accepts `text`, when the binary is built (it is by `cargo xtask test`).
    pub(crate) fn assert_zilla_accepts(text: &str) {
        let bin = crate::workspace_root().join("target/debug/zilla");
        if !bin.exists() {
            return;
        }
        let dir = crate::bench::TempDir::new().unwrap();
        std::fs::write(dir.path().join("zilla.yaml"), text).unwrap();
        let out = std::process::Command::new(bin)
            .args(["validate", "-c"])
            .arg(dir.path().join("zilla.yaml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The metered config is one zilla accepts.
    #[test]
    fn metered_config_is_valid() {
        let text = super::zilla_config(7114, 8001, Some(7190));
        assert!(text.contains("telemetry:\n  metrics:\n    - stream.active.received"));
        assert_eq!(text.matches("metrics: [ \".*\" ]").count(), 6, "{text}");
        assert_zilla_accepts(&text);
    }
}
