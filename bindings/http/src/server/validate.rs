//! Request validation (`options.requests`): the head (headers, path and query parameters) is
//! checked before the request is opened upstream; the body is held back until it is complete,
//! checked, then sent on, or the upstream request is aborted and the client answered `400`.

use std::sync::Arc;

use bytes::BytesMut;
use proto_http::{Headers, Http, HttpReset};
use regex::Regex;
use zilla_engine::{
    direction, BindingContext, ConfigErrors, Counter, Data, Events, Frame, Graph, Invalid, Model,
    ModelConfig, Rx, Tx, Why,
};

use crate::config::HttpRequest;
use crate::HttpFactory;

/// Property: the largest request body held back for validation (`413` above it).
pub(crate) const MAX_CONTENT: &str = "zilla.binding.http.server.validation.maximum.content";

/// A model with the text that says where its schema comes from.
pub(crate) struct Checked {
    model: Arc<dyn Model>,
    describe: String,
}

/// One `requests` entry, built.
struct Rule {
    path: Regex,
    method: Option<&'static str>,
    content_types: Option<Vec<String>>,
    headers: Vec<(String, Checked)>,
    path_params: Vec<(String, Checked)>,
    query: Vec<(String, Checked)>,
    content: Option<Arc<Checked>>,
}

/// The built `requests` of a server, with its counters of refused requests by reason.
pub(crate) struct Requests {
    name: String,
    rules: Vec<Rule>,
    max_content: usize,
    counters: [Counter; 3],
    events: Events,
}

const REASONS: [Why; 3] = [Why::Malformed, Why::Violation, Why::NoSchema];

/// `/items/{id}` as an anchored expression capturing `id` (one path segment).
fn path_pattern(path: &str) -> Result<(Regex, Vec<String>), String> {
    let mut re = String::from("^");
    let mut names = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        re.push_str(&regex::escape(&rest[..open]));
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("'{path}': `{{` without `}}`"))?;
        let name = &rest[open + 1..open + close];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("'{path}': `{{{name}}}` is not a parameter name"));
        }
        re.push_str(&format!("(?P<{name}>[^/]+)"));
        names.push(name.to_string());
        rest = &rest[open + close + 1..];
    }
    re.push_str(&regex::escape(rest));
    re.push('$');
    Regex::new(&re)
        .map(|r| (r, names))
        .map_err(|e| format!("'{path}': {e}"))
}

impl Requests {
    /// Builds every entry; bad paths, unknown parameters and bad models are located errors.
    pub(crate) fn build(
        cx: &BindingContext<HttpFactory>,
        requests: &[HttpRequest],
    ) -> Result<Option<Arc<Requests>>, ConfigErrors> {
        if requests.is_empty() {
            return Ok(None);
        }
        let mut errors = ConfigErrors::new();
        let mut rules = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let at = |rel: &str| format!("options.requests[{i}].{rel}");
            let model = |errors: &mut ConfigErrors, m: &ModelConfig, rel: &str| {
                errors.take(cx.model(m, &at(rel))).map(|model| Checked {
                    model,
                    describe: m.describe(),
                })
            };
            if r.responses.is_some() {
                errors.push(cx.error(
                    &at("responses"),
                    "response validation is not supported yet: remove `responses` (requests are still validated)",
                ));
            }
            let Some((path, names)) =
                errors.take(path_pattern(&r.path).map_err(|e| cx.error(&at("path"), e)))
            else {
                continue;
            };
            let mut headers = Vec::new();
            for (name, m) in r.headers.iter().flatten() {
                if let Some(c) = model(&mut errors, m, &format!("headers.{name}")) {
                    headers.push((name.to_ascii_lowercase(), c));
                }
            }
            let params = r.params.clone().unwrap_or_default();
            let mut path_params = Vec::new();
            for (name, m) in params.path.iter().flatten() {
                if !names.contains(name) {
                    errors.push(cx.error(
                        &at(&format!("params.path.{name}")),
                        format!("'{}' has no `{{{name}}}`", r.path),
                    ));
                    continue;
                }
                if let Some(c) = model(&mut errors, m, &format!("params.path.{name}")) {
                    path_params.push((name.clone(), c));
                }
            }
            let mut query = Vec::new();
            for (name, m) in params.query.iter().flatten() {
                if let Some(c) = model(&mut errors, m, &format!("params.query.{name}")) {
                    query.push((name.clone(), c));
                }
            }
            let content = r
                .content
                .as_ref()
                .and_then(|m| model(&mut errors, m, "content"))
                .map(Arc::new);
            if headers.is_empty()
                && path_params.is_empty()
                && query.is_empty()
                && content.is_none()
                && r.responses.is_none()
            {
                errors.push(cx.error(
                    &format!("options.requests[{i}]"),
                    "a `requests` entry needs `headers`, `params` or `content` to check",
                ));
            }
            rules.push(Rule {
                path,
                method: r.method.map(|m| m.as_str()),
                content_types: r
                    .content_type
                    .as_ref()
                    .map(|v| v.iter().map(|c| c.to_ascii_lowercase()).collect()),
                headers,
                path_params,
                query,
                content,
            });
        }
        let counters =
            REASONS.map(|why| cx.counter("http.requests.invalid", &[("reason", why.as_str())]));
        errors.or(Some(Arc::new(Requests {
            name: cx.qualified_name(),
            rules,
            max_content: cx.properties.usize(MAX_CONTENT, 1 << 20),
            counters,
            events: cx.events().clone(),
        })))
    }

    fn refuse(&self, invalid: Invalid, what: &str, describe: &str) {
        let i = REASONS.iter().position(|w| *w == invalid.why).unwrap_or(1);
        self.counters[i].inc();
        self.events.emit(
            &self.name,
            invalid.event,
            0,
            format!(
                "{} (request refused with 400: {what}; {describe})",
                invalid.message
            ),
        );
    }

    /// Checks a request head. `Err(())`: answer `400` (counted and reported); `Ok(Some)`: the
    /// body must be checked with that model; `Ok(None)`: nothing more to check.
    pub(crate) fn check_head(&self, headers: &Headers) -> Result<Option<Arc<Checked>>, ()> {
        let target = headers.get_str(":path").unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let method = headers.get_str(":method").unwrap_or("GET");
        let media = headers.get_str("content-type").map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        let rule = self.rules.iter().find(|r| {
            r.method.is_none_or(|m| m == method)
                && r.content_types.as_ref().is_none_or(|types| {
                    media.as_ref().is_some_and(|m| types.iter().any(|t| t == m))
                })
                && r.path.is_match(path)
        });
        let Some(rule) = rule else { return Ok(None) };
        for (name, c) in &rule.headers {
            let value = headers.get(name).map_or(&b""[..], |v| v.as_ref());
            if let Err(e) = c.model.validate(value) {
                self.refuse(e, &format!("header {name}"), &c.describe);
                return Err(());
            }
        }
        if !rule.path_params.is_empty() {
            let captures = rule.path.captures(path).ok_or(())?;
            for (name, c) in &rule.path_params {
                let value = captures.name(name).map_or("", |m| m.as_str());
                let value = percent_decode(value);
                if let Err(e) = c.model.validate(&value) {
                    self.refuse(e, &format!("path parameter {name}"), &c.describe);
                    return Err(());
                }
            }
        }
        for (name, c) in &rule.query {
            let found = query
                .split('&')
                .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                .find(|(k, _)| percent_decode(k) == name.as_bytes());
            if let Some((_, value)) = found {
                if let Err(e) = c.model.validate(&percent_decode(value)) {
                    self.refuse(e, &format!("query parameter {name}"), &c.describe);
                    return Err(());
                }
            }
        }
        Ok(rule.content.clone())
    }

    /// Puts a body check between the server and the opened upstream request: returns the
    /// halves the server uses instead (`tx` for the body, `rx` for the response).
    pub(crate) fn guard_body(
        self: &Arc<Self>,
        graph: &Arc<Graph>,
        content: Arc<Checked>,
        upstream_tx: Tx<Http>,
        upstream_rx: Rx<Http>,
    ) -> (Tx<Http>, Rx<Http>) {
        let (tx, body_rx) = direction::<Http>(graph.window());
        let (reply_tx, rx) = direction::<Http>(graph.window());
        let me = self.clone();
        graph.spawn(async move {
            let mut reply_tx = reply_tx;
            if me
                .hold_body(&content, body_rx, upstream_tx, &mut reply_tx)
                .await
            {
                relay(upstream_rx, reply_tx).await;
            }
        });
        (tx, rx)
    }

    /// Collects the body, checks it, and sends it upstream (true) or refuses the request
    /// (false: the upstream request is aborted, the client answered `400` or `413`).
    async fn hold_body(
        &self,
        content: &Checked,
        mut from: Rx<Http>,
        mut upstream: Tx<Http>,
        reply: &mut Tx<Http>,
    ) -> bool {
        let mut body = BytesMut::new();
        let trailers = loop {
            let frame = tokio::select! {
                frame = from.recv() => frame,
                // The client went away: dropping `upstream` aborts the upstream request.
                _ = reply.reset() => return false,
                // Upstream refused the body: pass its answer on.
                _ = upstream.reset() => return true,
            };
            match frame {
                Some(Frame::Data(d)) => {
                    let Some(p) = d.payload else { continue };
                    if body.len() + p.len() > self.max_content {
                        self.events.emit(
                            &self.name,
                            "BINDING_HTTP_REQUEST_CONTENT_TOO_LARGE",
                            0,
                            format!(
                                "request refused with 413: the body is over {} bytes, the most held back for validation ({MAX_CONTENT})",
                                self.max_content
                            ),
                        );
                        upstream.abort(None);
                        reply_refusal(reply, 413);
                        return false;
                    }
                    body.extend_from_slice(&p);
                }
                Some(Frame::End(trailers)) => break trailers,
                Some(Frame::Abort(ext)) => {
                    upstream.abort(ext);
                    return false;
                }
                None => {
                    upstream.abort(None);
                    return false;
                }
                Some(Frame::Begin(_) | Frame::Flush) => {}
            }
        };
        let body = body.freeze();
        // Validated, never converted: the request head (with its length) has gone upstream.
        if !body.is_empty() {
            if let Err(e) = content.model.validate(&body) {
                self.refuse(e, "body", &content.describe);
                upstream.abort(None);
                reply_refusal(reply, 400);
                return false;
            }
        }
        if !body.is_empty() && upstream.send(Frame::Data(Data::bytes(body))).await.is_err() {
            return true;
        }
        upstream.end(trailers);
        true
    }
}

/// Answers the client with `status` through the server (the reply aborted before a response).
fn reply_refusal(reply: &mut Tx<Http>, status: u16) {
    let _ = reply.push(Frame::Abort(Some(HttpReset::status(status))));
}

/// Passes the upstream response on, frame by frame, and a reset back.
async fn relay(mut from: Rx<Http>, mut to: Tx<Http>) {
    loop {
        let frame = tokio::select! {
            frame = from.recv() => frame,
            reset = to.reset() => return from.reset(reset.0),
        };
        match frame {
            Some(Frame::End(ext)) => return to.end(ext),
            Some(Frame::Abort(ext)) => return to.abort(ext),
            Some(frame) => {
                if to.send(frame).await.is_err() {
                    return;
                }
            }
            None => return to.abort(None),
        }
    }
}

/// `%41` -> `A`; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}
