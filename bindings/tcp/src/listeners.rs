//! Listening sockets: one per worker runtime (SO_REUSEPORT, so the kernel spreads connections
//! over the workers), shared across config reloads.
//!
//! When a reload keeps a listening address, the new graph takes the same sockets while the old
//! graph is still accepting on them, so no connection is refused during the swap. A socket closes
//! when the last graph using it detaches.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::runtime::Handle;

/// Listeners by (address, worker).
type Cache = HashMap<(SocketAddr, usize), Weak<TcpListener>>;

static LISTENERS: OnceLock<Mutex<Cache>> = OnceLock::new();

/// Listeners on `host:port`, one per worker runtime in `workers`, shared with any live binding
/// already listening there. Port 0 picks one free port for all workers.
pub(crate) fn listen(
    host: &str,
    port: u16,
    workers: &[Handle],
) -> Result<Vec<Arc<TcpListener>>, String> {
    let mut addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("host '{host}' has no address"))?;
    let mut cache = LISTENERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    cache.retain(|_, l| l.strong_count() > 0);
    let mut listeners = Vec::with_capacity(workers.len());
    for (worker, handle) in workers.iter().enumerate() {
        if addr.port() != 0 {
            if let Some(existing) = cache.get(&(addr, worker)).and_then(Weak::upgrade) {
                listeners.push(existing);
                continue;
            }
        }
        // SO_REUSEPORT lets this process's workers (and a reload) share the port; it would also
        // let another zilla share it and split the traffic. So the first socket of an address
        // this process does not hold yet is preceded by a bind without it, which fails if
        // anyone else listens there.
        if addr.port() != 0 && !cache.keys().any(|(a, _)| *a == addr) {
            probe(addr).map_err(|e| {
                format!("cannot listen on {addr}: {e} (another process listens there: stop it, or change options.port)")
            })?;
        }
        let socket = bind(addr).map_err(|e| {
            format!("cannot listen on {addr}: {e} (is another process using the port? change options.port)")
        })?;
        // Register with the worker's reactor: its accept loop runs there.
        let _enter = handle.enter();
        let listener = Arc::new(TcpListener::from_std(socket.into()).map_err(|e| e.to_string())?);
        addr = listener.local_addr().map_err(|e| e.to_string())?;
        cache.insert((addr, worker), Arc::downgrade(&listener));
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Binds `addr` without SO_REUSEPORT, and lets it go: fails with "address in use" if another
/// socket listens there, whatever its options.
fn probe(addr: SocketAddr) -> std::io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

fn bind(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}
