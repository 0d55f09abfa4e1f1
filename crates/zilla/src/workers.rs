//! Worker threads: one single-threaded tokio runtime per thread (`-w N`, default one per core).
//!
//! Every listener has one accept loop per worker (SO_REUSEPORT spreads connections), and a
//! connection's streams are spawned on the worker that accepted it, so a frame handed from one
//! binding to the next wakes a task on the same thread: no cross-thread wake-ups, no work
//! stealing. The engine's own work (config watching, signals, shutdown) runs on a separate
//! control runtime.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The running worker threads.
#[derive(Debug)]
pub(crate) struct Workers {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` worker threads.
    pub(crate) fn start(n: usize) -> std::io::Result<Workers> {
        let mut workers = Workers {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..n {
            let (stop, stopped) = oneshot::channel::<()>();
            let (handle_tx, handle_rx) = mpsc::channel();
            let thread = std::thread::Builder::new()
                .name(format!("zilla-worker-{i}"))
                .spawn(move || {
                    let runtime = match Builder::new_current_thread().enable_all().build() {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                    // Streams still open past the grace period are closed with the runtime.
                    runtime.shutdown_timeout(Duration::from_millis(100));
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| std::io::Error::other("worker thread exited"))??;
            workers.handles.push(handle);
            workers.stops.push(stop);
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// The workers' runtimes.
    pub(crate) fn handles(&self) -> Vec<Handle> {
        self.handles.clone()
    }

    /// Stops every worker (their remaining tasks are dropped) and waits for the threads.
    pub(crate) fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}
