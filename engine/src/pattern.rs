//! Zilla's route patterns. [`glob_match`]: `*` matches any run of characters (including `/`),
//! everything else literally, and the whole value must match. [`Pattern`] adds `{name}`, which
//! captures one or more characters for `${params.name}`, and compiles to a `regex` automaton
//! once, at build: matching takes time linear in the value, whatever the pattern (a
//! backtracking glob takes seconds on `*a*a*a*z` and a long path).

use regex::Regex;

/// True if `value` matches `pattern` (`*` = any run of characters), case-sensitively.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// A compiled route pattern: `*` matches any run of characters, `{name}` captures one or more,
/// everything else is literal; the whole value must match.
#[derive(Debug, Clone)]
pub struct Pattern {
    re: Regex,
}

impl Pattern {
    /// Compiles `pattern`. With `query_suffix` (a path pattern that does not end with `*`), the
    /// value may also go on with a `?query`, which is not captured.
    pub fn compile(pattern: &str, query_suffix: bool) -> Result<Pattern, String> {
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
        if query_suffix && !pattern.ends_with('*') {
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
    pub fn matches(&self, value: &str) -> bool {
        self.re.is_match(value)
    }

    /// True if the pattern captures anything.
    pub fn has_params(&self) -> bool {
        self.re.captures_len() > 1
    }

    /// The `{name}` captures of `value`, if it matches (no allocation without captures).
    pub fn captures<'v>(&self, value: &'v str) -> Option<Vec<(String, &'v str)>> {
        if !self.has_params() {
            return self.matches(value).then(Vec::new);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, value: &str) -> bool {
        Pattern::compile(pattern, true).unwrap().matches(value)
    }

    #[test]
    fn literal_star_and_query_suffix() {
        assert!(m("/events", "/events"));
        assert!(m("/events", "/events?x=1"));
        assert!(!m("/events", "/events/1"));
        assert!(!m("/events", "/eventsX"));
        assert!(m("/events/*", "/events/a/b?c"));
        assert!(m("*.example.com:443", "a.example.com:443"));
        // `.` is literal, not "any character"
        assert!(!m("a.b", "axb"));
        // no query suffix unless asked
        assert!(!Pattern::compile("/events", false)
            .unwrap()
            .matches("/events?x=1"));
    }

    #[test]
    fn captures_exclude_query() {
        let p = Pattern::compile("/items/{id}", true).unwrap();
        assert_eq!(
            p.captures("/items/42?x=1").unwrap(),
            vec![("id".to_string(), "42")]
        );
        assert_eq!(
            p.captures("/items/4/2").unwrap(),
            vec![("id".to_string(), "4/2")]
        );
        assert!(p.captures("/items/").is_none());
        let plain = Pattern::compile("/items", true).unwrap();
        assert_eq!(plain.captures("/items"), Some(vec![]));
        assert!(!plain.has_params());
    }

    #[test]
    fn bad_patterns_say_what_to_do() {
        let e = |p| Pattern::compile(p, true).unwrap_err();
        assert!(e("/a/{id").contains("unclosed"));
        assert!(e("/a/{id}/{id}").contains("twice"));
        assert!(e("/a/{}").contains("invalid parameter"));
        assert!(e("/a/{1x}").contains("must start with a letter"));
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
            assert!(!m(pattern, &long), "{pattern}");
        }
        assert!(m("/events/*a*a*a*z", &format!("{long}z")));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn wildcards() {
        assert!(glob_match("/events", "/events"));
        assert!(!glob_match("/events", "/events/1"));
        assert!(glob_match("/events*", "/events/a/b"));
        assert!(glob_match("/events/*", "/events/a/b"));
        assert!(!glob_match("/events/*", "/other/a"));
        assert!(glob_match("*.example.com", "api.example.com"));
        assert!(glob_match("/a*b*c", "/aXXbYYc"));
        assert!(!glob_match("/a*b*c", "/aXXbYY"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("/ab*ab", "/ab"));
    }
}
