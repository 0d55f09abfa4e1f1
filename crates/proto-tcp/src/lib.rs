//! The `tcp` protocol: an ordered, reliable byte stream, as spoken by tcp sockets and by every
//! binding that carries one (tls, http's transport, echo). Data frames carry raw bytes and no
//! metadata.

mod io;
mod ports;

use std::net::SocketAddr;

pub use io::StreamIo;
pub use ports::{PortConfig, Ports, PortsConfig};

use zilla_engine::Protocol;

/// The `tcp` protocol marker.
#[derive(Debug, Clone, Copy)]
pub struct Tcp;

impl Protocol for Tcp {
    const NAME: &'static str = "tcp";
    type Begin = TcpBegin;
    type Data = ();
    type End = ();
    type Reset = ();
    type Challenge = ();
}

/// Where a byte stream comes from and goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpBegin {
    /// The remote peer of an accepted connection.
    pub source: Option<SocketAddr>,
    /// For accepted connections, the local address they arrived on; for streams opened towards a
    /// client binding, where to connect (used when the client has no `options`).
    pub destination: Option<Address>,
    /// Set by a tls server on the decrypted stream it emits (so http knows `:scheme` is https
    /// and which protocol ALPN chose), and by whoever opens a stream that must be encrypted.
    pub tls: Option<TlsInfo>,
}

/// What a TLS handshake settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The server name (SNI).
    pub server_name: Option<String>,
    /// The protocol chosen by ALPN (`h2`, `http/1.1`).
    pub alpn: Option<Vec<u8>>,
}

/// A destination: a socket address or a host name and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// An IP address and port.
    Socket(SocketAddr),
    /// A host name (resolved when connecting) and port.
    Host(String, u16),
}

impl Address {
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Address::Socket(a) => a.port(),
            Address::Host(_, p) => *p,
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Socket(a) => write!(f, "{a}"),
            Address::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}
