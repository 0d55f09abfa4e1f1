//! Options and route conditions of the tcp bindings, as zilla.yaml spells them.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::Deserialize;

pub use proto_tcp::Ports;

/// Options of the `tcp` binding (server and client).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpOptions {
    /// Server: the interface to listen on (`0.0.0.0`). Client: the host name or IP to connect to.
    pub host: String,
    /// Server: every port to listen on. Client: the port to connect to (the first one given).
    pub port: Ports,
}

/// One `when` condition of a tcp route; every field given must match.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(try_from = "TcpConditionConfig")]
pub struct TcpCondition {
    authority: Option<String>,
    cidr: Option<(IpAddr, u8)>,
    port: Option<Ports>,
}

/// The written form of [`TcpCondition`].
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpConditionConfig {
    /// Host name pattern (`*` matches any run of characters).
    pub authority: Option<String>,
    /// Network in `address/bits` form, e.g. `127.0.0.0/8`.
    pub cidr: Option<String>,
    /// Port or ports.
    pub port: Option<Ports>,
}

impl TryFrom<TcpConditionConfig> for TcpCondition {
    type Error = String;

    fn try_from(c: TcpConditionConfig) -> Result<Self, String> {
        let cidr = match c.cidr {
            Some(s) => Some(parse_cidr(&s)?),
            None => None,
        };
        Ok(TcpCondition {
            authority: c.authority,
            cidr,
            port: c.port,
        })
    }
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("invalid cidr '{s}': expected address/bits, e.g. 10.0.0.0/8");
    let (addr, bits) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let bits: u8 = bits.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(format!(
            "invalid cidr '{s}': at most {max} bits for this address"
        ));
    }
    Ok((addr, bits))
}

fn in_network(ip: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Host name patterns: Zilla's wildcard, case-insensitive.
pub(crate) fn glob_match(pattern: &str, value: &str) -> bool {
    zilla_engine::glob_match(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
}

impl TcpCondition {
    /// True if every field given matches `ip`, `port` and `host`.
    pub fn matches(&self, ip: Option<IpAddr>, port: u16, host: Option<&str>) -> bool {
        if let Some(ports) = &self.port {
            if !ports.contains(port) {
                return false;
            }
        }
        if let Some(cidr) = self.cidr {
            if !ip.is_some_and(|ip| in_network(ip, cidr)) {
                return false;
            }
        }
        if let Some(authority) = &self.authority {
            if !host.is_some_and(|h| glob_match(authority, h)) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() {
        let c: TcpCondition = serde_yaml::from_str("{cidr: 127.0.0.0/8, port: 7114}").unwrap();
        assert!(c.matches(Some("127.0.0.1".parse().unwrap()), 7114, None));
        assert!(!c.matches(Some("10.0.0.1".parse().unwrap()), 7114, None));
        assert!(!c.matches(Some("127.0.0.1".parse().unwrap()), 7115, None));
        let a: TcpCondition = serde_yaml::from_str("{authority: \"*.example.com\"}").unwrap();
        assert!(a.matches(None, 1, Some("api.example.com")));
        assert!(!a.matches(None, 1, Some("example.org")));
    }
}
