//! The `asyncapi` binding: an SSE gateway described by an AsyncAPI document in a catalog.
//!
//! ```yaml
//! catalogs:
//!   host_filesystem:
//!     type: filesystem
//!     options: { subjects: { eventstore: { path: specs/sse-asyncapi.yaml } } }
//! bindings:
//!   sse_proxy_server:
//!     type: asyncapi
//!     kind: server
//!     options:
//!       specs:
//!         my-asyncapi-spec:
//!           catalog: { host_filesystem: { subject: eventstore } }
//!     exit: sse_proxy_client
//!   sse_proxy_client:
//!     type: asyncapi
//!     kind: client
//!     options:
//!       specs:
//!         my-asyncapi-spec:
//!           catalog: { host_filesystem: { subject: eventstore } }
//!       tcp: { host: localhost, port: 8001 }
//! ```
//!
//! Before the graph is built ([`BindingFactory::generate`]) each document is read from its
//! catalog (YAML or JSON, AsyncAPI 3.0.0, or 2.6.0), checked against the official AsyncAPI
//! schema, and turned into a namespace of ordinary bindings, as Zilla generates them:
//!
//! - **server**: `tcp_server0` (+ `tls_server0` for https, with the binding's `vault`) ->
//!   `http_server0` (`access-control: cross-origin`, the http `authorization`) ->
//!   `sse_server0`, which validates every event of an SSE operation's channel against its
//!   messages' payload schemas (kept whole, `$ref`s resolved) -> back into this binding, which
//!   picks the operation from the path, resolves its `routes` (`api-id`/`spec`,
//!   `operation-id`/`operation`, `guarded`) and hands the stream on to the route's `exit`.
//! - **client**: the stream goes on into `sse_client0` -> `http_client0` -> (`tls_client0` ->)
//!   `tcp_client0`, towards `options.tcp`, the configured `servers`, or the document's first
//!   server.
//!
//! An operation is SSE when its `bindings` has `x-zilla-sse`. Both hops of this binding hand
//! streams on as they are ([`Graph::forward`]): no task and no copy per event.
//! `zilla start -v` prints each generated namespace.

mod config;
mod document;
mod generate;

use std::sync::Arc;

use proto_http::HttpReset;
use proto_sse::Sse;
use url::Url;
use zilla_engine::{
    handler_binding, Binding, BindingContext, BindingDescriptor, BindingFactory, BindingId,
    ConfigError, ConfigErrors, GenerateContext, Generated, Graph, Handler, Kind, Protocols, Reset,
    Routes, Stream,
};

pub use config::{
    AsyncapiCondition, AsyncapiOptions, AsyncapiWith, CatalogSubject, HttpOptions, ServerConfig,
    ServerObject, SpecConfig,
};
use document::{Credentials, DocError, Document};
use generate::Endpoint;

/// The `asyncapi` binding type.
#[derive(Debug)]
pub struct AsyncapiFactory;

zilla_engine::inventory::submit! { BindingDescriptor::new::<AsyncapiFactory>() }

/// What a generated binding needs at run time, per spec in `specs` order.
#[derive(Debug)]
struct State {
    specs: Vec<SpecState>,
}

#[derive(Debug)]
struct SpecState {
    label: String,
    /// Ports a server listens on, to tell apart documents that share an address.
    ports: Vec<u16>,
    operations: Vec<Operation>,
}

#[derive(Debug)]
struct Operation {
    id: String,
    tags: Vec<String>,
    address: Address,
}

/// A channel address (`/events/{id}`): literal parts and one-segment parameters.
#[derive(Debug)]
struct Address(Vec<Part>);

#[derive(Debug)]
enum Part {
    Literal(String),
    Param,
}

impl Address {
    fn parse(address: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = address;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            match rest[open..].find('}') {
                Some(close) => {
                    parts.push(Part::Param);
                    rest = &rest[open + close + 1..];
                }
                None => {
                    parts.push(Part::Literal(rest[open..].to_string()));
                    rest = "";
                }
            }
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Address(parts)
    }

    /// True if `path` is this address with each parameter one non-empty path segment.
    fn matches(&self, path: &str) -> bool {
        let mut rest = path;
        for part in &self.0 {
            match part {
                Part::Literal(l) => match rest.strip_prefix(l.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                },
                Part::Param => {
                    let end = rest.find('/').unwrap_or(rest.len());
                    if end == 0 {
                        return false;
                    }
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty()
    }
}

impl BindingFactory for AsyncapiFactory {
    const TYPE: &'static str = "asyncapi";
    const KINDS: &'static [Kind] = &[Kind::Server, Kind::Client, Kind::Proxy];
    type Options = AsyncapiOptions;
    type When = AsyncapiCondition;
    type With = AsyncapiWith;

    fn protocols(_: Kind) -> Protocols {
        Protocols::new::<Sse, Sse>()
    }

    fn generate(cx: &GenerateContext<Self>) -> Result<Generated, ConfigErrors> {
        let Some(options) = &cx.options else {
            return Ok(Generated::default());
        };
        if cx.kind == Kind::Proxy {
            return Ok(Generated::default());
        }
        let mut errors = ConfigErrors::new();
        let mut out = Generated::default();
        let mut specs = Vec::new();
        for (label, spec) in &options.specs {
            let rel = format!("options.specs.{label}");
            let Some(doc) = errors.take(load(cx, &rel, spec)) else {
                continue;
            };
            for skipped in &doc.skipped {
                tracing::warn!(
                    binding = %cx.qualified_name(),
                    spec = %label,
                    operation = %skipped,
                    "not an SSE operation (no `x-zilla-sse` binding): not served"
                );
            }
            let namespace = format!("{}/{label}", cx.qualified_name());
            let generated = match cx.kind {
                Kind::Server => server(cx, options, spec, &doc, &rel, &namespace),
                _ => client(cx, options, spec, &doc, &rel, &namespace).map(|text| {
                    out.links.push(format!("{namespace}:sse_client0"));
                    (text, Vec::new())
                }),
            };
            if let Some((text, ports)) = errors.take(generated) {
                out.namespaces.push(text);
                specs.push(SpecState {
                    label: label.clone(),
                    ports,
                    operations: doc
                        .operations
                        .iter()
                        .map(|op| Operation {
                            id: op.id.clone(),
                            tags: op.tags.clone(),
                            address: Address::parse(&op.address),
                        })
                        .collect(),
                });
            }
        }
        out.state = Some(Arc::new(State { specs }));
        errors.or(out)
    }

    fn build(mut cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        let options = cx.require_options()?;
        let mut errors = ConfigErrors::new();
        for (key, set) in [
            ("mqtt", options.mqtt.is_some()),
            ("kafka", options.kafka.is_some()),
            ("mqtt-kafka", options.mqtt_kafka.is_some()),
        ] {
            if set {
                errors.push(ConfigError::at_key(
                    cx.path(&format!("options.{key}")),
                    format!(
                        "`{key}` composites are not supported: this gateway serves SSE operations"
                    ),
                ));
            }
        }
        if cx.kind == Kind::Proxy {
            errors.push(cx.error(
                "kind",
                "the asyncapi proxy kind maps operations onto Kafka or MQTT; it is not \
                 supported for SSE: use an asyncapi server whose exit is an asyncapi client",
            ));
            return Err(errors);
        }
        if cx.routes.iter().any(|r| r.with.is_some()) {
            errors.push(cx.error(
                "routes",
                "`with` maps operations for the proxy kind; a server or client route has none",
            ));
        }
        match cx.kind {
            Kind::Client => errors.take(cx.forbid_exit()),
            _ => errors.take(cx.require_exit()),
        };
        let Some(state) = cx.generated::<State>() else {
            // The documents could not be read: `generate` reported why.
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let name = cx.qualified_name();
        Ok(match cx.kind {
            Kind::Client => handler_binding::<Sse, _>(Arc::new(Client {
                entries: std::mem::take(&mut cx.links),
                state,
            })),
            _ => handler_binding::<Sse, _>(Arc::new(Server {
                name,
                routes: cx.routes,
                state,
            })),
        })
    }
}

/// Reads one spec's document from its catalog.
fn load(
    cx: &GenerateContext<AsyncapiFactory>,
    rel: &str,
    spec: &SpecConfig,
) -> Result<Document, ConfigError> {
    let mut catalogs = spec.catalog.iter();
    let (Some((catalog, entry)), None) = (catalogs.next(), catalogs.next()) else {
        return Err(cx.error(
            &format!("{rel}.catalog"),
            "name exactly one catalog and the subject of the document in it",
        ));
    };
    let at = format!("{rel}.catalog.{catalog}");
    let handle = cx.catalog(catalog, &at)?;
    let version = entry.version.as_deref().unwrap_or("latest");
    let what = format!(
        "the AsyncAPI document {} (catalog {catalog}, version {version})",
        entry.subject
    );
    let Some(id) = handle.catalog.resolve_now(&entry.subject, version) else {
        return Err(cx.error(
            &format!("{at}.subject"),
            format!("{what} cannot be found in the catalog"),
        ));
    };
    let Some(text) = handle.catalog.schema(id) else {
        return Err(cx.error(
            &format!("{at}.subject"),
            format!("{what} (id {id}) cannot be read from the catalog"),
        ));
    };
    document::parse(&text).map_err(|e| cx.error(rel, describe(&what, &text, &e)))
}

/// `<what>, line L column C (/json/pointer): message`.
fn describe(what: &str, text: &str, e: &DocError) -> String {
    let mut out = what.to_string();
    if !e.pointer.is_empty() {
        let dotted: Vec<String> = e
            .pointer
            .trim_start_matches('/')
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        let index = zilla_engine::config::PositionIndex::new(text);
        if let Some(p) = index.value(0, &dotted.join(".")) {
            out.push_str(&format!(", line {} column {}", p.line, p.column));
        }
        out.push_str(&format!(" ({})", e.pointer));
    }
    out.push_str(": ");
    out.push_str(&e.message);
    out
}

/// The endpoints a spec uses: the configured `server`/`servers` (URLs, or objects that
/// override the document's `host`), else the document's http/https servers.
fn endpoints(
    cx: &GenerateContext<AsyncapiFactory>,
    spec: &SpecConfig,
    doc: &Document,
    rel: &str,
) -> Result<Vec<Endpoint>, ConfigError> {
    let from_url = |url: &str, at: &str| -> Result<Endpoint, ConfigError> {
        let parsed = Url::parse(url).map_err(|e| {
            cx.error(
                at,
                format!("'{url}' is not a URL ({e}); write e.g. http://localhost:7114"),
            )
        })?;
        let secure = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(cx.error(
                    at,
                    format!("scheme '{other}' is not served here (http, https)"),
                ))
            }
        };
        Ok(Endpoint {
            secure,
            host: parsed.host_str().unwrap_or("localhost").to_string(),
            port: parsed
                .port_or_known_default()
                .unwrap_or(if secure { 443 } else { 80 }),
        })
    };
    let from_host = |host: &str, secure: bool, at: &str| -> Result<Endpoint, ConfigError> {
        let scheme = if secure { "https" } else { "http" };
        let e = from_url(&format!("{scheme}://{host}"), at)?;
        if !host.contains(':') {
            return Err(cx.error(
                at,
                format!("'{host}' has no port; give one (host:port) or set `options.tcp`"),
            ));
        }
        Ok(e)
    };
    if let Some(url) = &spec.server {
        return Ok(vec![from_url(url, &format!("{rel}.server"))?]);
    }
    let doc_servers: Vec<_> = doc
        .servers
        .iter()
        .filter(|s| matches!(s.protocol.as_str(), "http" | "https"))
        .collect();
    match &spec.servers {
        Some(list) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let at = format!("{rel}.servers[{i}]");
                match s {
                    ServerConfig::Url(url) if url.contains("://") => from_url(url, &at),
                    ServerConfig::Url(host) => from_host(host, false, &at),
                    ServerConfig::Object(o) => {
                        let secure = doc_servers.first().is_some_and(|d| d.protocol == "https");
                        match o.host.as_deref().or(o.url.as_deref()) {
                            Some(h) => from_host(h, secure, &at),
                            None => Err(cx.error(&at, "a server needs `host` (or `url`)")),
                        }
                    }
                }
            })
            .collect(),
        _ => {
            if doc_servers.is_empty() {
                return Err(cx.error(
                    rel,
                    "the document has no http or https server; name one in `servers` or set \
                     `options.tcp`",
                ));
            }
            doc_servers
                .iter()
                .map(|s| {
                    from_host(&s.host, s.protocol == "https", rel).map_err(|e| {
                        ConfigError::new(
                            e.path,
                            format!("the document's server '{}': {}", s.name, e.message),
                        )
                    })
                })
                .collect()
        }
    }
}

/// The server composite of one spec, and the ports it listens on.
fn server(
    cx: &GenerateContext<AsyncapiFactory>,
    options: &AsyncapiOptions,
    spec: &SpecConfig,
    doc: &Document,
    rel: &str,
    namespace: &str,
) -> Result<(String, Vec<u16>), ConfigError> {
    let endpoints = match &options.tcp {
        Some(_) => Vec::new(),
        None => endpoints(cx, spec, doc, rel)?,
    };
    let ports = match options.tcp.as_ref().and_then(|t| t.get("port")) {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|p| p as u16).into_iter().collect(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|p| p.as_u64())
            .map(|p| p as u16)
            .collect(),
        _ => endpoints.iter().map(|e| e.port).collect(),
    };
    // Credentials: `options.http.authorization` as written, or one derived from the spec's
    // `security` mapping; the guard an operation needs, from the same mapping.
    let mut authorization = options
        .http
        .as_ref()
        .and_then(|h| h.authorization.clone())
        .map(|a| {
            serde_json::Value::Object(
                a.into_iter()
                    .map(|(guard, v)| (cx.qualify(&guard), v))
                    .collect(),
            )
        });
    let configured_guard = options
        .http
        .as_ref()
        .and_then(|h| h.authorization.as_ref())
        .and_then(|a| a.keys().next().cloned());
    if let Some(guard) = &configured_guard {
        cx.guard(guard, "options.http.authorization")?;
    }
    let mapping = spec.security.clone().unwrap_or_default();
    for (scheme, guard) in &mapping {
        let at = format!("{rel}.security.{scheme}");
        cx.guard(guard, &at)?;
        let Some(credentials) = doc.schemes.get(scheme) else {
            let known: Vec<&str> = doc.schemes.keys().map(String::as_str).collect();
            return Err(cx.error(
                &at,
                format!(
                    "the document has no security scheme '{scheme}' (schemes: {}){}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                    zilla_engine::config::suggestion(scheme, known.iter().copied())
                ),
            ));
        };
        if authorization.is_none() {
            authorization = Some(
                generate::authorization(&cx.qualify(guard), credentials)
                    .map_err(|m| cx.error(&at, m))?,
            );
        }
    }
    let guards = doc
        .operations
        .iter()
        .map(|op| {
            op.security.iter().find_map(|req| {
                let guard = mapping.get(&req.scheme).cloned().or_else(|| {
                    // Zilla's documented shape: the one authorization guard checks operations
                    // whose scheme a guard can check (bearer tokens).
                    configured_guard.clone().filter(|_| {
                        matches!(doc.schemes.get(&req.scheme), Some(Credentials::Bearer))
                    })
                })?;
                Some((cx.qualify(&guard), req.scopes.clone()))
            })
        })
        .collect();
    let plan = generate::ServerPlan {
        namespace: namespace.to_string(),
        target: cx.qualified_name(),
        endpoints,
        tcp: options.tcp.as_ref(),
        tls: options.tls.as_ref(),
        vault: cx.vault.map(|v| cx.qualify(v)),
        authorization,
        guards,
    };
    let text = generate::server(doc, &plan).map_err(|m| cx.error(rel, m))?;
    Ok((text, ports))
}

/// The client composite of one spec.
fn client(
    cx: &GenerateContext<AsyncapiFactory>,
    options: &AsyncapiOptions,
    spec: &SpecConfig,
    doc: &Document,
    rel: &str,
    namespace: &str,
) -> Result<String, ConfigError> {
    let endpoint = match &options.tcp {
        Some(_) => None,
        None => endpoints(cx, spec, doc, rel)?.into_iter().next(),
    };
    generate::client(
        namespace,
        endpoint.as_ref(),
        options.tcp.as_ref(),
        options.tls.as_ref(),
        cx.vault.map(|v| cx.qualify(v)).as_deref(),
    )
    .map_err(|m| cx.error(rel, m))
}

/// The port of an `authority` (`host:port`), if it has one.
fn port_of(authority: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(authority).ok()?;
    let (_, port) = text.rsplit_once(':')?;
    port.parse().ok()
}

/// The server kind: finds the operation of an sse stream from its path and hands the stream to
/// the route that takes that operation.
struct Server {
    name: String,
    routes: Routes<AsyncapiCondition, AsyncapiWith>,
    state: Arc<State>,
}

impl Server {
    /// The spec and operation serving `path`: of the documents with an operation there, the one
    /// listening on the request's port, else the first.
    fn operation(&self, path: &str, port: Option<u16>) -> Option<(&SpecState, &Operation)> {
        let mut found = self.state.specs.iter().filter_map(|spec| {
            spec.operations
                .iter()
                .find(|op| op.address.matches(path))
                .map(|op| (spec, op))
        });
        let first = found.next()?;
        if port.is_none_or(|p| first.0.ports.contains(&p)) {
            return Some(first);
        }
        Some(
            found
                .find(|(spec, _)| port.is_some_and(|p| spec.ports.contains(&p)))
                .unwrap_or(first),
        )
    }
}

impl Handler<Sse> for Server {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Sse>) -> Result<(), Reset<Sse>> {
        let path = std::str::from_utf8(&stream.begin.path).unwrap_or("");
        let Some((spec, op)) = self.operation(path, port_of(&stream.begin.authority)) else {
            tracing::debug!(binding = %self.name, path, "no operation of the documents serves this path");
            return Err(HttpReset::refuse(404));
        };
        let exit = self
            .routes
            .resolve(graph, stream.session.as_deref(), |w| {
                w.matches(&spec.label, &op.id, &op.tags)
            })
            .and_then(|r| r.exit)
            .ok_or_else(|| HttpReset::refuse(404))?;
        graph.forward::<Sse>(exit, stream)
    }
}

/// The client kind: hands an sse stream to the generated client of the document that has an
/// operation at its path (the first document when only one is configured).
struct Client {
    /// `sse_client0` of each spec, in `specs` order.
    entries: Vec<BindingId>,
    state: Arc<State>,
}

impl Handler<Sse> for Client {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Sse>) -> Result<(), Reset<Sse>> {
        let entry = if self.entries.len() == 1 {
            self.entries[0]
        } else {
            let path = std::str::from_utf8(&stream.begin.path).unwrap_or("");
            let spec = self
                .state
                .specs
                .iter()
                .position(|s| s.operations.iter().any(|op| op.address.matches(path)))
                .ok_or_else(|| HttpReset::refuse(404))?;
            self.entries[spec]
        };
        graph.forward::<Sse>(entry, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_match_whole_paths_with_one_segment_per_parameter() {
        let a = Address::parse("/events/{id}");
        assert!(a.matches("/events/1"));
        assert!(a.matches("/events/a8b7c6d5"));
        assert!(!a.matches("/events/"));
        assert!(!a.matches("/events/1/2"));
        assert!(!a.matches("/events"));
        assert!(!a.matches("/other/1"));
        let b = Address::parse("/a/{x}/b/{y}");
        assert!(b.matches("/a/1/b/2"));
        assert!(!b.matches("/a/1/c/2"));
        assert!(Address::parse("/events").matches("/events"));
    }

    #[test]
    fn authority_ports() {
        assert_eq!(port_of(b"localhost:7114"), Some(7114));
        assert_eq!(port_of(b"[::1]:8080"), Some(8080));
        assert_eq!(port_of(b"localhost"), None);
    }
}
