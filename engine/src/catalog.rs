//! Catalogs: schemas by subject and version, as models and the asyncapi binding use them.
//!
//! A catalog type is a [`crate::PluginFactory`] for `dyn Catalog`, registered with
//! `inventory::submit! { CatalogDescriptor::new::<MyCatalog>() }`. Bindings never see catalog
//! types: they name a catalog in their options and get a [`CatalogHandle`] from
//! [`crate::BindingContext::catalog`], or a built model from [`crate::BindingContext::model`].

use std::fmt;
use std::sync::Arc;

/// Index of a catalog in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CatalogId(pub usize);

/// A catalog handler. Every call answers at once: a catalog that fetches from a registry
/// answers from its cache and refreshes in the background, so nothing on a stream's path ever
/// waits on the network.
pub trait Catalog: Send + Sync + fmt::Debug + 'static {
    /// The id of the schema registered for `subject` at `version` (`latest` allowed), if known
    /// now.
    fn resolve(&self, subject: &str, version: &str) -> Option<u32>;

    /// The schema text of `id`, if known now.
    fn schema(&self, id: u32) -> Option<Arc<str>>;

    /// Splits a registry wire prefix off `payload`: the schema id it names and the payload
    /// after it. Catalogs without a prefix (inline, filesystem) return `None`.
    fn decode<'a>(&self, payload: &'a [u8]) -> Option<(u32, &'a [u8])> {
        let _ = payload;
        None
    }

    /// The subjects a local catalog holds, so the engine can refuse a model naming one it does
    /// not (with a suggestion); `None` for a remote catalog, which is only asked at run time.
    fn subjects(&self) -> Option<Vec<String>> {
        None
    }

    /// Waits until `subject` at `version` is resolved or a first attempt has failed, and
    /// returns its id. For load-time users (the asyncapi binding reads its document this way);
    /// local catalogs answer at once.
    fn resolve_now(&self, subject: &str, version: &str) -> Option<u32> {
        self.resolve(subject, version)
    }
}

/// A catalog resolved by name at build time.
#[derive(Clone)]
pub struct CatalogHandle {
    /// Its id in the graph.
    pub id: CatalogId,
    /// Its qualified name (`namespace:name`).
    pub name: Arc<str>,
    /// The handler.
    pub catalog: Arc<dyn Catalog>,
}

impl fmt::Debug for CatalogHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogHandle")
            .field("name", &self.name)
            .finish()
    }
}

/// Which schema of a catalog: one entry of a model's `catalog` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSelector {
    /// A fixed schema id (`id: 42`).
    Id(u32),
    /// A subject at a version (`subject: items`, `version: latest`).
    Subject {
        /// The subject.
        subject: String,
        /// The version (`latest` by default).
        version: String,
    },
    /// A subject the binding derives (`strategy: topic`); SSE and HTTP provide none.
    Strategy {
        /// The strategy name.
        strategy: String,
        /// The version.
        version: String,
    },
}

/// A model's schema source: a catalog and which of its schemas.
#[derive(Debug, Clone)]
pub struct SchemaRef {
    /// The catalog.
    pub catalog: CatalogHandle,
    /// The entry.
    pub selector: SchemaSelector,
    /// Protobuf's `record` (message name), when given.
    pub record: Option<String>,
}

impl SchemaRef {
    /// The schema id this reference names now, if the catalog knows it.
    pub fn id(&self) -> Option<u32> {
        match &self.selector {
            SchemaSelector::Id(id) => Some(*id),
            SchemaSelector::Subject { subject, version } => {
                self.catalog.catalog.resolve(subject, version)
            }
            SchemaSelector::Strategy { .. } => None,
        }
    }

    /// The schema text of `id` from this reference's catalog.
    pub fn schema(&self, id: u32) -> Option<Arc<str>> {
        self.catalog.catalog.schema(id)
    }

    /// `catalog host_filesystem subject event version latest` (or `... id 42`), for messages.
    pub fn describe(&self) -> String {
        let name = self
            .catalog
            .name
            .split_once(':')
            .map_or(&*self.catalog.name, |(_, n)| n);
        match &self.selector {
            SchemaSelector::Id(id) => format!("catalog {name} id {id}"),
            SchemaSelector::Subject { subject, version } => {
                format!("catalog {name} subject {subject} version {version}")
            }
            SchemaSelector::Strategy { strategy, version } => {
                format!("catalog {name} strategy {strategy} version {version}")
            }
        }
    }
}

/// The schemas of a local catalog (inline, filesystem): every subject known at build time, ids
/// as Zilla computes them (the CRC32C of the schema text, so two subjects with the same text
/// share an id). Read-only once built; lookups take no lock.
#[derive(Debug, Default)]
pub struct LocalSchemas {
    /// `(subject, version)` -> id; a `None` version matches any version asked for.
    entries: Vec<(String, Option<String>, u32)>,
    texts: std::collections::HashMap<u32, Arc<str>>,
}

impl LocalSchemas {
    /// An empty set.
    pub fn new() -> Self {
        LocalSchemas::default()
    }

    /// Adds `subject` at `version` (`None`: any version) with schema `text`; returns its id.
    pub fn insert(&mut self, subject: &str, version: Option<&str>, text: &str) -> u32 {
        let id = crc32c::crc32c(text.as_bytes());
        self.entries
            .push((subject.to_string(), version.map(str::to_string), id));
        self.texts.entry(id).or_insert_with(|| text.into());
        id
    }
}

impl Catalog for LocalSchemas {
    fn resolve(&self, subject: &str, version: &str) -> Option<u32> {
        self.entries
            .iter()
            .find(|(s, v, _)| s == subject && v.as_deref().is_none_or(|v| v == version))
            .map(|(_, _, id)| *id)
    }

    fn schema(&self, id: u32) -> Option<Arc<str>> {
        self.texts.get(&id).cloned()
    }

    fn subjects(&self) -> Option<Vec<String>> {
        Some(self.entries.iter().map(|(s, _, _)| s.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_crc32c_of_the_text_and_versions_match_exactly() {
        let mut s = LocalSchemas::new();
        let a = s.insert("items", Some("latest"), "{\"type\":\"string\"}");
        let b = s.insert("other", Some("1"), "{\"type\":\"string\"}");
        let any = s.insert("file", None, "{}");
        assert_eq!(a, crc32c::crc32c(b"{\"type\":\"string\"}"));
        assert_eq!(a, b, "same text, same id");
        assert_eq!(s.resolve("items", "latest"), Some(a));
        assert_eq!(s.resolve("items", "1"), None, "version is an exact match");
        assert_eq!(s.resolve("other", "1"), Some(b));
        assert_eq!(s.resolve("other", "latest"), None);
        assert_eq!(s.resolve("file", "7"), Some(any), "no version: any matches");
        assert_eq!(s.schema(a).as_deref(), Some("{\"type\":\"string\"}"));
        assert_eq!(s.schema(12345), None);
    }
}
