//! Options, route conditions and rewrites of the http bindings, as zilla.yaml spells them.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

/// Options of the `http` binding (server and client).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpOptions {
    /// Protocol versions allowed: `http/1.1`, `h2` (default both).
    #[serde(default)]
    pub versions: Option<Vec<HttpVersion>>,
    /// CORS policy (server only).
    #[serde(default)]
    pub access_control: Option<AccessControl>,
    /// Guard name -> where its credentials are found (server) or injected (client). One entry.
    #[serde(default)]
    pub authorization: Option<IndexMap<String, Authorization>>,
    /// Request headers replaced or added before forwarding (pseudo-headers allowed).
    #[serde(default)]
    pub overrides: Option<IndexMap<String, String>>,
    /// Request validation (server): the first entry whose `path`, `method` and `content-type`
    /// match a request checks its headers, path and query parameters and body; a request that
    /// fails gets `400`.
    #[serde(default)]
    pub requests: Option<Vec<HttpRequest>>,
}

/// One `requests` entry: which requests, and the models their parts must satisfy.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpRequest {
    /// Path of the requests it applies to (without query); `{name}` matches one path segment
    /// and names it for `params.path`.
    pub path: String,
    /// Method of the requests it applies to (any if absent).
    #[serde(default)]
    pub method: Option<HttpMethod>,
    /// `content-type` values it applies to (any if absent).
    #[serde(default)]
    pub content_type: Option<Vec<String>>,
    /// Header name -> the model its value must satisfy.
    #[serde(default)]
    pub headers: Option<IndexMap<String, zilla_engine::ModelConfig>>,
    /// Path and query parameters -> models.
    #[serde(default)]
    pub params: Option<HttpParams>,
    /// The model the request body must satisfy.
    #[serde(default)]
    pub content: Option<zilla_engine::ModelConfig>,
    /// Response validation (not supported yet: refused at load).
    #[serde(default)]
    pub responses: Option<Vec<serde_json::Value>>,
}

/// `params` of a `requests` entry.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpParams {
    /// `{name}` captures of the path -> models.
    #[serde(default)]
    pub path: Option<IndexMap<String, zilla_engine::ModelConfig>>,
    /// Query parameters -> models (a parameter that is absent is not checked).
    #[serde(default)]
    pub query: Option<IndexMap<String, zilla_engine::ModelConfig>>,
}

/// A request method a `requests` entry can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum HttpMethod {
    /// GET.
    GET,
    /// PUT.
    PUT,
    /// POST.
    POST,
    /// DELETE.
    DELETE,
    /// OPTIONS.
    OPTIONS,
    /// HEAD.
    HEAD,
    /// PATCH.
    PATCH,
    /// TRACE.
    TRACE,
}

impl HttpMethod {
    /// The method as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::GET => "GET",
            HttpMethod::PUT => "PUT",
            HttpMethod::POST => "POST",
            HttpMethod::DELETE => "DELETE",
            HttpMethod::OPTIONS => "OPTIONS",
            HttpMethod::HEAD => "HEAD",
            HttpMethod::PATCH => "PATCH",
            HttpMethod::TRACE => "TRACE",
        }
    }
}

/// An HTTP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum HttpVersion {
    /// HTTP/1.1.
    #[serde(rename = "http/1.1")]
    Http11,
    /// HTTP/2.
    #[serde(rename = "h2")]
    H2,
}

/// `access-control`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccessControl {
    /// `same-origin` (default) or `cross-origin`.
    #[serde(default)]
    pub policy: Policy,
    /// What a cross-origin policy allows (absent: any origin, method and header, no credentials).
    #[serde(default)]
    pub allow: Option<Allow>,
    /// Preflight cache time, in seconds.
    #[serde(default)]
    pub max_age: Option<u64>,
    /// Response headers exposed to scripts.
    #[serde(default)]
    pub expose: Option<Expose>,
}

/// A CORS policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Requests with a foreign `Origin` are refused with 403.
    #[default]
    SameOrigin,
    /// Foreign origins are allowed as `allow` says.
    CrossOrigin,
}

/// `access-control.allow`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Allowed `Origin` values (`scheme://host[:port]`); absent means any.
    #[serde(default)]
    pub origins: Option<Vec<String>>,
    /// Allowed methods; absent means any.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Allowed request headers (case-insensitive); absent means any.
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    /// Send `access-control-allow-credentials: true`.
    #[serde(default)]
    pub credentials: Option<bool>,
}

/// `access-control.expose`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expose {
    /// Response headers listed in `access-control-expose-headers`.
    #[serde(default)]
    pub headers: Option<Vec<String>>,
}

/// `authorization.<guard>`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// Where the credentials are.
    pub credentials: Credentials,
}

/// `authorization.<guard>.credentials`: patterns containing `{credentials}`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Header name -> pattern, e.g. `authorization: Bearer {credentials}`.
    #[serde(default)]
    pub headers: Option<IndexMap<String, String>>,
    /// Query parameter -> pattern, e.g. `access_token: "{credentials}"`.
    #[serde(default)]
    pub query: Option<IndexMap<String, String>>,
    /// Cookie name -> pattern.
    #[serde(default)]
    pub cookies: Option<IndexMap<String, String>>,
}

/// One `when` condition of an http route.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCondition {
    /// Header name (lower case, pseudo-headers such as `:path` included) -> pattern; all must
    /// match. `*` matches any run of characters, `{name}` captures one or more characters (their
    /// value is `${params.name}` in `with.headers.overrides`). A `:path` pattern that does not end
    /// with `*` also matches the path followed by a `?query`.
    #[serde(default)]
    pub headers: Option<IndexMap<String, String>>,
    /// The compiled patterns, filled once when the binding is built.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) compiled: std::sync::OnceLock<Vec<(String, zilla_engine::Pattern)>>,
}

/// A route's `with`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpWith {
    /// Header rewrites.
    #[serde(default)]
    pub headers: Option<HttpWithHeaders>,
}

/// `with.headers`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpWithHeaders {
    /// Header name -> value. Values may use `${params.name}` (a `{name}` capture of the
    /// route's `:path`) and `${guarded['<guard>'].identity}` or
    /// `${guarded['<guard>'].attributes.<name>}` (the request's session).
    #[serde(default)]
    pub overrides: Option<IndexMap<String, String>>,
    /// The compiled overrides, filled once when the binding is built.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) compiled: std::sync::OnceLock<crate::overrides::Overrides>,
}
