//! Config diagnostics that name the file, line, column and key path.

use std::fmt;

use super::position::{Position, PositionIndex};

/// An error found in one part of a config, with the key path it is about.
///
/// Plugins return these from their build functions; the engine adds the file and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path inside the document, e.g. `bindings.app0.options.port`.
    pub path: String,
    /// What is wrong, and where possible what to do (`did you mean ...`).
    pub message: String,
    /// Point at the key rather than its value (unknown keys).
    pub at_key: bool,
}

impl ConfigError {
    /// An error about the value at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            at_key: false,
        }
    }

    /// An error about the key at `path` (an unknown or forbidden key).
    pub fn at_key(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            at_key: true,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every error one plugin found while building: what `BindingFactory::build` and
/// `PluginFactory::build` return. A single [`ConfigError`] converts into it, so helpers that
/// return one error compose with `?`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// No errors yet.
    pub fn new() -> Self {
        ConfigErrors(Vec::new())
    }

    /// Adds one error.
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    /// Records the error of `r`, if any, and returns its value.
    pub fn take<T>(&mut self, r: Result<T, impl Into<ConfigErrors>>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.extend(e.into().0);
                None
            }
        }
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` if there are no errors, else `Err(self)`.
    pub fn or<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl From<Vec<ConfigError>> for ConfigErrors {
    fn from(es: Vec<ConfigError>) -> Self {
        ConfigErrors(es)
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A config error located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file as the user named it.
    pub file: String,
    /// Line and column, when known.
    pub position: Option<Position>,
    /// Key path, empty for whole-file errors.
    pub path: String,
    /// The message.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found while loading a config (all of them, not just the first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Locates [`ConfigError`]s in one config text.
#[derive(Debug)]
pub struct Locator {
    file: String,
    index: PositionIndex,
}

impl Locator {
    /// Indexes `text`, shown to users as `file`.
    pub fn new(file: impl Into<String>, text: &str) -> Self {
        Locator {
            file: file.into(),
            index: PositionIndex::new(text),
        }
    }

    /// The file name diagnostics use.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Turns an error in document `doc` into a located diagnostic.
    pub fn locate(&self, doc: usize, e: ConfigError) -> Diagnostic {
        let position = if e.at_key {
            self.index.key(doc, &e.path)
        } else {
            self.index.value(doc, &e.path)
        };
        Diagnostic {
            file: self.file.clone(),
            position,
            path: e.path,
            message: e.message,
        }
    }
}

/// The closest of `candidates` to `name`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// ` (did you mean 'x'?)` or the empty string.
pub fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(name, candidates)
        .map(|c| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}
