//! `cargo xtask demo jwt`: Zilla's sse.proxy.jwt example (HTTPS with HTTP/2 on 7143, a page that
//! streams events and renews its token) with everything it needs made for the run in a
//! temporary folder: a CA and a `localhost` certificate in `tls/localhost.p12`, an RSA key pair
//! for the tokens (the public modulus goes to zilla as `JWT_N`), and tokens signed with it.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bench::TempDir;
use crate::certs::openssl;
use crate::demo::Guard;

/// The keystore password of the run.
const PASSWORD: &str = "generated";

/// base64url without padding.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An RS256 token signed with `jwt.key` in `dir`.
fn token(dir: &Path, scope: &str, exp: u64) -> Result<String, String> {
    let header = b64url(br#"{"alg":"RS256","typ":"JWT","kid":"example"}"#);
    let payload = b64url(
        format!(
            r#"{{"iss":"https://auth.example.com","aud":"https://api.example.com","sub":"alice","scope":"{scope}","exp":{exp}}}"#
        )
        .as_bytes(),
    );
    let input = format!("{header}.{payload}");
    fs::write(dir.join("signing.input"), &input).map_err(|e| e.to_string())?;
    let signature = openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-sign",
            "jwt.key",
            "-binary",
            "signing.input",
        ],
    )?;
    Ok(format!("{input}.{}", b64url(&signature)))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Makes the folder of the run: the example's config and page, the keystore, the JWT key.
/// Returns the key's modulus (base64url) and the CA's SPKI hash (for Chromium).
pub(crate) fn prepare(root: &Path, dir: &Path) -> Result<(String, String), String> {
    let example = root.join("examples/sse.proxy.jwt");
    fs::copy(example.join("zilla.yaml"), dir.join("zilla.yaml")).map_err(|e| e.to_string())?;
    copy_dir(&example.join("www"), &dir.join("www"))?;
    let tls = dir.join("tls");
    fs::create_dir_all(&tls).map_err(|e| e.to_string())?;
    crate::certs::localhost(&tls, "Zilla Demo CA", PASSWORD)?;
    let pubkey = openssl(&tls, &["x509", "-in", "localhost.crt", "-pubkey", "-noout"])?;
    fs::write(tls.join("localhost.pub"), pubkey).map_err(|e| e.to_string())?;
    let der = openssl(
        &tls,
        &["pkey", "-pubin", "-in", "localhost.pub", "-outform", "der"],
    )?;
    fs::write(tls.join("localhost.pub.der"), der).map_err(|e| e.to_string())?;
    let digest = openssl(&tls, &["dgst", "-sha256", "-binary", "localhost.pub.der"])?;
    let spki = standard_b64(&digest);
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "jwt.key",
        ],
    )?;
    let modulus = String::from_utf8_lossy(&openssl(
        dir,
        &["rsa", "-in", "jwt.key", "-noout", "-modulus"],
    )?)
    .trim()
    .trim_start_matches("Modulus=")
    .to_string();
    let bytes: Vec<u8> = (0..modulus.len() / 2)
        .filter_map(|i| u8::from_str_radix(&modulus[2 * i..2 * i + 2], 16).ok())
        .collect();
    Ok((b64url(&bytes), spki))
}

/// Standard base64 with padding (Chromium's SPKI list).
fn standard_b64(bytes: &[u8]) -> String {
    let url = b64url(bytes).replace('-', "+").replace('_', "/");
    let pad = (4 - url.len() % 4) % 4;
    url + &"=".repeat(pad)
}

pub(crate) fn start(root: &Path, bin: &Path) -> Result<(), String> {
    let work = TempDir::new()?;
    let dir = work.path();
    let (n, spki) = prepare(root, dir)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let valid = token(dir, "proxy:stream", now + 3600)?;
    let renewal = token(dir, "proxy:stream", now + 7200)?;
    let short = token(dir, "proxy:stream", now + 30)?;
    let no_role = token(dir, "proxy:read", now + 3600)?;

    let backend = Command::new(bin.join("zilla-sse-server"))
        .args(["--sse-port", "8001", "--input-port", "7001"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start zilla-sse-server: {e}"))?;
    let mut backend = Guard(backend);
    thread::sleep(Duration::from_millis(300));
    if let Ok(Some(status)) = backend.0.try_wait() {
        return Err(format!(
            "zilla-sse-server exited ({status}): are ports 8001 and 7001 free?"
        ));
    }
    let zilla = Command::new(bin.join("zilla"))
        .args(["start", "-c", "zilla.yaml"])
        .current_dir(dir)
        .env("KEYSTORE_PASSWORD", PASSWORD)
        .env("JWT_N", &n)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start zilla: {e}"))?;
    let mut zilla = Guard(zilla);
    thread::sleep(Duration::from_millis(700));
    println!();
    println!(
        "sse.proxy.jwt running from {} (Ctrl-C stops everything).",
        dir.display()
    );
    println!();
    println!(
        "Open the page (the certificate is signed by {}/tls/ca.pem: trust it,",
        dir.display()
    );
    println!("or start Chromium with --ignore-certificate-errors-spki-list={spki}):");
    println!("  https://localhost:7143/#token={valid}&renew={renewal}");
    println!();
    println!("Tokens (paste them in the page):");
    println!("  valid for an hour:          {valid}");
    println!("  expires in 30 s (renew it): {short}");
    println!("  without the role:           {no_role}");
    println!();
    println!("Publish an event:");
    println!("  echo '{{\"data\":\"Hello, world\",\"id\":\"1\"}}' | curl -s --max-time 1 telnet://127.0.0.1:7001");
    println!("Or stream with curl:");
    println!("  curl -N --cacert {}/tls/ca.pem -H \"Authorization: Bearer {valid}\" https://localhost:7143/events", dir.display());
    println!();
    loop {
        if let Ok(Some(status)) = zilla.0.try_wait() {
            return if status.success() {
                Ok(())
            } else {
                Err(format!("zilla exited ({status})"))
            };
        }
        if let Ok(Some(status)) = backend.0.try_wait() {
            return Err(format!("zilla-sse-server exited ({status})"));
        }
        thread::sleep(Duration::from_millis(200));
    }
}
