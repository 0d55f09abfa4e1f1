//! Running one scenario directory against a zilla binary.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::script::{self, Script};
use crate::side::{self, Shared};
use crate::zilla::{indent, Zilla};

/// The configuration file every scenario directory contains.
pub const CONFIG_FILE: &str = "zilla.yaml";
/// The extension of scenario scripts.
pub const SCRIPT_EXTENSION: &str = "spec";

/// Tunables for [`run_scenario_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How long zilla may take to report all its listening ports.
    pub start_timeout: Duration,
    /// How long zilla may take to exit after SIGTERM before it is killed.
    pub stop_grace: Duration,
    /// How many trailing lines of zilla's stderr a failure report shows.
    pub stderr_tail_lines: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            start_timeout: Duration::from_secs(10),
            stop_grace: Duration::from_secs(5),
            stderr_tail_lines: 20,
        }
    }
}

/// One reason a scenario failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The script (side) that failed, if the failure belongs to one.
    pub side: Option<String>,
    /// The line of the failing statement, if any.
    pub line: Option<usize>,
    /// The failing statement as written, if any.
    pub statement: Option<String>,
    /// What went wrong (may span several lines).
    pub message: String,
}

impl Failure {
    fn general(message: impl Into<String>) -> Self {
        Self {
            side: None,
            line: None,
            statement: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.side, self.line) {
            (Some(side), Some(line)) => write!(f, "{side}:{line}")?,
            (Some(side), None) => write!(f, "{side}")?,
            _ => write!(f, "scenario")?,
        }
        if let Some(statement) = &self.statement {
            write!(f, ": `{statement}`")?;
        }
        let mut lines = self.message.lines();
        if let Some(first) = lines.next() {
            write!(f, "\n  {first}")?;
        }
        for line in lines {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

/// The result of running one scenario.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario directory.
    pub dir: PathBuf,
    /// Wall-clock time taken.
    pub elapsed: Duration,
    /// Why it failed; empty when it passed.
    pub failures: Vec<Failure>,
    /// Sides stopped early because another side failed.
    pub cancelled: Vec<String>,
    /// Ports allocated for the scenario, by variable name.
    pub ports: BTreeMap<String, u16>,
    /// How zilla ended, if it was started.
    pub zilla_exit: Option<String>,
    /// zilla's stdout.
    pub zilla_stdout: String,
    /// zilla's stderr.
    pub zilla_stderr: String,
    stderr_tail_lines: usize,
}

impl Outcome {
    fn empty(dir: &Path, options: &Options) -> Self {
        Self {
            dir: dir.to_path_buf(),
            elapsed: Duration::ZERO,
            failures: Vec::new(),
            cancelled: Vec::new(),
            ports: BTreeMap::new(),
            zilla_exit: None,
            zilla_stdout: String::new(),
            zilla_stderr: String::new(),
            stderr_tail_lines: options.stderr_tail_lines,
        }
    }

    /// Whether the scenario passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// A multi-line failure report: each failure (side, line, statement,
    /// message), the allocated ports, and the tail of zilla's stderr.
    /// Empty when the scenario passed.
    pub fn report(&self) -> String {
        if self.passed() {
            return String::new();
        }
        let mut out = String::new();
        for failure in &self.failures {
            out.push_str(&failure.to_string());
            out.push('\n');
        }
        if !self.cancelled.is_empty() {
            out.push_str(&format!(
                "cancelled after the failure: {}\n",
                self.cancelled.join(", ")
            ));
        }
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("ports: {}\n", ports.join(" ")));
        }
        if let Some(exit) = &self.zilla_exit {
            out.push_str(&format!("zilla exit: {exit}\n"));
        }
        if self.zilla_exit.is_some() {
            let lines: Vec<String> = self.zilla_stderr.lines().map(str::to_string).collect();
            out.push_str(&format!(
                "zilla stderr (last {} lines):\n{}\n",
                self.stderr_tail_lines,
                indent(&crate::zilla::tail(&lines, self.stderr_tail_lines))
            ));
        }
        out
    }
}

/// Runs the scenario in `dir` against `zilla_bin` with default [`Options`].
pub fn run_scenario(zilla_bin: &Path, dir: &Path) -> Outcome {
    run_scenario_with(zilla_bin, dir, &Options::default())
}

/// Runs the scenario in `dir` against `zilla_bin`.
///
/// 1. Allocates a free 127.0.0.1 port for every `*_PORT` name referenced as
///    `${{env.NAME}}` in `zilla.yaml` or `${NAME}` in a script.
/// 2. Binds the listeners for ports used by `accept` before zilla starts.
/// 3. Starts `zilla start -c DIR/zilla.yaml` with the ports in its
///    environment and waits until it reports listening on its own ports.
/// 4. Runs every `*.spec` script concurrently, one thread each; the first
///    failure cancels the others.
/// 5. Closes all connections, sends zilla SIGTERM and waits for it to exit
///    (killing it after [`Options::stop_grace`]).
pub fn run_scenario_with(zilla_bin: &Path, dir: &Path, options: &Options) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome::empty(dir, options);
    if let Err(failure) = run(zilla_bin, dir, options, &mut outcome) {
        outcome.failures.insert(0, failure);
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// Checks a scenario without running zilla: `zilla.yaml` and at least one
/// script exist, every script parses, and ports can be allocated.
pub fn check_scenario(dir: &Path) -> Result<(), Failure> {
    let mut outcome = Outcome::empty(dir, &Options::default());
    prepare(dir, &mut outcome).map(drop)
}

/// A scenario loaded from disk, with ports allocated.
struct Prepared {
    config: PathBuf,
    scripts: Vec<Script>,
    env: Vec<(String, String)>,
    zilla_ports: Vec<u16>,
    listeners: HashMap<u16, TcpListener>,
}

fn run(
    zilla_bin: &Path,
    dir: &Path,
    options: &Options,
    outcome: &mut Outcome,
) -> Result<(), Failure> {
    let dir = dir
        .canonicalize()
        .map_err(|e| Failure::general(format!("cannot open {}: {e}", dir.display())))?;
    let prepared = prepare(&dir, outcome)?;
    let bin = zilla_bin
        .canonicalize()
        .map_err(|e| Failure::general(format!("zilla binary {}: {e}", zilla_bin.display())))?;

    let mut zilla = Zilla::start(&bin, &prepared.config, &prepared.env, Some(&dir))
        .map_err(Failure::general)?;
    let ready = zilla.wait_listening(&prepared.zilla_ports, options.start_timeout);
    if let Err(message) = ready {
        // The message already carries the tails of zilla's output, so
        // `zilla_exit` stays unset and the report does not repeat them.
        let stopped = zilla.stop(options.stop_grace);
        outcome.zilla_stdout = stopped.stdout;
        outcome.zilla_stderr = stopped.stderr;
        return Err(Failure::general(message));
    }

    let shared = Shared::new(prepared.listeners);
    let results = run_sides(&prepared.scripts, &shared);

    let exited_early = zilla.exited();
    // Close every connection, then stop zilla.
    shared.release_streams();
    for (script, result) in prepared.scripts.iter().zip(results) {
        drop(result.conn);
        match result.result {
            Ok(()) => {}
            Err(e) if e.cancelled => outcome.cancelled.push(script.name.clone()),
            Err(e) => {
                outcome.failures.push(Failure {
                    side: Some(script.name.clone()),
                    line: Some(e.line),
                    statement: Some(e.statement),
                    message: e.message,
                });
            }
        }
    }
    let stopped = zilla.stop(options.stop_grace);
    if let Some(status) = exited_early {
        outcome.failures.push(Failure::general(format!(
            "zilla exited during the scenario ({status})"
        )));
    }
    outcome.zilla_exit = Some(stopped.describe());
    for missing in expected_stdout(&dir, &stopped.stdout)? {
        outcome.failures.push(Failure::general(format!(
            "zilla.stdout: no line of zilla's stdout contains `{missing}`\n  stdout was:\n{}",
            indent(&stopped.stdout)
        )));
    }
    outcome.zilla_stdout = stopped.stdout;
    outcome.zilla_stderr = stopped.stderr;
    Ok(())
}

/// The lines of the scenario's optional `zilla.stdout` (one expected text a line, `#`
/// comments) that no line of zilla's stdout contains: how a scenario checks the events zilla
/// reports (a `stdout` exporter).
fn expected_stdout(dir: &Path, stdout: &str) -> Result<Vec<String>, Failure> {
    let path = dir.join("zilla.stdout");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Failure::general(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|want| !stdout.lines().any(|line| line.contains(want)))
        .map(str::to_string)
        .collect())
}

fn prepare(dir: &Path, outcome: &mut Outcome) -> Result<Prepared, Failure> {
    let config = dir.join(CONFIG_FILE);
    let config_text = fs::read_to_string(&config)
        .map_err(|e| Failure::general(format!("cannot read {}: {e}", config.display())))?;
    let sources = read_scripts(dir)?;
    if sources.is_empty() {
        return Err(Failure::general(format!(
            "no *.{SCRIPT_EXTENSION} scripts in {}",
            dir.display()
        )));
    }

    // Every *_PORT name gets its own free port. Holding all the listeners
    // until zilla starts keeps the ports distinct.
    let config_names = script::env_refs(&config_text);
    let mut names: BTreeSet<String> = config_names.clone();
    for (_, source) in &sources {
        names.extend(script::variable_refs(source));
    }
    let mut bound: HashMap<u16, TcpListener> = HashMap::new();
    let mut vars = HashMap::new();
    for name in names.iter().filter(|n| n.ends_with("_PORT")) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Failure::general(format!("cannot allocate a port for {name}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| Failure::general(e.to_string()))?
            .port();
        bound.insert(port, listener);
        vars.insert(name.clone(), port.to_string());
        outcome.ports.insert(name.clone(), port);
    }

    let mut scripts = Vec::new();
    for (name, source) in &sources {
        let script = script::parse(name, source, &vars).map_err(|e| Failure {
            side: Some(e.file.clone()),
            line: Some(e.line),
            statement: source
                .lines()
                .nth(e.line.saturating_sub(1))
                .map(|l| l.trim().to_string()),
            message: format!("parse error: {}", e.message),
        })?;
        scripts.push(script);
    }

    // Ports somebody accepts on are peer ports: keep their listeners.
    let accept_ports: BTreeSet<u16> = scripts.iter().flat_map(|s| s.accept_ports()).collect();
    let mut listeners = HashMap::new();
    for port in &accept_ports {
        let listener = match bound.remove(port) {
            Some(listener) => listener,
            None => TcpListener::bind(("127.0.0.1", *port)).map_err(|e| {
                Failure::general(format!(
                    "cannot listen on 127.0.0.1:{port} for `accept`: {e}"
                ))
            })?,
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| Failure::general(e.to_string()))?;
        listeners.insert(*port, listener);
    }
    // The rest are zilla's to bind.
    drop(bound);

    let zilla_ports = config_names
        .iter()
        .filter(|n| n.ends_with("_PORT"))
        .filter_map(|n| outcome.ports.get(n).copied())
        .filter(|p| !accept_ports.contains(p))
        .collect();
    let env = outcome
        .ports
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    Ok(Prepared {
        config,
        scripts,
        env,
        zilla_ports,
        listeners,
    })
}

/// The scenario's scripts as (file name, text), sorted by name.
fn read_scripts(dir: &Path) -> Result<Vec<(String, String)>, Failure> {
    let entries = fs::read_dir(dir)
        .map_err(|e| Failure::general(format!("cannot list {}: {e}", dir.display())))?;
    let mut scripts = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Failure::general(e.to_string()))?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == SCRIPT_EXTENSION) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = fs::read_to_string(&path)
                .map_err(|e| Failure::general(format!("cannot read {}: {e}", path.display())))?;
            scripts.push((name, text));
        }
    }
    scripts.sort();
    Ok(scripts)
}

/// Runs all sides concurrently; the first failure cancels the rest.
fn run_sides(scripts: &[Script], shared: &Shared) -> Vec<side::SideResult> {
    thread::scope(|scope| {
        let (done, finished) = mpsc::channel();
        let handles: Vec<_> = scripts
            .iter()
            .enumerate()
            .map(|(id, script)| {
                let done = done.clone();
                scope.spawn(move || {
                    let result = side::run(id, script, shared);
                    let _ = done.send(result.result.is_err());
                    result
                })
            })
            .collect();
        drop(done);
        for failed in finished {
            if failed {
                shared.cancel();
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| side::SideResult {
                    result: Err(side::SideError {
                        line: 0,
                        statement: String::new(),
                        message: "side panicked".into(),
                        cancelled: false,
                    }),
                    conn: None,
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zilla-spec-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            fs::write(dir.join(file), text).unwrap();
        }
        dir
    }

    /// A stand-in for zilla: `/bin/sh` runs `sh start -c CONFIG` in the
    /// scenario directory, so a shell script named `start` there plays
    /// zilla. (Writing and then executing a fresh binary would race with
    /// concurrent forks in other tests: ETXTBSY.) Scenarios whose sides
    /// only talk to each other (via `accept` ports) can run against it.
    fn fake_zilla(dir: &Path, body: &str) -> PathBuf {
        fs::write(dir.join("start"), format!("{body}\n")).unwrap();
        PathBuf::from("/bin/sh")
    }

    const CONFIG: &str = "name: test\nbindings:\n  app0:\n    type: tcp\n    kind: server\n    options:\n      host: 127.0.0.1\n      port: ${{env.ZILLA_PORT}}\n";

    const LISTENING: &str =
        "echo \"test:app0 listening on tcp://127.0.0.1:$ZILLA_PORT\"\nexec sleep 30";

    #[test]
    fn passing_scenario_with_fake_zilla() {
        let dir = scenario(
            "pass",
            &[
                (CONFIG_FILE, CONFIG),
                (
                    "client.spec",
                    "connect ${PEER_PORT}\nwrite \"hi\"\nread \"yo\"\nread closed\n",
                ),
                (
                    "server.spec",
                    "accept ${PEER_PORT}\nread \"hi\"\nwrite \"yo\"\nwrite close\n",
                ),
            ],
        );
        let bin = fake_zilla(&dir, LISTENING);
        let outcome = run_scenario(&bin, &dir);
        assert!(outcome.passed(), "{}", outcome.report());
        assert_eq!(outcome.ports.len(), 2);
        assert!(outcome.zilla_stdout.contains("listening on tcp://"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn failing_side_is_reported_with_line_and_stderr() {
        let dir = scenario(
            "fail",
            &[
                (CONFIG_FILE, CONFIG),
                (
                    "client.spec",
                    "connect ${PEER_PORT}\nwrite \"hi\"\nawait NEVER\n",
                ),
                ("server.spec", "accept ${PEER_PORT}\nread \"ho\"\n"),
            ],
        );
        let bin = fake_zilla(&dir, &format!("echo oops >&2\n{LISTENING}"));
        let outcome = run_scenario(&bin, &dir);
        assert!(!outcome.passed());
        assert_eq!(outcome.failures.len(), 1, "{}", outcome.report());
        let failure = &outcome.failures[0];
        assert_eq!(failure.side.as_deref(), Some("server.spec"));
        assert_eq!(failure.line, Some(2));
        assert_eq!(outcome.cancelled, vec!["client.spec".to_string()]);
        let report = outcome.report();
        assert!(report.contains("server.spec:2: `read \"ho\"`"), "{report}");
        assert!(report.contains("expected: \"ho\""), "{report}");
        assert!(report.contains("oops"), "{report}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn zilla_that_never_listens_times_out() {
        let dir = scenario(
            "nolisten",
            &[
                (CONFIG_FILE, CONFIG),
                ("client.spec", "connect ${ZILLA_PORT}\n"),
            ],
        );
        let bin = fake_zilla(&dir, "echo starting\nexec sleep 30");
        let options = Options {
            start_timeout: Duration::from_millis(300),
            ..Options::default()
        };
        let outcome = run_scenario_with(&bin, &dir, &options);
        let report = outcome.report();
        assert!(
            report.contains("did not print `listening on tcp://...:PORT`"),
            "{report}"
        );
        assert!(report.contains("starting"), "{report}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let dir = scenario(
            "parse",
            &[
                (CONFIG_FILE, CONFIG),
                ("client.spec", "connect ${ZILLA_PORT}\nbogus\n"),
            ],
        );
        let outcome = run_scenario(Path::new("/bin/true"), &dir);
        let report = outcome.report();
        assert!(report.contains("client.spec:2: `bogus`"), "{report}");
        assert!(
            report.contains("parse error: unknown statement"),
            "{report}"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
