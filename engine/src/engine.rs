//! The running engine: loads the config file, attaches its graph, reloads it on change and
//! shuts down gracefully.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::build::{build, BuildEnv};
use crate::config::{Config, Diagnostic, Diagnostics};
use crate::graph::{AttachError, Graph, Workers};
use crate::metrics::Metrics;
use crate::plugin::Exporter;
use crate::properties::Properties;

/// Why the engine could not start.
#[derive(Debug)]
pub enum StartError {
    /// The config is invalid (every error found).
    Config(Diagnostics),
    /// A binding could not start (for example: port already in use).
    Attach(AttachError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(d) => write!(f, "{d}"),
            StartError::Attach(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    /// The file text did not change.
    Unchanged,
    /// The new config is serving; these endpoints are listening.
    Applied(Vec<(String, String)>),
    /// The new config is invalid; the running one keeps serving.
    Invalid(Diagnostics),
    /// The new config could not start; the running one keeps serving.
    AttachFailed(AttachError),
}

/// The engine: one config file, one live graph at a time.
#[derive(Debug)]
pub struct Engine {
    path: PathBuf,
    properties: Arc<Properties>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    draining: CancellationToken,
    workers: Workers,
    exporters: Vec<Arc<dyn Exporter>>,
    metrics: Metrics,
    current: Mutex<Option<(Arc<Graph>, String)>>,
    /// The text of the last config that failed to build, and why: built again on every poll,
    /// reported once.
    rejected: Mutex<Option<(String, String)>>,
}

/// What a successful load produced, for `-v` output (a [`Engine::validate`] has no endpoints).
#[derive(Debug)]
pub struct Started {
    /// `(binding, endpoint)` of every listener.
    pub endpoints: Vec<(String, String)>,
    /// Warnings (unset environment variables).
    pub warnings: Vec<String>,
    /// The effective config text (after expressions).
    pub text: String,
    /// `(namespace, zilla.yaml text)` of every namespace a binding generated (asyncapi).
    pub generated: Vec<(String, String)>,
}

impl Engine {
    /// An engine for the config file at `path`, accepting on the current runtime.
    pub fn new(path: impl Into<PathBuf>, properties: Properties) -> Arc<Engine> {
        Engine::with_workers(path, properties, Workers::default(), Vec::new())
    }

    /// An engine for the config file at `path`, accepting on `workers`, reporting events to
    /// `exporters` besides those the config declares.
    pub fn with_workers(
        path: impl Into<PathBuf>,
        properties: Properties,
        workers: Workers,
        exporters: Vec<Arc<dyn Exporter>>,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            path: path.into(),
            properties: Arc::new(properties),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            workers,
            exporters,
            metrics: Metrics::default(),
            current: Mutex::new(None),
            rejected: Mutex::new(None),
        })
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Properties.
    pub fn properties(&self) -> &Properties {
        &self.properties
    }

    /// The metrics every graph of this engine records into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn read(&self) -> Result<String, Diagnostics> {
        std::fs::read_to_string(&self.path).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                file: self.path.display().to_string(),
                position: None,
                path: String::new(),
                message: format!("cannot read the config file: {e} (pass another with -c FILE)"),
            }])
        })
    }

    fn build(&self, raw: &str) -> Result<(Config, Arc<Graph>), Diagnostics> {
        let config = Config::parse(&self.path.display().to_string(), raw, |n| {
            std::env::var(n).ok()
        })?;
        let env = BuildEnv {
            properties: self.properties.clone(),
            config_dir: self
                .path
                .parent()
                .map(Path::to_path_buf)
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(".")),
            tracker: self.tracker.clone(),
            shutdown: self.shutdown.clone(),
            draining: self.draining.clone(),
            workers: self.workers.clone(),
            exporters: self.exporters.clone(),
            metrics: self.metrics.clone(),
        };
        let graph = build(&config, &env)?;
        Ok((config, graph))
    }

    /// Loads and builds the config exactly as [`Engine::start`] does (schema, references, exit
    /// protocols, vaults and keystores, catalogs and the documents they hold), without attaching
    /// it: nothing listens. On success, what a start would print besides its listeners.
    pub fn validate(&self) -> Result<Started, Diagnostics> {
        let raw = self.read()?;
        let (config, graph) = self.build(&raw)?;
        Ok(Started {
            endpoints: Vec::new(),
            warnings: config.warnings,
            text: config.text,
            generated: graph.generated().to_vec(),
        })
    }

    /// Loads, builds and attaches the config. Must run inside a tokio runtime.
    pub fn start(&self) -> Result<Started, StartError> {
        let raw = self.read().map_err(StartError::Config)?;
        let (config, graph) = self.build(&raw).map_err(StartError::Config)?;
        let endpoints = graph.attach().map_err(StartError::Attach)?;
        let source = config
            .namespaces
            .first()
            .map(|n| n.name.clone())
            .unwrap_or_default();
        graph.event(&source, "ENGINE_STARTED", 0, "Engine Started.".into());
        let generated = graph.generated().to_vec();
        *self.lock() = Some((graph, raw));
        Ok(Started {
            endpoints,
            warnings: config.warnings,
            text: config.text,
            generated,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Arc<Graph>, String)>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live graph.
    pub fn graph(&self) -> Option<Arc<Graph>> {
        self.lock().as_ref().map(|(g, _)| g.clone())
    }

    /// Re-reads the config file and, if its text changed and it is valid, swaps in the new
    /// graph: the new one attaches first (listeners on unchanged addresses are shared, so no
    /// connection is refused in between), then the old one detaches. Open streams are not
    /// touched. An invalid or failing config leaves the running one serving.
    pub fn reload(&self) -> Reload {
        let old = self.lock().clone();
        let failed = |why: String| {
            if let Some((g, _)) = &old {
                g.event(
                    "sys",
                    "ENGINE_CONFIG_WATCHER_FAILED",
                    0,
                    format!("Config not reloaded: {why}; the running config keeps serving."),
                );
            }
        };
        let raw = match self.read() {
            Ok(r) => r,
            Err(d) => {
                failed(d.to_string());
                return Reload::Invalid(d);
            }
        };
        if old.as_ref().is_some_and(|(_, text)| *text == raw) || self.draining.is_cancelled() {
            return Reload::Unchanged;
        }
        let (config, graph) = match self.build(&raw) {
            Ok(x) => x,
            Err(d) => {
                // Built again on every poll (a failure may pass: a JWKS server that was down),
                // but the same text failing the same way is reported once.
                let why = format!(
                    "{} error(s), the first: {}",
                    d.0.len(),
                    d.0.first().map(ToString::to_string).unwrap_or_default()
                );
                let mut rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
                let seen = (raw, why);
                if rejected.as_ref() == Some(&seen) {
                    return Reload::Unchanged;
                }
                failed(seen.1.clone());
                *rejected = Some(seen);
                return Reload::Invalid(d);
            }
        };
        *self.rejected.lock().unwrap_or_else(|e| e.into_inner()) = None;
        match graph.attach() {
            Ok(endpoints) => {
                if let Some((old, _)) = &old {
                    old.detach();
                }
                let source = config
                    .namespaces
                    .first()
                    .map(|n| n.name.clone())
                    .unwrap_or_default();
                graph.event(&source, "ENGINE_RELOADED", 0, "Config reloaded.".into());
                *self.lock() = Some((graph, raw));
                Reload::Applied(endpoints)
            }
            Err(e) => {
                failed(e.to_string());
                // Don't retry the same text until it changes again.
                if let Some((g, _)) = old {
                    *self.lock() = Some((g, raw));
                }
                Reload::AttachFailed(e)
            }
        }
    }

    /// Polls the config file every `interval` and reloads on change, reporting through
    /// `report`, until shutdown. Polling (rather than inotify) also sees atomic symlink swaps
    /// such as Kubernetes ConfigMap updates.
    pub async fn watch(self: Arc<Self>, interval: Duration, report: impl Fn(Reload) + Send) {
        loop {
            tokio::select! {
                // A draining engine takes no new config (it would listen again).
                _ = self.draining.cancelled() => return,
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let engine = self.clone();
            let outcome = tokio::task::spawn_blocking(move || engine.reload()).await;
            if let Ok(outcome) = outcome {
                if !matches!(outcome, Reload::Unchanged) {
                    report(outcome);
                }
            }
        }
    }

    /// Stops accepting and drains: for up to `drain`, open streams go on (connections take no
    /// new request); then streams are told the engine is stopping (an SSE stream ends cleanly,
    /// so its client reconnects elsewhere with its last event id) and get up to `grace` to end.
    /// Returns true if every stream ended in time.
    pub async fn shutdown(&self, drain: Duration, grace: Duration) -> bool {
        if let Some((g, _)) = self.lock().as_ref() {
            g.detach();
            g.event("sys", "ENGINE_STOPPED", 0, "Engine Stopped.".into());
        }
        self.draining.cancel();
        self.tracker.close();
        if tokio::time::timeout(drain, self.tracker.wait())
            .await
            .is_ok()
        {
            self.shutdown.cancel();
            return true;
        }
        self.shutdown.cancel();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }

    /// Number of stream tasks still running.
    pub fn active_tasks(&self) -> usize {
        self.tracker.len()
    }
}
