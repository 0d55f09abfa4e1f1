//! The tls client: encrypts each plaintext stream routed to it towards its exit.

use std::sync::Arc;
use std::time::Duration;

use proto_tcp::{Address, StreamIo, Tcp, TcpBegin, TlsInfo};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio_rustls::TlsConnector;
use zilla_engine::{
    handler_binding, Binding, BindingContext, BindingId, ConfigError, ConfigErrors, Frame, Graph,
    Handler, Nothing, Reset, Routes, Stream,
};

use crate::config::{TlsCondition, TlsOptions};
use crate::{key_of, provider, reason, require_vault, trust_roots, versions, TlsFactory};

pub(crate) fn build(mut cx: BindingContext<TlsFactory>) -> Result<Box<dyn Binding>, ConfigErrors> {
    let options = cx.options.take().unwrap_or_default();
    let config = configure(&cx, &options)?;
    let sni = options.sni.as_ref().and_then(|s| s.first().cloned());
    if let Some(name) = &sni {
        if ServerName::try_from(name.as_str()).is_err() {
            return Err(cx
                .error(
                    "options.sni[0]",
                    format!("'{name}' is not a valid server name (a DNS name or an IP address)"),
                )
                .into());
        }
    }
    Ok(handler_binding::<Tcp, _>(Arc::new(ClientHandler(
        Arc::new(ClientInner {
            id: cx.id,
            name: cx.qualified_name(),
            connector: TlsConnector::from(Arc::new(config)),
            sni,
            timeout: crate::handshake_timeout(&cx),
            routes: cx.routes,
        }),
    ))))
}

/// Builds the rustls config: trust from the vault (and the platform CAs), an optional client
/// certificate, ALPN.
fn configure(
    cx: &BindingContext<TlsFactory>,
    options: &TlsOptions,
) -> Result<ClientConfig, ConfigError> {
    if options.mutual.is_some() {
        return Err(cx.error(
            "options.mutual",
            "`mutual` is a tls server option: a tls client presents the certificate named by `options.keys` when the server asks",
        ));
    }
    let mut roots = trust_roots(cx, options)?;
    // As Zilla: the platform CAs are trusted with `trustcacerts: true`, and whenever `trust`
    // is absent (so public servers work by default).
    if options.trustcacerts == Some(true) || options.trust.is_none() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(cx, options)?)
        .map_err(|e| cx.error("options.version", e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match options.keys.as_ref().and_then(|k| k.first()) {
        Some(alias) => {
            let vault = require_vault(cx, "options.keys")?;
            let (chain, key) = key_of(cx, vault, alias, "options.keys[0]")?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                cx.error(
                    "options.keys[0]",
                    format!("key '{alias}' cannot be used: {e}"),
                )
            })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options
        .alpn
        .iter()
        .flatten()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    Ok(config)
}

struct ClientInner {
    id: BindingId,
    name: String,
    connector: TlsConnector,
    /// `options.sni[0]`.
    sni: Option<String>,
    timeout: Duration,
    routes: Routes<TlsCondition, Nothing>,
}

struct ClientHandler(Arc<ClientInner>);

impl Handler<Tcp> for ClientHandler {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Tcp>) -> Result<(), Reset<Tcp>> {
        let inner = &self.0;
        let dest = stream.begin.destination.as_ref();
        let host = match dest {
            Some(Address::Host(h, _)) => Some(h.clone()),
            Some(Address::Socket(a)) => Some(a.ip().to_string()),
            None => None,
        };
        let port = dest.map(Address::port);
        // SNI: `options.sni`, else the host the stream is for.
        let Some(name) = inner.sni.clone().or(host) else {
            tracing::debug!(binding = %inner.name, "no server name (no options.sni, no destination): refused");
            return Err(Reset(None));
        };
        let Ok(server_name) = ServerName::try_from(name.clone()) else {
            tracing::debug!(binding = %inner.name, %name, "invalid server name: refused");
            return Err(Reset(None));
        };
        let route = inner.routes.resolve(graph, stream.session.as_deref(), |c| {
            c.matches(Some(&name), None, port)
        });
        let Some(exit) = route.and_then(|r| r.exit) else {
            return Err(Reset(None));
        };
        let begin = TcpBegin {
            source: stream.begin.source,
            destination: stream.begin.destination.clone(),
            tls: None,
        };
        let (etx, erx) = graph.open_from::<Tcp>(inner.id, exit, begin, stream.session.clone())?;
        graph.spawn(connect(
            graph.clone(),
            inner.clone(),
            stream,
            StreamIo::new(etx, erx),
            server_name,
            name,
        ));
        Ok(())
    }
}

async fn connect(
    graph: Arc<Graph>,
    inner: Arc<ClientInner>,
    stream: Stream<Tcp>,
    io: StreamIo,
    server_name: ServerName<'static>,
    name: String,
) {
    let Stream {
        begin,
        rx,
        mut tx,
        trace_id,
        session,
    } = stream;
    drop(session);
    let handshake = inner.connector.connect(server_name, io);
    // On failure the halves are dropped: the opener sees its stream refused.
    let tls = match tokio::time::timeout(inner.timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            graph.event(
                &inner.name,
                crate::handshake_event(&e),
                trace_id,
                format!("{name}: {}", reason(&e)),
            );
            return;
        }
        Err(_) => {
            graph.event(
                &inner.name,
                "BINDING_TLS_HANDSHAKE_TIMEOUT",
                trace_id,
                format!("{name}: no handshake within {:?}", inner.timeout),
            );
            return;
        }
    };
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let reply = TcpBegin {
        source: begin.source,
        destination: begin.destination,
        tls: Some(TlsInfo {
            server_name: Some(name),
            alpn,
        }),
    };
    if tx.push(Frame::Begin(reply)).is_err() {
        return;
    }
    crate::pump::pump(tls.into(), tx, rx).await;
}
