//! The zilla engine core: the config model, the plugin registry and the stream graph.
//!
//! This crate names no protocol. Bindings, guards, vaults, catalogs, models and exporters are
//! plugin crates that register themselves with `inventory`; see `docs/ARCHITECTURE.md`.
//!
//! Modules are private; everything a plugin or an embedder uses is re-exported here, once.

mod background;
mod binding;
mod build;
mod catalog;
pub mod config;
mod engine;
mod events;
mod expression;
mod graph;
mod guard;
mod kind;
mod meter;
mod metrics;
mod model;
mod pattern;
mod plugin;
mod properties;
mod resolve;
mod schema;
mod stream;

pub use background::{background, block_on_background};
pub use binding::{
    binding_types, BindingContext, BindingDescriptor, BindingFactory, Captures, GenerateContext,
    Generated, Nothing, Roles, Route, Routes,
};
pub use build::{build, registered, BuildEnv, Registered};
pub use catalog::{Catalog, CatalogHandle, CatalogId, LocalSchemas, SchemaRef, SchemaSelector};
pub use config::{ConfigError, ConfigErrors};
pub use engine::{Engine, Reload, StartError, Started};
pub use events::Events;
pub use expression::{Template, Values};
pub use graph::{
    handler_binding, AnyHandler, AttachError, Binding, BindingId, Graph, Handler, Stream, Workers,
    DEFAULT_WINDOW,
};
pub use guard::{Guard, GuardId, Session};
pub use kind::{Kind, Protocols};
pub use metrics::{
    histogram_bound, metric_descriptor, metric_descriptors, Counter, Gauge, Histogram,
    HistogramSnapshot, Instrument, MetricDescriptor, MetricEntry, MetricKind, MetricScope,
    MetricUnit, Metrics, HISTOGRAM_BUCKETS,
};
pub use model::{
    model_types, CompiledSchema, Invalid, Model, ModelConfig, ModelContext, ModelDescriptor,
    ModelFactory, Why,
};
pub use pattern::{glob_match, Pattern};
pub use plugin::{
    plugin_types, CatalogDescriptor, Event, Exporter, ExporterDescriptor, GuardDescriptor,
    KeyEntry, PluginContext, PluginDescriptor, PluginFactory, Vault, VaultDescriptor, VaultId,
};
pub use properties::{parse_duration, Properties};
pub use schema::schema;
pub use stream::{direction, flags, Data, Frame, Protocol, Reset, Rx, Signal, Source, Tx};

/// Re-exported so plugin crates register with the same `inventory` version as the engine.
pub use inventory;
