//! The `protobuf` model: each payload is checked against a message of a `.proto` schema from a
//! catalog. The schema is compiled with `protox` (a protobuf compiler in Rust: imports of the
//! well-known `google/protobuf/*.proto` types resolve, nothing is read from disk) and payloads
//! are read with `prost-reflect`.
//!
//! ```yaml
//! content:
//!   model: protobuf
//!   view: json            # optional: forward protobuf binary as its JSON mapping
//!   catalog:
//!     sr:
//!       - subject: items
//!         version: latest
//!         record: EchoMessage   # the message type, required
//! ```
//!
//! A payload is accepted in either of two forms:
//! - **Protobuf binary**, as Zilla reads it. When the catalog has a wire prefix (a registry's
//!   magic byte and schema id), the prefix names the writer schema and is followed by the
//!   Confluent message-index list (zig-zag varints: a count, then the path of nested message
//!   indexes; a single `0x00` is the first message of the file), which picks the message type.
//!   Without a prefix (inline, filesystem) the payload is a `record` message. The whole payload
//!   must decode. With `view: json` it is forwarded as its canonical JSON mapping.
//! - **The JSON mapping** of a `record` message (an SSE stream carries text): a JSON object
//!   whose fields are the message's (JSON or proto names), with unknown fields refused. It is
//!   forwarded unchanged.
//!
//! A schema is compiled once per schema id and reused, read without a lock.

use std::sync::Arc;

use bytes::Bytes;
use prost_reflect::{DescriptorPool, DynamicMessage, FileDescriptor, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use schemars::JsonSchema;
use serde::Deserialize;
use zilla_engine::{
    CompiledSchema, ConfigError, Invalid, Model, ModelContext, ModelDescriptor, ModelFactory, Why,
};

/// The event a rejected payload is reported with (Zilla's `model.protobuf.validation.failed`).
pub const EVENT: &str = "MODEL_PROTOBUF_VALIDATION_FAILED";

/// The name the catalog's schema text is compiled under.
const SCHEMA_FILE: &str = "schema.proto";

/// The most message indexes a wire prefix may list (nesting is never this deep in practice).
const MAX_INDEXES: u64 = 64;

/// The `protobuf` model type.
#[derive(Debug)]
pub struct ProtobufFactory;

zilla_engine::inventory::submit! { ModelDescriptor::new::<ProtobufFactory>() }

/// The protobuf model's own keys.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtobufOptions {
    /// `json`: forward protobuf binary payloads as their JSON mapping.
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

impl ModelFactory for ProtobufFactory {
    const TYPE: &'static str = "protobuf";
    const CATALOGED: bool = true;
    type Options = ProtobufOptions;

    fn build(cx: &ModelContext, options: ProtobufOptions) -> Result<Arc<dyn Model>, ConfigError> {
        let Some(record) = cx.schema()?.record.clone() else {
            return Err(cx.error(
                "catalog",
                "a protobuf model needs `record` (the message type) in its catalog entry",
            ));
        };
        let schema = CompiledSchema::new(cx, EVENT, "protobuf schema", move |text| {
            compile(text, &record)
        })?;
        Ok(Arc::new(ProtobufModel {
            schema,
            view: options.view,
        }))
    }
}

/// A compiled `.proto` file: its messages and the `record` one.
#[derive(Debug)]
struct Proto {
    file: FileDescriptor,
    record: MessageDescriptor,
}

/// One in-memory `.proto` source.
struct Source(String);

impl FileResolver for Source {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == SCHEMA_FILE {
            File::from_source(name, &self.0)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Compiles `text` and finds message `record` in it (by full name, by name in the file's
/// package, or by simple name).
fn compile(text: &str, record: &str) -> Result<Proto, String> {
    let mut resolver = ChainFileResolver::new();
    resolver.add(Source(text.to_string()));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler
        .open_file(SCHEMA_FILE)
        .map_err(|e| format!("not a .proto file: {e}"))?;
    let pool: DescriptorPool = compiler.descriptor_pool();
    let file = pool
        .get_file_by_name(SCHEMA_FILE)
        .ok_or_else(|| "the compiled schema has no file".to_string())?;
    let qualified = match file.package_name() {
        "" => record.to_string(),
        package => format!("{package}.{record}"),
    };
    let found = pool
        .get_message_by_name(record)
        .or_else(|| pool.get_message_by_name(&qualified))
        .or_else(|| {
            let mut matches = file.messages().filter(|m| m.name() == record);
            matches.next()
        });
    let Some(record_descriptor) = found else {
        let names: Vec<String> = file.messages().map(|m| m.name().to_string()).collect();
        return Err(format!(
            "no message '{record}' in the schema (messages: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    };
    Ok(Proto {
        file,
        record: record_descriptor,
    })
}

#[derive(Debug)]
struct ProtobufModel {
    schema: CompiledSchema<Proto>,
    view: Option<View>,
}

/// Reads one zig-zag varint off the front of `buf`.
fn zigzag(buf: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

impl ProtobufModel {
    /// The message type named by a Confluent message-index list at the front of `body`, and
    /// the rest of `body`.
    fn indexed<'a>(
        &self,
        proto: &Proto,
        mut body: &'a [u8],
    ) -> Result<(MessageDescriptor, &'a [u8]), Invalid> {
        let bad = |what: &str| {
            self.schema
                .invalid(Why::Malformed, format!("Bad message indexes: {what}."))
        };
        let count = zigzag(&mut body).ok_or_else(|| bad("truncated"))?;
        if count == 0 {
            // The short form: the first message of the file.
            let first = proto
                .file
                .messages()
                .next()
                .ok_or_else(|| bad("no messages"))?;
            return Ok((first, body));
        }
        if count < 0 || count as u64 > MAX_INDEXES {
            return Err(bad(&format!("{count} indexes")));
        }
        let mut current: Option<MessageDescriptor> = None;
        for _ in 0..count {
            let index = zigzag(&mut body).ok_or_else(|| bad("truncated"))?;
            let index = usize::try_from(index).map_err(|_| bad("a negative index"))?;
            let next = match &current {
                None => proto.file.messages().nth(index),
                Some(m) => m.child_messages().nth(index),
            };
            current = Some(next.ok_or_else(|| bad(&format!("no message at index {index}")))?);
        }
        Ok((current.expect("count > 0"), body))
    }

    fn decode(&self, message: MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, Invalid> {
        DynamicMessage::decode(message.clone(), body).map_err(|e| {
            self.schema.invalid(
                Why::Malformed,
                format!("Not a protobuf {}: {e}", message.full_name()),
            )
        })
    }

    /// Checks `payload` as the JSON mapping of the record: `None` if it is not a JSON object.
    fn check_json(
        &self,
        record: &MessageDescriptor,
        payload: &[u8],
    ) -> Option<Result<(), Invalid>> {
        let first = payload.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        let mut de = serde_json::Deserializer::from_slice(payload);
        let checked = DynamicMessage::deserialize(record.clone(), &mut de)
            .and_then(|_| de.end())
            .map_err(|e| {
                let why = if e.is_syntax() || e.is_eof() {
                    Why::Malformed
                } else {
                    Why::Violation
                };
                self.schema.invalid(
                    why,
                    format!("[{},{}] {}: {e}", e.line(), e.column(), record.full_name()),
                )
            });
        Some(checked)
    }

    /// Checks a payload; returns the decoded message when it was binary.
    fn check(&self, payload: &[u8]) -> Result<Option<DynamicMessage>, Invalid> {
        let catalog = &self.schema.schema_ref().catalog.catalog;
        if let Some((id, body)) = catalog.decode(payload) {
            let proto = self.schema.of_id(id)?;
            let (message, body) = self.indexed(&proto, body)?;
            return self.decode(message, body).map(Some);
        }
        let proto = self.schema.current()?;
        match self.check_json(&proto.record, payload) {
            Some(Ok(())) => Ok(None),
            Some(Err(json_error)) => self
                .decode(proto.record.clone(), payload)
                .map(Some)
                .map_err(|_| json_error),
            None => self.decode(proto.record.clone(), payload).map(Some),
        }
    }
}

impl Model for ProtobufModel {
    fn validate(&self, payload: &[u8]) -> Result<(), Invalid> {
        self.check(payload).map(drop)
    }

    fn convert(&self, payload: Bytes) -> Result<Bytes, Invalid> {
        match (self.check(&payload)?, self.view) {
            (Some(message), Some(View::Json)) => {
                serde_json::to_vec(&message).map(Bytes::from).map_err(|e| {
                    self.schema.invalid(
                        Why::Violation,
                        format!("No JSON mapping of the message: {e}"),
                    )
                })
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

    const PROTO: &str = r#"
        syntax = "proto3";
        package test;
        import "google/protobuf/timestamp.proto";

        message Other { int64 n = 1; }
        message Event {
          int32 id = 1;
          string name = 2;
          Status status = 3;
          google.protobuf.Timestamp at = 4;
          message Inner { string tag = 1; }
          Inner inner = 5;
        }
        enum Status { OK = 0; FAILED = 1; }
    "#;

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
        record: Option<&str>,
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
                record: record.map(str::to_string),
            }),
            properties: Arc::default(),
            config_dir: ".".into(),
        };
        ProtobufFactory::build(&cx, ProtobufOptions { view })
    }

    fn local(text: &str) -> LocalSchemas {
        let mut schemas = LocalSchemas::new();
        schemas.insert("event", Some("latest"), text);
        schemas
    }

    fn model(view: Option<View>) -> Arc<dyn Model> {
        model_on(Arc::new(local(PROTO)), Some("Event"), view).unwrap()
    }

    /// `Event { id: 7, name: "seven", status: FAILED }` in protobuf binary.
    fn binary() -> Vec<u8> {
        let mut out = vec![0x08, 7, 0x12, 5];
        out.extend_from_slice(b"seven");
        out.extend_from_slice(&[0x18, 1]);
        out
    }

    #[test]
    fn the_json_mapping_of_the_record_passes_unchanged() {
        let m = model(Some(View::Json));
        let payload = Bytes::from_static(
            br#"{"id":1,"name":"a","status":"FAILED","at":"2026-12-06T10:00:00Z","inner":{"tag":"x"}}"#,
        );
        assert_eq!(m.convert(payload.clone()).unwrap(), payload);
    }

    #[test]
    fn json_that_breaks_the_message_is_a_violation() {
        let m = model(None);
        for bad in [
            &br#"{"id":"one"}"#[..],
            br#"{"id":1,"colour":"red"}"#,
            br#"{"status":"MAYBE"}"#,
            br#"{"at":"yesterday"}"#,
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
        let e = m.validate(br#"{"id":1"#).unwrap_err();
        assert_eq!(e.why, Why::Malformed, "{e}");
    }

    #[test]
    fn binary_passes_and_view_json_converts_it() {
        let payload = Bytes::from(binary());
        assert_eq!(model(None).convert(payload.clone()).unwrap(), payload);
        let json = model(Some(View::Json)).convert(payload).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": 7, "name": "seven", "status": "FAILED"})
        );
    }

    #[test]
    fn bad_binary_is_malformed() {
        let m = model(None);
        let good = binary();
        let e = m.validate(&good[..good.len() - 3]).unwrap_err();
        assert_eq!(e.why, Why::Malformed, "{e}");
        // A length-delimited field claiming 2^40 bytes.
        let e = m.validate(&[0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
        assert_eq!(e.unwrap_err().why, Why::Malformed);
        // A field with wire type 7 (does not exist).
        assert_eq!(m.validate(&[0x0f]).unwrap_err().why, Why::Malformed);
    }

    #[test]
    fn the_wire_prefix_and_message_indexes_pick_the_message() {
        let schemas = local(PROTO);
        let id = schemas.resolve("event", "latest").unwrap();
        let m = model_on(Arc::new(Prefixed(schemas)), Some("Event"), Some(View::Json)).unwrap();
        let prefixed = |indexes: &[u8], body: &[u8]| {
            let mut p = vec![0xAA];
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(indexes);
            p.extend_from_slice(body);
            Bytes::from(p)
        };
        // `0x00`: the first message of the file, Other { n: 42 }.
        let out = m.convert(prefixed(&[0x00], &[0x08, 42])).unwrap();
        assert_eq!(&out[..], br#"{"n":"42"}"#);
        // [1]: Event.
        let out = m.convert(prefixed(&[0x02, 0x02], &[0x08, 3])).unwrap();
        assert_eq!(&out[..], br#"{"id":3}"#);
        // [1, 0]: Event.Inner.
        let out = m
            .convert(prefixed(&[0x04, 0x02, 0x00], &[0x0a, 1, b'x']))
            .unwrap();
        assert_eq!(&out[..], br#"{"tag":"x"}"#);
        // An index past the file's messages, and a hostile count.
        let e = m.validate(&prefixed(&[0x02, 0x0a], &[])).unwrap_err();
        assert!(e.message.contains("no message at index 5"), "{e}");
        let e = m
            .validate(&prefixed(&[0xfe, 0xff, 0xff, 0xff, 0x0f], &[]))
            .unwrap_err();
        assert_eq!(e.why, Why::Malformed, "{e}");
    }

    #[test]
    fn unusable_schemas_and_records_are_load_errors() {
        let e = model_on(Arc::new(local("message {")), Some("Event"), None).unwrap_err();
        assert!(
            e.to_string().contains("not a usable protobuf schema"),
            "{e}"
        );
        let e = model_on(Arc::new(local(PROTO)), Some("Missing"), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("no message 'Missing' in the schema (messages: Other, Event)"),
            "{e}"
        );
        let e = model_on(Arc::new(local(PROTO)), None, None).unwrap_err();
        assert!(e.to_string().contains("needs `record`"), "{e}");
        // Fully qualified names work too.
        model_on(Arc::new(local(PROTO)), Some("test.Event"), None).unwrap();
    }

    #[test]
    fn options_parse_as_zilla_spells_them() {
        let o: ProtobufOptions = serde_yaml::from_str("view: json").unwrap();
        assert_eq!(o.view, Some(View::Json));
        assert!(serde_yaml::from_str::<ProtobufOptions>("view: xml").is_err());
    }
}
