//! `cargo xtask soak [--minutes N] [--clients N] [--rate R] [--churn C]`: the SSE proxy chain
//! (release build) under a steady load for a long time. An in-process backend writes a numbered
//! event to every stream `--rate` times a second; `--clients` clients read them, and every
//! second `--churn` of them hang up and connect again. Each client checks that the numbers it
//! reads follow each other (a gap is an event lost by a client that kept up). Every minute it
//! prints zilla's RSS, its open file descriptors, the events delivered and the gaps; at the
//! end, the RSS growth after the warm-up (the first sixth of the run, at least a minute: the
//! allocator and the connections' buffers reach their steady state), which must stay under 5%,
//! and the growth from the first minute. Not part of `cargo xtask test`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use zilla_spec::Zilla;

use crate::bench::{free_port, TempDir};

struct Args {
    minutes: u64,
    clients: usize,
    rate: u64,
    churn: usize,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        minutes: 30,
        clients: 1000,
        rate: 10,
        churn: 10,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("{a} needs a number"))?;
        match a.as_str() {
            // One sixth of the run warms up; at least one minute more is compared with it.
            "--minutes" if v < 2 => {
                return Err(
                    "--minutes must be at least 2 (a warm-up, then a minute to compare)".into(),
                )
            }
            "--minutes" => out.minutes = v,
            "--clients" => out.clients = v.max(1) as usize,
            "--rate" => out.rate = v.max(1),
            "--churn" => out.churn = v as usize,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(out)
}

/// The backend: every stream it accepted, written to by the publisher.
#[derive(Default)]
struct Streams(Mutex<Vec<TcpStream>>);

fn backend(listener: TcpListener, streams: Arc<Streams>) {
    for conn in listener.incoming().flatten() {
        let streams = streams.clone();
        thread::spawn(move || {
            let mut conn = conn;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => return,
                }
            }
            let ok = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .is_ok();
            if ok {
                let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                streams
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(conn);
            }
        });
    }
}

/// Writes event `seq` to every stream; streams that fail are forgotten.
fn publish(streams: &Streams, seq: u64) {
    let body = format!("id:{seq}\ndata:seq {seq}\n\n");
    let chunk = format!("{:x}\r\n{body}\r\n", body.len());
    let mut all = streams.0.lock().unwrap_or_else(|e| e.into_inner());
    all.retain_mut(|s| s.write_all(chunk.as_bytes()).is_ok());
}

struct Totals {
    events: AtomicU64,
    gaps: AtomicU64,
    reconnects: AtomicU64,
    stop: AtomicBool,
}

/// One client: reads events, checks their numbers follow each other, hangs up when told to.
fn client(port: u16, totals: Arc<Totals>, hangup: Arc<AtomicBool>) {
    while !totals.stop.load(Ordering::Relaxed) {
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
            thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = write!(
            c,
            "GET /events HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n"
        );
        let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
        let mut text = String::new();
        let mut buf = [0u8; 8192];
        let mut last: Option<u64> = None;
        loop {
            if totals.stop.load(Ordering::Relaxed) || hangup.swap(false, Ordering::Relaxed) {
                break;
            }
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(_) => break,
            }
            while let Some(at) = text.find("data:seq ") {
                let rest = &text[at + 9..];
                let Some(end) = rest.find('\n') else { break };
                if let Ok(seq) = rest[..end].parse::<u64>() {
                    if let Some(prev) = last {
                        if seq != prev + 1 {
                            totals
                                .gaps
                                .fetch_add(seq.saturating_sub(prev + 1), Ordering::Relaxed);
                        }
                    }
                    last = Some(seq);
                    totals.events.fetch_add(1, Ordering::Relaxed);
                }
                text.drain(..at + 9 + end);
            }
        }
        totals.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub(crate) fn run(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{e}\nusage: cargo xtask soak [--minutes N] [--clients N] [--rate R] [--churn C]"
            );
            return ExitCode::from(2);
        }
    };
    let zilla_bin = match crate::bench::release_zilla() {
        Ok(bin) => bin,
        Err(e) => {
            eprintln!("xtask soak: {e}");
            return ExitCode::from(1);
        }
    };
    let run = || -> Result<bool, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let backend_port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let streams = Arc::new(Streams::default());
        let s = streams.clone();
        thread::spawn(move || backend(listener, s));
        let work = TempDir::new()?;
        let port = free_port()?;
        let config = work.path().join("zilla.yaml");
        fs::write(
            &config,
            crate::bench_sse::zilla_bindings(port, backend_port),
        )
        .map_err(|e| e.to_string())?;
        let bin = &zilla_bin;
        let mut zilla = Zilla::start(bin, &config, &[], Some(work.path()))?;
        zilla.wait_listening(&[port], Duration::from_secs(10))?;
        let pid = zilla.pid();
        let totals = Arc::new(Totals {
            events: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let hangups: Vec<Arc<AtomicBool>> = (0..args.clients).map(|_| Arc::default()).collect();
        let clients: Vec<_> = hangups
            .iter()
            .map(|h| {
                let (t, h) = (totals.clone(), h.clone());
                thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(move || client(port, t, h))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        println!(
            "==> soak: {} clients, {} events/s each, {} hang up every second, {} minutes",
            args.clients, args.rate, args.churn, args.minutes
        );
        println!(
            "{:>6} {:>10} {:>6} {:>12} {:>8} {:>10}",
            "minute", "rss KiB", "fds", "events", "gaps", "reconnects"
        );
        let started = Instant::now();
        let interval = Duration::from_micros(1_000_000 / args.rate);
        let mut seq = 0u64;
        let mut next = Instant::now();
        let mut next_churn = Instant::now() + Duration::from_secs(1);
        let mut next_report = Instant::now() + Duration::from_secs(60);
        let mut rss_by_minute: Vec<u64> = Vec::new();
        let mut minute = 0;
        let mut pick = 0usize;
        while started.elapsed() < Duration::from_secs(args.minutes * 60) {
            seq += 1;
            publish(&streams, seq);
            next += interval;
            if Instant::now() >= next_churn {
                for _ in 0..args.churn {
                    hangups[pick % hangups.len()].store(true, Ordering::Relaxed);
                    pick = pick.wrapping_add(7919);
                }
                next_churn += Duration::from_secs(1);
            }
            if Instant::now() >= next_report {
                minute += 1;
                let rss = rss_kib(pid);
                rss_by_minute.push(rss);
                println!(
                    "{minute:>6} {rss:>10} {:>6} {:>12} {:>8} {:>10}",
                    fds(pid),
                    totals.events.load(Ordering::Relaxed),
                    totals.gaps.load(Ordering::Relaxed),
                    totals.reconnects.load(Ordering::Relaxed)
                );
                next_report += Duration::from_secs(60);
            }
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            }
        }
        totals.stop.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = c.join();
        }
        let rss = rss_kib(pid);
        let warmup = (args.minutes as usize / 6).max(1);
        let first = rss_by_minute.first().copied().unwrap_or(rss).max(1);
        let settled = rss_by_minute
            .get(warmup - 1)
            .copied()
            .unwrap_or(first)
            .max(1);
        let percent = |from: u64| 100.0 * (rss as f64 - from as f64) / from as f64;
        let growth = percent(settled);
        let gaps = totals.gaps.load(Ordering::Relaxed);
        println!(
            "==> RSS {settled} KiB after {warmup} minute(s) of warm-up, {rss} KiB at the end: {growth:+.1}% \
             ({first} KiB after the first minute: {:+.1}%); {gaps} events missed by clients that kept up",
            percent(first)
        );
        let _ = zilla.stop(Duration::from_secs(5));
        Ok(gaps == 0 && growth < 5.0)
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!(
                "soak FAILED: events were missed, or RSS grew by 5% or more after the warm-up"
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(1)
        }
    }
}
