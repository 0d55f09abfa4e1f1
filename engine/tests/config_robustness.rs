//! Config parsing never panics, whatever the bytes: mutations of a valid config (flipped,
//! dropped and duplicated bytes, truncations) either parse or give located diagnostics.

use zilla_engine::config::Config;

const SEED_CONFIG: &str = "\
name: test
bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options:
      host: 127.0.0.1
      port: [7114, \"9000-9001\"]
    routes:
      - when:
          - port: 7114
            cidr: 127.0.0.0/8
        guarded:
          g: [read]
        exit: south
    exit: south
  south:
    type: echo
    kind: server
telemetry:
  exporters:
    x: { type: stdout }
---
name: other
";

/// xorshift: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const INTERESTING: &[u8] = b":-[]{}\n \t\"'#&*!|>%@`,?${}\x00\xff";

#[test]
fn mutated_configs_never_panic() {
    let seed = SEED_CONFIG.as_bytes();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let mut bytes = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len().max(1));
            match rng.below(4) {
                0 => bytes[at] = INTERESTING[rng.below(INTERESTING.len())],
                1 => {
                    bytes.remove(at);
                }
                2 => bytes.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
                _ => bytes.truncate(at),
            }
            if bytes.is_empty() {
                break;
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Err(d) = Config::parse("zilla.yaml", &text, |_| Some("1".into())) {
            for diag in &d.0 {
                assert!(diag.to_string().starts_with("zilla.yaml"), "{diag}");
                assert!(!diag.message.is_empty());
            }
        }
    }
}
