//! The `sse` client binding: opens an upstream `GET` (an http stream) for each sse stream routed
//! to it, and parses the upstream `text/event-stream` into events.
//!
//! ```yaml
//! south_sse_client:
//!   type: sse
//!   kind: client
//!   exit: south_http_client
//! ```
//!
//! Parsing follows the WHATWG rules (every line ending, fragmentation at any byte, BOM,
//! comments, `retry` and unknown fields skipped), where Zilla's own client can stall. An upstream
//! answer other than `200` with `text/event-stream` refuses the stream: 4xx statuses pass
//! through, anything else becomes `502`, and the reason is logged.

use std::sync::Arc;

use bytes::Bytes;
use proto_http::{Headers, Http, HttpBegin, HttpReset};
use proto_sse::config::{SseCondition, SseOptions};
use proto_sse::metrics::{Dropped, SseMetrics};
use proto_sse::{Sse, SseBegin, SseEvent};
use sse_codec::{Event, Parser};
use zilla_engine::{
    flags, handler_binding, Binding, BindingContext, BindingDescriptor, BindingFactory, BindingId,
    ConfigErrors, Data, Frame, Graph, Handler, Kind, Nothing, Protocols, Reset, Routes, Rx, Signal,
    Stream, Tx, Values,
};

/// The `sse` binding type, client kind.
#[derive(Debug)]
pub struct SseClientFactory;

zilla_engine::inventory::submit! { BindingDescriptor::new::<SseClientFactory>() }

/// Default largest event accepted from upstream; larger ones are dropped and counted.
const MAX_EVENT: usize = 1024 * 1024;

impl BindingFactory for SseClientFactory {
    const TYPE: &'static str = "sse";
    const KINDS: &'static [Kind] = &[Kind::Client];
    type Options = SseOptions;
    type When = SseCondition;
    type With = Nothing;

    fn protocols(_: Kind) -> Protocols {
        Protocols::new::<Sse, Http>()
    }

    fn build(cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        cx.require_exit()?;
        proto_sse::config::compile_routes(&cx)?;
        if cx.options.as_ref().is_some_and(|o| o.share.is_some()) {
            return Err(cx
                .error(
                    "options.share",
                    "shared feeds are an sse server's: move `share` to the sse server binding",
                )
                .into());
        }
        let max_event = cx
            .properties
            .usize("zilla.binding.sse.maximum.event.size", MAX_EVENT);
        Ok(handler_binding::<Sse, _>(Arc::new(Inner {
            id: cx.id,
            name: cx.qualified_name(),
            metrics: SseMetrics::new(&cx.metrics),
            routes: cx.routes,
            max_event,
        })))
    }
}

struct Inner {
    id: BindingId,
    name: String,
    metrics: SseMetrics,
    routes: Routes<SseCondition, Nothing>,
    max_event: usize,
}

/// The upstream request for an sse begin.
fn request(begin: &SseBegin) -> HttpBegin {
    let mut headers = Headers::with_capacity(6);
    headers.append(":method", "GET");
    headers.append(":scheme", begin.scheme.clone());
    headers.append(":authority", begin.authority.clone());
    headers.append(":path", begin.path.clone());
    headers.append("accept", "text/event-stream");
    if let Some(id) = &begin.last_id {
        headers.append("last-event-id", id.clone());
    }
    HttpBegin { headers }
}

impl Handler<Sse> for Inner {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Sse>) -> Result<(), Reset<Sse>> {
        let path = std::str::from_utf8(&stream.begin.path).unwrap_or("");
        let values = Values {
            method: Some("GET"),
            path: Some(path),
            ..Values::default()
        };
        let Some(exit) = self
            .routes
            .resolve_with(graph, stream.session.as_deref(), values, |c| {
                c.captures(path)
            })
            .and_then(|(r, _)| r.exit)
        else {
            return Err(Reset(None));
        };
        let (http_tx, http_rx) = graph
            .open_from::<Http>(
                self.id,
                exit,
                request(&stream.begin),
                stream.session.clone(),
            )
            .map_err(Reset::relay)?;
        let settings = RunSettings {
            name: self.name.clone(),
            max_event: self.max_event,
            batch: stream.begin.batch,
            metrics: self.metrics.clone(),
        };
        graph.spawn(run(stream, http_tx, http_rx, settings));
        Ok(())
    }
}

/// Why an upstream response cannot be an event stream, or `None` if it can.
fn unacceptable(reply: &HttpBegin) -> Option<(u16, String)> {
    let status: u16 = reply
        .headers
        .get_str(":status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    if status != 200 {
        let passed = if (400..500).contains(&status) {
            status
        } else {
            502
        };
        return Some((passed, format!("upstream answered {status}")));
    }
    let content_type = reply.headers.get_str("content-type").unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("text/event-stream") {
        let shown = if content_type.is_empty() {
            "no content-type"
        } else {
            content_type
        };
        return Some((
            502,
            format!("upstream answered with {shown}, not text/event-stream"),
        ));
    }
    None
}

/// What one stream's task needs of its binding.
struct RunSettings {
    name: String,
    max_event: usize,
    /// The opener takes events as framed upstream, several per frame.
    batch: bool,
    metrics: SseMetrics,
}

async fn run(stream: Stream<Sse>, http_tx: Tx<Http>, mut http_rx: Rx<Http>, settings: RunSettings) {
    let RunSettings {
        name,
        max_event,
        batch,
        metrics,
    } = settings;
    let (mut app_rx, mut app_tx, trace_id) = stream.into_halves();
    // A GET has no body: end the request now.
    http_tx.end(None);

    let reply = loop {
        tokio::select! {
            frame = http_rx.recv() => match frame {
                Some(Frame::Begin(b)) => break b,
                Some(Frame::Data(_) | Frame::Flush) => {}
                Some(Frame::End(_) | Frame::Abort(_)) | None => {
                    tracing::debug!(binding = %name, trace_id, "upstream closed before answering");
                    return app_rx.reset(Some(HttpReset::status(502)));
                }
            },
            Signal::Reset(_) = app_tx.signal() => return,
            frame = app_rx.recv(), if !app_rx.is_done() => {
                if matches!(frame, Some(Frame::Abort(_)) | None) {
                    return;
                }
            }
        }
    };
    if let Some((status, why)) = unacceptable(&reply) {
        tracing::warn!(binding = %name, trace_id, status, "{why}: event stream refused");
        return app_rx.reset(Some(HttpReset::status(status)));
    }
    if app_tx.push(Frame::Begin(SseBegin::default())).is_err() {
        return;
    }

    let mut parser = Parser::new(max_event);
    let mut events = Vec::new();
    let mut ready = Vec::new();
    loop {
        tokio::select! {
            frame = http_rx.recv() => match frame {
                Some(Frame::Data(Data { payload: Some(chunk), .. })) => {
                    let read_at = Some(std::time::Instant::now());
                    let dropped = parser.dropped();
                    parser.feed_raw(chunk.clone(), &mut |e, raw| events.push((e, raw)));
                    if parser.dropped() > dropped {
                        metrics.dropped(Dropped::TooLarge, parser.dropped() - dropped);
                        tracing::warn!(binding = %name, trace_id, dropped = parser.dropped(),
                            "event larger than zilla.binding.sse.maximum.event.size dropped");
                    }
                    metrics.received.add(events.len() as u64);
                    frames(&mut events, &chunk, (batch, read_at), &mut ready);
                    for frame in ready.drain(..) {
                        let n = match &frame {
                            Frame::Data(d) => d.meta.events(),
                            _ => 0,
                        };
                        metrics.sent.add(n);
                        // Waits for credit: a slow client stops this read, and so the upstream.
                        if app_tx.send(frame).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Frame::Flush) => {
                    let _ = app_tx.push(Frame::Flush);
                }
                Some(Frame::Data(_) | Frame::Begin(_)) => {}
                Some(Frame::End(_)) => return app_tx.end(None),
                Some(Frame::Abort(_)) | None => return app_tx.abort(None),
            },
            Signal::Reset(_) = app_tx.signal() => return,
            frame = app_rx.recv(), if !app_rx.is_done() => {
                // The app ends its request when its response is finishing (or aborts it):
                // the upstream request goes at once.
                if matches!(frame, Some(Frame::End(_) | Frame::Abort(_)) | None) {
                    return;
                }
            }
        }
    }
}

/// The frames for the events one read completed. With `batch` (the opener takes events as they
/// are framed), each run of events whose bytes came exactly as they go on the wire travels as
/// one frame: a slice of `chunk` covering them, no copy. Other events are one frame each, their
/// fields parsed.
fn frames(
    events: &mut Vec<(Event, Option<Bytes>)>,
    chunk: &Bytes,
    (batch, read_at): (bool, Option<std::time::Instant>),
    out: &mut Vec<Frame<Sse>>,
) {
    // (from, to) in chunk, last id, number of events
    let mut run: Option<(usize, usize, Option<Bytes>, u32)> = None;
    let base = chunk.as_ptr() as usize;
    let flush = |run: &mut Option<(usize, usize, Option<Bytes>, u32)>,
                 out: &mut Vec<Frame<Sse>>| {
        if let Some((from, to, id, n)) = run.take() {
            out.push(Frame::Data(Data {
                flags: flags::COMPLETE,
                payload: Some(chunk.slice(from..to)),
                meta: SseEvent {
                    id,
                    event: None,
                    timestamp: 0,
                    batch: n,
                    read_at,
                },
            }));
        }
    };
    for (e, raw) in events.drain(..) {
        // The wire bytes are a slice of this read when they are a slice of `chunk`.
        let span = raw.filter(|_| batch).and_then(|raw| {
            let from = (raw.as_ptr() as usize).checked_sub(base)?;
            (from + raw.len() <= chunk.len()).then_some((from, from + raw.len()))
        });
        match (span, &mut run) {
            (Some((from, to)), Some((_, end, last, n))) if *end == from => {
                *end = to;
                *n += 1;
                if e.id.is_some() {
                    *last = e.id;
                }
            }
            (Some((from, to)), _) => {
                flush(&mut run, out);
                run = Some((from, to, e.id, 1));
            }
            (None, _) => {
                flush(&mut run, out);
                out.push(Frame::Data(Data {
                    flags: flags::COMPLETE,
                    payload: e.data,
                    meta: SseEvent {
                        id: e.id,
                        event: e.event,
                        timestamp: 0,
                        batch: 0,
                        read_at,
                    },
                }));
            }
        }
    }
    flush(&mut run, out);
}
