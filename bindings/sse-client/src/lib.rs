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

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use proto_http::{Headers, Http, HttpBegin, HttpReset};
use proto_sse::config::{SseCondition, SseOptions};
use proto_sse::metrics::{Dropped, SseMetrics};
use proto_sse::{Sse, SseBegin, SseEvent};
use sse_codec::{Event, Parser};
use zilla_engine::{
    flags, handler_binding, Binding, BindingContext, BindingDescriptor, BindingFactory, BindingId,
    ConfigErrors, Data, Frame, Graph, Handler, Kind, Nothing, Protocols, Reset, Routes, Rx, Source,
    Stream, Values,
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
        let batch = stream.begin.batch;
        let (app_rx, app_tx, trace_id) = stream.into_halves();
        // A GET has no body: end the request now.
        http_tx.end(None);
        // No task of its own: the opener's task parses as it reads (see `Upstream`).
        app_tx.pull(Upstream {
            http_rx,
            app_rx,
            name: self.name.clone(),
            metrics: self.metrics.clone(),
            batch,
            trace_id,
            streaming: false,
            parser: Parser::new(self.max_event),
            events: Vec::new(),
            ready: VecDeque::new(),
        });
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

/// One stream's upstream, read by the opener's task: the events of the upstream's
/// `text/event-stream` are made when the opener asks for them ([`Source`]), so the sse client
/// runs no task per stream and an event is not handed through a pipe of its own. The opener
/// asking only when it has room is the backpressure: a slow client stops this read, and so
/// the upstream.
struct Upstream {
    http_rx: Rx<Http>,
    /// The opener's request: its abort (or, once streaming, its end) ends the stream and the
    /// upstream request goes at once.
    app_rx: Rx<Sse>,
    name: String,
    metrics: SseMetrics,
    /// The opener takes events as framed upstream, several per frame.
    batch: bool,
    trace_id: u64,
    /// The upstream answered with an event stream.
    streaming: bool,
    parser: Parser,
    /// Events parsed from the last read (kept for their capacity).
    events: Vec<(Event, Option<Bytes>)>,
    /// Frames made from the last read, not yet taken.
    ready: VecDeque<Frame<Sse>>,
}

impl Upstream {
    /// Refuses the stream: the reply is aborted with `status`, which the opener answers.
    fn refuse(&mut self, status: u16) -> Poll<Frame<Sse>> {
        Poll::Ready(Frame::Abort(Some(HttpReset::status(status))))
    }

    /// Parses one upstream read into `ready`.
    fn read(&mut self, chunk: Bytes) {
        let read_at = Some(std::time::Instant::now());
        let dropped = self.parser.dropped();
        let events = &mut self.events;
        self.parser
            .feed_raw(chunk.clone(), &mut |e, raw| events.push((e, raw)));
        if self.parser.dropped() > dropped {
            self.metrics
                .dropped(Dropped::TooLarge, self.parser.dropped() - dropped);
            tracing::warn!(binding = %self.name, trace_id = self.trace_id, dropped = self.parser.dropped(),
                "event larger than zilla.binding.sse.maximum.event.size dropped");
        }
        self.metrics.received.add(self.events.len() as u64);
        frames(
            &mut self.events,
            &chunk,
            (self.batch, read_at),
            &mut self.ready,
        );
    }
}

impl Source<Sse> for Upstream {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Frame<Sse>> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                if let Frame::Data(d) = &frame {
                    self.metrics.sent.add(d.meta.events());
                }
                return Poll::Ready(frame);
            }
            let frame = match self.http_rx.poll_recv(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    // Nothing from upstream: then (not before every read) the opener's request,
                    // whose abort (or, once streaming, its end) ends the stream.
                    if self.app_rx.is_done() {
                        return Poll::Pending;
                    }
                    let ends = match std::task::ready!(self.app_rx.poll_recv(cx)) {
                        Some(Frame::Abort(_)) | None => true,
                        Some(Frame::End(_)) => self.streaming,
                        Some(_) => false,
                    };
                    if ends {
                        return Poll::Ready(Frame::Abort(None));
                    }
                    continue;
                }
            };
            if !self.streaming {
                match frame {
                    Some(Frame::Begin(reply)) => {
                        if let Some((status, why)) = unacceptable(&reply) {
                            tracing::warn!(binding = %self.name, trace_id = self.trace_id, status,
                                "{why}: event stream refused");
                            return self.refuse(status);
                        }
                        self.streaming = true;
                        return Poll::Ready(Frame::Begin(SseBegin::default()));
                    }
                    Some(Frame::Data(_) | Frame::Flush) => {}
                    Some(Frame::End(_) | Frame::Abort(_)) | None => {
                        tracing::debug!(binding = %self.name, trace_id = self.trace_id,
                            "upstream closed before answering");
                        return self.refuse(502);
                    }
                }
                continue;
            }
            match frame {
                Some(Frame::Data(Data {
                    payload: Some(chunk),
                    ..
                })) => self.read(chunk),
                Some(Frame::Flush) => self.ready.push_back(Frame::Flush),
                Some(Frame::Data(_) | Frame::Begin(_)) => {}
                Some(Frame::End(_)) => return Poll::Ready(Frame::End(None)),
                Some(Frame::Abort(_)) | None => return Poll::Ready(Frame::Abort(None)),
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
    out: &mut VecDeque<Frame<Sse>>,
) {
    // (from, to) in chunk, last id, number of events
    let mut run: Option<(usize, usize, Option<Bytes>, u32)> = None;
    let base = chunk.as_ptr() as usize;
    let flush = |run: &mut Option<(usize, usize, Option<Bytes>, u32)>,
                 out: &mut VecDeque<Frame<Sse>>| {
        if let Some((from, to, id, n)) = run.take() {
            out.push_back(Frame::Data(Data {
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
                out.push_back(Frame::Data(Data {
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
