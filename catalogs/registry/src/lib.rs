//! Schema registry catalogs: `schema-registry` and `karapace-schema-registry` (alias
//! `karapace`), which speak Confluent's REST API, and `apicurio-registry` (alias `apicurio`),
//! which speaks Apicurio's v2 API. Every call goes through `reqwest` (async, rustls).
//!
//! ```yaml
//! catalogs:
//!   sr:
//!     type: schema-registry
//!     vault: client_vault           # TLS material, for https
//!     options:
//!       url: https://registry.example.com:8081
//!       max-age: 300                # seconds an id is cached, default 300
//!       tls: { trust: [serverca], keys: [client1] }
//!       credentials:
//!         headers:
//!           authorization: Basic dXNlcjpzZWNyZXQ=
//! ```
//!
//! Nothing on a stream's path waits for the registry: lookups answer from memory and fetch in
//! the background (see [`cache`]); until a subject's first successful fetch, a model using it
//! rejects (and counts) every payload. Each request times out after
//! `zilla.catalog.registry.timeout` (default 5 s).

mod api;
mod cache;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use indexmap::IndexMap;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::Deserialize;
use zilla_engine::{
    Catalog, CatalogDescriptor, ConfigError, ConfigErrors, PluginContext, PluginFactory,
};

use api::Api;
use cache::{EventNames, Registry, Settings};

/// `options` of a `schema-registry` or `karapace-schema-registry` catalog.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryOptions {
    /// The registry's base URL (`http://` or `https://`).
    pub url: String,
    /// The schema context (parsed, as Zilla; not used in requests).
    #[serde(default = "default_context")]
    pub context: String,
    /// Seconds a subject's id is cached before it is fetched again.
    #[serde(rename = "max-age", default = "default_max_age")]
    pub max_age: u64,
    /// TLS material from the catalog's vault (https only).
    #[serde(default)]
    pub tls: Option<RegistryTls>,
    /// Sent with every request.
    #[serde(default)]
    pub credentials: Option<RegistryCredentials>,
}

/// `options` of an `apicurio-registry` catalog.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApicurioOptions {
    /// The registry's base URL (`http://` or `https://`).
    pub url: String,
    /// The artifact group.
    #[serde(rename = "group-id", default = "default_context")]
    pub group_id: String,
    /// Which id names a schema.
    #[serde(rename = "use-id", default)]
    pub use_id: UseId,
    /// The wire prefix's id width.
    #[serde(rename = "id-encoding", default)]
    pub id_encoding: IdEncoding,
    /// Seconds an artifact's id is cached before it is fetched again.
    #[serde(rename = "max-age", default = "default_max_age")]
    pub max_age: u64,
    /// TLS material from the catalog's vault (https only; beyond Zilla 0.9).
    #[serde(default)]
    pub tls: Option<RegistryTls>,
    /// Sent with every request (beyond Zilla 0.9).
    #[serde(default)]
    pub credentials: Option<RegistryCredentials>,
}

/// Apicurio `use-id`.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
pub enum UseId {
    /// The artifact version's global id.
    #[default]
    #[serde(rename = "globalId")]
    GlobalId,
    /// The content id.
    #[serde(rename = "contentId")]
    ContentId,
}

/// Apicurio `id-encoding`.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdEncoding {
    /// 8-byte ids.
    #[default]
    Default,
    /// 4-byte ids.
    Legacy,
}

/// `options.tls` of a registry catalog: aliases in the catalog's vault.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryTls {
    /// Client key aliases (mutual TLS); the first is presented.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Trusted certificate aliases.
    #[serde(default)]
    pub trust: Vec<String>,
    /// Also trust the well-known CAs (default: true when `trust` is absent).
    #[serde(default)]
    pub trustcacerts: Option<bool>,
}

/// `options.credentials` of a registry catalog.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    /// Headers sent verbatim on every request (`authorization: Basic ...`).
    #[serde(default)]
    pub headers: IndexMap<String, String>,
}

fn default_context() -> String {
    "default".to_string()
}

fn default_max_age() -> u64 {
    300
}

zilla_engine::inventory::submit! { zilla_engine::MetricDescriptor::counter("catalog.registry.requests", zilla_engine::MetricUnit::Count, "Requests the catalog sent to its schema registry.") }
zilla_engine::inventory::submit! { zilla_engine::MetricDescriptor::counter("catalog.registry.failures", zilla_engine::MetricUnit::Count, "Requests to the schema registry that failed or were refused.") }

macro_rules! events {
    ($prefix:literal) => {
        EventNames {
            unretrievable_subject: concat!($prefix, "_UNRETRIEVABLE_SCHEMA_SUBJECT_VERSION"),
            stale: concat!($prefix, "_STALE_SCHEMA"),
            retrievable_subject: concat!($prefix, "_RETRIEVABLE_SCHEMA_SUBJECT_VERSION"),
            unretrievable_id: concat!($prefix, "_UNRETRIEVABLE_SCHEMA_ID"),
            retrievable_id: concat!($prefix, "_RETRIEVABLE_SCHEMA_ID"),
        }
    };
}

static SCHEMA_REGISTRY_EVENTS: EventNames = events!("CATALOG_SCHEMA_REGISTRY");
static KARAPACE_EVENTS: EventNames = events!("CATALOG_KARAPACE_SCHEMA_REGISTRY");
static APICURIO_EVENTS: EventNames = events!("CATALOG_APICURIO_REGISTRY");

macro_rules! confluent_type {
    ($(#[$doc:meta])* $factory:ident, $type:literal, $events:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $factory;

        zilla_engine::inventory::submit! { CatalogDescriptor::new::<$factory>() }

        impl PluginFactory<dyn Catalog> for $factory {
            const TYPE: &'static str = $type;
            type Options = SchemaRegistryOptions;

            fn build(
                cx: &PluginContext,
                options: Option<SchemaRegistryOptions>,
            ) -> Result<Arc<dyn Catalog>, ConfigErrors> {
                let o = options.ok_or_else(|| cx.error("", "a registry catalog needs `options.url`"))?;
                build(cx, Api::Confluent, &o.url, o.max_age, o.tls.as_ref(), o.credentials.as_ref(), &$events)
            }
        }
    };
}

macro_rules! apicurio_type {
    ($(#[$doc:meta])* $factory:ident, $type:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $factory;

        zilla_engine::inventory::submit! { CatalogDescriptor::new::<$factory>() }

        impl PluginFactory<dyn Catalog> for $factory {
            const TYPE: &'static str = $type;
            type Options = ApicurioOptions;

            fn build(
                cx: &PluginContext,
                options: Option<ApicurioOptions>,
            ) -> Result<Arc<dyn Catalog>, ConfigErrors> {
                let o = options.ok_or_else(|| cx.error("", "a registry catalog needs `options.url`"))?;
                let api = Api::Apicurio {
                    group: o.group_id.clone(),
                    content_id: matches!(o.use_id, UseId::ContentId),
                    legacy: matches!(o.id_encoding, IdEncoding::Legacy),
                };
                build(cx, api, &o.url, o.max_age, o.tls.as_ref(), o.credentials.as_ref(), &APICURIO_EVENTS)
            }
        }
    };
}

confluent_type!(
    /// The `schema-registry` catalog type (Confluent's REST API).
    SchemaRegistryFactory,
    "schema-registry",
    SCHEMA_REGISTRY_EVENTS
);
confluent_type!(
    /// The `karapace-schema-registry` catalog type (Confluent's REST API, Karapace's events).
    KarapaceFactory,
    "karapace-schema-registry",
    KARAPACE_EVENTS
);
confluent_type!(
    /// `karapace`, Zilla's alias of `karapace-schema-registry`.
    KarapaceAliasFactory,
    "karapace",
    KARAPACE_EVENTS
);
apicurio_type!(
    /// The `apicurio-registry` catalog type (Apicurio's v2 REST API).
    ApicurioFactory,
    "apicurio-registry"
);
apicurio_type!(
    /// `apicurio`, Zilla's alias of `apicurio-registry`.
    ApicurioAliasFactory,
    "apicurio"
);

fn build(
    cx: &PluginContext,
    api: Api,
    url: &str,
    max_age: u64,
    tls: Option<&RegistryTls>,
    credentials: Option<&RegistryCredentials>,
    names: &'static EventNames,
) -> Result<Arc<dyn Catalog>, ConfigErrors> {
    let mut errors = ConfigErrors::new();
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(_) => {
            errors.push(cx.error(
                "options.url",
                format!("'{url}' must be an http:// or https:// URL with a host"),
            ));
            None
        }
        Err(e) => {
            errors.push(cx.error("options.url", format!("'{url}' is not a URL: {e}")));
            None
        }
    };
    let timeout = cx
        .properties
        .duration("zilla.catalog.registry.timeout", Duration::from_secs(5));
    let mut client = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("zilla/", env!("CARGO_PKG_VERSION")));
    if let (Some(url), Some(tls)) = (&parsed, tls) {
        if url.scheme() != "https" {
            errors.push(cx.error("options.tls", "`tls` needs an https:// url"));
        } else {
            match tls_material(cx, tls, client) {
                Ok(c) => client = c,
                Err(e) => {
                    errors.push(e);
                    client = reqwest::Client::builder();
                }
            }
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in credentials.map(|c| &c.headers).into_iter().flatten() {
        let path = format!("options.credentials.headers.{name}");
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(mut v)) => {
                v.set_sensitive(true);
                headers.insert(n, v);
            }
            (Err(_), _) => errors.push(cx.error(&path, format!("'{name}' is not a header name"))),
            (_, Err(_)) => errors.push(cx.error(&path, "not a valid header value")),
        }
    }
    let client = match client.build() {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(cx.error("options", format!("cannot set up the HTTP client: {e}")));
            None
        }
    };
    let source = cx.qualified_name();
    let counter = |metric: &'static str| cx.metrics.counter(metric, &[]);
    let (Some(url), Some(client)) = (parsed, client) else {
        return Err(errors);
    };
    let settings = Settings {
        api,
        url,
        client,
        headers,
        max_age: Duration::from_secs(max_age),
        timeout,
        events: cx.events.clone(),
        names,
        requests: counter("catalog.registry.requests"),
        failures: counter("catalog.registry.failures"),
        source,
    };
    errors.or(Arc::new(Registry::new(settings)) as Arc<dyn Catalog>)
}

/// Adds the vault's trust and client key to the client.
fn tls_material(
    cx: &PluginContext,
    tls: &RegistryTls,
    mut client: reqwest::ClientBuilder,
) -> Result<reqwest::ClientBuilder, ConfigError> {
    let needs_vault = !tls.keys.is_empty() || !tls.trust.is_empty();
    let vault = match (&cx.vault, needs_vault) {
        (Some(v), _) => Some(v),
        (None, true) => {
            return Err(cx.error(
                "vault",
                "`options.tls` names keys or trust: the catalog needs a `vault` holding them",
            ))
        }
        (None, false) => None,
    };
    for alias in &tls.trust {
        let der = vault.and_then(|v| v.trust(alias)).ok_or_else(|| {
            cx.error(
                "options.tls.trust",
                format!("the vault has no trusted certificate '{alias}'"),
            )
        })?;
        let cert = reqwest::Certificate::from_der(&der).map_err(|e| {
            cx.error(
                "options.tls.trust",
                format!("'{alias}' is not a certificate: {e}"),
            )
        })?;
        client = client.add_root_certificate(cert);
    }
    let trustcacerts = tls.trustcacerts.unwrap_or(tls.trust.is_empty());
    client = client.tls_built_in_root_certs(trustcacerts);
    if let Some(alias) = tls.keys.first() {
        let entry = vault.and_then(|v| v.key(alias)).ok_or_else(|| {
            cx.error(
                "options.tls.keys",
                format!("the vault has no key '{alias}'"),
            )
        })?;
        let mut pem = pem_block("PRIVATE KEY", &entry.key);
        for cert in &entry.chain {
            pem.push_str(&pem_block("CERTIFICATE", cert));
        }
        let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| {
            cx.error(
                "options.tls.keys",
                format!("'{alias}' cannot be used as a client identity: {e}"),
            )
        })?;
        client = client.identity(identity);
    }
    Ok(client)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
