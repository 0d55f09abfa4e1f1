//! Route condition patterns (`when[].headers`) of the http server and client, compiled once
//! at build as engine [`Pattern`]s: `*` matches any run of characters, `{name}` captures one or
//! more characters, everything else is literal. A `:path` pattern that does not end with `*`
//! also accepts a trailing `?query` (not captured).

use zilla_engine::{BindingContext, BindingFactory, ConfigErrors, Pattern, Routes};

use crate::config::{HttpCondition, HttpWith};
use crate::overrides::Overrides;
use proto_http::Headers;

/// Compiles the header patterns of every route condition and the header overrides of every
/// route's `with`, once, when the binding is built; a bad pattern or value is an error at its
/// key.
pub(crate) fn compile_routes<F>(
    cx: &BindingContext<F>,
    routes: &Routes<HttpCondition, HttpWith>,
    errors: &mut ConfigErrors,
) where
    F: BindingFactory,
{
    for (i, route) in routes.iter().enumerate() {
        if let Some(h) = route.with.as_ref().and_then(|w| w.headers.as_ref()) {
            let rel = format!("routes[{i}].with.headers.overrides");
            let _ = h
                .compiled
                .set(Overrides::compile(cx, &rel, h.overrides.as_ref(), errors));
        }
        for (j, when) in route.when.iter().enumerate() {
            let mut compiled = Vec::new();
            for (name, pattern) in when.headers.iter().flatten() {
                let name = name.to_ascii_lowercase();
                match Pattern::compile(pattern, name == ":path") {
                    Ok(p) => compiled.push((name, p)),
                    Err(e) => {
                        errors.push(cx.error(&format!("routes[{i}].when[{j}].headers.{name}"), e))
                    }
                }
            }
            let _ = when.compiled.set(compiled);
        }
    }
}

/// The compiled patterns of a condition.
pub(crate) fn compiled(c: &HttpCondition) -> &[(String, Pattern)] {
    c.compiled.get().map(Vec::as_slice).unwrap_or(&[])
}

/// True if every header pattern of `c` matches `headers`.
pub(crate) fn condition_matches(c: &HttpCondition, headers: &Headers) -> bool {
    compiled(c)
        .iter()
        .all(|(name, p)| headers.get_str(name).is_some_and(|v| p.matches(v)))
}

/// The `{name}` captures of `path` (the request's `:path`, held apart from `headers` so that
/// they outlive changes to them) if every pattern of `c` matches the request.
pub(crate) fn condition_captures<'p>(
    c: &HttpCondition,
    headers: &Headers,
    path: &'p str,
) -> Option<Vec<(String, &'p str)>> {
    let mut params = Vec::new();
    for (name, p) in compiled(c) {
        if name == ":path" {
            params = p.captures(path)?;
        } else if !headers.get_str(name).is_some_and(|v| p.matches(v)) {
            return None;
        }
    }
    Some(params)
}

/// The compiled `with.headers.overrides` of a route, if it has any.
pub(crate) fn route_overrides(with: Option<&HttpWith>) -> Option<&Overrides> {
    with.and_then(|w| w.headers.as_ref())
        .and_then(|h| h.compiled.get())
        .filter(|o| !o.is_empty())
}
