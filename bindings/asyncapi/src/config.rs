//! The `asyncapi` binding's config, in both shapes users have: Zilla's documented one (`specs`
//! naming a catalog subject, `servers` objects, `tcp`/`tls`/`http` options, routes on `api-id` /
//! `operation-id`) and its current one (`servers` as URL strings, `security`, routes on `spec` /
//! `operation`).

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `options` of an `asyncapi` binding.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsyncapiOptions {
    /// The AsyncAPI documents, by label (the `api-id` or `spec` routes name).
    pub specs: IndexMap<String, SpecConfig>,
    /// Options of the generated `tcp` binding: where a server listens or a client connects
    /// (instead of the document's servers).
    #[serde(default)]
    pub tcp: Option<Map<String, Value>>,
    /// Options of the generated `tls` binding (`keys`, `sni`, `alpn`, `trust`), for `https`
    /// servers; the material comes from the binding's `vault`.
    #[serde(default)]
    pub tls: Option<Map<String, Value>>,
    /// Options of the generated `http` server.
    #[serde(default)]
    pub http: Option<HttpOptions>,
    /// MQTT options (Zilla's MQTT composites): not supported here.
    #[serde(default)]
    pub mqtt: Option<Value>,
    /// Kafka options (Zilla's Kafka composites): not supported here.
    #[serde(default)]
    pub kafka: Option<Value>,
    /// MQTT to Kafka mapping options: not supported here.
    #[serde(default, rename = "mqtt-kafka")]
    pub mqtt_kafka: Option<Value>,
}

/// `options.http`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    /// The generated http server's `authorization` (one guard and where its credentials are),
    /// as an `http` server writes it.
    #[serde(default)]
    pub authorization: Option<Map<String, Value>>,
}

/// One AsyncAPI document and where it is served or reached.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecConfig {
    /// The document: a catalog name and its subject (exactly one).
    pub catalog: IndexMap<String, CatalogSubject>,
    /// Which of the document's servers to use, or where: URL strings
    /// (`http://localhost:7114`) or objects (`url`, or `host` and `pathname`). A server listens
    /// on their ports; a client connects to the first. Default: the document's servers.
    #[serde(default)]
    pub servers: Option<Vec<ServerConfig>>,
    /// One server URL (`http://localhost:7114`), as Zilla's latest examples write it.
    #[serde(default)]
    pub server: Option<String>,
    /// The document's security schemes mapped to guards (`bearerAuth: authn_jwt`): credentials
    /// are taken as the scheme says, and operations that require the scheme are guarded.
    #[serde(default)]
    pub security: Option<IndexMap<String, String>>,
    /// MQTT session store: not used by SSE.
    #[serde(default)]
    pub store: Option<String>,
}

/// Where the document is in a catalog.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogSubject {
    /// The subject.
    pub subject: String,
    /// The version (default `latest`).
    #[serde(default)]
    pub version: Option<String>,
}

/// One entry of `servers`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ServerConfig {
    /// A URL: `http://localhost:7114`, `https://0.0.0.0:7143`.
    Url(String),
    /// Zilla's documented object form.
    Object(ServerObject),
}

/// `servers` as an object.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerObject {
    /// `host:port` (AsyncAPI 2.x form), matched against the document's server `url`.
    #[serde(default)]
    pub url: Option<String>,
    /// `host:port` (AsyncAPI 3.x form), matched against the document's server `host`.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix (AsyncAPI 3.x).
    #[serde(default)]
    pub pathname: Option<String>,
}

/// One `when` condition of a route: which operations of which document it takes.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsyncapiCondition {
    /// The document's label (documented form).
    #[serde(default, rename = "api-id")]
    pub api_id: Option<String>,
    /// The operation key (documented form).
    #[serde(default, rename = "operation-id")]
    pub operation_id: Option<String>,
    /// The document's label (current form).
    #[serde(default)]
    pub spec: Option<String>,
    /// The operation key, `*` wildcards allowed (current form).
    #[serde(default)]
    pub operation: Option<String>,
    /// An operation tag the operation must have.
    #[serde(default)]
    pub tag: Option<String>,
}

impl AsyncapiCondition {
    /// True if the operation `operation` (with `tags`) of document `spec` matches.
    pub fn matches(&self, spec: &str, operation: &str, tags: &[String]) -> bool {
        self.api_id.as_deref().is_none_or(|s| s == spec)
            && self.spec.as_deref().is_none_or(|s| s == spec)
            && self.operation_id.as_deref().is_none_or(|o| o == operation)
            && self
                .operation
                .as_deref()
                .is_none_or(|o| zilla_engine::glob_match(o, operation))
            && self
                .tag
                .as_deref()
                .is_none_or(|t| tags.iter().any(|x| x == t))
    }
}

/// A route's `with` (the proxy kind's mapping onto another document's operation).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsyncapiWith {
    /// The target document's label (documented form).
    #[serde(default, rename = "api-id")]
    pub api_id: Option<String>,
    /// The target operation (documented form).
    #[serde(default, rename = "operation-id")]
    pub operation_id: Option<String>,
    /// The target document's label (current form).
    #[serde(default)]
    pub spec: Option<String>,
    /// The target operation (current form).
    #[serde(default)]
    pub operation: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_parse() {
        let documented: AsyncapiOptions = serde_yaml::from_str(
            "specs:
  my-asyncapi-spec:
    servers: [ { host: 'localhost:7114', pathname: /v1 }, { url: 'localhost:{port}' } ]
    catalog: { host_filesystem: { subject: eventstore, version: latest } }
tcp: { host: localhost, port: 8080 }
http:
  authorization:
    authn_jwt: { credentials: { headers: { authorization: 'Bearer {credentials}' } } }
",
        )
        .unwrap();
        let spec = &documented.specs["my-asyncapi-spec"];
        assert!(matches!(
            &spec.servers.as_ref().unwrap()[0],
            ServerConfig::Object(ServerObject { host: Some(h), .. }) if h == "localhost:7114"
        ));
        assert_eq!(documented.tcp.unwrap()["port"], 8080);
        let current: AsyncapiOptions = serde_yaml::from_str(
            "specs:
  my-spec:
    servers: [ http://localhost:7114 ]
    security: { bearerAuth: authn_jwt }
    catalog: { host_filesystem: { subject: eventstore } }
",
        )
        .unwrap();
        assert!(matches!(
            &current.specs["my-spec"].servers.as_ref().unwrap()[0],
            ServerConfig::Url(u) if u == "http://localhost:7114"
        ));
        assert!(serde_yaml::from_str::<AsyncapiOptions>("specs: {}\nport: 1\n").is_err());
    }

    #[test]
    fn conditions_match_both_forms() {
        let c = |y: &str| serde_yaml::from_str::<AsyncapiCondition>(y).unwrap();
        let tags = vec!["public".to_string()];
        assert!(c("api-id: a\noperation-id: getEvents").matches("a", "getEvents", &[]));
        assert!(!c("api-id: a\noperation-id: getEvents").matches("b", "getEvents", &[]));
        assert!(c("spec: a\noperation: get*").matches("a", "getEvents", &[]));
        assert!(!c("operation: put*").matches("a", "getEvents", &[]));
        assert!(c("tag: public").matches("a", "x", &tags));
        assert!(!c("tag: admin").matches("a", "x", &tags));
        assert!(c("{}").matches("a", "x", &[]));
    }
}
