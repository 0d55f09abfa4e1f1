//! Engine properties (`-P name=value`), with typed getters.

use std::collections::BTreeMap;
use std::time::Duration;

/// Engine and binding properties, set with `-P name=value` (a bare `name` means `true`).
#[derive(Debug, Clone, Default)]
pub struct Properties {
    values: BTreeMap<String, String>,
}

impl Properties {
    /// Parses `name=value` items.
    pub fn from_args<'a>(items: impl IntoIterator<Item = &'a str>) -> Self {
        let mut values = BTreeMap::new();
        for item in items {
            match item.split_once('=') {
                Some((k, v)) => values.insert(k.trim().to_string(), v.trim().to_string()),
                None => values.insert(item.trim().to_string(), "true".to_string()),
            };
        }
        Properties { values }
    }

    /// Sets one property.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_string(), value.into());
    }

    /// The raw value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A boolean (`true`/`false`), or `default`.
    pub fn bool(&self, name: &str, default: bool) -> bool {
        match self.get(name) {
            Some(v) => v.eq_ignore_ascii_case("true"),
            None => default,
        }
    }

    /// An unsigned integer, or `default` when absent or not a number.
    pub fn usize(&self, name: &str, default: usize) -> usize {
        self.get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// A duration: `250ms`, `2s`, `PT30S` (ISO-8601 seconds/minutes), or plain seconds.
    pub fn duration(&self, name: &str, default: Duration) -> Duration {
        self.get(name).and_then(parse_duration).unwrap_or(default)
    }

    /// Every property.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Parses `250ms`, `2s`, `1.5s`, `PT30S`, `PT1M` or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(iso) = s.strip_prefix("PT").or_else(|| s.strip_prefix("pt")) {
        let (num, unit) = iso.split_at(iso.len().checked_sub(1)?);
        let n: f64 = num.parse().ok()?;
        return match unit {
            "S" | "s" => Some(Duration::from_secs_f64(n)),
            "M" | "m" => Some(Duration::from_secs_f64(n * 60.0)),
            "H" | "h" => Some(Duration::from_secs_f64(n * 3600.0)),
            _ => None,
        };
    }
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .trim()
            .parse::<f64>()
            .ok()
            .map(|n| Duration::from_secs_f64(n / 1000.0));
    }
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| *n >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("PT30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn bare_name_is_true() {
        let p = Properties::from_args(["a", "b=false", "c=7"]);
        assert!(p.bool("a", false));
        assert!(!p.bool("b", true));
        assert_eq!(p.usize("c", 0), 7);
    }
}
