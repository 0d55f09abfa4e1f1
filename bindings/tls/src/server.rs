//! The tls server: handshakes on a byte stream, routes on SNI/ALPN/port, pumps the plaintext.

use std::sync::Arc;
use std::time::Duration;

use proto_tcp::{StreamIo, Tcp, TcpBegin, TlsInfo};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{
    Acceptor, ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::LazyConfigAcceptor;
use zilla_engine::{
    handler_binding, Binding, BindingContext, BindingId, ConfigError, ConfigErrors, Frame, Graph,
    Handler, Nothing, Reset, Routes, Stream,
};

use crate::config::{Mutual, TlsCondition, TlsOptions};
use crate::{key_of, provider, reason, trust_roots, versions, TlsFactory};

pub(crate) fn build(mut cx: BindingContext<TlsFactory>) -> Result<Box<dyn Binding>, ConfigErrors> {
    let options = cx.options.take().unwrap_or_default();
    let server = configure(&cx, &options)?;
    let mut alpn: Vec<Vec<u8>> = Vec::new();
    for p in options.alpn.iter().flatten() {
        alpn.push(p.as_bytes().to_vec());
    }
    Ok(handler_binding::<Tcp, _>(Arc::new(ServerHandler(
        Arc::new(ServerInner {
            id: cx.id,
            name: cx.qualified_name(),
            config: Arc::new(server),
            alpn,
            timeout: crate::handshake_timeout(&cx),
            routes: cx.routes,
        }),
    ))))
}

/// Builds the rustls config: keys from the vault, client verification from `mutual`/`trust`.
fn configure(
    cx: &BindingContext<TlsFactory>,
    options: &TlsOptions,
) -> Result<ServerConfig, ConfigError> {
    let Some(vault) = cx.vault.as_ref() else {
        return Err(cx.error(
            "",
            "a tls server needs a `vault` holding its keys: add `vault: <name>` naming a filesystem vault with a `keys` store",
        ));
    };
    let provider = provider();
    let mut keys = Vec::new();
    match (&options.keys, &options.signers) {
        (Some(_), Some(_)) => {
            return Err(cx.error(
                "options.signers",
                "give either `keys` or `signers`, not both",
            ))
        }
        (Some(aliases), None) => {
            if aliases.is_empty() {
                return Err(cx.error(
                    "options.keys",
                    format!(
                        "no key aliases given (the vault's aliases: {})",
                        crate::list(vault.key_aliases())
                    ),
                ));
            }
            for alias in aliases {
                let (chain, key) = key_of(cx, vault, alias, "options.keys")?;
                keys.push(certified(cx, &provider, alias, chain, key, "options.keys")?);
            }
        }
        (None, Some(signers)) => {
            let mut roots = RootCertStore::empty();
            for (i, alias) in signers.iter().enumerate() {
                let rel = format!("options.signers[{i}]");
                let Some(der) = vault.signer(alias) else {
                    return Err(cx.error(
                        &rel,
                        format!(
                            "no certificate '{alias}' in the vault's `signers` store (its aliases: {})",
                            crate::list(vault.signer_aliases())
                        ),
                    ));
                };
                roots.add(CertificateDer::from(der.to_vec())).map_err(|e| {
                    cx.error(
                        &rel,
                        format!("signer '{alias}' is not a CA certificate: {e}"),
                    )
                })?;
            }
            let algs = provider.signature_verification_algorithms.all;
            for alias in vault.key_aliases() {
                let (chain, key) = key_of(cx, vault, &alias, "options.signers")?;
                let issued = chain.split_first().is_some_and(|(leaf, intermediates)| {
                    ParsedCertificate::try_from(leaf).is_ok_and(|leaf| {
                        rustls::client::verify_server_cert_signed_by_trust_anchor(
                            &leaf,
                            &roots,
                            intermediates,
                            UnixTime::now(),
                            algs,
                        )
                        .is_ok()
                    })
                });
                if issued {
                    keys.push(certified(
                        cx,
                        &provider,
                        &alias,
                        chain,
                        key,
                        "options.signers",
                    )?);
                }
            }
            if keys.is_empty() {
                return Err(cx.error(
                    "options.signers",
                    format!(
                        "no key of the vault's `keys` store (aliases: {}) was issued by these signers",
                        crate::list(vault.key_aliases())
                    ),
                ));
            }
        }
        (None, None) => {
            for alias in vault.key_aliases() {
                let (chain, key) = key_of(cx, vault, &alias, "vault")?;
                keys.push(certified(cx, &provider, &alias, chain, key, "vault")?);
            }
            if keys.is_empty() {
                return Err(cx.error(
                    "options.keys",
                    "the vault has no key entries: give the vault a `keys` store and name its aliases in `options.keys`",
                ));
            }
        }
    }

    let mutual = options.mutual.unwrap_or(if options.trust.is_some() {
        Mutual::Required
    } else {
        Mutual::None
    });
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(cx, options)?)
        .map_err(|e| cx.error("options.version", e.to_string()))?;
    let builder = match mutual {
        Mutual::None => builder.with_no_client_auth(),
        Mutual::Required | Mutual::Requested => {
            let roots = trust_roots(cx, options)?;
            if roots.is_empty() {
                return Err(cx.error(
                    "options.mutual",
                    format!(
                        "`mutual: {}` needs trusted CAs to verify client certificates: name them in `options.trust` (aliases of the vault's `trust` store)",
                        if mutual == Mutual::Required { "required" } else { "requested" }
                    ),
                ));
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if mutual == Mutual::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| {
                cx.error(
                    "options.trust",
                    format!("cannot verify client certificates: {e}"),
                )
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_cert_resolver(Arc::new(KeyResolver { keys }));

    Ok(config)
}

/// The key `alias` ready to serve: its certificate must be valid now and hold the public half
/// of its private key. X.509 version 1 certificates (no extensions, as older CAs and Zilla's
/// examples make them) are served too, with a warning: webpki, which checks the rest, reads
/// only version 3, so for them the checks are made here.
fn certified(
    cx: &BindingContext<TlsFactory>,
    provider: &rustls::crypto::CryptoProvider,
    alias: &str,
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    rel: &str,
) -> Result<Arc<CertifiedKey>, ConfigError> {
    let fail = |why: String| cx.error(rel, format!("key '{alias}' cannot be used: {why}"));
    let Some(leaf) = chain.first() else {
        return Err(fail("the vault holds no certificate for it".into()));
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| fail(format!("its certificate does not parse: {e}")))?;
    let validity = cert.validity();
    if !validity.is_valid() {
        return Err(fail(format!(
            "its certificate is not valid now (valid from {} to {})",
            validity.not_before, validity.not_after
        )));
    }
    if cert.version() != x509_parser::x509::X509Version::V1 {
        return CertifiedKey::from_der(chain, key, provider)
            .map(Arc::new)
            .map_err(|e| fail(e.to_string()));
    }
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| fail(e.to_string()))?;
    if let Some(public) = signing.public_key() {
        if public.as_ref() != cert.public_key().raw {
            return Err(fail(
                "the private key does not match its certificate's public key".into(),
            ));
        }
    }
    tracing::warn!(
        binding = %cx.qualified_name(),
        key = alias,
        subject = %cert.subject(),
        "key '{alias}' has an X.509 version 1 certificate (no extensions, so no \
         subjectAltName): it is served, and clients match its subject's CN, if they accept it"
    );
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Picks the key whose certificate is valid for the SNI name (as the JDK does), else the first.
#[derive(Debug)]
struct KeyResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for KeyResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.keys.len() > 1 {
            if let Some(name) = hello
                .server_name()
                .and_then(|n| ServerName::try_from(n).ok())
            {
                for key in &self.keys {
                    let valid = ParsedCertificate::try_from(key.end_entity_cert().ok()?)
                        .is_ok_and(|leaf| rustls::client::verify_server_name(&leaf, &name).is_ok());
                    if valid {
                        return Some(key.clone());
                    }
                }
            }
        }
        self.keys.first().cloned()
    }
}

struct ServerInner {
    id: BindingId,
    name: String,
    config: Arc<ServerConfig>,
    /// `options.alpn`, as bytes.
    alpn: Vec<Vec<u8>>,
    timeout: Duration,
    routes: Routes<TlsCondition, Nothing>,
}

impl ServerInner {
    /// Zilla's choice: the first protocol the client offers that `options.alpn` accepts; else
    /// one a route's `when.alpn` allows; else none.
    fn choose_alpn(&self, offered: &[&[u8]]) -> Option<Vec<u8>> {
        if let Some(p) = offered.iter().find(|p| self.alpn.iter().any(|a| a == *p)) {
            return Some(p.to_vec());
        }
        offered
            .iter()
            .find(|p| {
                self.routes.iter().any(|r| {
                    r.when.iter().any(|c| {
                        c.alpn.as_deref().is_some_and(|pattern| {
                            std::str::from_utf8(p)
                                .is_ok_and(|p| crate::config::glob_match(pattern, p))
                        })
                    })
                })
            })
            .map(|p| p.to_vec())
    }
}

struct ServerHandler(Arc<ServerInner>);

impl Handler<Tcp> for ServerHandler {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Tcp>) -> Result<(), Reset<Tcp>> {
        let port = stream.begin.destination.as_ref().map(|d| d.port());
        // No route for the port: the connection is reset before the handshake.
        let reachable = self.0.routes.iter().any(|r| {
            r.exit.is_some() && (r.when.is_empty() || r.when.iter().any(|c| c.port_matches(port)))
        });
        if !reachable {
            return Err(Reset(None));
        }
        graph.spawn(serve(graph.clone(), self.0.clone(), stream, port));
        Ok(())
    }
}

/// What the handshake settled.
struct Settled {
    tls: tokio_rustls::server::TlsStream<StreamIo>,
    server_name: Option<String>,
    alpn: Option<Vec<u8>>,
}

async fn handshake(inner: &ServerInner, io: StreamIo) -> std::io::Result<Settled> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
    let hello = start.client_hello();
    let server_name = hello.server_name().map(str::to_owned);
    let offered: Vec<&[u8]> = hello.alpn().map(Iterator::collect).unwrap_or_default();
    let alpn = inner.choose_alpn(&offered);
    let config = match &alpn {
        None => inner.config.clone(),
        Some(p) => {
            let mut config = ServerConfig::clone(&inner.config);
            config.alpn_protocols = vec![p.clone()];
            Arc::new(config)
        }
    };
    let tls = start.into_stream(config).await?;
    Ok(Settled {
        tls,
        server_name,
        alpn,
    })
}

async fn serve(graph: Arc<Graph>, inner: Arc<ServerInner>, stream: Stream<Tcp>, port: Option<u16>) {
    let Stream {
        begin,
        session,
        trace_id,
        rx,
        mut tx,
    } = stream;
    if tx.push(Frame::Begin(TcpBegin::default())).is_err() {
        return;
    }
    let io = StreamIo::new(tx, rx);
    // Dropping the transport on any failure aborts it: the tcp server resets the connection.
    let settled = match tokio::time::timeout(inner.timeout, handshake(&inner, io)).await {
        Ok(Ok(settled)) => settled,
        Ok(Err(e)) => {
            let peer = begin.source.map(|s| s.to_string()).unwrap_or_default();
            graph.event(
                &inner.name,
                crate::handshake_event(&e),
                trace_id,
                format!("{peer} {}", reason(&e)).trim().to_string(),
            );
            return;
        }
        Err(_) => {
            graph.event(
                &inner.name,
                "BINDING_TLS_HANDSHAKE_TIMEOUT",
                trace_id,
                format!("no handshake within {:?}", inner.timeout),
            );
            return;
        }
    };
    let Settled {
        mut tls,
        server_name,
        alpn,
    } = settled;
    let route = inner.routes.resolve(&graph, session.as_deref(), |c| {
        c.matches(server_name.as_deref(), alpn.as_deref(), port)
    });
    let Some(exit) = route.and_then(|r| r.exit) else {
        // No route after the handshake (SNI/ALPN): TLS close.
        tracing::debug!(binding = %inner.name, ?server_name, "no route: tls closed");
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        return;
    };
    let begin = TcpBegin {
        source: begin.source,
        destination: begin.destination,
        tls: Some(TlsInfo { server_name, alpn }),
    };
    match graph.open_from::<Tcp>(inner.id, exit, begin, session) {
        Ok((etx, erx)) => crate::pump::pump(tls.into(), etx, erx).await,
        Err(_) => {
            tracing::debug!(binding = %inner.name, exit = %graph.name(exit), "stream refused: tls closed");
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        }
    }
}
