//! HTTP/2 to the upstream, with the `h2` crate over [`StreamIo`]: one connection per origin
//! carries many requests, each an h2 stream driven by the task of its exchange.
//!
//! - A connection is shared through the pool ([`Origin::h2`]); its `Connection` future runs in
//!   its own task, which also takes it out of the pool when the upstream closes it or sends
//!   GOAWAY, when it has carried no stream for the idle timeout, and at shutdown. Out of the pool,
//!   h2 closes it (GOAWAY) once its last stream ends.
//! - Requests beyond the server's `SETTINGS_MAX_CONCURRENT_STREAMS` queue on the connection
//!   (h2 opens them as streams close), bounded by the response timeout: no second connection is
//!   opened for them.
//! - With prior knowledge, requests that arrive while the origin's connection is being set up
//!   wait for it instead of opening their own.
//! - Request body credit: a data frame is taken from the app only once the previous one was
//!   handed to h2 within the stream's flow-control window. Response data is handed to the app as
//!   it arrives and its h2 capacity released once the app's pipe took it, so a slow app stops the
//!   upstream stream (and only that stream).

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue};
use proto_http::{Headers, Http, HttpBegin, HttpTrailers};
use proto_tcp::StreamIo;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use zilla_engine::{Data, Frame, Reset, Rx, Session, Tx};

use super::codec::RequestBody;
use super::{Conn, Exchange, Failure, Key, Pool, Request, Slot};

/// Request headers that are connection-specific, never sent over HTTP/2 (RFC 9113 §8.2.2).
fn is_connection_specific(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection"
            | b"keep-alive"
            | b"proxy-connection"
            | b"transfer-encoding"
            | b"upgrade"
            | b"http2-settings"
            | b"host"
    )
}

/// A pooled HTTP/2 connection: the handle to open streams on it.
pub(super) struct Entry {
    id: u64,
    send: SendRequest<Bytes>,
    state: Arc<State>,
}

/// What a connection's task and the requests on it share.
struct State {
    /// Requests in flight.
    active: AtomicUsize,
    /// When the last request ended (milliseconds since `epoch`).
    idle_since: AtomicU64,
    epoch: Instant,
}

impl State {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A request's claim on a connection: counts as in flight until dropped.
pub(super) struct Handle {
    send: SendRequest<Bytes>,
    state: Arc<State>,
    id: u64,
}

impl Handle {
    fn new(entry: &Entry) -> Self {
        entry.state.active.fetch_add(1, Ordering::SeqCst);
        Handle {
            send: entry.send.clone(),
            state: entry.state.clone(),
            id: entry.id,
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.state
            .idle_since
            .store(self.state.now(), Ordering::SeqCst);
        self.state.active.fetch_sub(1, Ordering::SeqCst);
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Marks an origin's h2 connection as being set up; dropping it (set up or failed) wakes the
/// requests waiting for it.
struct Connecting {
    pool: Arc<Pool>,
    key: Key,
    _done: watch::Sender<()>,
}

impl Drop for Connecting {
    fn drop(&mut self) {
        let mut origins = self.pool.lock();
        if let Some(origin) = origins.get_mut(&self.key) {
            origin.h2_connecting = None;
            // A failed set-up leaves nothing behind.
            if origin.open == 0 && origin.idle.is_empty() && origin.h2.is_empty() {
                origins.remove(&self.key);
            }
        }
    }
}

/// What the pool offers a request that may use HTTP/2.
pub(super) enum Lookup {
    /// A connection of the origin.
    Ready(Handle),
    /// Set up a new connection with prior knowledge (this counted place).
    Connect(Slot, ConnectingToken),
    /// No HTTP/2 connection (and no prior knowledge): take the HTTP/1.1 path.
    None,
}

/// Opaque [`Connecting`] marker handed to the request that sets up the connection.
pub(super) struct ConnectingToken(#[allow(dead_code)] Connecting);

/// Finds an HTTP/2 connection of `key`; with `prior_knowledge`, waits for one being set up or
/// claims the right to set one up.
pub(super) async fn lookup(
    cx: &Exchange,
    key: &Key,
    prior_knowledge: bool,
    deadline: Instant,
) -> Result<Lookup, Failure> {
    let pool = &cx.pool;
    loop {
        let wait = {
            let mut origins = pool.lock();
            let origin = origins.entry(key.clone()).or_default();
            if let Some(entry) = origin.h2.last() {
                return Ok(Lookup::Ready(Handle::new(entry)));
            }
            if !prior_knowledge {
                return Ok(Lookup::None);
            }
            match &origin.h2_connecting {
                Some(rx) => rx.clone(),
                None => {
                    if origin.open >= pool.max {
                        return Err(super::exhausted(pool));
                    }
                    origin.open += 1;
                    let (done, rx) = watch::channel(());
                    origin.h2_connecting = Some(rx);
                    let slot = Slot {
                        pool: pool.clone(),
                        key: key.clone(),
                    };
                    let token = ConnectingToken(Connecting {
                        pool: pool.clone(),
                        key: key.clone(),
                        _done: done,
                    });
                    return Ok(Lookup::Connect(slot, token));
                }
            }
        };
        let mut wait = wait;
        tokio::select! {
            _ = wait.changed() => {}
            _ = sleep_until(deadline) => return Err(Failure::timeout(cx)),
        }
    }
}

/// Starts HTTP/2 on a fresh connection: preface and SETTINGS, then its task; the connection
/// joins the pool and the first request gets a handle on it.
pub(super) async fn handshake(cx: &Exchange, conn: Conn) -> Result<Handle, Failure> {
    let Conn { tx, rx, slot, .. } = conn;
    let io = StreamIo::new(tx, rx);
    let window = u32::try_from(cx.graph.window())
        .unwrap_or(u32::MAX)
        .min((1 << 31) - 1);
    // Every stream may hold a full window unread without stopping the others.
    let connection_window = window.saturating_mul(1024).min((1 << 31) - 1);
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(window)
        .initial_connection_window_size(connection_window)
        .enable_push(false);
    let (send, connection) = builder
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| Failure::bad_gateway(format!("HTTP/2 handshake failed: {e}")))?;
    let state = Arc::new(State {
        active: AtomicUsize::new(0),
        idle_since: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    let entry = Entry {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        send,
        state: state.clone(),
    };
    let handle = Handle::new(&entry);
    let id = entry.id;
    {
        let mut origins = cx.pool.lock();
        origins.entry(slot.key.clone()).or_default().h2.push(entry);
    }
    cx.graph.spawn(drive(
        cx.graph.clone(),
        connection,
        state,
        id,
        slot,
        cx.idle_timeout,
    ));
    Ok(handle)
}

/// Takes connection `id` out of its origin's pool (new requests no longer find it).
fn unregister(pool: &Pool, key: &Key, id: u64) {
    let mut origins = pool.lock();
    if let Some(origin) = origins.get_mut(key) {
        origin.h2.retain(|e| e.id != id);
    }
}

/// Runs a connection until h2 closes it.
async fn drive(
    graph: Arc<zilla_engine::Graph>,
    connection: h2::client::Connection<StreamIo, Bytes>,
    state: Arc<State>,
    id: u64,
    slot: Slot,
    idle_timeout: Duration,
) {
    tokio::pin!(connection);
    let mut pooled = true;
    let mut check = Instant::now() + idle_timeout;
    loop {
        tokio::select! {
            result = &mut connection => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "upstream http/2 connection failed");
                }
                break;
            }
            _ = graph.shutdown().cancelled(), if pooled => {
                unregister(&slot.pool, &slot.key, id);
                pooled = false;
            }
            _ = sleep_until(check), if pooled => {
                let idle_for = state.now().saturating_sub(state.idle_since.load(Ordering::SeqCst));
                let idle_for = Duration::from_millis(idle_for);
                if state.active.load(Ordering::SeqCst) > 0 {
                    check = Instant::now() + idle_timeout;
                } else if idle_for >= idle_timeout {
                    unregister(&slot.pool, &slot.key, id);
                    pooled = false;
                } else {
                    check = Instant::now() + (idle_timeout - idle_for).max(Duration::from_millis(10));
                }
            }
        }
    }
    if pooled {
        unregister(&slot.pool, &slot.key, id);
    }
    drop(slot);
}

/// Builds the h2 request head from the app's headers (overrides applied).
fn request_head(headers: &Headers) -> Result<http::Request<()>, String> {
    let method = headers.get(":method").ok_or("the request has no :method")?;
    let method =
        http::Method::from_bytes(method).map_err(|_| "the request :method is not a valid token")?;
    let scheme = headers
        .get_str(":scheme")
        .unwrap_or("http")
        .to_ascii_lowercase();
    let authority = headers
        .get(":authority")
        .or_else(|| headers.get("host"))
        .ok_or("the request has neither :authority nor host")?;
    let path = headers
        .get(":path")
        .filter(|p| !p.is_empty())
        .cloned()
        .unwrap_or_else(|| Bytes::from_static(b"/"));
    let uri = http::Uri::builder()
        .scheme(scheme.as_str())
        .authority(authority.as_ref())
        .path_and_query(path.as_ref())
        .build()
        .map_err(|e| format!("the request target is not valid: {e}"))?;
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        if name.starts_with(b":") || is_connection_specific(name) {
            continue;
        }
        if name.as_ref() == b"te" && !value.eq_ignore_ascii_case(b"trailers") {
            continue;
        }
        let n = HeaderName::from_bytes(name).map_err(|_| {
            format!(
                "request header name {:?} is not a valid token",
                String::from_utf8_lossy(name)
            )
        })?;
        let v = HeaderValue::from_maybe_shared(value.clone()).map_err(|_| {
            format!(
                "request header {:?} has a value with control characters",
                String::from_utf8_lossy(name)
            )
        })?;
        map.append(n, v);
    }
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = map;
    Ok(request)
}

fn header_map(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (n, v) in headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(n),
            HeaderValue::from_maybe_shared(v.clone()),
        ) {
            map.append(name, value);
        }
    }
    map
}

fn headers_of(map: &HeaderMap, status: Option<http::StatusCode>) -> Headers {
    let mut headers = Headers::with_capacity(map.len() + 1);
    if let Some(status) = status {
        headers.append(":status", Bytes::from(status.as_u16().to_string()));
    }
    for (n, v) in map {
        headers.append(
            Bytes::copy_from_slice(n.as_str().as_bytes()),
            Bytes::copy_from_slice(v.as_bytes()),
        );
    }
    headers
}

/// The next frame of the app's request: one taken early, else the next one read.
async fn next_frame(
    early: &mut Option<Frame<Http>>,
    rx: &mut Option<Rx<Http>>,
) -> Option<Frame<Http>> {
    if let Some(frame) = early.take() {
        return Some(frame);
    }
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits for the app's reply credit when `want` (Err: the app reset the reply), else only for
/// its reset.
fn poll_app(
    tx: &mut Tx<Http>,
    want: bool,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<(), Reset<Http>>> {
    if want {
        tx.poll_ready(cx)
    } else {
        tx.poll_reset(cx).map(Err)
    }
}

/// Opens the request's stream on `handle`'s connection, waiting for a place among the server's
/// concurrent streams (h2 queues it). A connection that turns out closed (GOAWAY, reset) is
/// left, and the request tried once more on another. `Err(None)`: the app went away.
#[allow(clippy::too_many_arguments)]
async fn open_stream(
    cx: &Exchange,
    request: &Request,
    session: &Option<Arc<Session>>,
    handle: &mut Handle,
    head: &http::Request<()>,
    eos: bool,
    app_tx: &mut Tx<Http>,
    deadline: Instant,
) -> Result<(ResponseFuture, SendStream<Bytes>), Option<Failure>> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let ready = tokio::select! {
            ready = handle.send.clone().ready() => ready,
            _ = sleep_until(deadline) => return Err(Some(Failure::timeout(cx))),
            _ = app_tx.reset() => return Err(None),
        };
        let opened = ready
            .map_err(|e| e.to_string())
            .and_then(|mut s| s.send_request(head.clone(), eos).map_err(|e| e.to_string()));
        let e = match opened {
            Ok(pair) => return Ok(pair),
            Err(e) => e,
        };
        unregister(&cx.pool, &request.key, handle.id);
        let closed = || {
            Some(Failure::bad_gateway(format!(
                "HTTP/2 connection closed: {e}"
            )))
        };
        if attempts >= 2 {
            return Err(closed());
        }
        let retry = tokio::select! {
            retry = super::upstream(cx, request, session.clone(), deadline, false) => retry,
            _ = app_tx.reset() => return Err(None),
        };
        match retry {
            Ok(super::Upstream::H2(h)) => *handle = h,
            Ok(super::Upstream::H1(_)) => return Err(closed()),
            Err(failure) => return Err(Some(failure)),
        }
    }
}

/// One request over HTTP/2, from the h2 stream's opening to the app's reply `End`.
pub(super) async fn exchange(
    cx: Exchange,
    app_rx: Rx<Http>,
    mut app_tx: Tx<Http>,
    request: Request,
    mut handle: Handle,
    session: Option<Arc<Session>>,
    deadline: Instant,
) {
    let head = match request_head(&request.headers) {
        Ok(head) => head,
        Err(e) => {
            return cx.reply(
                app_tx,
                Failure {
                    status: 400,
                    message: e,
                },
                &request.destination,
            )
        }
    };
    let mut app_rx = Some(app_rx);
    // A request known to have no body ends with its HEADERS; so does one the app already ended.
    let mut early = None;
    let mut eos = match request.body {
        RequestBody::None | RequestBody::Length(0) => true,
        _ => {
            early = app_rx.as_mut().and_then(Rx::try_recv);
            matches!(&early, Some(Frame::End(None)))
        }
    };
    if matches!(&early, Some(Frame::End(None))) {
        early = None;
        app_rx = None;
    }

    let opened = open_stream(
        &cx,
        &request,
        &session,
        &mut handle,
        &head,
        eos,
        &mut app_tx,
        deadline,
    )
    .await;
    let (response, mut send) = match opened {
        Ok(pair) => pair,
        Err(Some(failure)) => return cx.reply(app_tx, failure, &request.destination),
        Err(None) => return,
    };
    // A request sent whole in its HEADERS can be sent again if the server refused its stream
    // (REFUSED_STREAM: not processed), as servers do with streams opened before the client saw
    // their SETTINGS_MAX_CONCURRENT_STREAMS.
    let replayable = eos;
    let mut refusals = 0;

    let mut head_fut: Option<ResponseFuture> = Some(response);
    let mut body: Option<RecvStream> = None;
    // Response data the app has not taken yet.
    let mut out: Option<Bytes> = None;
    // Request data h2 has not taken yet.
    let mut pending: Option<Bytes> = None;
    let mut written: u64 = 0;

    let end: Option<HttpTrailers> = loop {
        tokio::select! {
            biased;
            ready = poll_fn(|c| poll_app(&mut app_tx, out.is_some(), c)) => match ready {
                Ok(()) => {
                    if let Some(data) = out.take() {
                        let len = data.len();
                        if app_tx.push(Frame::Data(Data::bytes(data))).is_err() {
                            send.send_reset(Reason::CANCEL);
                            return;
                        }
                        if let Some(b) = body.as_mut() {
                            let _ = b.flow_control().release_capacity(len);
                        }
                    }
                }
                // The app reset its reply: cancel this stream only.
                Err(_) => {
                    send.send_reset(Reason::CANCEL);
                    return;
                }
            },
            frame = next_frame(&mut early, &mut app_rx), if pending.is_none() => {
                match frame {
                    Some(Frame::Data(d)) => {
                        let Some(payload) = d.payload.filter(|p| !p.is_empty()) else { continue };
                        if eos {
                            // A request without a body: its data is ignored, as over HTTP/1.1.
                            continue;
                        }
                        written += payload.len() as u64;
                        if matches!(request.body, RequestBody::Length(n) if written > n) {
                            send.send_reset(Reason::CANCEL);
                            return;
                        }
                        send.reserve_capacity(payload.len());
                        pending = Some(payload);
                    }
                    Some(Frame::Begin(_) | Frame::Flush) => {}
                    Some(Frame::End(ext)) => {
                        app_rx = None;
                        if !eos {
                            if matches!(request.body, RequestBody::Length(n) if written != n) {
                                send.send_reset(Reason::CANCEL);
                                return;
                            }
                            let trailers = ext

                                .filter(|t| !t.0.is_empty());
                            let sent = match trailers {
                                Some(t) => send.send_trailers(header_map(&t.0)),
                                None => send.send_data(Bytes::new(), true),
                            };
                            // On failure the stream is gone: the response side says how.
                            let _ = sent;
                            eos = true;
                        }
                    }
                    // The app aborted its request: cancel this stream only.
                    Some(Frame::Abort(_)) | None => {
                        send.send_reset(Reason::CANCEL);
                        return;
                    }
                }
            }
            capacity = poll_fn(|c| send.poll_capacity(c)), if pending.is_some() => match capacity {
                Some(Ok(n)) if n > 0 => {
                    let mut data = pending.take().unwrap_or_default();
                    let chunk = data.split_to(n.min(data.len()));
                    if send.send_data(chunk, false).is_err() {
                        pending = None;
                    } else if !data.is_empty() {
                        send.reserve_capacity(data.len());
                        pending = Some(data);
                    }
                }
                Some(Ok(_)) => {}
                // The stream is gone: the response side says how.
                Some(Err(_)) | None => {
                    pending = None;
                    app_rx = None;
                    eos = true;
                }
            },
            response = poll_fn(|c| match head_fut.as_mut() {
                Some(f) => std::pin::Pin::new(f).poll(c),
                None => Poll::Pending,
            }), if head_fut.is_some() => {
                head_fut = None;
                match response {
                    Ok(response) => {
                        let (parts, recv) = response.into_parts();
                        let headers = headers_of(&parts.headers, Some(parts.status));
                        if app_tx.push(Frame::Begin(HttpBegin { headers })).is_err() {
                            send.send_reset(Reason::CANCEL);
                            return;
                        }
                        body = Some(recv);
                    }
                    Err(e) if replayable && refusals < 8 && e.reason() == Some(Reason::REFUSED_STREAM) => {
                        refusals += 1;
                        let opened = open_stream(
                            &cx, &request, &session, &mut handle, &head, eos, &mut app_tx, deadline,
                        )
                        .await;
                        match opened {
                            Ok((response, stream)) => {
                                head_fut = Some(response);
                                send = stream;
                            }
                            Err(Some(failure)) => return cx.reply(app_tx, failure, &request.destination),
                            Err(None) => return,
                        }
                    }
                    Err(e) => {
                        let failure = Failure::bad_gateway(format!("no HTTP/2 response: {e}"));
                        return cx.reply(app_tx, failure, &request.destination);
                    }
                }
            }
            _ = sleep_until(deadline), if head_fut.is_some() => {
                send.send_reset(Reason::CANCEL);
                return cx.reply(app_tx, Failure::timeout(&cx), &request.destination);
            }
            data = poll_fn(|c| match body.as_mut() {
                Some(b) => b.poll_data(c),
                None => Poll::Pending,
            }), if body.is_some() && out.is_none() => match data {
                Some(Ok(d)) => {
                    if d.is_empty() {
                        continue;
                    }
                    out = Some(d);
                }
                Some(Err(e)) => {
                    cx.report(format!("{}: response aborted: {e}", request.destination));
                    // Dropping the reply aborts it.
                    return;
                }
                None => {
                    let mut b = body.take().expect("guarded");
                    let trailers = match poll_fn(|c| b.poll_trailers(c)).await {
                        Ok(Some(t)) if !t.is_empty() => {
                            Some(HttpTrailers(headers_of(&t, None)))
                        }
                        Err(e) => {
                            cx.report(format!("{}: response aborted: {e}", request.destination));
                            return;
                        }
                        Ok(_) => None,
                    };
                    break trailers;
                }
            },
        }
    };
    if !eos {
        // The response is complete before the request: the rest of it is not wanted.
        send.send_reset(Reason::CANCEL);
    }
    let _ = app_tx.push(Frame::End(end));
    drop(handle);
}
