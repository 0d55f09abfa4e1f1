//! The `http` bindings: `server` turns HTTP/1.1 and HTTP/2 requests arriving on a byte stream
//! into `http` streams routed to its exits; `client` sends `http` streams as requests over byte
//! streams opened to its exit (a tcp or tls client).

mod client;
mod config;
mod metrics;
mod overrides;
mod pattern;
mod server;

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
