//! The tls server and client bindings (rustls).
