//! Media types guessed from file names.

/// The media type of `name` from its extension (case-insensitive), or
/// `application/octet-stream`.
pub(crate) fn content_type(name: &str) -> &'static str {
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() || name.matches('.').count() > 1 => ext,
        _ => return DEFAULT,
    };
    TABLE
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map_or(DEFAULT, |(_, t)| t)
}

const DEFAULT: &str = "application/octet-stream";

const TABLE: &[(&str, &str)] = &[
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
    ("js", "text/javascript"),
    ("mjs", "text/javascript"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("ico", "image/x-icon"),
    ("txt", "text/plain"),
    ("xml", "application/xml"),
    ("wasm", "application/wasm"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("pdf", "application/pdf"),
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
];

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn known_extensions_map_to_their_media_type() {
        for (name, expected) in [
            ("index.html", "text/html"),
            ("INDEX.HTML", "text/html"),
            ("site.css", "text/css"),
            ("app.js", "text/javascript"),
            ("mod.mjs", "text/javascript"),
            ("data.json", "application/json"),
            ("logo.svg", "image/svg+xml"),
            ("a.png", "image/png"),
            ("a.jpg", "image/jpeg"),
            ("a.jpeg", "image/jpeg"),
            ("a.gif", "image/gif"),
            ("favicon.ico", "image/x-icon"),
            ("notes.txt", "text/plain"),
            ("feed.xml", "application/xml"),
            ("app.wasm", "application/wasm"),
            ("font.woff2", "font/woff2"),
            ("archive.tar.gz", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name), expected, "{name}");
        }
    }

    #[test]
    fn unknown_or_missing_extensions_are_octet_stream() {
        for name in ["README", "a.unknown", ".html", "html", "a."] {
            assert_eq!(content_type(name), "application/octet-stream", "{name}");
        }
    }
}
