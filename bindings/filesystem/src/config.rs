//! Options of the `filesystem` binding, as zilla.yaml spells them.

use schemars::JsonSchema;
use serde::Deserialize;

/// Options of the `filesystem` server.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesystemOptions {
    /// The directory served, ending with `/` (`/var/www/`, `www/` or `file:///var/www/`). A
    /// relative directory resolves against the working directory of `zilla` (or the property
    /// `zilla.binding.filesystem.server.root`), not the directory of zilla.yaml.
    pub location: String,
    /// Whether symbolic links under the location are followed (`follow`) or refused
    /// (`ignore`, the default). Followed links must still end inside the location.
    #[serde(default)]
    pub symlinks: Symlinks,
}

/// How symbolic links are treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "FilesystemSymlinks")]
pub enum Symlinks {
    /// Follow links whose target stays inside the location.
    Follow,
    /// Refuse any path that crosses a link.
    #[default]
    Ignore,
}
