//! Route condition patterns (`when[].headers`) of the http server and client: `*` matches any
//! run of characters, `{name}` captures one or more characters, everything else is literal. A
//! `:path` pattern that does not end with `*` also accepts a trailing `?query` (not captured).
//! Patterns compile to `regex` automata once, at build: matching takes time linear in the
//! value, whatever the pattern (a backtracking glob took seconds on `*a*a*a*z` and a long path).

use regex::Regex;
use zilla_engine::{BindingContext, BindingFactory, ConfigErrors, Routes};

use crate::config::HttpCondition;
use proto_http::Headers;

/// Compiles the header patterns of every route condition, once, when the binding is built;
/// a bad pattern is an error at its key.
pub(crate) fn compile_routes<F, W>(
    cx: &BindingContext<F>,
    routes: &Routes<HttpCondition, W>,
    errors: &mut ConfigErrors,
) where
    F: BindingFactory,
{
    for (i, route) in routes.iter().enumerate() {
        for (j, when) in route.when.iter().enumerate() {
            let mut compiled = Vec::new();
            for (name, pattern) in when.headers.iter().flatten() {
                let name = name.to_ascii_lowercase();
                match Pattern::compile(&name, pattern) {
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

/// A compiled header pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    re: Regex,
}

impl Pattern {
    /// Compiles `pattern` for header `name` (`:path` allows a `?query` suffix).
    pub(crate) fn compile(name: &str, pattern: &str) -> Result<Pattern, String> {
        let mut re = String::with_capacity(pattern.len() + 16);
        re.push('^');
        let mut literal = String::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    re.push_str(&regex::escape(&literal));
                    literal.clear();
                    re.push_str(".*");
                }
                '{' => {
                    re.push_str(&regex::escape(&literal));
                    literal.clear();
                    let mut param = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_ascii_alphanumeric() || c == '_' => param.push(c),
                            Some(c) => {
                                return Err(format!(
                                    "invalid character '{c}' in parameter name of pattern '{pattern}': use {{name}} with letters, digits and '_'"
                                ))
                            }
                            None => {
                                return Err(format!(
                                    "unclosed '{{' in pattern '{pattern}': write {{name}} to capture, or remove the brace"
                                ))
                            }
                        }
                    }
                    if param.is_empty() || param.starts_with(|c: char| c.is_ascii_digit()) {
                        return Err(format!(
                            "invalid parameter name '{{{param}}}' in pattern '{pattern}': it must start with a letter"
                        ));
                    }
                    // Lazy, so that a `?query` suffix is not captured.
                    re.push_str(&format!("(?P<{param}>.+?)"));
                }
                c => literal.push(c),
            }
        }
        re.push_str(&regex::escape(&literal));
        if name == ":path" && !pattern.ends_with('*') {
            re.push_str(r"(?:\?.*)?");
        }
        re.push('$');
        let re = Regex::new(&re).map_err(|e| match e {
            regex::Error::Syntax(s) if s.contains("duplicate capture group name") => {
                format!("pattern '{pattern}' uses a parameter name twice: give each {{name}} its own name")
            }
            e => format!("invalid pattern '{pattern}': {e}"),
        })?;
        Ok(Pattern { re })
    }

    /// True if `value` matches.
    pub(crate) fn matches(&self, value: &str) -> bool {
        self.re.is_match(value)
    }

    /// The `{name}` captures of `value`, if it matches.
    pub(crate) fn captures<'v>(&self, value: &'v str) -> Option<Vec<(String, &'v str)>> {
        let caps = self.re.captures(value)?;
        Some(
            self.re
                .capture_names()
                .flatten()
                .filter_map(|n| caps.name(n).map(|m| (n.to_string(), m.as_str())))
                .collect(),
        )
    }
}

/// Replaces every `${params.name}` in `template` with the capture `name` (empty if absent).
pub(crate) fn substitute(template: &str, params: &[(String, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("${params.") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "${params.".len()..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                if let Some((_, v)) = params.iter().find(|(n, _)| n == name) {
                    out.push_str(v);
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, pattern: &str, value: &str) -> bool {
        Pattern::compile(name, pattern).unwrap().matches(value)
    }

    #[test]
    fn literal_star_and_query_suffix() {
        assert!(m(":path", "/events", "/events"));
        assert!(m(":path", "/events", "/events?x=1"));
        assert!(!m(":path", "/events", "/events/1"));
        assert!(!m(":path", "/events", "/eventsX"));
        assert!(m(":path", "/events/*", "/events/a/b?c"));
        assert!(m(":authority", "*.example.com:443", "a.example.com:443"));
        // `.` is literal, not "any character"
        assert!(!m(":authority", "a.b", "axb"));
        // no query suffix for other headers
        assert!(!m("x-path", "/events", "/events?x=1"));
    }

    #[test]
    fn captures_exclude_query() {
        let p = Pattern::compile(":path", "/items/{id}").unwrap();
        assert_eq!(
            p.captures("/items/42?x=1").unwrap(),
            vec![("id".to_string(), "42")]
        );
        assert_eq!(
            p.captures("/items/4/2").unwrap(),
            vec![("id".to_string(), "4/2")]
        );
        assert!(p.captures("/items/").is_none());
    }

    #[test]
    fn bad_patterns_say_what_to_do() {
        assert!(Pattern::compile(":path", "/a/{id")
            .unwrap_err()
            .contains("unclosed"));
        assert!(Pattern::compile(":path", "/a/{id}/{id}")
            .unwrap_err()
            .contains("twice"));
        assert!(Pattern::compile(":path", "/a/{}")
            .unwrap_err()
            .contains("invalid parameter"));
    }

    #[test]
    fn substitutes_params() {
        let params = vec![("id".to_string(), "42")];
        assert_eq!(substitute("item-${params.id}", &params), "item-42");
        assert_eq!(substitute("${params.nope}x", &params), "x");
        assert_eq!(substitute("plain", &params), "plain");
        assert_eq!(substitute("${params.id", &params), "${params.id");
    }

    /// Patterns that make a backtracking matcher take exponential time answer at once on a
    /// 10,000-character path.
    #[test]
    fn hostile_patterns_match_in_linear_time() {
        let long = format!("/events/{}", "a".repeat(10_000));
        let started = std::time::Instant::now();
        for pattern in [
            "/events/*a*a*a*z",
            "*a*a*a*a*a*a*a*a*b",
            "/events/{x}a*a{y}z",
        ] {
            assert!(!m(":path", pattern, &long), "{pattern}");
        }
        assert!(m(":path", "/events/*a*a*a*z", &format!("{long}z")));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}
