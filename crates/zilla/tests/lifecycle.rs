//! Start-up, env expressions, hot reload and graceful shutdown of the real binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use zilla_test_support::{free_port, run, Options, Zilla};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zilla"))
}

const SECOND: Duration = Duration::from_secs(1);

fn echo_config(port_expr: &str) -> String {
    format!(
        "name: test\nbindings:\n  app0:\n    type: tcp\n    kind: server\n    options:\n      host: 127.0.0.1\n      port: {port_expr}\n    exit: echo0\n  echo0:\n    type: echo\n    kind: server\n"
    )
}

fn fast_reload() -> Options {
    Options {
        args: vec![
            "-P".into(),
            "zilla.engine.config.watch.interval=100ms".into(),
        ],
        ..Options::default()
    }
}

fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).unwrap();
    let mut buf = vec![0; msg.len()];
    stream.read_exact(&mut buf).unwrap();
    buf
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(5 * SECOND)).unwrap();
    s
}

#[test]
fn version_prints_the_version() {
    let (code, stdout, _) = run(bin(), &["version"], Path::new("."));
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("zilla version {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn env_expressions_set_values_and_unset_ones_warn() {
    let port = free_port();
    let config = echo_config("${{ env.ZILLA_TEST_PORT }}").replace(
        "host: 127.0.0.1",
        "host: \"${{env.ZILLA_TEST_HOST}}${{env.ZILLA_TEST_UNSET}}\"",
    );
    let options = Options {
        args: vec![],
        env: vec![
            ("ZILLA_TEST_PORT".into(), port.to_string()),
            ("ZILLA_TEST_HOST".into(), "127.0.0.1".into()),
        ],
        ..Options::default()
    };
    let zilla = Zilla::start(bin(), &config, options);
    zilla.wait_for(
        &format!("test:app0 listening on tcp://127.0.0.1:{port}"),
        10 * SECOND,
    );
    zilla.wait_for(
        "warning: Environment variable ZILLA_TEST_UNSET is not set.",
        SECOND,
    );
    assert_eq!(round_trip(&mut connect(port), b"ping"), b"ping");
}

#[test]
fn valid_reload_applies_without_dropping_open_streams() {
    let (port1, port2) = (free_port(), free_port());
    let zilla = Zilla::start(bin(), &echo_config(&port1.to_string()), fast_reload());
    zilla.wait_for(
        &format!("listening on tcp://127.0.0.1:{port1}"),
        10 * SECOND,
    );
    let mut open = connect(port1);
    assert_eq!(round_trip(&mut open, b"before"), b"before");

    // Keep port1 and add port2: the listener on port1 is shared, not re-bound.
    zilla.rewrite_config(&echo_config(&format!("[{port1}, {port2}]")));
    zilla.wait_for(
        &format!("listening on tcp://127.0.0.1:{port2}"),
        10 * SECOND,
    );
    assert_eq!(
        round_trip(&mut open, b"after"),
        b"after",
        "the open stream keeps running"
    );
    assert_eq!(round_trip(&mut connect(port2), b"new"), b"new");
    assert_eq!(round_trip(&mut connect(port1), b"same"), b"same");

    // Drop port1: new connections there are refused, the open one still echoes.
    zilla.rewrite_config(&echo_config(&port2.to_string()));
    std::thread::sleep(SECOND);
    assert!(
        TcpStream::connect(("127.0.0.1", port1)).is_err(),
        "port1 no longer listens"
    );
    assert_eq!(round_trip(&mut open, b"still"), b"still");
}

#[test]
fn invalid_reload_is_reported_and_the_running_config_keeps_serving() {
    let port = free_port();
    let zilla = Zilla::start(bin(), &echo_config(&port.to_string()), fast_reload());
    zilla.wait_for("listening on", 10 * SECOND);
    zilla.rewrite_config(&echo_config(&port.to_string()).replace("exit: echo0", "exit: echo1"));
    let line = zilla.wait_for("bindings.app0.exit", 10 * SECOND);
    assert!(
        line.contains(
            "zilla.yaml:9:11: bindings.app0.exit: no binding named 'echo1' (did you mean 'echo0'?)"
        ),
        "{line}"
    );
    zilla.wait_for(
        "config not reloaded: the running config keeps serving",
        SECOND,
    );
    assert_eq!(round_trip(&mut connect(port), b"ok"), b"ok");
}

#[test]
fn sigterm_waits_for_open_streams_then_exits_zero() {
    let port = free_port();
    let mut zilla = Zilla::start(bin(), &echo_config(&port.to_string()), Options::default());
    zilla.wait_for("listening on", 10 * SECOND);
    let mut open = connect(port);
    assert_eq!(round_trip(&mut open, b"x"), b"x");
    zilla.terminate();
    zilla.wait_for("stopping", 5 * SECOND);
    // New connections are no longer accepted...
    std::thread::sleep(Duration::from_millis(200));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    // ...but the open stream still works until it ends.
    assert_eq!(round_trip(&mut open, b"y"), b"y");
    assert!(
        zilla.wait_exit(Duration::from_millis(300)).is_none(),
        "zilla must wait for the open stream"
    );
    drop(open);
    let status = zilla
        .wait_exit(5 * SECOND)
        .expect("zilla exits once the stream ended");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_ends_after_the_grace_period_when_streams_stay_open() {
    let port = free_port();
    let options = Options {
        args: vec![
            "-P".into(),
            "zilla.engine.drain.timeout=300ms".into(),
            "-P".into(),
            "zilla.engine.shutdown.grace=300ms".into(),
        ],
        ..Options::default()
    };
    let mut zilla = Zilla::start(bin(), &echo_config(&port.to_string()), options);
    zilla.wait_for("listening on", 10 * SECOND);
    let mut open = connect(port);
    assert_eq!(round_trip(&mut open, b"x"), b"x");
    zilla.terminate();
    let status = zilla
        .wait_exit(5 * SECOND)
        .expect("zilla exits after the grace period");
    assert_eq!(status.code(), Some(0));
    let mut buf = [0u8; 1];
    assert_eq!(
        open.read(&mut buf).unwrap_or(0),
        0,
        "the stream is closed at exit"
    );
}

#[test]
fn logs_flag_and_stdout_exporter_print_engine_events() {
    let port = free_port();
    let options = Options {
        args: vec!["-l".into()],
        ..Options::default()
    };
    let zilla = Zilla::start(bin(), &echo_config(&port.to_string()), options);
    let line = zilla.wait_for("ENGINE_STARTED", 10 * SECOND);
    assert!(line.starts_with("test ["), "{line}");
    assert!(
        line.ends_with("[0x0000000000000000d] ENGINE_STARTED Engine Started."),
        "{line}"
    );

    let port = free_port();
    let config = echo_config(&port.to_string())
        + "telemetry:\n  exporters:\n    console:\n      type: stdout\n";
    let zilla = Zilla::start(bin(), &config, Options::default());
    zilla.wait_for("ENGINE_STARTED Engine Started.", 10 * SECOND);
}
