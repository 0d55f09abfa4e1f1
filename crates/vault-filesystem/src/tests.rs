//! Stores made by the `openssl` CLI (OpenSSL 3 defaults), read back through the vault.

use std::path::Path;
use std::process::Command;

use super::*;

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

/// A CA, a `localhost` certificate it signed, and stores of them in `dir`:
/// `keys.p12` (alias `localhost`, password `secret`), `trust.p12` (alias `ca`),
/// `localhost.pem` (key + chain) and `ca.pem`.
fn make_stores(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "localhost.key",
        "-out",
        "localhost.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "localhost.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "localhost.crt",
        ],
    );
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "localhost.key",
            "-in",
            "localhost.crt",
            "-certfile",
            "ca.pem",
            "-name",
            "localhost",
            "-out",
            "keys.p12",
            "-passout",
            "pass:secret",
        ],
    );
    openssl(
        dir,
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
            "pass:secret",
        ],
    );
    let pem = [
        std::fs::read(dir.join("localhost.key")).unwrap(),
        std::fs::read(dir.join("localhost.crt")).unwrap(),
        std::fs::read(dir.join("ca.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("localhost.pem"), pem).unwrap();
}

fn build(dir: &Path, yaml: &str) -> Result<Arc<dyn Vault>, ConfigError> {
    let options: FilesystemOptions = serde_yaml::from_str(yaml).expect("options parse");
    let cx = PluginContext {
        index: 0,
        namespace: "test".into(),
        path: "vaults.my_servers".into(),
        properties: Arc::default(),
        config_dir: dir.to_path_buf(),
        vault: None,
        events: Default::default(),
        metrics: Default::default(),
        attributes: Vec::new(),
    };
    FilesystemVaultFactory::build(&cx, Some(options)).map_err(|mut e| {
        assert_eq!(e.0.len(), 1, "one error: {e}");
        e.0.remove(0)
    })
}

fn der_of_pem(path: &Path) -> Vec<Vec<u8>> {
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(|c| c.unwrap().to_vec())
        .collect()
}

#[test]
fn pkcs12_from_openssl_with_the_right_password() {
    let dir = tempfile::tempdir().unwrap();
    make_stores(dir.path());
    let vault = build(
        dir.path(),
        "{keys: {store: keys.p12, type: pkcs12, password: secret}, trust: {store: trust.p12, password: secret}}",
    )
    .expect("vault builds");
    assert_eq!(vault.key_aliases(), vec!["localhost"]);
    assert_eq!(vault.trust_aliases(), vec!["ca"]);
    let key = vault.key("localhost").expect("key entry");
    let leaf = der_of_pem(&dir.path().join("localhost.crt"));
    let ca = der_of_pem(&dir.path().join("ca.pem"));
    assert_eq!(key.chain.len(), 2, "leaf then CA");
    assert_eq!(key.chain[0].as_ref(), leaf[0].as_slice());
    assert_eq!(key.chain[1].as_ref(), ca[0].as_slice());
    // PKCS#8: a SEQUENCE starting with version 0.
    assert_eq!(key.key[0], 0x30);
    assert_eq!(vault.trust("ca").unwrap().as_ref(), ca[0].as_slice());
    assert!(vault.key("nope").is_none());
}

#[test]
fn wrong_password_names_the_password_key() {
    let dir = tempfile::tempdir().unwrap();
    make_stores(dir.path());
    let err = build(dir.path(), "{keys: {store: keys.p12, password: wrong}}").unwrap_err();
    assert_eq!(err.path, "vaults.my_servers.options.keys.password");
    assert!(
        err.message.contains("wrong password for 'keys.p12'"),
        "{}",
        err.message
    );

    let err = build(dir.path(), "{keys: {store: keys.p12}}").unwrap_err();
    assert_eq!(err.path, "vaults.my_servers.options.keys");
    assert!(err.message.contains("set `password`"), "{}", err.message);
}

#[test]
fn missing_or_corrupt_store_names_the_store_key() {
    let dir = tempfile::tempdir().unwrap();
    let err = build(dir.path(), "{keys: {store: tls/none.p12, password: x}}").unwrap_err();
    assert_eq!(err.path, "vaults.my_servers.options.keys.store");
    assert!(
        err.message.contains("cannot read 'tls/none.p12'"),
        "{}",
        err.message
    );
    assert!(err
        .message
        .contains("relative to the directory of zilla.yaml"));

    std::fs::write(dir.path().join("junk.p12"), b"not a keystore").unwrap();
    let err = build(dir.path(), "{trust: {store: junk.p12, password: x}}").unwrap_err();
    assert_eq!(err.path, "vaults.my_servers.options.trust.store");
    assert!(
        err.message.contains("not a readable PKCS#12 store"),
        "{}",
        err.message
    );

    let err = build(dir.path(), "{trust: {store: junk.p12, type: jks}}").unwrap_err();
    assert_eq!(err.path, "vaults.my_servers.options.trust.type");
    assert!(
        err.message.contains("keytool -importkeystore"),
        "{}",
        err.message
    );
}

#[test]
fn entries_must_name_aliases_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    make_stores(dir.path());
    let err = build(
        dir.path(),
        "{keys: {store: keys.p12, password: secret, entries: [localhost, example]}}",
    )
    .unwrap_err();
    assert_eq!(err.path, "vaults.my_servers.options.keys.entries[1]");
    assert!(
        err.message
            .contains("no entry 'example' in 'keys.p12' (its aliases: localhost)"),
        "{}",
        err.message
    );
}

#[test]
fn pem_stores() {
    let dir = tempfile::tempdir().unwrap();
    make_stores(dir.path());
    let vault = build(
        dir.path(),
        "{keys: {store: localhost.pem, type: pem}, trust: {store: ca.pem, type: pem}, signers: {store: ca.pem, type: pem}}",
    )
    .expect("vault builds");
    assert_eq!(vault.key_aliases(), vec!["localhost"]);
    let key = vault.key("localhost").unwrap();
    assert_eq!(key.chain.len(), 2);
    assert_eq!(key.key[0], 0x30);
    assert_eq!(vault.trust_aliases(), vec!["ca"]);
    assert_eq!(vault.signer_aliases(), vec!["ca"]);
    assert!(vault.signer("ca").is_some());

    // A PEM file without a key is not a keys store.
    let err = build(dir.path(), "{keys: {store: ca.pem, type: pem}}").unwrap_err();
    assert_eq!(err.path, "vaults.my_servers.options.keys.store");
    assert!(
        err.message.contains("no unencrypted PKCS#8 private key"),
        "{}",
        err.message
    );
    // A PKCS#12 file read as PEM says what to do.
    let err = build(dir.path(), "{trust: {store: trust.p12, type: pem}}").unwrap_err();
    assert!(
        err.message.contains("set `type: pkcs12`"),
        "{}",
        err.message
    );
}

#[test]
fn options_reject_unknown_keys() {
    assert!(serde_yaml::from_str::<FilesystemOptions>("{keys: {store: a, pasword: x}}").is_err());
    assert!(serde_yaml::from_str::<FilesystemOptions>("{revocation: crl}").is_ok());
}
