//! The `otlp` exporter: sends the engine's metrics, and its events as logs, to an OpenTelemetry
//! collector over OTLP/HTTP (protobuf), as Zilla's incubating exporter does.
//!
//! ```yaml
//! telemetry:
//!   attributes:
//!     service.namespace: example
//!   metrics: [ stream.opens.received, http.duration ]
//!   exporters:
//!     otlp0:
//!       type: otlp
//!       options:
//!         interval: 30               # seconds between sends (default 30)
//!         signals: [ metrics, logs ] # default both; `traces` is accepted and ignored
//!         endpoint:
//!           protocol: http           # the only one
//!           location: http://localhost:4318
//!           overrides:               # paths under location (defaults below)
//!             metrics: /v1/metrics
//!             logs: /v1/logs
//! ```
//!
//! Metrics are cumulative: counters as monotonic sums, gauges, and histograms with Zilla's
//! power-of-two bounds; each data point carries `namespace` and `binding` (or `guard`,
//! `catalog`) attributes plus the metric's labels. `telemetry.attributes` are the resource's
//! attributes (`service.namespace` defaults to the namespace). Events are buffered (at most
//! [`MAX_BUFFERED`], the oldest dropped beyond) and sent as log records with the event name and
//! text. Requests go through `reqwest` on the engine's background runtime, never on a stream's
//! path; a collector that is down costs one warning per outage, and sending resumes when it
//! answers again.

mod encode;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::watch;
use zilla_engine::{
    AttachError, ConfigErrors, Event, Exporter, ExporterDescriptor, Metrics, PluginContext,
    PluginFactory,
};

/// Events kept between two sends; older ones are dropped beyond.
pub const MAX_BUFFERED: usize = 10_000;

/// The `otlp` exporter type.
#[derive(Debug)]
pub struct OtlpFactory;

zilla_engine::inventory::submit! { ExporterDescriptor::new::<OtlpFactory>() }

/// Options of an `otlp` exporter (Zilla's).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpOptions {
    /// Seconds between two sends (default 30).
    #[serde(default)]
    pub interval: Option<f64>,
    /// What to send: `metrics`, `logs` (`traces` is accepted and ignored). Default: all.
    #[serde(default)]
    pub signals: Option<Vec<Signal>>,
    /// The collector.
    pub endpoint: OtlpEndpoint,
}

/// A signal.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Metrics.
    Metrics,
    /// Events, as log records.
    Logs,
    /// Traces (none are recorded).
    Traces,
}

/// Where the collector is.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpEndpoint {
    /// Only `http` (the default).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Base URL, e.g. `http://localhost:4318`.
    pub location: String,
    /// Paths under `location`, per signal.
    #[serde(default)]
    pub overrides: Option<Overrides>,
}

/// The transport.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/HTTP.
    Http,
}

/// Paths per signal.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Default `/v1/metrics`.
    #[serde(default)]
    pub metrics: Option<String>,
    /// Default `/v1/logs`.
    #[serde(default)]
    pub logs: Option<String>,
    /// Accepted and ignored.
    #[serde(default)]
    pub traces: Option<String>,
}

impl PluginFactory<dyn Exporter> for OtlpFactory {
    const TYPE: &'static str = "otlp";
    type Options = OtlpOptions;

    fn build(
        cx: &PluginContext,
        options: Option<OtlpOptions>,
    ) -> Result<Arc<dyn Exporter>, ConfigErrors> {
        let o = options.ok_or_else(|| {
            cx.error(
                "options",
                "an otlp exporter needs `options.endpoint.location`, e.g. http://localhost:4318",
            )
        })?;
        let mut errors = ConfigErrors::new();
        let interval = o.interval.unwrap_or(30.0);
        if !(interval.is_finite() && interval > 0.0) {
            errors.push(cx.error(
                "options.interval",
                format!("{interval} is not a number of seconds above 0"),
            ));
        }
        let base = o.endpoint.location.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            errors.push(cx.error(
                "options.endpoint.location",
                format!("'{base}' is not an http:// or https:// URL of a collector"),
            ));
        }
        let overrides = o.endpoint.overrides.clone().unwrap_or_default();
        let url = |path: Option<String>, default: &str| {
            let path = path.unwrap_or_else(|| default.to_string());
            if path.starts_with("http://") || path.starts_with("https://") {
                path
            } else {
                format!("{base}/{}", path.trim_start_matches('/'))
            }
        };
        let signals = o
            .signals
            .unwrap_or_else(|| vec![Signal::Metrics, Signal::Logs]);
        if signals.contains(&Signal::Traces) {
            tracing::warn!(exporter = %cx.qualified_name(), "otlp: no traces are recorded, the signal is ignored");
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("zilla/", env!("CARGO_PKG_VERSION")))
            .build();
        let client = match client {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(cx.error("options", format!("cannot set up the HTTP client: {e}")));
                None
            }
        };
        let mut resource = cx.attributes.clone();
        if !resource.iter().any(|(k, _)| k == "service.namespace") {
            resource.push(("service.namespace".into(), cx.namespace.clone()));
        }
        if !resource.iter().any(|(k, _)| k == "service.name") {
            resource.push(("service.name".into(), "zilla".into()));
        }
        let Some(client) = client else {
            return Err(errors);
        };
        errors.or(Arc::new(Otlp {
            name: cx.qualified_name(),
            settings: Arc::new(Settings {
                interval: Duration::from_secs_f64(interval.max(0.001)),
                metrics_url: signals
                    .contains(&Signal::Metrics)
                    .then(|| url(overrides.metrics, "/v1/metrics")),
                logs_url: signals
                    .contains(&Signal::Logs)
                    .then(|| url(overrides.logs, "/v1/logs")),
                resource,
                client,
                started: SystemTime::now(),
            }),
            buffer: Arc::new(Mutex::new(VecDeque::new())),
            running: Mutex::new(None),
        }) as Arc<dyn Exporter>)
    }
}

/// What the sending task needs.
#[derive(Debug)]
struct Settings {
    interval: Duration,
    metrics_url: Option<String>,
    logs_url: Option<String>,
    resource: Vec<(String, String)>,
    client: reqwest::Client,
    /// Start of the cumulative series.
    started: SystemTime,
}

/// A built exporter.
#[derive(Debug)]
struct Otlp {
    name: String,
    settings: Arc<Settings>,
    buffer: Arc<Mutex<VecDeque<Event>>>,
    /// Stops the sending task when dropped or sent.
    running: Mutex<Option<watch::Sender<bool>>>,
}

impl Exporter for Otlp {
    fn event(&self, event: &Event) {
        if self.settings.logs_url.is_none() {
            return;
        }
        let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() == MAX_BUFFERED {
            b.pop_front();
        }
        b.push_back(event.clone());
    }

    fn attach(&self, metrics: &Metrics) -> Result<Vec<String>, AttachError> {
        let (stop, stopped) = watch::channel(false);
        let task = Sender {
            name: self.name.clone(),
            settings: self.settings.clone(),
            buffer: self.buffer.clone(),
            metrics: metrics.clone(),
            failing: false,
        };
        zilla_engine::background().spawn(task.run(stopped));
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop);
        Ok(Vec::new())
    }

    fn detach(&self) {
        if let Some(stop) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            // A last send, then the task ends.
            let _ = stop.send(true);
        }
    }
}

/// The task sending every interval.
struct Sender {
    name: String,
    settings: Arc<Settings>,
    buffer: Arc<Mutex<VecDeque<Event>>>,
    metrics: Metrics,
    /// The last send failed (one warning per outage).
    failing: bool,
}

impl Sender {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let last = tokio::select! {
                _ = tick.tick() => false,
                changed = stopped.changed() => changed.is_err() || *stopped.borrow(),
            };
            self.send().await;
            if last {
                return;
            }
        }
    }

    async fn send(&mut self) {
        let s = self.settings.clone();
        let mut ok = true;
        if let Some(url) = &s.metrics_url {
            let body = encode::metrics(&self.metrics.snapshot(), &s.resource, s.started);
            ok &= self.post(url, body).await;
        }
        if let Some(url) = &s.logs_url {
            let events: Vec<Event> = self
                .buffer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
                .collect();
            if !events.is_empty() {
                let body = encode::logs(&events, &s.resource);
                ok &= self.post(url, body).await;
            }
        }
        if ok && std::mem::take(&mut self.failing) {
            tracing::info!(exporter = %self.name, "otlp: the collector answers again");
        }
    }

    async fn post(&mut self, url: &str, body: Vec<u8>) -> bool {
        let sent = self
            .settings
            .client
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!(exporter = %self.name, url, "otlp: cannot send to the collector ({failure}); retrying every interval");
        }
        false
    }
}
