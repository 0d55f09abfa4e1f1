//! The `filesystem` vault: private keys and certificates read from keystore files, for the `tls`
//! bindings.
//!
//! ```yaml
//! vaults:
//!   my_servers:
//!     type: filesystem
//!     options:
//!       keys: { store: tls/localhost.p12, type: pkcs12, password: "${{env.KEYSTORE_PASSWORD}}" }
//!       trust: { store: tls/truststore.p12, password: "${{env.TRUSTSTORE_PASSWORD}}" }
//! ```
//!
//! Each of `keys`, `trust` and `signers` is a *store*: a file (`store`, relative to the directory
//! of `zilla.yaml`), its format (`type`: `pkcs12`, the default, or `pem`), its `password` and an
//! optional `entries` list (the aliases a tls binding uses when it names none).
//!
//! **PKCS#12** stores are read as `openssl pkcs12 -export` (OpenSSL 3: AES-256-CBC, PBKDF2,
//! HMAC-SHA-256) and Java's `keytool` write them; legacy 3DES/RC2 stores are read too. An alias
//! is the entry's friendly name (`openssl pkcs12 -export -name localhost`; `-caname ca` for the
//! certificates of a trust store made with `-nokeys`), else, for a
//! certificate, its subject. In a `keys` store every private key is an entry whose chain is the
//! certificate with the same local key id followed by its issuers found in the file; in a
//! `trust` or `signers` store every certificate is an entry.
//!
//! **PEM** stores (`type: pem`, no password): a `keys` store is one file holding one unencrypted
//! PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`) and its certificate chain, leaf first; its
//! alias is the file name without extension (`tls/localhost.pem` is `localhost`). A `trust` or
//! `signers` store is a file of certificates; the first is named after the file (`ca`), the
//! following ones `ca#2`, `ca#3`, ... in file order.
//!
//! Stores are read and decrypted when the config is loaded, so a wrong password or a missing file
//! is a config error naming the key to fix (`vaults.my_servers.options.keys.password`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use p12_keystore::error::Error as P12Error;
use p12_keystore::Pkcs12Archive;
use rustls_pki_types::pem::{PemObject, SectionKind};
use schemars::JsonSchema;
use serde::Deserialize;
use zilla_engine::{ConfigError, PluginContext, PluginFactory, VaultDescriptor};
use zilla_engine::{ConfigErrors, KeyEntry, Vault};

/// The `filesystem` vault type.
#[derive(Debug)]
pub struct FilesystemVaultFactory;

zilla_engine::inventory::submit! { VaultDescriptor::new::<FilesystemVaultFactory>() }

/// Options of the `filesystem` vault.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesystemOptions {
    /// Private keys with their certificate chains; aliases are named by tls `keys`.
    pub keys: Option<StoreConfig>,
    /// Trusted certificates; aliases are named by tls `trust`.
    pub trust: Option<StoreConfig>,
    /// CA certificates; aliases are named by tls `signers` to select key entries they issued.
    pub signers: Option<StoreConfig>,
    /// Certificate revocation check: `crl`, or `none` (the default). Revocation lists are not
    /// checked yet: `crl` is accepted and a warning is printed.
    pub revocation: Option<Revocation>,
}

/// A keystore file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Path of the keystore file, relative to the directory of `zilla.yaml`.
    pub store: String,
    /// Keystore format: `pkcs12` (the default) or `pem`.
    #[serde(rename = "type")]
    pub store_type: Option<String>,
    /// Password of the store and its entries (PKCS#12); usually `${{env.NAME}}`.
    pub password: Option<String>,
    /// Aliases a tls binding uses when it names none (default: every entry of the store).
    pub entries: Option<Vec<String>>,
}

/// A certificate revocation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Revocation {
    /// Check certificate revocation lists (not implemented yet: a warning is printed).
    Crl,
    /// No revocation check.
    None,
}

impl PluginFactory<dyn Vault> for FilesystemVaultFactory {
    const TYPE: &'static str = "filesystem";
    type Options = FilesystemOptions;

    fn build(
        cx: &PluginContext,
        options: Option<FilesystemOptions>,
    ) -> Result<Arc<dyn Vault>, ConfigErrors> {
        let options = options.unwrap_or_default();
        if options.revocation == Some(Revocation::Crl) {
            tracing::warn!(
                vault = %cx.path,
                "revocation: crl is not supported yet; certificates are not checked against revocation lists"
            );
        }
        let keys = match &options.keys {
            Some(c) => load_keys(cx, "options.keys", c)?,
            None => Store::default(),
        };
        let trust = match &options.trust {
            Some(c) => load_certs(cx, "options.trust", c)?,
            None => Store::default(),
        };
        let signers = match &options.signers {
            Some(c) => load_certs(cx, "options.signers", c)?,
            None => Store::default(),
        };
        Ok(Arc::new(FilesystemVault {
            keys,
            trust,
            signers,
        }))
    }
}

/// One loaded store: its entries in file order and the aliases offered by default.
#[derive(Debug)]
struct Store<T> {
    entries: Vec<(String, T)>,
    /// `entries` of the config if given, else every alias.
    aliases: Vec<String>,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            entries: Vec::new(),
            aliases: Vec::new(),
        }
    }
}

impl<T: Clone> Store<T> {
    fn get(&self, alias: &str) -> Option<T> {
        self.entries
            .iter()
            .find(|(a, _)| a == alias)
            .map(|(_, v)| v.clone())
    }

    fn finish(
        mut self,
        cx: &PluginContext,
        rel: &str,
        config: &StoreConfig,
    ) -> Result<Self, ConfigError> {
        self.aliases = match &config.entries {
            None => self.entries.iter().map(|(a, _)| a.clone()).collect(),
            Some(wanted) => {
                for (i, alias) in wanted.iter().enumerate() {
                    if self.get(alias).is_none() {
                        return Err(cx.error(
                            &format!("{rel}.entries[{i}]"),
                            format!(
                                "no entry '{alias}' in '{}' (its aliases: {})",
                                config.store,
                                list(self.entries.iter().map(|(a, _)| a.as_str()))
                            ),
                        ));
                    }
                }
                wanted.clone()
            }
        };
        Ok(self)
    }

    fn push(&mut self, alias: String, value: T) {
        // Keep colliding aliases apart, as keytool and p12-keystore do: `name#2`, `name#3`, ...
        let mut unique = alias.clone();
        let mut n = 2;
        while self.entries.iter().any(|(a, _)| *a == unique) {
            unique = format!("{alias}#{n}");
            n += 1;
        }
        self.entries.push((unique, value));
    }
}

/// A vault whose stores were read from files when the config was loaded.
#[derive(Debug)]
pub struct FilesystemVault {
    keys: Store<KeyEntry>,
    trust: Store<Bytes>,
    signers: Store<Bytes>,
}

impl Vault for FilesystemVault {
    fn key(&self, alias: &str) -> Option<KeyEntry> {
        self.keys.get(alias)
    }

    fn trust(&self, alias: &str) -> Option<Bytes> {
        self.trust.get(alias)
    }

    fn key_aliases(&self) -> Vec<String> {
        self.keys.aliases.clone()
    }

    fn trust_aliases(&self) -> Vec<String> {
        self.trust.aliases.clone()
    }

    fn signer(&self, alias: &str) -> Option<Bytes> {
        self.signers.get(alias)
    }

    fn signer_aliases(&self) -> Vec<String> {
        self.signers.aliases.clone()
    }
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = items.collect();
    if all.is_empty() {
        "none".to_string()
    } else {
        all.join(", ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pkcs12,
    Pem,
}

/// Checks the store type and reads the file.
fn open(
    cx: &PluginContext,
    rel: &str,
    config: &StoreConfig,
) -> Result<(Format, Vec<u8>, PathBuf), ConfigError> {
    let format = match config.store_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("pkcs12") | Some("p12") => Format::Pkcs12,
        Some("pem") => Format::Pem,
        Some(other) => {
            return Err(cx.error(
                &format!("{rel}.type"),
                format!(
                    "unsupported store type '{other}': use pkcs12 or pem (convert a JKS store with `keytool -importkeystore -srckeystore {} -destkeystore store.p12 -deststoretype pkcs12`)",
                    config.store
                ),
            ))
        }
    };
    let path = cx.config_dir.join(&config.store);
    let bytes = std::fs::read(&path).map_err(|e| {
        cx.error(
            &format!("{rel}.store"),
            format!(
                "cannot read '{}' ({}): {e}; the path is relative to the directory of zilla.yaml",
                config.store,
                path.display()
            ),
        )
    })?;
    Ok((format, bytes, path))
}

fn open_pkcs12(
    cx: &PluginContext,
    rel: &str,
    config: &StoreConfig,
    bytes: &[u8],
) -> Result<Pkcs12Archive, ConfigError> {
    let password = config.password.as_deref().unwrap_or("");
    Pkcs12Archive::from_pkcs12(bytes, password).map_err(|e| match e {
        P12Error::MacError(_) | P12Error::UnpadError | P12Error::Pkcs5Error(_) => {
            if config.password.is_none() {
                cx.error(
                    rel,
                    format!(
                        "'{}' is protected by a password: set `password` (usually \"${{{{env.NAME}}}}\")",
                        config.store
                    ),
                )
            } else {
                cx.error(
                    &format!("{rel}.password"),
                    format!(
                        "wrong password for '{}': the store could not be decrypted; check the password (and the environment variable it comes from)",
                        config.store
                    ),
                )
            }
        }
        P12Error::UnsupportedEncryptionScheme | P12Error::UnsupportedMacAlgorithm => cx.error(
            &format!("{rel}.store"),
            format!(
                "'{}' uses an unsupported algorithm ({e}): re-export it with `openssl pkcs12 -export` (OpenSSL 3 defaults)",
                config.store
            ),
        ),
        other => cx.error(
            &format!("{rel}.store"),
            format!(
                "'{}' is not a readable PKCS#12 store ({other}): give a keystore written by `openssl pkcs12 -export` or keytool, or set `type: pem` for a PEM file",
                config.store
            ),
        ),
    })
}

fn load_keys(
    cx: &PluginContext,
    rel: &str,
    config: &StoreConfig,
) -> Result<Store<KeyEntry>, ConfigError> {
    let (format, bytes, path) = open(cx, rel, config)?;
    let mut store = Store::default();
    match format {
        Format::Pkcs12 => {
            let archive = open_pkcs12(cx, rel, config, &bytes)?;
            for (i, key) in archive.keys.iter().enumerate() {
                let alias = key
                    .friendly_name
                    .clone()
                    .unwrap_or_else(|| format!("key{}", i + 1));
                let leaf = key.local_key_id.as_ref().and_then(|id| {
                    archive
                        .certs
                        .iter()
                        .find(|c| c.local_key_id.as_deref() == Some(id.as_ref()))
                });
                let leaf = match leaf {
                    Some(c) => &c.cert,
                    None if archive.keys.len() == 1 && !archive.certs.is_empty() => &archive.certs[0].cert,
                    None => {
                        return Err(cx.error(
                            &format!("{rel}.store"),
                            format!(
                                "the private key '{alias}' in '{}' has no certificate: export key and certificate together (`openssl pkcs12 -export -inkey key.pem -in cert.pem -name {alias}`)",
                                config.store
                            ),
                        ))
                    }
                };
                let mut chain = vec![Bytes::copy_from_slice(leaf.as_der())];
                let mut current = leaf;
                // Follow issuers found in the file up to a self-signed one (bounded: no cycles).
                while current.issuer() != current.subject() && chain.len() <= archive.certs.len() {
                    let Some(issuer) = archive
                        .certs
                        .iter()
                        .map(|c| &c.cert)
                        .find(|c| c.subject() == current.issuer() && c != &current)
                    else {
                        break;
                    };
                    let der = Bytes::copy_from_slice(issuer.as_der());
                    if chain.contains(&der) {
                        break;
                    }
                    chain.push(der);
                    current = issuer;
                }
                store.push(
                    alias,
                    KeyEntry {
                        key: Bytes::copy_from_slice(key.key.as_der()),
                        chain,
                    },
                );
            }
        }
        Format::Pem => {
            let sections = pem_sections(cx, rel, config, &bytes)?;
            let mut key = None;
            let mut chain = Vec::new();
            for (kind, der) in sections {
                match kind {
                    SectionKind::PrivateKey if key.is_none() => key = Some(Bytes::from(der)),
                    SectionKind::PrivateKey => {
                        return Err(cx.error(
                            &format!("{rel}.store"),
                            format!(
                                "'{}' holds more than one private key: a PEM keys store holds one key and its chain (use one file per key, or a pkcs12 store)",
                                config.store
                            ),
                        ))
                    }
                    SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
                        return Err(cx.error(
                            &format!("{rel}.store"),
                            format!(
                                "'{}' holds a PKCS#1/SEC1 key: convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.pk8.pem`",
                                config.store
                            ),
                        ))
                    }
                    SectionKind::Certificate => chain.push(Bytes::from(der)),
                    _ => {}
                }
            }
            let Some(key) = key else {
                return Err(cx.error(
                    &format!("{rel}.store"),
                    format!(
                        "'{}' has no unencrypted PKCS#8 private key (-----BEGIN PRIVATE KEY-----): a PEM keys store holds one key followed by its certificate chain",
                        config.store
                    ),
                ));
            };
            if chain.is_empty() {
                return Err(cx.error(
                    &format!("{rel}.store"),
                    format!(
                        "'{}' has no certificate: append the certificate chain (leaf first) after the private key",
                        config.store
                    ),
                ));
            }
            store.push(stem(&path), KeyEntry { key, chain });
        }
    }
    store.finish(cx, rel, config)
}

fn load_certs(
    cx: &PluginContext,
    rel: &str,
    config: &StoreConfig,
) -> Result<Store<Bytes>, ConfigError> {
    let (format, bytes, path) = open(cx, rel, config)?;
    let mut store = Store::default();
    match format {
        Format::Pkcs12 => {
            let archive = open_pkcs12(cx, rel, config, &bytes)?;
            for c in &archive.certs {
                let alias = c
                    .friendly_name
                    .clone()
                    .unwrap_or_else(|| c.cert.subject().to_string());
                store.push(alias, Bytes::copy_from_slice(c.cert.as_der()));
            }
        }
        Format::Pem => {
            let name = stem(&path);
            for (kind, der) in pem_sections(cx, rel, config, &bytes)? {
                if kind == SectionKind::Certificate {
                    store.push(name.clone(), Bytes::from(der));
                }
            }
        }
    }
    if store.entries.is_empty() {
        return Err(cx.error(
            &format!("{rel}.store"),
            format!("'{}' holds no certificate", config.store),
        ));
    }
    store.finish(cx, rel, config)
}

fn pem_sections(
    cx: &PluginContext,
    rel: &str,
    config: &StoreConfig,
    bytes: &[u8],
) -> Result<Vec<(SectionKind, Vec<u8>)>, ConfigError> {
    if config.password.is_some() || contains(bytes, b"ENCRYPTED PRIVATE KEY") {
        return Err(cx.error(
            &format!("{rel}.password"),
            format!(
                "encrypted PEM keys are not supported for '{}': decrypt the key (`openssl pkcs8 -topk8 -nocrypt`) and remove `password`, or use a pkcs12 store",
                config.store
            ),
        ));
    }
    let sections: Result<Vec<_>, _> = <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes).collect();
    let sections = sections.map_err(|e| {
        cx.error(
            &format!("{rel}.store"),
            format!("'{}' is not a valid PEM file ({e:?})", config.store),
        )
    })?;
    if sections.is_empty() {
        return Err(cx.error(
            &format!("{rel}.store"),
            format!(
                "'{}' has no PEM section: is it a PKCS#12 file? then set `type: pkcs12` or leave `type` out",
                config.store
            ),
        ));
    }
    Ok(sections)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".to_string())
}

#[cfg(test)]
mod tests;
