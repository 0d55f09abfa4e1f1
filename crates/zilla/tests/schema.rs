//! `zilla schema` describes every registered plugin; every example config validates against it.

use std::path::{Path, PathBuf};

use serde_json::Value;
use zilla_test_support::run;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zilla"))
}

fn schema() -> Value {
    let (code, stdout, stderr) = run(bin(), &["schema"], Path::new("."));
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).expect("schema is JSON")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.file_name().is_some_and(|n| n == "zilla.yaml") {
            out.push(p);
        }
    }
}

#[test]
fn every_config_in_the_repo_validates_against_the_schema() {
    let validator = jsonschema::validator_for(&schema()).expect("schema compiles");
    let mut files = Vec::new();
    yaml_files(&repo_root().join("examples"), &mut files);
    yaml_files(&repo_root().join("specs"), &mut files);
    assert!(
        !files.is_empty(),
        "no zilla.yaml found under examples/ or specs/"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).expect("YAML");
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{} does not validate:\n{}",
                file.display(),
                errors.join("\n")
            );
        }
    }
}

#[test]
fn schema_rejects_unknown_types_and_keys() {
    let validator = jsonschema::validator_for(&schema()).expect("schema compiles");
    let bad_type: Value =
        serde_json::json!({"name": "t", "bindings": {"a": {"type": "nope", "kind": "server"}}});
    assert!(!validator.is_valid(&bad_type));
    let bad_key: Value = serde_json::json!({"name": "t", "bindings": {"a": {"type": "echo", "kind": "server", "exits": "b"}}});
    assert!(!validator.is_valid(&bad_key));
    let bad_port: Value = serde_json::json!({"name": "t", "bindings": {"a": {"type": "tcp", "kind": "server", "options": {"host": "h", "port": true}, "exit": "b"}}});
    assert!(!validator.is_valid(&bad_port));
    let expression: Value = serde_json::json!({"name": "t", "bindings": {"a": {"type": "tcp", "kind": "server", "options": {"host": "h", "port": "${{env.PORT}}"}, "exit": "b"}}});
    assert!(
        validator.is_valid(&expression),
        "env expressions are allowed where numbers go"
    );
}

fn undocumented(v: &Value, path: &str, out: &mut Vec<String>) {
    if let Value::Object(map) = v {
        if let Some(Value::Object(props)) = map.get("properties") {
            for (name, prop) in props {
                let has = prop.get("description").is_some()
                    || prop.get("$ref").is_some()
                    || prop.get("const").is_some();
                if !has
                    && !["type", "kind", "options", "routes", "telemetry"].contains(&name.as_str())
                {
                    out.push(format!("{path}.{name}"));
                }
            }
        }
        for (k, child) in map {
            undocumented(child, &format!("{path}.{k}"), out);
        }
    } else if let Value::Array(items) = v {
        for (i, child) in items.iter().enumerate() {
            undocumented(child, &format!("{path}[{i}]"), out);
        }
    }
}

#[test]
fn every_plugin_option_has_a_description() {
    let schema = schema();
    let mut missing = Vec::new();
    undocumented(&schema["$defs"], "$defs", &mut missing);
    assert!(
        missing.is_empty(),
        "options without a doc comment:\n{}",
        missing.join("\n")
    );
}
