//! The namespaces an `asyncapi` binding generates from a document, as zilla.yaml text: what a
//! user would have written by hand, built through the same registry and checks.
//!
//! Server (per spec): `tcp_server0` (+ `tls_server0` for https) -> `http_server0` (cross-origin,
//! the http authorization) -> `sse_server0` (each SSE operation's address validated against
//! its messages' payloads from `catalog0`) -> the asyncapi server binding. Client (per spec):
//! `sse_client0` -> `http_client0` -> (`tls_client0` ->) `tcp_client0` to the document's server.

use serde_json::{json, Map, Value};

use crate::document::{Credentials, Document, Payload, SseOperation};

/// A server or client endpoint: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `http` or `https`.
    pub(crate) secure: bool,
    /// Host name or address.
    pub(crate) host: String,
    /// Port.
    pub(crate) port: u16,
}

/// What the server composite needs besides the document.
#[derive(Debug)]
pub(crate) struct ServerPlan<'a> {
    /// `<ns>:<binding>/<label>`.
    pub(crate) namespace: String,
    /// The asyncapi server binding, qualified: where sse streams go.
    pub(crate) target: String,
    /// The endpoints to listen on (ignored when `tcp` is given).
    pub(crate) endpoints: Vec<Endpoint>,
    /// `options.tcp` verbatim.
    pub(crate) tcp: Option<&'a Map<String, Value>>,
    /// `options.tls` verbatim.
    pub(crate) tls: Option<&'a Map<String, Value>>,
    /// The binding's vault, qualified.
    pub(crate) vault: Option<String>,
    /// The http server's authorization (guard names qualified), if any.
    pub(crate) authorization: Option<Value>,
    /// Per operation (same order as the document's): the guard and roles guarding it.
    pub(crate) guards: Vec<Option<(String, Vec<String>)>>,
}

/// The subject of an operation's payloads in `catalog0` (Zilla's `<channel>-<message>-value`),
/// kept to what a subject name may hold (a 2.x channel key is its address, `/prices/{symbol}`).
fn subject(op: &SseOperation) -> String {
    let messages: Vec<&str> = op.payloads.iter().map(|(m, _)| m.as_str()).collect();
    let raw = format!("{}-{}-value", op.channel, messages.join("-"));
    let name: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    let name = name.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
    format!("{}{name}", if name.is_empty() { "s" } else { "" })
}

/// A channel address as a glob (`/events/{id}` -> `/events/*`).
pub(crate) fn address_glob(address: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in address.chars() {
        match (c, in_param) {
            ('{', _) => {
                in_param = true;
                out.push('*');
            }
            ('}', true) => in_param = false,
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// A channel address as an anchored regular expression (`/events/{id}` -> `^/events/[^/]+$`),
/// for the sse server's `requests[].path`.
fn address_regex(address: &str) -> String {
    let mut out = String::from("^");
    let mut in_param = false;
    let mut literal = String::new();
    for c in address.chars() {
        match (c, in_param) {
            ('{', _) => {
                out.push_str(&regex_escape(&literal));
                literal.clear();
                in_param = true;
                out.push_str("[^/]+");
            }
            ('}', true) => in_param = false,
            (_, true) => {}
            (c, false) => literal.push(c),
        }
    }
    out.push_str(&regex_escape(&literal));
    out.push('$');
    out
}

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The model config validating an operation's payloads.
fn content(op: &SseOperation) -> Result<Option<Value>, String> {
    let catalog = json!({ "catalog0": [ { "subject": subject(op) } ] });
    match op.payloads.as_slice() {
        [] => Ok(None),
        [(_, Payload::Json(_))] => Ok(Some(json!({ "model": "json", "catalog": catalog }))),
        [(_, Payload::Avro(_))] => Ok(Some(
            json!({ "model": "avro", "view": "json", "catalog": catalog }),
        )),
        [(_, Payload::Core(model))] => Ok(Some(model.clone())),
        many if many.iter().all(|(_, p)| matches!(p, Payload::Json(_))) => {
            Ok(Some(json!({ "model": "json", "catalog": catalog })))
        }
        _ => Err(format!(
            "operation '{}' has messages of different formats (JSON Schema, Avro, primitives); \
             one SSE stream is validated by one model",
            op.id
        )),
    }
}

/// The schema text of an operation's payloads: one schema, or (several JSON messages) any of
/// them.
fn schema_text(op: &SseOperation) -> Option<String> {
    let schemas: Vec<&Value> = op
        .payloads
        .iter()
        .filter_map(|(_, p)| match p {
            Payload::Json(s) | Payload::Avro(s) => Some(s),
            Payload::Core(_) => None,
        })
        .collect();
    match schemas.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        many => Some(json!({ "anyOf": many }).to_string()),
    }
}

/// Keys in the order a person writes a zilla.yaml (the rest follow, sorted).
const ORDER: &[&str] = &[
    "name",
    "catalogs",
    "bindings",
    "tcp_server0",
    "tls_server0",
    "http_server0",
    "sse_server0",
    "sse_client0",
    "http_client0",
    "tls_client0",
    "tcp_client0",
    "type",
    "kind",
    "vault",
    "options",
    "routes",
    "when",
    "guarded",
    "exit",
    "path",
    "model",
    "view",
    "catalog",
];

/// `value` as YAML with its keys in [`ORDER`].
fn ordered(value: &Value) -> serde_yaml::Value {
    match value {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort_by_key(|k| ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()));
            serde_yaml::Value::Mapping(
                keys.into_iter()
                    .map(|k| (serde_yaml::Value::String(k.clone()), ordered(&o[k])))
                    .collect(),
            )
        }
        Value::Array(a) => serde_yaml::Value::Sequence(a.iter().map(ordered).collect()),
        v => serde_yaml::to_value(v).expect("JSON scalars are YAML scalars"),
    }
}

fn to_yaml(doc: &Value) -> String {
    serde_yaml::to_string(&ordered(doc)).expect("YAML values serialize")
}

/// The server composite of one document.
pub(crate) fn server(doc: &Document, plan: &ServerPlan<'_>) -> Result<String, String> {
    let mut bindings = Map::new();
    let secure_ports: Vec<u16> = plan
        .endpoints
        .iter()
        .filter(|e| e.secure)
        .map(|e| e.port)
        .collect();
    let plain_ports: Vec<u16> = plan
        .endpoints
        .iter()
        .filter(|e| !e.secure)
        .map(|e| e.port)
        .collect();
    let secure = !secure_ports.is_empty() || (plan.tcp.is_some() && plan.tls.is_some());
    let mut tcp = json!({ "type": "tcp", "kind": "server" });
    tcp["options"] = match plan.tcp {
        Some(options) => Value::Object(options.clone()),
        None => {
            let mut ports: Vec<u16> = plan.endpoints.iter().map(|e| e.port).collect();
            ports.dedup();
            json!({ "host": "0.0.0.0", "port": ports })
        }
    };
    if plan.tcp.is_none() && !secure_ports.is_empty() && !plain_ports.is_empty() {
        tcp["routes"] = json!([
            { "when": [ { "port": secure_ports } ], "exit": "tls_server0" },
            { "when": [ { "port": plain_ports } ], "exit": "http_server0" },
        ]);
    } else {
        tcp["exit"] = json!(if secure {
            "tls_server0"
        } else {
            "http_server0"
        });
    }
    bindings.insert("tcp_server0".into(), tcp);
    if secure {
        let Some(tls) = plan.tls else {
            return Err(
                "an https server needs `options.tls` (the `keys` to serve) and the binding's \
                 `vault`"
                    .into(),
            );
        };
        let mut b =
            json!({ "type": "tls", "kind": "server", "options": tls, "exit": "http_server0" });
        if let Some(vault) = &plan.vault {
            b["vault"] = json!(vault);
        }
        bindings.insert("tls_server0".into(), b);
    }
    let mut http_options = json!({ "access-control": { "policy": "cross-origin" } });
    if let Some(authorization) = &plan.authorization {
        http_options["authorization"] = authorization.clone();
    }
    let mut http_routes = Vec::new();
    let mut sse_routes = Vec::new();
    let mut requests = Vec::new();
    let mut subjects = Map::new();
    for (op, guard) in doc.operations.iter().zip(&plan.guards) {
        let glob = address_glob(&op.address);
        // A `:path` pattern also takes the request's `?query`.
        http_routes.push(json!({
            "when": [ { "headers": { ":path": glob, ":method": "GET" } } ],
            "exit": "sse_server0",
        }));
        let mut route = json!({ "when": [ { "path": glob } ], "exit": plan.target });
        if let Some((guard, roles)) = guard {
            route["guarded"] = json!({ guard.clone(): roles });
        }
        sse_routes.push(route);
        if let Some(model) = content(op)? {
            requests.push(json!({ "path": address_regex(&op.address), "content": model }));
            if let Some(text) = schema_text(op) {
                subjects.insert(subject(op), json!({ "schema": text }));
            }
        }
    }
    bindings.insert(
        "http_server0".into(),
        json!({ "type": "http", "kind": "server", "options": http_options, "routes": http_routes }),
    );
    let mut sse = json!({ "type": "sse", "kind": "server", "routes": sse_routes });
    if !requests.is_empty() {
        sse["options"] = json!({ "requests": requests });
    }
    bindings.insert("sse_server0".into(), sse);
    let mut out = json!({ "name": plan.namespace });
    if !subjects.is_empty() {
        out["catalogs"] =
            json!({ "catalog0": { "type": "inline", "options": { "subjects": subjects } } });
    }
    out["bindings"] = Value::Object(bindings);
    Ok(to_yaml(&out))
}

/// The client composite of one document: its entry is `sse_client0`.
pub(crate) fn client(
    namespace: &str,
    endpoint: Option<&Endpoint>,
    tcp: Option<&Map<String, Value>>,
    tls: Option<&Map<String, Value>>,
    vault: Option<&str>,
) -> Result<String, String> {
    let secure = endpoint.is_some_and(|e| e.secure) || (tcp.is_some() && tls.is_some());
    let tcp_options = match (tcp, endpoint) {
        (Some(options), _) => Value::Object(options.clone()),
        (None, Some(e)) => json!({ "host": e.host, "port": e.port }),
        (None, None) => return Err("no server to connect to".into()),
    };
    let mut bindings = Map::new();
    bindings.insert(
        "sse_client0".into(),
        json!({ "type": "sse", "kind": "client", "exit": "http_client0" }),
    );
    bindings.insert(
        "http_client0".into(),
        json!({ "type": "http", "kind": "client", "exit": if secure { "tls_client0" } else { "tcp_client0" } }),
    );
    if secure {
        let options = match (tls, endpoint) {
            (Some(tls), _) => Value::Object(tls.clone()),
            (None, Some(e)) => json!({ "sni": [ e.host ] }),
            (None, None) => json!({}),
        };
        let mut b =
            json!({ "type": "tls", "kind": "client", "options": options, "exit": "tcp_client0" });
        if let Some(vault) = vault {
            b["vault"] = json!(vault);
        }
        bindings.insert("tls_client0".into(), b);
    }
    bindings.insert(
        "tcp_client0".into(),
        json!({ "type": "tcp", "kind": "client", "options": tcp_options }),
    );
    Ok(to_yaml(
        &json!({ "name": namespace, "bindings": Value::Object(bindings) }),
    ))
}

/// The http server `authorization` taking credentials for `guard` the way `scheme` says.
pub(crate) fn authorization(guard: &str, scheme: &Credentials) -> Result<Value, String> {
    let credentials = match scheme {
        Credentials::Bearer => json!({
            "headers": { "authorization": "Bearer {credentials}" },
            "query": { "access_token": "{credentials}" },
        }),
        Credentials::Header(name) => json!({ "headers": { name.clone(): "{credentials}" } }),
        Credentials::Query(name) => json!({ "query": { name.clone(): "{credentials}" } }),
        Credentials::Cookie(name) => json!({ "cookies": { name.clone(): "{credentials}" } }),
        Credentials::Other(kind) => {
            return Err(format!(
                "security scheme of type '{kind}' cannot be checked by a guard (http bearer, \
                 oauth2, openIdConnect and apiKey can)"
            ))
        }
    };
    Ok(json!({ guard: { "credentials": credentials } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_globs_and_anchored_regexes() {
        assert_eq!(address_glob("/events/{id}"), "/events/*");
        assert_eq!(address_glob("/a/{x}/b/{y}"), "/a/*/b/*");
        assert_eq!(address_regex("/events/{id}"), "^/events/[^/]+$");
        assert_eq!(address_regex("/v1.0/items"), "^/v1\\.0/items$");
    }

    #[test]
    fn subjects_are_valid_names() {
        let op = |channel: &str| SseOperation {
            id: "op".into(),
            channel: channel.into(),
            address: channel.into(),
            tags: Vec::new(),
            payloads: vec![("event".into(), Payload::Core(json!("int32")))],
            security: Vec::new(),
        };
        assert_eq!(subject(&op("showEventById")), "showEventById-event-value");
        assert_eq!(
            subject(&op("/prices/{symbol}")),
            "prices__symbol_-event-value"
        );
    }
}
