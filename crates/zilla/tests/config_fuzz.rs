//! Loading never panics, whatever the config: mutations of the bundled examples (flipped,
//! dropped, inserted bytes, truncations) either build a graph with every plugin linked, or give
//! located diagnostics.

use zilla_engine::config::Config;
use zilla_engine::Properties;
use zilla_engine::{build, BuildEnv};

// Link the plugins, as the binary does.
use binding_echo as _;
use binding_filesystem as _;
use binding_http as _;
use binding_http_filesystem as _;
use binding_sse_client as _;
use binding_sse_server as _;
use binding_tcp as _;
use binding_tls as _;
use exporter_stdout as _;
use vault_filesystem as _;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = b":-[]{}\n \t\"'#&*!|>%@`,?${}\x00/.0123456789";

#[test]
fn mutated_examples_never_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let seeds: Vec<String> = [
        "examples/sse.proxy/zilla.yaml",
        "examples/http.filesystem/zilla.yaml",
        "examples/tcp.proxy/zilla.yaml",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(root.join(p)).expect("example config"))
    .collect();
    let env = BuildEnv::new(Properties::default());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut built = 0;
    for i in 0..1500 {
        let mut bytes = seeds[i % seeds.len()].as_bytes().to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len());
            match rng.below(4) {
                0 => bytes[at] = INTERESTING[rng.below(INTERESTING.len())],
                1 => {
                    bytes.remove(at);
                }
                2 => bytes.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
                _ => bytes.truncate(at.max(1)),
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let config = match Config::parse("zilla.yaml", &text, |_| Some("7000".into())) {
            Ok(c) => c,
            Err(d) => {
                assert!(d.0.iter().all(|x| x.to_string().starts_with("zilla.yaml")));
                continue;
            }
        };
        match build(&config, &env) {
            Ok(_) => built += 1,
            Err(d) => {
                for diag in &d.0 {
                    assert!(diag.to_string().starts_with("zilla.yaml"), "{diag}");
                }
            }
        }
    }
    assert!(built > 0, "some mutations keep a valid config");
}
