//! The `http-filesystem` binding: a proxy that answers http requests with files read from a
//! `filesystem` server.
//!
//! ```yaml
//! east_http_filesystem_mapping:
//!   type: http-filesystem
//!   kind: proxy
//!   routes:
//!     - when:
//!         - path: /{path}
//!           method: GET
//!       with:
//!         path: ${params.path}
//!       exit: east_filesystem_server
//! ```
//!
//! A request is matched against the routes (`when.path` against `:path` with the query removed,
//! `when.method` against `:method`); the first match's `with` names the file and its exit the
//! filesystem server. `GET` reads the file: `200` with `content-type`, `content-length`, `etag`
//! and `last-modified`, then the content; `304` when `if-none-match` matches the etag; `404`
//! when the file is missing, is a directory or its path is refused. `HEAD` answers the same
//! headers without content. No route matching the request: `404`.
//!
//! Differences from Zilla, by design:
//! - writes are not supported: `POST`, `PUT` and `DELETE` are answered `405` with
//!   `allow: GET, HEAD` (Zilla creates, replaces and deletes files);
//! - `${params.name}` is replaced anywhere in `with.path`/`with.directory`, not only when it is
//!   the whole value, and a name no `when.path` captures is a config error;
//! - a route without `with` reads the request path (without its leading `/`);
//! - `with.directory` is joined before `with.path`; a directory alone is not listed (404);
//! - `prefer: wait=N` long-polling is not supported.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use proto_filesystem::{
    FileMetadata, FileRequest, FileStatus, Filesystem, FilesystemBegin, Operation,
};
use proto_http::{Headers, Http, HttpBegin, HttpReset};
use zilla_engine::{
    handler_binding, Binding, BindingContext, BindingDescriptor, BindingFactory, BindingId,
    ConfigError, ConfigErrors, Data, Frame, Graph, Handler, Kind, Nothing, Protocols, Reset,
    Routes, Rx, Stream, Tx,
};

mod config;

pub use config::{
    HttpFilesystemCondition, HttpFilesystemConditionConfig, HttpFilesystemWith, Method,
};

/// The `http-filesystem` binding type.
#[derive(Debug)]
pub struct HttpFilesystemFactory;

zilla_engine::inventory::submit! { BindingDescriptor::new::<HttpFilesystemFactory>() }

impl BindingFactory for HttpFilesystemFactory {
    const TYPE: &'static str = "http-filesystem";
    const KINDS: &'static [Kind] = &[Kind::Proxy];
    type Options = Nothing;
    type When = HttpFilesystemCondition;
    type With = HttpFilesystemWith;

    fn protocols(_: Kind) -> Protocols {
        Protocols::new::<Http, Filesystem>()
    }

    fn build(cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        let mut errors = ConfigErrors::new();
        if let Err(e) = cx.require_exit() {
            errors.push(ConfigError {
                message: format!("{} (the filesystem server to read files from)", e.message),
                ..e
            });
        }
        for (i, route) in cx.routes.iter().enumerate() {
            if route.exit.is_none() {
                errors.push(cx.error(
                    &format!("routes[{i}]"),
                    "a route needs an `exit`: the filesystem server to read files from",
                ));
            }
            let Some(with) = &route.with else { continue };
            if with.path.is_none() && with.directory.is_none() {
                errors.push(cx.error(
                    &format!("routes[{i}].with"),
                    "`with` needs a `path` (or a `directory`), e.g. `path: ${params.path}`",
                ));
            }
            // Every `${params.x}` must be captured by every condition of the route.
            for (key, value) in [("path", &with.path), ("directory", &with.directory)] {
                let Some(value) = value else { continue };
                for name in config::referenced_params(value) {
                    let missing = route.when.is_empty()
                        || route.when.iter().any(|w| !w.captures().contains(&name));
                    if missing {
                        errors.push(cx.error(
                            &format!("routes[{i}].with.{key}"),
                            format!(
                                "'${{params.{name}}}' is not captured by this route: add `{{{name}}}` to the `path` of every `when` condition, e.g. `path: /{{{name}}}`"
                            ),
                        ));
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(handler_binding::<Http, _>(Arc::new(ProxyHandler {
            id: cx.id,
            name: cx.qualified_name(),
            routes: cx.routes,
        })))
    }
}

struct ProxyHandler {
    id: BindingId,
    name: String,
    routes: Routes<HttpFilesystemCondition, HttpFilesystemWith>,
}

impl Handler<Http> for ProxyHandler {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Http>) -> Result<(), Reset<Http>> {
        let headers = &stream.begin.headers;
        let method = headers.get_str(":method").unwrap_or_default();
        let full = headers.get_str(":path").unwrap_or_default();
        let path = full.split_once('?').map_or(full, |(p, _)| p);
        let Some(route) = self.routes.resolve(graph, stream.session.as_deref(), |w| {
            w.matches(method, path).is_some()
        }) else {
            tracing::debug!(binding = self.name, method, path, "no route");
            return Err(HttpReset::refuse(404));
        };
        let operation = match method {
            "GET" => Operation::Read,
            "HEAD" => Operation::Metadata,
            _ => {
                let mut allow = Headers::new();
                allow.set("allow", "GET, HEAD");
                return Err(Reset::with(HttpReset {
                    status: 405,
                    headers: allow,
                }));
            }
        };
        let exit = route.exit.ok_or_else(|| HttpReset::refuse(404))?;
        let params = route
            .when
            .iter()
            .find_map(|w| w.matches(method, path))
            .unwrap_or_default();
        let file = match &route.with {
            Some(with) => file_path(with, &params),
            None => path.strip_prefix('/').unwrap_or(path).to_string(),
        };
        let request = FileRequest {
            operation,
            path: file,
            if_none_match: headers.get_str("if-none-match").map(str::to_string),
        };
        let (fs_tx, fs_rx) = graph
            .open_from::<Filesystem>(
                self.id,
                exit,
                FilesystemBegin::Request(request),
                stream.session.clone(),
            )
            .map_err(|_| HttpReset::refuse(404))?;
        graph.spawn(proxy(stream, fs_tx, fs_rx, operation));
        Ok(())
    }
}

/// The file a route's `with` names for the captured `params`.
fn file_path(with: &HttpFilesystemWith, params: &[(String, String)]) -> String {
    let path = with.path.as_deref().map(|p| config::substitute(p, params));
    let directory = with
        .directory
        .as_deref()
        .map(|d| config::substitute(d, params));
    match (directory, path) {
        (Some(d), Some(p)) if !d.is_empty() => format!("{}/{p}", d.trim_end_matches('/')),
        (Some(d), None) => format!("{}/", d.trim_end_matches('/')),
        (_, Some(p)) => p,
        (None, None) => String::new(),
    }
}

/// Carries one exchange: the filesystem reply becomes the http response.
async fn proxy(
    stream: Stream<Http>,
    fs_tx: Tx<Filesystem>,
    mut fs_rx: Rx<Filesystem>,
    operation: Operation,
) {
    let (mut http_rx, mut http_tx, _) = stream.into_halves();
    // The request has no content for the filesystem.
    fs_tx.end(None);
    let mut request_done = false;
    let mut began = false;
    loop {
        let frame = tokio::select! {
            frame = fs_rx.recv() => frame,
            // The client went away: dropping `fs_rx` stops the filesystem read.
            _ = http_tx.reset() => return,
            frame = http_rx.recv(), if !request_done => {
                match frame {
                    // A request body is not used; it is read and dropped.
                    Some(Frame::Data(_) | Frame::Flush | Frame::Begin(_)) => {}
                    Some(Frame::End(_)) | None => request_done = true,
                    // The request failed: give up on the response.
                    Some(Frame::Abort(_)) => return,
                }
                continue;
            }
        };
        match frame {
            Some(Frame::Begin(FilesystemBegin::Reply(reply))) if !began => {
                began = true;
                let (begin, content) = response(reply.status, operation);
                if http_tx.send(Frame::Begin(begin)).await.is_err() {
                    return;
                }
                if !content {
                    while http_rx.try_recv().is_some() {}
                    return http_tx.end(None);
                }
            }
            Some(Frame::Data(d)) if began => {
                let data = Data {
                    flags: d.flags,
                    payload: d.payload,
                    meta: (),
                };
                if http_tx.send(Frame::Data(data)).await.is_err() {
                    return;
                }
            }
            Some(Frame::Flush) => {}
            Some(Frame::End(_)) if began => {
                while http_rx.try_recv().is_some() {}
                return http_tx.end(None);
            }
            // Refused or failed before a reply: the file cannot be served.
            Some(Frame::End(_) | Frame::Abort(_)) | None if !began => {
                let _ = http_tx.send(Frame::Begin(empty(404))).await;
                while http_rx.try_recv().is_some() {}
                return http_tx.end(None);
            }
            // Failed mid-content (or a frame out of order): the response is incomplete.
            _ => return http_tx.abort(None),
        }
    }
}

/// The http response begin for a filesystem outcome, and whether content follows.
fn response(status: FileStatus, operation: Operation) -> (HttpBegin, bool) {
    match status {
        FileStatus::Ok(meta) => {
            let mut begin = HttpBegin::status(200);
            begin
                .headers
                .set("content-type", Bytes::from(meta.content_type.clone()));
            begin
                .headers
                .set("content-length", Bytes::from(meta.size.to_string()));
            validators(&mut begin.headers, &meta);
            (begin, operation == Operation::Read && meta.size > 0)
        }
        FileStatus::NotModified(meta) => {
            let mut begin = HttpBegin::status(304);
            validators(&mut begin.headers, &meta);
            (begin, false)
        }
        FileStatus::NotFound | FileStatus::Forbidden => (empty(404), false),
    }
}

fn validators(headers: &mut Headers, meta: &FileMetadata) {
    headers.set("etag", Bytes::from(meta.etag.clone()));
    if let Some(m) = meta.modified {
        headers.set("last-modified", Bytes::from(http_date(m)));
    }
}

/// A response begin with `status` and no content.
fn empty(status: u16) -> HttpBegin {
    let mut begin = HttpBegin::status(status);
    begin.headers.set("content-length", "0");
    begin
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 IMF-fixdate).
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
