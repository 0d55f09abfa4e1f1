//! `examples/sse.proxy.tenants` as shipped (only its two ports moved to free ones), through the
//! real binary with curl as the client and the README's tokens: each tenant opens only its own
//! stream, and the backend receives the tenant and user from the token, not from the client.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use zilla_test_support::{free_port, Options, SseBackend, Zilla};

const SECOND: Duration = Duration::from_secs(1);

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sse.proxy.tenants")
}

fn token(tenant: &str) -> String {
    std::fs::read_to_string(example().join(format!("tokens/{tenant}.jwt")))
        .unwrap()
        .trim()
        .to_string()
}

fn curl(args: &[&str]) -> std::process::Child {
    Command::new("curl")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl is installed (apt-get install curl)")
}

#[test]
fn each_tenant_sees_only_its_own_stream() {
    let backend = SseBackend::start();
    let port = free_port();
    let config = std::fs::read_to_string(example().join("zilla.yaml"))
        .unwrap()
        .replace("port: 7114", &format!("port: {port}"))
        .replace("port: 8001", &format!("port: {}", backend.port()));
    let zilla = Zilla::start(
        Path::new(env!("CARGO_BIN_EXE_zilla")),
        &config,
        Options::default(),
    );
    zilla.wait_for("listening on tcp://", 10 * SECOND);
    let (acme, globex) = (token("acme"), token("globex"));
    let base = format!("http://127.0.0.1:{port}/tenants");

    // As the README: acme by header (with a forged x-tenant), globex by query.
    let acme_stream = curl(&[
        "-sN",
        "--max-time",
        "4",
        "-H",
        &format!("Authorization: Bearer {acme}"),
        "-H",
        "x-tenant: globex",
        &format!("{base}/acme/events"),
    ]);
    assert!(backend.wait_requests(1, 5 * SECOND), "acme's stream opened");
    let globex_stream = curl(&[
        "-sN",
        "--max-time",
        "4",
        &format!("{base}/globex/events?access_token={globex}"),
    ]);
    assert!(
        backend.wait_requests(2, 5 * SECOND),
        "globex's stream opened"
    );

    let heads = backend.requests();
    let head = |path: &str| {
        heads
            .iter()
            .find(|h| h.starts_with(&format!("GET {path} ")))
            .unwrap_or_else(|| panic!("no request for {path}: {heads:?}"))
            .to_ascii_lowercase()
    };
    let a = head("/tenants/acme/events");
    assert!(
        a.contains("\r\nx-tenant: acme\r\n") && a.contains("\r\nx-user: alice\r\n"),
        "{a}"
    );
    assert!(
        !a.contains("globex"),
        "the client's x-tenant got through: {a}"
    );
    let g = head("/tenants/globex/events");
    assert!(
        g.contains("\r\nx-tenant: globex\r\n") && g.contains("\r\nx-user: bob\r\n"),
        "{g}"
    );
    assert!(!g.contains("access_token"), "the token went upstream: {g}");

    // The backend serves each path its own events (as zilla-sse-server does with `path`).
    let index = |path: &str| {
        heads
            .iter()
            .position(|h| h.starts_with(&format!("GET {path} ")))
            .unwrap()
    };
    assert!(backend.send_to(index("/tenants/acme/events"), b"data:for acme\n\n"));
    assert!(backend.send_to(index("/tenants/globex/events"), b"data:for globex\n\n"));

    // acme may not open globex's stream, nor may anyone without a token.
    let forbidden = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {acme}"))
        .arg(format!("{base}/globex/events"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&forbidden.stdout), "403");
    let anonymous = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{base}/acme/events"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&anonymous.stdout), "404");

    let acme_out = acme_stream.wait_with_output().unwrap();
    let globex_out = globex_stream.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&acme_out.stdout),
        "data:for acme\n\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&globex_out.stdout),
        "data:for globex\n\n"
    );
    assert_eq!(
        backend.requests().len(),
        2,
        "refused requests never reached the backend"
    );
}
