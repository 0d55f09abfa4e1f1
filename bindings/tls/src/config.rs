//! Options and route conditions of the tls bindings, as zilla.yaml spells them.

use schemars::JsonSchema;
use serde::Deserialize;

pub use proto_tcp::Ports;

/// Options of the `tls` binding (server and client).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// Protocol version: `TLSv1.2`, `TLSv1.3`, or `TLS` (the default: either).
    pub version: Option<String>,
    /// Aliases of private-key entries in the vault's `keys` store (default: every entry).
    pub keys: Option<Vec<String>>,
    /// Aliases of trusted certificates in the vault's `trust` store: server, the CAs client
    /// certificates must chain to; client, the CAs the server certificate must chain to.
    pub trust: Option<Vec<String>>,
    /// Aliases of CA certificates in the vault's `signers` store; selects the key entries
    /// (from the `keys` store) whose certificate those CAs issued.
    pub signers: Option<Vec<String>>,
    /// Client: also trust the platform CA bundle (it is trusted anyway when `trust` is absent).
    pub trustcacerts: Option<bool>,
    /// Client: the server name to send (the first one; default: the host of the destination).
    /// Server: names considered when choosing ALPN (others are not rejected).
    pub sni: Option<Vec<String>>,
    /// Client: protocols offered by ALPN, in order. Server: protocols accepted.
    pub alpn: Option<Vec<String>>,
    /// Server: client certificate policy, `required`, `requested` or `none` (default:
    /// `required` when `trust` is given, else `none`).
    pub mutual: Option<Mutual>,
}

/// Client certificate policy of a tls server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mutual {
    /// The handshake fails without a client certificate that chains to `trust`.
    Required,
    /// A client certificate is asked for; if given it must chain to `trust`.
    Requested,
    /// No client certificate is asked for.
    None,
}

/// One `when` condition of a tls route; every field given must match.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsCondition {
    /// Server name (SNI) pattern; `*` matches any run of characters.
    pub authority: Option<String>,
    /// Negotiated ALPN protocol pattern; `*` matches any run of characters.
    pub alpn: Option<String>,
    /// Destination port or ports (`443`, `"8000-8080"`, or a list).
    pub port: Option<Ports>,
}

impl TlsCondition {
    /// True if every field given matches.
    pub(crate) fn matches(
        &self,
        sni: Option<&str>,
        alpn: Option<&[u8]>,
        port: Option<u16>,
    ) -> bool {
        if let Some(ports) = &self.port {
            if !port.is_some_and(|p| ports.contains(p)) {
                return false;
            }
        }
        if let Some(pattern) = &self.authority {
            if !sni.is_some_and(|s| glob_match(pattern, s)) {
                return false;
            }
        }
        if let Some(pattern) = &self.alpn {
            if !alpn
                .and_then(|a| std::str::from_utf8(a).ok())
                .is_some_and(|a| glob_match(pattern, a))
            {
                return false;
            }
        }
        true
    }

    /// True if the port condition (alone) can match `port`.
    pub(crate) fn port_matches(&self, port: Option<u16>) -> bool {
        match &self.port {
            None => true,
            Some(ports) => port.is_some_and(|p| ports.contains(p)),
        }
    }
}

/// Zilla's wildcard (`*` any run of characters, else literal, whole value), ASCII
/// case-insensitive: SNI names and ALPN protocols.
pub(crate) fn glob_match(pattern: &str, value: &str) -> bool {
    zilla_engine::glob_match(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_match_sni_alpn_and_port() {
        let c: TlsCondition = serde_yaml::from_str(
            "{authority: \"*.example.com\", alpn: h2, port: [443, \"8000-8001\"]}",
        )
        .unwrap();
        assert!(c.matches(Some("api.example.com"), Some(b"h2"), Some(8001)));
        assert!(!c.matches(Some("api.example.org"), Some(b"h2"), Some(443)));
        assert!(!c.matches(Some("api.example.com"), Some(b"http/1.1"), Some(443)));
        assert!(!c.matches(Some("api.example.com"), Some(b"h2"), Some(444)));
        assert!(
            !c.matches(None, Some(b"h2"), Some(443)),
            "no SNI never matches an authority"
        );
        let any: TlsCondition = serde_yaml::from_str("{alpn: \"http/*\"}").unwrap();
        assert!(any.matches(None, Some(b"http/1.1"), None));
        assert!(serde_yaml::from_str::<TlsCondition>("{sni: x}").is_err());
    }

    #[test]
    fn options_parse_as_zilla_spells_them() {
        let o: TlsOptions = serde_yaml::from_str(
            "{keys: [localhost], sni: [localhost], alpn: [h2, http/1.1], mutual: requested, version: TLSv1.3, trustcacerts: true}",
        )
        .unwrap();
        assert_eq!(o.mutual, Some(Mutual::Requested));
        assert_eq!(o.alpn.unwrap(), vec!["h2", "http/1.1"]);
        assert!(serde_yaml::from_str::<TlsOptions>("{mutual: always}").is_err());
    }
}
