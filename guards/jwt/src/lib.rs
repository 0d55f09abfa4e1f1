//! The `jwt` guard: verifies a JWT (compact JWS) against configured JWKs and turns it into a
//! [`Session`] carrying the identity, the expiry, the challenge time and the roles.
//!
//! ```yaml
//! guards:
//!   authn_jwt:
//!     type: jwt
//!     options:
//!       issuer: https://auth.example.com
//!       audience: https://api.example.com
//!       roles: scope            # claim path, dotted for nested claims
//!       identity: sub
//!       challenge: 30           # seconds before exp
//!       attributes:             # for ${guarded['authn_jwt'].attributes.<name>} in routes
//!         tenant: org.id
//!       keys:                   # JWKs, or an http(s) URL of a JWKS, or omitted
//!         - { kty: RSA, kid: example, alg: RS256, n: "...", e: AQAB }
//! ```
//!
//! Verification follows Zilla's order: key by `kid`, header `alg` equal to the key's `alg`,
//! signature, `nbf`/`exp` (millisecond comparison, no leeway, valid at exactly `exp`), `iss`,
//! `aud` (string or array containing `audience`). Routes check that the token's roles are a
//! superset of the route's.

mod jwks;
mod keys;
mod options;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, decode_header, Validation};
use serde_json::{Map, Value};
use zilla_engine::{
    ConfigError, ConfigErrors, Guard, GuardDescriptor, GuardId, PluginContext, PluginFactory,
    Session,
};

use jwks::RemoteKeys;
use keys::{build_key, KeySet};
pub use options::{JwkConfig, JwtOptions, Keys};

/// The `jwt` guard type.
#[derive(Debug)]
pub struct JwtFactory;

zilla_engine::inventory::submit! { GuardDescriptor::new::<JwtFactory>() }

impl PluginFactory<dyn Guard> for JwtFactory {
    const TYPE: &'static str = "jwt";
    type Options = JwtOptions;

    fn build(
        cx: &PluginContext,
        options: Option<JwtOptions>,
    ) -> Result<Arc<dyn Guard>, ConfigErrors> {
        let options = options.ok_or_else(|| {
            cx.error(
                "options",
                "a jwt guard needs `options` with at least `issuer`, `audience` and `keys`",
            )
        })?;
        Ok(Arc::new(JwtGuard::new(cx, options)?))
    }
}

/// What a jwt session carries in [`Session::data`].
#[derive(Debug, Clone)]
pub struct JwtSession {
    /// The roles at the `roles` claim path; `None` when the token has no such claim (then every
    /// guarded route refuses it, even one requiring no role).
    pub roles: Option<Vec<String>>,
    /// All claims of the token.
    pub claims: Map<String, Value>,
}

/// The event of a refused token: its reason, never the token.
pub const EVENT_AUTHORIZATION_FAILED: &str = "GUARD_JWT_AUTHORIZATION_FAILED";

/// Why a token was refused (Zilla's reasons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The compact JWS or its claims could not be parsed.
    Malformed(String),
    /// No `kid`, no key with that `kid`, or the header `alg` differs from the key's.
    InvalidAlgOrKey,
    /// The signature does not verify.
    BadSignature,
    /// `now < nbf` or `now > exp`.
    Expired,
    /// `iss` or `aud` do not match.
    InvalidIssuerOrAudience,
    /// The identity claim is present but not a string.
    BadIdentity,
}

impl std::fmt::Display for Refusal {
    /// Zilla's reasons, word for word, with ours where Zilla has none.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed(why) => write!(f, "Malformed token: {}.", why.trim_end_matches('.')),
            Refusal::InvalidAlgOrKey => f.write_str("Invalid alg or key."),
            Refusal::BadSignature => f.write_str("Unable to verify key signature."),
            Refusal::Expired => f.write_str("Token is expired."),
            Refusal::InvalidIssuerOrAudience => f.write_str("Invalid issuer or audience."),
            Refusal::BadIdentity => f.write_str("Identity claim is not a string."),
        }
    }
}

impl Refusal {
    /// The `result` label of `guard.jwt.authorizations`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::InvalidAlgOrKey => "unknown-kid",
            Refusal::BadSignature => "bad-signature",
            Refusal::Expired => "expired",
            Refusal::InvalidIssuerOrAudience => "invalid-issuer-or-audience",
            Refusal::BadIdentity => "bad-identity",
        }
    }
}

zilla_engine::inventory::submit! { zilla_engine::MetricDescriptor::counter("guard.jwt.authorizations", zilla_engine::MetricUnit::Count, "Tokens checked, by result: ok, or why they were refused.") }
zilla_engine::inventory::submit! { zilla_engine::MetricDescriptor::counter("guard.jwt.challenges", zilla_engine::MetricUnit::Count, "Challenges sent to clients for fresh tokens before exp.") }

/// The guard's metrics.
#[derive(Debug)]
struct GuardMetrics {
    /// `ok`, then one per refusal label.
    results: Vec<(&'static str, zilla_engine::Counter)>,
    challenges: zilla_engine::Counter,
}

impl GuardMetrics {
    const RESULTS: [&'static str; 7] = [
        "ok",
        "malformed",
        "unknown-kid",
        "bad-signature",
        "expired",
        "invalid-issuer-or-audience",
        "bad-identity",
    ];

    fn new(scope: &zilla_engine::MetricScope) -> Self {
        GuardMetrics {
            results: Self::RESULTS
                .iter()
                .map(|r| {
                    (
                        *r,
                        scope.counter("guard.jwt.authorizations", &[("result", r)]),
                    )
                })
                .collect(),
            challenges: scope.counter("guard.jwt.challenges", &[]),
        }
    }

    fn result(&self, refusal: Option<&Refusal>) {
        let label = refusal.map_or("ok", Refusal::label);
        if let Some((_, c)) = self.results.iter().find(|(r, _)| *r == label) {
            c.inc();
        }
    }
}

/// A built `jwt` guard.
#[derive(Debug)]
pub struct JwtGuard {
    id: GuardId,
    name: String,
    events: zilla_engine::Events,
    metrics: GuardMetrics,
    attributes: Vec<(Arc<str>, Vec<String>)>,
    issuer: Option<String>,
    audience: Option<String>,
    roles: Vec<String>,
    identity: String,
    challenge: Option<Duration>,
    keys: KeySource,
}

/// Where a guard's keys are.
#[derive(Debug)]
enum KeySource {
    /// Listed in zilla.yaml.
    Inline(KeySet),
    /// A JWKS URL, kept fresh in the background.
    Remote(Arc<RemoteKeys>),
}

fn claim_path(
    cx: &PluginContext,
    key: &str,
    value: Option<String>,
    default: &str,
) -> Result<Vec<String>, ConfigError> {
    let value = value.unwrap_or_else(|| default.to_string());
    if value.is_empty() || value.split('.').any(str::is_empty) {
        return Err(cx.error(
            &format!("options.{key}"),
            format!("'{value}' is not a claim path: name a claim, with `.` between nested names (e.g. realm_access.roles)"),
        ));
    }
    Ok(value.split('.').map(str::to_string).collect())
}

impl JwtGuard {
    /// Builds the guard from its options; reads the JWKS URL if `keys` is one (or is omitted).
    pub fn new(cx: &PluginContext, o: JwtOptions) -> Result<JwtGuard, ConfigError> {
        for (key, value) in [("issuer", &o.issuer), ("audience", &o.audience)] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(cx.error(
                    &format!("options.{key}"),
                    format!("`{key}` is empty: give the value tokens must carry, or leave it out"),
                ));
            }
        }
        let roles = claim_path(cx, "roles", o.roles, "scope")?;
        let mut attributes = Vec::new();
        for (name, path) in o.attributes.into_iter().flatten() {
            if name.is_empty() {
                return Err(cx.error(
                    "options.attributes",
                    "an attribute needs a name: `<name>: <claim path>`",
                ));
            }
            let path = claim_path(cx, &format!("attributes.{name}"), Some(path), "")?;
            attributes.push((Arc::from(name.as_str()), path));
        }
        let identity = o.identity.unwrap_or_else(|| "sub".to_string());
        if identity.is_empty() {
            return Err(cx.error(
                "options.identity",
                "`identity` is empty: name the claim holding the identity (default sub)",
            ));
        }
        let keys = match o.keys {
            Some(Keys::Inline(list)) => {
                let mut keys = KeySet::new();
                for (i, jwk) in list.iter().enumerate() {
                    let k = build_key(jwk)
                        .map_err(|(m, e)| cx.error(&format!("options.keys[{i}].{m}"), e))?;
                    if k.alg.is_none() {
                        tracing::warn!(
                            "{}.options.keys[{i}]: key '{}' has no `alg`, so no token can verify with it",
                            cx.path, jwk.kid
                        );
                    }
                    keys.insert(jwk.kid.clone(), k);
                }
                KeySource::Inline(keys)
            }
            Some(Keys::Url(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(cx.error(
                        "options.keys",
                        format!("'{url}' is not an http:// or https:// URL: give the JWKS URL, or list the keys as JWK objects"),
                    ));
                }
                load_jwks(cx, &url, false)?
            }
            None => {
                let Some(issuer) = &o.issuer else {
                    return Err(cx.error(
                        "options.keys",
                        "no `keys` and no `issuer` to find `<issuer>/.well-known/jwks.json` at: list the keys as JWK objects or give their URL",
                    ));
                };
                if !(issuer.starts_with("http://") || issuer.starts_with("https://")) {
                    return Err(cx.error(
                        "options.keys",
                        format!("no `keys`, and the issuer '{issuer}' is not an http(s) URL to find `.well-known/jwks.json` under: list the keys as JWK objects or give their URL"),
                    ));
                }
                let url = format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'));
                load_jwks(cx, &url, true)?
            }
        };
        Ok(JwtGuard {
            id: cx.guard_id(),
            name: cx.qualified_name(),
            events: cx.events.clone(),
            metrics: GuardMetrics::new(&cx.metrics),
            attributes,
            issuer: o.issuer,
            audience: o.audience,
            roles,
            identity,
            challenge: o.challenge.map(Duration::from_secs),
            keys,
        })
    }

    /// Verifies `token` at time `now`, in Zilla's order, and builds the session.
    pub fn authorize(&self, token: &str, now: SystemTime) -> Result<Session, Refusal> {
        self.check(token, now).map_err(|(refusal, _)| refusal)
    }

    /// As [`JwtGuard::authorize`]; a refusal comes with the token's identity when its claims
    /// were read (a verified signature), for the event.
    fn check(&self, token: &str, now: SystemTime) -> Result<Session, (Refusal, Option<String>)> {
        let claims = self.verified_claims(token).map_err(|r| (r, None))?;
        let who = claims
            .get(&self.identity)
            .and_then(Value::as_str)
            .map(str::to_string);
        self.session(claims, now).map_err(|r| (r, who))
    }

    /// The claims of `token` if its key, algorithm and signature verify.
    fn verified_claims(&self, token: &str) -> Result<Map<String, Value>, Refusal> {
        let header = decode_header(token).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let fetched;
        let keys: &KeySet = match &self.keys {
            KeySource::Inline(keys) => keys,
            KeySource::Remote(remote) => {
                fetched = remote.keys();
                &fetched
            }
        };
        let Some(key) = header.kid.as_deref().and_then(|kid| keys.get(kid)) else {
            if let (KeySource::Remote(remote), Some(_)) = (&self.keys, &header.kid) {
                // Perhaps the provider rotated its key: fetch again (rate limited).
                remote.unknown_kid();
            }
            return Err(Refusal::InvalidAlgOrKey);
        };
        if key.alg != Some(header.alg) {
            return Err(Refusal::InvalidAlgOrKey);
        }
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = match decode::<Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => data.claims,
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                return Err(match e.kind() {
                    ErrorKind::InvalidSignature
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidRsaKey(_)
                    | ErrorKind::InvalidKeyFormat
                    | ErrorKind::Provider(_) => Refusal::BadSignature,
                    _ => Refusal::Malformed(e.to_string()),
                });
            }
        };
        Ok(claims)
    }

    /// The session of verified `claims` at time `now`: dates, issuer, audience, identity, roles.
    fn session(&self, claims: Map<String, Value>, now: SystemTime) -> Result<Session, Refusal> {
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as f64)
            .unwrap_or(0.0);
        let nbf = numeric_date(&claims, "nbf")?;
        let exp = numeric_date(&claims, "exp")?;
        // Not otherwise checked (as Zilla), but a value out of range is no date at all.
        numeric_date(&claims, "iat")?;
        if nbf.is_some_and(|nbf| now_ms < nbf * 1000.0)
            || exp.is_some_and(|exp| now_ms > exp * 1000.0)
        {
            return Err(Refusal::Expired);
        }
        let iss_ok = match (&self.issuer, claims.get("iss")) {
            (Some(want), Some(Value::String(iss))) => iss == want,
            _ => false,
        };
        let aud_ok = match (&self.audience, claims.get("aud")) {
            (Some(want), Some(Value::String(aud))) => aud == want,
            (Some(want), Some(Value::Array(auds))) => auds.iter().any(|a| a.as_str() == Some(want)),
            _ => false,
        };
        if !iss_ok || !aud_ok {
            return Err(Refusal::InvalidIssuerOrAudience);
        }

        let identity: Option<Arc<str>> = match claims.get(&self.identity) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str().into()),
            Some(_) => return Err(Refusal::BadIdentity),
        };
        let roles = match lookup(&claims, &self.roles) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
            ),
            Some(Value::String(s)) => Some(s.split_whitespace().map(str::to_string).collect()),
            Some(other) => Some(
                other
                    .to_string()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
            ),
        };
        // In range (see `numeric_date`), so neither conversion can overflow.
        let expires_at = exp.map(|exp| UNIX_EPOCH + Duration::from_secs_f64(exp));
        // A challenge needs an identity to renew (Zilla never challenges a session without one).
        let challenge_at = match (expires_at, self.challenge, &identity) {
            (Some(at), Some(window), Some(_)) => Some(at.checked_sub(window).unwrap_or(UNIX_EPOCH)),
            _ => None,
        };
        let attributes = self
            .attributes
            .iter()
            .filter_map(|(name, path)| {
                let value: Arc<str> = match lookup(&claims, path)? {
                    Value::Null => return None,
                    Value::String(s) => s.as_str().into(),
                    other => other.to_string().into(),
                };
                Some((name.clone(), value))
            })
            .collect();
        Ok(Session {
            guard: self.id,
            identity,
            expires_at,
            challenge_at,
            attributes,
            data: Box::new(JwtSession { roles, claims }),
        })
    }

    /// Number of usable keys (for tests and diagnostics).
    pub fn key_count(&self) -> usize {
        match &self.keys {
            KeySource::Inline(keys) => keys.len(),
            KeySource::Remote(remote) => remote.keys().len(),
        }
    }
}

/// The last second of year 9999: later NumericDates are refused (a time beyond it cannot be
/// represented, and no honest token needs one).
const LAST_DATE: f64 = 253_402_300_799.0;

/// A NumericDate claim (seconds since the epoch): absent, or a number from 0 to [`LAST_DATE`].
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Refusal> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(date) if (0.0..=LAST_DATE).contains(&date) => Ok(Some(date)),
            _ => Err(Refusal::Malformed(format!(
                "`{name}` {n} is not a date between 1970 and 9999"
            ))),
        },
        Some(_) => Err(Refusal::Malformed(format!("`{name}` is not a number"))),
    }
}

/// The value at a claim path (`a.b` walks into object `a`).
fn lookup<'c>(claims: &'c Map<String, Value>, path: &[String]) -> Option<&'c Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for seg in rest {
        value = value.as_object()?.get(seg)?;
    }
    Some(value)
}

fn load_jwks(cx: &PluginContext, url: &str, implicit: bool) -> Result<KeySource, ConfigError> {
    let origin = if implicit {
        " (derived from `issuer` because `keys` is not set)"
    } else {
        ""
    };
    let settings = jwks::Settings::new(
        url.to_string(),
        &cx.properties,
        cx.events.clone(),
        cx.qualified_name(),
    );
    RemoteKeys::start(settings)
        .map(KeySource::Remote)
        .map_err(|e| {
            cx.error(
                "options.keys",
                format!("cannot read the JWKS at {url}{origin}: {e}; make sure it is reachable when zilla starts and serves {{\"keys\": [...]}}, or list the keys inline as JWK objects"),
            )
        })
}

impl Guard for JwtGuard {
    fn reauthorize(&self, credentials: &str) -> Option<Arc<Session>> {
        match self.check(credentials, SystemTime::now()) {
            Ok(session) => {
                self.metrics.result(None);
                Some(Arc::new(session))
            }
            Err((refusal, who)) => {
                self.metrics.result(Some(&refusal));
                // Zilla's text; the identity only once the signature verified, never the token.
                self.events.emit(
                    &self.name,
                    EVENT_AUTHORIZATION_FAILED,
                    0,
                    format!(
                        "JWT token authorization failed for identity ({}). {refusal}",
                        who.as_deref().unwrap_or("")
                    ),
                );
                None
            }
        }
    }

    fn challenged(&self, _session: &Session) {
        self.metrics.challenges.inc();
    }

    fn verify(&self, session: &Session, roles: &[String]) -> bool {
        if session.guard != self.id {
            return false;
        }
        match session.data.downcast_ref::<JwtSession>() {
            Some(JwtSession {
                roles: Some(held), ..
            }) => roles.iter().all(|r| held.contains(r)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
