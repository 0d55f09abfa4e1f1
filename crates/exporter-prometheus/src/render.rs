//! The engine's metrics as Prometheus text, encoded by the `prometheus` crate.

use std::collections::BTreeMap;

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};
use zilla_engine::{
    histogram_bound, Instrument, MetricDescriptor, MetricEntry, MetricKind, MetricUnit, Metrics,
};

/// The exposition name of a metric, as Zilla's: `.` to `_`, `_bytes` or `_milliseconds` for the
/// unit, `_total` for a counter.
pub(crate) fn name(d: &MetricDescriptor) -> String {
    let mut name = d.name.replace('.', "_");
    match d.unit {
        MetricUnit::Bytes => name.push_str("_bytes"),
        MetricUnit::Nanoseconds => name.push_str("_milliseconds"),
        MetricUnit::Count => {}
    }
    if d.kind == MetricKind::Counter {
        name.push_str("_total");
    }
    name
}

fn labels(e: &MetricEntry) -> Vec<LabelPair> {
    let pair = |n: &str, v: &str| {
        let mut l = LabelPair::default();
        l.set_name(n.to_string());
        l.set_value(v.to_string());
        l
    };
    let mut out = vec![pair("namespace", &e.namespace), pair(e.component, &e.name)];
    out.extend(e.labels.iter().map(|(k, v)| pair(&label_name(k), v)));
    out
}

/// A label name Prometheus accepts: `[a-zA-Z_][a-zA-Z0-9_]*` (`service.name` becomes
/// `service_name`).
fn label_name(n: &str) -> String {
    let mut out: String = n
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// Nanoseconds as milliseconds.
fn ms(ns: u64) -> f64 {
    ns as f64 / 1_000_000.0
}

fn metric(e: &MetricEntry) -> Metric {
    let mut m = Metric::from_label(labels(e));
    let scale = |v: u64| match e.descriptor.unit {
        MetricUnit::Nanoseconds => ms(v),
        _ => v as f64,
    };
    match &e.instrument {
        Instrument::Counter(c) => {
            let mut x = Counter::default();
            x.set_value(scale(c.get()));
            m.set_counter(x);
        }
        Instrument::Gauge(g) => {
            let mut x = Gauge::default();
            x.set_value(g.get() as f64);
            m.set_gauge(x);
        }
        Instrument::Histogram(h) => {
            let s = h.snapshot();
            let mut x = Histogram::default();
            x.set_sample_count(s.count);
            x.set_sample_sum(scale(s.sum));
            let mut cumulative = 0;
            let mut buckets = Vec::new();
            for (i, n) in s.buckets.iter().enumerate() {
                cumulative += n;
                // The last bucket is unbounded: the encoder writes it as `+Inf`.
                let Some(bound) = histogram_bound(i) else {
                    break;
                };
                let mut b = Bucket::default();
                b.set_cumulative_count(cumulative);
                b.set_upper_bound(scale(bound));
                buckets.push(b);
            }
            x.set_bucket(buckets);
            m.set_histogram(x);
        }
    }
    m
}

/// Every registered metric as Prometheus text (families sorted by name).
pub fn render(metrics: &Metrics) -> String {
    let mut families: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for e in metrics.snapshot() {
        let d = e.descriptor;
        let family = families.entry(name(d)).or_insert_with(|| {
            let mut f = MetricFamily::default();
            f.set_name(name(d));
            f.set_help(d.description.to_string());
            f.set_field_type(match d.kind {
                MetricKind::Counter => MetricType::COUNTER,
                MetricKind::Gauge => MetricType::GAUGE,
                MetricKind::Histogram => MetricType::HISTOGRAM,
            });
            f
        });
        family.mut_metric().push(metric(&e));
    }
    let families: Vec<MetricFamily> = families.into_values().collect();
    let mut out = Vec::new();
    match TextEncoder::new().encode(&families, &mut out) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics could not be encoded");
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zilla_engine::{metric_descriptor, MetricScope};

    #[test]
    fn names_units_labels_and_histograms_as_zilla() {
        let metrics = Metrics::default();
        let scope = MetricScope::new(
            metrics.clone(),
            ("example", "binding", "north_http_server"),
            [
                "stream.opens.received",
                "stream.data.sent",
                "stream.active.received",
            ]
            .iter()
            .filter_map(|n| metric_descriptor(n))
            .collect(),
            vec![("service.zone".into(), "eu \"1\"".into())],
        );
        scope.counter("stream.opens.received", &[]).add(3);
        scope.counter("stream.data.sent", &[]).add(1024);
        scope.gauge("stream.active.received", &[]).add(2);
        let text = render(&metrics);
        assert!(
            text.contains("# TYPE stream_opens_received_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("stream_opens_received_total{namespace=\"example\",binding=\"north_http_server\",service_zone=\"eu \\\"1\\\"\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("stream_data_sent_bytes_total{"), "{text}");
        assert!(
            text.contains("# TYPE stream_active_received gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP stream_opens_received_total Streams opened to the binding.\n"),
            "{text}"
        );
    }
}
