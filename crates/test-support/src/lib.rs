//! Test support: run the real `zilla` binary on a config in a temporary directory, read what it
//! prints, signal it, and pick free ports on 127.0.0.1.

mod otlp;
mod registry;
mod sse;

use std::io::{BufRead, BufReader, Read};

pub use otlp::{ExportLogsServiceRequest, ExportMetricsServiceRequest, OtlpCollector};
pub use registry::{FakeRegistry, RegistryMode, RegistryRequest};
pub use sse::{read_head, rss_kib, SseBackend};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The bundled SSE backend, `zilla-sse-server`, built by `cargo build -p zilla-sse-backend`
/// (`cargo xtask test` builds it first). Fails with what to run if it is missing.
pub fn sse_server_bin() -> PathBuf {
    let bin = zilla_bin().with_file_name("zilla-sse-server");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p zilla-sse-backend` (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// The `zilla` binary built by `cargo build -p zilla` (`target/debug/zilla`, honouring
/// `CARGO_TARGET_DIR`), for tests outside the `zilla` package. Fails with what to run if it is
/// missing.
pub fn zilla_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    };
    let bin = target.join("debug").join("zilla");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p zilla` first",
        bin.display()
    );
    bin
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running (or finished) `zilla` process with its output collected line by line.
#[derive(Debug)]
pub struct Zilla {
    child: Child,
    dir: tempfile::TempDir,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    lines: mpsc::Receiver<String>,
}

/// How to start zilla.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Extra arguments after `start -c zilla.yaml`.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Files written next to `zilla.yaml` before zilla starts: (relative path, content).
    pub files: Vec<(String, Vec<u8>)>,
    /// A command zilla runs under, e.g. `["prlimit", "--nofile=256:256"]`.
    pub prefix: Vec<String>,
}

impl Zilla {
    /// Writes `config` to `zilla.yaml` in a new temporary directory and runs
    /// `zilla start -c <dir>/zilla.yaml` with `options`.
    pub fn start(bin: &Path, config: &str, options: Options) -> Zilla {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("zilla.yaml"), config).expect("write config");
        for (rel, content) in &options.files {
            let path = dir.path().join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create dirs");
            }
            std::fs::write(path, content).expect("write file");
        }
        let mut cmd = match options.prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("start")
            .arg("-c")
            .arg(dir.path().join("zilla.yaml"));
        cmd.args(&options.args);
        cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
        // Its engine directory (`.zilla/engine`) goes with its config, not into the checkout.
        cmd.current_dir(dir.path());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn zilla");
        let (tx, lines) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(
            child.stdout.take().expect("stdout"),
            stdout.clone(),
            tx.clone(),
        );
        collect(child.stderr.take().expect("stderr"), stderr.clone(), tx);
        Zilla {
            child,
            dir,
            stdout,
            stderr,
            lines,
        }
    }

    /// The directory holding `zilla.yaml`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("zilla.yaml")
    }

    /// Replaces the config file atomically (write + rename), as an editor or a ConfigMap would.
    pub fn rewrite_config(&self, config: &str) {
        let tmp = self.dir.path().join(".zilla.yaml.tmp");
        std::fs::write(&tmp, config).expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("rename config");
    }

    /// Waits until a line of stdout or stderr contains `needle`; panics with all output on
    /// timeout. Lines seen before are searched too.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.all_lines().into_iter().find(|l| l.contains(needle)) {
            return l;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!(
                    "zilla did not print {needle:?} within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                    self.stdout().join("\n"),
                    self.stderr().join("\n")
                ),
            }
        }
    }

    /// Counts lines (stdout and stderr) containing `needle` so far.
    pub fn count(&self, needle: &str) -> usize {
        self.all_lines()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn all_lines(&self) -> Vec<String> {
        let mut all = self.stdout();
        all.extend(self.stderr());
        all
    }

    /// Lines printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Lines printed on stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the output threads drain.
                thread::sleep(Duration::from_millis(50));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Zilla {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(
    stream: impl Read + Send + 'static,
    store: Arc<Mutex<Vec<String>>>,
    tx: mpsc::Sender<String>,
) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.clone());
            let _ = tx.send(line);
        }
    });
}

/// Runs `zilla` with `args` to completion and returns (exit code, stdout, stderr).
pub fn run(bin: &Path, args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run zilla");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The upstream half of every test's SSE proxy, as entries of `bindings:`: `south_sse_client`
/// -> `south_http_client` (HTTP/1.1) -> `south_tcp_client`, to the SSE backend on
/// 127.0.0.1:`backend`. A test writes its own north side (`north_sse_server` exits to
/// `south_sse_client`) and appends this.
pub fn sse_upstream_bindings(backend: u16) -> String {
    format!(
        "  south_sse_client:
    type: sse
    kind: client
    exit: south_http_client
  south_http_client:
    type: http
    kind: client
    options: {{ versions: [ http/1.1 ] }}
    exit: south_tcp_client
  south_tcp_client:
    type: tcp
    kind: client
    options: {{ host: 127.0.0.1, port: {backend} }}
"
    )
}

/// The shape of the `examples/sse.proxy` chain over HTTP/1.1 on both sides, without its routes
/// and CORS: tcp, http and sse server listening on 127.0.0.1:`port`, then
/// [`sse_upstream_bindings`] to the SSE backend on 127.0.0.1:`backend`. The zilla.yaml of every
/// test that needs a plain SSE proxy.
pub fn sse_proxy_config(port: u16, backend: u16) -> String {
    let south = sse_upstream_bindings(backend);
    format!(
        "name: test
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
    exit: north_sse_server
  north_sse_server:
    type: sse
    kind: server
    exit: south_sse_client
{south}"
    )
}
