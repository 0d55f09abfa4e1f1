//! The http server and client bindings (HTTP/1.1 and HTTP/2).
