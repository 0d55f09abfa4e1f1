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
    /// Path pattern, without query string; `*` matches any run of characters, `/` included.
    #[serde(default)]
    pub path: Option<String>,
}

impl SseCondition {
    /// True if the condition matches `path`.
    pub fn matches(&self, path: &str) -> bool {
        self.path
            .as_deref()
            .is_none_or(|p| zilla_engine::glob_match(p, path))
    }
}
