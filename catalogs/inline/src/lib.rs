//! The `inline` catalog: schemas written in zilla.yaml.
//!
//! ```yaml
//! catalogs:
//!   host_inline:
//!     type: inline
//!     options:
//!       subjects:
//!         event:
//!           version: latest     # the default
//!           schema: |
//!             {"type": "object", "required": ["id"]}
//! ```
//!
//! As Zilla: a schema's id is the CRC32C of its text, and a subject is found only at the
//! version it was declared with (`latest` unless given).

use std::sync::Arc;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use zilla_engine::{
    Catalog, CatalogDescriptor, ConfigErrors, LocalSchemas, PluginContext, PluginFactory,
};

/// The `inline` catalog type.
#[derive(Debug)]
pub struct InlineFactory;

zilla_engine::inventory::submit! { CatalogDescriptor::new::<InlineFactory>() }

/// `options` of an inline catalog.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineOptions {
    /// The schemas, by subject name.
    pub subjects: IndexMap<String, InlineSubject>,
}

/// One subject of an inline catalog.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineSubject {
    /// The version models must ask for to find this schema (`latest` by default).
    #[serde(default = "latest", deserialize_with = "version")]
    #[schemars(with = "String")]
    pub version: String,
    /// The schema text (JSON Schema, Avro, a .proto file, an AsyncAPI document, ...).
    pub schema: String,
}

fn latest() -> String {
    "latest".to_string()
}

/// A version may be written as a number (`version: 1`).
fn version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        S(String),
        N(u64),
    }
    Ok(match V::deserialize(d)? {
        V::S(s) => s,
        V::N(n) => n.to_string(),
    })
}

/// A subject name as Zilla allows it: `^[a-zA-Z]+[a-zA-Z0-9._-]*$`.
fn valid_subject(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl PluginFactory<dyn Catalog> for InlineFactory {
    const TYPE: &'static str = "inline";
    type Options = InlineOptions;

    fn build(
        cx: &PluginContext,
        options: Option<InlineOptions>,
    ) -> Result<Arc<dyn Catalog>, ConfigErrors> {
        let options =
            options.ok_or_else(|| cx.error("", "an inline catalog needs `options.subjects`"))?;
        let mut errors = ConfigErrors::new();
        let mut schemas = LocalSchemas::new();
        for (name, subject) in &options.subjects {
            if !valid_subject(name) {
                errors.push(cx.error(
                    &format!("options.subjects.{name}"),
                    "a subject name starts with a letter, then letters, digits, '.', '_' or '-'",
                ));
                continue;
            }
            schemas.insert(name, Some(&subject.version), &subject.schema);
        }
        errors.or(Arc::new(schemas) as Arc<dyn Catalog>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Result<Arc<dyn Catalog>, ConfigErrors> {
        let options: InlineOptions = serde_yaml::from_str(yaml).expect("options parse");
        let cx = PluginContext {
            index: 0,
            namespace: "test".into(),
            path: "catalogs.host_inline".into(),
            properties: Arc::default(),
            config_dir: ".".into(),
            vault: None,
            events: Default::default(),
            metrics: Default::default(),
            attributes: Vec::new(),
        };
        InlineFactory::build(&cx, Some(options))
    }

    #[test]
    fn resolves_subjects_at_their_version_with_crc32c_ids() {
        let c = build(
            "subjects:\n  items:\n    schema: '123456789'\n  pinned:\n    version: 1\n    schema: '{}'\n",
        )
        .unwrap();
        let id = c.resolve("items", "latest").expect("latest is the default");
        // CRC32C's published check value, as Zilla computes inline ids.
        assert_eq!(id, 0xE306_9283);
        assert_eq!(c.schema(id).as_deref(), Some("123456789"));
        assert_eq!(c.resolve("items", "1"), None);
        assert!(
            c.resolve("pinned", "1").is_some(),
            "a numeric version is a string"
        );
        assert_eq!(c.resolve("pinned", "latest"), None);
        assert_eq!(
            c.subjects(),
            Some(vec!["items".to_string(), "pinned".to_string()])
        );
        assert_eq!(c.decode(b"\0\0\0\0\x01x"), None, "no wire prefix");
    }

    #[test]
    fn a_bad_subject_name_is_a_located_error() {
        let e = build("subjects:\n  9lives:\n    schema: '{}'\n").unwrap_err();
        assert_eq!(e.0[0].path, "catalogs.host_inline.options.subjects.9lives");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(serde_yaml::from_str::<InlineOptions>(
            "subjects:\n  a:\n    schema: x\n    path: y\n"
        )
        .is_err());
    }
}
