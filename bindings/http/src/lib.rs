//! The `http` bindings: `server` turns HTTP/1.1 and HTTP/2 requests arriving on a byte stream
//! into `http` streams routed to its exits; `client` sends `http` streams as requests over byte
//! streams opened to its exit (a tcp or tls client).

pub(crate) mod client;
mod config;
mod metrics;
mod overrides;
mod pattern;
pub(crate) mod server;

use proto_http::Http;
use proto_tcp::Tcp;
use zilla_engine::{
    Binding, BindingContext, BindingDescriptor, BindingFactory, ConfigErrors, Kind, Protocols,
};

pub use config::{HttpCondition, HttpOptions, HttpVersion, HttpWith};

/// The `http` binding type.
#[derive(Debug)]
pub struct HttpFactory;

zilla_engine::inventory::submit! { BindingDescriptor::new::<HttpFactory>() }

impl BindingFactory for HttpFactory {
    const TYPE: &'static str = "http";
    const KINDS: &'static [Kind] = &[Kind::Server, Kind::Client];
    type Options = HttpOptions;
    type When = HttpCondition;
    type With = HttpWith;

    fn protocols(kind: Kind) -> Protocols {
        match kind {
            Kind::Server => Protocols::new::<Tcp, Http>(),
            _ => Protocols::new::<Http, Tcp>(),
        }
    }

    fn build(cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        match cx.kind {
            Kind::Server => server::build(cx),
            _ => client::build(cx),
        }
    }
}

/// Entry points for the fuzz targets under `fuzz/`: the HTTP/1.1 parsers at the edge fed bytes
/// as a connection reads them, in arbitrary pieces. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::{Bytes, BytesMut};

    use crate::client::codec::{Body, BodyDecoder, HeadReader};
    use crate::server::h1::{parse, BodyEvent, Decoder, Parsed};

    /// The server side: request heads, each followed by its body (length or chunked), until
    /// the input ends or is refused. Returns the number of requests parsed whole.
    pub fn requests(pieces: &[&[u8]], limit: usize) -> usize {
        let mut buf = BytesMut::new();
        let mut body: Option<Decoder> = None;
        let mut complete = 0;
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                if let Some(d) = &mut body {
                    match d.decode(&mut buf) {
                        Err(_) => return complete,
                        Ok(Some(BodyEvent::Data(_))) => continue,
                        Ok(Some(BodyEvent::End(_))) => {
                            body = None;
                            complete += 1;
                            continue;
                        }
                        Ok(None) if d.done() => {
                            body = None;
                            complete += 1;
                            continue;
                        }
                        Ok(None) => break,
                    }
                }
                match parse(&mut buf, limit, "http") {
                    Parsed::Partial => break,
                    Parsed::Complete(req) => body = Some(Decoder::new(req.body)),
                    Parsed::Error(_) | Parsed::Folded => return complete,
                }
            }
        }
        complete
    }

    /// The client side: a response head then its body, from an upstream, until the input ends
    /// (then the end of the connection) or is refused. Returns the body bytes decoded.
    pub fn response(pieces: &[&[u8]], head_request: bool) -> usize {
        let mut head = HeadReader::default();
        let mut body: Option<BodyDecoder> = None;
        let mut bytes = 0;
        for piece in pieces {
            let mut input = Bytes::copy_from_slice(piece);
            if body.is_none() {
                match head.push(input, head_request) {
                    Err(_) => return bytes,
                    Ok(None) => continue,
                    Ok(Some((h, rest))) => {
                        body = Some(BodyDecoder::new(h.body));
                        input = rest;
                    }
                }
            }
            if let Some(d) = &mut body {
                loop {
                    match d.decode(&mut input) {
                        Err(_) => return bytes,
                        Ok(Some(Body::Data(b))) => bytes += b.len(),
                        Ok(Some(Body::End(_))) | Ok(None) => break,
                    }
                }
            }
        }
        if let Some(d) = &mut body {
            if let Ok(Body::Data(b)) = d.eof() {
                bytes += b.len();
            }
        }
        bytes
    }
}
