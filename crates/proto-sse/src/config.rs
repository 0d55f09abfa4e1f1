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
