//! Values with `${...}` expressions that bindings fill per request: a header a route writes
//! (`x-tenant: ${guarded['jwt0'].attributes.tenant}`), a role a route requires
//! (`tenant:${params.tenant}`). Compiled once at build (a guard named is resolved then, an
//! unknown expression is a config error), rendered per request without parsing.
//!
//! | expression | value |
//! |---|---|
//! | `${params.<name>}` | the `{name}` the route's condition captured from the path |
//! | `${method}` | the request method (`GET`) |
//! | `${path}` | the request path (http: `:path` as sent, query included; sse: without the query) |
//! | `${guarded['<guard>'].identity}` | the identity of the request's session with that guard |
//! | `${guarded['<guard>'].attributes.<name>}` | an attribute of that session (jwt: a claim) |

use std::borrow::Cow;

use crate::guard::{GuardId, Session};

/// A compiled value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Param(String),
    Method,
    Path,
    Identity(GuardId),
    Attribute(GuardId, String),
}

/// What a request offers to render a template with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Values<'a> {
    /// The route condition's `{name}` captures.
    pub params: &'a [(String, &'a str)],
    /// The request method.
    pub method: Option<&'a str>,
    /// The request path (http: with its query, as Zilla documents; sse: without).
    pub path: Option<&'a str>,
    /// The request's session.
    pub session: Option<&'a Session>,
}

impl Template {
    /// Compiles `text`; `guard` resolves a guard name to its id (or says why it cannot).
    pub fn compile(
        text: &str,
        guard: impl Fn(&str) -> Result<GuardId, String>,
    ) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("${") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("`${{` without `}}` in '{text}'"));
            };
            let expr = rest[open + 2..open + close].trim();
            let whole = open == 0 && open + close + 1 == rest.len() && parts.is_empty();
            parts.push(parse(expr, &guard).map_err(|e| {
                if whole {
                    format!("'{text}': {e}")
                } else {
                    format!("'${{{expr}}}' in '{text}': {e}")
                }
            })?);
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// True if the value has no expression.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// True if the value needs a session (an identity or attribute).
    pub fn uses_session(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Identity(_) | Part::Attribute(..)))
    }

    /// The value for a request; `None` if something it names is missing (no session with the
    /// guard, no such attribute or capture): the header or role then does not apply.
    pub fn render(&self, v: &Values<'_>) -> Option<Cow<'_, str>> {
        if let [Part::Text(text)] = self.parts.as_slice() {
            return Some(Cow::Borrowed(text));
        }
        let mut out = String::new();
        let session = |guard: &GuardId| v.session.filter(|s| s.guard == *guard);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Param(name) => {
                    out.push_str(v.params.iter().find(|(n, _)| n == name)?.1);
                }
                Part::Method => out.push_str(v.method?),
                Part::Path => out.push_str(v.path?),
                Part::Identity(guard) => out.push_str(session(guard)?.identity.as_deref()?),
                Part::Attribute(guard, name) => out.push_str(session(guard)?.attribute(name)?),
            }
        }
        Some(Cow::Owned(out))
    }
}

fn parse(expr: &str, guard: &impl Fn(&str) -> Result<GuardId, String>) -> Result<Part, String> {
    if let Some(name) = expr.strip_prefix("params.") {
        return Ok(Part::Param(name.to_string()));
    }
    match expr {
        "method" => return Ok(Part::Method),
        "path" => return Ok(Part::Path),
        _ => {}
    }
    let Some(rest) = expr.strip_prefix("guarded[") else {
        return Err(
            "not an expression here: use params.<name>, method, path, or \
             guarded['<guard>'].identity / .attributes.<name>"
                .into(),
        );
    };
    let (name, rest) = rest
        .strip_prefix('\'')
        .and_then(|r| r.split_once("']"))
        .or_else(|| rest.strip_prefix('"').and_then(|r| r.split_once("\"]")))
        .ok_or("write the guard's name in quotes: guarded['jwt0']")?;
    let id = guard(name)?;
    match rest {
        ".identity" => Ok(Part::Identity(id)),
        _ => match rest.strip_prefix(".attributes.") {
            Some(attr) if !attr.is_empty() => Ok(Part::Attribute(id, attr.to_string())),
            _ => Err("a guarded value is .identity or .attributes.<name>".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn guard(name: &str) -> Result<GuardId, String> {
        match name {
            "jwt0" => Ok(GuardId(0)),
            other => Err(format!("no guard named '{other}'")),
        }
    }

    fn session() -> Session {
        Session {
            guard: GuardId(0),
            identity: Some("alice".into()),
            expires_at: None,
            challenge_at: None,
            attributes: vec![(Arc::from("tenant"), Arc::from("acme"))],
            data: Box::new(()),
        }
    }

    #[test]
    fn renders_params_method_path_identity_and_attributes() {
        let t = Template::compile(
            "${guarded['jwt0'].attributes.tenant}/${guarded[\"jwt0\"].identity} ${method} ${path} ${params.id}",
            guard,
        )
        .unwrap();
        let s = session();
        let params = [("id".to_string(), "7")];
        let v = Values {
            params: &params,
            method: Some("GET"),
            path: Some("/items/7"),
            session: Some(&s),
        };
        assert_eq!(t.render(&v).unwrap(), "acme/alice GET /items/7 7");
        assert!(t.uses_session() && !t.is_literal());
        // Without the session (or another guard's), the value does not apply.
        assert_eq!(t.render(&Values { session: None, ..v }), None);
        let other = Session {
            guard: GuardId(1),
            ..session()
        };
        assert_eq!(
            t.render(&Values {
                session: Some(&other),
                ..v
            }),
            None
        );
        assert_eq!(
            Template::compile("plain", guard)
                .unwrap()
                .render(&Values::default())
                .unwrap(),
            "plain"
        );
    }

    #[test]
    fn bad_expressions_are_explained() {
        for (text, why) in [
            ("${foo}", "not an expression here"),
            ("${guarded['nope'].identity}", "no guard named 'nope'"),
            ("${guarded[jwt0].identity}", "in quotes"),
            ("${guarded['jwt0'].sub}", ".identity or .attributes"),
            ("a ${params.id", "without"),
        ] {
            let e = Template::compile(text, guard).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
