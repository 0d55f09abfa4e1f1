//! Reusable helpers for tests that need TLS through the real `zilla` binary.
//!
//! - [`Pki::generate`] makes, with the `openssl` CLI (so OpenSSL 3's PKCS#12 defaults are what
//!   the vault reads), a test CA and certificates in a temporary directory: a server certificate
//!   for `localhost`, `127.0.0.1` and `*.example.test`, a client certificate from the same CA,
//!   and a client certificate from another ("rogue") CA; plus the stores a vault reads:
//!   `keys.p12` (alias `localhost`), `trust.p12` (alias `ca`), `client.p12` (alias `client`),
//!   all with password [`PASSWORD`]. Nothing is written outside the temporary directory.
//! - [`Pki::vault`] is a `vaults:` section for zilla.yaml using those stores (absolute paths, so
//!   the config can live anywhere).
//! - [`Pki::client_config`] is a rustls client config trusting the test CA (for tokio-rustls
//!   clients); `curl --cacert <pki.ca_pem()>` trusts it the same way.
//! - [`zilla_bin`] finds `target/debug/zilla` (honours `CARGO_TARGET_DIR`).
//!
//! ```ignore
//! let pki = Pki::generate();
//! let config = format!("name: test\n{}bindings: ...", pki.vault("my_servers"));
//! let zilla = Zilla::start(&zilla_bin(), &config, Options::default());
//! ```
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Password of every store [`Pki::generate`] writes.
pub(crate) const PASSWORD: &str = "test-secret";

/// The `zilla` binary built by `cargo build -p zilla`.
#[allow(unused_imports)] // not every test binary that includes this module starts zilla
pub(crate) use zilla_test_support::zilla_bin;

/// Test certificates and stores in a temporary directory.
#[derive(Debug)]
pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): apt-get install openssl"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

fn ca(dir: &Path, name: &str, cn: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-x509"];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
    openssl(dir, &args);
}

fn leaf(dir: &Path, name: &str, cn: &str, ca: &str, ext: &str) {
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    let (ca_pem, ca_key, extfile) = (
        format!("{ca}.pem"),
        format!("{ca}.key"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).unwrap();
    let subj = format!("/CN={cn}");
    let mut args = vec!["req"];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extfile,
            "-out",
            &crt,
        ],
    );
}

fn p12(dir: &Path, name: &str, ca: &str) {
    let (key, crt, out, ca_pem) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("{name}.p12"),
        format!("{ca}.pem"),
    );
    let pass = format!("pass:{PASSWORD}");
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            &key,
            "-in",
            &crt,
            "-certfile",
            &ca_pem,
            "-name",
            name,
            "-out",
            &out,
            "-passout",
            &pass,
        ],
    );
}

impl Pki {
    /// Generates everything (a second or so).
    pub(crate) fn generate() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        ca(d, "ca", "Zilla Test CA");
        ca(d, "rogue", "Rogue CA");
        leaf(
            d,
            "localhost",
            "localhost",
            "ca",
            "subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:*.example.test\n",
        );
        leaf(d, "client", "client", "ca", "extendedKeyUsage=clientAuth\n");
        leaf(
            d,
            "intruder",
            "intruder",
            "rogue",
            "extendedKeyUsage=clientAuth\n",
        );
        p12(d, "localhost", "ca");
        std::fs::rename(d.join("localhost.p12"), d.join("keys.p12")).unwrap();
        p12(d, "client", "ca");
        let pass = format!("pass:{PASSWORD}");
        openssl(
            d,
            &[
                "pkcs12",
                "-export",
                "-nokeys",
                "-in",
                "ca.pem",
                "-caname",
                "ca",
                "-out",
                "trust.p12",
                "-passout",
                &pass,
            ],
        );
        Pki { dir }
    }

    /// Writes the stores older tools make, beside the others: `v1.p12` (alias `localhost`, with
    /// [`PASSWORD`]), a key with an X.509 **version 1** certificate for `CN=localhost` issued by
    /// the test CA (what `openssl x509 -req` makes without extensions), encrypted the legacy way
    /// (RC2-40 and 3DES, as keytool and Zilla's example keystores); `expired/localhost.pem`, a PEM
    /// keys store whose certificate's validity has ended; `mismatch/localhost.pem`, a key
    /// followed by another key's certificate.
    pub(crate) fn legacy_stores(&self) {
        let d = self.dir.path();
        let mut args = vec!["req"];
        args.extend(EC);
        args.extend([
            "-keyout",
            "v1.key",
            "-out",
            "v1.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(d, &args);
        let x509 = |out: &str, days: &str| {
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    "v1.csr",
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    days,
                    "-out",
                    out,
                ],
            )
        };
        x509("v1.crt", "2");
        x509("expired.crt", "0");
        let pass = format!("pass:{PASSWORD}");
        openssl(
            d,
            &[
                "pkcs12",
                "-export",
                "-legacy",
                "-inkey",
                "v1.key",
                "-in",
                "v1.crt",
                "-certfile",
                "ca.pem",
                "-name",
                "localhost",
                "-out",
                "v1.p12",
                "-passout",
                &pass,
            ],
        );
        let pkcs8 = |key: &str| {
            let out = Command::new("openssl")
                .args(["pkcs8", "-topk8", "-nocrypt", "-in", key])
                .current_dir(d)
                .output()
                .expect("openssl");
            String::from_utf8(out.stdout).unwrap()
        };
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        for (dir, key, cert) in [
            ("expired", "v1.key", "expired.crt"),
            ("mismatch", "client.key", "v1.crt"),
        ] {
            std::fs::create_dir_all(d.join(dir)).unwrap();
            std::fs::write(d.join(dir).join("localhost.pem"), pkcs8(key) + &read(cert)).unwrap();
        }
        // The expired certificate ends the second it starts.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }

    /// The directory holding every file.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file of the directory.
    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The test CA certificate (PEM), e.g. for `curl --cacert`.
    pub(crate) fn ca_pem(&self) -> String {
        self.path("ca.pem")
    }

    /// A `vaults:` section declaring vault `name` with `keys.p12`, `trust.p12` and `client.p12`:
    /// `name` holds the server key and the CA, `<name>_client` the client key and the CA.
    pub(crate) fn vault(&self, name: &str) -> String {
        format!(
            "vaults:\n  {name}:\n    type: filesystem\n    options:\n      keys: {{ store: {keys}, type: pkcs12, password: {PASSWORD} }}\n      trust: {{ store: {trust}, password: {PASSWORD} }}\n  {name}_client:\n    type: filesystem\n    options:\n      keys: {{ store: {client}, password: {PASSWORD} }}\n      trust: {{ store: {trust}, password: {PASSWORD} }}\n",
            keys = self.path("keys.p12"),
            trust = self.path("trust.p12"),
            client = self.path("client.p12"),
        )
    }

    /// Certificate chain and key of `name` (`localhost`, `client`, `intruder`), from PEM files.
    pub(crate) fn identity(
        &self,
        name: &str,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let chain = CertificateDer::pem_file_iter(self.path(&format!("{name}.crt")))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(self.path(&format!("{name}.key"))).unwrap();
        (chain, key)
    }

    /// A rustls client config trusting the test CA, offering `alpn`, presenting the client
    /// certificate `identity` if given.
    pub(crate) fn client_config(
        &self,
        alpn: &[&str],
        identity: Option<&str>,
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.ca_pem()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let mut config = match identity {
            Some(name) => {
                let (chain, key) = self.identity(name);
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }

    /// A rustls server config with the `localhost` certificate, accepting `alpn`.
    pub(crate) fn server_config(&self, alpn: &[&str]) -> Arc<rustls::ServerConfig> {
        let (chain, key) = self.identity("localhost");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }
}
