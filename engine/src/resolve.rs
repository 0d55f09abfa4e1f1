//! Names declared in a config, resolved at build time into typed handles: guards, vaults,
//! catalogs, and models built from their inline config.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_yaml::{Mapping, Value};

use crate::catalog::{Catalog, CatalogHandle, CatalogId, SchemaRef, SchemaSelector};
use crate::config::{parse_value, suggestion, ConfigError};
use crate::events::Events;
use crate::guard::{Guard, GuardId};
use crate::model::{model_types, CatalogEntryConfig, Model, ModelConfig, ModelContext};
use crate::plugin::Vault;
use crate::properties::Properties;

/// `namespace:name`, unless `name` is already qualified.
pub(crate) fn qualify(namespace: &str, name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("{namespace}:{name}")
    }
}

/// Finds `name` (plain or qualified) among qualified names; the error suggests a close name
/// of the same namespace.
pub(crate) fn lookup(
    map: &HashMap<String, usize>,
    namespace: &str,
    name: &str,
    what: &str,
    path: &str,
) -> Result<usize, ConfigError> {
    let q = qualify(namespace, name);
    map.get(&q).copied().ok_or_else(|| {
        let prefix = format!("{namespace}:");
        let candidates: Vec<&str> = map.keys().filter_map(|k| k.strip_prefix(&prefix)).collect();
        ConfigError::new(
            path,
            format!(
                "no {what} named '{name}'{}",
                suggestion(name, candidates.iter().copied())
            ),
        )
    })
}

/// One kind of named plugin: the built handlers and their qualified names.
pub(crate) struct Named<T: ?Sized> {
    pub(crate) handles: Vec<Arc<T>>,
    pub(crate) names: HashMap<String, usize>,
}

impl<T: ?Sized> Default for Named<T> {
    fn default() -> Self {
        Named {
            handles: Vec::new(),
            names: HashMap::new(),
        }
    }
}

impl<T: ?Sized> Named<T> {
    fn name_of(&self, index: usize) -> &str {
        self.names
            .iter()
            .find(|(_, &i)| i == index)
            .map_or("", |(n, _)| n.as_str())
    }
}

/// The named plugins of one config (guards, vaults, catalogs), shared by every binding's
/// build context.
pub(crate) struct Plugins {
    pub(crate) guards: Named<dyn Guard>,
    pub(crate) vaults: Named<dyn Vault>,
    pub(crate) catalogs: Named<dyn Catalog>,
    pub(crate) properties: Arc<Properties>,
    pub(crate) config_dir: PathBuf,
    pub(crate) events: Events,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins").finish_non_exhaustive()
    }
}

impl Plugins {
    pub(crate) fn guard(&self, ns: &str, name: &str, path: &str) -> Result<GuardId, ConfigError> {
        lookup(&self.guards.names, ns, name, "guard", path)
            .map(GuardId)
            .map_err(|e| ConfigError { at_key: true, ..e })
    }

    pub(crate) fn vault(
        &self,
        ns: &str,
        name: &str,
        path: &str,
    ) -> Result<Arc<dyn Vault>, ConfigError> {
        lookup(&self.vaults.names, ns, name, "vault", path).map(|i| self.vaults.handles[i].clone())
    }

    pub(crate) fn catalog(
        &self,
        ns: &str,
        name: &str,
        path: &str,
    ) -> Result<CatalogHandle, ConfigError> {
        let i = lookup(&self.catalogs.names, ns, name, "catalog", path)
            .map_err(|e| ConfigError { at_key: true, ..e })?;
        Ok(CatalogHandle {
            id: CatalogId(i),
            name: self.catalogs.name_of(i).into(),
            catalog: self.catalogs.handles[i].clone(),
        })
    }

    pub(crate) fn model(
        &self,
        ns: &str,
        config: &ModelConfig,
        path: &str,
    ) -> Result<Arc<dyn Model>, ConfigError> {
        let (name, mut own, name_path) = match &config.0 {
            Value::String(s) => (s.clone(), Mapping::new(), path.to_string()),
            Value::Mapping(m) => {
                let mut own = m.clone();
                let name = own
                    .remove("model")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                (name, own, format!("{path}.model"))
            }
            _ => return Err(ConfigError::new(path, "expected a model")),
        };
        let types = model_types();
        let Some(d) = types.iter().find(|d| d.type_name == name) else {
            let known: Vec<&str> = types.iter().map(|d| d.type_name).collect();
            return Err(ConfigError::new(
                name_path,
                format!(
                    "unknown model '{name}' (registered: {}){}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    },
                    suggestion(&name, known.iter().copied())
                ),
            ));
        };
        let catalog = own.remove("catalog");
        let schema = match (d.cataloged, catalog) {
            (true, Some(c)) => Some(self.schema_ref(ns, c, &format!("{path}.catalog"))?),
            (true, None) => {
                return Err(ConfigError::new(
                    path,
                    format!("model '{name}' needs a `catalog` holding its schema"),
                ))
            }
            (false, Some(_)) => {
                return Err(ConfigError::at_key(
                    format!("{path}.catalog"),
                    format!("model '{name}' takes no `catalog`"),
                ))
            }
            (false, None) => None,
        };
        let cx = ModelContext {
            path: path.to_string(),
            schema,
            properties: self.properties.clone(),
            config_dir: self.config_dir.clone(),
        };
        d.build(&cx, Value::Mapping(own))
    }

    fn schema_ref(&self, ns: &str, catalog: Value, path: &str) -> Result<SchemaRef, ConfigError> {
        let Value::Mapping(m) = catalog else {
            return Err(ConfigError::new(
                path,
                "expected one catalog name with a list of schemas",
            ));
        };
        if m.len() != 1 {
            return Err(ConfigError::new(
                path,
                format!("name exactly one catalog (found {})", m.len()),
            ));
        }
        let (key, entries) = m.into_iter().next().expect("one entry");
        let name = key.as_str().unwrap_or_default().to_string();
        let catalog = self.catalog(ns, &name, &format!("{path}.{name}"))?;
        let entry_path = format!("{path}.{name}[0]");
        let first = match entries {
            Value::Sequence(items) if !items.is_empty() => items.into_iter().next(),
            _ => None,
        }
        .ok_or_else(|| {
            ConfigError::new(
                format!("{path}.{name}"),
                "expected a list of at least one schema ({subject: ...} or {id: ...})",
            )
        })?;
        let e = parse_value::<CatalogEntryConfig>(first, &entry_path)?;
        let version = e.version.unwrap_or_else(|| "latest".to_string());
        let selector = match (e.id, e.subject, e.strategy) {
            (Some(id), None, None) => SchemaSelector::Id(id),
            (None, Some(subject), None) => SchemaSelector::Subject { subject, version },
            (None, None, Some(strategy)) => SchemaSelector::Strategy { strategy, version },
            _ => {
                return Err(ConfigError::new(
                    entry_path,
                    "give exactly one of `subject`, `id` or `strategy`",
                ))
            }
        };
        if let SchemaSelector::Subject { subject, version } = &selector {
            if let Some(known) = catalog.catalog.subjects() {
                if catalog.catalog.resolve(subject, version).is_none() {
                    let message = if known.iter().any(|k| k == subject) {
                        format!(
                            "catalog '{name}' has no subject '{subject}' at version '{version}' (its version is matched exactly, as Zilla does)"
                        )
                    } else {
                        format!(
                            "catalog '{name}' has no subject '{subject}'{}",
                            suggestion(subject, known.iter().map(String::as_str))
                        )
                    };
                    return Err(ConfigError::new(format!("{entry_path}.subject"), message));
                }
            }
        }
        Ok(SchemaRef {
            catalog,
            selector,
            record: e.record,
        })
    }
}
