//! Named plugins (guards, vaults, catalogs, exporters): one registration mechanism.
//!
//! Each is a [`PluginFactory`] for its handler trait, registered with
//! `inventory::submit! { GuardDescriptor::new::<MyGuard>() }` (or `VaultDescriptor`,
//! `CatalogDescriptor`, `ExporterDescriptor`). Models are not named in zilla.yaml; they have
//! their own factory (`crate::ModelFactory`).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::catalog::Catalog;
use crate::config::{parse_value, ConfigError, ConfigErrors};
use crate::events::Events;
use crate::graph::AttachError;
use crate::guard::{Guard, GuardId};
use crate::metrics::{MetricScope, Metrics};
use crate::properties::Properties;

/// Index of a vault in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VaultId(pub usize);

/// What a plugin's build function gets.
#[derive(Debug)]
pub struct PluginContext {
    /// Index of the plugin among those of its kind (its [`GuardId`], [`VaultId`], ...).
    pub index: usize,
    /// Namespace name.
    pub namespace: String,
    /// Path of this plugin in the document, e.g. `guards.authn_jwt`.
    pub path: String,
    /// Engine properties.
    pub properties: Arc<Properties>,
    /// Directory of the config file, for relative paths.
    pub config_dir: PathBuf,
    /// The vault named by the plugin's `vault` key (catalogs: TLS material for a registry).
    pub vault: Option<Arc<dyn Vault>>,
    /// Where the plugin reports events (a registry that stopped answering).
    pub events: Events,
    /// The metrics the plugin records (those its namespace's `telemetry.metrics` lists).
    pub metrics: MetricScope,
    /// The namespace's `telemetry.attributes` (exporters send them with what they export).
    pub attributes: Vec<(String, String)>,
}

impl PluginContext {
    /// An error about `rel` under this plugin (e.g. `options.keys`).
    pub fn error(&self, rel: &str, message: impl Into<String>) -> ConfigError {
        let path = if rel.is_empty() {
            self.path.clone()
        } else {
            format!("{}.{rel}", self.path)
        };
        ConfigError::new(path, message)
    }

    /// The plugin's qualified name (`namespace:name`), the source of the events it reports.
    pub fn qualified_name(&self) -> String {
        let name = self.path.rsplit('.').next().unwrap_or(&self.path);
        format!("{}:{name}", self.namespace)
    }

    /// This plugin's guard id (meaningful for guards).
    pub fn guard_id(&self) -> GuardId {
        GuardId(self.index)
    }
}

/// A plugin type producing handlers of trait `T` (`dyn Guard`, `dyn Vault`, ...).
pub trait PluginFactory<T: ?Sized>: 'static {
    /// The `type` name in zilla.yaml.
    const TYPE: &'static str;
    /// The `options` section.
    type Options: DeserializeOwned + JsonSchema;
    /// Builds the handler. Errors name key paths under the plugin ([`PluginContext::error`]).
    fn build(cx: &PluginContext, options: Option<Self::Options>) -> Result<Arc<T>, ConfigErrors>;
}

/// A registered plugin type.
pub struct PluginDescriptor<T: ?Sized + 'static> {
    /// `type` name.
    pub type_name: &'static str,
    /// Schema of `options`.
    pub options_schema: fn(&mut SchemaGenerator) -> Schema,
    build: fn(&PluginContext, Option<Value>) -> Result<Arc<T>, ConfigErrors>,
}

impl<T: ?Sized + 'static> fmt::Debug for PluginDescriptor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginDescriptor")
            .field("type_name", &self.type_name)
            .finish()
    }
}

impl<T: ?Sized + 'static> PluginDescriptor<T> {
    /// The descriptor of factory `F`.
    pub const fn new<F: PluginFactory<T>>() -> Self {
        PluginDescriptor {
            type_name: F::TYPE,
            options_schema: schema_of::<F::Options>,
            build: build_plugin::<T, F>,
        }
    }

    /// Parses `options` and builds the handler.
    pub fn build(
        &self,
        cx: &PluginContext,
        options: Option<Value>,
    ) -> Result<Arc<T>, ConfigErrors> {
        (self.build)(cx, options)
    }
}

fn build_plugin<T: ?Sized + 'static, F: PluginFactory<T>>(
    cx: &PluginContext,
    options: Option<Value>,
) -> Result<Arc<T>, ConfigErrors> {
    let options = match options {
        Some(v) => Some(parse_value::<F::Options>(
            v,
            &format!("{}.options", cx.path),
        )?),
        None => None,
    };
    F::build(cx, options)
}

/// A vault: named keys and certificates for TLS.
pub trait Vault: Send + Sync + fmt::Debug + 'static {
    /// The private key and certificate chain stored under `alias`.
    fn key(&self, alias: &str) -> Option<KeyEntry>;
    /// The trusted certificate (DER) stored under `alias`.
    fn trust(&self, alias: &str) -> Option<Bytes>;
    /// Every alias in the `keys` store.
    fn key_aliases(&self) -> Vec<String>;
    /// Every alias in the `trust` store.
    fn trust_aliases(&self) -> Vec<String>;
    /// The CA certificate (DER) stored under `alias` in the `signers` store.
    fn signer(&self, alias: &str) -> Option<Bytes> {
        let _ = alias;
        None
    }
    /// Every alias in the `signers` store.
    fn signer_aliases(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A private key with its certificate chain, DER encoded.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// PKCS#8 private key.
    pub key: Bytes,
    /// Certificate chain, leaf first.
    pub chain: Vec<Bytes>,
}

/// An engine or binding event, as exporters see it.
#[derive(Debug, Clone)]
pub struct Event {
    /// `namespace:binding` (or `namespace` for engine events).
    pub source: String,
    /// Event name, upper case (`ENGINE_STARTED`).
    pub name: &'static str,
    /// Trace id of the stream, 0 for engine events.
    pub trace_id: u64,
    /// Human-readable text.
    pub message: String,
    /// When it happened.
    pub time: std::time::SystemTime,
}

/// An exporter: where events and metrics go.
pub trait Exporter: Send + Sync + fmt::Debug + 'static {
    /// Receives one event (exporters of metrics only ignore it).
    fn event(&self, event: &Event) {
        let _ = event;
    }

    /// Starts serving or sending `metrics` once the graph is attached (a prometheus endpoint
    /// listens, an otlp exporter starts its timer). Returns the endpoints it listens on.
    fn attach(&self, metrics: &Metrics) -> Result<Vec<String>, AttachError> {
        let _ = metrics;
        Ok(Vec::new())
    }

    /// Stops what [`Exporter::attach`] started (on reload, after the new graph attached).
    fn detach(&self) {}
}

/// A registered guard type.
pub type GuardDescriptor = PluginDescriptor<dyn Guard>;
/// A registered vault type.
pub type VaultDescriptor = PluginDescriptor<dyn Vault>;
/// A registered catalog type.
pub type CatalogDescriptor = PluginDescriptor<dyn Catalog>;
/// A registered exporter type.
pub type ExporterDescriptor = PluginDescriptor<dyn Exporter>;

inventory::collect!(GuardDescriptor);
inventory::collect!(VaultDescriptor);
inventory::collect!(CatalogDescriptor);
inventory::collect!(ExporterDescriptor);

/// Every registered plugin of handler trait `T`, sorted by type name.
pub fn plugin_types<T: ?Sized + 'static>() -> Vec<&'static PluginDescriptor<T>>
where
    PluginDescriptor<T>: inventory::Collect,
{
    let mut all: Vec<_> = inventory::iter::<PluginDescriptor<T>>.into_iter().collect();
    all.sort_by_key(|d| d.type_name);
    all
}

pub(crate) fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}
