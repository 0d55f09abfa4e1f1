//! The `json` model: each payload is parsed as JSON and validated against a JSON Schema from a
//! catalog, with the `jsonschema` crate (drafts 4, 6, 7, 2019-09 and 2020-12, picked by the
//! schema's `$schema`; 2020-12 when absent; `$ref`s inside the schema resolved, nothing fetched).
//!
//! ```yaml
//! content:
//!   model: json
//!   catalog:
//!     host_filesystem:
//!       - subject: event
//! ```
//!
//! A schema is compiled once per schema id and reused for every payload; the compiled validator
//! is read without a lock. A schema the catalog already holds at load is compiled then, so an
//! invalid schema is a config error rather than a stream of rejected events.

mod tape;

use std::sync::Arc;

use serde_json::Value;
use zilla_engine::{
    CompiledSchema, ConfigError, Invalid, Model, ModelContext, ModelDescriptor, ModelFactory,
    Nothing, Why,
};

/// The event a rejected payload is reported with (Zilla's `model.json.validation.failed`).
pub const EVENT: &str = "MODEL_JSON_VALIDATION_FAILED";

/// The `json` model type.
#[derive(Debug)]
pub struct JsonFactory;

zilla_engine::inventory::submit! { ModelDescriptor::new::<JsonFactory>() }

impl ModelFactory for JsonFactory {
    const TYPE: &'static str = "json";
    const CATALOGED: bool = true;
    type Options = Nothing;

    fn build(cx: &ModelContext, _: Nothing) -> Result<Arc<dyn Model>, ConfigError> {
        Ok(Arc::new(JsonModel {
            schema: CompiledSchema::new(cx, EVENT, "JSON Schema", compile)?,
        }))
    }
}

/// Compiles one schema text, for the allocation-free tape every payload is parsed onto.
fn compile(text: &str) -> Result<jsonschema::Validator<tape::TapeJson>, String> {
    let schema: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    jsonschema::options_for::<tape::TapeJson>()
        .build(&schema)
        .map_err(|e| e.to_string())
}

#[derive(Debug)]
struct JsonModel {
    schema: CompiledSchema<jsonschema::Validator<tape::TapeJson>>,
}

impl Model for JsonModel {
    fn validate(&self, payload: &[u8]) -> Result<(), Invalid> {
        let validator = self.schema.current()?;
        // Parsed onto the thread's tape; `is_valid` stops at the first failure and builds no
        // error, so a valid payload allocates nothing. Only a refused one is validated again
        // to say why.
        tape::Tape::with(payload, |root| {
            if validator.is_valid(root) {
                return Ok(());
            }
            validator.validate(root).map_err(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_string() } else { at };
                self.schema.invalid(Why::Violation, format!("[{at}] {e}"))
            })
        })
        .map_err(|e| {
            self.schema
                .invalid(Why::Malformed, format!("[{},{}] {e}", e.line(), e.column()))
        })?
    }
}

/// For the `json_tape` fuzz target: panics unless the fast JSON parser agrees with serde_json
/// on `payload` (whatever it takes, serde_json takes onto the same tape).
#[doc(hidden)]
pub fn fuzz_tape(payload: &[u8]) {
    tape::assert_fast_agrees(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use zilla_engine::{
        Catalog, CatalogHandle, CatalogId, LocalSchemas, SchemaRef, SchemaSelector,
    };

    #[derive(Debug)]
    struct Counting(LocalSchemas, AtomicUsize);

    impl Catalog for Counting {
        fn resolve(&self, s: &str, v: &str) -> Option<u32> {
            self.0.resolve(s, v)
        }
        fn schema(&self, id: u32) -> Option<Arc<str>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.schema(id)
        }
    }

    const EVENT_SCHEMA: &str = r##"{
      "$schema": "http://json-schema.org/draft-07/schema#",
      "type": "object",
      "properties": {
        "id": { "type": "string" },
        "status": { "$ref": "#/definitions/status" }
      },
      "required": ["id"],
      "definitions": { "status": { "enum": ["OK", "FAILED"] } }
    }"##;

    fn model(text: &str) -> (Result<Arc<dyn Model>, ConfigError>, Arc<Counting>) {
        let mut schemas = LocalSchemas::new();
        schemas.insert("event", Some("latest"), text);
        let catalog = Arc::new(Counting(schemas, AtomicUsize::new(0)));
        let cx = ModelContext {
            path: "bindings.sse0.options.requests[0].content".into(),
            schema: Some(SchemaRef {
                catalog: CatalogHandle {
                    id: CatalogId(0),
                    name: "test:cat".into(),
                    catalog: catalog.clone(),
                },
                selector: SchemaSelector::Subject {
                    subject: "event".into(),
                    version: "latest".into(),
                },
                record: None,
            }),
            properties: Arc::default(),
            config_dir: ".".into(),
        };
        (JsonFactory::build(&cx, Nothing {}), catalog)
    }

    #[test]
    fn valid_payloads_pass_and_the_schema_compiles_once() {
        let (m, catalog) = model(EVENT_SCHEMA);
        let m = m.unwrap();
        for _ in 0..100 {
            m.validate(br#"{"id":"1","status":"OK"}"#).unwrap();
        }
        assert_eq!(
            catalog.1.load(Ordering::Relaxed),
            1,
            "compiled once, at load"
        );
    }

    #[test]
    fn a_violation_names_the_pointer_like_zilla() {
        let (m, _) = model(EVENT_SCHEMA);
        let e = m
            .unwrap()
            .validate(br#"{"id":123,"status":"OK"}"#)
            .unwrap_err();
        assert_eq!(e.event, "MODEL_JSON_VALIDATION_FAILED");
        assert_eq!(e.why, Why::Violation);
        assert!(
            e.message
                .starts_with("A message payload failed validation. [/id] "),
            "{}",
            e.message
        );
        assert!(e.message.contains("string"), "{}", e.message);
    }

    #[test]
    fn refs_required_and_malformed_input_are_checked() {
        let (m, _) = model(EVENT_SCHEMA);
        let m = m.unwrap();
        let e = m.validate(br#"{"id":"1","status":"MAYBE"}"#).unwrap_err();
        assert!(e.message.contains("[/status]"), "{}", e.message);
        let e = m.validate(br#"{"status":"OK"}"#).unwrap_err();
        assert_eq!(e.why, Why::Violation);
        assert!(
            e.message.contains("[/]") && e.message.contains("id"),
            "{}",
            e.message
        );
        let e = m.validate(br#"{"id":"1""#).unwrap_err();
        assert_eq!(e.why, Why::Malformed);
        assert!(e.message.contains("[1,9]"), "{}", e.message);
        assert_eq!(m.validate(b"").unwrap_err().why, Why::Malformed);
    }

    #[test]
    fn drafts_4_and_2020_12_are_honoured() {
        let (m, _) = model(
            r#"{"$schema":"http://json-schema.org/draft-04/schema#","type":"integer","maximum":5,"exclusiveMaximum":true}"#,
        );
        let m = m.unwrap();
        m.validate(b"4").unwrap();
        assert!(
            m.validate(b"5").is_err(),
            "draft 4 boolean exclusiveMaximum"
        );
        let (m, _) = model(r#"{"prefixItems":[{"type":"string"}],"items":false}"#);
        let m = m.unwrap();
        m.validate(br#"["a"]"#).unwrap();
        assert!(m.validate(br#"["a",1]"#).is_err(), "2020-12 prefixItems");
    }

    #[test]
    fn a_schema_that_does_not_compile_is_a_config_error() {
        let (m, _) = model(r#"{"type": 12}"#);
        let e = m.unwrap_err();
        assert_eq!(e.path, "bindings.sse0.options.requests[0].content");
        assert!(
            e.message.contains("catalog cat subject event"),
            "{}",
            e.message
        );
        let (m, _) = model("not json");
        assert!(m.unwrap_err().message.contains("not JSON"));
    }
}
