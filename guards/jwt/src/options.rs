//! The `options` of a `jwt` guard, as in Zilla's `guard-jwt` schema.

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Options of a `jwt` guard.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtOptions {
    /// Expected `iss` claim (exact match). Without it every token is refused.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Value the `aud` claim (a string or an array) must contain. Without it every token is
    /// refused.
    #[serde(default)]
    pub audience: Option<String>,
    /// Claim path holding the roles (default `scope`); `.` walks into nested objects, e.g.
    /// `realm_access.roles`. A space-separated string or an array of strings.
    #[serde(default)]
    pub roles: Option<String>,
    /// Claim holding the session identity (default `sub`).
    #[serde(default)]
    pub identity: Option<String>,
    /// Name -> claim path (dotted for nested claims): values of the session that routes read as
    /// `${guarded['<guard>'].attributes.<name>}`, e.g. `tenant: org.id`. A claim that is not a
    /// string is given as its JSON text; a missing claim is no attribute.
    #[serde(default)]
    pub attributes: Option<indexmap::IndexMap<String, String>>,
    /// Seconds before `exp` at which the client is challenged for fresh credentials.
    #[serde(default)]
    pub challenge: Option<u64>,
    /// Verification keys: a list of JWKs, or an `http(s)://` URL of a JWKS document read once
    /// when the config is applied. Omitted: `<issuer>/.well-known/jwks.json`.
    #[serde(default)]
    pub keys: Option<Keys>,
}

/// `keys`: inline JWKs or the URL of a JWKS.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum Keys {
    /// Inline JSON Web Keys.
    Inline(Vec<JwkConfig>),
    /// URL of a JWKS document (`{"keys": [...]}`).
    Url(
        #[schemars(regex(pattern = r"^https?://"))]
        String,
    ),
}

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        match value {
            serde_json::Value::String(url) => Ok(Keys::Url(url)),
            serde_json::Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    serde_json::from_value::<JwkConfig>(item)
                        .map_err(|e| de::Error::custom(format!("key [{i}]: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Keys::Inline),
            other => Err(de::Error::custom(format!(
                "expected a list of JWK objects or an http(s) URL string, found {}",
                kind_of(&other)
            ))),
        }
    }
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "nothing",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a map",
    }
}

/// One JSON Web Key (RFC 7517). Other members are allowed and ignored.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct JwkConfig {
    /// Key type: `RSA` or `EC`.
    pub kty: String,
    /// Key id, matched against the token header's `kid`.
    pub kid: String,
    /// Algorithm (`RS256`, `ES256`, ...); the token header's `alg` must equal it.
    #[serde(default)]
    pub alg: Option<String>,
    /// Public key use (`sig`); read but not enforced, as in Zilla.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// RSA modulus (base64url; standard base64 with padding is accepted too).
    #[serde(default)]
    pub n: Option<String>,
    /// RSA public exponent (base64url or standard base64).
    #[serde(default)]
    pub e: Option<String>,
    /// EC curve: `P-256`, `P-384` or `P-521`.
    #[serde(default)]
    pub crv: Option<String>,
    /// EC x coordinate (base64url or standard base64).
    #[serde(default)]
    pub x: Option<String>,
    /// EC y coordinate (base64url or standard base64).
    #[serde(default)]
    pub y: Option<String>,
}

/// A JWKS document as served at a `keys` URL.
#[derive(Debug, Deserialize)]
pub(crate) struct JwkSet {
    #[serde(default)]
    pub(crate) keys: Vec<serde_json::Value>,
}
