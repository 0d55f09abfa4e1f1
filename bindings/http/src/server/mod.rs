//! The http server binding: accepts `tcp` byte streams (from a tcp or tls server), speaks
//! HTTP/1.1 ([`h1`]) or HTTP/2 ([`h2`]) on them, and opens one `http` stream per request to the
//! exit chosen by its routes.
//!
//! What is version independent lives here: the CORS check, credential extraction and guard
//! sessions, routing and header overrides ([`Server::admit`]), and the session timers that
//! challenge and end guarded responses ([`SessionTimer`]).

mod auth;
mod cors;
pub(crate) mod h1;
mod h2;
mod validate;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use proto_http::{Headers, Http, HttpBegin, HttpChallenge, HttpReset};
use proto_tcp::{Tcp, TcpBegin};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::ReusableBoxFuture;
use zilla_engine::{
    handler_binding, Binding, BindingContext, BindingId, ConfigErrors, Frame, Graph, Guard,
    GuardId, Handler, Reset, Routes, Rx, Session, Stream, Tx, Values,
};

use crate::config::{HttpCondition, HttpVersion, HttpWith};
use crate::metrics::{Exchange, HttpMetrics};
use crate::overrides::Overrides;
use crate::pattern::{self, compile_routes, condition_captures, condition_matches};
use crate::HttpFactory;
use auth::Extractor;
use cors::Cors;

/// Property: the largest request header section (HTTP/1.1) or header list (HTTP/2) accepted.
pub(crate) const MAX_HEADER_LIST_SIZE: &str = "zilla.binding.http.max.header.list.size";
/// Property: the most concurrent HTTP/2 streams per connection.
pub(crate) const CONCURRENT_STREAMS: &str = "zilla.binding.http.concurrent.streams";
/// Property: the value of a `Server` header added to every response (absent: none).
pub(crate) const SERVER_HEADER: &str = "zilla.binding.http.server.header";
/// Property: how long an HTTP/1.1 connection may take to send a request head, counted from the
/// end of the previous exchange (an idle keep-alive connection is closed, a partial head gets
/// 408).
pub(crate) const REQUEST_TIMEOUT: &str = "zilla.binding.http.server.request.timeout";

/// The event of every request routed upstream (Zilla's).
pub(crate) const EVENT_REQUEST_ACCEPTED: &str = "BINDING_HTTP_REQUEST_ACCEPTED";

/// `BINDING_HTTP_REQUEST_ACCEPTED`'s text, as Zilla's: `<identity or -> <METHOD>
/// <scheme>://<authority><path>`. The query is left out: it may hold credentials
/// (`?access_token=`), which never go into a log line.
fn accepted(headers: &Headers, session: Option<&Session>) -> String {
    let get = |n: &str| headers.get_str(n).unwrap_or("");
    let path = get(":path");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    format!(
        "{} {} {}://{}{}",
        session.and_then(|s| s.identity.as_deref()).unwrap_or("-"),
        get(":method"),
        get(":scheme"),
        get(":authority"),
        path
    )
}

/// Builds an http server.
pub(crate) fn build(mut cx: BindingContext<HttpFactory>) -> Result<Box<dyn Binding>, ConfigErrors> {
    cx.require_exit()?;
    let options = cx.options.take().unwrap_or_default();
    let mut errors = ConfigErrors::new();

    let versions = options
        .versions
        .clone()
        .unwrap_or_else(|| vec![HttpVersion::Http11, HttpVersion::H2]);
    if versions.is_empty() {
        errors.push(cx.error(
            "options.versions",
            "no HTTP version allowed: list `http/1.1`, `h2` or both (or remove `versions`)",
        ));
    }

    for (i, route) in cx.routes.iter().enumerate() {
        if route.exit.is_none() {
            errors.push(cx.error(
                &format!("routes[{i}]"),
                "an http server route needs an `exit`",
            ));
        }
    }
    compile_routes(&cx, &cx.routes, &mut errors);
    let overrides = Overrides::compile(
        &cx,
        "options.overrides",
        options.overrides.as_ref(),
        &mut errors,
    );

    let mut auth = None;
    if let Some(authorization) = &options.authorization {
        if authorization.len() > 1 {
            errors.push(cx.error(
                "options.authorization",
                "at most one guard may be named in `authorization`",
            ));
        }
        if let Some((guard, a)) = authorization.first() {
            match (
                cx.guard(guard, &format!("options.authorization.{guard}")),
                Extractor::new(&a.credentials),
            ) {
                (Ok(id), Ok(x)) => auth = Some((id, x)),
                (Err(e), _) => errors.push(e),
                (_, Err((rel, msg))) => {
                    let rel = if rel.is_empty() {
                        format!("options.authorization.{guard}.credentials")
                    } else {
                        format!("options.authorization.{guard}.credentials.{rel}")
                    };
                    errors.push(cx.error(&rel, msg));
                }
            }
        }
    }

    let requests = errors
        .take(validate::Requests::build(
            &cx,
            options.requests.as_deref().unwrap_or_default(),
        ))
        .flatten();

    if !errors.is_empty() {
        return Err(errors);
    }

    let server_header = cx
        .properties
        .get(SERVER_HEADER)
        .filter(|s| !s.is_empty())
        .map(|s| Bytes::from(s.to_string()));
    Ok(handler_binding::<Tcp, _>(Arc::new(ServerHandler(
        Arc::new(Server {
            id: cx.id,
            metrics: HttpMetrics::new(&cx.metrics),
            name: cx.qualified_name(),
            h1: versions.contains(&HttpVersion::Http11),
            h2: versions.contains(&HttpVersion::H2),
            cors: Cors::new(options.access_control.as_ref()),
            auth,
            overrides,
            requests,
            routes: cx.routes,
            max_header_list_size: cx.properties.usize(MAX_HEADER_LIST_SIZE, 8192).max(64),
            request_timeout: cx
                .properties
                .duration(REQUEST_TIMEOUT, Duration::from_secs(60)),
            concurrent_streams: cx.properties.usize(CONCURRENT_STREAMS, 100).max(1),
            max_client_resets: cx
                .properties
                .usize("zilla.binding.http.server.max.client.resets", 200)
                .min(u32::MAX as usize) as u32,
            server_header,
        }),
    ))))
}

/// Accepts the byte streams of the server's connections.
struct ServerHandler(Arc<Server>);

/// The built server: everything a connection needs, shared read-only by all of them.
pub(crate) struct Server {
    id: BindingId,
    /// The `http.*` metrics it records, if any.
    metrics: Option<Arc<HttpMetrics>>,
    name: String,
    h1: bool,
    h2: bool,
    cors: Cors,
    auth: Option<(GuardId, Extractor)>,
    overrides: Overrides,
    requests: Option<Arc<validate::Requests>>,
    routes: Routes<HttpCondition, HttpWith>,
    pub(crate) max_header_list_size: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) concurrent_streams: usize,
    /// Client resets of unfinished streams per 10 s an HTTP/2 connection may make.
    pub(crate) max_client_resets: u32,
    pub(crate) server_header: Option<Bytes>,
}

/// How a connection is spoken, decided when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// HTTP/1.1; `h2_preface` if a prior-knowledge preface may switch it to HTTP/2.
    Http11 { h2_preface: bool },
    /// HTTP/2 from the first byte.
    H2,
}

impl Handler<Tcp> for ServerHandler {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Tcp>) -> Result<(), Reset<Tcp>> {
        let server = &self.0;
        let tls = stream.begin.tls.as_ref();
        let version = match tls.and_then(|t| t.alpn.as_deref()) {
            Some(b"h2") if server.h2 => Version::H2,
            Some(b"h2") => return Err(Reset(None)),
            Some(b"http/1.1") if server.h1 => Version::Http11 { h2_preface: false },
            Some(b"http/1.1") => return Err(Reset(None)),
            _ if server.h1 => Version::Http11 {
                h2_preface: server.h2 && tls.is_none(),
            },
            _ => Version::H2,
        };
        let scheme: &'static str = if tls.is_some() { "https" } else { "http" };
        let server = server.clone();
        let Stream { mut tx, rx, .. } = stream;
        tx.push(Frame::Begin(TcpBegin::default()))?;
        let graph2 = graph.clone();
        graph.spawn(async move {
            match version {
                // Boxed: HTTP/1.1 connections do not carry HTTP/2's (larger) state.
                Version::H2 => {
                    Box::pin(h2::serve(server, graph2, tx, rx, Bytes::new(), scheme)).await
                }
                Version::Http11 { h2_preface } => {
                    h1::serve(server, graph2, tx, rx, scheme, h2_preface).await
                }
            }
        });
        Ok(())
    }
}

/// What the server answers itself, without routing: CORS and authorization refusals, preflight,
/// challenge responses, no route, and requests refused downstream.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Status code.
    pub(crate) status: u16,
    /// Extra headers (lower-case names).
    pub(crate) headers: Headers,
    /// Close the HTTP/1.1 connection after it (`Connection: close` form).
    pub(crate) close: bool,
}

impl Answer {
    fn close(status: u16) -> Answer {
        Answer {
            status,
            headers: Headers::new(),
            close: true,
        }
    }
}

/// A request routed and opened: the halves of its `http` stream.
#[derive(Debug)]
pub(crate) struct Opened {
    /// Request direction (headers were sent with the open; body and end go here).
    pub(crate) tx: Tx<Http>,
    /// Response direction.
    pub(crate) rx: Rx<Http>,
    /// The guard session riding on the stream.
    pub(crate) session: Option<Arc<Session>>,
    /// The allowed foreign `Origin` whose CORS headers decorate the response.
    pub(crate) origin: Option<Bytes>,
    /// The exchange's `http.*` metrics, if the binding records any.
    pub(crate) meter: Option<Exchange>,
    /// The guard of the session, told when its client is challenged.
    pub(crate) guard: Option<Arc<dyn Guard>>,
}

/// The outcome of [`Server::admit`].
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Answered by the server.
    Answer(Answer),
    /// Opened to an exit.
    Open(Opened),
}

/// A connection's latest session from a challenge response (HTTP/2 only: with HTTP/1.1 no
/// response can be open while a challenge response is read).
pub(crate) type SessionUpdates = watch::Sender<Option<Arc<Session>>>;

impl Server {
    /// Decides what to do with a request whose headers (pseudo-headers first) are `headers`.
    pub(crate) fn admit(
        &self,
        graph: &Arc<Graph>,
        mut headers: Headers,
        updates: Option<&SessionUpdates>,
    ) -> Outcome {
        let origin = match self.cors.check(&headers) {
            cors::Verdict::Plain => None,
            cors::Verdict::Allowed(o) => Some(o),
            cors::Verdict::Forbidden => return Outcome::Answer(Answer::close(403)),
            cors::Verdict::Preflight(h) => {
                return Outcome::Answer(Answer {
                    status: 204,
                    headers: h,
                    close: false,
                })
            }
        };
        let decorate = |mut a: Answer| {
            if let Some(o) = &origin {
                self.cors.decorate(o, &mut a.headers);
            }
            Outcome::Answer(a)
        };

        let mut found = false;
        let session = match &self.auth {
            Some((guard, x)) => match x.extract(&headers) {
                Some(credentials) => {
                    found = true;
                    graph.guard(*guard).reauthorize(credentials)
                }
                None => None,
            },
            None => None,
        };
        let unauthorized = if found { 403 } else { 401 };

        if self.auth.is_some() && is_challenge_response(&headers) {
            return decorate(match &session {
                Some(s) => {
                    if let Some(u) = updates {
                        u.send_replace(Some(s.clone()));
                    }
                    Answer {
                        status: 204,
                        headers: Headers::new(),
                        close: false,
                    }
                }
                None => Answer::close(unauthorized),
            });
        }

        // Held apart from the headers, which the overrides change: captures borrow from them.
        let path = headers.get_str(":path").unwrap_or("").to_string();
        let method = headers.get_str(":method").unwrap_or("").to_string();
        let request = Values {
            method: Some(&method),
            // As Zilla documents for http: the whole :path, query included.
            path: Some(&path),
            ..Values::default()
        };
        let route = self
            .routes
            .resolve_with(graph, session.as_deref(), request, |c| {
                condition_captures(c, &headers, &path)
            });
        let Some((route, exit, params)) =
            route.and_then(|(r, params)| r.exit.map(|e| (r, e, params)))
        else {
            let status = if self.auth.is_some() && session.is_none() {
                unauthorized
            } else if session.is_some() && self.routes.forbidden(|c| condition_matches(c, &headers))
            {
                // Beyond Zilla (404): the path has a route, the session lacks its roles.
                403
            } else {
                404
            };
            return decorate(Answer::close(status));
        };

        // Checked as the client sent it (before overrides), before anything opens upstream.
        let content = match self.requests.as_ref().map(|r| r.check_head(&headers)) {
            Some(Err(())) => return decorate(Answer::close(400)),
            Some(Ok(content)) => content,
            None => None,
        };

        let values = Values {
            params: &params,
            session: session.as_deref(),
            ..request
        };
        self.overrides.apply(&mut headers, &values);
        if let Some(overrides) = pattern::route_overrides(route.with.as_ref()) {
            overrides.apply(&mut headers, &values);
        }

        let accepted = accepted(&headers, session.as_deref());
        match graph.open_from::<Http>(self.id, exit, HttpBegin { headers }, session.clone()) {
            Ok((tx, rx)) => {
                graph.event(&self.name, EVENT_REQUEST_ACCEPTED, tx.trace_id(), accepted);
                let (tx, rx) = match (content, &self.requests) {
                    (Some(content), Some(r)) => r.guard_body(graph, content, tx, rx),
                    _ => (tx, rx),
                };
                Outcome::Open(Opened {
                    tx,
                    rx,
                    origin,
                    meter: self.metrics.as_ref().map(HttpMetrics::exchange),
                    guard: session.as_ref().map(|s| graph.guard_handle(s.guard)),
                    session,
                })
            }
            Err(Reset(ext)) => decorate(refused(ext)),
        }
    }

    /// Decorates a response's headers for an allowed foreign origin.
    pub(crate) fn decorate(&self, origin: Option<&Bytes>, headers: &mut Headers) {
        if let Some(o) = origin {
            self.cors.decorate(o, headers);
        }
    }

    /// The name of the binding, for logs.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// The answer to a request refused downstream before any response: the status and headers of
/// an [`HttpReset`] extension, else `404`; the connection stays open.
pub(crate) fn refused(ext: Option<HttpReset>) -> Answer {
    match ext {
        Some(r) => Answer {
            status: r.status,
            headers: r.headers,
            close: false,
        },
        None => Answer {
            status: 404,
            headers: Headers::new(),
            close: false,
        },
    }
}

/// `POST` with `content-type: application/x-challenge-response` and `content-length: 0`.
fn is_challenge_response(h: &Headers) -> bool {
    h.get(":method").is_some_and(|m| m.as_ref() == b"POST")
        && h.get_str("content-type").is_some_and(|c| {
            c.trim()
                .eq_ignore_ascii_case("application/x-challenge-response")
        })
        && h.get_str("content-length").is_some_and(|l| l.trim() == "0")
}

/// The challenge sent to the writer of a guarded response before its credentials expire.
pub(crate) fn challenge_ext() -> Option<HttpChallenge> {
    let mut headers = Headers::new();
    headers.append(":method", Bytes::from_static(b"POST"));
    headers.append(
        "content-type",
        Bytes::from_static(b"application/x-challenge-response"),
    );
    Some(HttpChallenge { headers })
}

/// What a [`SessionTimer`] fired for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerEvent {
    /// Ask the client for fresh credentials.
    Challenge,
    /// The credentials expired: end the response.
    Expire,
}

/// The challenge and expiry deadlines of a guarded response: one timer per stream, moved later
/// when a challenge response on the same connection refreshes the session.
#[derive(Debug)]
pub(crate) struct SessionTimer {
    /// The session's guard, told of each challenge, and the session.
    told: Option<(Arc<dyn Guard>, Arc<Session>)>,
    guard: Option<GuardId>,
    identity: Option<Arc<str>>,
    challenge: Option<Instant>,
    expire: Option<Instant>,
    /// The sleep until the nearer deadline: made once, only for a session that has one, and
    /// moved when a deadline does (not made afresh per wait, which would put a timer in and
    /// out of the wheel for every frame of a guarded stream).
    sleep: Option<Pin<Box<Sleep>>>,
    /// The wait for a renewed session, made once and reused.
    updates: Option<ReusableBoxFuture<'static, Renewal>>,
}

/// A renewed session (or `false`: no more renewals), with the receiver to wait on again.
type Renewal = (bool, watch::Receiver<Option<Arc<Session>>>);

async fn renewal(mut rx: watch::Receiver<Option<Arc<Session>>>) -> Renewal {
    (rx.changed().await.is_ok(), rx)
}

fn instant(at: Option<SystemTime>) -> Option<Instant> {
    let at = at?;
    let left = at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Some(Instant::now() + left)
}

impl SessionTimer {
    /// Timers for `session` (none without one).
    pub(crate) fn new(
        session: Option<&Arc<Session>>,
        guard: Option<Arc<dyn Guard>>,
        updates: Option<watch::Receiver<Option<Arc<Session>>>>,
    ) -> SessionTimer {
        match session {
            Some(s) => SessionTimer {
                told: guard.map(|g| (g, s.clone())),
                guard: Some(s.guard),
                identity: s.identity.clone(),
                challenge: instant(s.challenge_at),
                expire: instant(s.expires_at),
                sleep: None,
                updates: updates.map(|u| ReusableBoxFuture::new(renewal(u))),
            },
            None => SessionTimer {
                told: None,
                guard: None,
                identity: None,
                challenge: None,
                expire: None,
                sleep: None,
                updates: None,
            },
        }
    }

    /// Polls for the next deadline (pending forever if there is none).
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<TimerEvent> {
        loop {
            if let Some(update) = &mut self.updates {
                if let Poll::Ready((alive, mut rx)) = update.poll(cx) {
                    if !alive {
                        self.updates = None;
                        continue;
                    }
                    let fresh = rx.borrow_and_update().clone();
                    if let Some(s) = fresh {
                        if Some(s.guard) == self.guard && s.identity == self.identity {
                            self.challenge = instant(s.challenge_at);
                            self.expire = instant(s.expires_at);
                        }
                    }
                    update.set(renewal(rx));
                    continue;
                }
            }
            let (at, event) = match (self.challenge, self.expire) {
                (Some(c), Some(e)) if c < e => (c, TimerEvent::Challenge),
                (Some(c), None) => (c, TimerEvent::Challenge),
                (_, Some(e)) => (e, TimerEvent::Expire),
                (None, None) => {
                    // Both deadlines passed (or none): no sleep kept for the rest of the stream.
                    self.sleep = None;
                    return Poll::Pending;
                }
            };
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if sleep.deadline() != at {
                sleep.as_mut().reset(at);
            }
            std::task::ready!(sleep.as_mut().poll(cx));
            match event {
                TimerEvent::Challenge => {
                    self.challenge = None;
                    if let Some((guard, session)) = &self.told {
                        guard.challenged(session);
                    }
                }
                TimerEvent::Expire => self.expire = None,
            }
            return Poll::Ready(event);
        }
    }

    /// Waits for the next deadline (forever if there is none). Cancel-safe.
    pub(crate) async fn next(&mut self) -> TimerEvent {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

#[cfg(test)]
mod tests;

/// The next frame of an optional reader; pends forever when there is none (for `select!`).
async fn recv(rx: &mut Option<Rx<Http>>) -> Option<Frame<Http>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Credit for a pending body piece, or the application's refusal of the request; pends forever
/// when there is no writer.
async fn ready_or_reset(
    tx: &mut Option<Tx<Http>>,
    pending: bool,
) -> Result<(), zilla_engine::Reset<Http>> {
    match tx {
        Some(tx) if pending => tx.ready().await,
        Some(tx) => Err(tx.reset().await),
        None => std::future::pending().await,
    }
}
