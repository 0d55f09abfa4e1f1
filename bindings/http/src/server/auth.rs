//! `authorization`: where a request's credentials are found (cookie, then header, then query;
//! the first entry of each map), so the guard can turn them into a session.

use proto_http::Headers;

use crate::config::Credentials;

/// A `prefix{credentials}suffix` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialPattern {
    prefix: String,
    suffix: String,
}

impl CredentialPattern {
    /// Parses a pattern; it must contain `{credentials}` once.
    pub(crate) fn parse(pattern: &str) -> Result<CredentialPattern, String> {
        const TOKEN: &str = "{credentials}";
        match pattern.split_once(TOKEN) {
            Some((prefix, suffix)) if !suffix.contains(TOKEN) => Ok(CredentialPattern {
                prefix: prefix.to_string(),
                suffix: suffix.to_string(),
            }),
            Some(_) => Err(format!(
                "pattern '{pattern}' has `{{credentials}}` more than once: keep one"
            )),
            None => Err(format!(
                "pattern '{pattern}' has no `{{credentials}}`: write where the token is, e.g. \"Bearer {{credentials}}\""
            )),
        }
    }

    /// The credentials in `value`: the whole value must match and the token is a non-empty run
    /// of non-blank characters.
    pub(crate) fn extract<'v>(&self, value: &'v str) -> Option<&'v str> {
        let token = value
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        (!token.is_empty() && !token.contains(|c: char| c.is_ascii_whitespace())).then_some(token)
    }
}

/// The compiled `credentials` of the server's one `authorization` entry.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extractor {
    cookie: Option<(String, CredentialPattern)>,
    header: Option<(String, CredentialPattern)>,
    query: Option<(String, CredentialPattern)>,
}

impl Extractor {
    /// Compiles the first entry of each of `cookies`, `headers`, `query`. Errors are
    /// `(relative key path, message)`.
    pub(crate) fn new(c: &Credentials) -> Result<Extractor, (String, String)> {
        fn first(
            map: &Option<indexmap::IndexMap<String, String>>,
            key: &str,
            lower: bool,
        ) -> Result<Option<(String, CredentialPattern)>, (String, String)> {
            let Some((name, pattern)) = map.as_ref().and_then(|m| m.first()) else {
                return Ok(None);
            };
            let p = CredentialPattern::parse(pattern).map_err(|e| (format!("{key}.{name}"), e))?;
            let name = if lower {
                name.to_ascii_lowercase()
            } else {
                name.clone()
            };
            Ok(Some((name, p)))
        }
        let x = Extractor {
            cookie: first(&c.cookies, "cookies", false)?,
            header: first(&c.headers, "headers", true)?,
            query: first(&c.query, "query", false)?,
        };
        if x.cookie.is_none() && x.header.is_none() && x.query.is_none() {
            return Err((
                String::new(),
                "no credentials source: add `headers`, `query` or `cookies`, e.g. headers: { authorization: \"Bearer {credentials}\" }".into(),
            ));
        }
        Ok(x)
    }

    /// The credentials of a request, looked up in cookie, header, then query order.
    pub(crate) fn extract<'h>(&self, headers: &'h Headers) -> Option<&'h str> {
        if let Some((name, p)) = &self.cookie {
            let found = headers
                .get_all("cookie")
                .filter_map(|v| std::str::from_utf8(v).ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|c| c.trim().split_once('='))
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| p.extract(v));
            if found.is_some() {
                return found;
            }
        }
        if let Some((name, p)) = &self.header {
            if let Some(v) = headers.get_str(name).and_then(|v| p.extract(v)) {
                return Some(v);
            }
        }
        if let Some((name, p)) = &self.query {
            let path = headers.get_str(":path")?;
            let (_, query) = path.split_once('?')?;
            return query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| p.extract(v));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;

    fn map(k: &str, v: &str) -> Option<IndexMap<String, String>> {
        Some([(k.to_string(), v.to_string())].into_iter().collect())
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs)
    }

    fn all_sources() -> Extractor {
        Extractor::new(&Credentials {
            headers: map("Authorization", "Bearer {credentials}"),
            query: map("access_token", "{credentials}"),
            cookies: map("access_token", "{credentials}"),
        })
        .unwrap()
    }

    #[test]
    fn header_query_cookie_in_order() {
        let x = all_sources();
        let h = headers(&[(":path", "/e"), ("authorization", "Bearer abc")]);
        assert_eq!(x.extract(&h), Some("abc"));
        let h = headers(&[(":path", "/e?a=1&access_token=q1&b=2")]);
        assert_eq!(x.extract(&h), Some("q1"));
        let h = headers(&[
            (":path", "/e?access_token=q1"),
            ("authorization", "Bearer h1"),
            ("cookie", "x=1; access_token=c1"),
        ]);
        assert_eq!(x.extract(&h), Some("c1"), "cookie first");
        let h = headers(&[
            (":path", "/e?access_token=q1"),
            ("authorization", "Bearer h1"),
        ]);
        assert_eq!(x.extract(&h), Some("h1"), "then header");
    }

    #[test]
    fn mismatches_find_nothing() {
        let x = all_sources();
        for h in [
            headers(&[(":path", "/e"), ("authorization", "Basic abc")]),
            headers(&[(":path", "/e"), ("authorization", "Bearer ")]),
            headers(&[(":path", "/e"), ("authorization", "Bearer a b")]),
            headers(&[(":path", "/e?access_token=")]),
            headers(&[(":path", "/e?other=x")]),
            headers(&[(":path", "/e")]),
        ] {
            assert_eq!(x.extract(&h), None, "{h:?}");
        }
    }

    #[test]
    fn patterns_need_the_token() {
        assert!(CredentialPattern::parse("Bearer")
            .unwrap_err()
            .contains("no `{credentials}`"));
        let err = Extractor::new(&Credentials::default()).unwrap_err();
        assert!(err.1.contains("no credentials source"));
        let err = Extractor::new(&Credentials {
            headers: map("authorization", "Bearer x"),
            ..Credentials::default()
        })
        .unwrap_err();
        assert_eq!(err.0, "headers.authorization");
    }
}
