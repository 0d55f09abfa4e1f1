//! One event stream: app events in, `text/event-stream` bytes out, with keep-alives, challenges,
//! backpressure and both-way cancellation.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto_http::{Headers, Http, HttpBegin, HttpChallenge, HttpReset};
use proto_sse::metrics::{Dropped, SseMetrics};
use proto_sse::{Sse, SseEvent};
use sse_codec::{encode, Fields};
use tokio::time::{sleep_until, Instant};
use zilla_engine::{Data, Frame, Gauge, Graph, Reset, Rx, Signal, Stream, Tx};

use crate::validate::{Rule, Rules};

/// What to do with a client that stays too far behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlowClient {
    /// Keep waiting: backpressure holds the upstream (nothing is lost).
    Hold,
    /// Abort the client's stream (it reconnects with its last event id).
    Drop,
}

impl SlowClient {
    pub(crate) fn from_property(v: Option<&str>) -> Self {
        match v {
            Some("drop") => SlowClient::Drop,
            _ => SlowClient::Hold,
        }
    }
}

/// Per-binding settings, from options and engine properties.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) retry: Option<u64>,
    pub(crate) initial_comment: bool,
    pub(crate) idle: Option<Duration>,
    pub(crate) challenge_event: String,
    pub(crate) slow_client: SlowClient,
    pub(crate) slow_client_timeout: Duration,
    pub(crate) rules: Rules,
    pub(crate) metrics: SseMetrics,
}

/// What was decided for one stream when it opened.
pub(crate) struct StreamOptions {
    /// The client asked for `ext=timestamp`.
    pub(crate) timestamps: bool,
    /// Its events come from a shared feed (which counted them in once).
    pub(crate) shared: bool,
    /// The `requests` entry its events are checked against, if any.
    pub(crate) rule: Option<Arc<Rule>>,
}

/// Why the stream stopped.
enum Stop {
    /// The app ended its events, with its last id if it said one.
    Ended(Option<Bytes>),
    /// The browser went away (reply reset or request aborted).
    ClientGone,
    /// The client was too slow and the policy dropped it.
    Dropped,
}

/// Runs one stream until either side ends it.
pub(crate) async fn run(
    stream: Stream<Http>,
    mut app_tx: Tx<Sse>,
    mut app_rx: Rx<Sse>,
    settings: Arc<Settings>,
    options: StreamOptions,
    graph: &Arc<Graph>,
    name: &str,
) {
    let StreamOptions {
        timestamps,
        shared,
        rule,
    } = options;
    let (mut http_rx, mut http_tx, trace_id) = stream.into_halves();

    // Nothing goes to the client until the app accepts the stream. Boxed: the wait is not part
    // of the state an open stream keeps.
    match Box::pin(opening(
        &mut app_tx,
        &mut app_rx,
        &mut http_tx,
        &mut http_rx,
    ))
    .await
    {
        Opening::Accepted => {}
        Opening::Refused(ext) => return refuse(http_rx, http_tx, ext),
        Opening::ClientGone => return app_tx.end(None),
        Opening::ClientAborted(ext) => return app_tx.abort(ext),
    }

    let content_type: &'static [u8] = if timestamps {
        b"text/event-stream;ext=timestamp"
    } else {
        b"text/event-stream"
    };
    let mut begin = HttpBegin::status(200);
    begin
        .headers
        .set("content-type", Bytes::from_static(content_type));
    if http_tx.push(Frame::Begin(begin)).is_err() {
        return app_tx.end(None);
    }
    if let Some(ms) = settings.retry {
        let _ = http_tx.push(data(sse_codec::retry(ms)));
    }
    if settings.initial_comment {
        let _ = http_tx.push(data(sse_codec::comment()));
    }

    // One timer for the stream, pinned once: the keep-alive (after `idle` without a write)
    // and the slow-client deadline (after `slow_client_timeout` without credit) share it.
    // Events never touch it: running out of credit only records when, and the timer checks
    // both when it fires. The shutdown wait is also registered once, not per event.
    let idle = settings.idle;
    let mut last_write = Instant::now();
    let mut blocked_since: Option<Instant> = None;
    // The next write towards the client: its bytes, how many events, when they were read.
    let mut pending: Option<(Bytes, u64, Option<std::time::Instant>)> = None;
    let metrics = &settings.metrics;
    metrics.streams.inc();
    let _open = Decrement(&metrics.streams);
    let shutdown = graph.shutdown().clone();
    // In a block: the timer and the shutdown wait are gone before the stream's last words.
    let stop = {
        let timer = sleep_until(next_wake(last_write, idle, blocked_since, &settings));
        tokio::pin!(timer);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            if let Some((bytes, n, read_at)) = pending.take() {
                // Credit is checked without waiting; only a stream that has to wait records it.
                let now =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(http_tx.poll_ready(cx))).await;
                match now {
                    std::task::Poll::Ready(Ok(())) => {
                        // Counted as handed on, before the client can see it.
                        metrics.sent.add(n);
                        metrics.written(read_at);
                        if http_tx.push(data(bytes)).is_err() {
                            break Stop::ClientGone;
                        }
                        blocked_since = None;
                        last_write = Instant::now();
                    }
                    std::task::Poll::Ready(Err(_)) => break Stop::ClientGone,
                    std::task::Poll::Pending => {
                        pending = Some((bytes, n, read_at));
                        if blocked_since.is_none() {
                            let since = Instant::now();
                            blocked_since = Some(since);
                            let slow = since + settings.slow_client_timeout;
                            if slow < timer.deadline() {
                                timer.as_mut().reset(slow);
                            }
                        }
                    }
                }
            }
            let waiting = pending.is_some();
            tokio::select! {
                frame = app_rx.recv(), if !waiting => match frame {
                    Some(Frame::Data(mut d)) => {
                        if !shared {
                            metrics.received.add(d.meta.events());
                        }
                        if let Some(rule) = &rule {
                            if d.meta.batch > 0 {
                                // Events framed as they go out: each one's data checked, the bytes
                                // of those that pass forwarded as they came.
                                if !check_batch(&mut d, rule, &settings.rules, name, trace_id) {
                                    continue;
                                }
                            } else if let Some(payload) = d.payload.take() {
                                match settings.rules.check(rule, payload, name, trace_id) {
                                    Some(checked) => d.payload = Some(checked),
                                    None => continue,
                                }
                            }
                        }
                        let (n, read_at) = (d.meta.events(), d.meta.read_at);
                        let bytes = if d.meta.batch > 0 {
                            // Wire bytes of whole events (checked above when a rule applies).
                            d.payload.unwrap_or_default()
                        } else {
                            event_bytes(&d, timestamps)
                        };
                        pending = Some((bytes, n, read_at));
                    }
                    Some(Frame::Flush) => {
                        let _ = http_tx.push(Frame::Flush);
                    }
                    Some(Frame::End(ext)) => break Stop::Ended(ext.map(|end| end.id)),
                    Some(Frame::Abort(_)) | None => {
                        http_tx.abort(None);
                        return app_tx.end(None);
                    }
                    Some(Frame::Begin(_)) => {}
                },
                // Credit (while an event waits for it), a reset or a challenge from the client side.
                word = std::future::poll_fn(|cx| {
                    if waiting {
                        if let std::task::Poll::Ready(r) = http_tx.poll_ready(cx) {
                            return std::task::Poll::Ready(Word::Ready(r.is_ok()));
                        }
                    }
                    http_tx.poll_signal(cx).map(Word::Signal)
                }) => match word {
                    // Loop: the pending event goes out at the top.
                    Word::Ready(true) => {}
                    Word::Ready(false) | Word::Signal(Signal::Reset(_)) => break Stop::ClientGone,
                    Word::Signal(Signal::Challenge(ext)) => {
                        let event = challenge_event(ext, &settings.challenge_event);
                        let _ = http_tx.push(data(event));
                        last_write = Instant::now();
                    }
                },
                frame = http_rx.recv(), if !http_rx.is_done() => {
                    // The request ended (a GET's end is immediate): keep streaming. Its abort means
                    // the client is gone.
                    if let Some(Frame::Abort(ext)) = frame {
                        app_tx.abort(ext);
                        http_tx.abort(None);
                        return;
                    }
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if let Some(since) = blocked_since {
                        if now >= since + settings.slow_client_timeout {
                            match settings.slow_client {
                                SlowClient::Drop => {
                                    tracing::warn!(binding = name, trace_id, timeout = ?settings.slow_client_timeout,
                                        "client too far behind: dropping it (zilla.binding.sse.slow.client=drop); it reconnects with its last event id");
                                    break Stop::Dropped;
                                }
                                SlowClient::Hold => {
                                    tracing::warn!(binding = name, trace_id, timeout = ?settings.slow_client_timeout,
                                        "client too far behind: holding its upstream (zilla.binding.sse.slow.client=hold)");
                                    // Said once per wait: keep waiting for credit, without a deadline.
                                    blocked_since = None;
                                }
                            }
                        }
                    }
                    if let Some(idle) = idle {
                        if pending.is_none() && now >= last_write + idle {
                            let _ = http_tx.push(data(sse_codec::comment()));
                            last_write = now;
                        }
                    }
                    timer.as_mut().reset(next_wake(last_write, idle, blocked_since, &settings));
                }
                () = &mut cancelled => {
                    // Engine stopping: end cleanly, the client reconnects (elsewhere) with its id.
                    http_tx.end(None);
                    return app_tx.end(None);
                }
            }
        }
    };
    match stop {
        Stop::Ended(id) => {
            // The app's last id, as an event of its own, when the client takes it.
            if let Some(id) = id {
                let id = encode(&Fields {
                    id: Some(&id),
                    ..Default::default()
                });
                // Boxed, as the opening: not part of what an open stream keeps.
                if Box::pin(ready(&mut http_tx, &settings, name, trace_id))
                    .await
                    .is_ok()
                {
                    let _ = http_tx.push(data(id));
                }
            }
            http_tx.end(None);
            return app_tx.end(None);
        }
        Stop::ClientGone => {}
        Stop::Dropped => {
            if let Some((_, n, _)) = pending {
                metrics.dropped(Dropped::SlowConsumer, n);
            }
            http_tx.abort(None)
        }
    }
    // The app's reply is reset (app_rx dropped) and its request ended: the upstream goes now.
    app_tx.end(None);
    drop(app_rx);
}

/// Takes one from a gauge when dropped (an open stream, however its task ends).
struct Decrement<'a>(&'a Gauge);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the client side of the stream said.
enum Word {
    /// Credit came back (`true`), or the client reset the stream (`false`).
    Ready(bool),
    /// A reset or a challenge.
    Signal(Signal<Http>),
}

/// When the stream's one timer must fire next: the keep-alive, or the slow-client deadline if
/// the stream is waiting for credit, whichever comes first (far in the future if neither).
fn next_wake(
    last_write: Instant,
    idle: Option<Duration>,
    blocked_since: Option<Instant>,
    settings: &Settings,
) -> Instant {
    let far = last_write + Duration::from_secs(86_400 * 365);
    let keep_alive = idle.map_or(far, |idle| last_write + idle);
    let slow = blocked_since.map_or(far, |since| since + settings.slow_client_timeout);
    keep_alive.min(slow)
}

/// How the stream stood when the app answered (or the client left) before any response.
#[derive(Debug)]
enum Opening {
    /// The app sent its reply `Begin`.
    Accepted,
    /// The app refused the stream, with its reset extension (e.g. an upstream status).
    Refused(Option<HttpReset>),
    /// The client reset the http reply.
    ClientGone,
    /// The client aborted the http request.
    ClientAborted(Option<HttpReset>),
}

/// Waits for the app's answer. The app's frames come first (`biased`): an app that accepted the
/// stream and already finished (its `Begin`, events and `End` queued, its side of the request
/// dropped, which resets it) has accepted it; taking the reset first would turn a complete,
/// successful stream into a refusal (`404`).
async fn opening(
    app_tx: &mut Tx<Sse>,
    app_rx: &mut Rx<Sse>,
    http_tx: &mut Tx<Http>,
    http_rx: &mut Rx<Http>,
) -> Opening {
    loop {
        tokio::select! {
            biased;
            frame = app_rx.recv() => match frame {
                Some(Frame::Begin(_)) => return Opening::Accepted,
                Some(Frame::Data(_) | Frame::Flush) => {}
                // Refused after all (an upstream answered non-200): pass the refusal on.
                Some(frame @ (Frame::End(_) | Frame::Abort(_))) => {
                    // The refusal rides on the abort (an upstream's status); an app that
                    // gives none may still say why on the reset of the request.
                    return match frame.refusal() {
                        Some(ext) => Opening::Refused(Some(ext)),
                        None => Opening::Refused(app_tx.reset().await.0),
                    };
                }
                None => return Opening::Refused(app_tx.reset().await.0),
            },
            reset = app_tx.reset() => return Opening::Refused(reset.0),
            _ = http_tx.reset() => return Opening::ClientGone,
            frame = http_rx.recv(), if !http_rx.is_done() => {
                if let Some(Frame::Abort(ext)) = frame {
                    return Opening::ClientAborted(ext);
                }
            }
        }
    }
}

/// Refuses the http stream before any response, with the app's reset extension (e.g. the status
/// an upstream answered). The extension rides on the reply's abort: the request direction has
/// usually ended already (a GET ends at once), and a reset of an ended direction is a no-op, so
/// the status would be lost and the client would get `404`.
fn refuse(http_rx: Rx<Http>, http_tx: Tx<Http>, ext: Option<HttpReset>) {
    drop(http_rx);
    http_tx.abort(ext);
}

fn data(bytes: Bytes) -> Frame<Http> {
    Frame::Data(Data::bytes(bytes))
}

/// Checks each event of a batch (`d.meta.batch` events framed as they go on the wire). When
/// every one passes unchanged the batch goes on as it is; otherwise the frame is rebuilt from
/// those that pass (one converted by its model is encoded again). False when none is left.
fn check_batch(
    d: &mut Data<SseEvent>,
    rule: &Rule,
    rules: &Rules,
    name: &str,
    trace_id: u64,
) -> bool {
    let wire = d.payload.take().unwrap_or_default();
    // Set once the output differs from the input: the events kept so far.
    let mut rebuilt: Option<bytes::BytesMut> = None;
    let (mut kept, mut last_id) = (0u32, None);
    for event in sse_codec::split_events(&wire) {
        let checked = match &event.data {
            None => Some(None),
            Some(data) => rules.check(rule, data.clone(), name, trace_id).map(|out| {
                let same = out.as_ptr() == data.as_ptr() && out.len() == data.len();
                (!same).then_some(out)
            }),
        };
        match checked {
            Some(None) => {
                if let Some(out) = &mut rebuilt {
                    out.extend_from_slice(&wire[event.range.clone()]);
                }
            }
            Some(Some(converted)) => {
                let out = rebuilt.get_or_insert_with(|| wire[..event.range.start].into());
                out.extend_from_slice(&encode(&Fields {
                    timestamp: 0,
                    id: event.id.as_deref(),
                    event: event.event.as_deref(),
                    data: Some(&converted),
                }));
            }
            None => {
                rebuilt.get_or_insert_with(|| wire[..event.range.start].into());
                continue;
            }
        }
        kept += 1;
        if event.id.is_some() {
            last_id = event.id;
        }
    }
    if kept == 0 {
        return false;
    }
    match rebuilt {
        None => d.payload = Some(wire),
        Some(out) => {
            d.payload = Some(out.freeze());
            d.meta.batch = kept;
            d.meta.id = last_id;
        }
    }
    true
}

/// Encodes an event; the `timestamp:` line only when the client asked for timestamps and the
/// event carries one (as Zilla: an event without a timestamp gets no line).
fn event_bytes(d: &Data<SseEvent>, timestamps: bool) -> Bytes {
    let timestamp = if timestamps { d.meta.timestamp } else { 0 };
    encode(&Fields {
        timestamp,
        id: d.meta.id.as_deref(),
        event: d.meta.event.as_deref(),
        data: d.payload.as_deref(),
    })
}

/// `event:challenge` with `{"method":..,"headers":{..}}` as Zilla writes it.
fn challenge_event(ext: Option<HttpChallenge>, event_type: &str) -> Bytes {
    let headers = ext.map(|c| c.headers).unwrap_or_else(|| {
        let mut h = Headers::new();
        h.set(":method", "POST");
        h.set("content-type", "application/x-challenge-response");
        h
    });
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let method = quote(headers.get_str(":method").unwrap_or("POST"));
    let fields: Vec<String> = headers
        .iter()
        .filter(|(name, _)| !name.starts_with(b":"))
        .map(|(n, v)| {
            format!(
                "{}:{}",
                quote(&String::from_utf8_lossy(n)),
                quote(&String::from_utf8_lossy(v))
            )
        })
        .collect();
    // Zilla's field order: method, then headers.
    let json = format!(
        "{{\"method\":{method},\"headers\":{{{}}}}}",
        fields.join(",")
    );
    encode(&Fields {
        event: Some(event_type.as_bytes()),
        data: Some(json.as_bytes()),
        ..Default::default()
    })
}

/// Waits for credit towards the client, applying the slow-client policy.
async fn ready(
    tx: &mut Tx<Http>,
    settings: &Settings,
    name: &str,
    trace_id: u64,
) -> Result<(), Stop> {
    // The common case, credit available now, arms no timer.
    let now = std::future::poll_fn(|cx| std::task::Poll::Ready(tx.poll_ready(cx))).await;
    match now {
        std::task::Poll::Ready(Ok(())) => return Ok(()),
        std::task::Poll::Ready(Err(_)) => return Err(Stop::ClientGone),
        std::task::Poll::Pending => {}
    }
    match tokio::time::timeout(settings.slow_client_timeout, tx.ready()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Reset(_))) => Err(Stop::ClientGone),
        Err(_) => match settings.slow_client {
            SlowClient::Drop => {
                tracing::warn!(binding = name, trace_id, timeout = ?settings.slow_client_timeout,
                    "client too far behind: dropping it (zilla.binding.sse.slow.client=drop); it reconnects with its last event id");
                Err(Stop::Dropped)
            }
            SlowClient::Hold => {
                tracing::warn!(binding = name, trace_id, timeout = ?settings.slow_client_timeout,
                    "client too far behind: holding its upstream (zilla.binding.sse.slow.client=hold)");
                tx.ready().await.map_err(|_| Stop::ClientGone)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_app_that_accepted_and_finished_is_not_a_refusal() {
        use zilla_engine::direction;
        // Many times: with an unbiased select the reset would win about half of them.
        for _ in 0..64 {
            let (mut app_tx, app_req_rx) = direction::<Sse>(1024);
            let (mut app_reply_tx, mut app_rx) = direction::<Sse>(1024);
            let (mut http_tx, _http_reply_rx) = direction::<Http>(1024);
            let (_http_req_tx, mut http_rx) = direction::<Http>(1024);
            // The app accepts, sends its end, and drops its request side (a reset).
            app_reply_tx.push(Frame::Begin(Default::default())).unwrap();
            app_reply_tx.end(None);
            drop(app_req_rx);
            let opening = opening(&mut app_tx, &mut app_rx, &mut http_tx, &mut http_rx).await;
            assert!(matches!(opening, Opening::Accepted), "{opening:?}");
        }
    }

    #[tokio::test]
    async fn refusal_status_survives_an_ended_request() {
        use proto_http::HttpReset;
        use zilla_engine::direction;
        let (mut req_tx, mut req_rx) = direction::<Http>(1024);
        let (reply_tx, mut reply_rx) = direction::<Http>(1024);
        req_tx.push(Frame::End(None)).unwrap();
        assert!(matches!(req_rx.recv().await, Some(Frame::End(_))));
        refuse(req_rx, reply_tx, Some(HttpReset::status(502)));
        match reply_rx.recv().await {
            Some(Frame::Abort(Some(ext))) => assert_eq!(ext.status, 502),
            other => panic!("expected an abort with the status, got {other:?}"),
        }
    }

    #[test]
    fn challenge_event_matches_zilla() {
        let mut h = Headers::new();
        h.set(":method", "POST");
        h.set("content-type", "application/x-challenge-response");
        let ext = Some(HttpChallenge { headers: h });
        assert_eq!(
            challenge_event(ext, "challenge"),
            "event:challenge\ndata:{\"method\":\"POST\",\"headers\":{\"content-type\":\"application/x-challenge-response\"}}\n\n"
        );
    }
}
