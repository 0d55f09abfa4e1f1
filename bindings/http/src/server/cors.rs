//! `access-control`: same-origin (default) or cross-origin policy, preflight answers and the
//! headers added to actual responses.

use bytes::Bytes;
use proto_http::Headers;

use crate::config::{AccessControl, Policy};

/// The compiled `access-control` option.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cors {
    cross_origin: bool,
    origins: Option<Vec<String>>,
    methods: Option<Vec<String>>,
    headers: Option<Vec<String>>,
    credentials: bool,
    max_age: Option<u64>,
    expose: Option<Vec<String>>,
}

/// What the CORS policy says about a request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// No `Origin`, or a same-origin one: nothing to add.
    Plain,
    /// An allowed foreign origin: decorate the response with it.
    Allowed(Bytes),
    /// A preflight the server answers itself with `204` and these headers.
    Preflight(Headers),
    /// Refused: `403`.
    Forbidden,
}

/// Response headers a script may always read (the CORS-safelisted ones).
const SAFELISTED: [&str; 7] = [
    "cache-control",
    "content-language",
    "content-length",
    "content-type",
    "expires",
    "last-modified",
    "pragma",
];

impl Cors {
    /// Compiles the option (absent: same-origin).
    pub(crate) fn new(ac: Option<&AccessControl>) -> Cors {
        let Some(ac) = ac else {
            return Cors::default();
        };
        let allow = ac.allow.clone().unwrap_or_default();
        Cors {
            cross_origin: ac.policy == Policy::CrossOrigin,
            origins: allow.origins,
            methods: allow.methods,
            headers: allow
                .headers
                .map(|h| h.iter().map(|s| s.to_ascii_lowercase()).collect()),
            credentials: allow.credentials.unwrap_or(false),
            max_age: ac.max_age,
            expose: ac.expose.clone().and_then(|e| e.headers),
        }
    }

    /// Judges a request from its headers (`:scheme`, `:authority`, `:method`, `origin`, ...).
    pub(crate) fn check(&self, request: &Headers) -> Verdict {
        let Some(origin) = request.get("origin") else {
            // Not a CORS request; under a cross-origin policy open to any origin, responses say
            // so anyway (`*`), as Zilla's do. Not with a list of origins or credentials, which
            // need an origin to echo.
            if self.cross_origin && self.origins.is_none() && !self.credentials {
                return Verdict::Allowed(Bytes::from_static(b"*"));
            }
            return Verdict::Plain;
        };
        let origin_str = std::str::from_utf8(origin).unwrap_or("");
        let scheme = request.get_str(":scheme").unwrap_or("http");
        let authority = request.get_str(":authority").unwrap_or("");
        if same_origin(origin_str, scheme, authority) {
            return Verdict::Plain;
        }
        if !self.cross_origin {
            return Verdict::Forbidden;
        }
        if let Some(origins) = &self.origins {
            if !origins.iter().any(|o| o.eq_ignore_ascii_case(origin_str)) {
                return Verdict::Forbidden;
            }
        }
        let preflight_method = request.get("access-control-request-method");
        if request.get(":method").map(Bytes::as_ref) == Some(b"OPTIONS") {
            if let Some(method) = preflight_method {
                return self.preflight(origin, method, request);
            }
        }
        Verdict::Allowed(origin.clone())
    }

    fn preflight(&self, origin: &Bytes, method: &Bytes, request: &Headers) -> Verdict {
        let method_str = std::str::from_utf8(method).unwrap_or("");
        if let Some(methods) = &self.methods {
            if !methods.iter().any(|m| m == method_str) {
                return Verdict::Forbidden;
            }
        }
        let requested = request.get("access-control-request-headers");
        if let (Some(allowed), Some(requested)) = (&self.headers, requested) {
            let requested = std::str::from_utf8(requested).unwrap_or("");
            let all_allowed = requested
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .all(|h| allowed.iter().any(|a| a.eq_ignore_ascii_case(h)));
            if !all_allowed {
                return Verdict::Forbidden;
            }
        }
        let mut out = Headers::new();
        self.allow_origin(origin, &mut out);
        let echo = |explicit: bool| explicit || self.credentials;
        out.append(
            "access-control-allow-methods",
            if echo(self.methods.is_some()) {
                method.clone()
            } else {
                Bytes::from_static(b"*")
            },
        );
        if let Some(requested) = requested {
            out.append(
                "access-control-allow-headers",
                if echo(self.headers.is_some()) {
                    requested.clone()
                } else {
                    Bytes::from_static(b"*")
                },
            );
        }
        if let Some(age) = self.max_age {
            out.append("access-control-max-age", Bytes::from(age.to_string()));
        }
        Verdict::Preflight(out)
    }

    fn allow_origin(&self, origin: &Bytes, out: &mut Headers) {
        if self.origins.is_some() || self.credentials {
            out.append("access-control-allow-origin", origin.clone());
            if self.credentials {
                out.append(
                    "access-control-allow-credentials",
                    Bytes::from_static(b"true"),
                );
            }
            out.append("vary", Bytes::from_static(b"origin"));
        } else {
            out.append("access-control-allow-origin", Bytes::from_static(b"*"));
        }
    }

    /// Adds the allow-origin, credentials and expose headers to a response for `origin`.
    pub(crate) fn decorate(&self, origin: &Bytes, response: &mut Headers) {
        let exposable: Vec<Bytes> = response
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                !n.starts_with(b":")
                    && !n.starts_with(b"access-control-")
                    && !SAFELISTED.iter().any(|s| s.as_bytes() == n.as_ref())
            })
            .cloned()
            .collect();
        self.allow_origin(origin, response);
        match &self.expose {
            Some(list) if !list.is_empty() => {
                response.append("access-control-expose-headers", Bytes::from(list.join(",")));
            }
            _ if exposable.is_empty() => {}
            _ if self.credentials => {
                // `*` is not honoured with credentials: name the headers.
                let names: Vec<&str> = exposable
                    .iter()
                    .filter_map(|n| std::str::from_utf8(n).ok())
                    .collect();
                response.append(
                    "access-control-expose-headers",
                    Bytes::from(names.join(",")),
                );
            }
            _ => response.append("access-control-expose-headers", Bytes::from_static(b"*")),
        }
    }
}

/// True if `origin` (`scheme://host[:port]`) is the request's own scheme and authority, default
/// ports (80, 443) included.
pub(crate) fn same_origin(origin: &str, scheme: &str, authority: &str) -> bool {
    let Some((o_scheme, o_host)) = origin.split_once("://") else {
        return false;
    };
    o_scheme.eq_ignore_ascii_case(scheme)
        && with_port(o_host, scheme).eq_ignore_ascii_case(&with_port(authority, scheme))
}

/// `authority` with the scheme's default port appended when it has none.
pub(crate) fn with_port(authority: &str, scheme: &str) -> String {
    if has_port(authority) {
        authority.to_string()
    } else {
        let port = if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        format!("{authority}:{port}")
    }
}

/// True if the authority ends with `:port` (IPv6 literals in brackets handled).
pub(crate) fn has_port(authority: &str) -> bool {
    match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Allow, Expose};

    fn req(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (Bytes::from(n.to_string()), Bytes::from(v.to_string())))
            .collect()
    }

    fn cross(allow: Option<Allow>) -> Cors {
        Cors::new(Some(&AccessControl {
            policy: Policy::CrossOrigin,
            allow,
            max_age: Some(10),
            expose: None,
        }))
    }

    #[test]
    fn same_origin_default_refuses_foreign_origins_only() {
        let cors = Cors::new(None);
        let base = [(":scheme", "http"), (":authority", "example.com:80")];
        assert!(matches!(cors.check(&req(&base)), Verdict::Plain));
        let mut same = base.to_vec();
        same.push(("origin", "http://example.com"));
        assert!(matches!(cors.check(&req(&same)), Verdict::Plain));
        let mut foreign = base.to_vec();
        foreign.push(("origin", "http://other.com"));
        assert!(matches!(cors.check(&req(&foreign)), Verdict::Forbidden));
    }

    #[test]
    fn preflight_wildcard_and_refusals() {
        let r = req(&[
            (":method", "OPTIONS"),
            (":scheme", "http"),
            (":authority", "example.com:80"),
            ("origin", "http://app.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-a"),
        ]);
        let Verdict::Preflight(h) = cross(None).check(&r) else {
            panic!("expected a preflight answer");
        };
        assert_eq!(h.get_str("access-control-allow-origin"), Some("*"));
        assert_eq!(h.get_str("access-control-allow-methods"), Some("*"));
        assert_eq!(h.get_str("access-control-allow-headers"), Some("*"));
        assert_eq!(h.get_str("access-control-max-age"), Some("10"));

        let strict = cross(Some(Allow {
            origins: Some(vec!["http://app.com".into()]),
            methods: Some(vec!["GET".into()]),
            headers: None,
            credentials: None,
        }));
        assert!(matches!(strict.check(&r), Verdict::Forbidden));
    }

    #[test]
    fn decorate_exposes_custom_headers() {
        let cors = Cors::new(Some(&AccessControl {
            policy: Policy::CrossOrigin,
            allow: None,
            max_age: None,
            expose: Some(Expose {
                headers: Some(vec!["x-a".into(), "x-b".into()]),
            }),
        }));
        let mut resp = req(&[(":status", "200"), ("x-a", "1")]);
        cors.decorate(&Bytes::from_static(b"http://app.com"), &mut resp);
        assert_eq!(resp.get_str("access-control-allow-origin"), Some("*"));
        assert_eq!(
            resp.get_str("access-control-expose-headers"),
            Some("x-a,x-b")
        );
    }

    #[test]
    fn ports() {
        assert_eq!(with_port("example.com", "http"), "example.com:80");
        assert_eq!(with_port("example.com", "https"), "example.com:443");
        assert_eq!(with_port("example.com:8080", "http"), "example.com:8080");
        assert_eq!(with_port("[::1]", "http"), "[::1]:80");
        assert_eq!(with_port("[::1]:9", "http"), "[::1]:9");
        assert!(same_origin("https://a.com", "https", "a.com:443"));
        assert!(!same_origin("http://a.com", "https", "a.com:443"));
    }
}
