//! zilla.yaml loading: YAML, `${{ env.NAME }}` expressions, the config model and its located
//! errors, from arbitrary text. No panic; an error always names a position or key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zilla_engine::config::Config;

fuzz_target!(|text: &str| {
    let env = |name: &str| match name {
        "PORT" => Some("7114".to_string()),
        "EMPTY" => Some(String::new()),
        "LONG" => Some("x".repeat(1000)),
        _ => None,
    };
    if let Err(d) = Config::parse("zilla.yaml", text, env) {
        for diagnostic in &d.0 {
            let _ = diagnostic.to_string();
        }
    }
});
