//! A bad config stops `zilla start` with exit code 1 and messages naming file, line, column and
//! key path.

use std::path::Path;

use zilla_test_support::run;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zilla"))
}

/// Runs `zilla start` on `config` and returns (exit code, stderr).
fn start(config: &str) -> (i32, String) {
    let dir = tempfile_dir();
    std::fs::write(dir.join("zilla.yaml"), config).unwrap();
    let (code, _, stderr) = run(bin(), &["start", "-c", "zilla.yaml"], &dir);
    (code, stderr)
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "zilla-config-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check(config: &str, expected: &[&str]) {
    let (code, stderr) = start(config);
    assert_eq!(code, 1, "exit code; stderr:\n{stderr}");
    for e in expected {
        assert!(
            stderr.lines().any(|l| l == *e),
            "expected line\n  {e}\nin stderr:\n{stderr}"
        );
    }
}

const VALID: &str = "\
name: test
bindings:
  north_tcp_server:
    type: tcp
    kind: server
    options:
      host: 127.0.0.1
      port: 0
    exit: south_echo
  south_echo:
    type: echo
    kind: server
";

#[test]
fn exit_naming_a_missing_binding_suggests_the_closest() {
    check(
        &VALID.replace("exit: south_echo", "exit: south_ecoh"),
        &["zilla.yaml:9:11: bindings.north_tcp_server.exit: no binding named 'south_ecoh' (did you mean 'south_echo'?)"],
    );
}

#[test]
fn unknown_key_is_rejected_with_the_expected_keys() {
    check(
        &VALID.replace("    exit: south_echo", "    exit: south_echo\n    exits: x"),
        &["zilla.yaml:10:5: bindings.north_tcp_server.exits: unknown field `exits`, expected one of `type`, `kind`, `vault`, `options`, `routes`, `exit`, `telemetry`"],
    );
}

#[test]
fn unknown_option_key_is_rejected() {
    check(
        &VALID.replace("      port: 0", "      port: 0\n      backlog: 5"),
        &["zilla.yaml:9:7: bindings.north_tcp_server.options.backlog: unknown field `backlog`, expected `host` or `port`"],
    );
}

#[test]
fn unknown_type_lists_the_registered_types() {
    check(
        &VALID.replace("type: echo", "type: ecoh"),
        &["zilla.yaml:11:11: bindings.south_echo.type: unknown binding type 'ecoh' (registered: asyncapi, echo, filesystem, http, http-filesystem, sse, tcp, tls) (did you mean 'echo'?)"],
    );
}

#[test]
fn unknown_kind_lists_the_kinds_of_the_type() {
    check(
        &VALID.replace("kind: server\n    options", "kind: proxy\n    options"),
        &["zilla.yaml:5:11: bindings.north_tcp_server.kind: a tcp binding has no kind 'proxy' (kinds: server, client)"],
    );
}

#[test]
fn wrong_value_type_names_the_key() {
    check(
        &VALID.replace("host: 127.0.0.1", "host: [1, 2]"),
        &["zilla.yaml:7:13: bindings.north_tcp_server.options.host: invalid type: sequence, expected a string"],
    );
}

#[test]
fn bad_port_range_is_explained() {
    check(
        &VALID.replace("port: 0", "port: \"9-1\""),
        &["zilla.yaml:8:13: bindings.north_tcp_server.options.port: invalid port range '9-1': 9 is greater than 1"],
    );
}

#[test]
fn guard_that_does_not_exist_is_named() {
    check(
        &VALID.replace("    exit: south_echo", "    routes:\n      - guarded:\n          authn_jwt: [read]\n        exit: south_echo"),
        &["zilla.yaml:11:11: bindings.north_tcp_server.routes[0].guarded.authn_jwt: no guard named 'authn_jwt'"],
    );
}

#[test]
fn exit_that_speaks_another_protocol_is_rejected() {
    let config = VALID.replace("exit: south_echo", "exit: other") + "  other:\n    type: tcp\n    kind: server\n    options: { host: 127.0.0.1, port: 0 }\n    exit: south_echo\n";
    check(
        &config,
        &["zilla.yaml:9:11: bindings.north_tcp_server.exit: binding 'other' (tcp server) accepts no streams (nothing can route to it), but 'north_tcp_server' (tcp server) emits tcp streams"],
    );
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let (code, stderr) = start("name: test\nbindings:\n  a: [1, 2\n");
    assert_eq!(code, 1);
    assert!(stderr.starts_with("zilla.yaml:"), "{stderr}");
    assert!(stderr.contains("invalid YAML"), "{stderr}");
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let config = VALID
        .replace("type: echo", "type: ecoh")
        .replace("host: 127.0.0.1", "hots: 127.0.0.1");
    let (code, stderr) = start(&config);
    assert_eq!(code, 1);
    assert!(stderr.contains("bindings.south_echo.type"), "{stderr}");
    assert!(
        stderr.contains("bindings.north_tcp_server.options.hots"),
        "{stderr}"
    );
    assert!(stderr.contains("the config has 2 error(s)"), "{stderr}");
}

#[test]
fn missing_config_file_says_what_to_do() {
    let dir = tempfile_dir();
    let (code, _, stderr) = run(bin(), &["start", "-c", "nope.yaml"], &dir);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("nope.yaml: cannot read the config file"),
        "{stderr}"
    );
    assert!(stderr.contains("-c FILE"), "{stderr}");
    let (code, _, stderr) = run(bin(), &["start"], &dir);
    assert_eq!(code, 1);
    assert!(stderr.contains("no config found"), "{stderr}");
}

#[test]
fn port_in_use_fails_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, stderr) = start(&VALID.replace("port: 0", &format!("port: {port}")));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "test:north_tcp_server: cannot listen on 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}

/// An sse proxy whose server validates events with `content`, plus `catalogs`.
fn validating(content: &str, catalogs: &str) -> String {
    format!(
        "\
name: test
{catalogs}bindings:
  sse0:
    type: sse
    kind: server
    options:
      requests:
        - path: /events
          content: {content}
    exit: sse1
  sse1:
    type: sse
    kind: client
    exit: http1
  http1:
    type: http
    kind: client
    exit: tcp1
  tcp1:
    type: tcp
    kind: client
    options: {{ host: 127.0.0.1, port: 9 }}
"
    )
}

const INLINE: &str = "catalogs:
  catalog0:
    type: inline
    options:
      subjects:
        event:
          schema: '{\"type\": \"object\"}'
        broken:
          schema: '{\"type\": 12}'
";

#[test]
fn models_and_catalogs_are_checked_at_load() {
    check(
        &validating("json", ""),
        &["zilla.yaml:9:20: bindings.sse0.options.requests[0].content: model 'json' needs a `catalog` holding its schema"],
    );
    check(
        &validating("jsn", ""),
        &["zilla.yaml:9:20: bindings.sse0.options.requests[0].content: unknown model 'jsn' (registered: avro, boolean, double, float, int32, int64, json, protobuf, string) (did you mean 'json'?)"],
    );
    check(
        &validating("{ model: json, catalog: { catalog1: [ { subject: event } ] } }", INLINE),
        &["zilla.yaml:18:46: bindings.sse0.options.requests[0].content.catalog.catalog1: no catalog named 'catalog1' (did you mean 'catalog0'?)"],
    );
    check(
        &validating("{ model: json, catalog: { catalog0: [ { subject: evnt } ] } }", INLINE),
        &["zilla.yaml:18:69: bindings.sse0.options.requests[0].content.catalog.catalog0[0].subject: catalog 'catalog0' has no subject 'evnt' (did you mean 'event'?)"],
    );
    check(
        &validating("{ model: json, catalog: { catalog0: [ { subject: event, version: '2' } ] } }", INLINE),
        &["zilla.yaml:18:69: bindings.sse0.options.requests[0].content.catalog.catalog0[0].subject: catalog 'catalog0' has no subject 'event' at version '2' (its version is matched exactly, as Zilla does)"],
    );
    check(
        &validating("{ model: json, catalog: { catalog0: [ { subject: broken } ] } }", INLINE),
        &["zilla.yaml:18:20: bindings.sse0.options.requests[0].content: catalog catalog0 subject broken version latest: not a usable JSON Schema: 12 is not valid under any of the schemas listed in the 'anyOf' keyword"],
    );
    check(
        &validating("{ model: string, maxLength: 0 }", ""),
        &["zilla.yaml:9:48: bindings.sse0.options.requests[0].content.maxLength: must be at least 1"],
    );
}

#[test]
fn a_missing_schema_file_names_the_file() {
    let catalogs = "catalogs:
  files:
    type: filesystem
    options:
      subjects:
        event:
          path: schemas/missing.json
";
    let (code, stderr) = start(&validating(
        "{ model: json, catalog: { files: [ { subject: event } ] } }",
        catalogs,
    ));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr
            .contains("zilla.yaml:8:17: catalogs.files.options.subjects.event.path: cannot read '")
            && stderr.contains("schemas/missing.json': No such file or directory"),
        "{stderr}"
    );
}

#[test]
fn a_type_provided_per_kind_lists_all_its_kinds() {
    let config = VALID.replace(
        "    type: echo\n    kind: server",
        "    type: sse\n    kind: proxy",
    );
    check(&config, &["zilla.yaml:12:11: bindings.south_echo.kind: a sse binding has no kind 'proxy' (kinds: client, server)"]);
}

#[test]
fn vault_that_does_not_exist_is_named() {
    let config = "\
name: test
vaults:
  my_servers:
    type: filesystem
    options: {}
bindings:
  tls0:
    type: tls
    kind: server
    vault: my_server
    options: { keys: [ localhost ] }
    exit: echo0
  echo0:
    type: echo
    kind: server
";
    check(config, &["zilla.yaml:10:12: bindings.tls0.vault: no vault named 'my_server' (did you mean 'my_servers'?)"]);
}

/// Expressions in roles, header overrides and path patterns are checked at load: each bad one
/// is named at its key, with what to write instead.
#[test]
fn bad_expressions_and_patterns_are_located() {
    let config = |role: &str| {
        format!(
            r#"name: test
guards:
  jwt0:
    type: jwt
    options:
      issuer: https://auth.example.com
      audience: https://api.example.com
      keys: [ {{ kty: RSA, kid: example, alg: RS256, e: AQAB, n: 1JqsmRcPWt-YtWgYiCiP4TqevjQLhA3mUmAY7KH3_dM23AHeBiZvVlbeMH51eD5eOdxn2W_TrcOQ-yZNvzSsQ4kuQY54ZXC7g1IhPnBqsBmJVnl_NTtGYsse3OIyui-Z7NcDr_KVv7LhVPlmsEZlRmenfcoW92FbnS9-hf9Un0HoN_yKzHMOjuymIMjgRDSWidUIGQ2EPTr8Cv8WAKjXvEA8ajtjyuxdQ3tjSEN4d8-1-RnZCbGH60HMIBXSb9q4aaGDLEpWF_0HDEuINt5dyrDA92NGFtE2WLXq4czvZVwnFAS8u_GUEnC-X1izTSbmgzHLDBVBOAvBa1nptsoPfQ }} ]
bindings:
  tcp0:
    type: tcp
    kind: server
    options: {{ host: 127.0.0.1, port: 0 }}
    exit: http0
  http0:
    type: http
    kind: server
    routes:
      - when: [ {{ headers: {{ ":path": "/t/{{tenant}}" }} }} ]
        guarded: {{ jwt0: [ "{role}" ] }}
        with: {{ headers: {{ overrides: {{ x-user: "${{guarded['nope'].identity}}", x-a: "a-${{foo}}" }} }} }}
        exit: sse0
  sse0:
    type: sse
    kind: server
    routes:
      - when: [ {{ path: "/t/{{x" }} ]
        exit: echo0
  echo0:
    type: echo
    kind: server
"#
        )
    };
    check(
        &config("tenant:${params.tenant"),
        &[
            "zilla.yaml:20:28: bindings.http0.routes[0].guarded.jwt0[0]: `${` without `}` in 'tenant:${params.tenant'",
            "zilla.yaml:27:25: bindings.sse0.routes[0].when[0].path: unclosed '{' in pattern '/t/{x': write {name} to capture, or remove the brace",
        ],
    );
    check(
        &config("tenant:${params.tenant}"),
        &[
            "zilla.yaml:21:49: bindings.http0.routes[0].with.headers.overrides.x-user: '${guarded['nope'].identity}': no guard named 'nope'",
            "zilla.yaml:21:85: bindings.http0.routes[0].with.headers.overrides.x-a: '${foo}' in 'a-${foo}': not an expression here: use params.<name>, method, path, or guarded['<guard>'].identity / .attributes.<name>",
        ],
    );
}

/// An unknown metric name, and a binding selection that is not a regular expression, are load
/// errors at their positions; the name gets a suggestion.
#[test]
fn unknown_metrics_and_bad_selections_are_located() {
    let config = VALID
        .replace(
            "name: test\n",
            "name: test\ntelemetry:\n  metrics:\n    - stream.opens.received\n    - stream.opens.recieved\n",
        )
        .replace(
            "    exit: south_echo\n",
            "    telemetry:\n      metrics: [ \"stream.(*\" ]\n    exit: south_echo\n",
        );
    let (code, stderr) = start(&config);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with(
            "zilla.yaml:5:7: telemetry.metrics[1]: unknown metric 'stream.opens.recieved' (known: "
        ) && l.ends_with("(did you mean 'stream.opens.received'?)")),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.starts_with("zilla.yaml:") && l.contains(": bindings.north_tcp_server.telemetry.metrics[0]: 'stream.(*' is not a regular expression (repetition operator missing expression)")),
        "{stderr}"
    );
}
