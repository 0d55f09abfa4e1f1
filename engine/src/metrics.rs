//! Metrics: what bindings, guards and catalogs count, and what exporters read.
//!
//! A metric is known by its [`MetricDescriptor`] (name, kind, unit), registered with
//! `inventory::submit!` by the crate that records it; the engine registers the `stream.*` ones.
//! A namespace records a metric only if its `telemetry.metrics` lists the name and (for a
//! binding) one of the binding's `telemetry.metrics` regular expressions matches it (Zilla's
//! rule). A plugin asks its [`MetricScope`] for an instrument at build time, and gets a
//! detached one when the metric is not selected: recording then costs the same and is never
//! seen, so code on a stream's path needs no branch.
//!
//! Instruments are relaxed atomics (a counter add is one `fetch_add`), never a lock or an
//! allocation per event. The [`Metrics`] registry lives as long as the engine: a reload finds
//! the same instruments for the same names, so counts go on across reloads, including those of
//! streams still open on the graph before.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How a metric aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution over power-of-two buckets.
    Histogram,
}

impl MetricKind {
    /// `counter`, `gauge` or `histogram`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// What a metric's values measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    /// A count of things.
    Count,
    /// Bytes.
    Bytes,
    /// Nanoseconds (exporters may convert).
    Nanoseconds,
}

/// A known metric. Registered with `inventory::submit!` by the crate that records it.
#[derive(Debug)]
pub struct MetricDescriptor {
    /// Name in zilla.yaml, e.g. `stream.opens.received`.
    pub name: &'static str,
    /// How it aggregates.
    pub kind: MetricKind,
    /// What its values measure.
    pub unit: MetricUnit,
    /// One sentence for exporters' help text.
    pub description: &'static str,
}

impl MetricDescriptor {
    /// A counter.
    pub const fn counter(name: &'static str, unit: MetricUnit, description: &'static str) -> Self {
        MetricDescriptor {
            name,
            kind: MetricKind::Counter,
            unit,
            description,
        }
    }

    /// A gauge.
    pub const fn gauge(name: &'static str, unit: MetricUnit, description: &'static str) -> Self {
        MetricDescriptor {
            name,
            kind: MetricKind::Gauge,
            unit,
            description,
        }
    }

    /// A histogram.
    pub const fn histogram(
        name: &'static str,
        unit: MetricUnit,
        description: &'static str,
    ) -> Self {
        MetricDescriptor {
            name,
            kind: MetricKind::Histogram,
            unit,
            description,
        }
    }
}

inventory::collect!(MetricDescriptor);

/// Every known metric, sorted by name.
pub fn metric_descriptors() -> Vec<&'static MetricDescriptor> {
    let mut all: Vec<&'static MetricDescriptor> =
        inventory::iter::<MetricDescriptor>.into_iter().collect();
    all.sort_by_key(|d| d.name);
    all.dedup_by_key(|d| d.name);
    all
}

/// The known metric called `name`.
pub fn metric_descriptor(name: &str) -> Option<&'static MetricDescriptor> {
    inventory::iter::<MetricDescriptor>
        .into_iter()
        .find(|d| d.name == name)
}

// The stream metrics every binding can record (the engine counts them on its pipes).
inventory::submit! { MetricDescriptor::gauge("stream.active.received", MetricUnit::Count, "Streams opened to the binding and still open.") }
inventory::submit! { MetricDescriptor::gauge("stream.active.sent", MetricUnit::Count, "Streams the binding opened and that are still open.") }
inventory::submit! { MetricDescriptor::counter("stream.opens.received", MetricUnit::Count, "Streams opened to the binding.") }
inventory::submit! { MetricDescriptor::counter("stream.opens.sent", MetricUnit::Count, "Streams the binding opened.") }
inventory::submit! { MetricDescriptor::counter("stream.data.received", MetricUnit::Bytes, "Bytes of data the binding received on its streams.") }
inventory::submit! { MetricDescriptor::counter("stream.data.sent", MetricUnit::Bytes, "Bytes of data the binding sent on its streams.") }
inventory::submit! { MetricDescriptor::counter("stream.errors.received", MetricUnit::Count, "Streams opened to the binding that ended aborted or reset.") }
inventory::submit! { MetricDescriptor::counter("stream.errors.sent", MetricUnit::Count, "Streams the binding opened that ended aborted or reset.") }
inventory::submit! { MetricDescriptor::counter("stream.closes.received", MetricUnit::Count, "Streams opened to the binding that ended cleanly.") }
inventory::submit! { MetricDescriptor::counter("stream.closes.sent", MetricUnit::Count, "Streams the binding opened that ended cleanly.") }

/// A monotonic counter, cheap to bump from any thread (one relaxed atomic add).
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (one relaxed atomic add per change).
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one away.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Adds `n` (negative to take away).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Number of histogram buckets: upper bounds 2, 4, 8, ... 2^62, then everything above (as
/// Zilla's histograms).
pub const HISTOGRAM_BUCKETS: usize = 63;

/// The upper bound of bucket `i` (`None` for the last, unbounded one).
pub fn histogram_bound(i: usize) -> Option<u64> {
    (i + 1 < HISTOGRAM_BUCKETS).then(|| 1u64 << (i + 1))
}

struct Cells {
    buckets: [AtomicU64; HISTOGRAM_BUCKETS],
    sum: AtomicU64,
    count: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

/// A distribution of values over power-of-two buckets; recording is a few relaxed atomics.
#[derive(Clone)]
pub struct Histogram(Arc<Cells>);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(Arc::new(Cells {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }))
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.0.count.load(Ordering::Relaxed))
            .finish()
    }
}

/// What a histogram holds at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Count per bucket (not cumulative), see [`histogram_bound`].
    pub buckets: Vec<u64>,
    /// Sum of the values.
    pub sum: u64,
    /// Number of values.
    pub count: u64,
    /// Smallest value (0 if none).
    pub min: u64,
    /// Largest value.
    pub max: u64,
}

impl Histogram {
    /// The bucket of `value`: the first whose upper bound is at least `value`.
    pub fn bucket(value: u64) -> usize {
        if value <= 2 {
            return 0;
        }
        // ceil(log2(value)) - 1
        ((64 - (value - 1).leading_zeros()) as usize - 1).min(HISTOGRAM_BUCKETS - 1)
    }

    /// Records one value.
    pub fn record(&self, value: u64) {
        let c = &*self.0;
        c.buckets[Self::bucket(value)].fetch_add(1, Ordering::Relaxed);
        c.sum.fetch_add(value, Ordering::Relaxed);
        c.count.fetch_add(1, Ordering::Relaxed);
        c.min.fetch_min(value, Ordering::Relaxed);
        c.max.fetch_max(value, Ordering::Relaxed);
    }

    /// The current distribution.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let c = &*self.0;
        let count = c.count.load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets: c
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: c.sum.load(Ordering::Relaxed),
            count,
            min: if count == 0 {
                0
            } else {
                c.min.load(Ordering::Relaxed)
            },
            max: c.max.load(Ordering::Relaxed),
        }
    }
}

/// One recorded instrument.
#[derive(Debug, Clone)]
pub enum Instrument {
    /// A counter.
    Counter(Counter),
    /// A gauge.
    Gauge(Gauge),
    /// A histogram.
    Histogram(Histogram),
}

/// One registered instrument: whose, which metric, which labels.
#[derive(Debug, Clone)]
pub struct MetricEntry {
    /// Namespace of the component that records it.
    pub namespace: String,
    /// What records it: `binding`, `guard`, `catalog` (the label naming the component).
    pub component: &'static str,
    /// The component's name (unqualified).
    pub name: String,
    /// The metric.
    pub descriptor: &'static MetricDescriptor,
    /// Labels beyond namespace and component: the binding's telemetry attributes, then the
    /// recorder's own (`reason`, `result`, ...).
    pub labels: Vec<(String, String)>,
    /// The instrument.
    pub instrument: Instrument,
}

/// Every instrument registered while the engine runs.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Mutex<Vec<MetricEntry>>>);

impl Metrics {
    fn register(
        &self,
        key: (&str, &'static str, &str),
        descriptor: &'static MetricDescriptor,
        labels: Vec<(String, String)>,
    ) -> Instrument {
        let (namespace, component, name) = key;
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = all.iter().find(|e| {
            e.namespace == namespace
                && e.component == component
                && e.name == name
                && std::ptr::eq(e.descriptor, descriptor)
                && e.labels == labels
        }) {
            return e.instrument.clone();
        }
        let instrument = match descriptor.kind {
            MetricKind::Counter => Instrument::Counter(Counter::default()),
            MetricKind::Gauge => Instrument::Gauge(Gauge::default()),
            MetricKind::Histogram => Instrument::Histogram(Histogram::default()),
        };
        all.push(MetricEntry {
            namespace: namespace.to_string(),
            component,
            name: name.to_string(),
            descriptor,
            labels,
            instrument: instrument.clone(),
        });
        instrument
    }

    /// Every registered instrument (reading one gives its current value).
    pub fn snapshot(&self) -> Vec<MetricEntry> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The value of counter or gauge `metric` of component `name` (unqualified) with exactly
    /// `labels` (beyond namespace and component), if registered. For tests and tools.
    pub fn value(&self, name: &str, metric: &str, labels: &[(&str, &str)]) -> Option<i64> {
        self.snapshot().iter().find_map(|e| {
            let same = e.name == name
                && e.descriptor.name == metric
                && e.labels.len() == labels.len()
                && e.labels
                    .iter()
                    .zip(labels)
                    .all(|((k, v), (k2, v2))| k == k2 && v == v2);
            match (&e.instrument, same) {
                (Instrument::Counter(c), true) => Some(c.get() as i64),
                (Instrument::Gauge(g), true) => Some(g.get()),
                _ => None,
            }
        })
    }
}

/// Which metrics one component records, and where: handed to a binding or plugin at build.
#[derive(Debug, Clone, Default)]
pub struct MetricScope {
    metrics: Metrics,
    namespace: String,
    component: &'static str,
    name: String,
    selected: Vec<&'static MetricDescriptor>,
    labels: Vec<(String, String)>,
}

impl MetricScope {
    /// The scope of component `name` (a `component`: binding, guard, catalog) recording the
    /// metrics `selected`, with `labels` on every one of them.
    pub fn new(
        metrics: Metrics,
        (namespace, component, name): (&str, &'static str, &str),
        selected: Vec<&'static MetricDescriptor>,
        labels: Vec<(String, String)>,
    ) -> Self {
        MetricScope {
            metrics,
            namespace: namespace.to_string(),
            component,
            name: name.to_string(),
            selected,
            labels,
        }
    }

    /// The registry it records into.
    pub fn registry(&self) -> &Metrics {
        &self.metrics
    }

    /// True if `metric` is recorded here (to skip work, e.g. reading a clock, when it is not).
    pub fn enabled(&self, metric: &str) -> bool {
        self.selected.iter().any(|d| d.name == metric)
    }

    fn instrument(&self, metric: &'static str, labels: &[(&str, &str)]) -> Option<Instrument> {
        debug_assert!(
            metric_descriptor(metric).is_some(),
            "metric {metric} is not registered: inventory::submit! a MetricDescriptor"
        );
        let d = self.selected.iter().find(|d| d.name == metric)?;
        let mut all = self.labels.clone();
        all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Some(
            self.metrics
                .register((&self.namespace, self.component, &self.name), d, all),
        )
    }

    /// The counter `metric` with `labels`; a detached one when the metric is not recorded.
    pub fn counter(&self, metric: &'static str, labels: &[(&str, &str)]) -> Counter {
        match self.instrument(metric, labels) {
            Some(Instrument::Counter(c)) => c,
            _ => Counter::default(),
        }
    }

    /// The gauge `metric` with `labels`; a detached one when the metric is not recorded.
    pub fn gauge(&self, metric: &'static str, labels: &[(&str, &str)]) -> Gauge {
        match self.instrument(metric, labels) {
            Some(Instrument::Gauge(g)) => g,
            _ => Gauge::default(),
        }
    }

    /// The histogram `metric` with `labels`; a detached one when the metric is not recorded.
    pub fn histogram(&self, metric: &'static str, labels: &[(&str, &str)]) -> Histogram {
        match self.instrument(metric, labels) {
            Some(Instrument::Histogram(h)) => h,
            _ => Histogram::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_as_zilla() {
        assert_eq!(Histogram::bucket(0), 0);
        assert_eq!(Histogram::bucket(1), 0);
        assert_eq!(Histogram::bucket(2), 0);
        assert_eq!(Histogram::bucket(3), 1);
        assert_eq!(Histogram::bucket(4), 1);
        assert_eq!(Histogram::bucket(5), 2);
        assert_eq!(Histogram::bucket(31), 4);
        assert_eq!(Histogram::bucket(32), 4);
        assert_eq!(Histogram::bucket(33), 5);
        assert_eq!(Histogram::bucket(1 << 62), 61);
        assert_eq!(Histogram::bucket((1 << 62) + 1), 62);
        assert_eq!(Histogram::bucket(u64::MAX), 62);
        assert_eq!(histogram_bound(0), Some(2));
        assert_eq!(histogram_bound(61), Some(1 << 62));
        assert_eq!(histogram_bound(62), None);
        // Zilla's otlp spec: 1, 31, 31 -> bucket 0 once, bucket 4 twice.
        let h = Histogram::default();
        for v in [1, 31, 31] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!((s.sum, s.count, s.min, s.max), (63, 3, 1, 31));
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[4], 2);
    }

    #[test]
    fn unselected_metrics_are_detached_and_selected_ones_shared() {
        let metrics = Metrics::default();
        let d = metric_descriptor("stream.opens.received").unwrap();
        let scope = MetricScope::new(
            metrics.clone(),
            ("ns", "binding", "tcp0"),
            vec![d],
            vec![("zone".into(), "a".into())],
        );
        scope.counter("stream.opens.received", &[]).inc();
        scope.counter("stream.opens.received", &[]).inc();
        scope.counter("stream.closes.received", &[]).inc();
        assert_eq!(
            metrics.value("tcp0", "stream.opens.received", &[("zone", "a")]),
            Some(2)
        );
        assert_eq!(
            metrics.value("tcp0", "stream.closes.received", &[("zone", "a")]),
            None
        );
        assert_eq!(metrics.snapshot().len(), 1);
        assert!(scope.enabled("stream.opens.received"));
        assert!(!scope.enabled("stream.closes.received"));
    }
}
