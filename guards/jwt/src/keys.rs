//! JWKs to verification keys, and JWKS documents to key sets.

use std::collections::HashMap;
use std::str::FromStr;

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
}
