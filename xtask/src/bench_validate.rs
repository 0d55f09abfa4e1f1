//! `cargo xtask bench validate`: what schema validation costs on the SSE proxy.
//!
//! One run, two zilla configurations started in turn, alternating over `--repeats` runs (a
//! noisy neighbour weighs on both alike), medians reported: the `examples/sse.proxy` chain as
//! is, and the same chain with the sse server validating every event against a typical JSON
//! Schema (10 fields: types, `required`, one `pattern`) from an inline catalog.
//! An in-process backend writes 10-field JSON events as fast as each stream takes them to
//! `--clients` streams for `--seconds`; the clients count the events they receive. For each
//! proxy it reports events per second delivered, the proxy's CPU seconds, and events per
//! CPU-second ("per core"); then validated / unvalidated, both ways. The target: validation
//! keeps at least 70% of the unvalidated events per second.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use zilla_spec::Zilla;

use crate::bench::{count, flag_values, free_port, TempDir};
use crate::bench_sse::{clock_ticks_per_second, cpu_ticks};

const SCHEMA: &str = r#"{"type":"object","properties":{"id":{"type":"integer","minimum":0},"name":{"type":"string"},"tag":{"type":"string","pattern":"^[a-z]+-[0-9]+$"},"price":{"type":"number"},"qty":{"type":"integer"},"active":{"type":"boolean"},"region":{"type":"string"},"ts":{"type":"integer"},"source":{"type":"string"},"note":{"type":"string"}},"required":["id","name","tag","price","qty","active","region","ts","source","note"]}"#;

struct Args {
    clients: usize,
    seconds: u64,
    repeats: usize,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        clients: 20,
        seconds: 5,
        repeats: 3,
    };
    for (flag, value) in flag_values(args)? {
        match flag.as_str() {
            "--clients" => a.clients = count(&flag, &value, 1, 10_000)?,
            "--seconds" => a.seconds = count(&flag, &value, 1, 3_600)? as u64,
            "--repeats" => a.repeats = count(&flag, &value, 1, 100)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// A chunk of 64 events, each a 10-field JSON object that satisfies the schema.
fn event_chunk() -> Vec<u8> {
    let mut events = Vec::new();
    for i in 0..64u32 {
        let data = format!(
            r#"{{"id":{i},"name":"event-{i}","tag":"abc-{i}","price":12.5,"qty":3,"active":true,"region":"eu-west-1","ts":1700000000,"source":"bench","note":"hello, world"}}"#
        );
        events.extend_from_slice(format!("id:{i}\ndata:{data}\n\n").as_bytes());
    }
    let mut chunk = format!("{:x}\r\n", events.len()).into_bytes();
    chunk.extend_from_slice(&events);
    chunk.extend_from_slice(b"\r\n");
    chunk
}

/// Serves every request with an endless event stream until `stop`.
fn backend(stop: Arc<AtomicBool>) -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("backend: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let chunk = Arc::new(event_chunk());
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (stop, chunk) = (stop.clone(), chunk.clone());
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
                while !stop.load(Ordering::Relaxed) {
                    if conn.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// Opens `clients` streams through `port`, counts events for `seconds`, and returns
/// (events received, proxy CPU seconds).
fn measure(port: u16, pid: u32, args: &Args) -> Result<(u64, f64), String> {
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..args.clients {
        let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        c.write_all(
            b"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
        )
        .map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(Duration::from_millis(200))).ok();
        let (count, done) = (count.clone(), done.clone());
        readers.push(thread::spawn(move || {
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
        }));
    }
    // Warm up, then measure a window.
    thread::sleep(Duration::from_millis(500));
    let ticks = clock_ticks_per_second();
    let (c0, t0) = (count.load(Ordering::Relaxed), cpu_ticks(pid)?);
    let started = Instant::now();
    thread::sleep(Duration::from_secs(args.seconds));
    let (c1, t1) = (count.load(Ordering::Relaxed), cpu_ticks(pid)?);
    let elapsed = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    let events = c1 - c0;
    let cpu = (t1 - t0) as f64 / ticks;
    Ok(((events as f64 / elapsed) as u64, cpu / elapsed))
}

/// `examples/sse.proxy`'s chain (the one every bench runs), with the sse server validating
/// every event against [`SCHEMA`] from an inline catalog when `validate`.
fn config(port: u16, backend: u16, validate: bool) -> String {
    let chain = crate::bench_sse::zilla_bindings(port, backend);
    if !validate {
        return chain;
    }
    const SSE_SERVER: &str = "  north_sse_server:\n    type: sse\n    kind: server\n";
    assert!(
        chain.contains(SSE_SERVER) && chain.contains("\nbindings:\n"),
        "the bench chain has a bindings section with an sse server"
    );
    let requests = "    options:\n      requests:\n        - path: ^/events\n          content:\n            model: json\n            catalog:\n              catalog0:\n                - subject: event\n";
    let catalogs = format!(
        "catalogs:\n  catalog0:\n    type: inline\n    options:\n      subjects:\n        event:\n          schema: '{SCHEMA}'\nbindings:\n"
    );
    chain
        .replacen(SSE_SERVER, &format!("{SSE_SERVER}{requests}"), 1)
        .replacen("\nbindings:\n", &format!("\n{catalogs}"), 1)
}

/// One proxy's run: events/s delivered and the proxy's CPU (cores).
fn run_one(
    bin: &std::path::Path,
    backend: u16,
    validate: bool,
    args: &Args,
) -> Result<(u64, f64), String> {
    let work = TempDir::new()?;
    let port = free_port()?;
    let path = work.path().join("zilla.yaml");
    fs::write(&path, config(port, backend, validate)).map_err(|e| e.to_string())?;
    // One worker: the figures are per core.
    fs::write(work.path().join("zilla.args"), "-w\n1\n").map_err(|e| e.to_string())?;
    let mut zilla = Zilla::start(bin, &path, &[], Some(work.path()))?;
    zilla.wait_listening(&[port], Duration::from_secs(10))?;
    let r = measure(port, zilla.pid(), args);
    let stopped = zilla.stop(Duration::from_secs(3));
    r.map_err(|e| format!("{e}\n{}", stopped.stderr))
}

/// The median (the mean of the middle two for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

fn bench(args: &Args) -> Result<(), String> {
    let bin = crate::bench::release_zilla()?;
    let stop = Arc::new(AtomicBool::new(false));
    let backend = backend(stop.clone())?;
    let names = ["unvalidated", "validated (json)"];
    // (events/s, cores) per proxy per repeat; the two alternate, so a noisy neighbour on a
    // shared machine weighs on both alike.
    let mut runs: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for repeat in 1..=args.repeats {
        for (i, name) in names.iter().enumerate() {
            println!(
                "==> {name} ({repeat}/{}): {} clients for {}s, events as fast as they are taken",
                args.repeats, args.clients, args.seconds
            );
            let (events, cpu) = run_one(&bin, backend, i == 1, args)?;
            runs[i].push((events as f64, cpu));
        }
    }
    stop.store(true, Ordering::Relaxed);
    println!();
    println!(
        "| proxy (1 worker), median of {} | events/s delivered | proxy CPU (cores) | events per CPU-second |",
        args.repeats
    );
    println!("|---|---|---|---|");
    let mut medians = Vec::new();
    for (name, runs) in names.iter().zip(&runs) {
        let events = median(runs.iter().map(|r| r.0).collect());
        let cpu = median(runs.iter().map(|r| r.1).collect());
        let per_core = median(runs.iter().map(|r| r.0 / r.1.max(1e-9)).collect());
        println!("| {name} | {events:.0} | {cpu:.2} | {per_core:.0} |");
        medians.push((events, per_core));
    }
    println!();
    println!(
        "validated / unvalidated: {:.2}x events/s, {:.2}x events per CPU-second (target: at least 0.70x events/s)",
        medians[1].0 / medians[0].0.max(1.0),
        medians[1].1 / medians[0].1.max(1e-9)
    );
    Ok(())
}

pub(crate) fn run(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask bench validate: {e}\nusage: cargo xtask bench validate [--clients N] [--seconds D] [--repeats N]");
            return ExitCode::from(2);
        }
    };
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask bench validate: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// The validated chain is the bench chain with an inline catalog and the sse server's
    /// `requests`, and zilla accepts it; the unvalidated one is the bench chain as is.
    #[test]
    fn the_validated_config_adds_the_catalog_and_the_requests() {
        let plain = super::config(7114, 8001, false);
        assert_eq!(plain, crate::bench_sse::zilla_bindings(7114, 8001));
        let checked = super::config(7114, 8001, true);
        let catalog = checked
            .find("catalogs:\n  catalog0:\n    type: inline")
            .unwrap();
        assert!(
            catalog < checked.find("\nbindings:\n").unwrap(),
            "{checked}"
        );
        assert!(
            checked.contains(
                "    kind: server\n    options:\n      requests:\n        - path: ^/events"
            ),
            "{checked}"
        );
        crate::bench_sse::config_tests::assert_zilla_accepts(&checked);
    }
}
