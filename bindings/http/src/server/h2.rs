//! HTTP/2 on a byte stream, with the `h2` crate over [`StreamIo`]: one task per request stream,
//! request body credit tied to the `http` stream's credit, response data sent as capacity
//! allows, resets in both directions.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue};
use proto_http::{Headers, HttpTrailers};
use proto_tcp::{StreamIo, Tcp};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::metrics::Meter;
use zilla_engine::{Data, Frame, Graph, Rx, Tx};

use super::{
    challenge_ext, ready_or_reset, recv, refused, Answer, Opened, Outcome, Server, SessionTimer,
    SessionUpdates, TimerEvent,
};

/// Response headers that are connection-specific in HTTP/2 (forbidden there).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Serves HTTP/2 on a connection; `prefix` holds bytes already read from it (the preface).
pub(crate) async fn serve(
    server: Arc<Server>,
    graph: Arc<Graph>,
    tx: Tx<Tcp>,
    rx: Rx<Tcp>,
    prefix: Bytes,
    scheme: &'static str,
) {
    let io = Rewind {
        prefix,
        inner: StreamIo::new(tx, rx),
    };
    let window = u32::try_from(graph.window())
        .unwrap_or(u32::MAX)
        .min((1 << 31) - 1);
    let mut builder = h2::server::Builder::new();
    builder
        .max_header_list_size(u32::try_from(server.max_header_list_size).unwrap_or(u32::MAX))
        .max_concurrent_streams(u32::try_from(server.concurrent_streams).unwrap_or(u32::MAX))
        .initial_window_size(window)
        // Streams reset before they are accepted, and resets the server must send for the
        // client's protocol errors, are bounded (ENHANCE_YOUR_CALM beyond).
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(1024));
    // The handshake (the client's SETTINGS after the preface) must finish within the request
    // timeout, like an HTTP/1.1 request head.
    let timeout = server.request_timeout;
    let mut conn = match tokio::time::timeout(timeout, builder.handshake::<_, Bytes>(io)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(binding = %server.name(), error = %e, "http/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(binding = %server.name(), "http/2 handshake timed out");
            return;
        }
    };
    let updates = server
        .auth
        .is_some()
        .then(|| Arc::new(watch::channel(None).0));
    // A connection with no open stream for the request timeout is closed (GOAWAY), as an idle
    // HTTP/1.1 keep-alive connection is. Streams count themselves in and out.
    let open = Arc::new(OpenStreams::default());
    let idle = tokio::time::sleep(timeout);
    tokio::pin!(idle);
    let mut closing = false;
    let mut drained = false;
    let mut calmed = false;
    loop {
        tokio::select! {
            // Draining: GOAWAY, so the client opens its next streams elsewhere; the open ones
            // go on.
            () = graph.draining().cancelled(), if !drained => {
                drained = true;
                conn.graceful_shutdown();
            }
            accepted = conn.accept() => match accepted {
                Some(Ok(_)) if open.recent_resets() > server.max_client_resets => {
                    if !calmed {
                        calmed = true;
                        tracing::warn!(binding = %server.name(), resets = open.recent_resets(),
                            "http/2 client reset too many streams (rapid reset): connection closed with ENHANCE_YOUR_CALM (zilla.binding.http.server.max.client.resets per 10 s)");
                        conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    }
                }
                Some(Ok((request, respond))) => {
                    let counted = open.enter();
                    graph.spawn(stream(
                        server.clone(),
                        graph.clone(),
                        request,
                        respond,
                        scheme,
                        updates.clone(),
                        counted,
                    ));
                }
                Some(Err(e)) => {
                    tracing::debug!(binding = %server.name(), error = %e, "http/2 connection failed");
                    break;
                }
                None => break,
            },
            () = &mut idle => {
                let now = tokio::time::Instant::now();
                if closing {
                    // A client that does not answer the GOAWAY's PING: drop the connection.
                    break;
                }
                match open.idle_since() {
                    Some(since) if now >= since + timeout => {
                        tracing::debug!(binding = %server.name(), "http/2 connection idle: closing");
                        conn.graceful_shutdown();
                        closing = true;
                        idle.as_mut().reset(now + timeout);
                    }
                    Some(since) => idle.as_mut().reset(since + timeout),
                    None => idle.as_mut().reset(now + timeout),
                }
            }
        }
    }
}

/// The streams open on one HTTP/2 connection, and since when it has had none.
#[derive(Debug)]
struct OpenStreams {
    count: std::sync::atomic::AtomicUsize,
    /// When the count last fell to zero (the connection's start at first).
    since: std::sync::Mutex<tokio::time::Instant>,
    /// Streams the client reset before their response ended, in the current window (start,
    /// count): a flood of them (the "rapid reset" attack) closes the connection.
    resets: std::sync::Mutex<(tokio::time::Instant, u32)>,
}

/// How long the window of client resets lasts.
const RESET_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for OpenStreams {
    fn default() -> Self {
        let now = tokio::time::Instant::now();
        OpenStreams {
            count: Default::default(),
            since: std::sync::Mutex::new(now),
            resets: std::sync::Mutex::new((now, 0)),
        }
    }
}

impl OpenStreams {
    fn enter(self: &Arc<Self>) -> StreamCount {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        StreamCount(self.clone())
    }

    /// The client reset a stream before its response ended.
    fn client_reset(&self) {
        let mut r = self.resets.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        if now >= r.0 + RESET_WINDOW {
            *r = (now, 0);
        }
        r.1 += 1;
    }

    /// Client resets in the current window.
    fn recent_resets(&self) -> u32 {
        let r = self.resets.lock().unwrap_or_else(|e| e.into_inner());
        if tokio::time::Instant::now() >= r.0 + RESET_WINDOW {
            0
        } else {
            r.1
        }
    }

    /// Since when no stream has been open, or `None` while one is.
    fn idle_since(&self) -> Option<tokio::time::Instant> {
        if self.count.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            return None;
        }
        Some(*self.since.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One open stream; dropping it (the stream's task ends) counts it out.
#[derive(Debug)]
struct StreamCount(Arc<OpenStreams>);

impl Drop for StreamCount {
    fn drop(&mut self) {
        let open = &self.0;
        if open
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed)
            == 1
        {
            *open.since.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
        }
    }
}

/// One request stream.
async fn stream(
    server: Arc<Server>,
    graph: Arc<Graph>,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    scheme: &'static str,
    updates: Option<Arc<SessionUpdates>>,
    counted: StreamCount,
) {
    let (parts, mut body) = request.into_parts();
    let mut headers = Headers::new();
    headers.append(
        ":method",
        Bytes::copy_from_slice(parts.method.as_str().as_bytes()),
    );
    headers.append(
        ":scheme",
        Bytes::copy_from_slice(parts.uri.scheme_str().unwrap_or(scheme).as_bytes()),
    );
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| parts.headers.get("host").map(HeaderValue::as_bytes));
    if let Some(a) = authority {
        headers.append(":authority", Bytes::copy_from_slice(a));
    }
    headers.append(
        ":path",
        Bytes::copy_from_slice(
            parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .as_bytes(),
        ),
    );
    for (name, value) in parts.headers.iter() {
        if name == "host" {
            continue;
        }
        headers.append(
            Bytes::copy_from_slice(name.as_str().as_bytes()),
            Bytes::copy_from_slice(value.as_bytes()),
        );
    }
    let head = parts.method == http::Method::HEAD;

    let opened = match server.admit(&graph, headers, updates.as_deref()) {
        Outcome::Answer(answer) => {
            let _ = send_answer(&mut respond, &answer);
            return;
        }
        Outcome::Open(opened) => opened,
    };
    let Opened {
        tx,
        rx,
        session,
        origin,
        mut meter,
        guard,
    } = opened;
    let mut timer = SessionTimer::new(session.as_ref(), guard, updates.map(|u| u.subscribe()));
    let mut req_tx = Some(tx);
    let mut resp_rx = Some(rx);
    let mut respond = Some(respond);
    let mut send: Option<SendStream<Bytes>> = None;
    let mut body_done = body.is_end_stream();
    let mut pending: Option<Bytes> = None;
    let mut refusal = None;
    if body_done {
        if let Some(tx) = req_tx.take() {
            tx.end(None);
        }
    }
    loop {
        tokio::select! {
            biased;
            () = poll_fn(|cx| poll_gone(&mut respond, &mut send, cx)) => {
                counted.0.client_reset();
                return;
            }
            frame = recv(&mut resp_rx) => {
                let Some(frame) = frame else {
                    resp_rx = None;
                    continue;
                };
                match frame {
                    Frame::Begin(begin) => {
                        let Some(r) = respond.as_mut() else { continue };
                        let mut headers = begin.headers;
                        server.decorate(origin.as_ref(), &mut headers);
                        let Ok(response) = response(&headers) else {
                            r.send_reset(h2::Reason::INTERNAL_ERROR);
                            return;
                        };
                        match r.send_response(response, false) {
                            Ok(s) => {
                                send = Some(s);
                                respond = None;
                            }
                            Err(_) => return,
                        }
                    }
                    Frame::Data(d) => {
                        let (Some(s), Some(payload)) = (send.as_mut(), d.payload) else { continue };
                        meter.response(payload.len());
                        if !head && send_all(s, payload).await.is_err() {
                            return;
                        }
                    }
                    Frame::Flush => {}
                    Frame::End(ext) => {
                        resp_rx = None;
                        if let Some(s) = send.as_mut() {
                            let trailers = ext.filter(|t| !t.0.is_empty());
                            let _ = match trailers {
                                Some(t) => s.send_trailers(header_map(&t.0)),
                                None => s.send_data(Bytes::new(), true),
                            };
                        } else if let Some(mut r) = respond.take() {
                            let mut answer = refused(refusal.take());
                            server.decorate(origin.as_ref(), &mut answer.headers);
                            let _ = send_answer(&mut r, &answer);
                        }
                        if body_done {
                            return;
                        }
                    }
                    Frame::Abort(ext) => {
                        resp_rx = None;
                        if let Some(s) = send.as_mut() {
                            s.send_reset(h2::Reason::NO_ERROR);
                            return;
                        } else if let Some(mut r) = respond.take() {
                            let mut answer = refused(ext.or(refusal.take()));
                            server.decorate(origin.as_ref(), &mut answer.headers);
                            let _ = send_answer(&mut r, &answer);
                        }
                        if body_done {
                            return;
                        }
                    }
                }
            }
            ready = ready_or_reset(&mut req_tx, pending.is_some()) => match ready {
                Ok(()) => {
                    if let (Some(tx), Some(d)) = (req_tx.as_mut(), pending.take()) {
                        let len = d.len();
                        meter.request(len);
                        if let Err(reset) = tx.push(Frame::Data(Data::bytes(d))) {
                            refusal = reset.0;
                            req_tx = None;
                        }
                        let _ = body.flow_control().release_capacity(len);
                    }
                }
                Err(reset) => {
                    refusal = reset.0;
                    req_tx = None;
                    if let Some(d) = pending.take() {
                        let _ = body.flow_control().release_capacity(d.len());
                    }
                }
            },
            data = body.data(), if !body_done && pending.is_none() => match data {
                Some(Ok(d)) => {
                    if req_tx.is_some() {
                        pending = Some(d);
                    } else {
                        let _ = body.flow_control().release_capacity(d.len());
                    }
                }
                Some(Err(_)) => {
                    body_done = true;
                    if let Some(tx) = req_tx.take() {
                        tx.abort(None);
                    }
                }
                None => {
                    body_done = true;
                    let trailers = body.trailers().await.ok().flatten();
                    if let Some(tx) = req_tx.take() {
                        let ext = trailers.map(|t| HttpTrailers(headers_of(&t)));
                        tx.end(ext);
                    }
                    if resp_rx.is_none() {
                        return;
                    }
                }
            },
            event = timer.next() => match event {
                TimerEvent::Challenge => {
                    if let Some(rx) = &resp_rx {
                        rx.challenge(challenge_ext());
                    }
                }
                TimerEvent::Expire => {
                    if let Some(s) = send.as_mut() {
                        s.send_reset(h2::Reason::NO_ERROR);
                    } else if let Some(r) = respond.as_mut() {
                        r.send_reset(h2::Reason::NO_ERROR);
                    }
                    return;
                }
            },
        }
        if resp_rx.is_none() && body_done {
            return;
        }
    }
}

/// Ready when the client reset the stream or the connection is gone.
fn poll_gone(
    respond: &mut Option<SendResponse<Bytes>>,
    send: &mut Option<SendStream<Bytes>>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if let Some(s) = send {
        return s.poll_reset(cx).map(|_| ());
    }
    if let Some(r) = respond {
        return r.poll_reset(cx).map(|_| ());
    }
    Poll::Pending
}

/// Sends `data`, waiting for the client's flow-control window.
async fn send_all(s: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), ()> {
    while !data.is_empty() {
        s.reserve_capacity(data.len());
        let capacity = match poll_fn(|cx| s.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            _ => return Err(()),
        };
        if capacity == 0 {
            continue;
        }
        let chunk = data.split_to(capacity.min(data.len()));
        s.send_data(chunk, false).map_err(|_| ())?;
    }
    Ok(())
}

/// Sends a server answer as a complete response.
fn send_answer(respond: &mut SendResponse<Bytes>, answer: &Answer) -> Result<(), ()> {
    let mut headers = answer.headers.clone();
    headers.set(":status", Bytes::from(answer.status.to_string()));
    if !matches!(answer.status, 204 | 304) && headers.get("content-length").is_none() {
        headers.append("content-length", Bytes::from_static(b"0"));
    }
    let r = response(&headers)?;
    respond.send_response(r, true).map(|_| ()).map_err(|_| ())
}

/// An `http::Response` from reply headers (`:status` and the rest).
fn response(headers: &Headers) -> Result<http::Response<()>, ()> {
    let status = headers
        .get_str(":status")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(200);
    let mut r = http::Response::builder()
        .status(status)
        .body(())
        .map_err(|_| ())?;
    *r.headers_mut() = header_map(headers);
    Ok(r)
}

/// The non-pseudo, non-connection-specific headers as a `HeaderMap` (invalid ones skipped).
fn header_map(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (n, v) in headers.iter() {
        if n.starts_with(b":")
            || CONNECTION_SPECIFIC
                .iter()
                .any(|c| c.as_bytes() == n.as_ref())
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(n),
            HeaderValue::from_maybe_shared(v.clone()),
        ) {
            map.append(name, value);
        }
    }
    map
}

fn headers_of(map: &HeaderMap) -> Headers {
    map.iter()
        .map(|(n, v)| {
            (
                Bytes::copy_from_slice(n.as_str().as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            )
        })
        .collect()
}

/// A byte stream whose first bytes were already read: they are read again first.
#[derive(Debug)]
struct Rewind {
    prefix: Bytes,
    inner: StreamIo,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
