//! Reading an AsyncAPI document: YAML or JSON text, checked against the official AsyncAPI
//! JSON Schema of its version (3.0.0, or 2.6.0 as Zilla accepts it), `$ref`s resolved, and what
//! an SSE gateway needs extracted: servers, SSE operations with their channel address and
//! message payloads, security schemes.

use std::sync::OnceLock;

use indexmap::IndexMap;
use serde_json::{Map, Value};

/// A problem in a document, at a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DocError {
    /// Where (`/operations/getEvents/channel`); empty for the whole document.
    pub(crate) pointer: String,
    /// What is wrong.
    pub(crate) message: String,
}

impl DocError {
    fn at(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        DocError {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// A server of the document.
#[derive(Debug, Clone)]
pub(crate) struct DocServer {
    /// Its key.
    pub(crate) name: String,
    /// `host[:port]` (3.x `host`, or 2.x `url` without a scheme).
    pub(crate) host: String,
    /// `http`, `https`, ...
    pub(crate) protocol: String,
    /// Security requirements of the server.
    pub(crate) security: Vec<Requirement>,
}

/// A security requirement: a scheme and the scopes it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requirement {
    /// The scheme's key in `components.securitySchemes`.
    pub(crate) scheme: String,
    /// Scopes (oauth2, openIdConnect), the roles a guard must find.
    pub(crate) scopes: Vec<String>,
}

/// Where a scheme takes its credentials from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// `authorization: Bearer <token>` (http bearer, oauth2, openIdConnect).
    Bearer,
    /// A header, query parameter or cookie of that name (apiKey, httpApiKey).
    Header(String),
    /// A query parameter.
    Query(String),
    /// A cookie.
    Cookie(String),
    /// Something a jwt guard cannot check (userPassword, X509, ...).
    Other(String),
}

/// A message payload as the generated sse server validates it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payload {
    /// A JSON Schema (draft-07, refs rewritten into `$defs`), for the `json` model.
    Json(Value),
    /// An Avro schema, for the `avro` model (`view: json`).
    Avro(Value),
    /// A bare primitive (`type: integer`, ...) mapped to a core model as Zilla does:
    /// the model config (`int32`, `{model: string, pattern: ...}`).
    Core(Value),
}

/// An operation served as an SSE stream (its `bindings` has `x-zilla-sse`).
#[derive(Debug, Clone)]
pub(crate) struct SseOperation {
    /// Its key (3.x) or `operationId` (2.x).
    pub(crate) id: String,
    /// The channel's key.
    pub(crate) channel: String,
    /// The channel's address (`/events/{id}`).
    pub(crate) address: String,
    /// Tags.
    pub(crate) tags: Vec<String>,
    /// The payloads of its messages, by message key; empty when none declares one.
    pub(crate) payloads: Vec<(String, Payload)>,
    /// Its security requirements (the operation's own, else its servers').
    pub(crate) security: Vec<Requirement>,
}

/// What the gateway takes from a document.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    /// `3.0.0` or `2.6.0`.
    pub(crate) version: String,
    /// Servers, in document order.
    pub(crate) servers: Vec<DocServer>,
    /// SSE operations, in document order.
    pub(crate) operations: Vec<SseOperation>,
    /// Keys of operations that are not SSE (served by nothing here).
    pub(crate) skipped: Vec<String>,
    /// Security schemes by key.
    pub(crate) schemes: IndexMap<String, Credentials>,
}

/// The versions Zilla accepts.
const VERSIONS: [&str; 2] = ["3.0.0", "2.6.0"];

/// Parses `text` (YAML or JSON) and reads it.
pub(crate) fn parse(text: &str) -> Result<Document, DocError> {
    let root: Value = serde_yaml::from_str(text)
        .map_err(|e| DocError::at("", format!("not YAML or JSON: {e}")))?;
    let Value::Object(top) = &root else {
        return Err(DocError::at("", "not an AsyncAPI document (not an object)"));
    };
    let version = match top.get("asyncapi") {
        Some(Value::String(v)) if VERSIONS.contains(&v.as_str()) => v.clone(),
        Some(Value::String(v)) => {
            return Err(DocError::at(
                "/asyncapi",
                format!("AsyncAPI version '{v}' is not supported (3.0.0, or 2.6.0)"),
            ))
        }
        _ => {
            return Err(DocError::at(
                "/asyncapi",
                "not an AsyncAPI document (no `asyncapi` version string)",
            ))
        }
    };
    let reader = Reader { root: &root };
    let doc = if version == "3.0.0" {
        reader.v3(version)?
    } else {
        reader.v2(version)?
    };
    check_schema(&root, &doc.version)?;
    Ok(doc)
}

/// Checks `root` against the official JSON Schema of `version` (compiled once per process).
fn check_schema(root: &Value, version: &str) -> Result<(), DocError> {
    static V3: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    static V2: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    let (cell, text) = match version {
        "3.0.0" => (&V3, include_str!("../schemas/asyncapi-3.0.0.json")),
        _ => (&V2, include_str!("../schemas/asyncapi-2.6.0.json")),
    };
    let validator = cell.get_or_init(|| {
        let schema: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        jsonschema::validator_for(&schema).map_err(|e| e.to_string())
    });
    let validator = validator
        .as_ref()
        .map_err(|e| DocError::at("", format!("the AsyncAPI {version} schema: {e}")))?;
    if validator.is_valid(root) {
        return Ok(());
    }
    let error = validator
        .iter_errors(root)
        .max_by_key(|e| e.instance_path().to_string().len())
        .expect("an invalid document has an error");
    let mut message = error.to_string();
    if message.len() > 300 {
        message.truncate(300);
        message.push_str("...");
    }
    Err(DocError::at(
        error.instance_path().to_string(),
        format!("does not follow the AsyncAPI {version} schema: {message}"),
    ))
}

/// `/a/b` joined with one more key, escaped.
fn join(pointer: &str, key: &str) -> String {
    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"))
}

struct Reader<'a> {
    root: &'a Value,
}

impl<'a> Reader<'a> {
    /// Follows `$ref`s (local ones, `#/...`) from `value` found at `pointer`; returns the value
    /// and the pointer where it really is.
    fn deref(&self, value: &'a Value, pointer: &str) -> Result<(&'a Value, String), DocError> {
        let mut value = value;
        let mut at = pointer.to_string();
        for _ in 0..32 {
            let Some(r) = value.get("$ref") else {
                return Ok((value, at));
            };
            let Some(r) = r.as_str() else {
                return Err(DocError::at(join(&at, "$ref"), "`$ref` is not a string"));
            };
            let target = self
                .target(r)
                .map_err(|m| DocError::at(join(&at, "$ref"), m))?;
            value = target;
            at = r.trim_start_matches('#').to_string();
        }
        Err(DocError::at(pointer, "`$ref`s that go round in a circle"))
    }

    /// The value a local `$ref` names.
    fn target(&self, r: &str) -> Result<&'a Value, String> {
        let Some(pointer) = r.strip_prefix('#') else {
            return Err(format!(
                "unresolved reference ({r}): only references inside the document (#/...) are \
                 followed"
            ));
        };
        self.root
            .pointer(pointer)
            .ok_or_else(|| format!("unresolved reference ({r})"))
    }

    fn object(&self, value: &'a Value, pointer: &str) -> Result<&'a Map<String, Value>, DocError> {
        value
            .as_object()
            .ok_or_else(|| DocError::at(pointer, "expected an object"))
    }

    /// The object at `key` of `parent` (`None` if absent), with refs followed.
    fn member(
        &self,
        parent: &'a Map<String, Value>,
        pointer: &str,
        key: &str,
    ) -> Result<Option<(&'a Value, String)>, DocError> {
        match parent.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => self.deref(v, &join(pointer, key)).map(Some),
        }
    }

    fn schemes(&self) -> Result<IndexMap<String, Credentials>, DocError> {
        let mut out = IndexMap::new();
        let at = "/components/securitySchemes";
        let Some(schemes) = self.root.pointer(at).and_then(Value::as_object) else {
            return Ok(out);
        };
        for (key, scheme) in schemes {
            let (scheme, p) = self.deref(scheme, &join(at, key))?;
            let s = self.object(scheme, &p)?;
            let field = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("");
            let credentials = match field("type") {
                "http" if field("scheme").eq_ignore_ascii_case("bearer") => Credentials::Bearer,
                "oauth2" | "openIdConnect" => Credentials::Bearer,
                "apiKey" | "httpApiKey" => {
                    let name = match field("name") {
                        "" => "api_key".to_string(),
                        n => n.to_string(),
                    };
                    match field("in") {
                        "query" => Credentials::Query(name),
                        "cookie" => Credentials::Cookie(name),
                        _ => Credentials::Header(name.to_ascii_lowercase()),
                    }
                }
                other => Credentials::Other(if other == "http" {
                    format!("http {}", field("scheme"))
                } else {
                    other.to_string()
                }),
            };
            out.insert(key.clone(), credentials);
        }
        Ok(out)
    }

    /// 3.x security: a list of security scheme objects or refs to them; the scheme key is the
    /// ref's last segment, the scopes its `scopes`.
    fn requirements_v3(
        &self,
        list: Option<&'a Value>,
        pointer: &str,
    ) -> Result<Vec<Requirement>, DocError> {
        let Some(Value::Array(list)) = list else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let at = format!("{pointer}/{i}");
            let scheme = match item.get("$ref").and_then(Value::as_str) {
                Some(r) => r.rsplit('/').next().unwrap_or(r).to_string(),
                None => String::new(),
            };
            let (value, _) = self.deref(item, &at)?;
            let scopes = value
                .get("scopes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            out.push(Requirement { scheme, scopes });
        }
        Ok(out)
    }

    /// 2.x security: a list of `{scheme: [scopes]}` maps.
    fn requirements_v2(&self, list: Option<&'a Value>) -> Vec<Requirement> {
        let Some(Value::Array(list)) = list else {
            return Vec::new();
        };
        list.iter()
            .filter_map(Value::as_object)
            .flat_map(|m| m.iter())
            .map(|(scheme, scopes)| Requirement {
                scheme: scheme.clone(),
                scopes: scopes
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    fn v3(&self, version: String) -> Result<Document, DocError> {
        let top = self.object(self.root, "")?;
        let default_type = top
            .get("defaultContentType")
            .and_then(Value::as_str)
            .unwrap_or("application/json");
        let mut servers = Vec::new();
        if let Some((all, at)) = self.member(top, "", "servers")? {
            for (name, server) in self.object(all, &at)? {
                let p = join(&at, name);
                let (server, p) = self.deref(server, &p)?;
                let s = self.object(server, &p)?;
                servers.push(DocServer {
                    name: name.clone(),
                    host: text(s, "host", &p)?,
                    protocol: text(s, "protocol", &p)?,
                    security: self.requirements_v3(s.get("security"), &join(&p, "security"))?,
                });
            }
        }
        let mut operations = Vec::new();
        let mut skipped = Vec::new();
        if let Some((all, at)) = self.member(top, "", "operations")? {
            for (key, op) in self.object(all, &at)? {
                let p = join(&at, key);
                let (op, p) = self.deref(op, &p)?;
                let o = self.object(op, &p)?;
                match o.get("action").and_then(Value::as_str) {
                    Some("send" | "receive") => {}
                    _ => {
                        return Err(DocError::at(
                            join(&p, "action"),
                            "an operation's `action` is `send` or `receive`",
                        ))
                    }
                }
                let sse = o
                    .get("bindings")
                    .and_then(Value::as_object)
                    .is_some_and(|b| b.contains_key("x-zilla-sse"));
                let Some(channel_ref) = o.get("channel") else {
                    return Err(DocError::at(&p, "an operation needs a `channel`"));
                };
                let channel_key = channel_ref
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.rsplit('/').next())
                    .unwrap_or(key)
                    .to_string();
                let (channel, cp) = self.deref(channel_ref, &join(&p, "channel"))?;
                let c = self.object(channel, &cp)?;
                if !sse {
                    skipped.push(key.clone());
                    continue;
                }
                let Some(address) = c.get("address").and_then(Value::as_str) else {
                    return Err(DocError::at(
                        &cp,
                        format!(
                            "the channel of SSE operation '{key}' has no `address` (the path \
                             clients ask for)"
                        ),
                    ));
                };
                let channel_messages = c.get("messages").and_then(Value::as_object);
                // The operation's messages (refs to its channel's), or all of the channel's.
                let mut messages: Vec<(String, &Value, String)> = Vec::new();
                match o.get("messages").and_then(Value::as_array) {
                    Some(list) if !list.is_empty() => {
                        for (i, m) in list.iter().enumerate() {
                            let mp = format!("{p}/messages/{i}");
                            let name = m
                                .get("$ref")
                                .and_then(Value::as_str)
                                .and_then(|r| r.rsplit('/').next())
                                .unwrap_or("message")
                                .to_string();
                            // A message of the operation is one of its channel's, by reference.
                            let target = m.get("$ref").and_then(Value::as_str).unwrap_or("");
                            let expected = join(&join(&cp, "messages"), &name);
                            let in_channel = channel_messages
                                .is_some_and(|cm| cm.contains_key(&name))
                                && target.trim_start_matches('#') == expected;
                            if !in_channel {
                                return Err(DocError::at(
                                    &mp,
                                    format!(
                                        "operation '{key}' names message '{name}', which its \
                                         channel '{channel_key}' does not have"
                                    ),
                                ));
                            }
                            let (m, at) = self.deref(m, &mp)?;
                            messages.push((name, m, at));
                        }
                    }
                    _ => {
                        let Some(cm) = channel_messages.filter(|m| !m.is_empty()) else {
                            return Err(DocError::at(
                                &cp,
                                format!(
                                    "channel '{channel_key}' of SSE operation '{key}' has no \
                                     messages, so nothing says what its events are"
                                ),
                            ));
                        };
                        for (name, m) in cm {
                            let (m, at) = self.deref(m, &join(&join(&cp, "messages"), name))?;
                            messages.push((name.clone(), m, at));
                        }
                    }
                }
                let mut payloads = Vec::new();
                for (name, m, at) in messages {
                    if let Some(payload) = self.payload(m, &at, default_type)? {
                        payloads.push((name, payload));
                    }
                }
                let mut security =
                    self.requirements_v3(o.get("security"), &join(&p, "security"))?;
                if security.is_empty() {
                    security = servers.iter().flat_map(|s| s.security.clone()).collect();
                }
                operations.push(SseOperation {
                    id: key.clone(),
                    channel: channel_key,
                    address: address.to_string(),
                    tags: tags(o),
                    payloads,
                    security,
                });
            }
        }
        Ok(Document {
            version,
            servers,
            operations,
            skipped,
            schemes: self.schemes()?,
        })
    }

    fn v2(&self, version: String) -> Result<Document, DocError> {
        let top = self.object(self.root, "")?;
        let default_type = top
            .get("defaultContentType")
            .and_then(Value::as_str)
            .unwrap_or("application/json");
        let mut servers = Vec::new();
        if let Some((all, at)) = self.member(top, "", "servers")? {
            for (name, server) in self.object(all, &at)? {
                let p = join(&at, name);
                let (server, p) = self.deref(server, &p)?;
                let s = self.object(server, &p)?;
                let url = text(s, "url", &p)?;
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let host = rest.split('/').next().unwrap_or(rest);
                servers.push(DocServer {
                    name: name.clone(),
                    host: host.to_string(),
                    protocol: text(s, "protocol", &p)?,
                    security: self.requirements_v2(s.get("security")),
                });
            }
        }
        // 2.6 has no operations object: a channel's `subscribe` (what its clients receive)
        // with an `x-zilla-sse` binding is an SSE operation (Zilla serves none of 2.6's).
        let mut operations = Vec::new();
        let mut skipped = Vec::new();
        if let Some((all, at)) = self.member(top, "", "channels")? {
            for (address, channel) in self.object(all, &at)? {
                let cp = join(&at, address);
                let (channel, cp) = self.deref(channel, &cp)?;
                let c = self.object(channel, &cp)?;
                for action in ["subscribe", "publish"] {
                    let Some((op, p)) = self.member(c, &cp, action)? else {
                        continue;
                    };
                    let o = self.object(op, &p)?;
                    let id = o
                        .get("operationId")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("{action} {address}"), str::to_string);
                    let has_sse = |v: Option<&Value>| {
                        v.and_then(Value::as_object)
                            .is_some_and(|b| b.contains_key("x-zilla-sse"))
                    };
                    if action != "subscribe"
                        || !(has_sse(o.get("bindings")) || has_sse(c.get("bindings")))
                    {
                        skipped.push(id);
                        continue;
                    }
                    let mut payloads = Vec::new();
                    if let Some((m, mp)) = self.member(o, &p, "message")? {
                        let alternatives: Vec<(&Value, String)> =
                            match m.get("oneOf").and_then(Value::as_array) {
                                Some(list) => list
                                    .iter()
                                    .enumerate()
                                    .map(|(i, v)| self.deref(v, &format!("{mp}/oneOf/{i}")))
                                    .collect::<Result<_, _>>()?,
                                None => vec![(m, mp)],
                            };
                        for (i, (m, at)) in alternatives.into_iter().enumerate() {
                            let name = m
                                .get("name")
                                .and_then(Value::as_str)
                                .map_or_else(|| format!("message{i}"), str::to_string);
                            if let Some(payload) = self.payload(m, &at, default_type)? {
                                payloads.push((name, payload));
                            }
                        }
                    }
                    let mut security = self.requirements_v2(o.get("security"));
                    if security.is_empty() {
                        security = servers.iter().flat_map(|s| s.security.clone()).collect();
                    }
                    operations.push(SseOperation {
                        id,
                        channel: address.clone(),
                        address: address.clone(),
                        tags: tags(o),
                        payloads,
                        security,
                    });
                }
            }
        }
        Ok(Document {
            version,
            servers,
            operations,
            skipped,
            schemes: self.schemes()?,
        })
    }

    /// The payload of message `m` (found at `at`), as the generated server validates it.
    fn payload(
        &self,
        m: &'a Value,
        at: &str,
        default_type: &str,
    ) -> Result<Option<Payload>, DocError> {
        let Some(payload) = m.get("payload") else {
            return Ok(None);
        };
        let content_type = m
            .get("contentType")
            .and_then(Value::as_str)
            .unwrap_or(default_type)
            .to_ascii_lowercase();
        let pp = join(at, "payload");
        // A multi-format schema (3.x `{schemaFormat, schema}`) or a 2.x message-level format.
        let (schema, sp, format) = match (payload.get("schemaFormat"), payload.get("schema")) {
            (Some(f), Some(s)) => (s, join(&pp, "schema"), f.as_str().unwrap_or("")),
            _ => (
                payload,
                pp.clone(),
                m.get("schemaFormat").and_then(Value::as_str).unwrap_or(""),
            ),
        };
        let format = format.to_ascii_lowercase();
        if format.contains("avro") || content_type.contains("avro") {
            let (schema, _) = self.deref(schema, &sp)?;
            return Ok(Some(Payload::Avro(schema.clone())));
        }
        if format.contains("protobuf") || content_type.contains("protobuf") {
            return Err(DocError::at(
                sp,
                "protobuf payloads are not supported by the asyncapi binding yet (JSON Schema \
                 and Avro are)",
            ));
        }
        if !format.is_empty()
            && !format.contains("asyncapi")
            && !format.contains("schema+json")
            && !format.contains("schema+yaml")
        {
            return Err(DocError::at(
                sp,
                format!("schema format '{format}' is not supported (JSON Schema, AsyncAPI schema or Avro)"),
            ));
        }
        let (resolved, _) = self.deref(schema, &sp)?;
        if let Some(core) = core_model(resolved) {
            return Ok(Some(Payload::Core(core)));
        }
        inline_schema(self, schema, &sp).map(|s| Some(Payload::Json(s)))
    }
}

fn text(map: &Map<String, Value>, key: &str, pointer: &str) -> Result<String, DocError> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| DocError::at(pointer, format!("needs a `{key}` string")))
}

fn tags(op: &Map<String, Value>) -> Vec<String> {
    op.get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The core model Zilla maps a bare primitive payload to (`type` and at most `format`,
/// `description`, `title`, `examples`), so a text SSE event like `42` or `hello` is checked as
/// text, not as JSON.
fn core_model(schema: &Value) -> Option<Value> {
    let s = schema.as_object()?;
    let ty = s.get("type")?.as_str()?;
    let plain = s.keys().all(|k| {
        matches!(
            k.as_str(),
            "type" | "format" | "description" | "title" | "examples"
        )
    });
    if !plain {
        return None;
    }
    let format = s.get("format").and_then(Value::as_str).unwrap_or("");
    let model = |m: &str| Some(Value::String(m.to_string()));
    match (ty, format) {
        ("integer", "int64") => model("int64"),
        ("integer", _) => model("int32"),
        ("number", "double") => model("double"),
        ("number", _) => model("float"),
        ("boolean", _) => model("boolean"),
        ("string", format) => {
            let pattern = match format {
                "email" => r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                "date" => r"^\d{4}-\d{2}-\d{2}$",
                "date-time" => r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$",
                _ => return model("string"),
            };
            let mut m = Map::new();
            m.insert("model".into(), "string".into());
            m.insert("pattern".into(), pattern.into());
            Some(Value::Object(m))
        }
        _ => None,
    }
}

/// `schema` (found at `pointer`) as one self-contained JSON Schema: every keyword kept, every
/// `$ref` it reaches (directly or through other refs) copied into `$defs` and pointed at there,
/// so nested and recursive refs resolve (Zilla keeps a subset of keywords and leaves nested refs
/// dangling).
fn inline_schema(reader: &Reader<'_>, schema: &Value, pointer: &str) -> Result<Value, DocError> {
    let mut pending: Vec<(String, String)> = Vec::new(); // (ref, where it was found)
    let mut top = rewrite(schema, pointer, &mut pending)?;
    let mut defs = Map::new();
    while let Some((r, found_at)) = pending.pop() {
        let key = def_key(&r);
        if defs.contains_key(&key) {
            continue;
        }
        let target = reader
            .target(&r)
            .map_err(|m| DocError::at(found_at.clone(), m))?;
        defs.insert(key.clone(), Value::Null);
        let rewritten = rewrite(target, r.trim_start_matches('#'), &mut pending)?;
        defs.insert(key, rewritten);
    }
    if let Value::Object(o) = &mut top {
        o.insert(
            "$schema".into(),
            "http://json-schema.org/draft-07/schema#".into(),
        );
        if !defs.is_empty() {
            o.insert("$defs".into(), Value::Object(defs));
        }
    }
    Ok(top)
}

/// The `$defs` key of a ref: its pointer with `/` as `.`.
fn def_key(r: &str) -> String {
    r.trim_start_matches("#/").replace('/', ".")
}

/// A copy of `schema` with every `$ref` string pointed into `$defs`; refs are queued.
fn rewrite(
    schema: &Value,
    pointer: &str,
    pending: &mut Vec<(String, String)>,
) -> Result<Value, DocError> {
    Ok(match schema {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                let at = join(pointer, k);
                let v = match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if !r.starts_with('#') {
                            return Err(DocError::at(
                                at,
                                format!(
                                    "unresolved reference ({r}): only references inside the \
                                     document (#/...) are followed"
                                ),
                            ));
                        }
                        pending.push((r.clone(), at));
                        let key = def_key(r).replace('~', "~0").replace('/', "~1");
                        Value::String(format!("#/$defs/{key}"))
                    }
                    // Values, not schemas: kept as written.
                    ("enum" | "const" | "default" | "examples" | "example", v) => v.clone(),
                    (_, v) => rewrite(v, &at, pending)?,
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, v)| rewrite(v, &format!("{pointer}/{i}"), pending))
                .collect::<Result<_, _>>()?,
        ),
        v => v.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EVENTSTORE: &str = r##"asyncapi: 3.0.0
info:
  title: AsyncAPI Eventstore
  license:
    name: MIT
  version: 1.0.0
servers:
  plain:
    host: localhost:7114
    protocol: http
defaultContentType: application/json
channels:
  events:
    address: /events
    messages:
      event:
        $ref: "#/components/messages/event"
  showEventById:
    address: /events/{id}
    messages:
      event:
        $ref: "#/components/messages/event"
operations:
  getEvents:
    action: receive
    channel:
      $ref: "#/channels/showEventById"
    bindings:
      x-zilla-sse:
        method: "GET"
components:
  schemas:
    eventPayload:
      type: object
      properties:
        id:
          type: integer
          minimum: 0
          description: Event id.
        name:
          type: string
          description: Event name.
        tag:
          type: string
          description: Tag.
  messages:
    event:
      name: Event
      title: Event
      summary: >-
        Inform about Event.
      contentType: application/json
      payload:
        $ref: "#/components/schemas/eventPayload"
"##;

    #[test]
    fn zillas_eventstore_document() {
        let doc = parse(EVENTSTORE).unwrap();
        assert_eq!(doc.version, "3.0.0");
        assert_eq!(doc.servers.len(), 1);
        assert_eq!(doc.servers[0].host, "localhost:7114");
        assert_eq!(doc.operations.len(), 1);
        let op = &doc.operations[0];
        assert_eq!(
            (op.id.as_str(), op.address.as_str()),
            ("getEvents", "/events/{id}")
        );
        assert_eq!(op.channel, "showEventById");
        let Payload::Json(schema) = &op.payloads[0].1 else {
            panic!("a json payload: {:?}", op.payloads)
        };
        assert_eq!(
            schema["$ref"], "#/$defs/components.schemas.eventPayload",
            "{schema}"
        );
        assert_eq!(
            schema["$defs"]["components.schemas.eventPayload"]["properties"]["id"]["minimum"],
            0
        );
        let v = jsonschema::validator_for(schema).unwrap();
        assert!(v.is_valid(&serde_json::json!({"id": 1, "name": "x"})));
        assert!(!v.is_valid(&serde_json::json!({"id": -1})));
    }

    #[test]
    fn every_keyword_and_nested_and_recursive_refs_are_kept() {
        let text = EVENTSTORE.replace(
            "        tag:\n          type: string\n          description: Tag.\n",
            "        tag:\n          type: string\n          pattern: '^[a-z]+$'\n          maxLength: 5\n        parent:\n          $ref: '#/components/schemas/eventPayload'\n        kind:\n          $ref: '#/components/schemas/kind'\n      additionalProperties: false\n    kind:\n      enum: [a, b]\n",
        );
        let doc = parse(&text).unwrap();
        let Payload::Json(schema) = &doc.operations[0].payloads[0].1 else {
            panic!()
        };
        let v = jsonschema::validator_for(schema).unwrap();
        assert!(v.is_valid(
            &serde_json::json!({"id": 1, "tag": "abc", "kind": "a", "parent": {"id": 2}})
        ));
        for bad in [
            serde_json::json!({"id": 1, "tag": "ABC"}),
            serde_json::json!({"id": 1, "tag": "abcdef"}),
            serde_json::json!({"id": 1, "extra": true}),
            serde_json::json!({"id": 1, "kind": "c"}),
            serde_json::json!({"id": 1, "parent": {"id": -2}}),
        ] {
            assert!(!v.is_valid(&bad), "{bad}");
        }
    }

    #[test]
    fn document_errors_name_the_pointer() {
        let cases = [
            ("not: [valid", "", "not YAML or JSON"),
            ("asyncapi: 3.0.1\n", "/asyncapi", "'3.0.1' is not supported"),
            ("title: x\n", "/asyncapi", "no `asyncapi` version"),
            (
                &*EVENTSTORE.replace("#/channels/showEventById", "#/channels/missing"),
                "/operations/getEvents/channel/$ref",
                "unresolved reference (#/channels/missing)",
            ),
            (
                &*EVENTSTORE.replace("$ref: \"#/components/schemas/eventPayload\"", "$ref: \"#/components/schemas/nope\""),
                "/components/messages/event/payload/$ref",
                "unresolved reference (#/components/schemas/nope)",
            ),
            (
                &*EVENTSTORE.replace("    action: receive\n", "    action: receive\n    messages:\n      - $ref: '#/channels/events/messages/event'\n"),
                "/operations/getEvents/messages/0",
                "names message 'event', which its channel 'showEventById' does not have",
            ),
            (
                &*EVENTSTORE.replace("  showEventById:\n    address: /events/{id}\n    messages:\n      event:\n        $ref: \"#/components/messages/event\"\n", "  showEventById:\n    address: /events/{id}\n"),
                "/channels/showEventById",
                "has no messages",
            ),
            (
                &*EVENTSTORE.replace("action: receive", "action: take"),
                "/operations/getEvents/action",
                "`action` is `send` or `receive`",
            ),
            (
                &*EVENTSTORE.replace("  title: AsyncAPI Eventstore\n", ""),
                "/info",
                "does not follow the AsyncAPI 3.0.0 schema: \"title\" is a required property",
            ),
        ];
        for (text, pointer, message) in cases {
            let e = parse(text).expect_err(message);
            assert_eq!(e.pointer, pointer, "{e:?}");
            assert!(e.message.contains(message), "{e:?}");
        }
    }

    #[test]
    fn json_documents_and_version_2_6() {
        let json: Value = serde_yaml::from_str(EVENTSTORE).unwrap();
        let doc = parse(&serde_json::to_string_pretty(&json).unwrap()).unwrap();
        assert_eq!(doc.operations[0].id, "getEvents");
        let v2 = r##"{
          "asyncapi": "2.6.0",
          "info": { "title": "Events", "version": "1.0.0" },
          "servers": { "plain": { "url": "localhost:7114", "protocol": "http" } },
          "channels": {
            "/events/{id}": {
              "parameters": { "id": { "schema": { "type": "string" } } },
              "subscribe": {
                "operationId": "getEvents",
                "bindings": { "x-zilla-sse": {} },
                "message": { "payload": { "type": "object", "required": ["id"] } }
              }
            },
            "/other": { "publish": { "message": { "payload": { "type": "string" } } } }
          }
        }"##;
        let doc = parse(v2).unwrap();
        assert_eq!(doc.version, "2.6.0");
        assert_eq!(doc.servers[0].host, "localhost:7114");
        assert_eq!(doc.operations.len(), 1);
        assert_eq!(doc.operations[0].address, "/events/{id}");
        assert_eq!(doc.skipped, vec!["publish /other".to_string()]);
    }

    #[test]
    fn primitive_payloads_map_to_core_models_and_security_is_read() {
        let text = EVENTSTORE
            .replace(
                "      payload:\n        $ref: \"#/components/schemas/eventPayload\"\n",
                "      payload:\n        type: string\n        format: email\n",
            )
            .replace(
                "    bindings:\n      x-zilla-sse:\n",
                "    security:\n      - $ref: '#/components/securitySchemes/oauth'\n    bindings:\n      x-zilla-sse:\n",
            )
            .replace(
                "  messages:\n    event:\n",
                "  securitySchemes:\n    oauth:\n      type: oauth2\n      flows: {}\n      scopes: [ 'read:events' ]\n    key:\n      type: httpApiKey\n      name: X-Api-Key\n      in: header\n  messages:\n    event:\n",
            );
        let doc = parse(&text).unwrap();
        let op = &doc.operations[0];
        let Payload::Core(model) = &op.payloads[0].1 else {
            panic!("{:?}", op.payloads)
        };
        assert_eq!(model["model"], "string");
        assert_eq!(
            op.security,
            vec![Requirement {
                scheme: "oauth".into(),
                scopes: vec!["read:events".into()]
            }]
        );
        assert_eq!(doc.schemes["oauth"], Credentials::Bearer);
        assert_eq!(doc.schemes["key"], Credentials::Header("x-api-key".into()));
    }
}
