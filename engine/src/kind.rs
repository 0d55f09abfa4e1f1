//! The `kind` of a binding and the protocols each kind accepts and emits.

use std::fmt;

use crate::stream::Protocol;

/// The `kind` of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Accepts streams from the outside or from a protocol below it.
    Server,
    /// Opens streams towards the outside or a protocol below it.
    Client,
    /// Maps streams of one protocol to the same or another.
    Proxy,
}

impl Kind {
    /// Every kind, in the order zilla.yaml documents them.
    pub const ALL: [Kind; 3] = [Kind::Server, Kind::Client, Kind::Proxy];

    /// The zilla.yaml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Proxy => "proxy",
        }
    }

    /// Parses the zilla.yaml spelling.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocols a binding of some kind accepts from whoever routes to it, and emits to its exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Protocols {
    /// Protocol name of streams routed to this binding (`None`: nothing can route to it).
    pub accepts: Option<&'static str>,
    /// Further protocols it accepts (a binding with a handler for each, like `echo`).
    pub also_accepts: &'static [&'static str],
    /// Protocol name of streams it opens to its exits (`None`: it has no exits).
    pub emits: Option<&'static str>,
}

impl Protocols {
    /// Accepts `A`, emits `E`.
    pub fn new<A: Protocol, E: Protocol>() -> Self {
        Protocols {
            accepts: Some(A::NAME),
            also_accepts: &[],
            emits: Some(E::NAME),
        }
    }

    /// Accepts nothing (a server fed by sockets), emits `E`.
    pub fn emits<E: Protocol>() -> Self {
        Protocols {
            accepts: None,
            also_accepts: &[],
            emits: Some(E::NAME),
        }
    }

    /// Accepts `A`, has no exits (a client to sockets, or a terminal binding).
    pub fn accepts<A: Protocol>() -> Self {
        Protocols {
            accepts: Some(A::NAME),
            also_accepts: &[],
            emits: None,
        }
    }

    /// These, also accepting `more` (protocol names).
    pub const fn and_accepts(mut self, more: &'static [&'static str]) -> Self {
        self.also_accepts = more;
        self
    }

    /// True if streams of protocol `name` may be routed to it.
    pub fn accepts_protocol(&self, name: &str) -> bool {
        self.accepts == Some(name) || self.also_accepts.contains(&name)
    }

    /// Every protocol it accepts, for messages (`tcp`, `tcp, http or sse`).
    pub fn describe_accepts(&self) -> Option<String> {
        let all: Vec<&str> = self
            .accepts
            .iter()
            .chain(self.also_accepts)
            .copied()
            .collect();
        match all.as_slice() {
            [] => None,
            [one] => Some(one.to_string()),
            [init @ .., last] => Some(format!("{} or {last}", init.join(", "))),
        }
    }
}
