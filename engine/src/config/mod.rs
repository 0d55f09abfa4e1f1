//! The zilla.yaml model: reading, `${{env.*}}` expressions, strict parsing and diagnostics.
//!
//! Loading happens in stages, each reporting every error it finds: the text is read, expressions
//! are substituted, each `---` document is parsed to YAML, the common fields (`name`,
//! `bindings.*.type`, `kind`, `routes`, `exit`, ...) are parsed here, and each plugin's own
//! sections (`options`, `when`, `with`) are parsed by the plugin's registered types when the
//! graph is built (see [`crate::graph`]).

mod diagnostic;
mod env;
mod position;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;

pub use diagnostic::{
    did_you_mean, suggestion, ConfigError, ConfigErrors, Diagnostic, Diagnostics, Locator,
};
pub use env::{substitute, Substituted};
pub use position::{Position, PositionIndex};

/// A loaded config: one namespace per YAML document, plus what is needed to locate errors.
#[derive(Debug)]
pub struct Config {
    /// The raw text as read (before expressions), used to detect changes on reload.
    pub raw: String,
    /// The text after `${{env.*}}` substitution.
    pub text: String,
    /// Warnings (unset variables).
    pub warnings: Vec<String>,
    /// One namespace per document.
    pub namespaces: Vec<NamespaceConfig>,
    /// Locates errors in `text`.
    pub locator: Locator,
}

/// One namespace (one YAML document).
#[derive(Debug, Clone)]
pub struct NamespaceConfig {
    /// Index of the document in the file.
    pub doc: usize,
    /// `name`.
    pub name: String,
    /// `bindings`.
    pub bindings: IndexMap<String, BindingConfig>,
    /// `guards`.
    pub guards: IndexMap<String, PluginConfig>,
    /// `vaults`.
    pub vaults: IndexMap<String, PluginConfig>,
    /// `catalogs`.
    pub catalogs: IndexMap<String, PluginConfig>,
    /// `telemetry`.
    pub telemetry: TelemetryConfig,
}

/// The common fields of a binding; `options`, `when` and `with` are left for the plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    /// `type`: the registered binding type.
    #[serde(rename = "type")]
    pub ty: String,
    /// `kind`: server, client, proxy, ...
    pub kind: String,
    /// `vault` reference.
    #[serde(default)]
    pub vault: Option<String>,
    /// Type-specific `options`.
    #[serde(default)]
    pub options: Option<Value>,
    /// Conditional routes.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Default next binding.
    #[serde(default)]
    pub exit: Option<String>,
    /// Per-binding telemetry.
    #[serde(default)]
    pub telemetry: Option<BindingTelemetryConfig>,
}

/// One route: `when`, `guarded`, `with`, `exit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Conditions (any may match), each type-specific.
    #[serde(default)]
    pub when: Vec<Value>,
    /// Guard name -> required roles.
    #[serde(default)]
    pub guarded: IndexMap<String, Vec<String>>,
    /// Type-specific rewrite applied when the route is chosen.
    #[serde(default)]
    pub with: Option<Value>,
    /// Target binding.
    #[serde(default)]
    pub exit: Option<String>,
}

/// A binding's `telemetry` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingTelemetryConfig {
    /// Regular expressions selecting namespace metrics.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Metric attributes.
    #[serde(default)]
    pub attributes: IndexMap<String, String>,
}

/// A guard, vault, catalog or exporter: `type`, `vault` (catalogs) and `options`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The registered type.
    #[serde(rename = "type")]
    pub ty: String,
    /// A vault holding TLS material (catalogs that fetch from a registry).
    #[serde(default)]
    pub vault: Option<String>,
    /// Type-specific options.
    #[serde(default)]
    pub options: Option<Value>,
}

/// The namespace `telemetry` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Attributes handed to exporters.
    #[serde(default)]
    pub attributes: IndexMap<String, String>,
    /// Metrics that exist in this namespace.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Exporters.
    #[serde(default)]
    pub exporters: IndexMap<String, PluginConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamespace {
    name: String,
    #[serde(default)]
    bindings: IndexMap<String, Value>,
    #[serde(default)]
    guards: IndexMap<String, Value>,
    #[serde(default)]
    vaults: IndexMap<String, Value>,
    #[serde(default)]
    catalogs: IndexMap<String, Value>,
    #[serde(default)]
    telemetry: Option<Value>,
}

/// Deserializes `value` as `T`, reporting errors with their full key path under `base`.
pub fn parse_value<T: DeserializeOwned>(value: Value, base: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = base.to_string();
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
                serde_path_to_error::Segment::Map { key } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {}
            }
        }
        let message = e.into_inner().to_string();
        unknown_field(&message)
            .map(|field| {
                let p = if path == field || path.ends_with(&format!(".{field}")) {
                    path.clone()
                } else if path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
                ConfigError::at_key(p, message.clone())
            })
            .unwrap_or_else(|| ConfigError::new(path, message))
    })
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// `^[a-zA-Z]+[a-zA-Z0-9\._\-]*$`, the pattern of every declared name.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Config {
    /// Parses a config text. `file` names it in diagnostics; `env` resolves `${{env.NAME}}`.
    pub fn parse(
        file: &str,
        raw: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Diagnostics> {
        let Substituted { text, warnings } = substitute(raw, env);
        let locator = Locator::new(file, &text);
        let mut errors = Vec::new();
        let mut namespaces = Vec::new();
        let mut docs = Vec::new();
        for (doc, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            match Value::deserialize(de) {
                Ok(v) => docs.push((doc, v)),
                Err(e) => {
                    let position = e.location().map(|l| Position {
                        line: l.line(),
                        column: l.column(),
                    });
                    errors.push(Diagnostic {
                        file: file.to_string(),
                        position,
                        path: String::new(),
                        message: format!("invalid YAML: {e}"),
                    });
                    return Err(Diagnostics(errors));
                }
            }
        }
        if docs.iter().all(|(_, v)| v.is_null()) && docs.len() <= 1 {
            // Like Zilla: an empty file is `name: default` with nothing in it.
            docs = vec![(
                0,
                serde_yaml::from_str("name: default").expect("static yaml"),
            )];
        }
        for (doc, value) in docs {
            if value.is_null() {
                continue;
            }
            match parse_namespace(doc, value, true) {
                Ok(ns) => namespaces.push(ns),
                Err(es) => errors.extend(es.into_iter().map(|e| locator.locate(doc, e))),
            }
        }
        let mut seen = std::collections::HashSet::new();
        for ns in &namespaces {
            if !seen.insert(ns.name.clone()) {
                errors.push(locator.locate(
                    ns.doc,
                    ConfigError::new("name", format!("namespace '{}' is declared twice", ns.name)),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        Ok(Config {
            raw: raw.to_string(),
            text,
            warnings,
            namespaces,
            locator,
        })
    }
}

/// Parses a namespace a binding generated: one zilla.yaml document whose `name` may hold the
/// generating binding's qualified name (`ns:binding/label`), which a file could not.
pub(crate) fn parse_generated(text: &str) -> Result<NamespaceConfig, Vec<ConfigError>> {
    let value: Value = serde_yaml::from_str(text)
        .map_err(|e| vec![ConfigError::new("", format!("invalid YAML: {e}"))])?;
    parse_namespace(usize::MAX, value, false)
}

fn parse_namespace(
    doc: usize,
    value: Value,
    named_by_user: bool,
) -> Result<NamespaceConfig, Vec<ConfigError>> {
    if !value.is_mapping() {
        return Err(vec![ConfigError::new(
            "",
            "a zilla.yaml document must be a mapping with a `name`",
        )]);
    }
    let raw: RawNamespace = parse_value(value, "").map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    if named_by_user && !is_valid_name(&raw.name) {
        errors.push(ConfigError::new(
            "name",
            format!(
                "'{}' is not a valid name (letters first, then letters, digits, '.', '_' or '-')",
                raw.name
            ),
        ));
    }
    let bindings = parse_section(&raw.bindings, "bindings", &mut errors);
    let guards = parse_section(&raw.guards, "guards", &mut errors);
    let vaults = parse_section(&raw.vaults, "vaults", &mut errors);
    let catalogs = parse_section(&raw.catalogs, "catalogs", &mut errors);
    let telemetry = match raw.telemetry {
        Some(v) => match parse_value::<TelemetryConfig>(v, "telemetry") {
            Ok(t) => {
                for name in t.exporters.keys() {
                    check_name(name, &format!("telemetry.exporters.{name}"), &mut errors);
                }
                t
            }
            Err(e) => {
                errors.push(e);
                TelemetryConfig::default()
            }
        },
        None => TelemetryConfig::default(),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(NamespaceConfig {
        doc,
        name: raw.name,
        bindings,
        guards,
        vaults,
        catalogs,
        telemetry,
    })
}

fn parse_section<T: DeserializeOwned>(
    raw: &IndexMap<String, Value>,
    section: &str,
    errors: &mut Vec<ConfigError>,
) -> IndexMap<String, T> {
    let mut out = IndexMap::new();
    for (name, value) in raw {
        let base = format!("{section}.{name}");
        check_name(name, &base, errors);
        match parse_value::<T>(value.clone(), &base) {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(e) => errors.push(e),
        }
    }
    out
}

fn check_name(name: &str, path: &str, errors: &mut Vec<ConfigError>) {
    if !is_valid_name(name) {
        errors.push(ConfigError::at_key(
            path,
            format!("'{name}' is not a valid name (letters first, then letters, digits, '.', '_' or '-')"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<Config, String> {
        Config::parse("zilla.yaml", yaml, |_| None).map_err(|d| d.to_string())
    }

    #[test]
    fn parses_common_fields() {
        let c = check("name: t\nbindings:\n  a:\n    type: tcp\n    kind: server\n    exit: b\n")
            .unwrap();
        let b = &c.namespaces[0].bindings["a"];
        assert_eq!(
            (b.ty.as_str(), b.kind.as_str(), b.exit.as_deref()),
            ("tcp", "server", Some("b"))
        );
    }

    #[test]
    fn unknown_key_names_line_column_and_path() {
        let e = check("name: t\nbindings:\n  a:\n    type: tcp\n    kind: server\n    exits: b\n")
            .unwrap_err();
        assert!(
            e.starts_with("zilla.yaml:6:5: bindings.a.exits: unknown field `exits`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_the_value() {
        let e = check("name: t\nbindings:\n  a:\n    type: tcp\n    kind: server\n    routes: 3\n")
            .unwrap_err();
        assert!(
            e.starts_with("zilla.yaml:6:13: bindings.a.routes: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let e = check("name: t\nbindings:\n  a: [\n").unwrap_err();
        assert!(e.starts_with("zilla.yaml:"), "{e}");
        assert!(e.contains("invalid YAML"), "{e}");
    }

    #[test]
    fn reports_every_binding_error() {
        let e =
            check("name: t\nbindings:\n  a:\n    kind: server\n  b:\n    type: tcp\n").unwrap_err();
        assert_eq!(e.lines().count(), 2, "{e}");
    }

    #[test]
    fn empty_file_is_default_namespace() {
        let c = check("").unwrap();
        assert_eq!(c.namespaces[0].name, "default");
    }
}
