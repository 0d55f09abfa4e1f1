//! HTTP/1.1 on a byte stream: request heads parsed with `httparse`, content-length and chunked
//! request bodies, keep-alive and pipelining (answered in order, one exchange at a time), and
//! responses written as they arrive: every reply data frame leaves as one chunk, its payload
//! passed on without a copy.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use proto_http::{Headers, HttpTrailers};
use proto_tcp::Tcp;
use tokio::time::Sleep;
use zilla_engine::{Data, Frame, Graph, Rx, Tx};

use crate::metrics::Meter;

use super::{
    challenge_ext, ready_or_reset, recv, refused, Answer, Opened, Outcome, Server, SessionTimer,
    TimerEvent,
};

/// The HTTP/2 prior-knowledge preface.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Most header lines in a request head.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (with extensions) or trailer section of a chunked request body.
const MAX_CHUNK_LINE: usize = 4096;
/// Methods this server implements (others get `501`).
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];
/// Request headers that describe the connection, not the request: not forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "te",
];

/// How a request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// No body.
    None,
    /// `content-length` bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Request {
    /// Pseudo-headers, then the other headers lower-cased.
    pub(crate) headers: Headers,
    /// Body framing.
    pub(crate) body: BodyKind,
    /// The connection may carry another request after this one.
    pub(crate) keep_alive: bool,
    /// `HEAD`: the response has no body.
    pub(crate) head: bool,
    /// `HTTP/1.0`: responses without a length are delimited by closing.
    pub(crate) http10: bool,
}

/// The result of parsing what has been read so far.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A whole head, consumed from the buffer.
    Complete(Request),
    /// A malformed or refused head: answer with this status and close.
    Error(u16),
    /// A header value continued on the next line (obsolete line folding, RFC 7230 §3.2.4):
    /// `400` with the reason [`OBS_FOLD_REASON`], and close.
    Folded,
}

/// The reason phrase of the `400` refusing obsolete line folding (Zilla's).
pub(crate) const OBS_FOLD_REASON: &str = "Bad Request - obsolete line folding not supported";

/// Parses a request head at the start of `buf`, consuming it when complete. `limit` bounds the
/// head (414 for a request line that reaches it, 431 for a longer header section).
pub(crate) fn parse(buf: &mut BytesMut, limit: usize, scheme: &str) -> Parsed {
    // Empty lines before a request line are ignored (RFC 7230 §3.5).
    let blank = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    buf.advance(blank);
    if buf.is_empty() {
        return Parsed::Partial;
    }
    match buf.iter().position(|b| *b == b'\n') {
        None if buf.len() >= limit => return Parsed::Error(414),
        Some(i) if i + 1 >= limit => return Parsed::Error(414),
        _ => {}
    }
    // An unknown method is refused as soon as it is read, even if the head is incomplete.
    if let Some(sp) = buf.iter().position(|b| *b == b' ') {
        let method = &buf[..sp];
        if !method.is_empty()
            && method.iter().all(|b| b.is_ascii_alphabetic())
            && !METHODS.iter().any(|m| m.as_bytes() == method)
        {
            return Parsed::Error(501);
        }
    }

    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > limit => return Parsed::Error(431),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Ok(httparse::Status::Complete(len)) if len > limit => return Parsed::Error(431),
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::Version) => return version_error(buf, limit, scheme),
        Err(httparse::Error::TooManyHeaders) => return Parsed::Error(431),
        Err(_) if obs_fold(buf) => return Parsed::Folded,
        Err(_) => return Parsed::Error(400),
    };
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Error(400);
    };
    if !METHODS.contains(&method) {
        return Parsed::Error(501);
    }
    let http10 = minor == 0;
    let is_head = method == "HEAD";
    let method_range = range(method.as_bytes());
    let target_range = range(target.as_bytes());

    let mut host = None;
    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut fields = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = h.value;
        match name.as_str() {
            "host" => {
                hosts += 1;
                host = Some(range(value));
            }
            "content-length" => {
                let Some(n) = std::str::from_utf8(value)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    return Parsed::Error(400);
                };
                if content_length.is_some_and(|c| c != n) {
                    return Parsed::Error(400);
                }
                content_length = Some(n);
            }
            "transfer-encoding" => {
                let v = String::from_utf8_lossy(value);
                if !v.trim().eq_ignore_ascii_case("chunked") || chunked {
                    return Parsed::Error(501);
                }
                chunked = true;
            }
            "connection" => {
                for token in String::from_utf8_lossy(value).split(',') {
                    let token = token.trim();
                    close |= token.eq_ignore_ascii_case("close");
                    keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
                }
            }
            _ => {}
        }
        if !HOP_BY_HOP.contains(&name.as_str()) {
            fields.push((name, range(value)));
        }
    }
    if chunked && content_length.is_some() {
        return Parsed::Error(400);
    }

    // Request target: origin-form, absolute-form, or `*` for OPTIONS.
    let mut authority_in_uri = None;
    let path_range = if target.starts_with('/') || (target == "*" && method == "OPTIONS") {
        target_range.clone()
    } else if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty() || authority.contains('@') {
            return Parsed::Error(400);
        }
        authority_in_uri = Some(authority.to_string());
        let r = range(&rest.as_bytes()[end..]);
        if r.is_empty() {
            // `http://host` means `/`.
            usize::MAX..usize::MAX
        } else {
            r
        }
    } else {
        return Parsed::Error(400);
    };
    if hosts > 1 || (hosts == 0 && authority_in_uri.is_none() && !http10) {
        return Parsed::Error(400);
    }
    let host_value = host.map(|r| buf[r].to_vec());
    if host_value
        .as_ref()
        .is_some_and(|h| h.is_empty() && authority_in_uri.is_none())
    {
        return Parsed::Error(400);
    }
    let authority = match (&authority_in_uri, &host_value) {
        (Some(uri), Some(h)) => {
            let h = String::from_utf8_lossy(h);
            if !super::cors::with_port(uri, scheme)
                .eq_ignore_ascii_case(&super::cors::with_port(&h, scheme))
            {
                return Parsed::Error(400);
            }
            uri.clone()
        }
        (Some(uri), None) => uri.clone(),
        (None, Some(h)) => match std::str::from_utf8(h) {
            Ok(h) => h.to_string(),
            Err(_) => return Parsed::Error(400),
        },
        (None, None) => String::new(),
    };
    let authority = if authority.is_empty() {
        authority
    } else {
        super::cors::with_port(&authority, scheme)
    };

    let head = buf.split_to(len).freeze();
    let mut headers = Headers::new();
    headers.append(":method", head.slice(method_range));
    headers.append(":scheme", Bytes::from_static(scheme_bytes(scheme)));
    if !authority.is_empty() {
        headers.append(":authority", Bytes::from(authority));
    }
    headers.append(
        ":path",
        if path_range.start == usize::MAX {
            Bytes::from_static(b"/")
        } else {
            head.slice(path_range)
        },
    );
    for (name, r) in fields {
        headers.append(Bytes::from(name), head.slice(r));
    }
    let body = if chunked {
        BodyKind::Chunked
    } else {
        match content_length {
            Some(0) | None => BodyKind::None,
            Some(n) => BodyKind::Length(n),
        }
    };
    Parsed::Complete(Request {
        headers,
        body,
        keep_alive: if http10 {
            keep_alive_token && !close
        } else {
            !close
        },
        head: is_head,
        http10,
    })
}

/// A request line `httparse` refused for its version (it knows only HTTP/1.0 and HTTP/1.1): a
/// later `HTTP/1.x` is served as HTTP/1.1 (RFC 7230 §2.6, as Zilla does), another `HTTP/d.d` gets
/// `505`, a missing or garbled version `400`.
fn version_error(buf: &mut BytesMut, limit: usize, scheme: &str) -> Parsed {
    let Some(end) = buf.iter().position(|b| *b == b'\n') else {
        return Parsed::Error(400);
    };
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(sp) = line.iter().rposition(|b| *b == b' ') else {
        return Parsed::Error(400);
    };
    match line[sp + 1..] {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if (b'2'..=b'9').contains(&minor) => {
            // Same length: rewrite the minor version in place and parse again as HTTP/1.1 (it
            // cannot come back here for the same byte, so this ends).
            buf[sp + 8] = b'1';
            parse(buf, limit, scheme)
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major != b'1' && major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Parsed::Error(505)
        }
        _ => Parsed::Error(400),
    }
}

/// Whether a line of the (refused) head after the request line starts with a space or a tab:
/// obsolete line folding. Whitespace right after the request line is not folding (a plain 400).
fn obs_fold(buf: &[u8]) -> bool {
    let Some(first) = buf.iter().position(|b| *b == b'\n') else {
        return false;
    };
    let rest = &buf[first + 1..];
    let end = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(rest.len(), |i| i + 2);
    rest[..end]
        .windows(2)
        .any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'))
}

fn scheme_bytes(scheme: &str) -> &'static [u8] {
    if scheme == "https" {
        b"https"
    } else {
        b"http"
    }
}

/// A piece of a decoded request body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyEvent {
    /// Body bytes (a slice of what was read, not a copy).
    Data(Bytes),
    /// The body ended, with trailers if it was chunked and had some.
    End(Option<Headers>),
}

/// Decodes a request body from the connection buffer.
#[derive(Debug)]
pub(crate) enum Decoder {
    /// `n` bytes left.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// `n` bytes of the current chunk left.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk.
    ChunkEnd,
    /// Expecting trailers or the final CRLF.
    Trailers,
    /// The body is complete.
    Done,
}

/// A malformed chunked body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadBody;

impl Decoder {
    /// A decoder for `kind`.
    pub(crate) fn new(kind: BodyKind) -> Decoder {
        match kind {
            BodyKind::None => Decoder::Done,
            BodyKind::Length(n) => Decoder::Length(n),
            BodyKind::Chunked => Decoder::ChunkSize,
        }
    }

    /// True once the body ended.
    pub(crate) fn done(&self) -> bool {
        matches!(self, Decoder::Done)
    }

    /// Decodes the next piece from `buf`: `Ok(None)` if more bytes are needed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BodyEvent>, BadBody> {
        loop {
            match self {
                Decoder::Done => return Ok(None),
                Decoder::Length(0) => {
                    *self = Decoder::Done;
                    return Ok(Some(BodyEvent::End(None)));
                }
                Decoder::Length(n) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = (*n).min(buf.len() as u64) as usize;
                    *n -= take as u64;
                    return Ok(Some(BodyEvent::Data(buf.split_to(take).freeze())));
                }
                Decoder::ChunkSize => {
                    let Some(i) = buf.iter().position(|b| *b == b'\n') else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(BadBody)
                        } else {
                            Ok(None)
                        };
                    };
                    let line = buf.split_to(i + 1);
                    let line = line.strip_suffix(b"\r\n").ok_or(BadBody)?;
                    let size = line.split(|b| *b == b';').next().unwrap_or(&[]);
                    // Hex digits only, then optional whitespace before an extension: no sign,
                    // no leading space (lenient chunk sizes are how request smuggling starts).
                    let size = std::str::from_utf8(size).map_err(|_| BadBody)?.trim_end();
                    if size.is_empty()
                        || size.len() > 15
                        || !size.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(BadBody);
                    }
                    let size = u64::from_str_radix(size, 16).map_err(|_| BadBody)?;
                    *self = if size == 0 {
                        Decoder::Trailers
                    } else {
                        Decoder::ChunkData(size)
                    };
                }
                Decoder::ChunkData(n) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = (*n).min(buf.len() as u64) as usize;
                    *n -= take as u64;
                    if *n == 0 {
                        *self = Decoder::ChunkEnd;
                    }
                    return Ok(Some(BodyEvent::Data(buf.split_to(take).freeze())));
                }
                Decoder::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BadBody);
                    }
                    buf.advance(2);
                    *self = Decoder::ChunkSize;
                }
                Decoder::Trailers => {
                    let Some(end) = find_trailers_end(buf) else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(BadBody)
                        } else {
                            Ok(None)
                        };
                    };
                    let section = buf.split_to(end).freeze();
                    *self = Decoder::Done;
                    let mut trailers = Headers::new();
                    for line in section.split(|b| *b == b'\n') {
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        if line.is_empty() {
                            continue;
                        }
                        let colon = line.iter().position(|b| *b == b':').ok_or(BadBody)?;
                        let name = &line[..colon];
                        if name.is_empty() || !name.iter().all(|b| is_token(*b)) {
                            return Err(BadBody);
                        }
                        let value = section.slice_ref(line[colon + 1..].trim_ascii());
                        trailers.append(Bytes::from(name.to_ascii_lowercase()), value);
                    }
                    return Ok(Some(BodyEvent::End(
                        (!trailers.is_empty()).then_some(trailers),
                    )));
                }
            }
        }
    }
}

/// The length of a trailer section ending with an empty line (`\r\n` alone, or `...\r\n\r\n`).
fn find_trailers_end(buf: &[u8]) -> Option<usize> {
    if buf.starts_with(b"\r\n") {
        return Some(2);
    }
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The reason phrase of a status.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

/// Appends `name` in Title-Case (`content-type` -> `Content-Type`).
fn put_title_case(out: &mut BytesMut, name: &[u8]) {
    let mut upper = true;
    for &b in name {
        out.extend_from_slice(&[if upper { b.to_ascii_uppercase() } else { b }]);
        upper = b == b'-';
    }
}

fn put_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    put_title_case(out, name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn put_status_line(out: &mut BytesMut, status: u16) {
    put_status_line_with(out, status, reason(status));
}

fn put_status_line_with(out: &mut BytesMut, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Encodes a server answer: `Connection: close` form, or `Content-Length: 0` when the
/// connection stays open (no length on 204/304).
pub(crate) fn encode_answer(a: &Answer, server_header: Option<&Bytes>) -> Bytes {
    encode_answer_with(a, reason(a.status), server_header)
}

/// [`encode_answer`] with the reason phrase given.
fn encode_answer_with(a: &Answer, reason: &str, server_header: Option<&Bytes>) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    put_status_line_with(&mut out, a.status, reason);
    if let Some(s) = server_header {
        put_header(&mut out, b"server", s);
    }
    for (n, v) in a.headers.iter() {
        put_header(&mut out, n, v);
    }
    if a.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if !matches!(a.status, 204 | 304) && a.headers.get("content-length").is_none() {
        out.extend_from_slice(b"Content-Length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

/// How a response body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body may be sent (HEAD, 204, 304, 1xx).
    Empty,
    /// `content-length` given by the application.
    Length,
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Delimited by closing the connection.
    Close,
}

/// Encodes a response head; returns it with the framing and whether to close afterwards.
fn encode_head(
    headers: &Headers,
    req: &Request,
    server_header: Option<&Bytes>,
) -> (Bytes, Framing, bool) {
    let status = headers
        .get_str(":status")
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..1000).contains(s))
        .unwrap_or(200);
    let app_close = headers
        .get_str("connection")
        .is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
    let has_length = headers.get("content-length").is_some();
    let framing = if req.head || matches!(status, 204 | 304) || status < 200 {
        Framing::Empty
    } else if has_length {
        Framing::Length
    } else if app_close || req.http10 {
        Framing::Close
    } else {
        Framing::Chunked
    };
    let close = app_close || !req.keep_alive || framing == Framing::Close;
    let mut out = BytesMut::with_capacity(256);
    put_status_line(&mut out, status);
    if let Some(s) = server_header {
        put_header(&mut out, b"server", s);
    }
    let mut wrote_connection = false;
    for (n, v) in headers.iter() {
        if n.starts_with(b":") || n.as_ref() == b"transfer-encoding" || n.as_ref() == b"keep-alive"
        {
            continue;
        }
        wrote_connection |= n.as_ref() == b"connection";
        put_header(&mut out, n, v);
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if close && !wrote_connection {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (out.freeze(), framing, close)
}

/// The end of a chunked body, with trailers.
fn encode_last_chunk(trailers: Option<&Headers>) -> Bytes {
    match trailers.filter(|t| !t.is_empty()) {
        None => Bytes::from_static(b"0\r\n\r\n"),
        Some(t) => {
            let mut out = BytesMut::with_capacity(64);
            out.extend_from_slice(b"0\r\n");
            for (n, v) in t.iter() {
                put_header(&mut out, n, v);
            }
            out.extend_from_slice(b"\r\n");
            out.freeze()
        }
    }
}

/// The byte stream of one connection and what has been read from it.
struct Conn {
    tx: Tx<Tcp>,
    rx: Rx<Tcp>,
    buf: BytesMut,
}

/// What reading the connection gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Bytes were added to the buffer (or a frame without bytes arrived).
    More,
    /// The client ended its direction.
    Closed,
    /// The client reset the connection.
    Failed,
    /// The connection can no longer be written (the client stopped reading or left).
    Gone,
}

impl Conn {
    async fn read(&mut self) -> Read {
        tokio::select! {
            biased;
            _ = self.tx.reset() => Read::Gone,
            frame = self.rx.recv() => self.take(frame),
        }
    }

    fn take(&mut self, frame: Option<Frame<Tcp>>) -> Read {
        match frame {
            Some(Frame::Data(Data {
                payload: Some(p), ..
            })) => {
                if self.buf.is_empty() {
                    // `BytesMut::from(Bytes)` reuses a uniquely owned buffer.
                    self.buf = BytesMut::from(p);
                } else {
                    self.buf.extend_from_slice(&p);
                }
                Read::More
            }
            Some(Frame::Data(_) | Frame::Begin(_) | Frame::Flush) => Read::More,
            Some(Frame::End(_)) => Read::Closed,
            Some(Frame::Abort(_)) | None => Read::Failed,
        }
    }

    /// Writes `frames` (waiting for credit once: they are small or one payload).
    async fn write<const N: usize>(&mut self, frames: [Bytes; N]) -> bool {
        if self.tx.ready().await.is_err() {
            return false;
        }
        self.tx
            .push_all(frames.map(|b| Frame::Data(Data::bytes(b))))
            .is_ok()
    }
}

/// Serves HTTP/1.1 on a connection until it closes. With `h2_preface`, a connection that opens
/// with the HTTP/2 preface is handed to the HTTP/2 server instead.
pub(crate) async fn serve(
    server: Arc<Server>,
    graph: Arc<Graph>,
    tx: Tx<Tcp>,
    rx: Rx<Tcp>,
    scheme: &'static str,
    h2_preface: bool,
) {
    let mut conn = Conn {
        tx,
        rx,
        buf: BytesMut::new(),
    };
    if h2_preface {
        let deadline = tokio::time::Instant::now() + server.request_timeout;
        loop {
            let n = conn.buf.len().min(PREFACE.len());
            if conn.buf[..n] != PREFACE[..n] {
                break;
            }
            if n == PREFACE.len() {
                let Conn { tx, rx, buf } = conn;
                // Boxed: an HTTP/1.1 connection's task does not carry HTTP/2's state.
                return Box::pin(super::h2::serve(
                    server,
                    graph,
                    tx,
                    rx,
                    buf.freeze(),
                    scheme,
                ))
                .await;
            }
            match tokio::time::timeout_at(deadline, conn.read()).await {
                Ok(Read::More) => {}
                // Nothing (or not enough to tell) in time: close quietly.
                Ok(Read::Closed) | Err(_) => return conn.tx.end(None),
                Ok(Read::Failed | Read::Gone) => return,
            }
        }
    }
    let limit = server.max_header_list_size;
    let server_header = server.server_header.clone();
    loop {
        // A connection that sends no (complete) request head in time holds nothing for long.
        let head_deadline = tokio::time::Instant::now() + server.request_timeout;
        let mut req = loop {
            match parse(&mut conn.buf, limit, scheme) {
                Parsed::Complete(req) => break req,
                Parsed::Error(status) => {
                    let answer = encode_answer(&Answer::close(status), server_header.as_ref());
                    if conn.write([answer]).await {
                        conn.tx.end(None);
                    }
                    return;
                }
                Parsed::Folded => {
                    let answer = encode_answer_with(
                        &Answer::close(400),
                        OBS_FOLD_REASON,
                        server_header.as_ref(),
                    );
                    if conn.write([answer]).await {
                        conn.tx.end(None);
                    }
                    return;
                }
                Parsed::Partial => {
                    // Draining: an idle keep-alive connection takes no new request.
                    if conn.buf.is_empty() && graph.draining().is_cancelled() {
                        return conn.tx.end(None);
                    }
                    let read = tokio::select! {
                        read = tokio::time::timeout_at(head_deadline, conn.read()) => read,
                        () = graph.draining().cancelled(), if conn.buf.is_empty() => {
                            return conn.tx.end(None);
                        }
                    };
                    match read {
                        Ok(Read::More) => {}
                        Ok(Read::Closed) => return conn.tx.end(None),
                        Ok(Read::Failed | Read::Gone) => return,
                        // Idle keep-alive connection: close it quietly.
                        Err(_) if conn.buf.is_empty() => return conn.tx.end(None),
                        Err(_) => {
                            let answer = encode_answer(&Answer::close(408), server_header.as_ref());
                            if conn.write([answer]).await {
                                conn.tx.end(None);
                            }
                            return;
                        }
                    }
                }
            }
        };
        let keep_alive = req.keep_alive;
        // The exchange needs the request's framing, not its headers: they go to the
        // application rather than being copied (and kept for as long as a stream lasts).
        let headers = std::mem::take(&mut req.headers);
        let next = match server.admit(&graph, headers, None) {
            Outcome::Answer(answer) => {
                let close = answer.close || !keep_alive;
                let bytes = encode_answer(&Answer { close, ..answer }, server_header.as_ref());
                if !conn.write([bytes]).await {
                    return;
                }
                if close {
                    Next::Close
                } else {
                    discard_body(&mut conn, Decoder::new(req.body), server.request_timeout).await
                }
            }
            Outcome::Open(opened) => exchange(&server, &mut conn, &req, opened).await,
        };
        match next {
            // Draining: the exchange is over, the connection closes.
            Next::Continue if graph.draining().is_cancelled() => return conn.tx.end(None),
            Next::Continue => {}
            Next::Close => return conn.tx.end(None),
            Next::Abort => return conn.tx.abort(None),
            Next::Gone => return,
        }
    }
}

/// What to do with the connection after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Read the next request.
    Continue,
    /// End the connection cleanly.
    Close,
    /// Reset the connection.
    Abort,
    /// The connection is already gone.
    Gone,
}

/// Reads and drops a request body the server answered itself. A body that stops arriving for
/// `timeout` closes the connection (the answer is already written).
async fn discard_body(conn: &mut Conn, mut body: Decoder, timeout: Duration) -> Next {
    loop {
        match body.decode(&mut conn.buf) {
            Err(BadBody) => return Next::Close,
            Ok(Some(BodyEvent::End(_))) => return Next::Continue,
            Ok(Some(BodyEvent::Data(_))) => continue,
            Ok(None) if body.done() => return Next::Continue,
            Ok(None) => {}
        }
        match tokio::time::timeout(timeout, conn.read()).await {
            Ok(Read::More) => {}
            Ok(Read::Closed) | Err(_) => return Next::Close,
            Ok(Read::Failed | Read::Gone) => return Next::Gone,
        }
    }
}

/// Where the response of an exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Response {
    /// No reply `Begin` yet.
    Pending,
    /// Head written; body framed as given.
    Body(Framing),
    /// Complete.
    Done,
}

/// Runs one request/response exchange: request body to the stream, reply frames to the wire,
/// client departure and session deadlines handled as they happen.
async fn exchange(server: &Server, conn: &mut Conn, req: &Request, opened: Opened) -> Next {
    let Opened {
        tx,
        rx,
        session,
        origin,
        mut meter,
        guard,
    } = opened;
    let mut req_tx = Some(tx);
    let mut resp_rx = Some(rx);
    let mut body = Decoder::new(req.body);
    let mut timer = SessionTimer::new(session.as_ref(), guard, None);
    let mut response = Response::Pending;
    let mut close = !req.keep_alive;
    let mut pending: Option<Bytes> = None;
    let mut refusal = None;
    let limit = server.max_header_list_size;
    // A request body that stops arriving for the request timeout (while nothing holds it back)
    // ends the exchange: 408 if no response began, else the connection is aborted. One timer,
    // armed only while waiting for body bytes, and made (boxed) only for a request with a body:
    // an event stream's GET keeps none.
    let mut body_timer: Option<Pin<Box<Sleep>>> = None;
    let mut body_waiting = false;
    if body.done() {
        if let Some(tx) = req_tx.take() {
            tx.end(None);
        }
    }
    loop {
        // Decode what the buffer holds, without waiting.
        while pending.is_none() && !body.done() {
            match body.decode(&mut conn.buf) {
                Err(BadBody) => {
                    if let Some(tx) = req_tx.take() {
                        tx.abort(None);
                    }
                    if response == Response::Pending {
                        let answer =
                            encode_answer(&Answer::close(400), server.server_header.as_ref());
                        drop(resp_rx.take());
                        return if conn.write([answer]).await {
                            Next::Close
                        } else {
                            Next::Gone
                        };
                    }
                    return Next::Abort;
                }
                Ok(Some(BodyEvent::Data(d))) => {
                    if req_tx.is_some() {
                        pending = Some(d);
                    }
                }
                Ok(Some(BodyEvent::End(trailers))) => {
                    if let Some(tx) = req_tx.take() {
                        tx.end(trailers.map(HttpTrailers));
                    }
                }
                Ok(None) => break,
            }
        }
        if response == Response::Done && body.done() {
            return if close { Next::Close } else { Next::Continue };
        }
        // Read the connection for the body, or (bounded) for what follows, to see the client
        // leave during a response.
        let want_read = pending.is_none() && (!body.done() || conn.buf.len() < limit);
        let waiting = pending.is_none() && !body.done();
        if waiting && !body_waiting {
            let at = tokio::time::Instant::now() + server.request_timeout;
            match &mut body_timer {
                Some(timer) => timer.as_mut().reset(at),
                None => body_timer = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        body_waiting = waiting;
        tokio::select! {
            biased;
            _ = conn.tx.reset() => return Next::Gone,
            () = fires(&mut body_timer), if body_waiting => {
                if let Some(tx) = req_tx.take() {
                    tx.abort(None);
                }
                if response != Response::Pending {
                    return Next::Abort;
                }
                drop(resp_rx.take());
                let answer = encode_answer(&Answer::close(408), server.server_header.as_ref());
                return if conn.write([answer]).await { Next::Close } else { Next::Gone };
            }
            frame = recv(&mut resp_rx) => {
                let Some(frame) = frame else {
                    resp_rx = None;
                    continue;
                };
                match (response, frame) {
                    (Response::Pending, Frame::Begin(begin)) => {
                        let mut headers = begin.headers;
                        server.decorate(origin.as_ref(), &mut headers);
                        let (head, framing, c) =
                            encode_head(&headers, req, server.server_header.as_ref());
                        close |= c;
                        if !conn.write([head]).await {
                            return Next::Gone;
                        }
                        response = Response::Body(framing);
                    }
                    (Response::Pending, frame @ (Frame::End(_) | Frame::Abort(_))) => {
                        resp_rx = None;
                        let ext = frame.refusal().or(refusal.take());
                        let mut answer = refused(ext);
                        server.decorate(origin.as_ref(), &mut answer.headers);
                        answer.close = close;
                        if !conn.write([encode_answer(&answer, server.server_header.as_ref())]).await {
                            return Next::Gone;
                        }
                        response = Response::Done;
                    }
                    (Response::Body(framing), Frame::Data(d)) => {
                        let Some(payload) = d.payload.filter(|p| !p.is_empty()) else {
                            continue;
                        };
                        meter.response(payload.len());
                        let ok = match framing {
                            Framing::Empty => true,
                            Framing::Chunked => {
                                let size = chunk_size_line(payload.len());
                                conn.write([size, payload, Bytes::from_static(b"\r\n")]).await
                            }
                            Framing::Length | Framing::Close => conn.write([payload]).await,
                        };
                        if !ok {
                            return Next::Gone;
                        }
                    }
                    (Response::Body(framing), Frame::End(ext)) => {
                        resp_rx = None;
                        if framing == Framing::Chunked {
                            let last = encode_last_chunk(ext.as_ref().map(|t| &t.0));
                            if !conn.write([last]).await {
                                return Next::Gone;
                            }
                        }
                        close |= framing == Framing::Close;
                        response = Response::Done;
                    }
                    (Response::Body(_), Frame::Abort(_)) => {
                        return Next::Abort;
                    }
                    (_, Frame::Begin(_) | Frame::Flush) | (_, Frame::Data(_)) => {}
                    (Response::Done, _) => {}
                }
            }
            ready = ready_or_reset(&mut req_tx, pending.is_some()) => {
                match ready {
                    Ok(()) => {
                        if let (Some(tx), Some(d)) = (req_tx.as_mut(), pending.take()) {
                            meter.request(d.len());
                            if let Err(reset) = tx.push(Frame::Data(Data::bytes(d))) {
                                refusal = reset.0;
                                req_tx = None;
                            }
                        }
                    }
                    Err(reset) => {
                        // The application refused the rest of the body: keep reading it off the
                        // wire, drop it.
                        refusal = reset.0;
                        req_tx = None;
                        pending = None;
                    }
                }
            }
            frame = conn.rx.recv(), if want_read => {
                match conn.take(frame) {
                    // Body bytes (or what follows) arrived: wait afresh for the next.
                    Read::More => body_waiting = false,
                    // The client went away: reset the response and abort the request (dropping
                    // the halves does both).
                    Read::Closed => return if response == Response::Pending { Next::Close } else { Next::Abort },
                    Read::Failed | Read::Gone => return Next::Gone,
                }
            }
            event = timer.next() => match event {
                TimerEvent::Challenge => {
                    if let Some(rx) = &resp_rx {
                        rx.challenge(challenge_ext());
                    }
                }
                TimerEvent::Expire => return Next::Abort,
            }
        }
    }
}

/// Waits for an armed timer; pends forever when there is none (for `select!`).
async fn fires(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(timer) => timer.await,
        None => std::future::pending().await,
    }
}

/// Chunk-size lines up to this size are slices of one shared table: no allocation per chunk.
const SIZE_LINES: usize = 16 * 1024;

/// The chunk-size line (`<hex>\r\n`) of a chunk of `len` bytes.
fn chunk_size_line(len: usize) -> Bytes {
    static TABLE: std::sync::OnceLock<(Bytes, Vec<u32>)> = std::sync::OnceLock::new();
    if len >= SIZE_LINES {
        return Bytes::from(format!("{len:x}\r\n"));
    }
    let (lines, offsets) = TABLE.get_or_init(|| {
        let mut text = String::with_capacity(SIZE_LINES * 7);
        let mut offsets = Vec::with_capacity(SIZE_LINES + 1);
        for n in 0..SIZE_LINES {
            offsets.push(text.len() as u32);
            text.push_str(&format!("{n:x}\r\n"));
        }
        offsets.push(text.len() as u32);
        // Static (leaked once): slices of it carry no reference count, so workers that frame
        // chunks at the same time do not contend on one counter.
        (
            Bytes::from_static(Box::leak(text.into_boxed_str()).as_bytes()),
            offsets,
        )
    });
    lines.slice(offsets[len] as usize..offsets[len + 1] as usize)
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunk_size_lines() {
        assert_eq!(super::chunk_size_line(0), "0\r\n");
        assert_eq!(super::chunk_size_line(0x1a), "1a\r\n");
        assert_eq!(super::chunk_size_line(16383), "3fff\r\n");
        assert_eq!(super::chunk_size_line(16384), "4000\r\n");
        assert_eq!(super::chunk_size_line(1 << 20), "100000\r\n");
    }

    use super::*;

    fn parse_str(s: &str) -> Parsed {
        parse(&mut BytesMut::from(s), 8192, "http")
    }

    fn status(s: &str) -> Option<u16> {
        match parse_str(s) {
            Parsed::Error(code) => Some(code),
            Parsed::Folded => Some(400),
            _ => None,
        }
    }

    #[test]
    fn request_head_becomes_pseudo_headers() {
        let Parsed::Complete(req) = parse_str(
            "\r\nGET /a/b?x=1%20 HTTP/1.1\r\nHost: Example.com\r\nAccept: text/event-stream\r\nConnection: keep-alive\r\n\r\n",
        ) else {
            panic!("complete");
        };
        let h: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into(),
                    String::from_utf8_lossy(v).into(),
                )
            })
            .collect();
        assert_eq!(
            h,
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "Example.com:80"),
                (":path", "/a/b?x=1%20"),
                ("accept", "text/event-stream"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(req.body, BodyKind::None);
        assert!(req.keep_alive);
    }

    #[test]
    fn absolute_form_and_https_default_port() {
        let Parsed::Complete(req) = parse(
            &mut BytesMut::from("GET https://a.com/x HTTP/1.1\r\nHost: a.com:443\r\n\r\n"),
            8192,
            "https",
        ) else {
            panic!("complete");
        };
        assert_eq!(req.headers.get_str(":authority"), Some("a.com:443"));
        assert_eq!(req.headers.get_str(":path"), Some("/x"));
        assert_eq!(req.headers.get_str(":scheme"), Some("https"));
    }

    #[test]
    fn versions() {
        let Parsed::Complete(req) = parse_str("GET / HTTP/1.2\r\nHost: a\r\n\r\n") else {
            panic!("HTTP/1.2 is served as HTTP/1.1");
        };
        assert_eq!(req.headers.get_str(":path"), Some("/"));
        assert!(req.keep_alive && !req.http10);
        assert!(matches!(
            parse_str("GET / HTTP/1.9\r\nHost: a\r\n"),
            Parsed::Partial
        ));
        assert_eq!(status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), Some(505));
        assert_eq!(status("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), Some(505));
        assert_eq!(status("GET / HTTP\r\n\r\n"), Some(400), "missing");
        assert_eq!(status("GET /\r\nHost: a\r\n\r\n"), Some(400), "missing");
        assert_eq!(
            status("GET / HTTP/1.1/b/c\r\nHost: a\r\n\r\n"),
            Some(400),
            "garbled"
        );
        assert_eq!(status("GET / HTTP/1.a\r\nHost: a\r\n\r\n"), Some(400));
        assert_eq!(status("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), Some(400));
        assert_eq!(
            status("GET / HTTP/1.2 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status("GET / HTTP/1.1 HTTP/1.2\r\nHost: a\r\n\r\n"),
            Some(400)
        );
    }

    #[test]
    fn obsolete_line_folding_has_its_own_reason() {
        for folded in [
            "GET / HTTP/1.1\r\nHost: a\r\nX: v\r\n more\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: v\r\n\tmore\r\n\r\n",
        ] {
            assert!(matches!(parse_str(folded), Parsed::Folded), "{folded:?}");
        }
        // Whitespace before the first header line is no folding: a plain 400.
        assert!(matches!(
            parse_str("GET / HTTP/1.1\r\n  Host: a\r\n\r\n"),
            Parsed::Error(400)
        ));
        let answer = encode_answer_with(&Answer::close(400), OBS_FOLD_REASON, None);
        assert_eq!(
            &answer[..],
            b"HTTP/1.1 400 Bad Request - obsolete line folding not supported\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn errors() {
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), Some(400), "missing host");
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Some(400),
            "two hosts"
        );
        assert_eq!(
            status("GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(400),
            "user info"
        );
        assert_eq!(
            status("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n"),
            Some(400),
            "host mismatch"
        );
        assert_eq!(status("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), Some(400));
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"),
            Some(400)
        );
        assert_eq!(status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), Some(505));
        assert_eq!(status("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Some(501));
        assert_eq!(status("BREW / HTTP/1.1\r\nHost: a\r\n\r\n"), Some(501));
        assert_eq!(status("BREW / HT"), Some(501), "known before the head ends");
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Some(501)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
            Some(400)
        );
        let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        assert_eq!(status(&long_line), Some(414));
        let long_head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: {}\r\nX-B: {}\r\n\r\n",
            "a".repeat(5000),
            "b".repeat(5000)
        );
        assert_eq!(status(&long_head), Some(431));
        assert!(matches!(
            parse_str("GET / HTTP/1.1\r\nHost: a\r\n"),
            Parsed::Partial
        ));
    }

    #[test]
    fn chunked_body_with_trailers() {
        let mut buf = BytesMut::from("5;ext=1\r\nhello\r\n3\r\n wo\r\n0\r\nX-Sum: 1\r\n\r\nNEXT");
        let mut d = Decoder::new(BodyKind::Chunked);
        let mut got = Vec::new();
        while let Some(e) = d.decode(&mut buf).unwrap() {
            got.push(e);
        }
        assert_eq!(got[0], BodyEvent::Data(Bytes::from_static(b"hello")));
        assert_eq!(got[1], BodyEvent::Data(Bytes::from_static(b" wo")));
        let BodyEvent::End(Some(t)) = &got[2] else {
            panic!("trailers");
        };
        assert_eq!(t.get_str("x-sum"), Some("1"));
        assert_eq!(&buf[..], b"NEXT", "the next request stays in the buffer");
        assert!(Decoder::new(BodyKind::Chunked)
            .decode(&mut BytesMut::from("zz\r\n"))
            .is_err());
    }

    #[test]
    fn response_heads() {
        let Parsed::Complete(req) = parse_str("GET / HTTP/1.1\r\nHost: a\r\n\r\n") else {
            panic!()
        };
        let headers: Headers = [(":status", "200"), ("content-type", "text/event-stream")]
            .iter()
            .map(|(n, v)| (Bytes::from(*n), Bytes::from(*v)))
            .collect();
        let (head, framing, close) = encode_head(&headers, &req, None);
        assert_eq!(
            &head[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(framing, Framing::Chunked);
        assert!(!close);
        let (head, framing, _) =
            encode_head(&proto_http::HttpBegin::status(204).headers, &req, None);
        assert_eq!(&head[..], b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(framing, Framing::Empty);
    }

    /// Random and truncated requests never panic, and every outcome is a valid one.
    #[test]
    fn random_and_truncated_requests_never_panic() {
        let samples: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nA: b\r\n\r\n",
            b"GET http://a:1/p?q HTTP/1.0\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\nOrigin: http://b\r\n\r\n",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for sample in samples {
            for cut in 0..=sample.len() {
                let mut buf = BytesMut::from(&sample[..cut]);
                if let Parsed::Complete(req) = parse(&mut buf, 8192, "http") {
                    let mut d = Decoder::new(req.body);
                    while let Ok(Some(_)) = d.decode(&mut buf) {}
                }
            }
            for _ in 0..2000 {
                let mut bytes = sample.to_vec();
                for _ in 0..(rand() % 4 + 1) {
                    let i = (rand() as usize) % bytes.len();
                    match rand() % 3 {
                        0 => bytes[i] = rand() as u8,
                        1 => {
                            bytes.remove(i);
                        }
                        _ => bytes.insert(i, rand() as u8),
                    }
                }
                let mut buf = BytesMut::from(&bytes[..]);
                match parse(&mut buf, 64 + (rand() as usize % 8192), "http") {
                    Parsed::Complete(req) => {
                        let mut d = Decoder::new(req.body);
                        while let Ok(Some(_)) = d.decode(&mut buf) {}
                    }
                    Parsed::Error(code) => {
                        assert!([400, 414, 431, 501, 505].contains(&code), "{code}")
                    }
                    Parsed::Folded => {}
                    Parsed::Partial => {}
                }
            }
        }
        for _ in 0..5000 {
            let len = rand() as usize % 300;
            let bytes: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = parse(&mut buf, 256, "http");
            let mut d = Decoder::new(BodyKind::Chunked);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = d.decode(&mut buf) {}
        }
    }
}
