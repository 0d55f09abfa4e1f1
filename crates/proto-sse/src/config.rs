//! Options and route conditions of the `sse` binding, shared by its server and client kinds.

use schemars::JsonSchema;
use serde::Deserialize;

/// Options of the `sse` binding.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseOptions {
    /// Reconnect delay in milliseconds. When set, the server writes `retry:<ms>` as the first
    /// bytes of every event stream (Zilla parses it but never writes it); when absent, nothing.
    #[serde(default)]
    pub retry: Option<u64>,
    /// Event validation: each entry names the streams it applies to (`path`) and the model
    /// every event's data must satisfy (`content`); an event that fails is dropped and the
    /// stream goes on.
    #[serde(default)]
    pub requests: Option<Vec<SseRequest>>,
    /// Beyond Zilla (sse server): clients of the same feed share one upstream stream, and a
    /// client reconnecting with a `Last-Event-ID` still in the feed's replay window gets what it
    /// missed from memory.
    #[serde(default)]
    pub share: Option<ShareOptions>,
}

/// `options.share` of an sse server: which requests are the same feed, how much of it is kept
/// for replay, how far a client may fall behind, how long a feed outlives its last client.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareOptions {
    /// The guard identity of the request is part of the feed (per-user or per-tenant feeds
    /// never mix; the upstream is opened with the first client's session). Default `false`:
    /// the feed is the upstream authority and path, opened without a session.
    #[serde(default)]
    pub identity: bool,
    /// Request headers whose values are part of the feed (e.g. `x-tenant`).
    #[serde(default)]
    pub headers: Vec<String>,
    /// What a feed keeps for clients that reconnect.
    #[serde(default)]
    pub replay: Option<ReplayOptions>,
    /// Events a client may fall behind the feed before it is dropped (it reconnects into the
    /// replay window). Default 1024.
    #[serde(default)]
    pub queue: Option<usize>,
    /// Seconds a feed stays open after its last client left (default 5).
    #[serde(default)]
    pub linger: Option<f64>,
}

/// The replay window of a feed: the last events, as many as all of these allow.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayOptions {
    /// At most this many events (default 1000).
    #[serde(default)]
    pub events: Option<usize>,
    /// At most this many bytes of encoded events (default 1 MiB).
    #[serde(default)]
    pub bytes: Option<usize>,
    /// Events at most this many seconds old (default: no age limit).
    #[serde(default)]
    pub age: Option<f64>,
}

/// One `requests` entry: which streams, and the model their event data must satisfy.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseRequest {
    /// The streams it applies to: as Zilla, a regular expression searched anywhere in the
    /// request path (`^/events` for paths starting with `/events`).
    pub path: String,
    /// The model event data must satisfy (`json`, `string`, or `{model: ..., catalog: ...}`).
    pub content: zilla_engine::ModelConfig,
}

/// One `when` condition of an sse route.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseCondition {
    /// Path pattern, without query string; `*` matches any run of characters, `/` included,
    /// and `{name}` captures one or more characters for `${params.name}` in the route's
    /// `guarded` roles (e.g. `/tenants/{tenant}/events` with `tenant:${params.tenant}`).
    #[serde(default)]
    pub path: Option<String>,
    /// The compiled pattern, filled once when the binding is built.
    #[serde(skip)]
    #[schemars(skip)]
    compiled: std::sync::OnceLock<zilla_engine::Pattern>,
}

impl SseCondition {
    /// Compiles the path pattern; says what is wrong with it if it cannot.
    pub fn compile(&self) -> Result<(), String> {
        if let Some(p) = &self.path {
            let _ = self.compiled.set(zilla_engine::Pattern::compile(p, false)?);
        }
        Ok(())
    }

    /// True if the condition matches `path`.
    pub fn matches(&self, path: &str) -> bool {
        self.captures(path).is_some()
    }

    /// The `{name}` captures of `path`, if the condition matches it.
    pub fn captures<'p>(&self, path: &'p str) -> Option<Vec<(String, &'p str)>> {
        match (&self.path, self.compiled.get()) {
            (None, _) => Some(Vec::new()),
            (Some(_), Some(p)) => p.captures(path),
            (Some(p), None) => zilla_engine::glob_match(p, path).then(Vec::new),
        }
    }
}

/// Compiles the path patterns of every route condition of an sse binding; a bad pattern is an
/// error at its key.
pub fn compile_routes<F>(
    cx: &zilla_engine::BindingContext<F>,
) -> Result<(), zilla_engine::ConfigErrors>
where
    F: zilla_engine::BindingFactory<When = SseCondition>,
{
    let mut errors = zilla_engine::ConfigErrors::new();
    for (i, route) in cx.routes.iter().enumerate() {
        for (j, when) in route.when.iter().enumerate() {
            if let Err(e) = when.compile() {
                errors.push(cx.error(&format!("routes[{i}].when[{j}].path"), e));
            }
        }
    }
    errors.or(())
}
