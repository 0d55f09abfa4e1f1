//! The HTTP endpoints, one listener per port for the whole process: a reload that keeps a port
//! hands the listener to the new graph's exporter (attach comes before the old one's detach),
//! and the last release closes it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use zilla_engine::{AttachError, Metrics};

/// What an endpoint serves: its path prefix and the metrics.
type Route = Arc<RwLock<(String, Metrics)>>;

struct Listener {
    /// Exporters holding it.
    holders: usize,
    route: Route,
    /// Stops the accept loop when dropped.
    _stop: watch::Sender<()>,
}

fn listeners() -> &'static Mutex<HashMap<u16, Listener>> {
    static LISTENERS: OnceLock<Mutex<HashMap<u16, Listener>>> = OnceLock::new();
    LISTENERS.get_or_init(Default::default)
}

/// Serves `metrics` at `path` on `port`, listening if nothing does yet. Returns the endpoint.
pub(crate) fn acquire(port: u16, path: &str, metrics: &Metrics) -> Result<String, AttachError> {
    let mut all = listeners().lock().unwrap_or_else(|e| e.into_inner());
    let endpoint = format!("http://0.0.0.0:{port}{path}");
    if let Some(l) = all.get_mut(&port) {
        l.holders += 1;
        *l.route.write().unwrap_or_else(|e| e.into_inner()) = (path.to_string(), metrics.clone());
        return Ok(endpoint);
    }
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| AttachError::new("the prometheus exporter needs a tokio runtime"))?;
    let std_listener = std::net::TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        AttachError::io(
            format_args!(
                "prometheus endpoint 0.0.0.0:{port} (telemetry.exporters: choose a free port)"
            ),
            e,
        )
    })?;
    std_listener.set_nonblocking(true)?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener)?
    };
    let route: Route = Arc::new(RwLock::new((path.to_string(), metrics.clone())));
    let (stop, mut stopped) = watch::channel(());
    let served = route.clone();
    runtime.spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    };
                    let route = served.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let route = route.clone();
                            async move { Ok::<_, Infallible>(answer(&req, &route)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(socket), service)
                            .await;
                    });
                }
            }
        }
    });
    all.insert(
        port,
        Listener {
            holders: 1,
            route,
            _stop: stop,
        },
    );
    Ok(endpoint)
}

/// Lets go of `port`; the last holder closes its listener.
pub(crate) fn release(port: u16) {
    let mut all = listeners().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = all.get_mut(&port) {
        l.holders -= 1;
        if l.holders == 0 {
            all.remove(&port);
        }
    }
}

/// The answer to one request: the metrics for a `GET` under the path, `405` for another
/// method, `404` elsewhere.
fn answer(req: &Request<Incoming>, route: &Route) -> Response<Full<Bytes>> {
    let (path, metrics) = route.read().unwrap_or_else(|e| e.into_inner()).clone();
    let status = |s: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = s;
        r
    };
    if !req.uri().path().starts_with(&path) {
        return status(StatusCode::NOT_FOUND);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = status(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut().insert(
            "allow",
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(crate::render(&metrics))));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
