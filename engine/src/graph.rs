//! The stream graph at run time: the built bindings of a config, wired by resolved exits, and
//! the contract a built binding fulfils ([`Binding`], [`Handler`]).
//!
//! A [`Graph`] is immutable once built (see `build`). Hot reload builds a new one and swaps it
//! in for new connections; streams already open keep what they hold and finish on the graph they
//! started on.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::Catalog;
use crate::events::Events;
use crate::guard::{Guard, GuardId, Session};
use crate::kind::Kind;
use crate::meter::{stream_meters, NodeMeters};
use crate::metrics::Metrics;
use crate::plugin::{Exporter, Vault, VaultId};
use crate::properties::Properties;
use crate::stream::{metered_direction, Protocol, Reset, Rx, Tx};

/// Index of a binding in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BindingId(pub usize);

/// Default byte credit of one stream direction (`zilla.engine.stream.window`).
pub const DEFAULT_WINDOW: usize = 64 * 1024;

pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) type_name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) binding: Box<dyn Binding>,
    pub(crate) handler: Option<AnyHandler>,
    /// The `stream.*` metrics it records.
    pub(crate) meters: NodeMeters,
}

/// The built bindings and plugins of one config.
pub struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) guards: Vec<Arc<dyn Guard>>,
    pub(crate) vaults: Vec<Arc<dyn Vault>>,
    pub(crate) catalogs: Vec<Arc<dyn Catalog>>,
    pub(crate) events: Events,
    pub(crate) metrics: Metrics,
    /// Every exporter (attached and detached with the graph).
    pub(crate) exporters: Vec<Arc<dyn Exporter>>,
    pub(crate) window: usize,
    pub(crate) tracker: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    pub(crate) draining: CancellationToken,
    pub(crate) properties: Arc<Properties>,
    pub(crate) workers: Workers,
    /// `(namespace, zilla.yaml text)` of every namespace a binding generated.
    pub(crate) generated: Vec<(String, String)>,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field(
                "bindings",
                &self.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

static TRACE_IDS: AtomicU64 = AtomicU64::new(1);

impl Graph {
    /// Opens a stream of protocol `P` to binding `exit` from outside the graph (tests, tools):
    /// as [`Graph::open_from`], without an opener to count it for.
    pub fn open<P: Protocol>(
        self: &Arc<Self>,
        exit: BindingId,
        begin: P::Begin,
        session: Option<Arc<Session>>,
    ) -> Result<(Tx<P>, Rx<P>), Reset<P>> {
        self.open_stream(None, exit, begin, session)
    }

    /// Opens a stream of protocol `P` from binding `from` to binding `exit`: returns the
    /// opener's halves (write the initial direction, read the reply), or the reset if the
    /// binding refused it. The `stream.*` metrics of both are counted on its pipes.
    pub fn open_from<P: Protocol>(
        self: &Arc<Self>,
        from: BindingId,
        exit: BindingId,
        begin: P::Begin,
        session: Option<Arc<Session>>,
    ) -> Result<(Tx<P>, Rx<P>), Reset<P>> {
        self.open_stream(Some(from), exit, begin, session)
    }

    fn open_stream<P: Protocol>(
        self: &Arc<Self>,
        from: Option<BindingId>,
        exit: BindingId,
        begin: P::Begin,
        session: Option<Arc<Session>>,
    ) -> Result<(Tx<P>, Rx<P>), Reset<P>> {
        let node = self.nodes.get(exit.0).ok_or(Reset(None))?;
        let handler = node
            .handler
            .as_ref()
            .and_then(AnyHandler::get::<P>)
            .ok_or(Reset(None))?;
        let opener = from.and_then(|f| self.nodes.get(f.0)).map(|n| &n.meters);
        let (initial, reply) = match stream_meters(opener, &node.meters) {
            Some((i, r)) => (Some(i), Some(r)),
            None => (None, None),
        };
        let trace_id = TRACE_IDS.fetch_add(1, Ordering::Relaxed);
        let (initial_tx, initial_rx) = metered_direction::<P>(self.window, initial, trace_id);
        let (reply_tx, reply_rx) = metered_direction::<P>(self.window, reply, trace_id);
        tracing::debug!(binding = %node.name, trace_id, protocol = P::NAME, "stream opened");
        handler.open(
            self,
            Stream {
                begin,
                session,
                trace_id,
                rx: initial_rx,
                tx: reply_tx,
            },
        )?;
        Ok((initial_tx, reply_rx))
    }

    /// Hands a stream this binding accepted, as it is, to binding `exit`: no new pipes and no
    /// task of its own, so a binding that only picks where a stream goes (asyncapi) costs
    /// nothing per event. Returns the reset if `exit` refused it.
    pub fn forward<P: Protocol>(
        self: &Arc<Self>,
        exit: BindingId,
        stream: Stream<P>,
    ) -> Result<(), Reset<P>> {
        let node = self.nodes.get(exit.0).ok_or(Reset(None))?;
        let handler = node
            .handler
            .as_ref()
            .and_then(AnyHandler::get::<P>)
            .ok_or(Reset(None))?;
        tracing::debug!(binding = %node.name, trace_id = stream.trace_id, protocol = P::NAME, "stream forwarded");
        handler.open(self, stream)
    }

    /// The namespaces bindings generated (asyncapi), as `(name, zilla.yaml text)`.
    pub fn generated(&self) -> &[(String, String)] {
        &self.generated
    }

    /// Spawns a stream task, tracked so that shutdown can wait for open streams to end.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tracing::trace!(
            task = std::any::type_name::<F>(),
            bytes = std::mem::size_of::<F>(),
            "spawn"
        );
        self.tracker.spawn(task);
    }

    /// Cancelled when the engine shuts down: long-lived streams may end themselves cleanly.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Cancelled when the engine starts draining (before [`Graph::shutdown`]): listeners are
    /// closed; open streams go on, but a connection takes no new request (an HTTP/1.1
    /// connection closes once its exchange is over, an HTTP/2 one sends GOAWAY).
    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    /// The guard with id `id`.
    pub fn guard(&self, id: GuardId) -> &dyn Guard {
        self.guards[id.0].as_ref()
    }

    /// The guard with id `id`, to keep beyond a borrow of the graph.
    pub fn guard_handle(&self, id: GuardId) -> Arc<dyn Guard> {
        self.guards[id.0].clone()
    }

    /// The vault with id `id`.
    pub fn vault(&self, id: VaultId) -> &Arc<dyn Vault> {
        &self.vaults[id.0]
    }

    /// The catalogs.
    pub fn catalogs(&self) -> &[Arc<dyn Catalog>] {
        &self.catalogs
    }

    /// Qualified name of a binding (`namespace:name`).
    pub fn name(&self, id: BindingId) -> &str {
        &self.nodes[id.0].name
    }

    /// Engine properties.
    pub fn properties(&self) -> &Properties {
        &self.properties
    }

    /// The worker runtimes a listening binding accepts on (one accept loop per worker).
    pub fn workers(&self) -> Vec<tokio::runtime::Handle> {
        self.workers.handles()
    }

    /// Byte credit of one stream direction.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Reports an event to every exporter.
    pub fn event(&self, source: &str, name: &'static str, trace_id: u64, message: String) {
        self.events.emit(source, name, trace_id, message);
    }

    /// The event sink, for tasks that report without holding the graph.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The engine's metrics registry (the same across reloads).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Starts every binding that listens. On failure, bindings already started are stopped.
    /// Returns `(binding, endpoint)` pairs.
    pub fn attach(self: &Arc<Self>) -> Result<Vec<(String, String)>, AttachError> {
        let mut endpoints = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            match node.binding.attach(self) {
                Ok(eps) => endpoints.extend(eps.into_iter().map(|e| (node.name.clone(), e))),
                Err(e) => {
                    for n in &self.nodes[..i] {
                        n.binding.detach();
                    }
                    return Err(e.in_binding(&node.name));
                }
            }
        }
        for (i, x) in self.exporters.iter().enumerate() {
            match x.attach(&self.metrics) {
                Ok(eps) => endpoints.extend(eps.into_iter().map(|e| ("telemetry".to_string(), e))),
                Err(e) => {
                    for x in &self.exporters[..i] {
                        x.detach();
                    }
                    self.detach_bindings();
                    return Err(e);
                }
            }
        }
        Ok(endpoints)
    }

    /// Stops every listening binding and exporter; open streams continue.
    pub fn detach(&self) {
        self.detach_bindings();
        for x in &self.exporters {
            x.detach();
        }
    }

    fn detach_bindings(&self) {
        for n in &self.nodes {
            n.binding.detach();
        }
    }

    /// The id of the binding called `name` (qualified: `namespace:name`).
    pub fn binding_id(&self, name: &str) -> Option<BindingId> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(BindingId)
    }

    /// `(name, type, kind)` of every binding, for `-v` output.
    pub fn bindings(&self) -> impl Iterator<Item = (&str, &'static str, Kind)> {
        self.nodes
            .iter()
            .map(|n| (n.name.as_str(), n.type_name, n.kind))
    }
}

/// Why a binding could not start listening.
#[derive(Debug)]
pub struct AttachError {
    /// The binding, once the graph knows which (`namespace:name`).
    pub binding: Option<String>,
    /// What failed, e.g. `0.0.0.0:7114: address in use`.
    pub message: String,
    /// The I/O error behind it, if any.
    pub source: Option<std::io::Error>,
}

impl AttachError {
    /// An error described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        AttachError {
            binding: None,
            message: message.into(),
            source: None,
        }
    }

    /// An I/O error while doing `what` (e.g. binding an address).
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        AttachError {
            binding: None,
            message: format!("{what}: {e}"),
            source: Some(e),
        }
    }

    fn in_binding(mut self, name: &str) -> Self {
        self.binding.get_or_insert_with(|| name.to_string());
        self
    }
}

impl From<String> for AttachError {
    fn from(message: String) -> Self {
        AttachError::new(message)
    }
}

impl From<std::io::Error> for AttachError {
    fn from(e: std::io::Error) -> Self {
        AttachError {
            binding: None,
            message: e.to_string(),
            source: Some(e),
        }
    }
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.binding {
            Some(b) => write!(f, "{b}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for AttachError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// The worker runtimes: one single-threaded runtime per worker thread (`-w N`). A connection,
/// and every stream opened on its behalf, stays on the worker that accepted it, so handing a
/// frame from one binding to the next never wakes another thread.
#[derive(Debug, Clone, Default)]
pub struct Workers(Arc<[tokio::runtime::Handle]>);

impl Workers {
    /// The given runtimes.
    pub fn new(handles: Vec<tokio::runtime::Handle>) -> Self {
        Workers(handles.into())
    }

    /// The runtimes to spread listeners over: the configured ones, or the current runtime.
    pub fn handles(&self) -> Vec<tokio::runtime::Handle> {
        if self.0.is_empty() {
            vec![tokio::runtime::Handle::current()]
        } else {
            self.0.to_vec()
        }
    }
}

/// A built binding.
///
/// Bindings that accept streams return a handler from [`Binding::handler`]; bindings that
/// listen on sockets start in [`Binding::attach`] and stop in [`Binding::detach`]. A binding
/// that only handles streams is [`handler_binding`].
pub trait Binding: Send + Sync + 'static {
    /// The handler for streams routed to this binding.
    fn handler(&self) -> Option<AnyHandler> {
        None
    }

    /// Starts listening, once the whole graph exists. Returns the endpoints it listens on
    /// (`tcp://127.0.0.1:7114`), which `zilla start` prints.
    fn attach(&self, graph: &Arc<Graph>) -> Result<Vec<String>, AttachError> {
        let _ = graph;
        Ok(Vec::new())
    }

    /// Stops listening. Streams already open are not touched.
    fn detach(&self) {}
}

/// A binding that only accepts streams of protocol `P`, handled by `handler`: what most
/// [`crate::BindingFactory::build`] functions return.
pub fn handler_binding<P: Protocol, H: Handler<P>>(handler: Arc<H>) -> Box<dyn Binding> {
    Box::new(HandlerBinding::<P, H>(handler, PhantomData))
}

struct HandlerBinding<P, H>(Arc<H>, PhantomData<fn() -> P>);

impl<P: Protocol, H: Handler<P>> Binding for HandlerBinding<P, H> {
    fn handler(&self) -> Option<AnyHandler> {
        Some(AnyHandler::new::<P>(self.0.clone()))
    }
}

/// A new stream offered to a binding: the opener's `Begin`, its session, and the two halves the
/// acceptor holds (read the initial direction, write the reply).
pub struct Stream<P: Protocol> {
    /// The opener's begin extension.
    pub begin: P::Begin,
    /// The authorization session riding on the stream.
    pub session: Option<Arc<Session>>,
    /// Trace id for logs and events.
    pub trace_id: u64,
    /// Initial direction (from the opener).
    pub rx: Rx<P>,
    /// Reply direction (to the opener). Send `Frame::Begin` first.
    pub tx: Tx<P>,
}

impl<P: Protocol> Stream<P> {
    /// The two halves and the trace id. Everything else (the begin, the session) is dropped
    /// here, so a long-lived stream task does not keep it; destructuring with `..` would keep it
    /// alive until the task ends.
    pub fn into_halves(self) -> (Rx<P>, Tx<P>, u64) {
        (self.rx, self.tx, self.trace_id)
    }
}

impl<P: Protocol> fmt::Debug for Stream<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("protocol", &P::NAME)
            .field("trace_id", &self.trace_id)
            .finish()
    }
}

/// Accepts streams of protocol `P`.
pub trait Handler<P: Protocol>: Send + Sync + 'static {
    /// Offered a new stream. Decide synchronously whether to take it (route it, spawn its task)
    /// or refuse it with `Err` (the opener sees a reset, which an http server answers with 404
    /// unless the reset carries another status).
    /// Refusing later is done by dropping the stream's halves before sending a reply `Begin`.
    fn open(&self, graph: &Arc<Graph>, stream: Stream<P>) -> Result<(), Reset<P>>;
}

/// Type-erased `Arc<dyn Handler<P>>`s, one per protocol a binding accepts (most accept one;
/// `echo` answers tcp, http and sse alike).
pub struct AnyHandler {
    handlers: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
}

impl fmt::Debug for AnyHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyHandler")
            .field("protocols", &self.protocols().collect::<Vec<_>>())
            .finish()
    }
}

impl AnyHandler {
    /// Erases a handler of protocol `P`.
    pub fn new<P: Protocol>(handler: Arc<dyn Handler<P>>) -> Self {
        AnyHandler {
            handlers: vec![(P::NAME, Box::new(handler))],
        }
    }

    /// Adds the handler of another protocol `P`.
    pub fn with<P: Protocol>(mut self, handler: Arc<dyn Handler<P>>) -> Self {
        self.handlers.push((P::NAME, Box::new(handler)));
        self
    }

    /// The protocols it accepts.
    pub fn protocols(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.iter().map(|(p, _)| *p)
    }

    /// The handler, if it accepts `P`.
    pub fn get<P: Protocol>(&self) -> Option<&Arc<dyn Handler<P>>> {
        self.handlers
            .iter()
            .find(|(p, _)| *p == P::NAME)
            .and_then(|(_, h)| h.downcast_ref())
    }
}
