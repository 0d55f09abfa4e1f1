//! Turning an http request into an sse begin: method, last event id, path.

use bytes::Bytes;
use proto_http::Headers;
use proto_sse::SseBegin;

/// The longest last event id accepted, in bytes (Zilla's limit).
pub(crate) const MAX_ID: usize = 254;

/// Why a request is refused before routing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Not a GET: 405.
    Method,
    /// Last event id over 254 bytes: 400.
    LastEventId,
}

/// The parts of an accepted request.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) begin: SseBegin,
}

/// Checks the method, takes the last event id from the `last-event-id` header or the
/// `lastEventId` query parameter, and strips the query from the path.
pub(crate) fn parse(headers: &Headers) -> Result<Request, Rejected> {
    if headers.get(":method").map(|m| m.as_ref()) != Some(b"GET") {
        return Err(Rejected::Method);
    }
    let full = headers
        .get(":path")
        .cloned()
        .unwrap_or_else(|| Bytes::from_static(b"/"));
    let (path, query) = match full.iter().position(|&b| b == b'?') {
        Some(q) => (full.slice(..q), Some(full.slice(q + 1..))),
        None => (full.clone(), None),
    };
    let last_id = match headers.get("last-event-id") {
        Some(id) => Some(id.clone()),
        None => query.as_ref().and_then(|q| query_param(q, b"lastEventId")),
    };
    if last_id.as_ref().is_some_and(|id| id.len() > MAX_ID) {
        return Err(Rejected::LastEventId);
    }
    let timestamps = headers
        .get("accept")
        .is_some_and(|a| a.windows(13).any(|w| w == b"ext=timestamp"));
    Ok(Request {
        begin: SseBegin {
            scheme: headers
                .get(":scheme")
                .cloned()
                .unwrap_or_else(|| Bytes::from_static(b"http")),
            authority: headers.get(":authority").cloned().unwrap_or_default(),
            path,
            last_id,
            timestamps,
            batch: false,
        },
    })
}

/// The first value of `name` in a query string, percent-decoded when it contains `%`.
fn query_param(query: &Bytes, name: &[u8]) -> Option<Bytes> {
    for pair in query.split(|&b| b == b'&') {
        if let Some(value) = pair.strip_prefix(name).and_then(|r| r.strip_prefix(b"=")) {
            if value.contains(&b'%') {
                return Some(percent_decode(value));
            }
            return Some(Bytes::copy_from_slice(value));
        }
    }
    None
}

fn percent_decode(v: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    v.get(i + 1).and_then(|&b| hex(b)),
                    v.get(i + 2).and_then(|&b| hex(b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs)
    }

    fn get(path: &str, extra: &[(&str, &str)]) -> Result<Request, Rejected> {
        let mut h = vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "localhost:8080"),
            (":path", path),
        ];
        h.extend_from_slice(extra);
        parse(&headers(&h))
    }

    #[test]
    fn method_must_be_get() {
        let h = headers(&[(":method", "POST"), (":path", "/events")]);
        assert_eq!(parse(&h).unwrap_err(), Rejected::Method);
    }

    #[test]
    fn query_is_stripped_and_last_event_id_read() {
        let r = get("/events?.p=v", &[]).unwrap();
        assert_eq!(r.begin.path, "/events");
        assert_eq!(r.begin.last_id, None);
        let r = get("/events?lastEventId=100", &[]).unwrap();
        assert_eq!(r.begin.last_id.as_deref(), Some(&b"100"[..]));
        let r = get("/events?lastEventId=%31%30%30", &[]).unwrap();
        assert_eq!(r.begin.last_id.as_deref(), Some(&b"100"[..]));
        let r = get("/events?lastEventId=", &[]).unwrap();
        assert_eq!(r.begin.last_id.as_deref(), Some(&b""[..]));
        let r = get("/events?lastEventId=104", &[("last-event-id", "105")]).unwrap();
        assert_eq!(
            r.begin.last_id.as_deref(),
            Some(&b"105"[..]),
            "the header wins"
        );
        let r = get("/events", &[("last-event-id", "")]).unwrap();
        assert_eq!(r.begin.last_id.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn ids_over_254_bytes_are_rejected() {
        assert!(get("/events", &[("last-event-id", &"x".repeat(254))]).is_ok());
        assert_eq!(
            get("/events", &[("last-event-id", &"x".repeat(255))]).unwrap_err(),
            Rejected::LastEventId
        );
        assert_eq!(
            get("/events", &[("last-event-id", &"😀".repeat(64))]).unwrap_err(),
            Rejected::LastEventId
        );
        assert_eq!(
            get(&format!("/events?lastEventId={}", "x".repeat(256)), &[]).unwrap_err(),
            Rejected::LastEventId
        );
    }

    #[test]
    fn timestamps_requested_through_accept() {
        assert!(
            get("/events", &[("accept", "text/event-stream;ext=timestamp")])
                .unwrap()
                .begin
                .timestamps
        );
        assert!(
            !get("/events", &[("accept", "text/event-stream")])
                .unwrap()
                .begin
                .timestamps
        );
    }
}
