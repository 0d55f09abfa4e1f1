//! Event validation (`options.requests`): which streams are checked, against which model, and
//! what happens to an event that fails (dropped, counted, reported; the stream goes on).

use std::sync::Arc;

use bytes::Bytes;
use proto_sse::config::SseRequest;
use proto_sse::metrics::{Dropped, SseMetrics};
use regex::Regex;
use zilla_engine::{BindingContext, BindingFactory, ConfigErrors, Events, Model, Why};

/// One `requests` entry, built.
pub(crate) struct Rule {
    /// As Zilla: the path is a regular expression searched anywhere in the request path.
    path: Regex,
    model: Arc<dyn Model>,
    /// The model and its schema, for events.
    describe: String,
}

/// The `requests` of a binding, and where rejected events are counted.
pub(crate) struct Rules {
    rules: Vec<Arc<Rule>>,
    metrics: SseMetrics,
    events: Events,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl Rules {
    /// Builds every entry; a bad path or model is a located config error.
    pub(crate) fn build<F: BindingFactory>(
        cx: &BindingContext<F>,
        requests: &[SseRequest],
    ) -> Result<Rules, ConfigErrors> {
        let mut errors = ConfigErrors::new();
        let mut rules = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let path = Regex::new(&r.path).map_err(|e| {
                cx.error(
                    &format!("options.requests[{i}].path"),
                    format!("not a regular expression: {e}"),
                )
            });
            let model = cx.model(&r.content, &format!("options.requests[{i}].content"));
            if let (Some(path), Some(model)) = (errors.take(path), errors.take(model)) {
                rules.push(Arc::new(Rule {
                    path,
                    model,
                    describe: r.content.describe(),
                }));
            }
        }
        errors.or(Rules {
            rules,
            metrics: SseMetrics::new(&cx.metrics),
            events: cx.events().clone(),
        })
    }

    /// The rule of the first entry whose path is found in `path`, if any.
    pub(crate) fn for_path(&self, path: &str) -> Option<Arc<Rule>> {
        self.rules.iter().find(|r| r.path.is_match(path)).cloned()
    }

    /// Checks one event's data: what to send (the same bytes, or the model's conversion), or
    /// `None` when the event is dropped (it has been counted and reported).
    pub(crate) fn check(
        &self,
        rule: &Rule,
        payload: Bytes,
        binding: &str,
        trace_id: u64,
    ) -> Option<Bytes> {
        match rule.model.convert(payload) {
            Ok(bytes) => Some(bytes),
            Err(invalid) => {
                let why = match invalid.why {
                    Why::NoSchema => Dropped::NoSchema,
                    _ => Dropped::Invalid,
                };
                self.metrics.dropped(why, 1);
                self.events.emit(
                    binding,
                    invalid.event,
                    trace_id,
                    format!("{} (event dropped; {})", invalid.message, rule.describe),
                );
                None
            }
        }
    }
}
