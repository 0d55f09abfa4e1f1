//! The plugin crates linked into this binary. A crate that is never named is not linked, so its
//! `inventory` registrations would be lost: name every plugin crate here once.

use binding_asyncapi as _;
use binding_echo as _;
use binding_filesystem as _;
use binding_http as _;
use binding_http_filesystem as _;
use binding_sse_client as _;
use binding_sse_server as _;
use binding_tcp as _;
use binding_tls as _;
use catalog_filesystem as _;
use catalog_inline as _;
use catalog_registry as _;
use exporter_otlp as _;
use exporter_prometheus as _;
use exporter_stdout as _;
use guard_jwt as _;
use model_avro as _;
use model_core as _;
use model_json as _;
use model_protobuf as _;
use vault_filesystem as _;

/// Keeps the plugin crates linked (called once at start-up).
pub(crate) fn link() {
    // `use x as _` above is what links them; this function gives the module a call site.
}

/// The binding types this binary must offer.
#[cfg(test)]
pub(crate) const EXPECTED_BINDINGS: &[&str] = &[
    "asyncapi",
    "echo",
    "filesystem",
    "http",
    "http-filesystem",
    "sse",
    "tcp",
    "tls",
];

/// The guard types this binary must offer.
#[cfg(test)]
pub(crate) const EXPECTED_GUARDS: &[&str] = &["jwt"];

/// The catalog types this binary must offer.
#[cfg(test)]
pub(crate) const EXPECTED_CATALOGS: &[&str] = &[
    "apicurio",
    "apicurio-registry",
    "filesystem",
    "inline",
    "karapace",
    "karapace-schema-registry",
    "schema-registry",
];

/// The model types this binary must offer.
#[cfg(test)]
pub(crate) const EXPECTED_MODELS: &[&str] = &[
    "avro", "boolean", "double", "float", "int32", "int64", "json", "protobuf", "string",
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_expected_binding_type_is_registered() {
        super::link();
        let registered = zilla_engine::registered();
        for expected in super::EXPECTED_BINDINGS {
            assert!(
                registered.bindings.contains(expected),
                "binding type '{expected}' not registered"
            );
        }
    }

    #[test]
    fn every_expected_catalog_and_model_type_is_registered() {
        super::link();
        let registered = zilla_engine::registered();
        for expected in super::EXPECTED_CATALOGS {
            assert!(
                registered.catalogs.contains(expected),
                "catalog type '{expected}' not registered"
            );
        }
        for expected in super::EXPECTED_MODELS {
            assert!(
                registered.models.contains(expected),
                "model type '{expected}' not registered"
            );
        }
    }

    #[test]
    fn every_expected_guard_type_is_registered() {
        super::link();
        let registered = zilla_engine::registered();
        for expected in super::EXPECTED_GUARDS {
            assert!(
                registered.guards.contains(expected),
                "guard type '{expected}' not registered"
            );
        }
    }
}
