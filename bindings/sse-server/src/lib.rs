//! The `sse` server binding: accepts `GET` requests (http streams) for event streams, routes them
//! on their path, and writes the events of the routed sse stream as `text/event-stream`.
//!
//! ```yaml
//! north_sse_server:
//!   type: sse
//!   kind: server
//!   routes:
//!     - when: [ { path: /events* } ]
//!       exit: south_sse_client
//! ```
//!
//! Differences from Zilla, on purpose: `options.retry`, when set, is written as the first bytes
//! of the stream; idle streams get a keep-alive comment every 15 s by default
//! (`zilla.binding.sse.maximum.idle.time`, seconds, 0 disables); CR and CRLF inside event data
//! also split `data:` lines.

mod feed;
mod request;
mod stream;
mod validate;

use std::sync::Arc;
use std::time::Duration;

use proto_http::{Http, HttpReset};
use proto_sse::config::{SseCondition, SseOptions};
use proto_sse::metrics::SseMetrics;
use proto_sse::Sse;
use zilla_engine::{
    handler_binding, Binding, BindingContext, BindingDescriptor, BindingFactory, BindingId,
    ConfigErrors, Graph, Handler, Kind, Nothing, Protocols, Reset, Routes, Stream, Values,
};

/// The `sse` binding type, server kind.
#[derive(Debug)]
pub struct SseServerFactory;

zilla_engine::inventory::submit! { BindingDescriptor::new::<SseServerFactory>() }

impl BindingFactory for SseServerFactory {
    const TYPE: &'static str = "sse";
    const KINDS: &'static [Kind] = &[Kind::Server];
    type Options = SseOptions;
    type When = SseCondition;
    type With = Nothing;

    fn protocols(_: Kind) -> Protocols {
        Protocols::new::<Http, Sse>()
    }

    fn build(cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        cx.require_exit()?;
        proto_sse::config::compile_routes(&cx)?;
        let options = cx.options.clone().unwrap_or_default();
        let rules = validate::Rules::build(&cx, options.requests.as_deref().unwrap_or_default())?;
        let p = &cx.properties;
        let settings = stream::Settings {
            retry: options.retry,
            initial_comment: p.bool("zilla.binding.sse.initial.comment.enabled", false),
            idle: match p.usize("zilla.binding.sse.maximum.idle.time", 15) {
                0 => None,
                secs => Some(Duration::from_secs(secs as u64)),
            },
            challenge_event: p
                .get("zilla.binding.sse.challenge.event.type")
                .unwrap_or("challenge")
                .to_string(),
            slow_client: stream::SlowClient::from_property(p.get("zilla.binding.sse.slow.client")),
            slow_client_timeout: p.duration(
                "zilla.binding.sse.slow.client.timeout",
                Duration::from_secs(30),
            ),
            rules,
            metrics: SseMetrics::new(&cx.metrics),
        };
        if let Some(share) = &options.share {
            let wrong = feed::Share::check(share);
            if !wrong.is_empty() {
                return Err(wrong
                    .into_iter()
                    .map(|(key, message)| cx.error(&format!("options.share.{key}"), message))
                    .collect::<Vec<_>>()
                    .into());
            }
        }
        let feeds = options.share.as_ref().map(|o| {
            feed::Feeds::new(cx.id, cx.qualified_name(), feed::Share::new(o), &cx.metrics)
        });
        Ok(handler_binding::<Http, _>(Arc::new(Inner {
            id: cx.id,
            name: cx.qualified_name(),
            routes: cx.routes,
            settings: Arc::new(settings),
            feeds,
        })))
    }
}

struct Inner {
    id: BindingId,
    name: String,
    routes: Routes<SseCondition, Nothing>,
    settings: Arc<stream::Settings>,
    /// Shared feeds, when `options.share` asks for them.
    feeds: Option<Arc<feed::Feeds>>,
}

impl Handler<Http> for Inner {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Http>) -> Result<(), Reset<Http>> {
        let request = match request::parse(&stream.begin.headers) {
            Ok(r) => r,
            Err(request::Rejected::Method) => return Err(HttpReset::refuse(405)),
            Err(request::Rejected::LastEventId) => return Err(HttpReset::refuse(400)),
        };
        let path = std::str::from_utf8(&request.begin.path).unwrap_or("");
        let session = stream.session.as_deref();
        let values = Values {
            method: stream.begin.headers.get_str(":method"),
            path: Some(path),
            ..Values::default()
        };
        let Some(exit) = self
            .routes
            .resolve_with(graph, session, values, |c| c.captures(path))
            .and_then(|(r, _)| r.exit)
        else {
            tracing::debug!(binding = %self.name, path, "no route");
            if session.is_some() && self.routes.forbidden(|c| c.matches(path)) {
                // Beyond Zilla (404): the path has a route, the session lacks its roles.
                return Err(HttpReset::refuse(403));
            }
            return Err(Reset(None));
        };
        let timestamps = request.begin.timestamps;
        let rule = self.settings.rules.for_path(path);
        let mut begin = request.begin;
        // A shared feed (beyond Zilla), unless the client asks for timestamps (each client's
        // own encoding) or resumes from an id the feed no longer has.
        let shared = match &self.feeds {
            Some(feeds) if !timestamps => feeds.attach(
                graph,
                exit,
                &begin,
                &stream.begin.headers,
                stream.session.clone(),
                rule.clone(),
                &self.settings,
            ),
            _ => None,
        };
        let (app_tx, app_rx, shared) = match shared {
            Some((tx, rx)) => (tx, rx, true),
            None => {
                // Events that are not stamped can come as framed upstream, several at once:
                // the stream checks each one's data and writes them without encoding again.
                begin.batch = !timestamps;
                let (tx, rx) = graph
                    .open_from::<Sse>(self.id, exit, begin, stream.session.clone())
                    .map_err(Reset::relay)?;
                (tx, rx, false)
            }
        };
        let settings = self.settings.clone();
        let graph2 = graph.clone();
        let name = self.name.clone();
        graph.spawn(async move {
            let options = stream::StreamOptions {
                timestamps,
                shared,
                // A shared feed checked its events once.
                rule: if shared { None } else { rule },
            };
            stream::run(stream, app_tx, app_rx, settings, options, &graph2, &name).await;
        });
        Ok(())
    }
}
