//! Building a [`Graph`] from a [`Config`]: every plugin and binding found in the registry, every
//! reference and exit protocol checked, every error reported with its position.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::binding::{
    binding_types, BindingDescriptor, Generated, RawBinding, RawGenerate, ResolveExit,
};
use crate::catalog::Catalog;
use crate::config::{
    parse_generated, suggestion, BindingConfig, Config, ConfigError, Diagnostic, Diagnostics,
    NamespaceConfig, PluginConfig,
};
use crate::events::Events;
use crate::graph::{BindingId, Graph, Node, Workers, DEFAULT_WINDOW};
use crate::guard::Guard;
use crate::kind::Kind;
use crate::meter::NodeMeters;
use crate::metrics::{
    metric_descriptor, metric_descriptors, MetricDescriptor, MetricScope, Metrics,
};
use crate::model::model_types;
use crate::plugin::{plugin_types, Exporter, PluginContext, PluginDescriptor, Vault};
use crate::properties::Properties;
use crate::resolve::{lookup, qualify, Named, Plugins};

/// What building a graph needs besides the config.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    /// Engine properties.
    pub properties: Arc<Properties>,
    /// Directory of the config file.
    pub config_dir: PathBuf,
    /// Tracks stream tasks across reloads.
    pub tracker: TaskTracker,
    /// Cancelled at shutdown: streams end now.
    pub shutdown: CancellationToken,
    /// Cancelled when the engine starts draining: connections take no new requests.
    pub draining: CancellationToken,
    /// The worker runtimes listeners are spread over (empty: the current runtime).
    pub workers: Workers,
    /// Exporters added by the embedder beside the config's own (`zilla start -l` adds stdout).
    pub exporters: Vec<Arc<dyn Exporter>>,
    /// The engine's metrics registry: the same across reloads, so counts go on.
    pub metrics: Metrics,
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
            draining: CancellationToken::new(),
            workers: Workers::default(),
            exporters: Vec::new(),
            metrics: Metrics::default(),
        }
    }
}

struct Info {
    descriptor: &'static BindingDescriptor,
    kind: Kind,
}

/// The bindings declared in the config, for resolving exits.
struct Bindings {
    names: HashMap<String, usize>,
    qualified: Vec<String>,
    infos: Vec<Option<Info>>,
    namespaces: Vec<String>,
}

impl ResolveExit for Bindings {
    fn exit(&self, from: BindingId, name: &str, path: &str) -> Result<BindingId, ConfigError> {
        let id = lookup(&self.names, &self.namespaces[from.0], name, "binding", path)?;
        let me = self.infos[from.0]
            .as_ref()
            .expect("built bindings have info");
        let from_name = self.qualified[from.0]
            .split_once(':')
            .map_or(self.qualified[from.0].as_str(), |(_, n)| n);
        let Some(emits) = (me.descriptor.protocols)(me.kind).emits else {
            return Err(ConfigError::new(
                path,
                format!("a {} {} has no exits", me.descriptor.type_name, me.kind),
            ));
        };
        if let Some(target) = &self.infos[id] {
            let accepts = (target.descriptor.protocols)(target.kind);
            if !accepts.accepts_protocol(emits) {
                let what = match accepts.describe_accepts() {
                    Some(p) => format!("accepts {p} streams"),
                    None => "accepts no streams (nothing can route to it)".to_string(),
                };
                return Err(ConfigError::new(
                    path,
                    format!(
                        "binding '{name}' ({} {}) {what}, but '{from_name}' ({} {}) emits {emits} streams",
                        target.descriptor.type_name,
                        target.kind,
                        me.descriptor.type_name,
                        me.kind
                    ),
                ));
            }
        }
        Ok(BindingId(id))
    }
}

/// Where a namespace came from: the config file, or a binding that generated it.
#[derive(Clone)]
enum Origin {
    File,
    Generated {
        /// The document of the generating binding.
        doc: usize,
        /// Its key path (`bindings.sse_proxy_server`).
        by: String,
    },
}

/// One namespace to build, and where its errors point.
struct Source<'a> {
    ns: &'a NamespaceConfig,
    origin: Origin,
}

impl Source<'_> {
    /// Locates an error about this namespace: in the file, or (generated) at the generating
    /// binding, naming the generated namespace and key.
    fn locate(&self, config: &Config, e: ConfigError) -> Diagnostic {
        match &self.origin {
            Origin::File => config.locator.locate(self.ns.doc, e),
            Origin::Generated { doc, by } => config.locator.locate(
                *doc,
                ConfigError::new(
                    by.clone(),
                    format!(
                        "in the bindings it generated ({}): {}: {}",
                        self.ns.name, e.path, e.message
                    ),
                ),
            ),
        }
    }
}

/// Where plugins report: events, and the metrics each namespace lists.
struct Sinks {
    events: Events,
    metrics: Metrics,
    listed: HashMap<String, Vec<&'static MetricDescriptor>>,
}

/// The metrics each namespace's `telemetry.metrics` lists; an unknown name is an error at its
/// position.
fn listed_metrics(
    config: &Config,
    sources: &[Source<'_>],
    diags: &mut Diagnostics,
) -> HashMap<String, Vec<&'static MetricDescriptor>> {
    let mut listed = HashMap::new();
    for src in sources {
        let mut found = Vec::new();
        for (i, name) in src.ns.telemetry.metrics.iter().enumerate() {
            match metric_descriptor(name) {
                Some(d) => found.push(d),
                None => {
                    let known: Vec<&str> = metric_descriptors().iter().map(|d| d.name).collect();
                    diags.0.push(src.locate(
                        config,
                        ConfigError::new(
                            format!("telemetry.metrics[{i}]"),
                            format!(
                                "unknown metric '{name}' (known: {}){}",
                                known.join(", "),
                                suggestion(name, known.iter().copied())
                            ),
                        ),
                    ));
                }
            }
        }
        listed.insert(src.ns.name.clone(), found);
    }
    listed
}

/// The metrics binding `b` records: those its namespace lists that one of the binding's
/// `telemetry.metrics` regular expressions matches in full (Zilla's rule), labelled with its
/// `telemetry.attributes`.
fn binding_scope(
    sinks: &Sinks,
    (namespace, name): (&str, &str),
    b: &BindingConfig,
) -> Result<MetricScope, Vec<ConfigError>> {
    let listed = sinks.listed.get(namespace).cloned().unwrap_or_default();
    let mut errors = Vec::new();
    let mut selected = Vec::new();
    let mut labels = Vec::new();
    if let Some(t) = &b.telemetry {
        let mut patterns = Vec::new();
        for (i, p) in t.metrics.iter().enumerate() {
            match regex::Regex::new(&format!("^(?:{p})$")) {
                Ok(re) => patterns.push(re),
                Err(e) => errors.push(ConfigError::new(
                    format!("bindings.{name}.telemetry.metrics[{i}]"),
                    format!(
                        "'{p}' is not a regular expression ({}); write one that matches metric names, e.g. stream.* or http.*",
                        e.to_string().lines().last().unwrap_or_default().trim_start_matches("error: ")
                    ),
                )),
            }
        }
        selected = listed
            .into_iter()
            .filter(|d| patterns.iter().any(|re| re.is_match(d.name)))
            .collect();
        for (label, value) in &t.attributes {
            if value.contains("${") {
                tracing::warn!(
                    binding = %format!("{namespace}:{name}"),
                    label,
                    "telemetry attribute values with expressions are not rendered; the label is left out"
                );
            } else {
                labels.push((label.clone(), value.clone()));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(MetricScope::new(
        sinks.metrics.clone(),
        (namespace, "binding", name),
        selected,
        labels,
    ))
}

/// Builds one section of named plugins (`guards`, `vaults`, ...) into `out`. `vaults` is given
/// for sections whose entries may name a vault (catalogs).
#[allow(clippy::too_many_arguments)]
fn build_plugins<T: ?Sized + 'static>(
    (config, sources): (&Config, &[Source<'_>]),
    section: &str,
    select: impl Fn(&NamespaceConfig) -> &indexmap::IndexMap<String, PluginConfig>,
    what: &'static str,
    (env, sinks): (&BuildEnv, &Sinks),
    vaults: Option<&Named<dyn Vault>>,
    out: &mut Named<T>,
    diags: &mut Diagnostics,
) where
    PluginDescriptor<T>: inventory::Collect,
{
    let types = plugin_types::<T>();
    for src in sources {
        let ns = src.ns;
        for (name, pc) in select(ns) {
            let path = format!("{section}.{name}");
            let mut locate = |e: ConfigError| diags.0.push(src.locate(config, e));
            let Some(d) = types.iter().find(|d| d.type_name == pc.ty) else {
                let known: Vec<&str> = types.iter().map(|d| d.type_name).collect();
                locate(ConfigError::new(
                    format!("{path}.type"),
                    format!(
                        "unknown {what} type '{}' (registered: {}){}",
                        pc.ty,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        },
                        suggestion(&pc.ty, known.iter().copied())
                    ),
                ));
                continue;
            };
            let vault = match (&pc.vault, vaults) {
                (None, _) => None,
                (Some(v), Some(vaults)) => {
                    match lookup(
                        &vaults.names,
                        &ns.name,
                        v,
                        "vault",
                        &format!("{path}.vault"),
                    ) {
                        Ok(i) => Some(vaults.handles[i].clone()),
                        Err(e) => {
                            locate(e);
                            continue;
                        }
                    }
                }
                (Some(_), None) => {
                    locate(ConfigError::at_key(
                        format!("{path}.vault"),
                        format!("a {what} has no `vault`"),
                    ));
                    continue;
                }
            };
            let cx = PluginContext {
                index: out.handles.len(),
                namespace: ns.name.clone(),
                path: path.clone(),
                properties: env.properties.clone(),
                config_dir: env.config_dir.clone(),
                vault,
                events: sinks.events.clone(),
                metrics: MetricScope::new(
                    sinks.metrics.clone(),
                    (&ns.name, what, name),
                    sinks.listed.get(&ns.name).cloned().unwrap_or_default(),
                    Vec::new(),
                ),
                attributes: ns
                    .telemetry
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            };
            match d.build(&cx, pc.options.clone()) {
                Ok(p) => {
                    out.names.insert(qualify(&ns.name, name), out.handles.len());
                    out.handles.push(p);
                }
                Err(es) => es.into_iter().for_each(&mut locate),
            }
        }
    }
}

/// Finds each binding's registered type and kind and records its qualified name, so exits can
/// be resolved; a binding whose type or kind is unknown is reported and left without info.
fn declare<'a>(
    config: &Config,
    sources: &'a [Source<'a>],
    bindings: &mut Bindings,
    declared: &mut Vec<(&'a Source<'a>, &'a String, &'a BindingConfig)>,
    diags: &mut Diagnostics,
) {
    let types = binding_types();
    for src in sources {
        let ns = src.ns;
        for (name, b) in &ns.bindings {
            let id = bindings.qualified.len();
            bindings.names.insert(qualify(&ns.name, name), id);
            bindings.qualified.push(qualify(&ns.name, name));
            bindings.namespaces.push(ns.name.clone());
            let base = format!("bindings.{name}");
            // A type may be provided by several crates, one per kind (sse server, sse client).
            let of_type: Vec<&&BindingDescriptor> =
                types.iter().filter(|d| d.type_name == b.ty).collect();
            let info = if of_type.is_empty() {
                let mut known: Vec<&str> = types.iter().map(|d| d.type_name).collect();
                known.dedup();
                diags.0.push(src.locate(
                    config,
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
                        diags.0.push(src.locate(
                            config,
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
            bindings.infos.push(info);
            declared.push((src, name, b));
        }
    }
}

/// Builds the graph of `config`: every binding, guard, vault, catalog and exporter, with every
/// reference and exit protocol checked, and the namespaces bindings generate (asyncapi) built
/// the same way. Reports all errors found.
pub fn build(config: &Config, env: &BuildEnv) -> Result<Arc<Graph>, Diagnostics> {
    let mut diags = Diagnostics::default();
    let d = &mut diags;
    let file: Vec<Source<'_>> = config
        .namespaces
        .iter()
        .map(|ns| Source {
            ns,
            origin: Origin::File,
        })
        .collect();
    let cf = (config, &file[..]);
    let listed = listed_metrics(config, &file, d);
    // Exporters first: every other plugin may report events while it builds or runs.
    let none = Sinks {
        events: Events::default(),
        metrics: env.metrics.clone(),
        listed: listed.clone(),
    };
    let mut exporters = Named::default();
    build_plugins::<dyn Exporter>(
        cf,
        "telemetry.exporters",
        |ns| &ns.telemetry.exporters,
        "exporter",
        (env, &none),
        None,
        &mut exporters,
        d,
    );
    let mut all = exporters.handles;
    all.extend(env.exporters.iter().cloned());
    let attached = all.clone();
    let sinks = Sinks {
        events: Events::new(all),
        metrics: env.metrics.clone(),
        listed,
    };
    let s = &sinks;
    let mut plugins = Plugins {
        guards: Named::default(),
        vaults: Named::default(),
        catalogs: Named::default(),
        properties: env.properties.clone(),
        config_dir: env.config_dir.clone(),
        events: sinks.events.clone(),
    };
    build_plugins::<dyn Guard>(
        cf,
        "guards",
        |ns| &ns.guards,
        "guard",
        (env, s),
        None,
        &mut plugins.guards,
        d,
    );
    build_plugins::<dyn Vault>(
        cf,
        "vaults",
        |ns| &ns.vaults,
        "vault",
        (env, s),
        None,
        &mut plugins.vaults,
        d,
    );
    let vaults = std::mem::take(&mut plugins.vaults);
    build_plugins::<dyn Catalog>(
        cf,
        "catalogs",
        |ns| &ns.catalogs,
        "catalog",
        (env, s),
        Some(&vaults),
        &mut plugins.catalogs,
        d,
    );
    plugins.vaults = vaults;

    let mut bindings = Bindings {
        names: HashMap::new(),
        qualified: Vec::new(),
        infos: Vec::new(),
        namespaces: Vec::new(),
    };
    let mut declared = Vec::new();
    declare(config, &file, &mut bindings, &mut declared, d);

    // Bindings that generate namespaces (asyncapi) do so now, with the catalogs built.
    let mut generated: Vec<Option<Generated>> = Vec::new();
    let mut namespaces: Vec<(NamespaceConfig, Origin)> = Vec::new();
    let mut texts = Vec::new();
    for (i, (src, name, b)) in declared.iter().enumerate() {
        let Some(info) = &bindings.infos[i] else {
            generated.push(None);
            continue;
        };
        let raw = RawGenerate {
            namespace: &src.ns.name,
            name,
            kind: info.kind,
            config: b,
            plugins: &plugins,
        };
        match (info.descriptor.generate)(raw) {
            Ok(g) => {
                for text in &g.namespaces {
                    let by = format!("bindings.{name}");
                    match parse_generated(text) {
                        Ok(ns) => {
                            texts.push((ns.name.clone(), text.clone()));
                            namespaces.push((
                                ns,
                                Origin::Generated {
                                    doc: src.ns.doc,
                                    by,
                                },
                            ));
                        }
                        Err(es) => d.0.extend(es.into_iter().map(|e| {
                            src.locate(
                                config,
                                ConfigError::new(
                                    by.clone(),
                                    format!("generated an invalid namespace: {e}"),
                                ),
                            )
                        })),
                    }
                }
                generated.push(Some(g));
            }
            Err(es) => {
                generated.push(None);
                d.0.extend(es.into_iter().map(|e| src.locate(config, e)));
            }
        }
    }
    let gen: Vec<Source<'_>> = namespaces
        .iter()
        .map(|(ns, origin)| Source {
            ns,
            origin: origin.clone(),
        })
        .collect();
    let cg = (config, &gen[..]);
    build_plugins::<dyn Catalog>(
        cg,
        "catalogs",
        |ns| &ns.catalogs,
        "catalog",
        (env, s),
        Some(&plugins.vaults),
        &mut plugins.catalogs,
        d,
    );
    let plugins = Arc::new(plugins);
    declare(config, &gen, &mut bindings, &mut declared, d);

    let mut nodes = Vec::new();
    for (i, (src, name, b)) in declared.into_iter().enumerate() {
        let Some(info) = &bindings.infos[i] else {
            continue;
        };
        let metrics = match binding_scope(s, (&src.ns.name, name), b) {
            Ok(m) => m,
            Err(es) => {
                diags
                    .0
                    .extend(es.into_iter().map(|e| src.locate(config, e)));
                continue;
            }
        };
        let meters = NodeMeters::new(&metrics);
        let raw = RawBinding {
            id: BindingId(i),
            namespace: &src.ns.name,
            name,
            kind: info.kind,
            config: b,
            exits: &bindings,
            plugins: &plugins,
            generated: generated.get(i).and_then(Option::as_ref),
            metrics,
        };
        match (info.descriptor.build)(raw) {
            Ok(binding) => {
                let handler = binding.handler();
                nodes.push(Node {
                    name: bindings.qualified[i].clone(),
                    type_name: info.descriptor.type_name,
                    kind: info.kind,
                    binding,
                    handler,
                    meters,
                });
            }
            Err(es) => diags
                .0
                .extend(es.into_iter().map(|e| src.locate(config, e))),
        }
    }
    if !diags.0.is_empty() {
        return Err(diags);
    }
    Ok(Arc::new(Graph {
        nodes,
        guards: plugins.guards.handles.clone(),
        vaults: plugins.vaults.handles.clone(),
        catalogs: plugins.catalogs.handles.clone(),
        events: sinks.events,
        metrics: sinks.metrics,
        exporters: attached,
        window: env
            .properties
            .usize("zilla.engine.stream.window", DEFAULT_WINDOW),
        tracker: env.tracker.clone(),
        shutdown: env.shutdown.clone(),
        draining: env.draining.clone(),
        properties: env.properties.clone(),
        workers: env.workers.clone(),
        generated: texts,
    }))
}

/// Registered descriptor lists, for `zilla schema` and tests.
pub fn registered() -> Registered {
    fn names<T: ?Sized + 'static>() -> Vec<&'static str>
    where
        PluginDescriptor<T>: inventory::Collect,
    {
        plugin_types::<T>().iter().map(|d| d.type_name).collect()
    }
    Registered {
        bindings: binding_types().iter().map(|d| d.type_name).collect(),
        guards: names::<dyn Guard>(),
        vaults: names::<dyn Vault>(),
        catalogs: names::<dyn Catalog>(),
        models: model_types().iter().map(|d| d.type_name).collect(),
        exporters: names::<dyn Exporter>(),
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
    /// Model types.
    pub models: Vec<&'static str>,
    /// Exporter types.
    pub exporters: Vec<&'static str>,
}
