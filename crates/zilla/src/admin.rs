//! The engine directory (`zilla.engine.directory`, default `.zilla/engine` in the working
//! directory, as Zilla's `zilla metrics` and `zilla stop` look for it): `info` holds the engine's
//! pid; `ready` exists once the initial config is applied (Zilla's ready file, for compose
//! health checks and Kubernetes probes; removed when the engine starts draining); and
//! `metrics.sock`, a Unix socket, answers every connection with the current value of every
//! recorded metric, one line each, for `zilla metrics`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use zilla_engine::{histogram_bound, Instrument, MetricEntry, MetricUnit, Metrics, Properties};

/// The engine directory of `properties`.
pub(crate) fn directory(properties: &Properties) -> PathBuf {
    properties
        .get("zilla.engine.directory")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(".zilla/engine"), PathBuf::from)
}

/// The engine directory while the engine runs; removes what it wrote when dropped.
pub(crate) struct Admin {
    dir: PathBuf,
    _stop: tokio::sync::watch::Sender<()>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("metrics.sock"));
        let _ = std::fs::remove_file(self.dir.join("info"));
        let _ = std::fs::remove_file(self.dir.join("ready"));
    }
}

/// Writes `info` and serves `metrics.sock` in `dir`. A directory another running engine serves
/// is left alone (a warning says so).
pub(crate) fn serve(dir: &Path, metrics: Metrics) -> Option<Admin> {
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the engine directory: `zilla metrics` will not find this engine, and no ready file is written");
        return None;
    }
    // Another engine's directory is left alone: its ready file is its own (this engine neither
    // writes nor, at drain, removes it).
    let socket = dir.join("metrics.sock");
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        tracing::warn!(dir = %dir.display(), "another engine serves this engine directory: set zilla.engine.directory to tell them apart");
        return None;
    }
    // Deleted and created again, as Zilla does: a probe never sees a stale one.
    let ready = dir.join("ready");
    let _ = std::fs::remove_file(&ready);
    if let Err(e) = std::fs::write(&ready, b"") {
        tracing::warn!(file = %ready.display(), error = %e, "cannot write the ready file");
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::write(dir.join("info"), format!("{}\n", std::process::id()));
    let (stop, mut stopped) = tokio::sync::watch::channel(());
    // Without the socket the engine still owns what it wrote (the ready file goes at drain).
    let admin = Admin {
        dir: dir.to_path_buf(),
        _stop: stop,
    };
    let listener = match tokio::net::UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(socket = %socket.display(), error = %e, "cannot serve metrics to `zilla metrics`");
            return Some(admin);
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                accepted = listener.accept() => {
                    if let Ok((mut conn, _)) = accepted {
                        let text = lines(&metrics);
                        tokio::spawn(async move {
                            let _ = conn.write_all(text.as_bytes()).await;
                            let _ = conn.shutdown().await;
                        });
                    }
                }
            }
        }
    });
    Some(admin)
}

/// One line per instrument: namespace, component, name, metric with labels, value (tabs).
fn lines(metrics: &Metrics) -> String {
    let mut out = String::new();
    for e in metrics.snapshot() {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}",
            e.namespace,
            e.component,
            e.name,
            metric(&e),
            value(&e)
        );
    }
    out
}

fn metric(e: &MetricEntry) -> String {
    if e.labels.is_empty() {
        return e.descriptor.name.to_string();
    }
    let labels: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}{{{}}}", e.descriptor.name, labels.join(","))
}

/// A value as read: a number, or a histogram's count, mean and quantiles (bucket upper bounds)
/// in its unit (milliseconds for durations).
fn value(e: &MetricEntry) -> String {
    match &e.instrument {
        Instrument::Counter(c) => c.get().to_string(),
        Instrument::Gauge(g) => g.get().to_string(),
        Instrument::Histogram(h) => {
            let s = h.snapshot();
            let (scale, unit) = match e.descriptor.unit {
                MetricUnit::Nanoseconds => (1e-6, "ms"),
                MetricUnit::Bytes => (1.0, "B"),
                MetricUnit::Count => (1.0, ""),
            };
            if s.count == 0 {
                return "count=0".to_string();
            }
            let quantile = |q: f64| {
                let want = (q * s.count as f64).ceil() as u64;
                let mut seen = 0;
                for (i, n) in s.buckets.iter().enumerate() {
                    seen += n;
                    if seen >= want {
                        return histogram_bound(i).map_or(s.max, |b| b.min(s.max));
                    }
                }
                s.max
            };
            let f = |v: u64| {
                let v = v as f64 * scale;
                if v >= 100.0 || v == v.trunc() {
                    format!("{v:.0}{unit}")
                } else {
                    format!("{v:.3}{unit}")
                }
            };
            format!(
                "count={} mean={} p50<={} p99<={} max={}",
                s.count,
                f(s.sum / s.count),
                f(quantile(0.5)),
                f(quantile(0.99)),
                f(s.max)
            )
        }
    }
}

/// `zilla metrics`: reads the running engine's metrics and prints them as a table, filtered by
/// namespace and binding (or guard, catalog) name.
pub(crate) fn print(
    dir: &Path,
    namespace: Option<&str>,
    binding: Option<&str>,
) -> Result<(), String> {
    use std::io::Read;
    let socket = dir.join("metrics.sock");
    let mut conn = std::os::unix::net::UnixStream::connect(&socket).map_err(|e| {
        format!(
            "no running engine at {} ({e}): start one with `zilla start` in this directory, or pass its directory with -P zilla.engine.directory=DIR",
            socket.display()
        )
    })?;
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .map_err(|e| format!("cannot read the engine's metrics: {e}"))?;
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|r| r.len() == 5)
        .filter(|r| namespace.is_none_or(|n| r[0] == n))
        .filter(|r| binding.is_none_or(|b| r[2] == b))
        .collect();
    if rows.is_empty() {
        println!("no metrics recorded: list them in telemetry.metrics and select them in each binding's telemetry.metrics");
        return Ok(());
    }
    let header = ["namespace", "binding", "metric", "value"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            let who = if r[1] == "binding" {
                r[2].to_string()
            } else {
                format!("{} ({})", r[2], r[1])
            };
            [r[0].to_string(), who, r[3].to_string(), r[4].to_string()]
        })
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].len())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w = [width(0), width(1), width(2)];
    println!(
        "{:<w0$}  {:<w1$}  {:<w2$}  {}",
        header[0],
        header[1],
        header[2],
        header[3],
        w0 = w[0],
        w1 = w[1],
        w2 = w[2]
    );
    for c in &cells {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        );
    }
    Ok(())
}
