//! Safe resolution of request paths under the served location.
//!
//! A request path is a percent-encoded URI path relative to the location. It is split on `/`
//! first and each segment decoded on its own, so an encoded slash (`%2f`) can never introduce a
//! separator; a decoded segment that is empty, `.` or `..`, or that holds `/`, `\` or NUL, refuses
//! the whole path. Symbolic links are then checked on the disk: under `symlinks: ignore` every
//! component below the location is looked up without following links and any link refuses the
//! path; under `symlinks: follow` the path is canonicalized and must still lie inside the
//! canonical location.

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use proto_filesystem::FileStatus;

use crate::config::Symlinks;

/// Why a request path was refused before touching the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unsafe {
    /// An empty path, or one ending in `/`: a directory, which is not served.
    Directory,
    /// A segment that would escape the location or is not a plain name.
    Segment(String),
    /// A `%` not followed by two hex digits, or a name that is not UTF-8.
    Encoding,
}

/// Splits and decodes `raw` into plain file name segments.
pub(crate) fn segments(raw: &str) -> Result<Vec<String>, Unsafe> {
    if raw.is_empty() || raw.ends_with('/') {
        return Err(Unsafe::Directory);
    }
    raw.split('/')
        .map(|seg| {
            let decoded = percent_decode(seg).ok_or(Unsafe::Encoding)?;
            let decoded = String::from_utf8(decoded).map_err(|_| Unsafe::Encoding)?;
            let plain = !decoded.is_empty()
                && decoded != "."
                && decoded != ".."
                && !decoded.contains(['/', '\\', '\0']);
            if plain {
                Ok(decoded)
            } else {
                Err(Unsafe::Segment(seg.to_string()))
            }
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Finds the regular file named by `segments` under `root`, honouring `symlinks`. Returns the
/// path to open and its metadata, or the status to answer with.
pub(crate) async fn resolve(
    root: &Path,
    segments: &[String],
    symlinks: Symlinks,
) -> Result<(PathBuf, Metadata), FileStatus> {
    let path = segments.iter().fold(root.to_path_buf(), |p, s| p.join(s));
    let (path, metadata) = match symlinks {
        Symlinks::Ignore => {
            // Look at every component without following links: a link anywhere refuses.
            let mut at = root.to_path_buf();
            let mut last = None;
            for seg in segments {
                at.push(seg);
                let m = tokio::fs::symlink_metadata(&at).await.map_err(status)?;
                if m.file_type().is_symlink() {
                    tracing::debug!(path = %at.display(), "symbolic link refused (symlinks: ignore)");
                    return Err(FileStatus::Forbidden);
                }
                last = Some(m);
            }
            (path, last.ok_or(FileStatus::NotFound)?)
        }
        Symlinks::Follow => {
            let root = tokio::fs::canonicalize(root).await.map_err(status)?;
            let real = tokio::fs::canonicalize(&path).await.map_err(status)?;
            if !real.starts_with(&root) {
                tracing::debug!(path = %path.display(), target = %real.display(), "symbolic link outside the location refused");
                return Err(FileStatus::Forbidden);
            }
            let m = tokio::fs::metadata(&real).await.map_err(status)?;
            (real, m)
        }
    };
    if !metadata.is_file() {
        return Err(FileStatus::NotFound);
    }
    Ok((path, metadata))
}

/// The status for an I/O error while looking a file up.
pub(crate) fn status(e: io::Error) -> FileStatus {
    match e.kind() {
        io::ErrorKind::PermissionDenied => FileStatus::Forbidden,
        _ => FileStatus::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> bool {
        segments(raw).is_err()
    }

    #[test]
    fn plain_paths_decode_to_segments() {
        assert_eq!(segments("index.html").unwrap(), vec!["index.html"]);
        assert_eq!(segments("a/b%20c.txt").unwrap(), vec!["a", "b c.txt"]);
        assert_eq!(segments("%C3%A9t%C3%A9.txt").unwrap(), vec!["été.txt"]);
        assert_eq!(segments("..a/b..").unwrap(), vec!["..a", "b.."]);
    }

    #[test]
    fn dot_dot_segments_are_refused_encoded_or_not() {
        for raw in [
            "..",
            "../etc/passwd",
            "a/../../etc/passwd",
            "a/..",
            "%2e%2e/etc/passwd",
            "%2E%2E/%2E%2E/etc/passwd",
            ".%2e/etc/passwd",
            "a/%2e%2e",
            "./index.html",
            "%2e/index.html",
        ] {
            assert!(refused(raw), "{raw} must be refused");
        }
    }

    #[test]
    fn encoded_separators_absolute_paths_and_nul_are_refused() {
        for raw in [
            "..%2fetc%2fpasswd",
            "a%2F..%2F..%2Fetc%2Fpasswd",
            "%2fetc/passwd",
            "..%5c..%5cwindows",
            "a%5Cb",
            "a\\b",
            "/etc/passwd",
            "//etc/passwd",
            "a//b",
            "index.html%00.png",
            "a\0b",
            "%zz",
            "%+2e%+2e/etc",
            "%2",
            "%ff%fe",
            "",
            "dir/",
        ] {
            assert!(refused(raw), "{raw:?} must be refused");
        }
    }

    async fn check(root: &Path, raw: &str, symlinks: Symlinks) -> Result<PathBuf, FileStatus> {
        let segs = segments(raw).map_err(|_| FileStatus::Forbidden)?;
        resolve(root, &segs, symlinks).await.map(|(p, _)| p)
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symbolic_links_are_refused_unless_followed_and_never_outside() {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/page.html"), "page").unwrap();
        symlink(outside.path().join("secret.txt"), root.join("escape.txt")).unwrap();
        symlink(outside.path(), root.join("outdir")).unwrap();
        symlink(root.join("sub/page.html"), root.join("inside.html")).unwrap();
        symlink(root.join("sub"), root.join("alias")).unwrap();

        // Plain files resolve in both modes.
        for mode in [Symlinks::Ignore, Symlinks::Follow] {
            assert!(check(root, "sub/page.html", mode).await.is_ok());
            assert_eq!(
                check(root, "missing.html", mode).await,
                Err(FileStatus::NotFound)
            );
            assert_eq!(check(root, "sub", mode).await, Err(FileStatus::NotFound));
        }
        // ignore: any link refuses, in the last component or before it.
        for raw in [
            "escape.txt",
            "outdir/secret.txt",
            "inside.html",
            "alias/page.html",
        ] {
            assert_eq!(
                check(root, raw, Symlinks::Ignore).await,
                Err(FileStatus::Forbidden),
                "{raw}"
            );
        }
        // follow: links inside the location are served, links leaving it are not.
        assert!(check(root, "inside.html", Symlinks::Follow).await.is_ok());
        assert!(check(root, "alias/page.html", Symlinks::Follow)
            .await
            .is_ok());
        assert_eq!(
            check(root, "escape.txt", Symlinks::Follow).await,
            Err(FileStatus::Forbidden)
        );
        assert_eq!(
            check(root, "outdir/secret.txt", Symlinks::Follow).await,
            Err(FileStatus::Forbidden)
        );
    }
}
