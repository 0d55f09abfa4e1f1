//! Keys and tokens for the jwt guard's tests: RSA keys made by the `openssl` CLI, tokens signed
//! with `jsonwebtoken`.

#![allow(dead_code)]

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::Value;

/// The issuer the tests' guards expect.
pub(crate) const ISS: &str = "https://auth.example.com";
/// The audience the tests' guards expect.
pub(crate) const AUD: &str = "https://api.example.com";

/// A fresh RSA signing key and its public JWK (`kid` as given, `alg: RS256`).
pub(crate) fn rsa_key(kid: &str) -> (EncodingKey, Value) {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .unwrap_or_else(|e| panic!("openssl not runnable ({e}): apt-get install openssl"));
    assert!(out.status.success(), "openssl genpkey failed");
    let key = EncodingKey::from_rsa_pem(&out.stdout).expect("pem");
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap()).unwrap();
    jwk["kid"] = kid.into();
    jwk["alg"] = "RS256".into();
    (key, jwk)
}

/// `claims` signed RS256 with `key`, header `kid` as given.
pub(crate) fn sign(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    encode(&h, claims, key).unwrap()
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
