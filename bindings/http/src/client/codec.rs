//! The HTTP/1.1 wire format of the client: request heads and body framing out, response heads and
//! bodies in.
//!
//! Decoding never panics on what a peer sends: every malformed or oversized input is an error the
//! caller turns into a `502` (before the response began) or an aborted reply (after). Body bytes
//! are handed on as slices of the `Bytes` that were read, never copied.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use proto_http::Headers;

/// Largest response head (status line and headers) accepted, in bytes.
pub(crate) const MAX_HEAD: usize = 32 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 128;
/// Largest chunk-size line (with extensions) accepted, in bytes.
const MAX_CHUNK_LINE: usize = 8 * 1024;
/// Largest trailer block accepted, in bytes.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a request could not be encoded (the caller answers `400`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestError(pub(crate) String);

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestBody {
    /// No body (a GET without `content-length`): data frames from the app are ignored.
    None,
    /// `Content-Length: n`: the body is sent as is.
    Length(u64),
    /// `Transfer-Encoding: chunked`: each data frame becomes one chunk.
    Chunked,
}

/// Request headers that describe one connection hop and are never forwarded.
fn is_hop_by_hop(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection"
            | b"keep-alive"
            | b"proxy-connection"
            | b"transfer-encoding"
            | b"upgrade"
            | b"http2-settings"
            | b"te"
            | b"host"
    )
}

/// Methods that carry a body even when the request says nothing of its length.
fn method_has_body(method: &[u8]) -> bool {
    matches!(method, b"POST" | b"PUT" | b"PATCH")
}

fn is_token(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c))
}

fn is_field_value(b: &[u8]) -> bool {
    b.iter().all(|&c| c == b'\t' || (c >= b' ' && c != 0x7f))
}

/// Writes `name` Title-Cased (`content-type` -> `Content-Type`), as Zilla writes HTTP/1.1 headers.
fn put_title_case(out: &mut BytesMut, name: &[u8]) {
    let mut upper = true;
    for &c in name {
        out.put_u8(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == b'-';
    }
}

/// Encodes the request line and headers of `headers` (pseudo-headers included, overrides already
/// applied): `:authority` becomes `Host`, hop-by-hop headers are dropped and the body framing
/// header is written from the returned [`RequestBody`].
pub(crate) fn encode_request_head(headers: &Headers) -> Result<(Bytes, RequestBody), RequestError> {
    let method = headers
        .get(":method")
        .ok_or_else(|| RequestError("the request has no :method".into()))?;
    if !is_token(method) {
        return Err(RequestError(
            "the request :method is not a valid token".into(),
        ));
    }
    let path = headers
        .get(":path")
        .map(Bytes::as_ref)
        .filter(|p| !p.is_empty())
        .unwrap_or(b"/");
    if path.iter().any(|&c| c <= b' ' || c == 0x7f) {
        return Err(RequestError(
            "the request :path contains spaces or control characters".into(),
        ));
    }
    let host = headers
        .get(":authority")
        .or_else(|| headers.get("host"))
        .ok_or_else(|| RequestError("the request has neither :authority nor host".into()))?;
    if !is_field_value(host) || host.is_empty() {
        return Err(RequestError(
            "the request :authority is not a valid host".into(),
        ));
    }
    let body = match headers.get("content-length") {
        Some(v) => RequestBody::Length(
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| RequestError("the request content-length is not a number".into()))?,
        ),
        None if headers
            .get("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"))
            || method_has_body(method) =>
        {
            RequestBody::Chunked
        }
        None => RequestBody::None,
    };

    let mut out = BytesMut::with_capacity(256);
    out.put_slice(method);
    out.put_u8(b' ');
    out.put_slice(path);
    out.put_slice(b" HTTP/1.1\r\nHost: ");
    out.put_slice(host);
    out.put_slice(b"\r\n");
    for (name, value) in headers.iter() {
        if name.starts_with(b":") || is_hop_by_hop(name) || name.as_ref() == b"content-length" {
            continue;
        }
        if !is_token(name) {
            return Err(RequestError(format!(
                "request header name {:?} is not a valid token",
                String::from_utf8_lossy(name)
            )));
        }
        if !is_field_value(value) {
            return Err(RequestError(format!(
                "request header {:?} has a value with control characters",
                String::from_utf8_lossy(name)
            )));
        }
        put_title_case(&mut out, name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    match body {
        RequestBody::Length(n) => {
            out.put_slice(b"Content-Length: ");
            out.put_slice(n.to_string().as_bytes());
            out.put_slice(b"\r\n");
        }
        RequestBody::Chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        RequestBody::None => {}
    }
    out.put_slice(b"\r\n");
    Ok((out.freeze(), body))
}

/// The size line that opens a chunk of `len` bytes; `first` is false when the CRLF closing the
/// previous chunk must come first (so a chunk costs two frames: this line and the payload).
pub(crate) fn chunk_header(len: usize, first: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(20);
    if !first {
        out.put_slice(b"\r\n");
    }
    out.put_slice(format!("{len:x}\r\n").as_bytes());
    out.freeze()
}

/// The bytes that end a chunked body (closing the last chunk if any), with optional trailers.
pub(crate) fn chunked_end(first: bool, trailers: Option<&Headers>) -> Result<Bytes, RequestError> {
    let mut out = BytesMut::with_capacity(16);
    if !first {
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flat_map(Headers::iter) {
        if name.starts_with(b":") {
            continue;
        }
        if !is_token(name) || !is_field_value(value) {
            return Err(RequestError(
                "a request trailer is not a valid header".into(),
            ));
        }
        put_title_case(&mut out, name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    Ok(out.freeze())
}

/// Why a response could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResponseError {
    /// The status line or a header is not HTTP/1.x.
    Malformed(&'static str),
    /// The head is larger than [`MAX_HEAD`] or has too many headers.
    TooLarge,
    /// The body framing is broken (bad chunk size, missing CRLF, oversized trailers).
    BadBody(&'static str),
    /// The connection ended before the body did.
    Truncated,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Malformed(what) => write!(f, "malformed response: {what}"),
            ResponseError::TooLarge => write!(
                f,
                "response head larger than {MAX_HEAD} bytes or {MAX_HEADERS} headers"
            ),
            ResponseError::BadBody(what) => write!(f, "malformed response body: {what}"),
            ResponseError::Truncated => f.write_str("connection closed before the response ended"),
        }
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// No body (HEAD, 204, 304).
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes.
    Close,
}

/// A decoded response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    /// `:status` and the headers, names lower case, hop-by-hop headers removed.
    pub(crate) headers: Headers,
    /// The status code.
    pub(crate) status: u16,
    /// How the body is delimited.
    pub(crate) body: BodyKind,
    /// True if the connection may carry another request afterwards.
    pub(crate) keep_alive: bool,
}

/// Accumulates response bytes until a complete head is there.
#[derive(Debug, Default)]
pub(crate) struct HeadReader {
    buf: BytesMut,
}

enum Parsed {
    Partial,
    Informational(usize),
    Final(ResponseHead, usize),
}

impl HeadReader {
    /// Feeds bytes read from the connection; returns the head and whatever body bytes followed
    /// it once complete. Interim `1xx` responses (other than `101`) are skipped.
    pub(crate) fn push(
        &mut self,
        mut chunk: Bytes,
        head_request: bool,
    ) -> Result<Option<(ResponseHead, Bytes)>, ResponseError> {
        loop {
            if self.buf.is_empty() {
                // Fast path: the head is whole in this read, parse it in place.
                match parse_head(&chunk, head_request)? {
                    Parsed::Partial => {
                        if chunk.len() > MAX_HEAD {
                            return Err(ResponseError::TooLarge);
                        }
                        self.buf.extend_from_slice(&chunk);
                        return Ok(None);
                    }
                    Parsed::Informational(n) => {
                        chunk.advance(n);
                        if chunk.is_empty() {
                            return Ok(None);
                        }
                    }
                    Parsed::Final(head, n) => return Ok(Some((head, chunk.split_off(n)))),
                }
            } else {
                self.buf.extend_from_slice(&chunk);
                if is_partial(&self.buf) {
                    if self.buf.len() > MAX_HEAD {
                        return Err(ResponseError::TooLarge);
                    }
                    return Ok(None);
                }
                let all = self.buf.split().freeze();
                match parse_head(&all, head_request)? {
                    Parsed::Partial => return Err(ResponseError::Malformed("incomplete head")),
                    Parsed::Informational(n) => {
                        chunk = all.slice(n..);
                        if chunk.is_empty() {
                            return Ok(None);
                        }
                    }
                    Parsed::Final(head, n) => return Ok(Some((head, all.slice(n..)))),
                }
            }
        }
    }
}

/// Response headers that describe one connection hop and are not handed to the app.
fn is_response_hop_by_hop(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
    )
}

/// True if `buf` is the start of a head that is not complete yet (errors are reported by the
/// full parse).
fn is_partial(buf: &[u8]) -> bool {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    matches!(
        httparse::Response::new(&mut slots).parse(buf),
        Ok(httparse::Status::Partial)
    )
}

fn parse_head(bytes: &Bytes, head_request: bool) -> Result<Parsed, ResponseError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let n = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(e) => {
            return Err(ResponseError::Malformed(match e {
                httparse::Error::Status => "invalid status code",
                httparse::Error::Version => "not HTTP/1.x",
                httparse::Error::HeaderName => "invalid header name",
                httparse::Error::HeaderValue => "invalid header value",
                _ => "invalid status line",
            }))
        }
    };
    if n > MAX_HEAD {
        return Err(ResponseError::TooLarge);
    }
    let status = response.code.unwrap_or(0);
    if (100..200).contains(&status) && status != 101 {
        return Ok(Parsed::Informational(n));
    }
    let http10 = response.version == Some(0);
    let mut keep_alive = !http10;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut length: Option<u64> = None;
    let mut headers = Headers::new();
    headers.set(":status", Bytes::from(status.to_string()));
    for h in response.headers.iter() {
        let raw = h.name.as_bytes();
        let name = if raw.iter().any(u8::is_ascii_uppercase) {
            Bytes::from(raw.to_ascii_lowercase())
        } else {
            bytes.slice_ref(raw)
        };
        let value = bytes.slice_ref(h.value);
        match name.as_ref() {
            b"connection" => {
                for token in h.value.split(|&c| c == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                        keep_alive = true;
                    }
                }
            }
            b"transfer-encoding" => {
                transfer_encoding = true;
                // Only the last coding says whether the body is chunked.
                chunked = h
                    .value
                    .rsplit(|&c| c == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            b"content-length" => {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or(ResponseError::Malformed("invalid content-length"))?;
                if length.is_some_and(|m| m != n) {
                    return Err(ResponseError::Malformed(
                        "conflicting content-length values",
                    ));
                }
                length = Some(n);
            }
            _ => {}
        }
        if !is_response_hop_by_hop(&name) {
            headers.append(name, value);
        }
    }
    let body = if head_request || status == 204 || status == 304 || status == 101 {
        BodyKind::None
    } else if transfer_encoding {
        if chunked {
            BodyKind::Chunked
        } else {
            BodyKind::Close
        }
    } else if let Some(n) = length {
        BodyKind::Length(n)
    } else {
        BodyKind::Close
    };
    if transfer_encoding {
        // A length next to a transfer-encoding is meaningless (and a smuggling vector).
        headers.remove("content-length");
    }
    if body == BodyKind::Close || status == 101 {
        keep_alive = false;
    }
    Ok(Parsed::Final(
        ResponseHead {
            headers,
            status,
            body,
            keep_alive,
        },
        n,
    ))
}

/// One decoded piece of a response body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// Body bytes: a slice of what was read.
    Data(Bytes),
    /// The body is complete, with trailers if the chunked body had any.
    End(Option<Headers>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Close,
    ChunkSize,
    ChunkData(u64),
    /// After chunk data: how many bytes of its CRLF were seen.
    ChunkCrlf(u8),
    Trailers,
    Done,
}

/// Decodes a response body incrementally, whatever the fragmentation of its input.
#[derive(Debug)]
pub(crate) struct BodyDecoder {
    state: State,
    line: BytesMut,
    ended: bool,
}

impl BodyDecoder {
    /// A decoder for a body delimited as `kind`.
    pub(crate) fn new(kind: BodyKind) -> Self {
        let state = match kind {
            BodyKind::None | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::ChunkSize,
            BodyKind::Close => State::Close,
        };
        BodyDecoder {
            state,
            line: BytesMut::new(),
            ended: false,
        }
    }

    /// Takes the next piece out of `input`; `Ok(None)` when more input is needed, or after
    /// [`Body::End`] was returned (bytes past the body are left in `input`). A body without bytes
    /// (HEAD, 204, length 0) returns its `End` on the first call, even with empty input.
    pub(crate) fn decode(&mut self, input: &mut Bytes) -> Result<Option<Body>, ResponseError> {
        loop {
            match self.state {
                State::Done if self.ended => return Ok(None),
                State::Done => {
                    self.ended = true;
                    return Ok(Some(Body::End(None)));
                }
                _ if input.is_empty() => return Ok(None),
                State::Close => return Ok(Some(Body::Data(input.split_to(input.len())))),
                State::Length(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    return Ok(Some(Body::Data(input.split_to(n))));
                }
                State::ChunkData(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::ChunkCrlf(0)
                    } else {
                        State::ChunkData(left)
                    };
                    return Ok(Some(Body::Data(input.split_to(n))));
                }
                State::ChunkCrlf(seen) => {
                    let expected = if seen == 0 { b'\r' } else { b'\n' };
                    if input[0] != expected {
                        return Err(ResponseError::BadBody("chunk data not followed by CRLF"));
                    }
                    input.advance(1);
                    self.state = if seen == 0 {
                        State::ChunkCrlf(1)
                    } else {
                        State::ChunkSize
                    };
                }
                State::ChunkSize => {
                    let Some(line) = self.take_line(input, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let size = parse_chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::Trailers => {
                    // Gather whole lines until an empty one; the block is parsed at its end.
                    let Some(pos) = input.iter().position(|&c| c == b'\n') else {
                        if self.line.len() + input.len() > MAX_TRAILERS {
                            return Err(ResponseError::BadBody("trailers too large"));
                        }
                        self.line.extend_from_slice(input);
                        input.clear();
                        return Ok(None);
                    };
                    if self.line.len() + pos + 1 > MAX_TRAILERS {
                        return Err(ResponseError::BadBody("trailers too large"));
                    }
                    let line_start = self
                        .line
                        .iter()
                        .rposition(|&c| c == b'\n')
                        .map_or(0, |i| i + 1);
                    self.line.extend_from_slice(&input[..=pos]);
                    input.advance(pos + 1);
                    let current = &self.line[line_start..];
                    if current == b"\r\n" || current == b"\n" {
                        let block = self.line.split().freeze();
                        self.state = State::Done;
                        self.ended = true;
                        return Ok(Some(Body::End(parse_trailers(&block)?)));
                    }
                }
            }
        }
    }

    /// The connection ended: the end of a close-delimited body, an error for any other.
    pub(crate) fn eof(&mut self) -> Result<Body, ResponseError> {
        match self.state {
            State::Close => {
                self.state = State::Done;
                Ok(Body::End(None))
            }
            _ => Err(ResponseError::Truncated),
        }
    }

    /// Takes one CRLF-terminated line (without its terminator) out of `input`, buffering a
    /// partial one; a line over `max` bytes is an error.
    fn take_line(&mut self, input: &mut Bytes, max: usize) -> Result<Option<Bytes>, ResponseError> {
        match input.iter().position(|&c| c == b'\n') {
            None => {
                if self.line.len() + input.len() > max {
                    return Err(ResponseError::BadBody("chunk size line too long"));
                }
                self.line.extend_from_slice(input);
                input.clear();
                Ok(None)
            }
            Some(pos) => {
                if self.line.len() + pos > max {
                    return Err(ResponseError::BadBody("chunk size line too long"));
                }
                let mut line = if self.line.is_empty() {
                    input.split_to(pos + 1)
                } else {
                    self.line.extend_from_slice(&input[..=pos]);
                    input.advance(pos + 1);
                    self.line.split().freeze()
                };
                line.truncate(line.len() - 1);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                Ok(Some(line))
            }
        }
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, ResponseError> {
    let digits = line
        .split(|&c| c == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(ResponseError::BadBody("invalid chunk size"));
    }
    let mut size = 0u64;
    for &c in digits {
        let d = (c as char)
            .to_digit(16)
            .ok_or(ResponseError::BadBody("invalid chunk size"))?;
        size = size * 16 + u64::from(d);
    }
    Ok(size)
}

fn parse_trailers(block: &Bytes) -> Result<Option<Headers>, ResponseError> {
    if block.as_ref() == b"\r\n" || block.as_ref() == b"\n" {
        return Ok(None);
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = httparse::parse_headers(block, &mut slots)
        .map_err(|_| ResponseError::BadBody("invalid trailer"))?;
    let httparse::Status::Complete((_, fields)) = parsed else {
        return Err(ResponseError::BadBody("invalid trailer"));
    };
    let mut trailers = Headers::new();
    for h in fields {
        trailers.append(
            Bytes::from(h.name.to_ascii_lowercase()),
            block.slice_ref(h.value),
        );
    }
    Ok(Some(trailers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs)
    }

    /// What decoding a whole response gave: head, body bytes, how it ended (trailers), and how
    /// many bytes followed the body.
    type Decoded = (ResponseHead, Vec<u8>, Option<Option<Headers>>, usize);

    /// Decodes `wire` fed in pieces of `step` bytes.
    fn decode_in_steps(
        wire: &[u8],
        step: usize,
        head_request: bool,
    ) -> Result<Decoded, ResponseError> {
        let mut reader = HeadReader::default();
        let mut decoder: Option<(ResponseHead, BodyDecoder)> = None;
        let mut body = Vec::new();
        let mut end = None;
        let mut leftover = 0;
        for piece in wire.chunks(step.max(1)) {
            let mut input = Bytes::copy_from_slice(piece);
            if decoder.is_none() {
                match reader.push(input, head_request)? {
                    None => continue,
                    Some((head, rest)) => {
                        let d = BodyDecoder::new(head.body);
                        decoder = Some((head, d));
                        input = rest;
                    }
                }
            }
            let (_, d) = decoder.as_mut().expect("head decoded");
            while let Some(piece) = d.decode(&mut input)? {
                match piece {
                    Body::Data(b) => body.extend_from_slice(&b),
                    Body::End(t) => end = Some(t),
                }
            }
            leftover += input.len();
        }
        let (head, mut d) = decoder.ok_or(ResponseError::Truncated)?;
        if end.is_none() {
            if let Body::End(t) = d.eof()? {
                end = Some(t);
            }
        }
        Ok((head, body, end, leftover))
    }

    #[test]
    fn request_head_has_host_title_cased_headers_and_framing() {
        let h = headers(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "example.com:8080"),
            (":path", "/events?x=1"),
            ("accept", "text/event-stream"),
            ("connection", "keep-alive"),
            ("x-custom-header", "v"),
        ]);
        let (head, body) = encode_request_head(&h).unwrap();
        assert_eq!(
            head.as_ref(),
            b"GET /events?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: text/event-stream\r\nX-Custom-Header: v\r\n\r\n"
        );
        assert_eq!(body, RequestBody::None);

        let post = headers(&[(":method", "POST"), (":authority", "a"), (":path", "/p")]);
        let (head, body) = encode_request_head(&post).unwrap();
        assert!(head.ends_with(b"Transfer-Encoding: chunked\r\n\r\n"));
        assert_eq!(body, RequestBody::Chunked);

        let put = headers(&[
            (":method", "PUT"),
            (":authority", "a"),
            ("content-length", "5"),
        ]);
        let (head, body) = encode_request_head(&put).unwrap();
        assert!(head.starts_with(b"PUT / HTTP/1.1\r\n"));
        assert!(head.ends_with(b"Content-Length: 5\r\n\r\n"));
        assert_eq!(body, RequestBody::Length(5));
    }

    #[test]
    fn request_with_injected_line_breaks_is_refused() {
        let bad_value = headers(&[
            (":method", "GET"),
            (":authority", "a"),
            ("x", "1\r\nEvil: yes"),
        ]);
        assert!(encode_request_head(&bad_value).is_err());
        let bad_path = headers(&[
            (":method", "GET"),
            (":authority", "a"),
            (":path", "/ HTTP/1.0\r\n"),
        ]);
        assert!(encode_request_head(&bad_path).is_err());
        let no_host = headers(&[(":method", "GET"), (":path", "/")]);
        let e = encode_request_head(&no_host).unwrap_err();
        assert!(e.0.contains(":authority"), "{e}");
    }

    #[test]
    fn chunk_framing() {
        assert_eq!(chunk_header(26, true).as_ref(), b"1a\r\n");
        assert_eq!(chunk_header(1, false).as_ref(), b"\r\n1\r\n");
        assert_eq!(chunked_end(true, None).unwrap().as_ref(), b"0\r\n\r\n");
        let t = headers(&[("grpc-status", "0")]);
        assert_eq!(
            chunked_end(false, Some(&t)).unwrap().as_ref(),
            b"\r\n0\r\nGrpc-Status: 0\r\n\r\n"
        );
    }

    #[test]
    fn content_length_response_at_every_fragmentation() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nX-Up: A\r\n\r\nhello world";
        for step in 1..=wire.len() {
            let (head, body, end, leftover) = decode_in_steps(wire, step, false).unwrap();
            assert_eq!(head.status, 200);
            assert_eq!(head.headers.get_str(":status"), Some("200"));
            assert_eq!(head.headers.get_str("content-type"), Some("text/plain"));
            assert_eq!(head.headers.get_str("content-length"), Some("11"));
            assert_eq!(head.headers.get_str("x-up"), Some("A"));
            assert!(head.keep_alive);
            assert_eq!(body, b"hello world", "step {step}");
            assert_eq!(end, Some(None));
            assert_eq!(leftover, 0);
        }
    }

    #[test]
    fn chunked_response_with_extensions_and_trailers_at_every_fragmentation() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value;x\r\nhello\r\n1 \r\n \r\nA\r\n0123456789\r\n0\r\nGrpc-Status: 0\r\nX-Trailer: done\r\n\r\n";
        for step in 1..=wire.len() {
            let (head, body, end, leftover) = decode_in_steps(wire, step, false).unwrap();
            assert_eq!(head.body, BodyKind::Chunked);
            assert!(head.headers.get("transfer-encoding").is_none());
            assert_eq!(body, b"hello 0123456789", "step {step}");
            let trailers = end.expect("ended").expect("trailers");
            assert_eq!(trailers.get_str("grpc-status"), Some("0"));
            assert_eq!(trailers.get_str("x-trailer"), Some("done"));
            assert_eq!(leftover, 0);
        }
    }

    #[test]
    fn chunked_without_trailers_ends_without_them() {
        let wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        for step in 1..=wire.len() {
            let (_, body, end, _) = decode_in_steps(wire, step, false).unwrap();
            assert_eq!(body, b"abc");
            assert_eq!(end, Some(None));
        }
    }

    #[test]
    fn interim_100_continue_is_skipped() {
        let wire =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        for step in 1..=wire.len() {
            let (head, body, _, _) = decode_in_steps(wire, step, false).unwrap();
            assert_eq!(head.status, 201);
            assert_eq!(body, b"ok");
        }
    }

    #[test]
    fn close_delimited_and_bodiless_responses() {
        let wire = b"HTTP/1.1 200 OK\r\n\r\nuntil close";
        let (head, body, end, _) = decode_in_steps(wire, 3, false).unwrap();
        assert_eq!(head.body, BodyKind::Close);
        assert!(!head.keep_alive);
        assert_eq!(body, b"until close");
        assert_eq!(end, Some(None));

        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        let (head, body, end, _) = decode_in_steps(wire, 5, true).unwrap();
        assert_eq!(head.body, BodyKind::None);
        assert_eq!(head.headers.get_str("content-length"), Some("100"));
        assert!(body.is_empty());
        assert_eq!(end, Some(None));

        let wire = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        let (head, _, end, _) = decode_in_steps(wire, 5, false).unwrap();
        assert!(!head.keep_alive);
        assert!(head.headers.get("connection").is_none());
        assert_eq!(end, Some(None));

        let wire = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        let (head, _, _, _) = decode_in_steps(wire, 5, false).unwrap();
        assert!(!head.keep_alive, "HTTP/1.0 closes unless keep-alive");
    }

    #[test]
    fn large_body_is_sliced_not_copied() {
        let mut wire = b"HTTP/1.1 200 OK\r\nContent-Length: 102400\r\n\r\n".to_vec();
        let head_len = wire.len();
        wire.extend((0..102_400u32).map(|i| (i % 251) as u8));
        let wire = Bytes::from(wire);
        let mut reader = HeadReader::default();
        let (head, mut rest) = reader.push(wire.clone(), false).unwrap().unwrap();
        assert_eq!(head.body, BodyKind::Length(102_400));
        let mut d = BodyDecoder::new(head.body);
        let Some(Body::Data(data)) = d.decode(&mut rest).unwrap() else {
            panic!("expected data")
        };
        assert_eq!(data.len(), 102_400);
        assert_eq!(
            data.as_ptr(),
            wire[head_len..].as_ptr(),
            "body must be a slice of the read"
        );
        assert_eq!(d.decode(&mut rest).unwrap(), Some(Body::End(None)));
        assert_eq!(d.decode(&mut rest).unwrap(), None);
        for step in [1, 7, 1000, 16 * 1024] {
            let (_, body, end, _) = decode_in_steps(&wire, step, false).unwrap();
            assert_eq!(body.as_slice(), &wire[head_len..]);
            assert_eq!(end, Some(None));
        }
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
        assert_eq!(
            decode_in_steps(wire, 4, false).unwrap_err(),
            ResponseError::Truncated
        );
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
        assert_eq!(
            decode_in_steps(wire, 4, false).unwrap_err(),
            ResponseError::Truncated
        );
    }

    #[test]
    fn bad_responses_are_errors() {
        let cases: &[&[u8]] = &[
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        ];
        for wire in cases {
            assert!(
                decode_in_steps(wire, 3, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let huge = [b"HTTP/1.1 200 OK\r\nX: ".as_ref(), &[b'a'; MAX_HEAD + 10]].concat();
        assert_eq!(
            decode_in_steps(&huge, 4096, false).unwrap_err(),
            ResponseError::TooLarge
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator: mutations of valid responses plus random bytes.
        let seeds: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No\r\n\r\n",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let mut wire = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % (wire.len() + 1);
                match next() % 3 {
                    0 if at < wire.len() => wire[at] = next() as u8,
                    1 => wire.insert(at, next() as u8),
                    _ if at < wire.len() => {
                        wire.remove(at);
                    }
                    _ => {}
                }
            }
            if round % 10 == 0 {
                wire = (0..(next() % 200)).map(|_| next() as u8).collect();
            }
            let step = 1 + (next() as usize) % 17;
            let _ = decode_in_steps(&wire, step, round % 7 == 0);
        }
    }
}
