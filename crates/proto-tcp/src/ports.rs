//! Port sets as zilla.yaml writes them (tcp `port` options, tcp and tls `when.port`).

use std::ops::RangeInclusive;

use schemars::JsonSchema;
use serde::Deserialize;

/// A set of ports: a number, a `"N"` or `"N-M"` string, or a list of those.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(try_from = "PortsConfig")]
pub struct Ports(Vec<RangeInclusive<u16>>);

/// The written form of [`Ports`].
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortsConfig {
    /// One port or range.
    One(PortConfig),
    /// Several ports or ranges.
    Many(Vec<PortConfig>),
}

/// One port (`7114`) or range (`"9000-9001"`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortConfig {
    /// A port number.
    Number(u16),
    /// `"N"` or `"N-M"`.
    Text(String),
}

impl TryFrom<PortsConfig> for Ports {
    type Error = String;

    fn try_from(c: PortsConfig) -> Result<Self, String> {
        let items = match c {
            PortsConfig::One(p) => vec![p],
            PortsConfig::Many(ps) => ps,
        };
        if items.is_empty() {
            return Err("expected at least one port".into());
        }
        items
            .into_iter()
            .map(|p| match p {
                PortConfig::Number(n) => Ok(n..=n),
                PortConfig::Text(t) => parse_range(&t),
            })
            .collect::<Result<_, _>>()
            .map(Ports)
    }
}

fn parse_range(t: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || {
        format!(
            "invalid port '{t}': expected a number from 0 to 65535 or a range like \"9000-9010\""
        )
    };
    match t.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u16, u16) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a > b {
                return Err(format!("invalid port range '{t}': {a} is greater than {b}"));
            }
            Ok(a..=b)
        }
        None => t.trim().parse().map(|n| n..=n).map_err(|_| bad()),
    }
}

impl Ports {
    /// True if `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|r| r.contains(&port))
    }

    /// Every port, in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().flat_map(|r| r.clone())
    }

    /// How many ports.
    pub fn len(&self) -> usize {
        self.0
            .iter()
            .map(|r| usize::from(r.end() - r.start()) + 1)
            .sum()
    }

    /// Never true: parsing rejects an empty set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_forms() {
        let p: Ports = serde_json::from_str("[7143, \"9000-9001\", \"80\"]").unwrap();
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![7143, 9000, 9001, 80]);
        assert!(p.contains(9001) && !p.contains(9002));
        let one: Ports = serde_json::from_str("7114").unwrap();
        assert_eq!(one.len(), 1);
        assert!(serde_json::from_str::<Ports>("\"9-1\"").is_err());
        assert!(serde_json::from_str::<Ports>("[]").is_err());
        assert!(serde_json::from_str::<Ports>("\"x\"").is_err());
    }
}
