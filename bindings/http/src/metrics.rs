//! Zilla's `http.*` metrics, recorded by the http server per exchange it opens: requests in
//! flight, their duration (request head to response end) and the sizes of their bodies.

use std::sync::Arc;
use std::time::Instant;

use zilla_engine::{Gauge, Histogram, MetricDescriptor, MetricScope, MetricUnit};

zilla_engine::inventory::submit! { MetricDescriptor::gauge("http.active.requests", MetricUnit::Count, "HTTP requests in flight.") }
zilla_engine::inventory::submit! { MetricDescriptor::histogram("http.duration", MetricUnit::Nanoseconds, "Time from a request's head to the end of its response.") }
zilla_engine::inventory::submit! { MetricDescriptor::histogram("http.request.size", MetricUnit::Bytes, "Bytes of request bodies.") }
zilla_engine::inventory::submit! { MetricDescriptor::histogram("http.response.size", MetricUnit::Bytes, "Bytes of response bodies.") }
zilla_engine::inventory::submit! { MetricDescriptor::counter("http.requests.invalid", MetricUnit::Count, "Requests refused with 400 by request validation, by reason.") }

/// The http metrics of one server binding.
#[derive(Debug)]
pub(crate) struct HttpMetrics {
    active: Gauge,
    duration: Option<Histogram>,
    request_size: Option<Histogram>,
    response_size: Option<Histogram>,
}

impl HttpMetrics {
    /// The instruments `scope` selects; `None` if it selects none (no exchange is metered).
    pub(crate) fn new(scope: &MetricScope) -> Option<Arc<HttpMetrics>> {
        let histogram =
            |name: &'static str| scope.enabled(name).then(|| scope.histogram(name, &[]));
        let m = HttpMetrics {
            active: scope.gauge("http.active.requests", &[]),
            duration: histogram("http.duration"),
            request_size: histogram("http.request.size"),
            response_size: histogram("http.response.size"),
        };
        let any = scope.enabled("http.active.requests")
            || m.duration.is_some()
            || m.request_size.is_some()
            || m.response_size.is_some();
        any.then(|| Arc::new(m))
    }

    /// Starts metering one exchange.
    pub(crate) fn exchange(self: &Arc<Self>) -> Exchange {
        self.active.inc();
        Exchange {
            metrics: self.clone(),
            started: Instant::now(),
            request: 0,
            response: 0,
        }
    }
}

/// One exchange being metered; recorded when dropped (however the exchange ended).
#[derive(Debug)]
pub(crate) struct Exchange {
    metrics: Arc<HttpMetrics>,
    started: Instant,
    request: u64,
    response: u64,
}

impl Exchange {
    /// `n` bytes of request body forwarded.
    pub(crate) fn request(&mut self, n: usize) {
        self.request += n as u64;
    }

    /// `n` bytes of response body written.
    pub(crate) fn response(&mut self, n: usize) {
        self.response += n as u64;
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let m = &self.metrics;
        m.active.dec();
        if let Some(h) = &m.duration {
            h.record(self.started.elapsed().as_nanos() as u64);
        }
        if let Some(h) = &m.request_size {
            h.record(self.request);
        }
        if let Some(h) = &m.response_size {
            h.record(self.response);
        }
    }
}

/// Metering calls on an exchange that may not be metered.
pub(crate) trait Meter {
    /// `n` bytes of request body.
    fn request(&mut self, n: usize);
    /// `n` bytes of response body.
    fn response(&mut self, n: usize);
}

impl Meter for Option<Exchange> {
    fn request(&mut self, n: usize) {
        if let Some(e) = self {
            e.request(n);
        }
    }

    fn response(&mut self, n: usize) {
        if let Some(e) = self {
            e.response(n);
        }
    }
}
