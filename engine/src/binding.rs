//! The binding plugin API: what a binding crate implements and registers.
//!
//! A binding type is a [`BindingFactory`]: typed `options`, route `when` and `with` types (serde
//! and schemars, so parsing is strict and `zilla schema` can describe them) and a `build`
//! function. A crate registers it with
//! `inventory::submit! { BindingDescriptor::new::<MyFactory>() }`; linking the crate into the
//! `zilla` binary is all it takes to make the type available.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

use crate::config::ConfigError;
use crate::graph::{BindingId, Graph};
use crate::guard::{GuardId, Session};
use crate::properties::Properties;
use crate::stream::{Protocol, Rx, Tx};

/// The `kind` of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Accepts streams from the outside or from a protocol below it.
    Server,
    /// Opens streams towards the outside or a protocol below it.
    Client,
    /// Maps streams of one protocol to the same or another.
    Proxy,
}

impl Kind {
    /// Every kind, in the order zilla.yaml documents them.
    pub const ALL: [Kind; 3] = [Kind::Server, Kind::Client, Kind::Proxy];

    /// The zilla.yaml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Proxy => "proxy",
        }
    }

    /// Parses the zilla.yaml spelling.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocols a binding of some kind accepts from whoever routes to it, and emits to its exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Protocols {
    /// Protocol name of streams routed to this binding (`None`: nothing can route to it).
    pub accepts: Option<&'static str>,
    /// Protocol name of streams it opens to its exits (`None`: it has no exits).
    pub emits: Option<&'static str>,
}

impl Protocols {
    /// Accepts `A`, emits `E`.
    pub fn new<A: Protocol, E: Protocol>() -> Self {
        Protocols {
            accepts: Some(A::NAME),
            emits: Some(E::NAME),
        }
    }

    /// Accepts nothing (a server fed by sockets), emits `E`.
    pub fn emits<E: Protocol>() -> Self {
        Protocols {
            accepts: None,
            emits: Some(E::NAME),
        }
    }

    /// Accepts `A`, has no exits (a client to sockets, or a terminal binding).
    pub fn accepts<A: Protocol>() -> Self {
        Protocols {
            accepts: Some(A::NAME),
            emits: None,
        }
    }
}

/// A binding type: its config types and how to build it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a binding factory",
    note = "implement `BindingFactory` and register it with `inventory::submit!{{ BindingDescriptor::new::<{Self}>() }}`; see docs/ARCHITECTURE.md, \"Write your own binding\""
)]
pub trait BindingFactory: Sized + 'static {
    /// The `type` name in zilla.yaml.
    const TYPE: &'static str;
    /// The kinds this type supports.
    const KINDS: &'static [Kind];
    /// The `options` section.
    type Options: DeserializeOwned + JsonSchema + Send + Sync + 'static;
    /// One entry of a route's `when` list.
    type When: DeserializeOwned + JsonSchema + Send + Sync + 'static;
    /// A route's `with` section.
    type With: DeserializeOwned + JsonSchema + Send + Sync + 'static;

    /// What a binding of `kind` accepts and emits; the engine checks every exit against it.
    fn protocols(kind: Kind) -> Protocols;

    /// Builds the binding. Errors name key paths relative to the document (see
    /// [`BindingContext::error`]).
    fn build(cx: BindingContext<Self>) -> Result<Box<dyn Binding>, Vec<ConfigError>>;
}

/// A route with its exit and guards resolved.
#[derive(Debug)]
pub struct Route<W, With> {
    /// Conditions: the route matches if any matches (or if there are none).
    pub when: Vec<W>,
    /// Guards that must all authorize the stream's session, with the roles each requires.
    pub guarded: Vec<(GuardId, Vec<String>)>,
    /// Rewrite applied when the route is chosen.
    pub with: Option<With>,
    /// Target binding, if the route has one (tcp client routes are only an allow-list).
    pub exit: Option<BindingId>,
}

impl<W, With> Route<W, With> {
    /// True if the session satisfies every guard of this route.
    pub fn authorized(&self, graph: &Graph, session: Option<&Session>) -> bool {
        self.guarded.iter().all(|(guard, roles)| match session {
            Some(s) => s.guard == *guard && graph.guard(*guard).verify(s, roles),
            None => false,
        })
    }
}

/// A binding's routes, in declaration order, with the binding-level `exit` appended last.
#[derive(Debug)]
pub struct Routes<W, With> {
    routes: Vec<Route<W, With>>,
}

impl<W, With> Routes<W, With> {
    /// Wraps resolved routes.
    pub fn new(routes: Vec<Route<W, With>>) -> Self {
        Routes { routes }
    }

    /// The first route that is authorized for `session` and whose conditions match (a route
    /// with no conditions matches everything).
    pub fn resolve<'a>(
        &'a self,
        graph: &Graph,
        session: Option<&Session>,
        matches: impl Fn(&W) -> bool,
    ) -> Option<&'a Route<W, With>> {
        self.routes.iter().find(|r| {
            (r.when.is_empty() || r.when.iter().any(&matches)) && r.authorized(graph, session)
        })
    }

    /// Every route.
    pub fn iter(&self) -> impl Iterator<Item = &Route<W, With>> {
        self.routes.iter()
    }

    /// True if there are no routes and no exit.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Everything a [`BindingFactory::build`] gets.
#[derive(Debug)]
pub struct BindingContext<F: BindingFactory> {
    /// This binding's id in the graph.
    pub id: BindingId,
    /// Namespace name.
    pub namespace: String,
    /// Binding name (unqualified).
    pub name: String,
    /// The kind.
    pub kind: Kind,
    /// Parsed `options`, if present.
    pub options: Option<F::Options>,
    /// Parsed routes, binding-level `exit` last.
    pub routes: Routes<F::When, F::With>,
    /// True if the binding has a binding-level `exit`.
    pub has_exit: bool,
    /// True if the binding declared `routes`.
    pub has_routes: bool,
    /// The vault named by `vault`, if any.
    pub vault: Option<Arc<dyn crate::plugin::Vault>>,
    /// Resolves guard names found in `options` (e.g. http `authorization`).
    pub guards: GuardNames,
    /// Engine properties (`-P name=value`).
    pub properties: Arc<Properties>,
    /// Directory of the config file, for relative paths.
    pub config_dir: std::path::PathBuf,
}

impl<F: BindingFactory> BindingContext<F> {
    /// An error about `rel` (a path under this binding, e.g. `options.port`).
    pub fn error(&self, rel: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.path(rel), message)
    }

    /// The document path of `rel` under this binding.
    pub fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            format!("bindings.{}", self.name)
        } else {
            format!("bindings.{}.{rel}", self.name)
        }
    }

    /// Fails unless routes or an exit are present.
    pub fn require_exit(&self) -> Result<(), ConfigError> {
        if self.routes.is_empty() {
            return Err(self.error(
                "",
                format!("a {} {} needs an `exit` or `routes`", F::TYPE, self.kind),
            ));
        }
        Ok(())
    }

    /// Fails if routes or an exit are present.
    pub fn forbid_exit(&self) -> Result<(), ConfigError> {
        if self.has_exit {
            return Err(ConfigError::at_key(
                self.path("exit"),
                format!("a {} {} has no `exit`", F::TYPE, self.kind),
            ));
        }
        if self.has_routes {
            return Err(ConfigError::at_key(
                self.path("routes"),
                format!("a {} {} has no `routes`", F::TYPE, self.kind),
            ));
        }
        Ok(())
    }

    /// The options, or an error saying they are required.
    pub fn require_options(&mut self) -> Result<F::Options, ConfigError> {
        self.options.take().ok_or_else(|| {
            ConfigError::at_key(
                self.path(""),
                format!("a {} {} needs `options`", F::TYPE, self.kind),
            )
        })
    }

    /// The qualified name `namespace:name`.
    pub fn qualified_name(&self) -> String {
        format!("{}:{}", self.namespace, self.name)
    }
}

/// The guards declared in the config, to resolve names found in a binding's options.
#[derive(Debug, Clone)]
pub struct GuardNames {
    namespace: String,
    names: Arc<std::collections::HashMap<String, usize>>,
}

impl GuardNames {
    pub(crate) fn new(
        namespace: &str,
        names: Arc<std::collections::HashMap<String, usize>>,
    ) -> Self {
        GuardNames {
            namespace: namespace.to_string(),
            names,
        }
    }

    /// The guard called `name` (plain or `namespace:name`); the error names `path`.
    pub fn resolve(&self, name: &str, path: &str) -> Result<GuardId, ConfigError> {
        crate::graph::lookup(&self.names, &self.namespace, name, "guard", path)
            .map(GuardId)
            .map_err(|e| ConfigError { at_key: true, ..e })
    }
}

/// A built binding.
///
/// Bindings that accept streams return a handler from [`Binding::handler`]; bindings that
/// listen on sockets start in [`Binding::attach`] and stop in [`Binding::detach`].
pub trait Binding: Send + Sync + 'static {
    /// The handler for streams routed to this binding.
    fn handler(&self) -> Option<AnyHandler> {
        None
    }

    /// Starts listening, once the whole graph exists. Returns the endpoints it listens on
    /// (`tcp://127.0.0.1:7114`), which `zilla start` prints.
    fn attach(&self, graph: &Arc<Graph>) -> Result<Vec<String>, String> {
        let _ = graph;
        Ok(Vec::new())
    }

    /// Stops listening. Streams already open are not touched.
    fn detach(&self) {}
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
    /// or refuse it with `Err` (the opener sees a reset, which an http server answers with 404).
    /// Refusing later is done by dropping the stream's halves before sending a reply `Begin`.
    fn open(&self, graph: &Arc<Graph>, stream: Stream<P>) -> Result<(), crate::stream::Reset>;
}

/// A type-erased `Arc<dyn Handler<P>>` with its protocol name.
pub struct AnyHandler {
    protocol: &'static str,
    handler: Box<dyn Any + Send + Sync>,
}

impl fmt::Debug for AnyHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyHandler")
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl AnyHandler {
    /// Erases a handler of protocol `P`.
    pub fn new<P: Protocol>(handler: Arc<dyn Handler<P>>) -> Self {
        AnyHandler {
            protocol: P::NAME,
            handler: Box::new(handler),
        }
    }

    /// The protocol it accepts.
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// The handler, if it accepts `P`.
    pub fn get<P: Protocol>(&self) -> Option<&Arc<dyn Handler<P>>> {
        self.handler.downcast_ref()
    }
}

type BuildFn = fn(crate::graph::RawBinding<'_>) -> Result<Box<dyn Binding>, Vec<ConfigError>>;

/// A registered binding type, collected with `inventory`.
#[derive(Debug)]
pub struct BindingDescriptor {
    /// `type` name.
    pub type_name: &'static str,
    /// Supported kinds.
    pub kinds: &'static [Kind],
    /// Protocols per kind.
    pub protocols: fn(Kind) -> Protocols,
    /// Schema of `options`.
    pub options_schema: fn(&mut SchemaGenerator) -> Schema,
    /// Schema of one `when` entry.
    pub when_schema: fn(&mut SchemaGenerator) -> Schema,
    /// Schema of `with`.
    pub with_schema: fn(&mut SchemaGenerator) -> Schema,
    pub(crate) build: BuildFn,
}

impl BindingDescriptor {
    /// The descriptor of factory `F`.
    pub const fn new<F: BindingFactory>() -> Self {
        BindingDescriptor {
            type_name: F::TYPE,
            kinds: F::KINDS,
            protocols: F::protocols,
            options_schema: schema_of::<F::Options>,
            when_schema: schema_of::<F::When>,
            with_schema: schema_of::<F::With>,
            build: crate::graph::build_binding::<F>,
        }
    }
}

pub(crate) fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

inventory::collect!(BindingDescriptor);

/// Every registered binding type, sorted by name.
pub fn binding_types() -> Vec<&'static BindingDescriptor> {
    let mut all: Vec<_> = inventory::iter::<BindingDescriptor>.into_iter().collect();
    all.sort_by_key(|d| (d.type_name, d.kinds.first().map(|k| k.as_str())));
    all
}

/// An empty section, for plugins without options, conditions or rewrites: only `{}` parses.
#[derive(Debug, Clone, Copy, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}
