//! The `filesystem` protocol: one file operation per stream.
//!
//! The opener (an `http-filesystem` proxy) sends a [`FilesystemBegin::Request`] naming the
//! [`Operation`] and the path, then `End` (there is no request content: writes are not part of
//! this protocol). The acceptor (a `filesystem` server) answers with a
//! [`FilesystemBegin::Reply`] carrying the [`FileStatus`]; for a successful
//! [`Operation::Read`] its data frames are the file content (in order, at most
//! [`FileMetadata::size`] bytes in all), then `End`. Every other outcome is a reply `Begin`
//! followed directly by `End`. An `Abort` after a successful reply means the file could not be
//! read to the end (it shrank, or an I/O error): the content is incomplete.
//!
//! ```text
//! http-filesystem                               filesystem
//!   Begin(Request{Read, "index.html"}) End  ──▶
//!                                           ◀──  Begin(Reply{Ok(size, type, etag)}) Data* End
//! ```

use std::time::SystemTime;

use zilla_engine::Protocol;

/// The `filesystem` protocol marker.
#[derive(Debug, Clone, Copy)]
pub struct Filesystem;

impl Protocol for Filesystem {
    const NAME: &'static str = "filesystem";
    type Begin = FilesystemBegin;
    type Data = ();
    type End = ();
    type Reset = ();
    type Challenge = ();
}

/// The `Begin` extension of either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilesystemBegin {
    /// Initial direction: what the opener asks for.
    Request(FileRequest),
    /// Reply direction: the outcome.
    Reply(FileReply),
}

/// What the opener asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    /// Read the content, or only the metadata.
    pub operation: Operation,
    /// The file, relative to the server's `location`, as a percent-encoded URI path without a
    /// leading `/` (`docs/a%20b.html`). The server decodes it and refuses anything that would
    /// leave its location.
    pub path: String,
    /// The client's `if-none-match` value (a list of entity tags, or `*`): when it matches the
    /// file's etag the server answers [`FileStatus::NotModified`] without content.
    pub if_none_match: Option<String>,
}

/// A file operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Metadata, then the content as data frames.
    Read,
    /// Metadata only (an HTTP `HEAD`).
    Metadata,
}

/// The acceptor's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReply {
    /// The outcome.
    pub status: FileStatus,
}

/// The outcome of a file operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// The file exists and is readable; content follows for [`Operation::Read`].
    Ok(FileMetadata),
    /// The `if-none-match` tag matched; no content follows.
    NotModified(FileMetadata),
    /// No such file (or it is a directory, or the path names nothing servable).
    NotFound,
    /// The path is refused: it would leave the location, crosses a symbolic link that is not
    /// followed, or the file is not readable.
    Forbidden,
}

/// What is known about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMetadata {
    /// Size in bytes: exactly the content that follows a successful read.
    pub size: u64,
    /// Media type guessed from the file name (`text/html`).
    pub content_type: String,
    /// Strong entity tag, quoted as HTTP sends it (`"1f-18c2d3e4f5a6b7c8"`).
    pub etag: String,
    /// Last modification time, if the platform reports one.
    pub modified: Option<SystemTime>,
}

/// True if an `if-none-match` value (`"a", W/"b"` or `*`) matches `etag`, using the weak
/// comparison HTTP requires for `if-none-match` (a `W/` prefix is ignored on both sides).
pub fn if_none_match_matches(if_none_match: &str, etag: &str) -> bool {
    let etag = etag.trim().trim_start_matches("W/");
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || (!tag.is_empty() && tag.trim_start_matches("W/") == etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        assert!(if_none_match_matches("\"a\"", "\"a\""));
        assert!(if_none_match_matches("W/\"a\"", "\"a\""));
        assert!(if_none_match_matches("\"x\", \"a\"", "\"a\""));
        assert!(if_none_match_matches("*", "\"a\""));
        assert!(!if_none_match_matches("\"b\"", "\"a\""));
        assert!(!if_none_match_matches("", "\"a\""));
        assert!(!if_none_match_matches("a", "\"a\""));
    }
}
