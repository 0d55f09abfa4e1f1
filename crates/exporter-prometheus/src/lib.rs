//! The `prometheus` exporter: serves the engine's metrics over HTTP in the Prometheus text
//! format, as Zilla's does.
//!
//! ```yaml
//! telemetry:
//!   metrics: [ stream.opens.received, http.duration ]
//!   exporters:
//!     prometheus0:
//!       type: prometheus
//!       options:
//!         endpoints:
//!           - scheme: http
//!             port: 7190
//!             path: /metrics
//! ```
//!
//! Each endpoint listens on every interface at `port` and answers a `GET` whose path starts
//! with `path` (default `/metrics`); another method gets `405`, another path `404`. Names
//! follow Zilla: `.` becomes `_`, byte metrics end in `_bytes`, durations are converted from
//! nanoseconds and end in `_milliseconds`, counters end in `_total`; every sample carries
//! `namespace` and `binding` (or `guard`, `catalog`) labels, then the binding's telemetry
//! attributes and the metric's own labels. The text is encoded by the `prometheus` crate.
//!
//! A reload that keeps an endpoint's port keeps its listener (the new graph attaches before the
//! old detaches); metrics live as long as the engine, so counts go on across reloads.

mod render;
mod server;

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use zilla_engine::{
    AttachError, ConfigErrors, Exporter, ExporterDescriptor, Metrics, PluginContext, PluginFactory,
};

pub use render::render;

/// The `prometheus` exporter type.
#[derive(Debug)]
pub struct PrometheusFactory;

zilla_engine::inventory::submit! { ExporterDescriptor::new::<PrometheusFactory>() }

/// Options of a `prometheus` exporter.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusOptions {
    /// Where metrics are served (at least one).
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Only `http`.
    pub scheme: Scheme,
    /// Port, on every interface.
    pub port: u16,
    /// Path prefix answered (default `/metrics`).
    #[serde(default)]
    pub path: Option<String>,
}

/// The scheme of an endpoint.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP.
    Http,
}

impl PluginFactory<dyn Exporter> for PrometheusFactory {
    const TYPE: &'static str = "prometheus";
    type Options = PrometheusOptions;

    fn build(
        cx: &PluginContext,
        options: Option<PrometheusOptions>,
    ) -> Result<Arc<dyn Exporter>, ConfigErrors> {
        let options = options.ok_or_else(|| {
            cx.error(
                "options",
                "a prometheus exporter needs `options.endpoints`, e.g. [ { scheme: http, port: 7190, path: /metrics } ]",
            )
        })?;
        let mut errors = ConfigErrors::new();
        if options.endpoints.is_empty() {
            errors.push(cx.error(
                "options.endpoints",
                "list at least one endpoint, e.g. { scheme: http, port: 7190, path: /metrics }",
            ));
        }
        let mut endpoints = Vec::new();
        for (i, e) in options.endpoints.iter().enumerate() {
            let path = e.path.clone().unwrap_or_else(|| "/metrics".to_string());
            if !path.starts_with('/') {
                errors.push(cx.error(
                    &format!("options.endpoints[{i}].path"),
                    format!("'{path}' is not a path: start it with '/', e.g. /metrics"),
                ));
            }
            if endpoints.iter().any(|(p, _): &(u16, String)| *p == e.port) {
                errors.push(cx.error(
                    &format!("options.endpoints[{i}].port"),
                    format!("port {} is already an endpoint of this exporter", e.port),
                ));
            }
            endpoints.push((e.port, path));
        }
        errors.or(Arc::new(Prometheus {
            endpoints,
            attached: std::sync::Mutex::new(Vec::new()),
        }) as Arc<dyn Exporter>)
    }
}

/// A built exporter.
#[derive(Debug)]
struct Prometheus {
    /// `(port, path)` of each endpoint.
    endpoints: Vec<(u16, String)>,
    /// Ports attached, to release on detach.
    attached: std::sync::Mutex<Vec<u16>>,
}

impl Exporter for Prometheus {
    fn attach(&self, metrics: &Metrics) -> Result<Vec<String>, AttachError> {
        let mut done = Vec::new();
        let mut endpoints = Vec::new();
        for (port, path) in &self.endpoints {
            match server::acquire(*port, path, metrics) {
                Ok(endpoint) => {
                    done.push(*port);
                    endpoints.push(endpoint);
                }
                Err(e) => {
                    for port in done {
                        server::release(port);
                    }
                    return Err(e);
                }
            }
        }
        self.attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(done);
        Ok(endpoints)
    }

    fn detach(&self) {
        let ports = std::mem::take(&mut *self.attached.lock().unwrap_or_else(|e| e.into_inner()));
        for port in ports {
            server::release(port);
        }
    }
}
