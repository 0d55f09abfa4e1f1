//! The `filesystem` catalog: schemas read from files, paths relative to zilla.yaml.
//!
//! ```yaml
//! catalogs:
//!   host_filesystem:
//!     type: filesystem
//!     options:
//!       subjects:
//!         event:
//!           path: schemas/event.json
//! ```
//!
//! Each file is read when the config is built (at start and on every reload). A file that
//! cannot be read is a config error naming it (Zilla logs an event and rejects every message
//! later). As Zilla: the id is the CRC32C of the file's content and `version` is ignored.

use std::sync::Arc;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use zilla_engine::{
    Catalog, CatalogDescriptor, ConfigErrors, LocalSchemas, PluginContext, PluginFactory,
};

/// The `filesystem` catalog type.
#[derive(Debug)]
pub struct FilesystemCatalogFactory;

zilla_engine::inventory::submit! { CatalogDescriptor::new::<FilesystemCatalogFactory>() }

/// `options` of a filesystem catalog.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesystemCatalogOptions {
    /// The schema files, by subject name.
    pub subjects: IndexMap<String, FilesystemSubject>,
}

/// One subject of a filesystem catalog.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesystemSubject {
    /// The schema file, relative to the directory of zilla.yaml.
    pub path: String,
}

impl PluginFactory<dyn Catalog> for FilesystemCatalogFactory {
    const TYPE: &'static str = "filesystem";
    type Options = FilesystemCatalogOptions;

    fn build(
        cx: &PluginContext,
        options: Option<FilesystemCatalogOptions>,
    ) -> Result<Arc<dyn Catalog>, ConfigErrors> {
        let options =
            options.ok_or_else(|| cx.error("", "a filesystem catalog needs `options.subjects`"))?;
        let mut errors = ConfigErrors::new();
        let mut schemas = LocalSchemas::new();
        for (name, subject) in &options.subjects {
            let file = cx.config_dir.join(&subject.path);
            match std::fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => {
                        schemas.insert(name, None, &text);
                    }
                    Err(_) => errors.push(cx.error(
                        &format!("options.subjects.{name}.path"),
                        format!("'{}' is not UTF-8 text", file.display()),
                    )),
                },
                Err(e) => errors.push(cx.error(
                    &format!("options.subjects.{name}.path"),
                    format!(
                        "cannot read '{}': {e} (paths are relative to the directory of zilla.yaml)",
                        file.display()
                    ),
                )),
            }
        }
        errors.or(Arc::new(schemas) as Arc<dyn Catalog>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(dir: &std::path::Path, yaml: &str) -> Result<Arc<dyn Catalog>, ConfigErrors> {
        let options: FilesystemCatalogOptions = serde_yaml::from_str(yaml).expect("options parse");
        let cx = PluginContext {
            index: 0,
            namespace: "test".into(),
            path: "catalogs.host_filesystem".into(),
            properties: Arc::default(),
            config_dir: dir.to_path_buf(),
            vault: None,
            events: Default::default(),
            metrics: Default::default(),
            attributes: Vec::new(),
        };
        FilesystemCatalogFactory::build(&cx, Some(options))
    }

    #[test]
    fn reads_files_relative_to_the_config_and_ignores_versions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("schemas")).unwrap();
        std::fs::write(dir.path().join("schemas/event.json"), "123456789").unwrap();
        let c = build(
            dir.path(),
            "subjects:\n  event:\n    path: schemas/event.json\n",
        )
        .unwrap();
        assert_eq!(c.resolve("event", "latest"), Some(0xE306_9283));
        assert_eq!(c.resolve("event", "7"), Some(0xE306_9283));
        assert_eq!(c.schema(0xE306_9283).as_deref(), Some("123456789"));
        assert_eq!(c.resolve("other", "latest"), None);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = build(dir.path(), "subjects:\n  event:\n    path: nope.json\n").unwrap_err();
        assert_eq!(
            e.0[0].path,
            "catalogs.host_filesystem.options.subjects.event.path"
        );
        assert!(e.0[0].message.contains("nope.json"), "{}", e.0[0].message);
        assert!(
            e.0[0].message.contains("No such file"),
            "{}",
            e.0[0].message
        );
    }
}
