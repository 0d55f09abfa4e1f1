//! One event stream: app events in, `text/event-stream` bytes out, with keep-alives, challenges,
//! backpressure and both-way cancellation.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto_http::{Headers, Http, HttpBegin, HttpChallenge};
use proto_sse::{Sse, SseEnd, SseEvent};
use sse_codec::{encode, Fields};
use tokio::time::{sleep_until, Instant};
use zilla_engine::{Data, Frame, Graph, Reset, Rx, Signal, Stream, Tx};

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
}

/// Why the stream stopped.
enum Stop {
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
    timestamps: bool,
    graph: &Arc<Graph>,
    name: &str,
) {
    let Stream {
        rx: mut http_rx,
        tx: mut http_tx,
        trace_id,
        ..
    } = stream;

    // Nothing goes to the client until the app accepts the stream.
    loop {
        tokio::select! {
            frame = app_rx.recv() => match frame {
                Some(Frame::Begin(_)) => break,
                Some(Frame::Data(_) | Frame::Flush(_)) => {}
                // Refused after all (an upstream answered non-200): pass the refusal on.
                Some(Frame::End(_) | Frame::Abort(_)) | None => {
                    let reset = app_tx.reset().await;
                    http_rx.reset(reset.0);
                    return;
                }
            },
            reset = app_tx.reset() => {
                http_rx.reset(reset.0);
                return;
            }
            _ = http_tx.reset() => return app_tx.end(None),
            frame = http_rx.recv(), if !http_rx.is_done() => {
                if let Some(Frame::Abort(ext)) = frame {
                    return app_tx.abort(ext);
                }
            }
        }
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

    let idle = settings.idle.unwrap_or(Duration::from_secs(86_400 * 365));
    let mut last_write = Instant::now();
    let mut idle_at = last_write + idle;
    let shutdown = graph.shutdown().clone();

    let stop = loop {
        tokio::select! {
            frame = app_rx.recv() => match frame {
                Some(Frame::Data(d)) => {
                    let bytes = event_bytes(&d, timestamps);
                    if let Err(stop) = ready(&mut http_tx, &settings, name, trace_id).await {
                        break stop;
                    }
                    if http_tx.push(data(bytes)).is_err() {
                        break Stop::ClientGone;
                    }
                    last_write = Instant::now();
                }
                Some(Frame::Flush(ext)) => {
                    let _ = http_tx.push(Frame::Flush(ext));
                }
                Some(Frame::End(ext)) => {
                    if let Some(end) = ext.and_then(|e| e.downcast::<SseEnd>().ok()) {
                        let id = encode(&Fields { id: Some(&end.id), ..Default::default() });
                        if ready(&mut http_tx, &settings, name, trace_id).await.is_ok() {
                            let _ = http_tx.push(data(id));
                        }
                    }
                    http_tx.end(None);
                    return app_tx.end(None);
                }
                Some(Frame::Abort(_)) | None => {
                    http_tx.abort(None);
                    return app_tx.end(None);
                }
                Some(Frame::Begin(_)) => {}
            },
            signal = http_tx.signal() => match signal {
                Signal::Reset(_) => break Stop::ClientGone,
                Signal::Challenge(ext) => {
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
            _ = sleep_until(idle_at), if settings.idle.is_some() => {
                // One timer entry per stream, re-armed from the last write: events don't
                // touch the timer.
                let due = last_write + idle;
                if Instant::now() >= due {
                    let _ = http_tx.push(data(sse_codec::comment()));
                    last_write = Instant::now();
                }
                idle_at = last_write + idle;
            }
            _ = shutdown.cancelled() => {
                // Engine stopping: end cleanly, the client reconnects (elsewhere) with its id.
                http_tx.end(None);
                return app_tx.end(None);
            }
        }
    };
    match stop {
        Stop::ClientGone => {}
        Stop::Dropped => http_tx.abort(None),
    }
    // The app's reply is reset (app_rx dropped) and its request ended: the upstream goes now.
    app_tx.end(None);
    drop(app_rx);
}

fn data(bytes: Bytes) -> Frame<Http> {
    Frame::Data(Data::bytes(bytes))
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
fn challenge_event(ext: zilla_engine::Ext, event_type: &str) -> Bytes {
    let headers = ext
        .and_then(|e| e.downcast::<HttpChallenge>().ok())
        .map(|c| c.headers)
        .unwrap_or_else(|| {
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

    #[test]
    fn challenge_event_matches_zilla() {
        let mut h = Headers::new();
        h.set(":method", "POST");
        h.set("content-type", "application/x-challenge-response");
        let ext: zilla_engine::Ext = Some(Box::new(HttpChallenge { headers: h }));
        assert_eq!(
            challenge_event(ext, "challenge"),
            "event:challenge\ndata:{\"method\":\"POST\",\"headers\":{\"content-type\":\"application/x-challenge-response\"}}\n\n"
        );
    }
}
