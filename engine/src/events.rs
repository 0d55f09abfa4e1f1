//! Events: what exporters receive (one line each on stdout).
//!
//! Handed out at build time: a plugin or binding keeps its [`Events`] handle, so reporting on a
//! stream's path takes no lookup and no lock. Metrics are in `metrics`.

use std::fmt;
use std::sync::Arc;

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
