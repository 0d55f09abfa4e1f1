//! The http client binding: sends each `http` stream routed to it as an HTTP/1.1 request, or as
//! an HTTP/2 stream, over a `tcp` stream opened to its exit (a tcp client, or a tls client), and
//! streams the response back.
//!
//! ```yaml
//! south_http_client:
//!   type: http
//!   kind: client
//!   options:
//!     versions: [http/1.1]
//!     overrides: { ":authority": "sse-server:8001" }
//!   exit: south_tcp_client
//! ```
//!
//! - The request line and headers come from the stream's `Begin` (after `options.overrides`):
//!   `:authority` becomes `Host` and, with the default port of `:scheme`, the destination the tcp
//!   stream asks its exit to connect to. Header names are written Title-Cased. A body is sent
//!   with its `content-length`, else chunked (POST, PUT, PATCH, or `transfer-encoding: chunked`);
//!   other methods without a length send no body.
//! - The response is streamed to the app as it arrives: `:status` and the lower-cased headers
//!   (hop-by-hop ones removed), then every piece of body as read (chunked bodies are de-chunked,
//!   one data frame per chunk, trailers in the `End`), so server-sent events pass one by one.
//! - Upstream connections are kept per (exit, scheme, authority) and reused: at most
//!   `zilla.binding.http.maximum.connections` (default 10000; Zilla's 10 would cap an HTTP/1.1
//!   event-stream proxy at 10 clients per origin) per origin, busy or idle; with none
//!   free the app gets `503` with `retry-after: 0`. An idle connection is closed when the upstream
//!   closes it or sends anything, after `zilla.binding.http.client.idle.timeout` (default 60s),
//!   and at shutdown.
//! - A kept-alive connection the upstream closes just as a request is written on it (the
//!   upstream's keep-alive timeout racing the request) is closed before a byte of response: a
//!   `GET` or `HEAD` is sent again, once, on a new connection (a response timeout or a garbled
//!   answer is not retried, nor is any other method).
//! - Failures before the response began are answered to the app: `502` if the connection is
//!   refused, or reset, closed or garbled before a response head; `504` if no response head came
//!   within `zilla.binding.http.client.response.timeout` (default 30s, counted from the request,
//!   connecting included). After the response began, an upstream failure aborts the app's reply.
//!   If the app resets the reply or aborts the request, the upstream connection is closed at once.
//!
//! - HTTP/2 (the `h2` module) is spoken with prior knowledge when `options.versions` is exactly
//!   `[h2]`, and whenever the exit's reply `Begin` says ALPN `h2` (a tls client offering h2) and
//!   `versions` allows h2 (ALPN `h2` with `versions: [http/1.1]`, or ALPN `http/1.1` with
//!   `versions: [h2]`, is answered `502`). One HTTP/2 connection per (exit, scheme, authority)
//!   carries every request as a stream; requests beyond the server's
//!   `SETTINGS_MAX_CONCURRENT_STREAMS` queue on it (bounded by the response timeout) rather than
//!   opening another connection. HEADERS carry `:method`, `:scheme`, `:authority`, `:path` and
//!   the other headers (after `options.overrides`) minus the connection-specific ones; the body
//!   goes as DATA within the stream's flow-control window, END_STREAM (or trailers) at the app's
//!   `End`. The response streams back as it arrives; h2 capacity is released as the app's pipe
//!   takes it, so a slow app holds back its own stream only. The app resetting its reply or
//!   aborting its request sends RST_STREAM(CANCEL) on that stream; the connection and its other
//!   streams live on. Failures before a response head: `502` (refused, reset, GOAWAY), `504`
//!   (response timeout, and the stream is cancelled). An idle HTTP/2 connection closes after the
//!   idle timeout, when the upstream closes it, and at shutdown/reload once its streams ended.
//! - `versions: [h2, http/1.1]` (or none) on cleartext speaks HTTP/1.1: no `h2c` upgrade is
//!   offered (Zilla offers one).
//!
//! Not yet: the `h2c` upgrade offer, and `authorization` credential injection (sessions carry no
//! raw credentials yet).

pub(crate) mod codec;
mod h2;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use proto_http::{Headers, Http, HttpBegin, HttpReset, HttpTrailers};
use proto_tcp::{Address, Tcp, TcpBegin};
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Instant};
use zilla_engine::{
    AnyHandler, Binding, BindingContext, BindingId, ConfigError, ConfigErrors, Data, Frame, Graph,
    Handler, Reset, Routes, Rx, Session, Source, Stream, Tx, Values,
};

use crate::config::{HttpCondition, HttpVersion, HttpWith};
use crate::overrides::Overrides;
use crate::HttpFactory;
use codec::{
    chunk_header, chunked_end, encode_request_head, Body, BodyDecoder, HeadReader, RequestBody,
};

/// Property: most upstream connections per origin (default [`DEFAULT_MAX_CONNECTIONS`]).
const MAX_CONNECTIONS_PROPERTY: &str = "zilla.binding.http.maximum.connections";
/// Property: how long to wait for a response head (default [`DEFAULT_RESPONSE_TIMEOUT`]).
const RESPONSE_TIMEOUT_PROPERTY: &str = "zilla.binding.http.client.response.timeout";
/// Property: how long an idle upstream connection is kept (default [`DEFAULT_IDLE_TIMEOUT`]).
const IDLE_TIMEOUT_PROPERTY: &str = "zilla.binding.http.client.idle.timeout";
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Event reported when a request fails upstream.
const EVENT_FAILED: &str = "BINDING_HTTP_CLIENT_REQUEST_FAILED";

/// Builds an http client.
pub(crate) fn build(mut cx: BindingContext<HttpFactory>) -> Result<Box<dyn Binding>, ConfigErrors> {
    let mut errors = ConfigErrors::new();
    if let Err(e) = cx.require_exit() {
        errors.push(e);
    }
    for (i, r) in cx.routes.iter().enumerate() {
        if r.exit.is_none() {
            errors.push(cx.error(
                &format!("routes[{i}]"),
                "an http client route needs an `exit` (a tcp or tls client)",
            ));
        }
    }
    crate::pattern::compile_routes(&cx, &cx.routes, &mut errors);
    let options = cx.options.take().unwrap_or_default();
    if options.access_control.is_some() {
        errors.push(ConfigError::at_key(
            cx.path("options.access-control"),
            "`access-control` applies to an http server only: remove it from this client",
        ));
    }
    let versions = Versions {
        http11: options
            .versions
            .as_ref()
            .is_none_or(|v| v.contains(&HttpVersion::Http11)),
        h2: options
            .versions
            .as_ref()
            .is_none_or(|v| v.contains(&HttpVersion::H2)),
    };
    if !versions.http11 && !versions.h2 {
        errors.push(cx.error(
            "options.versions",
            "allow at least one version: `http/1.1`, `h2` or both",
        ));
    }
    let overrides = Overrides::compile(
        &cx,
        "options.overrides",
        options.overrides.as_ref(),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    if options.authorization.is_some() {
        tracing::warn!(
            binding = %cx.qualified_name(),
            "options.authorization is ignored by the http client for now: credentials are not injected upstream"
        );
    }
    let properties = &cx.properties;
    let client = ClientInner {
        id: cx.id,
        name: cx.qualified_name(),
        routes: cx.routes,
        overrides,
        versions,
        response_timeout: properties.duration(RESPONSE_TIMEOUT_PROPERTY, DEFAULT_RESPONSE_TIMEOUT),
        idle_timeout: properties.duration(IDLE_TIMEOUT_PROPERTY, DEFAULT_IDLE_TIMEOUT),
        pool: Arc::new(Pool {
            max: properties
                .usize(MAX_CONNECTIONS_PROPERTY, DEFAULT_MAX_CONNECTIONS)
                .max(1),
            origins: Mutex::new(HashMap::new()),
        }),
    };
    Ok(Box::new(HttpClient(Arc::new(client))))
}

struct HttpClient(Arc<ClientInner>);

impl Binding for HttpClient {
    fn handler(&self) -> Option<AnyHandler> {
        Some(AnyHandler::new::<Http>(self.0.clone()))
    }

    /// On reload or shutdown, idle upstream connections are closed (busy ones finish first).
    fn detach(&self) {
        let mut origins = self.0.pool.lock();
        for origin in origins.values_mut() {
            // Dropping a handle tells its watcher to close the connection.
            origin.idle.clear();
            // Out of the pool, an HTTP/2 connection closes once its last stream ends.
            origin.h2.clear();
        }
    }
}

struct ClientInner {
    id: BindingId,
    name: String,
    routes: Routes<HttpCondition, HttpWith>,
    overrides: Overrides,
    versions: Versions,
    response_timeout: Duration,
    idle_timeout: Duration,
    pool: Arc<Pool>,
}

/// The versions `options.versions` allows (both when absent).
#[derive(Debug, Clone, Copy)]
struct Versions {
    http11: bool,
    h2: bool,
}

impl Versions {
    /// Only `h2`: HTTP/2 with prior knowledge.
    fn prior_knowledge(self) -> bool {
        self.h2 && !self.http11
    }
}

/// What the task of one exchange needs, decided when the stream was offered.
struct Request {
    key: Key,
    destination: Address,
    head: Bytes,
    body: RequestBody,
    head_request: bool,
    /// `GET` or `HEAD`: safe to send again when a kept-alive connection closed under it.
    safe: bool,
    /// The request headers (overrides applied), for HTTP/2.
    headers: Headers,
}

impl Handler<Http> for ClientInner {
    fn open(&self, graph: &Arc<Graph>, mut stream: Stream<Http>) -> Result<(), Reset<Http>> {
        let headers = &mut stream.begin.headers;
        let session = stream.session.as_deref();
        // Held apart from the headers, which the overrides change: captures borrow from them.
        let path = headers.get_str(":path").unwrap_or("").to_string();
        let method = headers.get_str(":method").unwrap_or("").to_string();
        let request = Values {
            method: Some(&method),
            // As Zilla documents for http: the whole :path, query included.
            path: Some(&path),
            ..Values::default()
        };
        let (route, params) = self
            .routes
            .resolve_with(graph, session, request, |c| {
                crate::pattern::condition_captures(c, headers, &path)
            })
            .ok_or(Reset(None))?;
        let exit = route.exit.ok_or(Reset(None))?;
        let values = Values {
            params: &params,
            session,
            ..request
        };
        self.overrides.apply(headers, &values);
        if let Some(overrides) = crate::pattern::route_overrides(route.with.as_ref()) {
            overrides.apply(headers, &values);
        }
        let bad_request = |message: String| {
            graph.event(&self.name, EVENT_FAILED, stream.trace_id, message);
            HttpReset::refuse(400)
        };
        let (head, body) = encode_request_head(headers)
            .map_err(|e| bad_request(format!("400 Bad Request: {e}")))?;
        let scheme = headers
            .get(":scheme")
            .cloned()
            .unwrap_or_else(|| Bytes::from_static(b"http"));
        let authority = headers
            .get(":authority")
            .or_else(|| headers.get("host"))
            .cloned()
            .unwrap_or_default();
        let destination = destination(&authority, &scheme).ok_or_else(|| {
            bad_request(format!(
                "400 Bad Request: :authority {:?} is not host[:port]",
                String::from_utf8_lossy(&authority)
            ))
        })?;
        let method = headers.get(":method").map(|m| m.as_ref());
        let head_request = method == Some(b"HEAD");
        let safe = head_request || method == Some(b"GET");
        let request = Request {
            key: Key {
                exit,
                scheme,
                authority: Bytes::from(authority.to_ascii_lowercase()),
            },
            destination,
            head,
            body,
            head_request,
            safe,
            headers: if self.versions.h2 {
                std::mem::take(headers)
            } else {
                Headers::new()
            },
        };
        let cx = Exchange {
            graph: graph.clone(),
            id: self.id,
            name: self.name.clone(),
            pool: self.pool.clone(),
            versions: self.versions,
            response_timeout: self.response_timeout,
            idle_timeout: self.idle_timeout,
            trace_id: stream.trace_id,
        };
        graph.spawn(exchange(cx, stream, request));
        Ok(())
    }
}

/// Where to connect for `authority` (`host[:port]`, `[v6]:port`), with the default port of
/// `scheme` when none is given.
fn destination(authority: &[u8], scheme: &[u8]) -> Option<Address> {
    let text = std::str::from_utf8(authority).ok()?;
    let default = if scheme.eq_ignore_ascii_case(b"https") {
        443
    } else {
        80
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => default,
            _ => after.strip_prefix(':')?.parse().ok()?,
        };
        (host, port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (text, default),
        }
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':'));
    valid.then(|| Address::Host(host.to_string(), port))
}

/// An origin: the exit plus scheme and authority.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    exit: BindingId,
    scheme: Bytes,
    authority: Bytes,
}

/// Asks an idle connection's watcher to hand the connection over.
type IdleHandle = oneshot::Sender<oneshot::Sender<Conn>>;

/// Upstream connections of one binding, per origin. The lock is taken once or twice per request,
/// never per event.
struct Pool {
    max: usize,
    origins: Mutex<HashMap<Key, Origin>>,
}

#[derive(Default)]
struct Origin {
    /// Connections alive, busy or idle.
    open: usize,
    /// Idle connections, most recent last.
    idle: Vec<IdleHandle>,
    /// HTTP/2 connections (each counted in `open`).
    h2: Vec<h2::Entry>,
    /// Set while an HTTP/2 connection is being set up with prior knowledge: changes (closes)
    /// when it is done.
    h2_connecting: Option<tokio::sync::watch::Receiver<()>>,
}

enum Checkout {
    Idle(IdleHandle),
    New(Slot),
    Exhausted,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Origin>> {
        self.origins.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkout(self: &Arc<Self>, key: &Key, fresh: bool) -> Checkout {
        let mut origins = self.lock();
        let origin = origins.entry(key.clone()).or_default();
        if !fresh {
            while let Some(handle) = origin.idle.pop() {
                if !handle.is_closed() {
                    return Checkout::Idle(handle);
                }
            }
        }
        if origin.open < self.max {
            origin.open += 1;
            return Checkout::New(Slot {
                pool: self.clone(),
                key: key.clone(),
            });
        }
        Checkout::Exhausted
    }

    fn checkin(&self, key: &Key, handle: IdleHandle) {
        let mut origins = self.lock();
        let origin = origins.entry(key.clone()).or_default();
        origin.idle.retain(|h| !h.is_closed());
        origin.idle.push(handle);
    }
}

/// One counted connection of an origin; dropping it frees the place.
struct Slot {
    pool: Arc<Pool>,
    key: Key,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut origins = self.pool.lock();
        if let Some(origin) = origins.get_mut(&self.key) {
            origin.open = origin.open.saturating_sub(1);
            origin.idle.retain(|h| !h.is_closed());
            if origin.open == 0
                && origin.idle.is_empty()
                && origin.h2.is_empty()
                && origin.h2_connecting.is_none()
            {
                origins.remove(&self.key);
            }
        }
    }
}

/// An upstream connection: the halves of a tcp stream, and its place in the pool.
struct Conn {
    tx: Tx<Tcp>,
    rx: Rx<Tcp>,
    slot: Slot,
    /// Taken from the pool (kept alive after an earlier exchange), not new.
    reused: bool,
}

impl Conn {
    /// Closes cleanly (FIN upstream).
    fn close(self) {
        let Conn { tx, rx, slot, .. } = self;
        tx.end(None);
        drop(rx);
        drop(slot);
    }
}

/// Keeps an idle connection until a request takes it, the upstream closes it (or sends
/// anything, which it may not do unasked), it times out, or the engine shuts down.
async fn watch_idle(
    graph: Arc<Graph>,
    mut conn: Conn,
    mut take: oneshot::Receiver<oneshot::Sender<Conn>>,
    timeout: Duration,
) {
    let taken = tokio::select! {
        reply = &mut take => reply.ok(),
        _ = conn.rx.recv() => None,
        _ = tokio::time::sleep(timeout) => None,
        _ = graph.shutdown().cancelled() => None,
    };
    match taken {
        Some(reply) => {
            if let Err(conn) = reply.send(conn) {
                conn.close();
            }
        }
        // The connection goes before the handle, so a request that finds the handle dead also
        // finds the place free.
        None => conn.close(),
    }
    drop(take);
}

/// What every stage of an exchange needs.
struct Exchange {
    graph: Arc<Graph>,
    id: BindingId,
    name: String,
    pool: Arc<Pool>,
    versions: Versions,
    response_timeout: Duration,
    idle_timeout: Duration,
    trace_id: u64,
}

/// The upstream a request goes to.
enum Upstream {
    /// An HTTP/1.1 connection of its own.
    H1(Conn),
    /// A stream on a shared HTTP/2 connection.
    H2(h2::Handle),
}

/// No place left for another connection to the origin.
fn exhausted(pool: &Pool) -> Failure {
    Failure {
        status: 503,
        message: format!(
            "all {} connections to this origin are busy (property {MAX_CONNECTIONS_PROPERTY})",
            pool.max
        ),
    }
}

/// An HTTP/2 connection of the origin if there is one (or, with prior knowledge, a new one),
/// else an idle or new HTTP/1.1 connection, which may turn out to speak HTTP/2 (ALPN `h2`).
async fn upstream(
    cx: &Exchange,
    request: &Request,
    session: Option<Arc<Session>>,
    deadline: Instant,
    fresh: bool,
) -> Result<Upstream, Failure> {
    if cx.versions.h2 {
        match h2::lookup(cx, &request.key, cx.versions.prior_knowledge(), deadline).await? {
            h2::Lookup::Ready(handle) => return Ok(Upstream::H2(handle)),
            h2::Lookup::Connect(slot, connecting) => {
                let (conn, _) = cx.connect(request, session, slot, deadline).await?;
                let handle = h2::handshake(cx, conn).await;
                drop(connecting);
                return handle.map(Upstream::H2);
            }
            h2::Lookup::None => {}
        }
    }
    cx.acquire(request, session, deadline, fresh).await
}

/// Why a request got no upstream response.
#[derive(Debug)]
struct Failure {
    status: u16,
    message: String,
}

impl Failure {
    fn bad_gateway(message: impl Into<String>) -> Self {
        Failure {
            status: 502,
            message: message.into(),
        }
    }

    fn timeout(cx: &Exchange) -> Self {
        Failure {
            status: 504,
            message: format!(
                "no response within {:?} (property {RESPONSE_TIMEOUT_PROPERTY})",
                cx.response_timeout
            ),
        }
    }
}

impl Exchange {
    fn report(&self, message: String) {
        self.graph
            .event(&self.name, EVENT_FAILED, self.trace_id, message);
    }

    /// Answers the app with a bodiless `status` (synthetic: no request reached a response).
    fn reply(&self, mut tx: Tx<Http>, failure: Failure, destination: &Address) {
        let reason = match failure.status {
            400 => "Bad Request",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "",
        };
        self.report(format!(
            "{} {reason}: {destination}: {}",
            failure.status, failure.message
        ));
        let mut begin = HttpBegin::status(failure.status);
        if failure.status == 503 {
            begin.headers.set("retry-after", Bytes::from_static(b"0"));
        }
        begin
            .headers
            .set("content-length", Bytes::from_static(b"0"));
        if tx.push(Frame::Begin(begin)).is_ok() {
            tx.end(None);
        }
    }

    /// An idle connection of the origin (unless `fresh`), or a new one, or why there is none.
    async fn acquire(
        &self,
        request: &Request,
        session: Option<Arc<Session>>,
        deadline: Instant,
        fresh: bool,
    ) -> Result<Upstream, Failure> {
        loop {
            match self.pool.checkout(&request.key, fresh) {
                Checkout::Idle(handle) => {
                    let (reply, taken) = oneshot::channel();
                    if handle.send(reply).is_ok() {
                        if let Ok(mut conn) = taken.await {
                            conn.reused = true;
                            return Ok(Upstream::H1(conn));
                        }
                    }
                    // It closed meanwhile: try the next one.
                }
                Checkout::New(slot) => {
                    let (conn, h2) = self.connect(request, session, slot, deadline).await?;
                    if h2 {
                        return h2::handshake(self, conn).await.map(Upstream::H2);
                    }
                    return Ok(Upstream::H1(conn));
                }
                Checkout::Exhausted => return Err(exhausted(&self.pool)),
            }
        }
    }

    async fn connect(
        &self,
        request: &Request,
        session: Option<Arc<Session>>,
        slot: Slot,
        deadline: Instant,
    ) -> Result<(Conn, bool), Failure> {
        let begin = TcpBegin {
            source: None,
            destination: Some(request.destination.clone()),
            tls: None,
        };
        let (tx, mut rx) = self
            .graph
            .open_from::<Tcp>(self.id, request.key.exit, begin, session)
            .map_err(|_| {
                Failure::bad_gateway(format!(
                    "{} refused the connection",
                    self.graph.name(request.key.exit)
                ))
            })?;
        loop {
            let frame = tokio::select! {
                frame = rx.recv() => frame,
                _ = sleep_until(deadline) => return Err(Failure::timeout(self)),
            };
            match frame {
                Some(Frame::Begin(begin)) => {
                    // ALPN h2 (a tls client offering h2), or only h2 allowed: HTTP/2.
                    let alpn = begin.tls.as_ref().and_then(|t| t.alpn.as_deref());
                    let h2 = match alpn {
                        Some(b"h2") if self.versions.h2 => true,
                        Some(b"h2") => {
                            return Err(Failure::bad_gateway(
                                "the upstream chose HTTP/2 (ALPN h2), which options.versions does not allow",
                            ))
                        }
                        Some(b"http/1.1") if !self.versions.http11 => {
                            return Err(Failure::bad_gateway(
                                "the upstream chose HTTP/1.1 (ALPN http/1.1), which options.versions does not allow",
                            ))
                        }
                        _ => self.versions.prior_knowledge(),
                    };
                    return Ok((
                        Conn {
                            tx,
                            rx,
                            slot,
                            reused: false,
                        },
                        h2,
                    ));
                }
                Some(Frame::Flush) => {}
                _ => return Err(Failure::bad_gateway("connection refused")),
            }
        }
    }
}

/// How sending the request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The whole request is on the wire.
    Complete,
    /// The app aborted the request, or its body did not match its `content-length`.
    AppFailed,
    /// The upstream refused more bytes.
    UpstreamGone,
}

/// How receiving the response ended.
#[derive(Debug)]
enum Received {
    /// The whole response was passed on but its `End` (with `end` as extension), which the
    /// caller sends after putting a `reusable` connection back in the pool: an app that sends
    /// its next request as soon as it sees the `End` (a pipelining client) then finds the
    /// connection idle instead of opening another one.
    Complete {
        reusable: bool,
        end: Option<HttpTrailers>,
    },
    /// The head went to the app, after the whole request was sent: the body is read in the
    /// app's task ([`PulledBody`]).
    Head(BodyReader),
    /// The app reset the reply.
    AppGone,
    /// The upstream failed before the response head.
    NoResponse(Failure),
    /// The upstream closed or reset the connection before sending a byte of a response.
    Closed(Failure),
    /// The upstream failed after the response began (the reply was aborted).
    Broken(String),
}

async fn exchange(cx: Exchange, stream: Stream<Http>, request: Request) {
    let Stream {
        rx: mut app_rx,
        tx: mut app_tx,
        session,
        begin,
        ..
    } = stream;
    // The request was built from it: don't keep it for the life of the exchange.
    drop(begin);
    let deadline = Instant::now() + cx.response_timeout;
    // A kept-alive connection the upstream closed just as it was taken (its FIN not yet seen)
    // fails before any response: a request without a body goes again, once, on a new one.
    let mut fresh = false;
    // The app's request ended in the first attempt: a retry writes the head only.
    let mut app_ended = false;
    let (sent, received, up_tx, up_rx, slot) = loop {
        // Boxed, like the HTTP/2 exchange below: they are not part of the long-lived state of
        // an HTTP/1.1 exchange (an event stream's task stays small while it waits).
        let acquired = tokio::select! {
            conn = Box::pin(upstream(&cx, &request, session.clone(), deadline, fresh)) => conn,
            // The app went away while connecting: nothing to answer.
            _ = app_tx.reset() => return,
        };
        let conn = match acquired {
            Ok(Upstream::H1(conn)) => conn,
            Ok(Upstream::H2(handle)) => {
                return Box::pin(h2::exchange(
                    cx, app_rx, app_tx, request, handle, session, deadline,
                ))
                .await
            }
            Err(failure) => return cx.reply(app_tx, failure, &request.destination),
        };
        let Conn {
            tx: mut up_tx,
            rx: mut up_rx,
            slot,
            reused,
        } = conn;

        // Set once the whole request is on the wire: a response whose head arrives after that
        // has its body read by the app's task (see `PulledBody`), not by this one.
        let sent_complete = AtomicBool::new(false);
        let (sent, received) = {
            let send = async {
                if app_ended {
                    match up_tx
                        .send(Frame::Data(Data::bytes(request.head.clone())))
                        .await
                    {
                        Ok(()) => Sent::Complete,
                        Err(_) => Sent::UpstreamGone,
                    }
                } else {
                    send_request(&mut app_rx, &mut up_tx, request.head.clone(), request.body).await
                }
            };
            let receive = async {
                let mut body = match receive_head(
                    &cx,
                    &mut up_rx,
                    &mut app_tx,
                    deadline,
                    request.head_request,
                )
                .await
                {
                    Ok(body) => body,
                    Err(received) => return received,
                };
                if sent_complete.load(Ordering::Relaxed) {
                    return Received::Head(body);
                }
                receive_body(&mut up_rx, &mut app_tx, &mut body).await
            };
            tokio::pin!(send, receive);
            let mut sent = None;
            loop {
                tokio::select! {
                    // The request first: a head arriving in the same poll as the request's end
                    // must see it complete, or the body would be read here instead of pulled.
                    biased;
                    s = &mut send, if sent.is_none() => {
                        sent = Some(s);
                        sent_complete.store(s == Sent::Complete, Ordering::Relaxed);
                        if s == Sent::AppFailed {
                            break (sent, None);
                        }
                    }
                    r = &mut receive => break (sent, Some(r)),
                }
            }
        };
        if reused
            && !fresh
            && request.safe
            && request.body == RequestBody::None
            && matches!(received, Some(Received::Closed(_)))
        {
            tracing::debug!(binding = %cx.name, destination = %request.destination,
                "a kept-alive upstream connection was closed as it was reused: sending the request on a new one");
            fresh = true;
            app_ended = sent == Some(Sent::Complete);
            continue;
        }
        break (sent, received, up_tx, up_rx, slot);
    };
    // A request without a body is complete once its head is written.
    let complete = sent == Some(Sent::Complete)
        || (request.body == RequestBody::None && sent != Some(Sent::UpstreamGone));
    match received {
        Some(Received::Head(body)) => {
            // The request is on the wire and the response streaming (an event stream, say):
            // its body is read by the app's task from here on, and this task ends. The app's
            // request has ended (that is what complete means): nothing more to read of it.
            drop(app_rx);
            app_tx.pull(PulledBody {
                cx,
                destination: request.destination,
                body,
                conn: Some((up_tx, up_rx, slot)),
            });
        }
        Some(Received::NoResponse(failure) | Received::Closed(failure)) => {
            drop((up_tx, up_rx));
            cx.reply(app_tx, failure, &request.destination);
        }
        Some(received) => {
            if let Some(end) = finish(
                &cx,
                &request.destination,
                complete,
                received,
                (up_tx, up_rx, slot),
            ) {
                let _ = app_tx.push(Frame::End(end));
            }
            drop(app_rx);
        }
        // The app aborted its request: the connection is dropped, which resets it (never
        // reused).
        None => {}
    }
}

/// Ends an exchange whose response began: puts a `reusable` connection of a `complete`
/// request back in the pool (before the app sees the `End`, so a client pipelining its next
/// request finds it idle), ends or drops the others, and reports a broken response. The `End`
/// extension the app gets, or `None` when the reply is aborted instead.
fn finish(
    cx: &Exchange,
    destination: &Address,
    complete: bool,
    received: Received,
    (up_tx, up_rx, slot): (Tx<Tcp>, Rx<Tcp>, Slot),
) -> Option<Option<HttpTrailers>> {
    match received {
        Received::Complete {
            reusable: true,
            end,
        } if complete => {
            let (handle, take) = oneshot::channel();
            cx.pool.checkin(&slot.key, handle);
            let conn = Conn {
                tx: up_tx,
                rx: up_rx,
                slot,
                reused: true,
            };
            cx.graph
                .spawn(watch_idle(cx.graph.clone(), conn, take, cx.idle_timeout));
            Some(end)
        }
        Received::Complete { end, .. } => {
            if complete {
                up_tx.end(None);
            }
            // Otherwise the request is still being sent: the connection is dropped here, which
            // resets it (never reused).
            Some(end)
        }
        Received::Broken(message) => {
            cx.report(format!("{destination}: response aborted: {message}"));
            // Dropping both sides aborts the reply and resets the upstream connection.
            None
        }
        // The app went away, or the response ended before the request: the connection is
        // dropped, which resets it (never reused).
        _ => None,
    }
}

/// The body of an HTTP/1.1 response whose request is complete, read in the app's task: the
/// exchange's own task ends once the head is passed on, so a long response (an event stream)
/// costs no task of its own and each piece of body one pipe hop fewer. Decoding is the same as
/// in the task ([`BodyReader`]); the end is the same too ([`finish`]).
struct PulledBody {
    cx: Exchange,
    destination: Address,
    body: BodyReader,
    conn: Option<(Tx<Tcp>, Rx<Tcp>, Slot)>,
}

impl Drop for PulledBody {
    fn drop(&mut self) {
        // The app left before the end (an sse client refusing an error status, say). A body
        // whose end was already read ends as if the app had read it: a kept-alive connection
        // goes back to the pool, another closes cleanly. A body still arriving resets it.
        let Some((up_tx, mut up_rx, slot)) = self.conn.take() else {
            return;
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let received = loop {
            match self.body.poll_next(&mut up_rx, &mut cx) {
                Poll::Ready(Step::Data(_)) => {}
                Poll::Ready(Step::Done(received)) => break received,
                Poll::Pending => return,
            }
        };
        if tokio::runtime::Handle::try_current().is_err() {
            // Dropped outside the engine (no runtime to keep an idle connection on): close.
            if matches!(received, Received::Complete { .. }) {
                up_tx.end(None);
            }
            return;
        }
        finish(
            &self.cx,
            &self.destination,
            true,
            received,
            (up_tx, up_rx, slot),
        );
    }
}

impl Source<Http> for PulledBody {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Frame<Http>> {
        let Some((_, up_rx, _)) = self.conn.as_mut() else {
            return Poll::Ready(Frame::Abort(None));
        };
        match std::task::ready!(self.body.poll_next(up_rx, cx)) {
            Step::Data(bytes) => Poll::Ready(Frame::Data(Data::bytes(bytes))),
            Step::Done(received) => {
                let Some(conn) = self.conn.take() else {
                    return Poll::Ready(Frame::Abort(None));
                };
                Poll::Ready(
                    match finish(&self.cx, &self.destination, true, received, conn) {
                        Some(end) => Frame::End(end),
                        None => Frame::Abort(None),
                    },
                )
            }
        }
    }
}

/// Writes the request head, then the app's body framed as `body`.
async fn send_request(
    app: &mut Rx<Http>,
    up: &mut Tx<Tcp>,
    head: Bytes,
    body: RequestBody,
) -> Sent {
    if up.send(Frame::Data(Data::bytes(head))).await.is_err() {
        return Sent::UpstreamGone;
    }
    let mut written: u64 = 0;
    loop {
        match app.recv().await {
            Some(Frame::Data(d)) => {
                let Some(payload) = d.payload.filter(|p| !p.is_empty()) else {
                    continue;
                };
                let len = payload.len();
                let sent = match body {
                    RequestBody::None => continue,
                    RequestBody::Length(max) => {
                        if written + len as u64 > max {
                            return Sent::AppFailed;
                        }
                        up.send(Frame::Data(Data::bytes(payload))).await
                    }
                    RequestBody::Chunked => {
                        match up
                            .send(Frame::Data(Data::bytes(chunk_header(len, written == 0))))
                            .await
                        {
                            Ok(()) => up.send(Frame::Data(Data::bytes(payload))).await,
                            Err(e) => Err(e),
                        }
                    }
                };
                if sent.is_err() {
                    return Sent::UpstreamGone;
                }
                written += len as u64;
            }
            Some(Frame::Begin(_) | Frame::Flush) => {}
            Some(Frame::End(ext)) => {
                return match body {
                    RequestBody::None => Sent::Complete,
                    RequestBody::Length(n) if written != n => Sent::AppFailed,
                    RequestBody::Length(_) => Sent::Complete,
                    RequestBody::Chunked => {
                        let trailers = ext.map(|t| t.0);
                        let Ok(end) = chunked_end(written == 0, trailers.as_ref()) else {
                            return Sent::AppFailed;
                        };
                        match up.send(Frame::Data(Data::bytes(end))).await {
                            Ok(()) => Sent::Complete,
                            Err(_) => Sent::UpstreamGone,
                        }
                    }
                };
            }
            Some(Frame::Abort(_)) | None => return Sent::AppFailed,
        }
    }
}

/// Reads the response head (within `deadline`) and replies `Begin` to the app: then what
/// reading its body needs, or how the response ended before one.
async fn receive_head(
    cx: &Exchange,
    up: &mut Rx<Tcp>,
    app: &mut Tx<Http>,
    deadline: Instant,
    head_request: bool,
) -> Result<BodyReader, Received> {
    let mut reader = HeadReader::default();
    let mut answered = false;
    let (head, input) = loop {
        let frame = tokio::select! {
            _ = app.reset() => return Err(Received::AppGone),
            _ = sleep_until(deadline) => return Err(Received::NoResponse(Failure::timeout(cx))),
            frame = up.recv() => frame,
        };
        match frame {
            Some(Frame::Data(Data {
                payload: Some(p), ..
            })) => {
                answered |= !p.is_empty();
                match reader.push(p, head_request) {
                    Ok(Some(done)) => break done,
                    Ok(None) => {}
                    Err(e) => {
                        return Err(Received::NoResponse(Failure::bad_gateway(e.to_string())))
                    }
                }
            }
            Some(Frame::Data(_) | Frame::Begin(_) | Frame::Flush) => {}
            Some(Frame::End(_)) => {
                let failure =
                    Failure::bad_gateway("the upstream closed the connection before a response");
                return Err(if answered {
                    Received::NoResponse(failure)
                } else {
                    Received::Closed(failure)
                });
            }
            Some(Frame::Abort(_)) | None => {
                let failure =
                    Failure::bad_gateway("the upstream reset the connection before a response");
                return Err(if answered {
                    Received::NoResponse(failure)
                } else {
                    Received::Closed(failure)
                });
            }
        }
    };
    let keep_alive = head.keep_alive;
    let decoder = BodyDecoder::new(head.body);
    if app
        .push(Frame::Begin(HttpBegin {
            headers: head.headers,
        }))
        .is_err()
    {
        return Err(Received::AppGone);
    }
    Ok(BodyReader {
        decoder,
        input,
        keep_alive,
    })
}

/// A response body being read: decoded as it comes, one data frame per piece.
#[derive(Debug)]
struct BodyReader {
    decoder: BodyDecoder,
    /// Read and not yet decoded.
    input: Bytes,
    keep_alive: bool,
}

/// What a body gives next.
enum Step {
    /// A piece of the body for the app.
    Data(Bytes),
    /// How the response ended (`Complete` or `Broken`).
    Done(Received),
}

impl BodyReader {
    /// The next piece of the body or its end, reading `up` as needed.
    fn poll_next(&mut self, up: &mut Rx<Tcp>, cx: &mut Context<'_>) -> Poll<Step> {
        loop {
            match self.decoder.decode(&mut self.input) {
                Ok(Some(Body::Data(bytes))) => return Poll::Ready(Step::Data(bytes)),
                Ok(Some(Body::End(trailers))) => {
                    return Poll::Ready(Step::Done(Received::Complete {
                        reusable: self.keep_alive && self.input.is_empty(),
                        end: trailers.map(HttpTrailers),
                    }))
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Step::Done(Received::Broken(e.to_string()))),
            }
            match std::task::ready!(up.poll_recv(cx)) {
                Some(Frame::Data(Data {
                    payload: Some(p), ..
                })) => self.input = p,
                Some(Frame::Data(_) | Frame::Begin(_) | Frame::Flush) => {}
                Some(Frame::End(_)) => {
                    return Poll::Ready(Step::Done(match self.decoder.eof() {
                        Ok(_) => Received::Complete {
                            reusable: false,
                            end: None,
                        },
                        Err(e) => Received::Broken(e.to_string()),
                    }))
                }
                Some(Frame::Abort(_)) | None => {
                    return Poll::Ready(Step::Done(Received::Broken(
                        "the upstream reset the connection".into(),
                    )))
                }
            }
        }
    }
}

/// Streams the body to the app in this task (a response that began before its request was
/// complete).
async fn receive_body(up: &mut Rx<Tcp>, app: &mut Tx<Http>, body: &mut BodyReader) -> Received {
    loop {
        let step = tokio::select! {
            _ = app.reset() => return Received::AppGone,
            step = std::future::poll_fn(|cx| body.poll_next(up, cx)) => step,
        };
        match step {
            Step::Data(bytes) => {
                if app.send(Frame::Data(Data::bytes(bytes))).await.is_err() {
                    return Received::AppGone;
                }
            }
            Step::Done(received) => return received,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(
            destination(b"example.com", b"http"),
            Some(Address::Host("example.com".into(), 80))
        );
        assert_eq!(
            destination(b"example.com", b"https"),
            Some(Address::Host("example.com".into(), 443))
        );
        assert_eq!(
            destination(b"localhost:8080", b"http"),
            Some(Address::Host("localhost".into(), 8080))
        );
        assert_eq!(
            destination(b"[::1]:9000", b"http"),
            Some(Address::Host("::1".into(), 9000))
        );
        assert_eq!(destination(b"a:b", b"http"), None);
        assert_eq!(destination(b"", b"http"), None);
        assert_eq!(destination(b"user@host", b"http"), None);
    }
}
