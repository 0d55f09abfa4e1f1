//! The JSON Schema of zilla.yaml, generated from the registered plugins' option types.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::binding::binding_types;
use crate::catalog::Catalog;
use crate::guard::Guard;
use crate::plugin::{plugin_types, Exporter, PluginDescriptor, Vault};

const NAME_PATTERN: &str = r"^[a-zA-Z]+[a-zA-Z0-9\._\-]*$";
const EXPRESSION_PATTERN: &str = r"^.*\$\{\{\s*env\.[^\s}]*\s*\}\}.*$";

/// The whole schema: a `oneOf` of every registered binding type (and guard, vault, catalog,
/// exporter type), sorted by type so the output is stable.
pub fn schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let mut bindings = Vec::new();
    for d in binding_types() {
        let kinds: Vec<&str> = d.kinds.iter().map(|k| k.as_str()).collect();
        let options = (d.options_schema)(&mut generator).to_value();
        let when = (d.when_schema)(&mut generator).to_value();
        let with = (d.with_schema)(&mut generator).to_value();
        bindings.push(json!({
            "title": format!("{} binding ({})", d.type_name, kinds.join(", ")),
            "type": "object",
            "properties": {
                "type": { "const": d.type_name },
                "kind": { "enum": kinds },
                "vault": { "type": "string", "description": "Vault holding keys and certificates." },
                "options": options,
                "routes": {
                    "type": "array",
                    "description": "Conditional routes, tried in order; the first authorized match wins.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "when": { "type": "array", "items": when, "description": "Conditions: any may match." },
                            "guarded": {
                                "type": "object",
                                "description": "Guard name -> roles the session must hold.",
                                "additionalProperties": { "type": "array", "items": { "type": "string" } }
                            },
                            "with": with,
                            "exit": { "type": "string", "description": "Next binding." }
                        },
                        "additionalProperties": false
                    }
                },
                "exit": { "type": "string", "description": "Default next binding." },
                "telemetry": {
                    "type": "object",
                    "properties": {
                        "metrics": { "type": "array", "items": { "type": "string" } },
                        "attributes": { "type": "object", "additionalProperties": { "type": "string" } }
                    },
                    "additionalProperties": false
                }
            },
            "required": ["type", "kind"],
            "additionalProperties": false
        }));
    }
    let guards = plugins::<dyn Guard>(&mut generator, false);
    let vaults = plugins::<dyn Vault>(&mut generator, false);
    let catalogs = plugins::<dyn Catalog>(&mut generator, true);
    let exporters = plugins::<dyn Exporter>(&mut generator, false);
    let defs: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "zilla.yaml",
        "type": "object",
        "properties": {
            "name": { "type": "string", "pattern": NAME_PATTERN, "description": "Namespace name." },
            "bindings": named_map(bindings),
            "guards": named_map(guards),
            "vaults": named_map(vaults),
            "catalogs": named_map(catalogs),
            "telemetry": {
                "type": "object",
                "properties": {
                    "attributes": { "type": "object", "additionalProperties": { "type": "string" } },
                    "metrics": {
                        "type": "array",
                        "items": { "enum": crate::metrics::metric_descriptors().iter().map(|d| d.name).collect::<Vec<_>>() },
                        "uniqueItems": true
                    },
                    "exporters": named_map(exporters)
                },
                "additionalProperties": false
            }
        },
        "required": ["name"],
        "additionalProperties": false,
        "$defs": defs
    });
    allow_expressions(&mut root);
    root
}

fn named_map(variants: Vec<Value>) -> Value {
    if variants.is_empty() {
        // No plugin of this kind is registered: no entry can be valid.
        return json!({ "type": "object", "maxProperties": 0 });
    }
    json!({
        "type": "object",
        "propertyNames": { "pattern": NAME_PATTERN },
        "additionalProperties": { "oneOf": variants }
    })
}

fn plugins<T: ?Sized + 'static>(
    generator: &mut schemars::SchemaGenerator,
    with_vault: bool,
) -> Vec<Value>
where
    PluginDescriptor<T>: inventory::Collect,
{
    plugin_types::<T>()
        .into_iter()
        .map(|d| {
            let mut v = json!({
                "title": d.type_name,
                "type": "object",
                "properties": {
                    "type": { "const": d.type_name },
                    "options": (d.options_schema)(generator).to_value()
                },
                "required": ["type"],
                "additionalProperties": false
            });
            if with_vault {
                v["properties"]["vault"] =
                    json!({ "type": "string", "description": "Vault holding TLS material." });
            }
            v
        })
        .collect()
}

/// Lets any integer, number or boolean be written as a `${{env.NAME}}` expression, as editors
/// see the text before substitution.
fn allow_expressions(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for value in map.values_mut() {
                allow_expressions(value);
            }
            let scalar = matches!(
                map.get("type").and_then(Value::as_str),
                Some("integer" | "number" | "boolean")
            );
            if scalar {
                let description = map.remove("description");
                let original = Value::Object(std::mem::take(map));
                map.insert(
                    "anyOf".into(),
                    json!([original, { "type": "string", "pattern": EXPRESSION_PATTERN }]),
                );
                if let Some(d) = description {
                    map.insert("description".into(), d);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_expressions),
        _ => {}
    }
}
