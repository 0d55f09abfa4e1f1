//! The `sse.*` metrics (beyond Zilla), recorded by the sse server and client: events in and
//! out, events dropped and why, open event streams, and the latency of an event through the
//! proxy (from the upstream read to the write towards the client).

use std::time::Instant;

use zilla_engine::{Counter, Gauge, Histogram, MetricDescriptor, MetricScope, MetricUnit};

zilla_engine::inventory::submit! { MetricDescriptor::counter("sse.events.received", MetricUnit::Count, "Events the binding received (sse server: from upstream; sse client: from its server).") }
zilla_engine::inventory::submit! { MetricDescriptor::counter("sse.events.sent", MetricUnit::Count, "Events the binding sent on (sse server: to clients; sse client: into the gateway).") }
zilla_engine::inventory::submit! { MetricDescriptor::counter("sse.events.dropped", MetricUnit::Count, "Events dropped, by reason: invalid, no-schema, too-large, slow-consumer.") }
zilla_engine::inventory::submit! { MetricDescriptor::gauge("sse.streams.active", MetricUnit::Count, "Event streams open.") }
zilla_engine::inventory::submit! { MetricDescriptor::histogram("sse.event.latency", MetricUnit::Nanoseconds, "Time from an event's read from upstream to its write towards the client.") }

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Its data failed the stream's model (or could not be parsed for it).
    Invalid,
    /// The schema to check it against could not be had.
    NoSchema,
    /// Larger than `zilla.binding.sse.maximum.event.size`.
    TooLarge,
    /// Its client was cut off for staying too far behind.
    SlowConsumer,
}

impl Dropped {
    const ALL: [Dropped; 4] = [
        Dropped::Invalid,
        Dropped::NoSchema,
        Dropped::TooLarge,
        Dropped::SlowConsumer,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Invalid => "invalid",
            Dropped::NoSchema => "no-schema",
            Dropped::TooLarge => "too-large",
            Dropped::SlowConsumer => "slow-consumer",
        }
    }
}

/// The sse metrics of one binding (detached instruments for those it does not record).
#[derive(Debug, Clone)]
pub struct SseMetrics {
    /// `sse.events.received`.
    pub received: Counter,
    /// `sse.events.sent`.
    pub sent: Counter,
    dropped: [Counter; 4],
    /// `sse.streams.active`.
    pub streams: Gauge,
    latency: Option<Histogram>,
}

impl SseMetrics {
    /// The instruments `scope` selects.
    pub fn new(scope: &MetricScope) -> Self {
        SseMetrics {
            received: scope.counter("sse.events.received", &[]),
            sent: scope.counter("sse.events.sent", &[]),
            dropped: Dropped::ALL
                .map(|why| scope.counter("sse.events.dropped", &[("reason", why.as_str())])),
            streams: scope.gauge("sse.streams.active", &[]),
            latency: scope
                .enabled("sse.event.latency")
                .then(|| scope.histogram("sse.event.latency", &[])),
        }
    }

    /// `n` events dropped for `why`.
    pub fn dropped(&self, why: Dropped, n: u64) {
        self.dropped[why as usize].add(n);
    }

    /// An event read at `read_at` is being written now (nothing when latency is not recorded).
    pub fn written(&self, read_at: Option<Instant>) {
        if let (Some(h), Some(at)) = (&self.latency, read_at) {
            h.record(at.elapsed().as_nanos() as u64);
        }
    }
}
