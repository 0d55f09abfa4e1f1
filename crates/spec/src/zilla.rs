//! Starting, watching and stopping a `zilla` process.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What zilla prints on stdout for each endpoint it listens on, e.g.
/// `test:app0 listening on tcp://127.0.0.1:41234`.
pub const LISTENING_MARKER: &str = "listening on tcp://";

/// A running `zilla start -c CONFIG` process with captured output.
///
/// Dropping it kills the process if it is still running.
#[derive(Debug)]
pub struct Zilla {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

/// How a zilla process ended.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// Whether it exited by itself within the grace period after SIGTERM
    /// (or before it), rather than being killed.
    pub graceful: bool,
    /// Its exit status, when known.
    pub status: Option<ExitStatus>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Stopped {
    /// One line describing how the process ended.
    pub fn describe(&self) -> String {
        let status = self
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown status".into());
        if self.graceful {
            status
        } else {
            format!("did not stop after SIGTERM; killed ({status})")
        }
    }
}

/// Extra `zilla start` arguments from a `zilla.args` file beside the config: one argument per
/// line (`-P` and `name=value` on separate lines, or `-Pname=value`), `#` comments.
fn extra_args(config: &Path) -> Vec<String> {
    let Some(dir) = config.parent() else {
        return Vec::new();
    };
    std::fs::read_to_string(dir.join("zilla.args"))
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Zilla {
    /// Starts `bin start -c config` (plus the arguments of a `zilla.args` file beside it) with
    /// extra environment variables.
    pub fn start(
        bin: &Path,
        config: &Path,
        env: &[(String, String)],
        cwd: Option<&Path>,
    ) -> Result<Zilla, String> {
        let mut command = Command::new(bin);
        command
            .arg("start")
            .arg("-c")
            .arg(config)
            .args(extra_args(config))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(collect_lines(out, Arc::clone(&stdout)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(collect_lines(err, Arc::clone(&stderr)));
        }
        Ok(Zilla {
            child,
            stdout,
            stderr,
            readers,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until zilla has printed a `listening on tcp://...:PORT` line
    /// for every port in `ports`.
    ///
    /// Fails if zilla exits first or `timeout` passes; the message then
    /// includes zilla's output.
    pub fn wait_listening(&mut self, ports: &[u16], timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let missing: Vec<u16> = {
                let lines = lock(&self.stdout);
                ports
                    .iter()
                    .copied()
                    .filter(|port| !lines.iter().any(|line| is_listening_line(line, *port)))
                    .collect()
            };
            if missing.is_empty() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain_readers(Duration::from_millis(500));
                return Err(format!(
                    "zilla exited ({status}) before listening on {}\n{}",
                    port_list(&missing),
                    self.output_tails(30)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "zilla did not print `{LISTENING_MARKER}...:PORT` on stdout for {} within {}s\n{}",
                    port_list(&missing),
                    timeout.as_secs(),
                    self.output_tails(30)
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Gives the output readers up to `max` to reach end of file (after the
    /// process exited), so that reports include its last words.
    fn drain_readers(&self, max: Duration) {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline && !self.readers.iter().all(|r| r.is_finished()) {
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The exit status if the process has already exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `n` lines of stdout and stderr, labelled, for failure reports.
    pub fn output_tails(&self, n: usize) -> String {
        format!(
            "zilla stdout (last {n} lines):\n{}\nzilla stderr (last {n} lines):\n{}",
            indent(&tail(&lock(&self.stdout), n)),
            indent(&tail(&lock(&self.stderr), n))
        )
    }

    /// Sends SIGTERM, waits up to `grace` for the process to exit, then
    /// kills it. Returns its captured output.
    pub fn stop(mut self, grace: Duration) -> Stopped {
        let mut graceful = true;
        let mut status = self.child.try_wait().ok().flatten();
        if status.is_none() {
            let signalled = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            let deadline = Instant::now() + grace;
            if signalled {
                while Instant::now() < deadline {
                    if let Ok(Some(s)) = self.child.try_wait() {
                        status = Some(s);
                        break;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            }
            if status.is_none() {
                graceful = false;
                let _ = self.child.kill();
                status = self.child.wait().ok();
            }
        }
        // Normally immediate; bounded in case a grandchild holds the pipes.
        self.drain_readers(Duration::from_secs(1));
        Stopped {
            graceful,
            status,
            stdout: lock(&self.stdout).join("\n"),
            stderr: lock(&self.stderr).join("\n"),
        }
    }
}

impl Drop for Zilla {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether `line` announces a tcp listener on `port`.
pub fn is_listening_line(line: &str, port: u16) -> bool {
    let line = line.trim_end();
    line.contains(LISTENING_MARKER) && line.ends_with(&format!(":{port}"))
}

fn collect_lines(
    source: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    lock(&sink).push(line.trim_end_matches(['\n', '\r']).to_string());
                }
            }
        }
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn port_list(ports: &[u16]) -> String {
    let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    format!("port(s) {}", list.join(", "))
}

/// The last `n` lines of `lines`, joined.
pub(crate) fn tail(lines: &[String], n: usize) -> String {
    if lines.is_empty() {
        return "(empty)".into();
    }
    let start = lines.len().saturating_sub(n);
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("... ({start} earlier lines)\n"));
    }
    out.push_str(&lines[start..].join("\n"));
    out
}

/// Indents every line by two spaces.
pub(crate) fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_listening_lines() {
        assert!(is_listening_line(
            "test:app0 listening on tcp://127.0.0.1:41234",
            41234
        ));
        assert!(is_listening_line(
            "test:app0 listening on tcp://127.0.0.1:41234\r",
            41234
        ));
        assert!(!is_listening_line(
            "test:app0 listening on tcp://127.0.0.1:41234",
            1234
        ));
        assert!(!is_listening_line("connected to 127.0.0.1:41234", 41234));
    }

    #[test]
    fn tails() {
        let lines: Vec<String> = (1..=5).map(|i| format!("l{i}")).collect();
        assert_eq!(tail(&lines, 2), "... (3 earlier lines)\nl4\nl5");
        assert_eq!(tail(&[], 2), "(empty)");
        assert_eq!(indent("a\nb"), "  a\n  b");
    }

    #[test]
    fn stop_terminates_a_process() {
        // `sleep` stands in for zilla: SIGTERM ends it promptly.
        let mut child = Zilla {
            child: Command::new("sleep")
                .arg("30")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            stdout: Arc::default(),
            stderr: Arc::default(),
            readers: Vec::new(),
        };
        assert!(child.exited().is_none());
        let stopped = child.stop(Duration::from_secs(5));
        assert!(stopped.graceful);
        assert!(!stopped.status.unwrap().success());
    }

    #[test]
    fn start_failure_is_reported() {
        let err = Zilla::start(
            Path::new("/nonexistent/zilla"),
            Path::new("zilla.yaml"),
            &[],
            None,
        )
        .unwrap_err();
        assert!(err.contains("cannot start /nonexistent/zilla"), "{err}");
    }

    #[test]
    fn early_exit_is_reported_with_stderr() {
        // `sh start -c x.yaml` runs the script `start` in `dir`, which plays
        // a zilla that fails at startup.
        let dir = std::env::temp_dir().join(format!("zilla-spec-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("start"), "echo \"bad config: $2\" >&2\nexit 3\n").unwrap();
        let mut zilla =
            Zilla::start(Path::new("/bin/sh"), Path::new("x.yaml"), &[], Some(&dir)).unwrap();
        let err = zilla
            .wait_listening(&[1234], Duration::from_secs(10))
            .unwrap_err();
        assert!(err.contains("exited"), "{err}");
        assert!(err.contains("bad config: x.yaml"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
