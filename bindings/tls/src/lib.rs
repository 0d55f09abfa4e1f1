//! The `tls` bindings (rustls, TLS 1.2 and 1.3): `server` decrypts the byte streams a tcp server
//! routes to it and routes the plaintext on SNI, ALPN and port; `client` encrypts the byte
//! streams routed to it (from an http client, say) towards its exit (a tcp client).
//!
//! ```yaml
//! north_tls_server:
//!   type: tls
//!   kind: server
//!   vault: my_servers
//!   options: { keys: [localhost], sni: [localhost], alpn: [h2, http/1.1] }
//!   routes:
//!     - when: [ { authority: localhost, alpn: h2 } ]
//!       exit: north_http_server
//! south_tls_client:
//!   type: tls
//!   kind: client
//!   vault: my_clients
//!   options: { trust: [upstream-ca], sni: [api.example.com], alpn: [http/1.1] }
//!   exit: south_tcp_client
//! ```
//!
//! Both kinds emit `BINDING_TLS_HANDSHAKE_FAILED` (with the reason) and
//! `BINDING_TLS_HANDSHAKE_TIMEOUT` (property `zilla.binding.tls.handshake.timeout`, default 10s).

mod client;
mod config;
mod pump;
mod server;

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{RootCertStore, SupportedProtocolVersion};
use zilla_engine::Vault;
use zilla_engine::{
    Binding, BindingContext, BindingDescriptor, BindingFactory, ConfigError, ConfigErrors, Kind,
    Nothing, Protocols,
};

pub use config::{Mutual, Ports, TlsCondition, TlsOptions};

use proto_tcp::Tcp;

/// The `tls` binding type.
#[derive(Debug)]
pub struct TlsFactory;

zilla_engine::inventory::submit! { BindingDescriptor::new::<TlsFactory>() }

/// Property: how long a handshake may take.
const HANDSHAKE_TIMEOUT: &str = "zilla.binding.tls.handshake.timeout";

impl BindingFactory for TlsFactory {
    const TYPE: &'static str = "tls";
    const KINDS: &'static [Kind] = &[Kind::Server, Kind::Client];
    type Options = TlsOptions;
    type When = TlsCondition;
    type With = Nothing;

    fn protocols(_: Kind) -> Protocols {
        Protocols::new::<Tcp, Tcp>()
    }

    fn build(cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        cx.require_exit()?;
        match cx.kind {
            Kind::Server => server::build(cx),
            _ => client::build(cx),
        }
    }
}

/// The handshake timeout from the engine properties.
fn handshake_timeout(cx: &BindingContext<TlsFactory>) -> Duration {
    cx.properties
        .duration(HANDSHAKE_TIMEOUT, Duration::from_secs(10))
}

/// The crypto provider every config is built with (ring).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The versions named by `options.version`.
fn versions(
    cx: &BindingContext<TlsFactory>,
    options: &TlsOptions,
) -> Result<&'static [&'static SupportedProtocolVersion], ConfigError> {
    match options.version.as_deref() {
        None | Some("TLS") => Ok(rustls::ALL_VERSIONS),
        Some("TLSv1.2") => Ok(TLS12_ONLY),
        Some("TLSv1.3") => Ok(TLS13_ONLY),
        Some(other) => Err(cx.error(
            "options.version",
            format!("unsupported TLS version '{other}': use TLSv1.2, TLSv1.3, or TLS (either)"),
        )),
    }
}

/// The vault, or an error saying the option at `rel` needs one.
fn require_vault<'a>(
    cx: &'a BindingContext<TlsFactory>,
    rel: &str,
) -> Result<&'a Arc<dyn Vault>, ConfigError> {
    cx.vault.as_ref().ok_or_else(|| {
        cx.error(
            rel,
            format!(
                "`{rel}` names vault entries but the binding has no `vault`: add `vault: <name>` naming a filesystem vault"
            ),
        )
    })
}

/// A key entry of the vault as rustls wants it.
fn key_of(
    cx: &BindingContext<TlsFactory>,
    vault: &Arc<dyn Vault>,
    alias: &str,
    rel: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let Some(entry) = vault.key(alias) else {
        let known = vault.key_aliases();
        return Err(cx.error(
            rel,
            format!(
                "no key '{alias}' in the vault's `keys` store (its aliases: {})",
                if known.is_empty() {
                    "none; does the vault have a `keys` store?".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let chain = entry
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.to_vec()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(entry.key.to_vec()));
    Ok((chain, key))
}

/// Trust anchors from the vault's `trust` store: `options.trust`, or every trusted certificate
/// of the vault when `options.trust` is absent.
fn trust_roots(
    cx: &BindingContext<TlsFactory>,
    options: &TlsOptions,
) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    let (aliases, rel) = match (&options.trust, &cx.vault) {
        (Some(aliases), _) => (aliases.clone(), "options.trust"),
        (None, Some(vault)) => (vault.trust_aliases(), "vault"),
        (None, None) => return Ok(roots),
    };
    if aliases.is_empty() {
        return Ok(roots);
    }
    let vault = require_vault(cx, rel)?;
    for (i, alias) in aliases.iter().enumerate() {
        let at = if rel == "options.trust" {
            format!("options.trust[{i}]")
        } else {
            rel.to_string()
        };
        let Some(der) = vault.trust(alias) else {
            return Err(cx.error(
                &at,
                format!(
                    "no certificate '{alias}' in the vault's `trust` store (its aliases: {})",
                    list(vault.trust_aliases())
                ),
            ));
        };
        roots
            .add(CertificateDer::from(der.to_vec()))
            .map_err(|e| cx.error(&at, format!("certificate '{alias}' cannot be trusted: {e}")))?;
    }
    Ok(roots)
}

fn list(items: Vec<String>) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// Why a handshake failed, in words.
/// The event of a failed handshake, as Zilla names them after the Java exception: the peer's
/// certificate did not verify (`BINDING_TLS_PEER_NOT_VERIFIED`), the peer refused ours
/// (`BINDING_TLS_KEY_REJECTED`), the peers spoke no common or a broken protocol
/// (`BINDING_TLS_PROTOCOL_REJECTED`), another handshake failure
/// (`BINDING_TLS_HANDSHAKE_FAILED`), or the transport failed (`BINDING_TLS_TLS_FAILED`).
fn handshake_event(e: &std::io::Error) -> &'static str {
    use rustls::{AlertDescription as A, Error as E};
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return "BINDING_TLS_TLS_FAILED";
    };
    match tls {
        E::InvalidCertificate(_) | E::NoCertificatesPresented => "BINDING_TLS_PEER_NOT_VERIFIED",
        E::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired,
        ) => "BINDING_TLS_KEY_REJECTED",
        E::PeerIncompatible(_)
        | E::PeerMisbehaved(_)
        | E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::AlertReceived(A::ProtocolVersion | A::NoApplicationProtocol | A::HandshakeFailure) => {
            "BINDING_TLS_PROTOCOL_REJECTED"
        }
        _ => "BINDING_TLS_HANDSHAKE_FAILED",
    }
}

fn reason(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}
