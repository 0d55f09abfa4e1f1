//! The `avro` model: each payload is checked against an Avro schema from a catalog, with the
//! `apache-avro` crate.
//!
//! ```yaml
//! content:
//!   model: avro
//!   view: json            # optional: forward Avro binary as its JSON view
//!   catalog:
//!     sr:
//!       - subject: items-snapshots-value
//!         version: latest
//! ```
//!
//! A payload is accepted in either of two forms:
//! - **Avro binary**, as Zilla reads it: when the catalog has a wire prefix (a registry's magic
//!   byte and schema id), the prefix names the writer schema; otherwise the subject's schema is
//!   the writer schema. The whole payload must decode, with nothing left over. With
//!   `view: json`, the record is forwarded as JSON (records and maps as objects, unions as their
//!   value, enums as their symbol), which is what a browser on an SSE stream can read.
//! - **The JSON view** of a record (an SSE stream carries text, so binary rarely fits it): a
//!   JSON document that resolves against the schema (fields present or defaulted, types and
//!   unions matching). It is forwarded unchanged. Zilla cannot validate Avro on an SSE stream;
//!   this is how we do.
//!
//! A schema is parsed once per schema id and reused, read without a lock. A schema that is not
//! Avro, or one whose arrays hold items that take no bytes (an array of `null` lets a few bytes
//! of hostile input claim millions of items), is refused: at load when the catalog already holds
//! it, else each payload is rejected as having no usable schema.

use std::sync::{Arc, Once};

use apache_avro::schema::Schema;
use apache_avro::types::Value as AvroValue;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as JsonValue;
use zilla_engine::{
    CompiledSchema, ConfigError, Invalid, Model, ModelContext, ModelDescriptor, ModelFactory, Why,
};

/// The event a rejected payload is reported with (Zilla's `model.avro.validation.failed`).
pub const EVENT: &str = "MODEL_AVRO_VALIDATION_FAILED";

/// The most one string, bytes or array block of a payload may claim (apache-avro's own default
/// is 512 MiB, which a 10-byte hostile payload could ask for).
const MAX_ALLOCATION: usize = 16 << 20;

/// The `avro` model type.
#[derive(Debug)]
pub struct AvroFactory;

zilla_engine::inventory::submit! { ModelDescriptor::new::<AvroFactory>() }

/// The avro model's own keys.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AvroOptions {
    /// `json`: forward Avro binary payloads as JSON.
    #[serde(default)]
    pub view: Option<View>,
}

/// What the reader of a converted payload sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// JSON text.
    Json,
}

impl ModelFactory for AvroFactory {
    const TYPE: &'static str = "avro";
    const CATALOGED: bool = true;
    type Options = AvroOptions;

    fn build(cx: &ModelContext, options: AvroOptions) -> Result<Arc<dyn Model>, ConfigError> {
        static LIMIT: Once = Once::new();
        LIMIT.call_once(|| {
            apache_avro::max_allocation_bytes(MAX_ALLOCATION);
        });
        Ok(Arc::new(AvroModel {
            schema: CompiledSchema::new(cx, EVENT, "Avro schema", parse)?,
            view: options.view,
        }))
    }
}

#[derive(Debug)]
struct AvroModel {
    schema: CompiledSchema<Schema>,
    view: Option<View>,
}

/// Parses `text` as an Avro schema this model can check payloads against.
fn parse(text: &str) -> Result<Schema, String> {
    let schema = Schema::parse_str(text).map_err(|e| e.to_string())?;
    let mut named = std::collections::HashMap::new();
    collect_named(&schema, &mut named);
    if let Some(path) = unbounded_array(&schema, &named, &mut Vec::new()) {
        return Err(format!(
            "the array at {path} holds items that take no bytes, so a payload could claim any \
             number of them"
        ));
    }
    Ok(schema)
}

fn collect_named<'a>(
    schema: &'a Schema,
    named: &mut std::collections::HashMap<String, &'a Schema>,
) {
    match schema {
        Schema::Record(r) => {
            named.insert(r.name.fullname(None), schema);
            for f in &r.fields {
                collect_named(&f.schema, named);
            }
        }
        Schema::Array(a) => collect_named(&a.items, named),
        Schema::Map(m) => collect_named(&m.types, named),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_named(v, named)),
        Schema::Enum(e) => {
            named.insert(e.name.fullname(None), schema);
        }
        Schema::Fixed(f) => {
            named.insert(f.name.fullname(None), schema);
        }
        _ => {}
    }
}

/// The path of the first array whose items may encode in zero bytes.
fn unbounded_array(
    schema: &Schema,
    named: &std::collections::HashMap<String, &Schema>,
    seen: &mut Vec<String>,
) -> Option<String> {
    match schema {
        Schema::Array(a) => {
            if zero_width(&a.items, named, &mut Vec::new()) {
                return Some("an array".to_string());
            }
            unbounded_array(&a.items, named, seen)
        }
        Schema::Map(m) => unbounded_array(&m.types, named, seen),
        Schema::Union(u) => u
            .variants()
            .iter()
            .find_map(|v| unbounded_array(v, named, seen)),
        Schema::Record(r) => {
            let name = r.name.fullname(None);
            if seen.contains(&name) {
                return None;
            }
            seen.push(name.clone());
            r.fields.iter().find_map(|f| {
                unbounded_array(&f.schema, named, seen).map(|p| format!("{name}.{}: {p}", f.name))
            })
        }
        Schema::Ref { name } => {
            let full = name.fullname(None);
            let target = named.get(&full)?;
            unbounded_array(target, named, seen)
        }
        _ => None,
    }
}

/// True if a value of `schema` can encode in zero bytes.
fn zero_width(
    schema: &Schema,
    named: &std::collections::HashMap<String, &Schema>,
    seen: &mut Vec<String>,
) -> bool {
    match schema {
        Schema::Null => true,
        Schema::Fixed(f) => f.size == 0,
        Schema::Record(r) => {
            let name = r.name.fullname(None);
            if seen.contains(&name) {
                // A record that contains itself is never zero-width on every path that ends.
                return false;
            }
            seen.push(name);
            r.fields.iter().all(|f| zero_width(&f.schema, named, seen))
        }
        Schema::Ref { name } => named
            .get(&name.fullname(None))
            .is_some_and(|t| zero_width(t, named, seen)),
        _ => false,
    }
}

impl AvroModel {
    /// Decodes `body` as one whole Avro datum of `schema`.
    fn decode(&self, schema: &Schema, mut body: &[u8]) -> Result<AvroValue, Invalid> {
        let value = apache_avro::from_avro_datum(schema, &mut body, None).map_err(|e| {
            self.schema
                .invalid(Why::Malformed, format!("Not Avro binary: {e}"))
        })?;
        if !body.is_empty() {
            return Err(self.schema.invalid(
                Why::Malformed,
                format!("{} bytes left after the Avro record.", body.len()),
            ));
        }
        // apache-avro reads a string or bytes cut short by the end of the payload as `null`
        // rather than failing, so the decoded value is checked against the schema again.
        if !value.validate(schema) {
            return Err(self
                .schema
                .invalid(Why::Malformed, "Not Avro binary: the record is cut short."));
        }
        Ok(value)
    }

    /// Checks `payload` as the JSON view of a record of `schema`: `None` if it is not JSON.
    fn check_json(&self, schema: &Schema, payload: &[u8]) -> Option<Result<(), Invalid>> {
        let first = payload.iter().find(|b| !b.is_ascii_whitespace())?;
        if !matches!(
            first,
            b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
        ) {
            return None;
        }
        let json: JsonValue = serde_json::from_slice(payload).ok()?;
        Some(
            AvroValue::from(json)
                .resolve(schema)
                .map(drop)
                .map_err(|e| self.schema.invalid(Why::Violation, format!("[/] {e}"))),
        )
    }

    fn check(&self, payload: &[u8]) -> Result<Option<AvroValue>, Invalid> {
        let catalog = &self.schema.schema_ref().catalog.catalog;
        if let Some((id, body)) = catalog.decode(payload) {
            let schema = self.schema.of_id(id)?;
            return self.decode(&schema, body).map(Some);
        }
        let schema = self.schema.current()?;
        match self.check_json(&schema, payload) {
            Some(Ok(())) => Ok(None),
            Some(Err(json_error)) => {
                // Binary that happens to parse as JSON ("5" is a record of one int) still counts.
                self.decode(&schema, payload)
                    .map(Some)
                    .map_err(|_| json_error)
            }
            None => self.decode(&schema, payload).map(Some),
        }
    }
}

impl Model for AvroModel {
    fn validate(&self, payload: &[u8]) -> Result<(), Invalid> {
        self.check(payload).map(drop)
    }

    fn convert(&self, payload: Bytes) -> Result<Bytes, Invalid> {
        match (self.check(&payload)?, self.view) {
            (Some(value), Some(View::Json)) => {
                let json = JsonValue::try_from(value).map_err(|e| {
                    self.schema
                        .invalid(Why::Violation, format!("No JSON view of the record: {e}"))
                })?;
                Ok(Bytes::from(json.to_string()))
            }
            _ => Ok(payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zilla_engine::{
        Catalog, CatalogHandle, CatalogId, LocalSchemas, SchemaRef, SchemaSelector,
    };

    const SCHEMA: &str = r#"{
      "type": "record", "name": "Event", "namespace": "test",
      "fields": [
        { "name": "id", "type": "int" },
        { "name": "name", "type": "string" },
        { "name": "status", "type": { "type": "enum", "name": "Status", "symbols": ["OK", "FAILED"] } },
        { "name": "note", "type": ["null", "string"], "default": null }
      ]
    }"#;

    /// A catalog with a wire prefix (`0xAA` + a 4-byte id), to test the prefixed path.
    #[derive(Debug)]
    struct Prefixed(LocalSchemas);

    impl Catalog for Prefixed {
        fn resolve(&self, s: &str, v: &str) -> Option<u32> {
            self.0.resolve(s, v)
        }
        fn schema(&self, id: u32) -> Option<Arc<str>> {
            self.0.schema(id)
        }
        fn decode<'a>(&self, payload: &'a [u8]) -> Option<(u32, &'a [u8])> {
            match payload {
                [0xAA, a, b, c, d, rest @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
                _ => None,
            }
        }
    }

    fn model_on(
        catalog: Arc<dyn Catalog>,
        view: Option<View>,
    ) -> Result<Arc<dyn Model>, ConfigError> {
        let cx = ModelContext {
            path: "bindings.sse0.options.requests[0].content".into(),
            schema: Some(SchemaRef {
                catalog: CatalogHandle {
                    id: CatalogId(0),
                    name: "test:cat".into(),
                    catalog,
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
        AvroFactory::build(&cx, AvroOptions { view })
    }

    fn local(text: &str) -> LocalSchemas {
        let mut schemas = LocalSchemas::new();
        schemas.insert("event", Some("latest"), text);
        schemas
    }

    fn model(view: Option<View>) -> Arc<dyn Model> {
        model_on(Arc::new(local(SCHEMA)), view).unwrap()
    }

    fn binary(id: i32, name: &str, status: u8) -> Vec<u8> {
        let zigzag = |n: i64| ((n << 1) ^ (n >> 63)) as u8;
        let mut out = vec![zigzag(id.into()), zigzag(name.len() as i64)];
        out.extend_from_slice(name.as_bytes());
        out.push(zigzag(status.into()));
        out.push(0); // note: union branch 0 (null)
        out
    }

    #[test]
    fn the_json_view_of_a_record_passes_unchanged() {
        let m = model(Some(View::Json));
        let payload = Bytes::from_static(br#"{"id":1,"name":"a","status":"OK"}"#);
        assert_eq!(m.convert(payload.clone()).unwrap(), payload);
        m.validate(br#"{"id":2,"name":"b","status":"FAILED","note":"x"}"#)
            .unwrap();
    }

    #[test]
    fn json_that_breaks_the_schema_is_a_violation() {
        let m = model(None);
        for bad in [
            &br#"{"id":"one","name":"a","status":"OK"}"#[..],
            br#"{"name":"a","status":"OK"}"#,
            br#"{"id":1,"name":"a","status":"MAYBE"}"#,
            br#"{"id":1,"name":"a","status":"OK","note":7}"#,
        ] {
            let e = m.validate(bad).unwrap_err();
            assert_eq!(e.why, Why::Violation, "{e}");
            assert_eq!(e.event, EVENT);
            assert!(
                e.message
                    .starts_with("A message payload failed validation."),
                "{e}"
            );
        }
    }

    #[test]
    fn binary_passes_and_view_json_converts_it() {
        let payload = Bytes::from(binary(7, "seven", 1));
        assert_eq!(model(None).convert(payload.clone()).unwrap(), payload);
        let json = model(Some(View::Json)).convert(payload).unwrap();
        let json: JsonValue = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": 7, "name": "seven", "status": "FAILED", "note": null})
        );
    }

    #[test]
    fn truncated_or_padded_binary_is_malformed() {
        let m = model(None);
        let good = binary(7, "seven", 1);
        let e = m.validate(&good[..good.len() - 2]).unwrap_err();
        assert_eq!(e.why, Why::Malformed, "{e}");
        // Cut inside a last string field: apache-avro alone would read the string as null.
        let item = r#"{"type":"record","name":"Item","fields":[{"name":"id","type":"int"},{"name":"name","type":"string"}]}"#;
        let m = model_on(Arc::new(local(item)), None).unwrap();
        m.validate(&[0x0e, 0x08, b'f', b'o', b'u', b'r']).unwrap();
        let e = m.validate(&[0x0e, 0x08, b'f']).unwrap_err();
        assert_eq!(e.why, Why::Malformed, "{e}");
        assert!(e.message.contains("cut short"), "{e}");
        let m = model(None);
        let mut padded = good.clone();
        padded.push(0);
        let e = m.validate(&padded).unwrap_err();
        assert_eq!(e.why, Why::Malformed, "{e}");
        assert!(e.message.contains("left after"), "{e}");
        // A string claiming 2^40 bytes is refused without allocating them.
        let e = m.validate(&[0x02, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
        assert_eq!(e.unwrap_err().why, Why::Malformed);
    }

    #[test]
    fn the_wire_prefix_names_the_writer_schema() {
        let mut schemas = local(SCHEMA);
        let other = r#"{"type":"record","name":"Other","fields":[{"name":"n","type":"long"}]}"#;
        schemas.insert("other", Some("latest"), other);
        let other_id = schemas.resolve("other", "latest").unwrap();
        let m = model_on(Arc::new(Prefixed(schemas)), Some(View::Json)).unwrap();
        // Prefixed with the other schema's id: decoded with that schema, not the subject's.
        let mut payload = vec![0xAA];
        payload.extend_from_slice(&other_id.to_be_bytes());
        payload.push(0x54);
        let out = m.convert(Bytes::from(payload)).unwrap();
        assert_eq!(&out[..], br#"{"n":42}"#);
        // An id the catalog does not know: no schema.
        let unknown = other_id.wrapping_add(1).to_be_bytes();
        let e = m
            .validate(&[0xAA, unknown[0], unknown[1], unknown[2], unknown[3], 0x54])
            .unwrap_err();
        assert_eq!(e.why, Why::NoSchema, "{e}");
    }

    #[test]
    fn unusable_schemas_are_load_errors() {
        let e = model_on(Arc::new(local("{not avro")), None).unwrap_err();
        assert!(e.to_string().contains("not a usable Avro schema"), "{e}");
        let nulls = r#"{"type":"record","name":"R","fields":[{"name":"xs","type":{"type":"array","items":"null"}}]}"#;
        let e = model_on(Arc::new(local(nulls)), None).unwrap_err();
        assert!(e.to_string().contains("take no bytes"), "{e}");
    }

    #[test]
    fn options_parse_as_zilla_spells_them() {
        let o: AvroOptions = serde_yaml::from_str("view: json").unwrap();
        assert_eq!(o.view, Some(View::Json));
        assert!(serde_yaml::from_str::<AvroOptions>("view: xml").is_err());
        assert!(serde_yaml::from_str::<AvroOptions>("shape: json").is_err());
    }
}
