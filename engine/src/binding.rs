//! The binding plugin API: what a binding crate implements and registers.
//!
//! A binding type is a [`BindingFactory`]: typed `options`, route `when` and `with` types (serde
//! and schemars, so parsing is strict and `zilla schema` can describe them) and a `build`
//! function. A crate registers it with
//! `inventory::submit! { BindingDescriptor::new::<MyFactory>() }`; linking the crate into the
//! `zilla` binary is all it takes to make the type available.

use std::any::Any;
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

use crate::catalog::CatalogHandle;
use crate::config::{parse_value, BindingConfig, ConfigError, ConfigErrors};
use crate::events::Events;
use crate::expression::{Template, Values};
use crate::graph::{Binding, BindingId, Graph};
use crate::guard::{GuardId, Session};
use crate::kind::{Kind, Protocols};
use crate::metrics::{Counter, MetricScope};
use crate::model::{Model, ModelConfig};
use crate::plugin::{schema_of, Vault};
use crate::properties::Properties;
use crate::resolve::Plugins;

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
    /// [`BindingContext::error`]); a single [`ConfigError`] converts with `?`.
    fn build(cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors>;

    /// Generates namespaces of ordinary bindings from this binding's options before the graph
    /// is built (the asyncapi binding's composites: tcp, http, sse bindings from a document in
    /// a catalog). Called once per binding, with every catalog of the config already built;
    /// what it returns is built with the rest of the config, through the same registry and
    /// checks. The default generates nothing.
    fn generate(cx: &GenerateContext<Self>) -> Result<Generated, ConfigErrors> {
        let _ = cx;
        Ok(Generated::default())
    }
}

/// What [`BindingFactory::generate`] returns.
#[derive(Default)]
pub struct Generated {
    /// zilla.yaml documents, one namespace each (`name` included), built with the config. A
    /// generated binding reaches the generating one, or any binding of the config, by its
    /// qualified name (`namespace:name`).
    pub namespaces: Vec<String>,
    /// Bindings the generating binding hands streams to (qualified names), resolved and checked
    /// like exits; its build finds them in [`BindingContext::links`], in this order.
    pub links: Vec<String>,
    /// Anything the generating binding's own build needs ([`BindingContext::generated`]), so
    /// what was parsed to generate is not parsed again.
    pub state: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("namespaces", &self.namespaces.len())
            .field("links", &self.links)
            .finish()
    }
}

/// Everything a [`BindingFactory::generate`] gets.
#[derive(Debug)]
pub struct GenerateContext<'a, F: BindingFactory> {
    /// Namespace name.
    pub namespace: &'a str,
    /// Binding name (unqualified).
    pub name: &'a str,
    /// The kind.
    pub kind: Kind,
    /// Parsed `options`, if present.
    pub options: Option<F::Options>,
    /// The `vault` name as written, if any.
    pub vault: Option<&'a str>,
    /// Engine properties.
    pub properties: &'a Arc<Properties>,
    /// Directory of the config file.
    pub config_dir: &'a std::path::Path,
    pub(crate) plugins: &'a Plugins,
}

impl<F: BindingFactory> GenerateContext<'_, F> {
    /// An error about `rel` (a path under this binding, e.g. `options.specs`).
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

    /// The qualified name `namespace:name` of this binding.
    pub fn qualified_name(&self) -> String {
        format!("{}:{}", self.namespace, self.name)
    }

    /// `name` as a generated namespace must write it to reach a guard, vault or binding of
    /// this binding's namespace (`namespace:name`; already qualified names are kept).
    pub fn qualify(&self, name: &str) -> String {
        crate::resolve::qualify(self.namespace, name)
    }

    /// The catalog called `name` found in the options at `rel`.
    pub fn catalog(&self, name: &str, rel: &str) -> Result<CatalogHandle, ConfigError> {
        self.plugins.catalog(self.namespace, name, &self.path(rel))
    }

    /// Checks that guard `name` (found at `rel`) exists.
    pub fn guard(&self, name: &str, rel: &str) -> Result<GuardId, ConfigError> {
        self.plugins.guard(self.namespace, name, &self.path(rel))
    }

    /// Where the binding reports events.
    pub fn events(&self) -> &Events {
        &self.plugins.events
    }
}

/// A route with its exit and guards resolved.
#[derive(Debug)]
pub struct Route<W, With> {
    /// Conditions: the route matches if any matches (or if there are none).
    pub when: Vec<W>,
    /// Guards that must all authorize the stream's session, with the roles each requires.
    pub guarded: Vec<(GuardId, Roles)>,
    /// Rewrite applied when the route is chosen.
    pub with: Option<With>,
    /// Target binding, if the route has one (tcp client routes are only an allow-list).
    pub exit: Option<BindingId>,
}

/// The `{name}` captures of a route condition: name and the text it matched.
pub type Captures<'v> = Vec<(String, &'v str)>;

/// The roles a guard must find, as written: literal (`proxy:stream`), or with expressions the
/// request fills (`tenant:${params.tenant}`, `${method}:${path}`; see [`Template`]).
#[derive(Debug)]
pub struct Roles {
    /// Every role, literal or not.
    pub templates: Vec<Template>,
    /// The roles when none has an expression (checked without rendering).
    pub literal: Option<Vec<String>>,
}

impl<W, With> Route<W, With> {
    /// True if the session satisfies every guard of this route (expressions in roles are
    /// rendered by `render`; a role that cannot be rendered is not held).
    pub fn authorized_with(
        &self,
        graph: &Graph,
        session: Option<&Session>,
        render: impl Fn(&Template) -> Option<String>,
    ) -> bool {
        self.guarded.iter().all(|(guard, roles)| match session {
            Some(s) if s.guard == *guard => match &roles.literal {
                Some(literal) => graph.guard(*guard).verify(s, literal),
                None => roles
                    .templates
                    .iter()
                    .map(&render)
                    .collect::<Option<Vec<String>>>()
                    .is_some_and(|rendered| graph.guard(*guard).verify(s, &rendered)),
            },
            _ => false,
        })
    }

    /// True if the session satisfies every guard of this route (roles with expressions render
    /// with no request values: only `${guarded[..]}` ones can hold).
    pub fn authorized(&self, graph: &Graph, session: Option<&Session>) -> bool {
        self.authorized_with(graph, session, |t| {
            t.render(&Values {
                session,
                ..Values::default()
            })
            .map(|c| c.into_owned())
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

    /// The first route whose conditions match (`matches` returns the `{name}` captures of the
    /// condition that matched) and that is authorized for `session`, the expressions of its
    /// roles (`${params.<name>}`, `${method}`, `${path}`, `${guarded[..]}`) rendered from
    /// `request` and the captures. Returns the route and its captures (empty for a route
    /// without conditions).
    pub fn resolve_with<'a, 'v>(
        &'a self,
        graph: &Graph,
        session: Option<&'v Session>,
        request: Values<'v>,
        matches: impl Fn(&W) -> Option<Captures<'v>>,
    ) -> Option<(&'a Route<W, With>, Captures<'v>)> {
        self.routes.iter().find_map(|r| {
            let params = if r.when.is_empty() {
                Vec::new()
            } else {
                r.when.iter().find_map(&matches)?
            };
            let values = Values {
                params: &params,
                session,
                ..request
            };
            r.authorized_with(graph, session, |t| {
                t.render(&values).map(|c| c.into_owned())
            })
            .then_some((r, params))
        })
    }

    /// True if some guarded route's conditions match (`matches`): a request [`resolve`]
    /// refused had a route, but its session lacked the roles (`403`, where no route is `404`).
    ///
    /// [`resolve`]: Routes::resolve
    pub fn forbidden(&self, matches: impl Fn(&W) -> bool) -> bool {
        self.routes
            .iter()
            .any(|r| !r.guarded.is_empty() && (r.when.is_empty() || r.when.iter().any(&matches)))
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
    pub vault: Option<Arc<dyn Vault>>,
    /// Engine properties (`-P name=value`).
    pub properties: Arc<Properties>,
    /// Directory of the config file, for relative paths.
    pub config_dir: std::path::PathBuf,
    /// The bindings named in [`Generated::links`], resolved.
    pub links: Vec<BindingId>,
    /// The metrics this binding records: those its namespace's `telemetry.metrics` lists and
    /// its own `telemetry.metrics` selects.
    pub metrics: MetricScope,
    generated: Option<Arc<dyn Any + Send + Sync>>,
    plugins: Arc<Plugins>,
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

    /// The guard called `name` (plain or `namespace:name`) found in the options at `rel`.
    pub fn guard(&self, name: &str, rel: &str) -> Result<GuardId, ConfigError> {
        self.plugins.guard(&self.namespace, name, &self.path(rel))
    }

    /// `text` compiled as a [`Template`] (`${params.x}`, `${guarded['jwt0'].identity}`, ...);
    /// errors, and guards it names that do not exist, are located at `rel`.
    pub fn template(&self, text: &str, rel: &str) -> Result<Template, ConfigError> {
        Template::compile(text, |name| self.guard(name, rel).map_err(|e| e.message))
            .map_err(|e| self.error(rel, e))
    }

    /// The vault called `name` found in the options at `rel`.
    pub fn vault(&self, name: &str, rel: &str) -> Result<Arc<dyn Vault>, ConfigError> {
        self.plugins.vault(&self.namespace, name, &self.path(rel))
    }

    /// The catalog called `name` found in the options at `rel`.
    pub fn catalog(&self, name: &str, rel: &str) -> Result<CatalogHandle, ConfigError> {
        self.plugins.catalog(&self.namespace, name, &self.path(rel))
    }

    /// Where the binding reports events.
    pub fn events(&self) -> &Events {
        &self.plugins.events
    }

    /// The counter `metric` with `labels` for this binding (build time only; keep the handle
    /// and bump it on the stream's path). Detached when the binding does not record `metric`
    /// (see [`MetricScope`]).
    pub fn counter(&self, metric: &'static str, labels: &[(&str, &str)]) -> Counter {
        self.metrics.counter(metric, labels)
    }

    /// The state [`BindingFactory::generate`] left for this build, if it is a `T`.
    pub fn generated<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.generated.clone()?.downcast::<T>().ok()
    }

    /// Builds the model written at `rel` (`options.requests[0].content`): finds its type,
    /// resolves its catalog and subject, and parses its own keys. Each call builds a new model.
    pub fn model(&self, config: &ModelConfig, rel: &str) -> Result<Arc<dyn Model>, ConfigError> {
        self.plugins.model(&self.namespace, config, &self.path(rel))
    }
}

/// Resolves a binding's exits while the graph is built: the target must exist and accept the
/// protocol the binding emits.
pub(crate) trait ResolveExit {
    fn exit(&self, from: BindingId, name: &str, path: &str) -> Result<BindingId, ConfigError>;
}

/// The parts of one binding handed to its descriptor's typed build.
pub(crate) struct RawBinding<'a> {
    pub(crate) id: BindingId,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    pub(crate) kind: Kind,
    pub(crate) config: &'a BindingConfig,
    pub(crate) exits: &'a dyn ResolveExit,
    pub(crate) plugins: &'a Arc<Plugins>,
    /// What the binding generated, if anything.
    pub(crate) generated: Option<&'a Generated>,
    /// The metrics it records.
    pub(crate) metrics: MetricScope,
}

/// The parts of one binding handed to its descriptor's typed generate.
pub(crate) struct RawGenerate<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    pub(crate) kind: Kind,
    pub(crate) config: &'a BindingConfig,
    pub(crate) plugins: &'a Plugins,
}

type BuildFn = fn(RawBinding<'_>) -> Result<Box<dyn Binding>, ConfigErrors>;
type GenerateFn = fn(RawGenerate<'_>) -> Result<Generated, ConfigErrors>;

/// Parses a binding's options with factory `F` and lets it generate. Options that do not parse
/// generate nothing here: the build reports them.
fn generate_binding<F: BindingFactory>(raw: RawGenerate<'_>) -> Result<Generated, ConfigErrors> {
    let options = match raw.config.options.clone() {
        Some(v) => match parse_value::<F::Options>(v, "") {
            Ok(o) => Some(o),
            Err(_) => return Ok(Generated::default()),
        },
        None => None,
    };
    F::generate(&GenerateContext {
        namespace: raw.namespace,
        name: raw.name,
        kind: raw.kind,
        options,
        vault: raw.config.vault.as_deref(),
        properties: &raw.plugins.properties,
        config_dir: &raw.plugins.config_dir,
        plugins: raw.plugins,
    })
}

/// Parses a binding's typed sections with factory `F` and builds it.
fn build_binding<F: BindingFactory>(raw: RawBinding<'_>) -> Result<Box<dyn Binding>, ConfigErrors> {
    let base = format!("bindings.{}", raw.name);
    let mut errors = ConfigErrors::new();
    let options = match raw.config.options.clone() {
        Some(v) => errors.take(parse_value::<F::Options>(v, &format!("{base}.options"))),
        None => None,
    };
    let mut routes = Vec::new();
    for (i, r) in raw.config.routes.iter().enumerate() {
        let rbase = format!("{base}.routes[{i}]");
        let mut when = Vec::new();
        for (j, w) in r.when.iter().enumerate() {
            when.extend(errors.take(parse_value::<F::When>(
                w.clone(),
                &format!("{rbase}.when[{j}]"),
            )));
        }
        let with = match r.with.clone() {
            Some(v) => errors.take(parse_value::<F::With>(v, &format!("{rbase}.with"))),
            None => None,
        };
        let mut guarded = Vec::new();
        for (guard, roles) in &r.guarded {
            let path = format!("{rbase}.guarded.{guard}");
            if let Some(g) = errors.take(raw.plugins.guard(raw.namespace, guard, &path)) {
                let mut templates = Vec::new();
                for (k, role) in roles.iter().enumerate() {
                    let compiled = Template::compile(role, |name| {
                        raw.plugins
                            .guard(raw.namespace, name, &path)
                            .map_err(|e| e.message)
                    })
                    .map_err(|e| ConfigError::new(format!("{path}[{k}]"), e));
                    templates.extend(errors.take(compiled));
                }
                let literal = templates
                    .iter()
                    .all(Template::is_literal)
                    .then(|| roles.clone());
                guarded.push((g, Roles { templates, literal }));
            }
        }
        let exit = match &r.exit {
            Some(name) => errors.take(raw.exits.exit(raw.id, name, &format!("{rbase}.exit"))),
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
        if let Some(id) = errors.take(raw.exits.exit(raw.id, name, &format!("{base}.exit"))) {
            routes.push(Route {
                when: Vec::new(),
                guarded: Vec::new(),
                with: None,
                exit: Some(id),
            });
        }
    }
    let vault = match &raw.config.vault {
        Some(v) => errors.take(
            raw.plugins
                .vault(raw.namespace, v, &format!("{base}.vault")),
        ),
        None => None,
    };
    let mut links = Vec::new();
    for name in raw.generated.map_or(&[][..], |g| &g.links[..]) {
        links.extend(errors.take(raw.exits.exit(raw.id, name, &base)));
    }
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
        properties: raw.plugins.properties.clone(),
        config_dir: raw.plugins.config_dir.clone(),
        links,
        generated: raw.generated.and_then(|g| g.state.clone()),
        plugins: raw.plugins.clone(),
        metrics: raw.metrics,
    })
}

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
    pub(crate) generate: GenerateFn,
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
            build: build_binding::<F>,
            generate: generate_binding::<F>,
        }
    }
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
