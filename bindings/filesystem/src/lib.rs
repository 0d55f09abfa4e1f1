//! The `filesystem` binding: a server that answers `filesystem` streams with files under a
//! location.
//!
//! ```yaml
//! east_filesystem_server:
//!   type: filesystem
//!   kind: server
//!   options:
//!     location: /var/www/
//!     symlinks: ignore
//! ```
//!
//! Each stream asks for one file ([`proto_filesystem::FileRequest`]). The path is decoded and
//! checked so that nothing outside `location` can be named (see `path.rs`); a directory, a
//! missing file or a refused path is answered with a reply whose status says so, never with
//! content. A file is streamed in chunks of 64 KiB, each sent only when the reader has credit,
//! so a slow client holds at most one window of the file in memory.
//!
//! Differences from Zilla, by design: the etag is derived from the size and modification time
//! (Zilla hashes the first read buffer), directories are not listed (Zilla lists them for a
//! `GET` of a path ending in `/`), and there are no write operations.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::BytesMut;
use proto_filesystem::{
    if_none_match_matches, FileMetadata, FileReply, FileRequest, FileStatus, Filesystem,
    FilesystemBegin, Operation,
};
use tokio::io::AsyncReadExt;
use zilla_engine::{
    handler_binding, Binding, BindingContext, BindingDescriptor, BindingFactory, ConfigError,
    ConfigErrors, Frame, Graph, Handler, Kind, Nothing, Protocols, Reset, Rx, Stream, Tx,
};

mod config;
mod content_type;
mod path;

pub use config::{FilesystemOptions, Symlinks};

/// Bytes read from a file per data frame.
const CHUNK: usize = 64 * 1024;

/// Engine property overriding the directory relative `location`s resolve against.
const ROOT_PROPERTY: &str = "zilla.binding.filesystem.server.root";

/// The `filesystem` binding type.
#[derive(Debug)]
pub struct FilesystemFactory;

zilla_engine::inventory::submit! { BindingDescriptor::new::<FilesystemFactory>() }

impl BindingFactory for FilesystemFactory {
    const TYPE: &'static str = "filesystem";
    const KINDS: &'static [Kind] = &[Kind::Server];
    type Options = FilesystemOptions;
    type When = Nothing;
    type With = Nothing;

    fn protocols(_: Kind) -> Protocols {
        Protocols::accepts::<Filesystem>()
    }

    fn build(mut cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        let mut errors = ConfigErrors::new();
        if let Err(e) = cx.forbid_exit() {
            errors.push(e);
        }
        let options = match cx.require_options() {
            Ok(o) => Some(o),
            Err(e) => {
                errors.push(ConfigError {
                    message: format!(
                        "{}: add `options: {{ location: /path/to/dir/ }}`",
                        e.message
                    ),
                    ..e
                });
                None
            }
        };
        let location = match &options {
            Some(o) => match location(&o.location, cx.properties.get(ROOT_PROPERTY)) {
                Ok(l) => Some(l),
                Err(m) => {
                    errors.push(cx.error("options.location", m));
                    None
                }
            },
            None => None,
        };
        let (Some(options), Some(location)) = (options, location) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        if !location.is_dir() {
            tracing::warn!(
                binding = %cx.qualified_name(),
                location = %location.display(),
                "filesystem location is not a directory (yet): every request answers 404"
            );
        }
        Ok(handler_binding::<Filesystem, _>(Arc::new(
            FilesystemHandler {
                name: cx.qualified_name(),
                location,
                symlinks: options.symlinks,
            },
        )))
    }
}

/// The directory named by a `location` option: a path or a `file:` URI, relative ones resolved
/// against `root` (the property) or the working directory.
fn location(text: &str, root: Option<&str>) -> Result<PathBuf, String> {
    let path = if let Some(rest) = text.strip_prefix("file://") {
        // `file:///var/www/` or `file://localhost/var/www/`.
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        if !rest.starts_with('/') {
            return Err(format!(
                "'{text}' names a remote host: use a local directory such as file:///var/www/"
            ));
        }
        rest.to_string()
    } else if let Some(rest) = text.strip_prefix("file:") {
        rest.to_string()
    } else if text.contains("://") {
        return Err(format!(
            "'{text}' is not a local directory: use a path such as /var/www/ or www/"
        ));
    } else {
        text.to_string()
    };
    if path.is_empty() {
        return Err("the location is empty: give a directory such as /var/www/ or www/".into());
    }
    if !path.ends_with('/') {
        // Zilla resolves file names against a location URI, so without the final `/` it would
        // serve the parent directory. Serving the directory named is what was meant.
        tracing::warn!(
            location = text,
            "filesystem location does not end with '/': serving the directory it names (end it with '/' to silence this)"
        );
    }
    let path = Path::new(&path);
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let base = match root {
        Some(r) => PathBuf::from(r),
        None => std::env::current_dir().map_err(|e| {
            format!("cannot resolve the relative location '{text}' ({e}): give an absolute path")
        })?,
    };
    Ok(base.join(path))
}

struct FilesystemHandler {
    name: String,
    location: PathBuf,
    symlinks: Symlinks,
}

impl Handler<Filesystem> for FilesystemHandler {
    fn open(
        &self,
        graph: &Arc<Graph>,
        stream: Stream<Filesystem>,
    ) -> Result<(), Reset<Filesystem>> {
        let FilesystemBegin::Request(request) = &stream.begin else {
            // A reply where a request belongs: nothing to serve.
            return Err(Reset(None));
        };
        let request = request.clone();
        let location = self.location.clone();
        let symlinks = self.symlinks;
        let name = self.name.clone();
        graph.spawn(async move {
            let (rx, tx, _) = stream.into_halves();
            serve(&name, &location, symlinks, request, rx, tx).await;
        });
        Ok(())
    }
}

async fn serve(
    name: &str,
    location: &Path,
    symlinks: Symlinks,
    request: FileRequest,
    mut rx: Rx<Filesystem>,
    mut tx: Tx<Filesystem>,
) {
    let found = match path::segments(&request.path) {
        Ok(segs) => path::resolve(location, &segs, symlinks).await,
        Err(why) => {
            tracing::debug!(binding = name, path = request.path, ?why, "path refused");
            Err(match why {
                path::Unsafe::Directory => FileStatus::NotFound,
                _ => FileStatus::Forbidden,
            })
        }
    };
    let (file_path, metadata) = match found {
        Ok(f) => f,
        Err(status) => return reply_only(tx, rx, status).await,
    };
    let file_name = file_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let modified = metadata.modified().ok();
    let meta = FileMetadata {
        size: metadata.len(),
        content_type: content_type::content_type(&file_name).to_string(),
        etag: etag(metadata.len(), modified),
        modified,
    };
    if let Some(inm) = &request.if_none_match {
        if if_none_match_matches(inm, &meta.etag) {
            return reply_only(tx, rx, FileStatus::NotModified(meta)).await;
        }
    }
    if request.operation == Operation::Metadata {
        return reply_only(tx, rx, FileStatus::Ok(meta)).await;
    }
    let mut file = match tokio::fs::File::open(&file_path).await {
        Ok(f) => f,
        Err(e) => return reply_only(tx, rx, path::status(e)).await,
    };
    let size = meta.size;
    if tx
        .send(Frame::Begin(FilesystemBegin::Reply(FileReply {
            status: FileStatus::Ok(meta),
        })))
        .await
        .is_err()
    {
        return;
    }
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK);
        let mut buf = BytesMut::with_capacity(want);
        let mut limited = (&mut file).take(want as u64);
        let read = tokio::select! {
            r = limited.read_buf(&mut buf) => r,
            _ = tx.reset() => return,
        };
        match read {
            Ok(0) => {
                tracing::debug!(binding = name, path = %file_path.display(), "file shrank while read");
                return tx.abort(None);
            }
            Ok(n) => {
                left -= n as u64;
                if tx.data(buf.freeze()).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(binding = name, path = %file_path.display(), error = %e, "read failed");
                return tx.abort(None);
            }
        }
    }
    drain(&mut rx);
    tx.end(None);
}

/// Replies with `status` and no content.
async fn reply_only(mut tx: Tx<Filesystem>, mut rx: Rx<Filesystem>, status: FileStatus) {
    if tx
        .send(Frame::Begin(FilesystemBegin::Reply(FileReply { status })))
        .await
        .is_ok()
    {
        drain(&mut rx);
        tx.end(None);
    }
}

/// Takes the request's frames already queued (its `End`) so that dropping `rx` afterwards does
/// not reset a request that completed normally.
fn drain(rx: &mut Rx<Filesystem>) {
    while rx.try_recv().is_some() {}
}

/// A strong entity tag from the size and modification time.
fn etag(size: u64, modified: Option<std::time::SystemTime>) -> String {
    let nanos = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{size:x}-{nanos:x}\"")
}

#[cfg(test)]
mod tests;
