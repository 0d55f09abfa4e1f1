//! The server through the engine: a config is built into a graph and filesystem streams are
//! opened on it, as the http-filesystem proxy does.

use std::sync::Arc;

use bytes::Bytes;
use proto_filesystem::{FileRequest, FileStatus, Filesystem, FilesystemBegin, Operation};
use zilla_engine::config::Config;
use zilla_engine::{build, BuildEnv};
use zilla_engine::{BindingId, Frame, Graph, Properties};

fn graph(location: &str, extra: &str) -> Arc<Graph> {
    let yaml = format!(
        "name: test\nbindings:\n  fs:\n    type: filesystem\n    kind: server\n    options:\n      location: \"{location}\"\n{extra}"
    );
    let config = Config::parse("zilla.yaml", &yaml, |_| None).expect("config parses");
    build(&config, &env()).expect("graph builds")
}

fn env() -> BuildEnv {
    BuildEnv::new(Properties::default())
}

fn build_errors(yaml: &str) -> String {
    let config = Config::parse("zilla.yaml", yaml, |_| None).expect("config parses");
    match build(&config, &env()) {
        Ok(_) => panic!("expected build errors"),
        Err(d) => d.to_string(),
    }
}

/// Sends one request; returns the reply status, the content and whether it ended cleanly.
async fn request(
    graph: &Arc<Graph>,
    operation: Operation,
    path: &str,
    if_none_match: Option<&str>,
) -> (FileStatus, Vec<u8>, bool) {
    let begin = FilesystemBegin::Request(FileRequest {
        operation,
        path: path.to_string(),
        if_none_match: if_none_match.map(str::to_string),
    });
    let (tx, mut rx) = graph
        .open::<Filesystem>(BindingId(0), begin, None)
        .expect("stream accepted");
    tx.end(None);
    let status = match rx.recv().await {
        Some(Frame::Begin(FilesystemBegin::Reply(r))) => r.status,
        other => panic!("expected a reply begin, got {other:?}"),
    };
    let mut content = Vec::new();
    loop {
        match rx.recv().await {
            Some(Frame::Data(d)) => content.extend_from_slice(&d.payload.unwrap_or_default()),
            Some(Frame::End(_)) => return (status, content, true),
            Some(Frame::Abort(_)) | None => return (status, content, false),
            Some(_) => {}
        }
    }
}

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>hello</h1>\n").unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(dir.path().join("docs/a b.json"), "{}").unwrap();
    dir
}

fn loc(dir: &tempfile::TempDir) -> String {
    format!("{}/", dir.path().display())
}

#[tokio::test]
async fn reads_a_file_with_its_metadata() {
    let dir = site();
    let g = graph(&loc(&dir), "");
    let (status, content, clean) = request(&g, Operation::Read, "index.html", None).await;
    let FileStatus::Ok(meta) = status else {
        panic!("expected Ok, got {status:?}")
    };
    assert_eq!(content, b"<h1>hello</h1>\n");
    assert!(clean);
    assert_eq!(meta.size, 15);
    assert_eq!(meta.content_type, "text/html");
    assert!(meta.etag.starts_with('"') && meta.etag.ends_with('"'));
    assert!(meta.modified.is_some());

    let (status, content, _) = request(&g, Operation::Read, "docs/a%20b.json", None).await;
    assert!(
        matches!(&status, FileStatus::Ok(m) if m.content_type == "application/json"),
        "{status:?}"
    );
    assert_eq!(content, b"{}");
}

#[tokio::test]
async fn metadata_and_matching_tags_send_no_content() {
    let dir = site();
    let g = graph(&loc(&dir), "");
    let (status, content, clean) = request(&g, Operation::Metadata, "index.html", None).await;
    let FileStatus::Ok(meta) = status else {
        panic!("expected Ok, got {status:?}")
    };
    assert!(content.is_empty() && clean);

    let (status, content, _) = request(&g, Operation::Read, "index.html", Some(&meta.etag)).await;
    assert!(matches!(status, FileStatus::NotModified(_)), "{status:?}");
    assert!(content.is_empty());

    let (status, content, _) = request(&g, Operation::Read, "index.html", Some("\"other\"")).await;
    assert!(matches!(status, FileStatus::Ok(_)), "{status:?}");
    assert_eq!(content.len(), 15);
}

#[tokio::test]
async fn missing_files_directories_and_escapes_are_not_served() {
    let dir = site();
    let g = graph(&loc(&dir), "");
    for path in ["missing.html", "docs", "docs/", ""] {
        let (status, content, _) = request(&g, Operation::Read, path, None).await;
        assert_eq!(status, FileStatus::NotFound, "{path:?}");
        assert!(content.is_empty());
    }
    for path in [
        "../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "docs%2f..%2f..%2fetc%2fpasswd",
        "/etc/passwd",
        "..%5cetc",
        "index.html%00",
    ] {
        let (status, content, _) = request(&g, Operation::Read, path, None).await;
        assert_eq!(status, FileStatus::Forbidden, "{path:?}");
        assert!(content.is_empty(), "{path:?} leaked content");
    }
}

#[tokio::test]
async fn large_files_stream_in_chunks_under_credit() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &big).unwrap();
    let g = graph(&loc(&dir), "");
    let begin = FilesystemBegin::Request(FileRequest {
        operation: Operation::Read,
        path: "big.bin".into(),
        if_none_match: None,
    });
    let (tx, mut rx) = g.open::<Filesystem>(BindingId(0), begin, None).unwrap();
    tx.end(None);
    assert!(matches!(rx.recv().await, Some(Frame::Begin(_))));
    let mut frames = 0;
    let mut content = Vec::new();
    loop {
        match rx.recv().await {
            Some(Frame::Data(d)) => {
                let p: Bytes = d.payload.unwrap();
                assert!(p.len() <= 64 * 1024);
                content.extend_from_slice(&p);
                frames += 1;
            }
            Some(Frame::End(_)) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(content, big);
    assert!(frames >= 16, "{frames} frames");
}

#[tokio::test]
async fn relative_location_resolves_against_the_root_property() {
    let dir = site();
    let mut props = Properties::default();
    props.set(
        "zilla.binding.filesystem.server.root",
        dir.path().to_string_lossy(),
    );
    let yaml = "name: test\nbindings:\n  fs:\n    type: filesystem\n    kind: server\n    options:\n      location: docs/\n";
    let config = Config::parse("zilla.yaml", yaml, |_| None).unwrap();
    let g = build(
        &config,
        &BuildEnv {
            properties: Arc::new(props),
            ..env()
        },
    )
    .unwrap();
    let (status, content, _) = request(&g, Operation::Read, "a%20b.json", None).await;
    assert!(matches!(status, FileStatus::Ok(_)), "{status:?}");
    assert_eq!(content, b"{}");
}

#[test]
fn config_errors_say_what_to_do() {
    let no_options =
        build_errors("name: t\nbindings:\n  fs:\n    type: filesystem\n    kind: server\n");
    assert!(no_options.contains("needs `options`"), "{no_options}");
    assert!(no_options.contains("location"), "{no_options}");

    let exit = build_errors(
        "name: t\nbindings:\n  fs:\n    type: filesystem\n    kind: server\n    options: {location: /tmp/}\n    exit: fs\n",
    );
    assert!(exit.contains("bindings.fs.exit"), "{exit}");

    let remote = build_errors(
        "name: t\nbindings:\n  fs:\n    type: filesystem\n    kind: server\n    options: {location: \"http://example.com/\"}\n",
    );
    assert!(remote.contains("not a local directory"), "{remote}");

    let symlinks = build_errors(
        "name: t\nbindings:\n  fs:\n    type: filesystem\n    kind: server\n    options: {location: /tmp/, symlinks: always}\n",
    );
    assert!(symlinks.contains("options.symlinks"), "{symlinks}");
}

#[test]
fn file_uri_locations_are_local_paths() {
    assert_eq!(
        super::location("file:///var/www/", None).unwrap(),
        std::path::PathBuf::from("/var/www/")
    );
    assert!(super::location("file://host/var/www/", None).is_err());
    assert_eq!(
        super::location("www/", Some("/srv")).unwrap(),
        std::path::PathBuf::from("/srv/www/")
    );
}
