//! The runtime plugins do their background I/O on (schema registry fetches, JWKS refreshes):
//! one thread for the whole process, apart from the workers, so a slow registry or identity
//! provider never holds a stream's thread.

use std::future::Future;
use std::sync::OnceLock;

/// The background runtime (started on first use).
pub fn background() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("zilla-background")
            .enable_all()
            .build()
            .expect("the background runtime starts")
    })
}

/// Runs `future` on the background runtime and waits for its output: for what a plugin must
/// know while it is built (a JWKS fetched at start). Call it from a build, never from a
/// stream's task; the future should carry its own deadline.
pub fn block_on_background<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    background().spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .expect("the background runtime runs every future it is given to completion")
}
