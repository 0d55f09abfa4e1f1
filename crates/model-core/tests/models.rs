//! Each core model built the way a binding builds it (from its zilla.yaml keys, through the
//! registry), with valid and invalid payloads.

use std::sync::Arc;

use model_core as _;
use zilla_engine::{model_types, ConfigError, Model, ModelContext, Why};

fn build(name: &str, keys: &str) -> Result<Arc<dyn Model>, ConfigError> {
    let d = model_types()
        .into_iter()
        .find(|d| d.type_name == name)
        .unwrap_or_else(|| panic!("model {name} registered"));
    let cx = ModelContext {
        path: "bindings.http0.options.requests[0].content".into(),
        schema: None,
        properties: Arc::default(),
        config_dir: ".".into(),
    };
    let keys: serde_yaml::Value =
        serde_yaml::from_str(if keys.is_empty() { "{}" } else { keys }).expect("yaml");
    d.build(&cx, keys)
}

fn check(m: &Arc<dyn Model>, ok: &[&[u8]], bad: &[(&[u8], Why)]) {
    for p in ok {
        if let Err(e) = m.validate(p) {
            panic!("{:?} should pass: {e}", String::from_utf8_lossy(p));
        }
    }
    for (p, why) in bad {
        match m.validate(p) {
            Ok(()) => panic!("{:?} should fail", String::from_utf8_lossy(p)),
            Err(e) => {
                assert_eq!(e.why, *why, "{:?}: {e}", String::from_utf8_lossy(p));
                assert_eq!(e.event, "MODEL_CORE_VALIDATION_FAILED");
                assert!(
                    e.message.starts_with(
                        "A message payload failed validation. A field was not the expected type ("
                    ),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn int32_text_range_and_multiple() {
    let m = build("int32", "range: '[0,100)'\nmultiple: 5").unwrap();
    check(
        &m,
        &[b"0", b"95", b"+5"],
        &[
            (b"100", Why::Violation),
            (b"-5", Why::Violation),
            (b"7", Why::Violation),
            (b"x", Why::Malformed),
            (b"1.0", Why::Malformed),
            (b"99999999999", Why::Malformed),
        ],
    );
}

#[test]
fn int32_and_int64_binary() {
    let m = build("int32", "format: binary").unwrap();
    check(
        &m,
        &[&(-7i32).to_be_bytes()],
        &[(b"123", Why::Malformed), (&[0; 8], Why::Malformed)],
    );
    let m = build("int64", "format: binary\nrange: '[0,)'").unwrap();
    check(
        &m,
        &[&7i64.to_be_bytes()],
        &[
            (&(-1i64).to_be_bytes(), Why::Violation),
            (&[0; 4], Why::Malformed),
        ],
    );
    let m = build("int64", "").unwrap();
    check(
        &m,
        &[b"9223372036854775807"],
        &[(b"9223372036854775808", Why::Malformed)],
    );
}

#[test]
fn float_and_double() {
    let m = build("float", "range: '(0,1.5]'").unwrap();
    check(
        &m,
        &[b"1.5", b"0.25f", b"+1"],
        &[
            (b"0", Why::Violation),
            (b"1e0", Why::Malformed),
            (b"1.2.3", Why::Malformed),
        ],
    );
    let m = build("double", "format: binary\nmultiple: 0.5").unwrap();
    check(
        &m,
        &[&2.5f64.to_be_bytes()],
        &[
            (&2.25f64.to_be_bytes(), Why::Violation),
            (&f64::NAN.to_be_bytes(), Why::Malformed),
        ],
    );
}

#[test]
fn boolean_binary_and_text() {
    check(
        &build("boolean", "").unwrap(),
        &[&[0], &[1]],
        &[(&[2], Why::Malformed), (b"true", Why::Malformed)],
    );
    check(
        &build("boolean", "format: text").unwrap(),
        &[b"true", b"false"],
        &[(b"TRUE", Why::Malformed)],
    );
}

#[test]
fn string_length_in_code_points_and_whole_pattern() {
    let m = build("string", "minLength: 2\nmaxLength: 3\npattern: '[a-zé]+'").unwrap();
    check(
        &m,
        &["éé".as_bytes(), b"abc"],
        &[
            (b"a", Why::Violation),
            (b"abcd", Why::Violation),
            (b"ab1", Why::Violation),
            (b"\xff\xfe", Why::Malformed),
        ],
    );
    let m = build("string", "encoding: utf_16").unwrap();
    check(
        &m,
        &[&[0, b'h', 0, b'i'], &[0xff, 0xfe, b'h', 0]],
        &[(&[0, b'h', 0], Why::Malformed)],
    );
}

#[test]
fn bad_keys_are_located_config_errors() {
    let e = build("int32", "range: '[5,1]'").unwrap_err();
    assert_eq!(e.path, "bindings.http0.options.requests[0].content.range");
    let e = build("int32", "multiple: 0").unwrap_err();
    assert_eq!(
        e.path,
        "bindings.http0.options.requests[0].content.multiple"
    );
    let e = build("string", "pattern: '('").unwrap_err();
    assert!(e.message.contains("not a regular expression"), "{e}");
    let e = build("string", "minLength: 0").unwrap_err();
    assert_eq!(
        e.path,
        "bindings.http0.options.requests[0].content.minLength"
    );
    let e = build("int32", "formt: text").unwrap_err();
    assert!(e.message.contains("formt"), "{e}");
}
