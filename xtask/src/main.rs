//! Project task runner, invoked as `cargo xtask COMMAND` (see
//! `.cargo/config.toml`).
//!
//! - `cargo xtask test [--specs-only] [FILTER]`: build zilla, run the cargo
//!   tests and the spec scenarios under `specs/`.
//! - `cargo xtask demo`: run the SSE proxy example with its backend.
//! - `cargo xtask fuzz [--smoke | --seconds N | --runs N] [TARGET...]`: the fuzz targets.
//! - `cargo xtask soak [--minutes N] ...`: a long run under steady load with churn.
//! - `cargo xtask bench tcp [--seconds N] [--bytes N] [--connections N]`:
//!   compare tcp proxying through zilla with a direct connection (and nginx,
//!   when installed).
//! - `cargo xtask bench sse [--clients N] [--rate R] [--size S] [--seconds D]
//!   [--idle M] [--perf DIR]`: SSE fan-out latency, CPU per event and idle memory per
//!   stream, direct vs through zilla's SSE proxy (and nginx, when installed).
//! - `cargo xtask bench broadcast [--clients N,N] [--rate R] [--seconds D]`: one feed to many
//!   clients and a reconnect storm, zilla with shared feeds vs without vs nginx.
//! - `cargo xtask bench h2 [--clients N] [--rate R] [--seconds D] [--perf DIR]`: the SSE workloads with
//!   HTTP/2 (h2c and TLS) towards the clients, zilla vs nginx.
//! - `cargo xtask bench validate [--clients N] [--seconds D] [--repeats N]`: SSE events per second and per
//!   CPU-second through zilla with and without JSON Schema validation, alternating runs.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;
mod bench_broadcast;
mod bench_h2;
mod bench_sse;
mod bench_validate;
mod certs;
mod demo;
mod demo_jwt;
mod fuzz;
mod soak;
mod test;

const HELP: &str = "\
usage: cargo xtask COMMAND [ARGS]

commands:
  test [--specs-only] [FILTER]
      1. cargo build -p zilla
      2. cargo test --workspace            (skipped with --specs-only)
      3. run every scenario under specs/ whose path contains FILTER
         against target/debug/zilla (CARGO_TARGET_DIR is honoured)
      Ends with one line `N passed, M failed`; exits non-zero on failure.

  (every bench builds zilla in release mode; ZILLA_BENCH_BINARY=PATH measures
  that binary instead, to compare two builds side by side with the same peer)

  bench tcp [--seconds N] [--bytes N] [--connections N]
      Builds zilla in release mode and measures, directly against an
      in-process backend, through zilla (tcp server -> tcp client) and
      through nginx's stream proxy when nginx is installed:
        bulk throughput (--bytes, default 1G; suffixes K, M, G),
        64-byte round trips on one connection (--seconds each, default 5),
        round trips on --connections concurrent connections (default 50).

  bench sse [--clients N] [--rate R] [--size S] [--seconds D] [--idle M] [--perf DIR]
      Builds zilla in release mode and measures, directly against an
      in-process SSE backend, through zilla (the examples/sse.proxy chain)
      and through nginx (proxy_pass, buffering off) when installed:
        fan-out latency: --clients streams (default 1000), each getting
          --rate events/s (default 20) of --size bytes (default 256) for
          --seconds (default 10); p50/p99/p99.9 backend-write to client-read
          latency and events delivered vs sent,
        proxy CPU time per event (utime+stime from /proc) and its kernel part,
        how long the proxy's threads waited for a core per wake-up,
        proxy RSS per idle stream with --idle streams open (default 1000).
      --perf DIR: a profiling run; `perf record` samples zilla and nginx
        during saturation and fan-out into DIR (NAME.data, NAME.txt with the
        hottest symbols, NAME.log with perf's own messages; a profile that
        recorded nothing fails the run with them); its tables are not written
        to docs/bench.

  bench broadcast [--clients N[,N...]] [--rate R] [--seconds D]
      Builds zilla in release mode; one feed served by an in-process backend
      (--rate events/s, default 10, for --seconds, default 10) to --clients
      clients (default 1000,5000) through zilla with shared feeds
      (options.share), zilla without and nginx: upstream connections, events
      delivered, proxy CPU-s per million events, p99 latency, RSS; then a
      reconnect storm (1,000 clients reconnect at once with their last id):
      events missed or duplicated, requests that reached the backend.
      Also run at the end of bench sse. Writes docs/bench/broadcast.md.

  bench h2 [--clients N] [--rate R] [--seconds D] [--perf DIR]
      Builds zilla in release mode; saturation (100 streams on one
      connection) and fan-out (--clients streams, default 1000, 100 a
      connection, --rate events/s, default 20, for --seconds, default 5) with
      HTTP/2 towards the clients, cleartext and over TLS, through zilla and
      nginx (listen http2 / ssl http2). Also run by bench sse. Writes
      docs/bench/h2.md. --perf DIR: profiles each proxy's fan-out instead.

  bench validate [--clients N] [--seconds D] [--repeats N]
      Builds zilla in release mode and runs it (one worker) in turn with the
      SSE proxy chain unvalidated and with every event checked against a
      10-field JSON Schema, alternating --repeats times (default 3). An
      in-process backend writes events as fast as --clients streams (default
      20) take them for --seconds (default 5); prints the medians of events/s,
      proxy CPU and events per CPU-second for both, and the ratios (target:
      validation keeps at least 0.70x of the events/s).

  fuzz [--smoke | --seconds N | --runs N] [TARGET...]
      Runs the cargo fuzz targets under fuzz/ (sse_parser, http1_request,
      http1_response, config, jwt, json_tape) from their seed corpora, 30 s each by
      default (--smoke), installing cargo-fuzz when missing; prints the
      executions of each; a crash, timeout or excess allocation fails, its
      input written under fuzz/artifacts/.

  soak [--minutes N] [--clients N] [--rate R] [--churn C]
      Builds zilla in release mode and runs the SSE proxy chain for --minutes
      (default 30): --clients streams (default 1000) get --rate numbered
      events/s (default 10) from an in-process backend, --churn of them
      (default 10) hang up and reconnect every second. Prints RSS, open fds,
      events and gaps every minute; fails if a client that kept up missed an
      event or RSS grew 5% or more after a warm-up (the first sixth of the
      run, at least a minute; the growth from the first minute is printed
      too). --minutes is at least 2.

  demo [jwt]
      Builds (release) and runs the bundled SSE backend (zilla-sse-server on
      8001, publishing port 7001) and `zilla start` on
      examples/sse.proxy/zilla.yaml (port 7114), until Ctrl-C.
      `demo jwt` runs examples/sse.proxy.jwt instead (HTTPS on 7143 and its
      page), with a keystore and a JWT key pair made for the run, and prints
      the page's URL, tokens to try and how to publish an event.

  help
      Show this message.
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some("test") => test::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some(other) => {
            eprintln!("unknown command `{other}`\n");
            eprint!("{HELP}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR` (relative to the
/// workspace root when relative) or `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// A `cargo` command run from the workspace root.
fn cargo(root: &Path) -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root);
    command
}
