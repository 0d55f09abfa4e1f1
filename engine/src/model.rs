//! Models: validators (and converters) of message payloads, built from a binding's options.
//!
//! A model appears inline where a binding validates something (`content: json`, or
//! `content: {model: json, catalog: {...}}`); a binding keeps the raw [`ModelConfig`] in its
//! options type and builds it with [`crate::BindingContext::model`], which finds the registered
//! [`ModelFactory`] by name, resolves its catalog and parses its own keys strictly.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_yaml::Value;

use crate::catalog::SchemaRef;
use crate::config::{parse_value, ConfigError};
use crate::properties::Properties;

/// Why a payload was rejected, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    /// The payload is not well formed for the model (not JSON, not a number, bad UTF-8).
    Malformed,
    /// Well formed, but it breaks the schema or a constraint (`required`, `range`, `pattern`).
    Violation,
    /// The schema is not known (yet): not in the catalog, or the registry has not answered.
    NoSchema,
}

impl Why {
    /// Lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Malformed => "malformed",
            Why::Violation => "violation",
            Why::NoSchema => "no-schema",
        }
    }
}

/// A rejected payload: which event to log and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Event name, as Zilla's (`MODEL_JSON_VALIDATION_FAILED`).
    pub event: &'static str,
    /// The kind of failure.
    pub why: Why,
    /// What was wrong, with the JSON pointer of the first error where there is one.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A built model: validates one whole payload at a time.
pub trait Model: Send + Sync + fmt::Debug + 'static {
    /// Checks one whole payload.
    fn validate(&self, payload: &[u8]) -> Result<(), Invalid>;

    /// Checks a payload and returns what to forward: the same bytes for a validator, other
    /// bytes for a converter (avro with `view: json`).
    fn convert(&self, payload: Bytes) -> Result<Bytes, Invalid> {
        self.validate(&payload)?;
        Ok(payload)
    }
}

/// A model type: its name, its own keys, and how to build it.
pub trait ModelFactory: 'static {
    /// The `model` name in zilla.yaml (`json`, `int32`).
    const TYPE: &'static str;
    /// True if the model needs a `catalog` (json, avro, protobuf); others refuse one.
    const CATALOGED: bool;
    /// The model's own keys (everything besides `model` and `catalog`).
    type Options: DeserializeOwned + JsonSchema;
    /// Builds the model.
    fn build(cx: &ModelContext, options: Self::Options) -> Result<Arc<dyn Model>, ConfigError>;
}

/// What a model's build gets.
#[derive(Debug)]
pub struct ModelContext {
    /// Document path of the model, e.g. `bindings.sse0.options.requests[0].content`.
    pub path: String,
    /// Its schema source, for cataloged models.
    pub schema: Option<SchemaRef>,
    /// Engine properties.
    pub properties: Arc<Properties>,
    /// Directory of the config file.
    pub config_dir: PathBuf,
}

impl ModelContext {
    /// An error about `rel` under this model (e.g. `range`).
    pub fn error(&self, rel: &str, message: impl Into<String>) -> ConfigError {
        let path = if rel.is_empty() {
            self.path.clone()
        } else {
            format!("{}.{rel}", self.path)
        };
        ConfigError::new(path, message)
    }

    /// The schema source; cataloged models are always built with one.
    pub fn schema(&self) -> Result<&SchemaRef, ConfigError> {
        self.schema
            .as_ref()
            .ok_or_else(|| self.error("", "this model needs a `catalog`"))
    }
}

type BuildFn = fn(&ModelContext, Value) -> Result<Arc<dyn Model>, ConfigError>;

/// A registered model type, collected with `inventory`.
pub struct ModelDescriptor {
    /// `model` name.
    pub type_name: &'static str,
    /// True if it needs a catalog.
    pub cataloged: bool,
    /// Schema of its own keys.
    pub options_schema: fn(&mut SchemaGenerator) -> Schema,
    build: BuildFn,
}

impl fmt::Debug for ModelDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelDescriptor")
            .field("type_name", &self.type_name)
            .finish()
    }
}

impl ModelDescriptor {
    /// The descriptor of factory `F`.
    pub const fn new<F: ModelFactory>() -> Self {
        ModelDescriptor {
            type_name: F::TYPE,
            cataloged: F::CATALOGED,
            options_schema: inline_schema_of::<F::Options>,
            build: build_model::<F>,
        }
    }

    /// Parses the model's own keys and builds it.
    pub fn build(&self, cx: &ModelContext, options: Value) -> Result<Arc<dyn Model>, ConfigError> {
        (self.build)(cx, options)
    }
}

fn build_model<F: ModelFactory>(
    cx: &ModelContext,
    options: Value,
) -> Result<Arc<dyn Model>, ConfigError> {
    let options = parse_value::<F::Options>(options, &cx.path)?;
    F::build(cx, options)
}

fn inline_schema_of<T: JsonSchema>(_: &mut SchemaGenerator) -> Schema {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
}

inventory::collect!(ModelDescriptor);

/// Every registered model type, sorted by name.
pub fn model_types() -> Vec<&'static ModelDescriptor> {
    let mut all: Vec<_> = inventory::iter::<ModelDescriptor>.into_iter().collect();
    all.sort_by_key(|d| d.type_name);
    all
}

/// A model as written in a binding's options: a model name (`content: int32`) or an object
/// (`content: {model: json, catalog: {...}}`). Kept raw until
/// [`crate::BindingContext::model`] builds it, so its keys are checked by the model type that
/// owns them.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig(pub Value);

impl ModelConfig {
    /// The model name, if the value has one.
    pub fn name(&self) -> Option<&str> {
        match &self.0 {
            Value::String(s) => Some(s),
            Value::Mapping(m) => m.get("model").and_then(Value::as_str),
            _ => None,
        }
    }

    /// `json, catalog host_filesystem subject event version latest`: the model and where its
    /// schema comes from, for the events that report a rejected payload.
    pub fn describe(&self) -> String {
        let name = self.name().unwrap_or("?");
        let Some(Value::Mapping(catalogs)) = self.0.get("catalog") else {
            return name.to_string();
        };
        let Some((catalog, entries)) = catalogs.iter().next() else {
            return name.to_string();
        };
        let catalog = catalog.as_str().unwrap_or("?");
        let entry = entries.as_sequence().and_then(|s| s.first());
        let field = |k: &str| {
            entry.and_then(|e| e.get(k)).map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => "?".to_string(),
            })
        };
        match (field("subject"), field("id")) {
            (Some(subject), _) => format!(
                "{name}, catalog {catalog} subject {subject} version {}",
                field("version").unwrap_or_else(|| "latest".into())
            ),
            (None, Some(id)) => format!("{name}, catalog {catalog} id {id}"),
            (None, None) => format!("{name}, catalog {catalog}"),
        }
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::String(_) => Ok(ModelConfig(v)),
            Value::Mapping(m) if m.get("model").is_some_and(Value::is_string) => Ok(ModelConfig(v)),
            Value::Mapping(_) => Err(serde::de::Error::custom(
                "a model object needs `model` (json, string, int32, ...)",
            )),
            _ => Err(serde::de::Error::custom(
                "expected a model name (json, string, int32, ...) or an object with `model`",
            )),
        }
    }
}

impl JsonSchema for ModelConfig {
    fn schema_name() -> Cow<'static, str> {
        "Model".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let catalog = serde_json::json!({
            "type": "object",
            "description": "The catalog holding the schema (exactly one), with the entry to use.",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "integer", "description": "A fixed schema id." },
                        "subject": { "type": "string", "description": "Subject in the catalog." },
                        "strategy": { "enum": ["topic"], "description": "Subject derived by the binding." },
                        "version": { "type": "string", "description": "Version (default latest)." },
                        "record": { "type": "string", "description": "Protobuf message name." }
                    },
                    "additionalProperties": false
                }
            }
        });
        let types = model_types();
        let names: Vec<&str> = types.iter().map(|d| d.type_name).collect();
        let mut variants = vec![serde_json::json!({
            "enum": names,
            "description": "A model by name, with its defaults."
        })];
        for d in &types {
            let own = (d.options_schema)(g).to_value();
            let mut properties = own
                .get("properties")
                .and_then(|p| p.as_object())
                .cloned()
                .unwrap_or_default();
            properties.insert(
                "model".into(),
                serde_json::json!({ "const": d.type_name, "description": "The model type." }),
            );
            let mut required = vec!["model"];
            if d.cataloged {
                properties.insert("catalog".into(), catalog.clone());
                required.push("catalog");
            }
            variants.push(serde_json::json!({
                "title": d.type_name,
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false
            }));
        }
        Schema::try_from(serde_json::json!({
            "description": "A model validating a payload: a name, or an object with `model`.",
            "oneOf": variants
        }))
        .expect("an object schema")
    }
}

/// One entry of a model's `catalog` list, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CatalogEntryConfig {
    #[serde(default)]
    pub(crate) id: Option<u32>,
    #[serde(default)]
    pub(crate) subject: Option<String>,
    #[serde(default)]
    pub(crate) strategy: Option<String>,
    #[serde(default)]
    pub(crate) version: Option<String>,
    #[serde(default)]
    pub(crate) record: Option<String>,
}

/// A schema compiled once per schema id, for cataloged models: the subject's current id is
/// asked of the catalog on every payload (a lock-free read), and only a new id compiles again.
/// A schema that does not compile stays cached as its error, so it is not recompiled per
/// payload. Reads take no lock (`ArcSwap`).
pub struct CompiledSchema<T> {
    schema: SchemaRef,
    event: &'static str,
    compile: Compile<T>,
    last: ArcSwapOption<Entry<T>>,
}

/// Turns a schema text into what checks payloads, or says why it cannot.
type Compile<T> = Box<dyn Fn(&str) -> Result<T, String> + Send + Sync>;

/// A schema id and what it compiled to.
type Entry<T> = (u32, Result<Arc<T>, String>);

impl<T> fmt::Debug for CompiledSchema<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("schema", &self.schema.describe())
            .field("event", &self.event)
            .finish()
    }
}

impl<T> CompiledSchema<T> {
    /// Compiles the schemas of `schema` with `compile`; rejections are reported as `event`
    /// (`MODEL_JSON_VALIDATION_FAILED`). `compile` turns a schema text into what checks payloads,
    /// or says why it cannot.
    ///
    /// When the catalog already holds the schema (a local catalog, or a registry that answered
    /// at once) it is compiled now, and one that does not compile is a config error at the
    /// model's path naming `what` ("JSON Schema").
    pub fn new(
        cx: &ModelContext,
        event: &'static str,
        what: &str,
        compile: impl Fn(&str) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        let compiled = CompiledSchema {
            schema: cx.schema()?.clone(),
            event,
            compile: Box::new(compile),
            last: ArcSwapOption::empty(),
        };
        if let Some(id) = compiled.schema.id() {
            if let Some(c) = compiled.cached(id) {
                if let Err(e) = &c.1 {
                    return Err(cx.error(
                        "",
                        format!("{}: not a usable {what}: {e}", compiled.schema.describe()),
                    ));
                }
            }
        }
        Ok(compiled)
    }

    /// The schema reference (catalog and entry).
    pub fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }

    /// An [`Invalid`] of this model: Zilla's `A message payload failed validation.` + `detail`.
    pub fn invalid(&self, why: Why, detail: impl fmt::Display) -> Invalid {
        Invalid {
            event: self.event,
            why,
            message: format!("A message payload failed validation. {detail}"),
        }
    }

    /// The compiled schema of the entry's current id.
    pub fn current(&self) -> Result<Arc<T>, Invalid> {
        match self.schema.id() {
            Some(id) => self.of_id(id),
            None => Err(self.unknown(None)),
        }
    }

    /// The compiled schema of `id` (a writer schema named by a payload's wire prefix).
    pub fn of_id(&self, id: u32) -> Result<Arc<T>, Invalid> {
        let c = self.cached(id).ok_or_else(|| self.unknown(Some(id)))?;
        c.1.clone().map_err(|e| {
            self.invalid(
                Why::NoSchema,
                format!(
                    "The schema ({}, id {id}) is not usable: {e}",
                    self.schema.describe()
                ),
            )
        })
    }

    fn unknown(&self, id: Option<u32>) -> Invalid {
        let id = id.map(|id| format!(", id {id}")).unwrap_or_default();
        self.invalid(
            Why::NoSchema,
            format!("The schema ({}{id}) is not known.", self.schema.describe()),
        )
    }

    /// The cached entry if it is for `id`, else `id` compiled now and cached (a registry moved
    /// the subject to a new id, or the first payload).
    fn cached(&self, id: u32) -> Option<Arc<Entry<T>>> {
        if let Some(c) = self.last.load_full() {
            if c.0 == id {
                return Some(c);
            }
        }
        let text = self.schema.schema(id)?;
        let c = Arc::new((id, (self.compile)(&text).map(Arc::new)));
        self.last.store(Some(c.clone()));
        Some(c)
    }
}
