//! The engine's metrics and events as OTLP protobuf messages.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use zilla_engine::{histogram_bound, Event, Instrument, MetricEntry, MetricUnit};

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
    }
}

fn resource(attributes: &[(String, String)]) -> Resource {
    Resource {
        attributes: attributes.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "zilla".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

fn unit(u: MetricUnit) -> &'static str {
    match u {
        MetricUnit::Count => "",
        MetricUnit::Bytes => "bytes",
        MetricUnit::Nanoseconds => "nanoseconds",
    }
}

fn attributes(e: &MetricEntry) -> Vec<KeyValue> {
    let mut out = vec![kv("namespace", &e.namespace), kv(e.component, &e.name)];
    out.extend(e.labels.iter().map(|(k, v)| kv(k, v)));
    out
}

/// One request with every metric (cumulative since `started`).
pub(crate) fn metrics(
    entries: &[MetricEntry],
    resource_attributes: &[(String, String)],
    started: SystemTime,
) -> Vec<u8> {
    let (start, now) = (nanos(started), nanos(SystemTime::now()));
    let cumulative = AggregationTemporality::Cumulative as i32;
    // One metric per name, its data points those of every component.
    let mut metrics: Vec<Metric> = Vec::new();
    for e in entries {
        let d = e.descriptor;
        let at = match metrics.iter().position(|m| m.name == d.name) {
            Some(i) => i,
            None => {
                metrics.push(Metric {
                    name: d.name.to_string(),
                    description: d.description.to_string(),
                    unit: unit(d.unit).to_string(),
                    ..Default::default()
                });
                metrics.len() - 1
            }
        };
        let number = |v: i64| NumberDataPoint {
            attributes: attributes(e),
            start_time_unix_nano: start,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsInt(v)),
            ..Default::default()
        };
        let m = &mut metrics[at];
        match &e.instrument {
            Instrument::Counter(c) => {
                let point = number(c.get() as i64);
                match &mut m.data {
                    Some(metric::Data::Sum(s)) => s.data_points.push(point),
                    _ => {
                        m.data = Some(metric::Data::Sum(Sum {
                            data_points: vec![point],
                            aggregation_temporality: cumulative,
                            is_monotonic: true,
                        }))
                    }
                }
            }
            Instrument::Gauge(g) => {
                let point = number(g.get());
                match &mut m.data {
                    Some(metric::Data::Gauge(x)) => x.data_points.push(point),
                    _ => {
                        m.data = Some(metric::Data::Gauge(Gauge {
                            data_points: vec![point],
                        }))
                    }
                }
            }
            Instrument::Histogram(h) => {
                let s = h.snapshot();
                let point = HistogramDataPoint {
                    attributes: attributes(e),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    count: s.count,
                    sum: Some(s.sum as f64),
                    bucket_counts: s.buckets.clone(),
                    explicit_bounds: (0..s.buckets.len())
                        .filter_map(|i| histogram_bound(i).map(|b| b as f64))
                        .collect(),
                    min: (s.count > 0).then_some(s.min as f64),
                    max: (s.count > 0).then_some(s.max as f64),
                    ..Default::default()
                };
                match &mut m.data {
                    Some(metric::Data::Histogram(x)) => x.data_points.push(point),
                    _ => {
                        m.data = Some(metric::Data::Histogram(Histogram {
                            data_points: vec![point],
                            aggregation_temporality: cumulative,
                        }))
                    }
                }
            }
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(resource_attributes)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The event name as Zilla's exporters label it: `BINDING_HTTP_REQUEST_ACCEPTED` as
/// `binding.http.request.accepted`.
fn event_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', ".")
}

/// One request with `events` as log records.
pub(crate) fn logs(events: &[Event], resource_attributes: &[(String, String)]) -> Vec<u8> {
    let records = events
        .iter()
        .map(|e| {
            let time = nanos(e.time);
            let mut trace_id = vec![0u8; 8];
            trace_id.extend_from_slice(&e.trace_id.to_be_bytes());
            LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: time,
                trace_id: if e.trace_id == 0 {
                    Vec::new()
                } else {
                    trace_id
                },
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(e.message.clone())),
                }),
                attributes: vec![
                    kv("event.name", &event_name(e.name)),
                    kv("source", &e.source),
                    kv("extension", &e.message),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(resource_attributes)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}
