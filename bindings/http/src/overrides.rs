//! Header overrides: `options.overrides` and a route's `with.headers.overrides`. Values are
//! compiled once, at build, as engine [`Template`]s, so a route can send the backend who the
//! caller is (`x-tenant: ${guarded['jwt0'].attributes.tenant}`) or what its path captured
//! (`x-item: ${params.id}`). An override always replaces what the client sent: a value that
//! cannot be rendered for a request (no session, no such claim) removes the header instead, so a
//! client can never supply it itself.

use bytes::Bytes;
use indexmap::IndexMap;
use proto_http::Headers;
use zilla_engine::{BindingContext, BindingFactory, ConfigErrors, Template, Values};

/// Compiled overrides, in the order written.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides(Vec<(Bytes, Value)>);

#[derive(Debug, Clone)]
enum Value {
    /// No expression: set as is.
    Literal(Bytes),
    /// Rendered per request.
    Template(Template),
}

impl Overrides {
    /// Compiles `map` (found at `rel`): every name must be a header name or one of the request
    /// pseudo-headers, every value free of control characters and its expressions known.
    pub(crate) fn compile<F: BindingFactory>(
        cx: &BindingContext<F>,
        rel: &str,
        map: Option<&IndexMap<String, String>>,
        errors: &mut ConfigErrors,
    ) -> Overrides {
        let mut out = Vec::new();
        for (name, value) in map.into_iter().flatten() {
            let key = format!("{rel}.{name}");
            let lower = name.to_ascii_lowercase();
            let valid_name = match lower.strip_prefix(':') {
                Some(pseudo) => matches!(pseudo, "method" | "scheme" | "authority" | "path"),
                None => !lower.is_empty() && lower.bytes().all(is_token_byte),
            };
            if !valid_name {
                errors.push(cx.error(
                    &key,
                    "not a header name: use a token such as `x-api-key` or one of `:method`, \
                     `:scheme`, `:authority`, `:path`",
                ));
                continue;
            }
            if value.bytes().any(is_control) {
                errors.push(cx.error(
                    &key,
                    "header values cannot contain line breaks or control characters",
                ));
                continue;
            }
            let Some(template) = errors.take(cx.template(value, &key)) else {
                continue;
            };
            let value = if template.is_literal() {
                Value::Literal(Bytes::from(value.clone()))
            } else {
                Value::Template(template)
            };
            out.push((Bytes::from(lower), value));
        }
        Overrides(out)
    }

    /// True if there is nothing to override.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets every override on `headers`, rendered from `values`; one that cannot be rendered,
    /// or renders to a value with control characters, removes the header.
    pub(crate) fn apply(&self, headers: &mut Headers, values: &Values<'_>) {
        for (name, value) in &self.0 {
            match value {
                Value::Literal(v) => headers.set(name.clone(), v.clone()),
                Value::Template(t) => match t.render(values) {
                    Some(v) if !v.bytes().any(is_control) => {
                        headers.set(name.clone(), Bytes::from(v.into_owned()))
                    }
                    _ => remove(headers, name),
                },
            }
        }
    }
}

fn remove(headers: &mut Headers, name: &Bytes) {
    // Names were checked to be ASCII when compiled.
    if let Ok(name) = std::str::from_utf8(name) {
        headers.remove(name);
    }
}

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_control(c: u8) -> bool {
    (c < b' ' && c != b'\t') || c == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use zilla_engine::{GuardId, Session};

    fn compiled(pairs: &[(&str, &str)]) -> Overrides {
        let parts = pairs
            .iter()
            .map(|(n, v)| {
                let t = Template::compile(v, |g| match g {
                    "jwt0" => Ok(GuardId(0)),
                    _ => Err("no such guard".into()),
                })
                .unwrap();
                let v = if t.is_literal() {
                    Value::Literal(Bytes::from(v.to_string()))
                } else {
                    Value::Template(t)
                };
                (Bytes::from(n.to_string()), v)
            })
            .collect();
        Overrides(parts)
    }

    fn session(tenant: &str) -> Session {
        Session {
            guard: GuardId(0),
            identity: Some("alice".into()),
            expires_at: None,
            challenge_at: None,
            attributes: vec![(Arc::from("tenant"), Arc::from(tenant))],
            data: Box::new(()),
        }
    }

    #[test]
    fn identity_replaces_what_the_client_sent_and_missing_values_remove_it() {
        let o = compiled(&[
            ("x-user", "${guarded['jwt0'].identity}"),
            ("x-tenant", "${guarded['jwt0'].attributes.tenant}"),
            ("x-item", "item-${params.id}"),
            ("x-static", "yes"),
        ]);
        let mut h = Headers::from_pairs(&[("x-user", "mallory"), ("x-tenant", "globex")]);
        let s = session("acme");
        let params = vec![("id".to_string(), "42")];
        o.apply(
            &mut h,
            &Values {
                params: &params,
                session: Some(&s),
                ..Values::default()
            },
        );
        assert_eq!(h.get_str("x-user"), Some("alice"));
        assert_eq!(h.get_str("x-tenant"), Some("acme"));
        assert_eq!(h.get_str("x-item"), Some("item-42"));
        assert_eq!(h.get_str("x-static"), Some("yes"));

        // No session: the client's own values do not pass.
        let mut h = Headers::from_pairs(&[("x-user", "mallory"), ("x-tenant", "globex")]);
        o.apply(&mut h, &Values::default());
        assert_eq!(h.get_str("x-user"), None);
        assert_eq!(h.get_str("x-tenant"), None);
        assert_eq!(h.get_str("x-static"), Some("yes"));

        // A claim with a line break never becomes a header line.
        let s = session("acme\r\nx-admin: true");
        let mut h = Headers::new();
        o.apply(
            &mut h,
            &Values {
                session: Some(&s),
                ..Values::default()
            },
        );
        assert_eq!(h.get_str("x-tenant"), None);
        assert_eq!(h.get_str("x-user"), Some("alice"));
    }
}
