//! The `stream.*` metrics, counted on the pipes of the streams a binding receives and opens:
//! opens, closes and errors when a stream begins and when both its directions are gone, bytes
//! as data frames are written. A binding that records none of them gets unmetered pipes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::metrics::{Counter, Gauge, MetricScope};

/// The life counters of one side (received or sent) of a binding's streams.
#[derive(Debug, Clone)]
pub(crate) struct Life {
    active: Gauge,
    opens: Counter,
    closes: Counter,
    errors: Counter,
}

/// The stream metrics one binding records.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeMeters {
    received: Option<Life>,
    sent: Option<Life>,
    data_received: Option<Counter>,
    data_sent: Option<Counter>,
}

fn life(scope: &MetricScope, side: &str) -> Option<Life> {
    let names = match side {
        "received" => [
            "stream.active.received",
            "stream.opens.received",
            "stream.closes.received",
            "stream.errors.received",
        ],
        _ => [
            "stream.active.sent",
            "stream.opens.sent",
            "stream.closes.sent",
            "stream.errors.sent",
        ],
    };
    names.iter().any(|n| scope.enabled(n)).then(|| Life {
        active: scope.gauge(names[0], &[]),
        opens: scope.counter(names[1], &[]),
        closes: scope.counter(names[2], &[]),
        errors: scope.counter(names[3], &[]),
    })
}

impl NodeMeters {
    /// The stream metrics `scope` selects.
    pub(crate) fn new(scope: &MetricScope) -> Self {
        let counter = |name: &'static str| scope.enabled(name).then(|| scope.counter(name, &[]));
        NodeMeters {
            received: life(scope, "received"),
            sent: life(scope, "sent"),
            data_received: counter("stream.data.received"),
            data_sent: counter("stream.data.sent"),
        }
    }
}

/// One metered stream's life: counted open when made, closed (or failed) when both
/// directions are gone.
#[derive(Debug)]
struct StreamLife {
    lives: [Option<Life>; 2],
    failed: AtomicBool,
}

impl Drop for StreamLife {
    fn drop(&mut self) {
        let failed = self.failed.load(Ordering::Relaxed);
        for life in self.lives.iter().flatten() {
            life.active.dec();
            if failed {
                life.errors.inc();
            } else {
                life.closes.inc();
            }
        }
    }
}

/// What one direction of a metered stream counts.
#[derive(Debug)]
pub(crate) struct PipeMeter {
    bytes: [Option<Counter>; 2],
    life: Arc<StreamLife>,
}

impl PipeMeter {
    /// `n` bytes of data written.
    pub(crate) fn data(&self, n: usize) {
        for c in self.bytes.iter().flatten() {
            c.add(n as u64);
        }
    }

    /// The direction was aborted or reset: the stream counts as an error.
    pub(crate) fn failed(&self) {
        self.life.failed.store(true, Ordering::Relaxed);
    }
}

/// The meters of a stream `opener` (if known) opens to `receiver`: the initial direction's,
/// then the reply's; `None` if neither records anything.
pub(crate) fn stream_meters(
    opener: Option<&NodeMeters>,
    receiver: &NodeMeters,
) -> Option<(PipeMeter, PipeMeter)> {
    let none = NodeMeters::default();
    let opener = opener.unwrap_or(&none);
    let lives = [receiver.received.clone(), opener.sent.clone()];
    let initial = [opener.data_sent.clone(), receiver.data_received.clone()];
    let reply = [receiver.data_sent.clone(), opener.data_received.clone()];
    if lives.iter().all(Option::is_none)
        && initial.iter().all(Option::is_none)
        && reply.iter().all(Option::is_none)
    {
        return None;
    }
    for life in lives.iter().flatten() {
        life.opens.inc();
        life.active.inc();
    }
    let life = Arc::new(StreamLife {
        lives,
        failed: AtomicBool::new(false),
    });
    Some((
        PipeMeter {
            bytes: initial,
            life: life.clone(),
        },
        PipeMeter { bytes: reply, life },
    ))
}
