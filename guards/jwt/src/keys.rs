//! JWKs to verification keys, and reading a JWKS from a URL.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::options::{JwkConfig, JwkSet};

/// A usable verification key.
pub(crate) struct Key {
    /// The key's `alg`; `None` means no token can ever verify with it (as in Zilla).
    pub(crate) alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("alg", &self.alg).finish()
    }
}

/// Keys by `kid` (a later duplicate replaces an earlier one).
pub(crate) type KeySet = HashMap<String, Key>;

/// Decodes base64 leniently: base64url or standard alphabet, padded or not, whitespace ignored.
pub(crate) fn b64_lenient(text: &str) -> Result<Vec<u8>, String> {
    let normalized: String = text
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && *c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD
        .decode(normalized.as_bytes())
        .map_err(|e| format!("not base64: {e}"))
}

fn family_ok(kty: &str, alg: Algorithm) -> bool {
    use Algorithm::*;
    match kty {
        "RSA" => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
        "EC" => matches!(alg, ES256 | ES384),
        _ => false,
    }
}

/// Builds one key. Errors are `(member, message)`, member relative to the key (`n`, `alg`, ...).
pub(crate) fn build_key(jwk: &JwkConfig) -> Result<Key, (&'static str, String)> {
    let alg = match &jwk.alg {
        None => None,
        Some(a) => {
            let alg = Algorithm::from_str(a).map_err(|_| {
                (
                    "alg",
                    format!("unknown algorithm '{a}': use one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384"),
                )
            })?;
            if !family_ok(&jwk.kty, alg) {
                return Err((
                    "alg",
                    format!(
                        "algorithm '{a}' cannot be used with a key of type '{}': RSA keys take RS*/PS*, EC keys ES256/ES384",
                        jwk.kty
                    ),
                ));
            }
            Some(alg)
        }
    };
    let part =
        |name: &'static str, value: &Option<String>| -> Result<Vec<u8>, (&'static str, String)> {
            let v = value
                .as_deref()
                .ok_or_else(|| (name, format!("a key of type '{}' needs `{name}`", jwk.kty)))?;
            let bytes = b64_lenient(v).map_err(|e| (name, e))?;
            if bytes.is_empty() {
                return Err((
                    name,
                    "is empty: give the base64url (or base64) value".to_string(),
                ));
            }
            Ok(bytes)
        };
    let key = match jwk.kty.as_str() {
        "RSA" => {
            let n = part("n", &jwk.n)?;
            let e = part("e", &jwk.e)?;
            DecodingKey::from_rsa_raw_components(&n, &e)
        }
        "EC" => {
            let x = part("x", &jwk.x)?;
            let y = part("y", &jwk.y)?;
            if let Some(crv) = &jwk.crv {
                if !matches!(crv.as_str(), "P-256" | "P-384" | "P-521") {
                    return Err((
                        "crv",
                        format!("unknown curve '{crv}': use P-256, P-384 or P-521"),
                    ));
                }
            }
            DecodingKey::from_ec_components(&URL_SAFE_NO_PAD.encode(x), &URL_SAFE_NO_PAD.encode(y))
                .map_err(|e| ("x", e.to_string()))?
        }
        other => {
            return Err((
                "kty",
                format!(
                "unsupported key type '{other}': use RSA or EC (HMAC keys cannot be configured)"
            ),
            ))
        }
    };
    Ok(Key { alg, key })
}

/// Parses a JWKS body. Keys that cannot be used are skipped with a warning, as an identity
/// provider may publish encryption or other key types next to the signing keys.
pub(crate) fn parse_jwks(body: &str) -> Result<KeySet, String> {
    let set: JwkSet =
        serde_json::from_str(body).map_err(|e| format!("the body is not a JWKS document: {e}"))?;
    let mut keys = KeySet::new();
    for (i, raw) in set.keys.into_iter().enumerate() {
        let jwk: JwkConfig = match serde_json::from_value(raw) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!("jwt guard: JWKS key [{i}] skipped: {e}");
                continue;
            }
        };
        match build_key(&jwk) {
            Ok(k) => {
                keys.insert(jwk.kid.clone(), k);
            }
            Err((member, e)) => {
                tracing::warn!("jwt guard: JWKS key '{}' skipped: {member}: {e}", jwk.kid)
            }
        }
    }
    Ok(keys)
}

const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET url` (http or https), following no redirects; the body of a 200 answer.
pub(crate) fn fetch(url: &str) -> Result<String, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err("not an http:// or https:// URL".into());
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let path = path.split('#').next().unwrap_or("/").to_string();
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = split_authority(authority, default_port)?;

    let addrs = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?;
    let mut last = format!("no address for '{host}'");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, FETCH_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    let stream = stream.ok_or(last)?;
    let _ = stream.set_read_timeout(Some(FETCH_TIMEOUT));
    let _ = stream.set_write_timeout(Some(FETCH_TIMEOUT));

    let host_header = if authority.is_empty() {
        &host
    } else {
        authority
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {host_header}\r\naccept: application/json\r\nuser-agent: zilla\r\nconnection: close\r\n\r\n"
    );
    let raw = if tls {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("'{host}' is not a valid TLS server name: {e}"))?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| format!("tls: {e}"))?;
        let mut tls = rustls::StreamOwned::new(conn, stream);
        exchange(&mut tls, request.as_bytes())?
    } else {
        let mut stream = stream;
        exchange(&mut stream, request.as_bytes())?
    };
    parse_response(&raw)
}

fn split_authority(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.is_empty() {
        return Err("the URL has no host".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| "unterminated IPv6 address".to_string())?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("bad port '{p}'"))?,
        None => default_port,
    };
    Ok((host, port))
}

fn exchange(stream: &mut (impl Read + Write), request: &[u8]) -> Result<Vec<u8>, String> {
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > 4 << 20 {
                    return Err("the answer is larger than 4 MiB".into());
                }
                if complete(&raw) {
                    break;
                }
            }
            // A TLS peer closing without close_notify: keep what arrived.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(format!("cannot read the answer: {e}")),
        }
    }
    Ok(raw)
}

/// True once a `content-length` body or a chunked body has fully arrived.
fn complete(raw: &[u8]) -> bool {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        return body.len() >= len;
    }
    if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return dechunk(body).is_some();
    }
    false
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        (n.trim() == name).then(|| v.trim())
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The body of a complete chunked encoding, or `None` if it is not complete (or malformed).
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if body.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn parse_response(raw: &[u8]) -> Result<String, String> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| "no complete HTTP answer".to_string())?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("the server answered '{status_line}', not 200"));
    }
    let lower = head.to_ascii_lowercase();
    let body = &raw[end + 4..];
    let body = if header(&lower, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(body).ok_or_else(|| "truncated chunked body".to_string())?
    } else if let Some(len) = header(&lower, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        body.get(..len)
            .ok_or_else(|| "truncated body".to_string())?
            .to_vec()
    } else {
        body.to_vec()
    };
    String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_both_alphabets() {
        assert_eq!(b64_lenient("AQAB").unwrap(), vec![1, 0, 1]);
        assert_eq!(b64_lenient("-_8=").unwrap(), b64_lenient("+/8").unwrap());
        assert_eq!(b64_lenient("+/8=").unwrap(), vec![0xfb, 0xff]);
        assert!(b64_lenient("@@").is_err());
    }

    #[test]
    fn authorities() {
        assert_eq!(
            split_authority("h:8080", 80).unwrap(),
            ("h".to_string(), 8080)
        );
        assert_eq!(split_authority("h", 443).unwrap(), ("h".to_string(), 443));
        assert_eq!(
            split_authority("[::1]:9", 80).unwrap(),
            ("::1".to_string(), 9)
        );
        assert!(split_authority("h:x", 80).is_err());
    }

    #[test]
    fn chunked_and_sized_answers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"k\r\n5\r\neys\":\r\n3\r\n[]}\r\n0\r\n\r\n";
        assert!(complete(raw));
        assert_eq!(parse_response(raw).unwrap(), "{\"keys\":[]}");
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert!(complete(raw));
        assert_eq!(parse_response(raw).unwrap(), "{}");
        let raw = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert!(parse_response(raw).unwrap_err().contains("404"));
    }
}
