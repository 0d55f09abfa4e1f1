//! Events (what exporters receive) and counters (what the telemetry exporters will expose).
//!
//! Both are handed out at build time: a plugin or binding keeps its [`Events`] handle and its
//! [`Counter`]s, so reporting on a stream's path takes no lookup and no lock.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::plugin::{Event, Exporter};

/// Where events go: every exporter of the graph (and `tracing` at debug level).
#[derive(Clone, Default)]
pub struct Events(Arc<[Arc<dyn Exporter>]>);

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("exporters", &self.0.len())
            .finish()
    }
}

impl Events {
    /// Events delivered to `exporters` (the engine builds one per graph; tests build their own).
    pub fn new(exporters: Vec<Arc<dyn Exporter>>) -> Self {
        Events(exporters.into())
    }

    /// Reports an event from `source` (`namespace:name`) to every exporter.
    pub fn emit(&self, source: &str, name: &'static str, trace_id: u64, message: String) {
        tracing::debug!(source, event = name, trace_id, "{message}");
        if self.0.is_empty() {
            return;
        }
        let e = Event {
            source: source.to_string(),
            name,
            trace_id,
            message,
            time: std::time::SystemTime::now(),
        };
        for x in self.0.iter() {
            x.event(&e);
        }
    }
}

/// A monotonic counter, cheap to bump from any thread (one relaxed atomic add).
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One registered counter: who owns it, its name and labels.
#[derive(Debug, Clone)]
pub struct CounterEntry {
    /// `namespace:binding` (or catalog) that counts.
    pub source: String,
    /// Metric name, e.g. `sse.events.invalid`.
    pub name: &'static str,
    /// Labels, e.g. `[("reason", "violation")]`.
    pub labels: Vec<(&'static str, String)>,
    /// The counter.
    pub counter: Counter,
}

/// The counters registered while a graph was built.
#[derive(Debug, Clone, Default)]
pub struct Counters(Arc<Mutex<Vec<CounterEntry>>>);

impl Counters {
    /// Registers (or finds) the counter `name` with `labels` for `source`. Build time only.
    pub fn register(
        &self,
        source: &str,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Counter {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let labels: Vec<(&'static str, String)> =
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if let Some(e) = all
            .iter()
            .find(|e| e.source == source && e.name == name && e.labels == labels)
        {
            return e.counter.clone();
        }
        let counter = Counter::default();
        all.push(CounterEntry {
            source: source.to_string(),
            name,
            labels,
            counter: counter.clone(),
        });
        counter
    }

    /// Every counter with its current value.
    pub fn snapshot(&self) -> Vec<CounterEntry> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The value of `name` for `source` with `labels`, 0 if never registered (for tests).
    pub fn value(&self, source: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.snapshot()
            .iter()
            .find(|e| {
                e.source == source
                    && e.name == name
                    && e.labels.len() == labels.len()
                    && e.labels
                        .iter()
                        .zip(labels)
                        .all(|((k, v), (k2, v2))| k == k2 && v == v2)
            })
            .map_or(0, |e| e.counter.get())
    }
}
