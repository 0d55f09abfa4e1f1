//! The `http` protocol: one request/response exchange per stream, independent of the HTTP
//! version on the wire.
//!
//! The initial direction's `Begin` carries the request headers, pseudo-headers included
//! (`:method`, `:scheme`, `:authority`, `:path`); its data frames are the request body. The reply
//! `Begin` carries `:status` and the response headers; its data frames are the response body,
//! each flushed to the client as it arrives. `End` may carry [`HttpTrailers`]. A binding that
//! refuses a request before replying may reset it with [`HttpReset`] to choose the status the
//! client sees (404 otherwise). The reader of a response may challenge its writer with
//! [`HttpChallenge`] (guard credentials about to expire).

use bytes::Bytes;
use zilla_engine::{Protocol, Reset};

/// The `http` protocol marker.
#[derive(Debug, Clone, Copy)]
pub struct Http;

impl Protocol for Http {
    const NAME: &'static str = "http";
    type Begin = HttpBegin;
    type Data = ();
    type End = HttpTrailers;
    type Reset = HttpReset;
    type Challenge = HttpChallenge;
}

/// Request or response headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpBegin {
    /// The headers, pseudo-headers first.
    pub headers: Headers,
}

impl HttpBegin {
    /// A response begin with `:status`.
    pub fn status(status: u16) -> Self {
        let mut headers = Headers::default();
        headers.set(":status", Bytes::from(status.to_string()));
        HttpBegin { headers }
    }
}

/// An ordered header list; names are lower case, values raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(Bytes, Bytes)>);

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// A list of `(name, value)` pairs given as text (names lower case), in order.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    Bytes::copy_from_slice(n.as_bytes()),
                    Bytes::copy_from_slice(v.as_bytes()),
                )
            })
            .collect()
    }

    /// An empty list with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        Headers(Vec::with_capacity(n))
    }

    /// The first value of `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0
            .iter()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The first value of `name` as text, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// Replaces every value of `name` with `value` (appends if absent). `name` must be lower case.
    pub fn set(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                self.0[i].1 = value;
                let mut j = i + 1;
                while j < self.0.len() {
                    if self.0[j].0 == name {
                        self.0.remove(j);
                    } else {
                        j += 1;
                    }
                }
            }
            None => self.0.push((name, value)),
        }
    }

    /// Adds a value, keeping existing ones. `name` must be lower case.
    pub fn append(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.0.push((name.into(), value.into()));
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n.as_ref() != name.as_bytes());
    }

    /// Every `(name, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(Bytes, Bytes)> for Headers {
    fn from_iter<I: IntoIterator<Item = (Bytes, Bytes)>>(iter: I) -> Self {
        Headers(iter.into_iter().collect())
    }
}

/// Reset extension: the status (and headers) an http server answers with when the request is
/// refused before a response began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReset {
    /// Status code, e.g. 404, 405, 400, 502.
    pub status: u16,
    /// Extra response headers.
    pub headers: Headers,
}

impl HttpReset {
    /// A refusal answered with `status` and no extra headers.
    pub fn status(status: u16) -> Self {
        HttpReset {
            status,
            headers: Headers::new(),
        }
    }

    /// The reset of a stream of protocol `P` (http, or sse, whose refusals are http statuses)
    /// answered with `status`: the one way a binding refuses a request with a status.
    pub fn refuse<P: Protocol<Reset = HttpReset>>(status: u16) -> Reset<P> {
        Reset::with(HttpReset::status(status))
    }
}

/// End extension: trailers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpTrailers(pub Headers);

/// Challenge extension sent to the writer of a response: ask the client for fresh credentials.
/// `headers` holds `:method` and the headers the client must send (`content-type`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpChallenge {
    /// `:method` plus the headers of the expected challenge response.
    pub headers: Headers,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_all_values() {
        let mut h = Headers::new();
        h.append("a", "1");
        h.append("b", "2");
        h.append("a", "3");
        h.set("a", "4");
        assert_eq!(
            h.iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect::<Vec<_>>(),
            vec![
                (Bytes::from("a"), Bytes::from("4")),
                (Bytes::from("b"), Bytes::from("2"))
            ]
        );
    }
}
