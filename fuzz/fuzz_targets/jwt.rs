//! JWT decoding in the jwt guard: arbitrary credentials against a guard with an RSA and an EC
//! key. No panic, and nothing arbitrary is ever authorized (no key can sign what it is fed).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use guard_jwt::{JwtGuard, JwtOptions};
use libfuzzer_sys::fuzz_target;
use zilla_engine::{PluginContext, Properties};

fn guard() -> &'static JwtGuard {
    static GUARD: OnceLock<JwtGuard> = OnceLock::new();
    GUARD.get_or_init(|| {
        let options: JwtOptions = serde_json::from_value(serde_json::json!({
            "issuer": "https://auth.example.com",
            "audience": "https://api.example.com",
            "attributes": { "tenant": "org.tenant" },
            "keys": [
                { "kty": "RSA", "kid": "rsa", "alg": "RS256", "e": "AQAB",
                  "n": "1JqsmRcPWt-YtWgYiCiP4TqevjQLhA3mUmAY7KH3_dM23AHeBiZvVlbeMH51eD5eOdxn2W_TrcOQ-yZNvzSsQ4kuQY54ZXC7g1IhPnBqsBmJVnl_NTtGYsse3OIyui-Z7NcDr_KVv7LhVPlmsEZlRmenfcoW92FbnS9-hf9Un0HoN_yKzHMOjuymIMjgRDSWidUIGQ2EPTr8Cv8WAKjXvEA8ajtjyuxdQ3tjSEN4d8-1-RnZCbGH60HMIBXSb9q4aaGDLEpWF_0HDEuINt5dyrDA92NGFtE2WLXq4czvZVwnFAS8u_GUEnC-X1izTSbmgzHLDBVBOAvBa1nptsoPfQ" },
                { "kty": "EC", "kid": "ec", "alg": "ES256", "crv": "P-256",
                  "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                  "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" }
            ]
        }))
        .unwrap();
        let cx = PluginContext {
            index: 0,
            namespace: "fuzz".into(),
            path: "guards.jwt0".into(),
            properties: Arc::new(Properties::default()),
            config_dir: ".".into(),
            vault: None,
            events: Default::default(),
            metrics: Default::default(),
            attributes: Vec::new(),
        };
        JwtGuard::new(&cx, options).unwrap()
    })
}

fuzz_target!(|token: &str| {
    assert!(
        guard().authorize(token, SystemTime::now()).is_err(),
        "an arbitrary token was authorized"
    );
});
