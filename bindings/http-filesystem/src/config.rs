//! Route conditions and rewrites of the `http-filesystem` binding, as zilla.yaml spells them.

use schemars::JsonSchema;
use serde::Deserialize;

/// One `when` condition of an http-filesystem route; every field given must match.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(try_from = "HttpFilesystemConditionConfig")]
pub struct HttpFilesystemCondition {
    #[schemars(with = "Option<String>")]
    path: Option<PathPattern>,
    method: Option<Method>,
}

/// The written form of [`HttpFilesystemCondition`].
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpFilesystemConditionConfig {
    /// Pattern for the request path without its query: `{name}` captures one or more characters
    /// as `${params.name}`, `*` matches any run of characters, the rest matches literally
    /// (`/{path}`, `/assets/{file}`).
    pub path: Option<String>,
    /// Request method the route is restricted to.
    pub method: Option<Method>,
}

/// An HTTP method a route may be restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
#[schemars(rename = "HttpFilesystemMethod")]
pub enum Method {
    /// Read a file.
    Get,
    /// Read a file's metadata.
    Head,
    /// Create a file (not supported: answered with 405).
    Post,
    /// Replace a file (not supported: answered with 405).
    Put,
    /// Delete a file (not supported: answered with 405).
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

impl TryFrom<HttpFilesystemConditionConfig> for HttpFilesystemCondition {
    type Error = String;

    fn try_from(c: HttpFilesystemConditionConfig) -> Result<Self, String> {
        Ok(HttpFilesystemCondition {
            path: c.path.as_deref().map(PathPattern::parse).transpose()?,
            method: c.method,
        })
    }
}

impl HttpFilesystemCondition {
    /// The parameters captured if the condition matches `method` and `path` (query removed).
    pub(crate) fn matches(&self, method: &str, path: &str) -> Option<Vec<(String, String)>> {
        if self.method.is_some_and(|m| m.as_str() != method) {
            return None;
        }
        match &self.path {
            Some(p) => p.matches(path),
            None => Some(Vec::new()),
        }
    }

    /// Names this condition captures.
    pub(crate) fn captures(&self) -> Vec<&str> {
        self.path.as_ref().map_or_else(Vec::new, PathPattern::names)
    }
}

/// A route's rewrite: which file the request maps to.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpFilesystemWith {
    /// File path relative to the filesystem location, a percent-encoded URI path such as
    /// `${params.path}` (each `${params.name}` is replaced by what `{name}` captured).
    pub path: Option<String>,
    /// Directory relative to the filesystem location, joined before `path` when both are
    /// given. `${params.name}` is replaced as in `path`.
    pub directory: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Any,
    Param(String),
}

/// A compiled `when.path` pattern.
#[derive(Debug, Clone)]
pub(crate) struct PathPattern(Vec<Token>);

impl PathPattern {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            match c {
                '{' => {
                    let Some(end) = rest.find('}') else {
                        return Err(format!(
                            "invalid path pattern '{text}': '{{' is not closed; write a parameter as {{name}}"
                        ));
                    };
                    let name = &rest[1..end];
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!(
                            "invalid path pattern '{text}': parameter '{{{name}}}' must be a name of letters, digits or '_'"
                        ));
                    }
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal)));
                    }
                    if tokens.contains(&Token::Param(name.to_string())) {
                        return Err(format!(
                            "invalid path pattern '{text}': parameter '{{{name}}}' appears twice"
                        ));
                    }
                    tokens.push(Token::Param(name.to_string()));
                    rest = &rest[end + 1..];
                }
                '*' => {
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal)));
                    }
                    tokens.push(Token::Any);
                    rest = &rest[1..];
                }
                c => {
                    literal.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(PathPattern(tokens))
    }

    fn names(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(|t| match t {
                Token::Param(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Matches the whole of `path`; parameters capture greedily (like a regular expression's
    /// `(.+)`), `*` likewise with zero or more characters.
    pub(crate) fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        // Group the tokens into literals and runs of adjacent wildcards: a run's span can only
        // end where the next literal occurs (or at the end), which keeps the search small.
        let mut units: Vec<Result<&str, Vec<&Token>>> = Vec::new();
        for t in &self.0 {
            match (t, units.last_mut()) {
                (Token::Literal(l), _) => units.push(Ok(l)),
                (_, Some(Err(run))) => run.push(t),
                _ => units.push(Err(vec![t])),
            }
        }
        let mut spans = Vec::new();
        let mut failed = std::collections::HashSet::new();
        if !at(&units, 0, path, 0, &mut spans, &mut failed) {
            return None;
        }
        let mut out = Vec::new();
        for (ui, start, end) in spans {
            let Err(run) = &units[ui] else { continue };
            split_run(run, &path[start..end], &mut out);
        }
        Some(out)
    }
}

type Unit<'a> = Result<&'a str, Vec<&'a Token>>;

/// True if `units[ui..]` match `path[pos..]`, recording each run's span. `failed` remembers
/// (unit, position) pairs known not to match, so the search is polynomial whatever the pattern.
fn at(
    units: &[Unit<'_>],
    ui: usize,
    path: &str,
    pos: usize,
    spans: &mut Vec<(usize, usize, usize)>,
    failed: &mut std::collections::HashSet<(usize, usize)>,
) -> bool {
    let Some(unit) = units.get(ui) else {
        return pos == path.len();
    };
    if failed.contains(&(ui, pos)) {
        return false;
    }
    let ok = match unit {
        Ok(literal) => {
            path[pos..].starts_with(literal)
                && at(units, ui + 1, path, pos + literal.len(), spans, failed)
        }
        Err(run) => {
            let params = run.iter().filter(|t| matches!(t, Token::Param(_))).count();
            // Each parameter needs one character at least.
            let min = path[pos..]
                .char_indices()
                .nth(params)
                .map_or(path.len(), |(i, _)| pos + i);
            let enough = path[pos..].chars().count() >= params;
            // Longest first (greedy); the end is where the next literal starts, or the end.
            let candidates: Vec<usize> = match units.get(ui + 1) {
                None => vec![path.len()],
                Some(Ok(literal)) => (min..=path.len())
                    .rev()
                    .filter(|&i| path.is_char_boundary(i) && path[i..].starts_with(literal))
                    .collect(),
                // Adjacent runs are merged when the units are built.
                Some(Err(_)) => Vec::new(),
            };
            let mut ok = false;
            for end in candidates.into_iter().filter(|&e| enough && e >= min) {
                let mark = spans.len();
                spans.push((ui, pos, end));
                if at(units, ui + 1, path, end, spans, failed) {
                    ok = true;
                    break;
                }
                spans.truncate(mark);
            }
            ok
        }
    };
    if !ok {
        failed.insert((ui, pos));
    }
    ok
}

/// Shares `text` among a run of wildcards greedily: each takes as much as it can while leaving
/// one character for every parameter after it.
fn split_run(run: &[&Token], text: &str, out: &mut Vec<(String, String)>) {
    let mut rest = text;
    for (i, t) in run.iter().enumerate() {
        let later = run[i + 1..]
            .iter()
            .filter(|t| matches!(t, Token::Param(_)))
            .count();
        let last = i + 1 == run.len();
        let take = if last {
            rest.len()
        } else if later == 0 {
            // Only stars follow, which may be empty.
            rest.len()
        } else {
            rest.char_indices()
                .rev()
                .nth(later - 1)
                .map_or(0, |(b, _)| b)
        };
        if let Token::Param(name) = t {
            out.push((name.clone(), rest[..take].to_string()));
        }
        rest = &rest[take..];
    }
}

/// Names referenced as `${params.name}` in `text`.
pub(crate) fn referenced_params(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${params.") {
        let after = &rest[at + "${params.".len()..];
        match after.find('}') {
            Some(end) => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// Replaces every `${params.name}` in `text` with its captured value.
pub(crate) fn substitute(text: &str, params: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${params.") {
        let after = &rest[at + "${params.".len()..];
        let Some(end) = after.find('}') else { break };
        out.push_str(&rest[..at]);
        let name = &after[..end];
        if let Some((_, v)) = params.iter().find(|(n, _)| n == name) {
            out.push_str(v);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        PathPattern::parse(pattern).unwrap().matches(path)
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parameters_capture_one_or_more_characters_across_slashes() {
        assert_eq!(
            caps("/{path}", "/index.html"),
            Some(pairs(&[("path", "index.html")]))
        );
        assert_eq!(
            caps("/{path}", "/a/b/c.js"),
            Some(pairs(&[("path", "a/b/c.js")]))
        );
        assert_eq!(caps("/{path}", "/"), None);
        assert_eq!(caps("/{path}", "index.html"), None);
        assert_eq!(
            caps("/{dir}/{file}.html", "/a/b/c.html"),
            Some(pairs(&[("dir", "a/b"), ("file", "c")]))
        );
        assert_eq!(caps("/assets/{file}", "/other/x"), None);
    }

    #[test]
    fn stars_and_literals_match_the_whole_path() {
        assert_eq!(caps("/static/*", "/static/"), Some(vec![]));
        assert_eq!(caps("/static/*", "/static/a/b"), Some(vec![]));
        assert_eq!(caps("/index.html", "/index.html"), Some(vec![]));
        assert_eq!(caps("/index.html", "/indexxhtml"), None, "'.' is literal");
        assert_eq!(caps("/index.html", "/index.html/x"), None);
        assert_eq!(caps("*.css", "/a/b.css"), Some(vec![]));
        assert_eq!(caps("*.css", "/a/b.js"), None);
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let path = format!("/{}", "a".repeat(4000));
        let start = std::time::Instant::now();
        assert_eq!(caps("/{a}{b}{c}{d}x", &path), None);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn invalid_patterns_are_explained() {
        assert!(PathPattern::parse("/{path")
            .unwrap_err()
            .contains("not closed"));
        assert!(PathPattern::parse("/{}")
            .unwrap_err()
            .contains("must be a name"));
        assert!(PathPattern::parse("/{a}/{a}")
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn params_are_substituted_whole_or_inside_strings() {
        let p = pairs(&[("path", "a/b.html"), ("dir", "docs")]);
        assert_eq!(substitute("${params.path}", &p), "a/b.html");
        assert_eq!(
            substitute("${params.dir}/${params.path}", &p),
            "docs/a/b.html"
        );
        assert_eq!(substitute("site/index.html", &p), "site/index.html");
        assert_eq!(substitute("${params.none}", &p), "");
        assert_eq!(
            referenced_params("${params.dir}/x/${params.path}"),
            vec!["dir", "path"]
        );
    }
}
