//! Listening sockets shared across config reloads.
//!
//! When a reload keeps a listening address, the new graph takes the same socket while the old
//! graph is still accepting on it, so no connection is refused during the swap. A socket closes
//! when the last graph using it detaches.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::net::TcpListener;

static LISTENERS: OnceLock<Mutex<HashMap<SocketAddr, Weak<TcpListener>>>> = OnceLock::new();

/// A listener on `host:port`, shared with any live binding already listening there.
pub(crate) fn listen(host: &str, port: u16) -> Result<Arc<TcpListener>, String> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("host '{host}' has no address"))?;
    let mut map = LISTENERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.retain(|_, l| l.strong_count() > 0);
    if port != 0 {
        if let Some(existing) = map.get(&addr).and_then(Weak::upgrade) {
            return Ok(existing);
        }
    }
    let std = std::net::TcpListener::bind(addr).map_err(|e| {
        format!(
            "cannot listen on {addr}: {e} (is another process using the port? change options.port)"
        )
    })?;
    std.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = Arc::new(TcpListener::from_std(std).map_err(|e| e.to_string())?);
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    map.insert(bound, Arc::downgrade(&listener));
    Ok(listener)
}
