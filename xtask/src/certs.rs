//! Certificates made with the `openssl` command for runs that need TLS (`demo jwt`,
//! `bench h2`): a CA and a `localhost` certificate it signed, as PEM files and as a PKCS#12
//! keystore for zilla's `filesystem` vault.

use std::fs;
use std::path::Path;
use std::process::Command;

/// Runs `openssl` in `dir`; its stdout, or its stderr as the error.
pub(crate) fn openssl(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl ({e}): apt-get install openssl"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

/// Writes into `dir`: `ca.pem` and `ca.key` (CN `ca_name`), `localhost.key` and `localhost.crt`
/// (for `localhost` and 127.0.0.1, signed by the CA) and `localhost.p12` (key, certificate and
/// CA under the alias `localhost`, encrypted with `password`).
pub(crate) fn localhost(dir: &Path, ca_name: &str, password: &str) -> Result<(), String> {
    let subject = format!("/CN={ca_name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", &subject,
            "-keyout", "ca.key", "-out", "ca.pem",
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "localhost.key",
            "-out",
            "localhost.csr",
        ],
    )?;
    fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .map_err(|e| e.to_string())?;
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
            "30",
            "-extfile",
            "san.ext",
            "-out",
            "localhost.crt",
        ],
    )?;
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-in",
            "localhost.crt",
            "-inkey",
            "localhost.key",
            "-certfile",
            "ca.pem",
            "-name",
            "localhost",
            "-out",
            "localhost.p12",
            "-passout",
            &format!("pass:{password}"),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_ca_a_localhost_certificate_and_a_keystore() {
        let dir = crate::bench::TempDir::new().unwrap();
        localhost(dir.path(), "Test CA", "secret").unwrap();
        let verified = openssl(
            dir.path(),
            &["verify", "-CAfile", "ca.pem", "localhost.crt"],
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&verified).contains("localhost.crt: OK"));
        let text = openssl(
            dir.path(),
            &[
                "x509",
                "-in",
                "localhost.crt",
                "-noout",
                "-ext",
                "subjectAltName",
            ],
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&text).contains("IP Address:127.0.0.1"));
        let listed = openssl(
            dir.path(),
            &[
                "pkcs12",
                "-in",
                "localhost.p12",
                "-nokeys",
                "-passin",
                "pass:secret",
            ],
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&listed).contains("friendlyName: localhost"));
        assert!(openssl(
            dir.path(),
            &[
                "pkcs12",
                "-in",
                "localhost.p12",
                "-nokeys",
                "-passin",
                "pass:wrong"
            ]
        )
        .is_err());
    }
}
