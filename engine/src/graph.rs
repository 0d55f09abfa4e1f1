//! The stream graph: the built bindings of a config, wired by resolved exits.
//!
//! A [`Graph`] is immutable once built. Hot reload builds a new one and swaps it in for new
//! connections; streams already open keep what they hold and finish on the graph they started on.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::binding::{
    binding_types, AnyHandler, Binding, BindingContext, BindingDescriptor, BindingFactory, Kind,
    Route, Routes,
};
use crate::config::{parse_value, suggestion, BindingConfig, Config, ConfigError, Diagnostics};
use crate::guard::{Guard, GuardId, Session};
use crate::plugin::{
    plugin_types, Catalog, Event, Exporter, PluginContext, PluginDescriptor, Vault, VaultId,
};
use crate::properties::Properties;
use crate::stream::{direction, Protocol, Reset, Rx, Tx};

/// Index of a binding in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BindingId(pub usize);

/// Default byte credit of one stream direction (`zilla.engine.stream.window`).
pub const DEFAULT_WINDOW: usize = 64 * 1024;

struct Node {
    name: String,
    type_name: &'static str,
    kind: Kind,
    binding: Box<dyn Binding>,
    handler: Option<AnyHandler>,
}

/// The built bindings and plugins of one config.
pub struct Graph {
    nodes: Vec<Node>,
    guards: Vec<Arc<dyn Guard>>,
    vaults: Vec<Arc<dyn Vault>>,
    catalogs: Vec<Arc<dyn Catalog>>,
    exporters: Vec<Arc<dyn Exporter>>,
    window: usize,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    properties: Arc<Properties>,
    workers: Workers,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
    /// Opens a stream of protocol `P` to binding `exit`: returns the opener's halves (write the
    /// initial direction, read the reply), or the reset if the binding refused it.
    pub fn open<P: Protocol>(
        self: &Arc<Self>,
        exit: BindingId,
        begin: P::Begin,
        session: Option<Arc<Session>>,
    ) -> Result<(Tx<P>, Rx<P>), Reset> {
        let node = self.nodes.get(exit.0).ok_or(Reset(None))?;
        let handler = node
            .handler
            .as_ref()
            .and_then(AnyHandler::get::<P>)
            .ok_or(Reset(None))?;
        let (initial_tx, initial_rx) = direction::<P>(self.window);
        let (reply_tx, reply_rx) = direction::<P>(self.window);
        let trace_id = TRACE_IDS.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(binding = %node.name, trace_id, protocol = P::NAME, "stream opened");
        handler.open(
            self,
            crate::binding::Stream {
                begin,
                session,
                trace_id,
                rx: initial_rx,
                tx: reply_tx,
            },
        )?;
        Ok((initial_tx, reply_rx))
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

    /// The guard with id `id`.
    pub fn guard(&self, id: GuardId) -> &dyn Guard {
        self.guards[id.0].as_ref()
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
        tracing::debug!(source, event = name, trace_id, "{message}");
        if self.exporters.is_empty() {
            return;
        }
        let e = Event {
            source: source.to_string(),
            name,
            trace_id,
            message,
            time: std::time::SystemTime::now(),
        };
        for x in &self.exporters {
            x.event(&e);
        }
    }

    /// Starts every binding that listens. On failure, bindings already started are stopped.
    /// Returns `(binding, endpoint)` pairs.
    pub fn attach(self: &Arc<Self>) -> Result<Vec<(String, String)>, String> {
        let mut endpoints = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            match node.binding.attach(self) {
                Ok(eps) => endpoints.extend(eps.into_iter().map(|e| (node.name.clone(), e))),
                Err(e) => {
                    for n in &self.nodes[..i] {
                        n.binding.detach();
                    }
                    return Err(format!("{}: {e}", node.name));
                }
            }
        }
        Ok(endpoints)
    }

    /// Stops every listening binding; open streams continue.
    pub fn detach(&self) {
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

/// What building a graph needs besides the config.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    /// Engine properties.
    pub properties: Arc<Properties>,
    /// Directory of the config file.
    pub config_dir: PathBuf,
    /// Tracks stream tasks across reloads.
    pub tracker: TaskTracker,
    /// Cancelled at shutdown.
    pub shutdown: CancellationToken,
    /// The worker runtimes listeners are spread over (empty: the current runtime).
    pub workers: Workers,
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

impl BuildEnv {
    /// An environment for tests and tools: `properties`, the temporary directory as the config
    /// directory, a fresh task tracker and shutdown token, listeners on the current runtime.
    pub fn new(properties: Properties) -> Self {
        BuildEnv {
            properties: Arc::new(properties),
            config_dir: std::env::temp_dir(),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            workers: Workers::default(),
        }
    }
}

struct Info {
    descriptor: &'static BindingDescriptor,
    kind: Kind,
}

/// Names declared in the config, for resolving references.
struct Names {
    bindings: HashMap<String, usize>,
    binding_list: Vec<String>,
    infos: Vec<Option<Info>>,
    guards: Arc<HashMap<String, usize>>,
    vaults: HashMap<String, usize>,
    vault_handles: Vec<Arc<dyn Vault>>,
}

fn qualify(namespace: &str, name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("{namespace}:{name}")
    }
}

pub(crate) fn lookup(
    map: &HashMap<String, usize>,
    namespace: &str,
    name: &str,
    what: &str,
    path: &str,
) -> Result<usize, ConfigError> {
    let q = qualify(namespace, name);
    map.get(&q).copied().ok_or_else(|| {
        let prefix = format!("{namespace}:");
        let candidates: Vec<&str> = map.keys().filter_map(|k| k.strip_prefix(&prefix)).collect();
        ConfigError::new(
            path,
            format!(
                "no {what} named '{name}'{}",
                suggestion(name, candidates.iter().copied())
            ),
        )
    })
}

/// The parts of one binding handed to its descriptor's typed build.
pub struct RawBinding<'a> {
    id: BindingId,
    namespace: &'a str,
    name: &'a str,
    kind: Kind,
    config: &'a BindingConfig,
    names: &'a Names,
    env: &'a BuildEnv,
}

impl std::fmt::Debug for RawBinding<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBinding")
            .field("name", &self.name)
            .finish()
    }
}

impl RawBinding<'_> {
    fn exit(&self, name: &str, path: &str) -> Result<BindingId, ConfigError> {
        let id = lookup(&self.names.bindings, self.namespace, name, "binding", path)?;
        let me = self.names.infos[self.id.0]
            .as_ref()
            .expect("built bindings have info");
        let emits = (me.descriptor.protocols)(me.kind).emits;
        let Some(emits) = emits else {
            return Err(ConfigError::new(
                path,
                format!("a {} {} has no exits", me.descriptor.type_name, me.kind),
            ));
        };
        if let Some(target) = &self.names.infos[id] {
            let accepts = (target.descriptor.protocols)(target.kind).accepts;
            if accepts != Some(emits) {
                let what = match accepts {
                    Some(p) => format!("accepts {p} streams"),
                    None => "accepts no streams (nothing can route to it)".to_string(),
                };
                return Err(ConfigError::new(
                    path,
                    format!(
                        "binding '{name}' ({} {}) {what}, but '{}' ({} {}) emits {emits} streams",
                        target.descriptor.type_name,
                        target.kind,
                        self.name,
                        me.descriptor.type_name,
                        me.kind
                    ),
                ));
            }
        }
        Ok(BindingId(id))
    }
}

/// Parses a binding's typed sections with factory `F` and builds it.
pub(crate) fn build_binding<F: BindingFactory>(
    raw: RawBinding<'_>,
) -> Result<Box<dyn Binding>, Vec<ConfigError>> {
    let base = format!("bindings.{}", raw.name);
    let mut errors = Vec::new();
    let options = match raw.config.options.clone() {
        Some(v) => parse_value::<F::Options>(v, &format!("{base}.options"))
            .map_err(|e| errors.push(e))
            .ok(),
        None => None,
    };
    let mut routes = Vec::new();
    for (i, r) in raw.config.routes.iter().enumerate() {
        let rbase = format!("{base}.routes[{i}]");
        let mut when = Vec::new();
        for (j, w) in r.when.iter().enumerate() {
            match parse_value::<F::When>(w.clone(), &format!("{rbase}.when[{j}]")) {
                Ok(w) => when.push(w),
                Err(e) => errors.push(e),
            }
        }
        let with = match r.with.clone() {
            Some(v) => parse_value::<F::With>(v, &format!("{rbase}.with"))
                .map_err(|e| errors.push(e))
                .ok(),
            None => None,
        };
        let mut guarded = Vec::new();
        for (guard, roles) in &r.guarded {
            match lookup(
                &raw.names.guards,
                raw.namespace,
                guard,
                "guard",
                &format!("{rbase}.guarded.{guard}"),
            ) {
                Ok(g) => guarded.push((GuardId(g), roles.clone())),
                Err(e) => errors.push(ConfigError { at_key: true, ..e }),
            }
        }
        let exit = match &r.exit {
            Some(name) => raw
                .exit(name, &format!("{rbase}.exit"))
                .map_err(|e| errors.push(e))
                .ok(),
            None => None,
        };
        routes.push(Route {
            when,
            guarded,
            with,
            exit,
        });
    }
    if let Some(name) = &raw.config.exit {
        match raw.exit(name, &format!("{base}.exit")) {
            Ok(id) => routes.push(Route {
                when: Vec::new(),
                guarded: Vec::new(),
                with: None,
                exit: Some(id),
            }),
            Err(e) => errors.push(e),
        }
    }
    let vault = match &raw.config.vault {
        Some(v) => lookup(
            &raw.names.vaults,
            raw.namespace,
            v,
            "vault",
            &format!("{base}.vault"),
        )
        .map(|i| raw.names.vault_handles[i].clone())
        .map_err(|e| errors.push(e))
        .ok(),
        None => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    F::build(BindingContext {
        id: raw.id,
        namespace: raw.namespace.to_string(),
        name: raw.name.to_string(),
        kind: raw.kind,
        options,
        routes: Routes::new(routes),
        has_exit: raw.config.exit.is_some(),
        has_routes: !raw.config.routes.is_empty(),
        vault,
        guards: crate::binding::GuardNames::new(raw.namespace, raw.names.guards.clone()),
        properties: raw.env.properties.clone(),
        config_dir: raw.env.config_dir.clone(),
    })
}

fn build_plugins<T: ?Sized + 'static>(
    config: &Config,
    section: &str,
    select: impl Fn(
        &crate::config::NamespaceConfig,
    ) -> &indexmap::IndexMap<String, crate::config::PluginConfig>,
    what: &str,
    env: &BuildEnv,
    diags: &mut Diagnostics,
) -> (Vec<Arc<T>>, HashMap<String, usize>)
where
    PluginDescriptor<T>: inventory::Collect,
{
    let types = plugin_types::<T>();
    let mut out = Vec::new();
    let mut names = HashMap::new();
    for ns in &config.namespaces {
        for (name, pc) in select(ns) {
            let path = format!("{section}.{name}");
            let Some(d) = types.iter().find(|d| d.type_name == pc.ty) else {
                let known: Vec<&str> = types.iter().map(|d| d.type_name).collect();
                let msg = format!(
                    "unknown {what} type '{}' (registered: {}){}",
                    pc.ty,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    },
                    suggestion(&pc.ty, known.iter().copied())
                );
                diags.0.push(
                    config
                        .locator
                        .locate(ns.doc, ConfigError::new(format!("{path}.type"), msg)),
                );
                continue;
            };
            let cx = PluginContext {
                index: out.len(),
                namespace: ns.name.clone(),
                path: path.clone(),
                properties: env.properties.clone(),
                config_dir: env.config_dir.clone(),
            };
            match d.build(&cx, pc.options.clone()) {
                Ok(p) => {
                    names.insert(qualify(&ns.name, name), out.len());
                    out.push(p);
                }
                Err(e) => diags.0.push(config.locator.locate(ns.doc, e)),
            }
        }
    }
    (out, names)
}

/// Builds the graph of `config`: every binding, guard, vault, catalog and exporter, with every
/// reference and exit protocol checked. Reports all errors found.
pub fn build(config: &Config, env: &BuildEnv) -> Result<Arc<Graph>, Diagnostics> {
    let mut diags = Diagnostics::default();
    let (guards, guard_names) =
        build_plugins::<dyn Guard>(config, "guards", |ns| &ns.guards, "guard", env, &mut diags);
    let (vaults, vault_names) =
        build_plugins::<dyn Vault>(config, "vaults", |ns| &ns.vaults, "vault", env, &mut diags);
    let (catalogs, _catalog_names) = build_plugins::<dyn Catalog>(
        config,
        "catalogs",
        |ns| &ns.catalogs,
        "catalog",
        env,
        &mut diags,
    );
    let (mut exporters, _) = build_plugins::<dyn Exporter>(
        config,
        "telemetry.exporters",
        |ns| &ns.telemetry.exporters,
        "exporter",
        env,
        &mut diags,
    );
    if env.properties.bool("zilla.engine.verbose.events", false) {
        if let Some(stdout) = plugin_types::<dyn Exporter>()
            .into_iter()
            .find(|d| d.type_name == "stdout")
        {
            let cx = PluginContext {
                index: exporters.len(),
                namespace: "sys".into(),
                path: "telemetry.exporters.stdout".into(),
                properties: env.properties.clone(),
                config_dir: env.config_dir.clone(),
            };
            if let Ok(x) = stdout.build(&cx, None) {
                exporters.push(x);
            }
        }
    }

    let types = binding_types();
    let mut names = Names {
        bindings: HashMap::new(),
        binding_list: Vec::new(),
        infos: Vec::new(),
        guards: Arc::new(guard_names),
        vaults: vault_names,
        vault_handles: vaults.clone(),
    };
    let mut declared = Vec::new();
    for ns in &config.namespaces {
        for (name, b) in &ns.bindings {
            let id = names.binding_list.len();
            names.bindings.insert(qualify(&ns.name, name), id);
            names.binding_list.push(qualify(&ns.name, name));
            let base = format!("bindings.{name}");
            // A type may be provided by several crates, one per kind (sse server, sse client).
            let of_type: Vec<&&BindingDescriptor> =
                types.iter().filter(|d| d.type_name == b.ty).collect();
            let info = if of_type.is_empty() {
                let mut known: Vec<&str> = types.iter().map(|d| d.type_name).collect();
                known.dedup();
                diags.0.push(config.locator.locate(
                    ns.doc,
                    ConfigError::new(
                        format!("{base}.type"),
                        format!(
                            "unknown binding type '{}' (registered: {}){}",
                            b.ty,
                            known.join(", "),
                            suggestion(&b.ty, known.iter().copied())
                        ),
                    ),
                ));
                None
            } else {
                let kind = Kind::parse(&b.kind);
                match of_type
                    .iter()
                    .find(|d| kind.is_some_and(|k| d.kinds.contains(&k)))
                {
                    Some(d) => Some(Info {
                        descriptor: d,
                        kind: kind.expect("matched a kind"),
                    }),
                    None => {
                        let kinds: Vec<&str> = of_type
                            .iter()
                            .flat_map(|d| d.kinds.iter().map(|k| k.as_str()))
                            .collect();
                        diags.0.push(config.locator.locate(
                            ns.doc,
                            ConfigError::new(
                                format!("{base}.kind"),
                                format!(
                                    "a {} binding has no kind '{}' (kinds: {}){}",
                                    b.ty,
                                    b.kind,
                                    kinds.join(", "),
                                    suggestion(&b.kind, kinds.iter().copied())
                                ),
                            ),
                        ));
                        None
                    }
                }
            };
            names.infos.push(info);
            declared.push((ns, name, b));
        }
    }

    let mut nodes = Vec::new();
    for (i, (ns, name, b)) in declared.into_iter().enumerate() {
        let Some(info) = &names.infos[i] else {
            continue;
        };
        let raw = RawBinding {
            id: BindingId(i),
            namespace: &ns.name,
            name,
            kind: info.kind,
            config: b,
            names: &names,
            env,
        };
        match (info.descriptor.build)(raw) {
            Ok(binding) => {
                let handler = binding.handler();
                nodes.push(Node {
                    name: names.binding_list[i].clone(),
                    type_name: info.descriptor.type_name,
                    kind: info.kind,
                    binding,
                    handler,
                });
            }
            Err(es) => diags
                .0
                .extend(es.into_iter().map(|e| config.locator.locate(ns.doc, e))),
        }
    }
    if !diags.0.is_empty() {
        return Err(diags);
    }
    Ok(Arc::new(Graph {
        nodes,
        guards,
        vaults,
        catalogs,
        exporters,
        window: env
            .properties
            .usize("zilla.engine.stream.window", DEFAULT_WINDOW),
        tracker: env.tracker.clone(),
        shutdown: env.shutdown.clone(),
        properties: env.properties.clone(),
        workers: env.workers.clone(),
    }))
}

/// Registered descriptor lists, re-exported for `zilla schema` and tests.
pub fn registered() -> Registered {
    Registered {
        bindings: binding_types().iter().map(|d| d.type_name).collect(),
        guards: plugin_types::<dyn Guard>()
            .iter()
            .map(|d| d.type_name)
            .collect(),
        vaults: plugin_types::<dyn Vault>()
            .iter()
            .map(|d| d.type_name)
            .collect(),
        catalogs: plugin_types::<dyn Catalog>()
            .iter()
            .map(|d| d.type_name)
            .collect(),
        exporters: plugin_types::<dyn Exporter>()
            .iter()
            .map(|d| d.type_name)
            .collect(),
    }
}

/// The names of every registered plugin type.
#[derive(Debug, Clone)]
pub struct Registered {
    /// Binding types.
    pub bindings: Vec<&'static str>,
    /// Guard types.
    pub guards: Vec<&'static str>,
    /// Vault types.
    pub vaults: Vec<&'static str>,
    /// Catalog types.
    pub catalogs: Vec<&'static str>,
    /// Exporter types.
    pub exporters: Vec<&'static str>,
}
