//! The `tcp` bindings: `server` accepts connections and routes each as a stream; `client` opens
//! a connection for each stream routed to it.
//!
//! ```yaml
//! north_tcp_server:
//!   type: tcp
//!   kind: server
//!   options: { host: 0.0.0.0, port: [7114, "9000-9001"] }
//!   routes:
//!     - when: [ { port: 7114 } ]
//!       exit: north_http_server
//! south_tcp_client:
//!   type: tcp
//!   kind: client
//!   options: { host: sse-server, port: 8001 }
//! ```
//!
//! Server properties: `zilla.binding.tcp.keepalive.{idle,interval,count}` and
//! `zilla.binding.tcp.user.timeout` (half-open clients), `zilla.binding.tcp.max.connections`
//! (connections open at once per server binding; at the limit new ones wait in the backlog).

mod config;
mod listeners;
mod pump;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto_tcp::{Address, Tcp, TcpBegin};
use tokio::net::TcpStream;
use tokio_util_shim::CancelOnDrop;
use zilla_engine::{
    handler_binding, AttachError, Binding, BindingContext, BindingDescriptor, BindingFactory,
    BindingId, ConfigError, ConfigErrors, Frame, Graph, Handler, Kind, Nothing, Protocols, Reset,
    Routes, Stream,
};

pub use config::{Ports, TcpCondition, TcpOptions};

/// The `tcp` binding type.
#[derive(Debug)]
pub struct TcpFactory;

zilla_engine::inventory::submit! { BindingDescriptor::new::<TcpFactory>() }

/// How long a client waits for a connection before refusing the stream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl BindingFactory for TcpFactory {
    const TYPE: &'static str = "tcp";
    const KINDS: &'static [Kind] = &[Kind::Server, Kind::Client];
    type Options = TcpOptions;
    type When = TcpCondition;
    type With = Nothing;

    fn protocols(kind: Kind) -> Protocols {
        match kind {
            Kind::Server => Protocols::emits::<Tcp>(),
            _ => Protocols::accepts::<Tcp>(),
        }
    }

    fn build(mut cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        match cx.kind {
            Kind::Server => {
                let options = cx.require_options()?;
                cx.require_exit()?;
                let mut errors = ConfigErrors::new();
                for (i, r) in cx.routes.iter().enumerate() {
                    if r.exit.is_none() {
                        errors.push(cx.error(
                            &format!("routes[{i}]"),
                            "a tcp server route needs an `exit`",
                        ));
                    }
                }
                if options.port.len() > 1024 {
                    errors.push(cx.error("options.port", "at most 1024 ports per binding"));
                }
                if !errors.is_empty() {
                    return Err(errors);
                }
                let p = &cx.properties;
                let idle = p.duration("zilla.binding.tcp.keepalive.idle", Duration::from_secs(60));
                let liveness = Liveness {
                    keepalive: (!idle.is_zero()).then(|| {
                        socket2::TcpKeepalive::new()
                            .with_time(idle)
                            .with_interval(p.duration(
                                "zilla.binding.tcp.keepalive.interval",
                                Duration::from_secs(10),
                            ))
                            .with_retries(p.usize("zilla.binding.tcp.keepalive.count", 3) as u32)
                    }),
                    user_timeout: Some(
                        p.duration("zilla.binding.tcp.user.timeout", Duration::from_secs(60)),
                    )
                    .filter(|t| !t.is_zero()),
                    limit: Arc::new(Limit::new(p.usize("zilla.binding.tcp.max.connections", 0))),
                };
                Ok(Box::new(TcpServer {
                    id: cx.id,
                    liveness: Arc::new(liveness),
                    name: cx.qualified_name(),
                    host: options.host,
                    ports: options.port,
                    routes: Arc::new(cx.routes),
                    running: Mutex::new(Vec::new()),
                }))
            }
            _ => {
                if cx.has_exit {
                    return Err(ConfigError::at_key(cx.path("exit"), "a tcp client has no `exit`: it connects to its `options.host` and `options.port`").into());
                }
                let target = cx.options.take().map(|o| {
                    let port = o.port.iter().next().unwrap_or(0);
                    (o.host, port)
                });
                Ok(handler_binding::<Tcp, _>(Arc::new(ClientInner {
                    warned: Arc::default(),
                    name: cx.qualified_name(),
                    target,
                    routes: cx.routes,
                })))
            }
        }
    }
}

/// What an I/O error means for an operator, and what to do.
pub(crate) fn cause(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    // EMFILE and ENFILE have no `ErrorKind` of their own (Linux: 24 and 23).
    if matches!(e.raw_os_error(), Some(24 | 23)) {
        return "out of file descriptors (each proxied client holds two): raise the open files limit (ulimit -Hn, LimitNOFILE=, the container's nofile ulimit)";
    }
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused: nothing listens at the address",
        ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable => {
            "unreachable: check the host and the network"
        }
        ErrorKind::TimedOut => "timed out",
        _ => "see the error",
    }
}

mod tokio_util_shim {
    //! A tiny cancel-on-drop flag for accept loops (avoids a tokio-util dependency here).
    use tokio::sync::watch;

    /// Stops the accept loop it was made for when dropped or cancelled.
    #[derive(Debug)]
    pub(crate) struct CancelOnDrop(pub(crate) watch::Sender<bool>);

    impl CancelOnDrop {
        pub(crate) fn new() -> (Self, watch::Receiver<bool>) {
            let (tx, rx) = watch::channel(false);
            (CancelOnDrop(tx), rx)
        }
    }

    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(true);
        }
    }
}

/// How a server finds clients that went away without a word (half-open: no FIN, no RST): TCP
/// keepalive probes an idle connection, and data left unacknowledged too long ends it.
#[derive(Debug)]
struct Liveness {
    keepalive: Option<socket2::TcpKeepalive>,
    user_timeout: Option<Duration>,
    /// Connections open at once (`zilla.binding.tcp.max.connections`).
    limit: Arc<Limit>,
}

/// At most `max` connections open at once across a server's workers and ports (0: no limit).
/// At the limit the accept loops wait, so new connections wait in the kernel's backlog (a
/// client sees a slow connect, not a refusal) and are taken as others close.
///
/// Not a semaphore taken before `accept`: each worker has its own `SO_REUSEPORT` listener and
/// the kernel picks which one a connection queues on, so places held by idle accept loops
/// would leave a connection queued at a loop without one while nothing is served. A place is
/// reserved after `accept` instead, and the loops only pause while no place is free.
#[derive(Debug)]
struct Limit {
    max: usize,
    open: std::sync::atomic::AtomicUsize,
    freed: tokio::sync::Notify,
}

impl Limit {
    fn new(max: usize) -> Limit {
        Limit {
            max,
            open: std::sync::atomic::AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// Waits until a connection may be accepted.
    async fn room(&self) {
        use std::sync::atomic::Ordering;
        if self.max == 0 {
            return;
        }
        loop {
            let freed = self.freed.notified();
            if self.open.load(Ordering::Acquire) < self.max {
                return;
            }
            freed.await;
        }
    }

    /// A place for an accepted connection, waiting for one when all are taken (the accept
    /// loops of several workers may each have taken a connection as the last place went);
    /// `None` at once when there is no limit.
    async fn acquire(self: &Arc<Self>) -> Option<Permit> {
        use std::sync::atomic::Ordering;
        if self.max == 0 {
            return None;
        }
        loop {
            let freed = self.freed.notified();
            let reserved = self
                .open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.max).then_some(n + 1)
                })
                .is_ok();
            if reserved {
                return Some(Permit(self.clone()));
            }
            freed.await;
        }
    }

    fn full(&self) -> bool {
        self.max > 0 && self.open.load(std::sync::atomic::Ordering::Acquire) >= self.max
    }
}

/// One open connection of a server.
struct Permit(Arc<Limit>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

struct TcpServer {
    id: BindingId,
    liveness: Arc<Liveness>,
    name: String,
    host: String,
    ports: Ports,
    routes: Arc<Routes<TcpCondition, Nothing>>,
    running: Mutex<Vec<CancelOnDrop>>,
}

impl Binding for TcpServer {
    fn attach(&self, graph: &Arc<Graph>) -> Result<Vec<String>, AttachError> {
        let mut endpoints = Vec::new();
        let mut started = Vec::new();
        let workers = graph.workers();
        for port in self.ports.iter() {
            let listeners = listeners::listen(&self.host, port, &workers)?;
            let local = listeners[0].local_addr().map_err(|e| e.to_string())?;
            endpoints.push(format!("tcp://{local}"));
            for (listener, handle) in listeners.into_iter().zip(&workers) {
                let (stop, mut stopped) = CancelOnDrop::new();
                started.push(stop);
                let graph = graph.clone();
                let routes = self.routes.clone();
                let name = self.name.clone();
                let id = self.id;
                let liveness = self.liveness.clone();
                handle.spawn(async move {
                    let mut last_warned: Option<std::time::Instant> = None;
                    let mut last_full: Option<std::time::Instant> = None;
                    loop {
                        if liveness.limit.full() {
                            if last_full.is_none_or(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(1)) {
                                last_full = Some(std::time::Instant::now());
                                tracing::warn!(binding = %name, max = liveness.limit.max,
                                    "connection limit reached (zilla.binding.tcp.max.connections): new connections wait in the backlog until others close; raise the limit or add replicas");
                            }
                            tokio::select! {
                                _ = stopped.changed() => break,
                                () = liveness.limit.room() => {}
                            }
                        }
                        tokio::select! {
                            _ = stopped.changed() => break,
                            accepted = listener.accept() => match accepted {
                                Ok((socket, peer)) => {
                                    let permit = tokio::select! {
                                        _ = stopped.changed() => break,
                                        permit = liveness.limit.acquire() => permit,
                                    };
                                    accept(&graph, (id, &name), (&routes, &liveness), (socket, peer), permit)
                                }
                                Err(e) => {
                                    // Out of file descriptors and the like: back off, don't
                                    // spin; the connection waits in the backlog and is taken
                                    // when descriptors free up. Said at most once a second.
                                    if last_warned.is_none_or(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(1)) {
                                        last_warned = Some(std::time::Instant::now());
                                        tracing::warn!(binding = %name, error = %e, "accept failed: {}", cause(&e));
                                    }
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            }
                        }
                    }
                });
            }
        }
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(started);
        Ok(endpoints)
    }

    fn detach(&self) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

fn accept(
    graph: &Arc<Graph>,
    (id, name): (BindingId, &str),
    (routes, liveness): (&Routes<TcpCondition, Nothing>, &Liveness),
    (socket, peer): (TcpStream, SocketAddr),
    permit: Option<Permit>,
) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let _ = socket.set_nodelay(true);
    let sock = socket2::SockRef::from(&socket);
    if let Some(k) = &liveness.keepalive {
        let _ = sock.set_tcp_keepalive(k);
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(t) = liveness.user_timeout {
        let _ = sock.set_tcp_user_timeout(Some(t));
    }
    let route = routes.resolve(graph, None, |c| {
        c.matches(Some(local.ip()), local.port(), None)
    });
    let Some(exit) = route.and_then(|r| r.exit) else {
        tracing::debug!(binding = %name, %peer, "no route: connection closed");
        return;
    };
    let begin = TcpBegin {
        tls: None,
        source: Some(peer),
        destination: Some(Address::Socket(local)),
    };
    match graph.open_from::<Tcp>(id, exit, begin, None) {
        Ok((tx, rx)) => graph.spawn(async move {
            let _permit = permit;
            pump::pump(socket, tx, rx).await;
        }),
        Err(_) => {
            tracing::debug!(binding = %name, %peer, exit = %graph.name(exit), "stream refused: connection closed")
        }
    }
}

struct ClientInner {
    /// When a failed connect was last logged (ms since the epoch): at most one line a second.
    warned: Arc<std::sync::atomic::AtomicU64>,
    name: String,
    target: Option<(String, u16)>,
    routes: Routes<TcpCondition, Nothing>,
}

impl Handler<Tcp> for ClientInner {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Tcp>) -> Result<(), Reset<Tcp>> {
        let target = match (&self.target, &stream.begin.destination) {
            (Some((host, port)), _) => Address::Host(host.clone(), *port),
            (None, Some(dest)) => dest.clone(),
            (None, None) => return Err(Reset(None)),
        };
        if !self.routes.is_empty() {
            let (ip, host) = match &target {
                Address::Socket(a) => (Some(a.ip()), None),
                Address::Host(h, _) => (h.parse().ok(), Some(h.as_str())),
            };
            if self
                .routes
                .resolve(graph, stream.session.as_deref(), |c| {
                    c.matches(ip, target.port(), host)
                })
                .is_none()
            {
                return Err(Reset(None));
            }
        }
        let graph2 = graph.clone();
        let name = self.name.clone();
        let warned = self.warned.clone();
        let warn = move || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let last = warned.load(std::sync::atomic::Ordering::Relaxed);
            now >= last + 1000
                && warned
                    .compare_exchange(
                        last,
                        now,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok()
        };
        // Taken apart before the task: the stream itself would stay in its state.
        let (rx, mut tx, trace_id) = stream.into_halves();
        graph.spawn(async move {
            // Boxed: connecting (and resolving) is not part of a connection's long-lived state.
            let connect = match &target {
                Address::Socket(a) => {
                    Box::pin(tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        TcpStream::connect(*a),
                    ))
                    .await
                }
                Address::Host(h, p) => {
                    // Resolved first, so that a name that does not resolve is told apart
                    // (Zilla's BINDING_TCP_DNS_FAILED) from an address that does not answer.
                    let resolved = Box::pin(tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        tokio::net::lookup_host((h.as_str(), *p)),
                    ))
                    .await;
                    let addrs: Vec<SocketAddr> = match resolved {
                        Ok(Ok(addrs)) => addrs.collect(),
                        Ok(Err(_)) | Err(_) => Vec::new(),
                    };
                    if addrs.is_empty() {
                        if warn() {
                            tracing::warn!(binding = %name, host = %h, "connect failed: the name does not resolve (DNS)");
                        }
                        graph2.event(&name, "BINDING_TCP_DNS_FAILED", trace_id, h.clone());
                        return; // dropping the halves refuses the stream
                    }
                    Box::pin(tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        TcpStream::connect(&addrs[..]),
                    ))
                    .await
                }
            };
            let socket = match connect {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    if warn() {
                        tracing::warn!(binding = %name, %target, error = %e, "connect failed: {}", cause(&e));
                    }
                    graph2.event(
                        &name,
                        "BINDING_TCP_CONNECT_FAILED",
                        trace_id,
                        format!("{target}: {e}"),
                    );
                    return; // dropping the halves refuses the stream
                }
                Err(_) => {
                    if warn() {
                        tracing::warn!(binding = %name, %target, "connect failed: timed out");
                    }
                    graph2.event(
                        &name,
                        "BINDING_TCP_CONNECT_FAILED",
                        trace_id,
                        format!("{target}: timed out"),
                    );
                    return;
                }
            };
            let _ = socket.set_nodelay(true);
            let begin = TcpBegin {
                tls: None,
                source: socket.local_addr().ok(),
                destination: socket.peer_addr().ok().map(Address::Socket),
            };
            if tx.push(Frame::Begin(begin)).is_err() {
                return;
            }
            pump::pump(socket, tx, rx).await;
        });
        Ok(())
    }
}

#[cfg(test)]
mod limit_tests {
    use super::Limit;
    use std::sync::Arc;
    use std::time::Duration;

    /// Places are reserved, not counted after the fact: with one place taken, a second accept
    /// loop (another worker's) waits until it is given back, and with no limit nothing waits.
    #[tokio::test]
    async fn a_connection_waits_for_a_place_until_one_is_given_back() {
        let limit = Arc::new(Limit::new(1));
        let first = limit.acquire().await.expect("a place");
        assert!(limit.full());
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "two connections in one place");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the place given back is taken")
            .unwrap();
        assert!(second.is_some() && limit.full());
        drop(second);
        assert!(!limit.full());

        let unlimited = Arc::new(Limit::new(0));
        assert!(unlimited.acquire().await.is_none());
        assert!(!unlimited.full());
    }
}

#[cfg(test)]
mod cause_tests {
    use super::cause;
    use std::io::{Error, ErrorKind};

    #[test]
    fn causes_name_what_to_do() {
        assert!(cause(&Error::from_raw_os_error(24)).starts_with("out of file descriptors"));
        assert!(cause(&Error::from_raw_os_error(23)).starts_with("out of file descriptors"));
        assert!(cause(&Error::from(ErrorKind::ConnectionRefused)).starts_with("connection refused"));
        assert!(cause(&Error::from_raw_os_error(111)).starts_with("connection refused"));
        assert!(cause(&Error::from(ErrorKind::HostUnreachable)).starts_with("unreachable"));
        assert_eq!(cause(&Error::from(ErrorKind::TimedOut)), "timed out");
        assert_eq!(cause(&Error::from(ErrorKind::Other)), "see the error");
    }
}
