//! The zilla engine core: the config model, the plugin registry and the stream graph.
//!
//! This crate names no protocol. Bindings, guards, vaults, catalogs, models and exporters are
//! plugin crates that register themselves with `inventory`; see `docs/ARCHITECTURE.md`.

pub mod binding;
pub mod config;
pub mod engine;
pub mod graph;
pub mod guard;
pub mod pattern;
pub mod plugin;
pub mod properties;
pub mod schema;
pub mod stream;

pub use binding::{
    AnyHandler, Binding, BindingContext, BindingDescriptor, BindingFactory, Handler, Kind, Nothing,
    Protocols, Route, Routes, Stream,
};
pub use config::ConfigError;
pub use engine::{Engine, Reload, StartError, Started};
pub use graph::{BindingId, Graph, Workers};
pub use guard::{Guard, GuardId, Session};
pub use plugin::{
    CatalogDescriptor, Event, Exporter, ExporterDescriptor, GuardDescriptor, ModelDescriptor,
    PluginContext, PluginFactory, VaultDescriptor,
};
pub use properties::Properties;
pub use stream::{flags, Data, Ext, Frame, Protocol, Reset, Rx, Signal, Tx};

/// Re-exported so plugin crates register with the same `inventory` version as the engine.
pub use inventory;
