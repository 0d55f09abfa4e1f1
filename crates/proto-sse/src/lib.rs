//! The `sse` protocol: one event stream per exchange.
//!
//! The initial `Begin` carries where the stream is ([`SseBegin`]: scheme, authority, path without
//! query, last event id); the initial direction carries nothing else until it ends. The reply
//! `Begin` opens the event stream; each reply `Data` frame is one whole event: its payload is
//! the event's data (`None`: an event with no data field, e.g. only an `id`), its [`SseEvent`]
//! metadata the id and type; or, to an opener that asked for batches, the wire bytes of several
//! events at once ([`SseEvent::batch`]). `End` may carry [`SseEnd`] (a last id to send before closing).

use bytes::Bytes;
use zilla_engine::Protocol;

/// The `sse` protocol marker.
#[derive(Debug, Clone, Copy)]
pub struct Sse;

impl Protocol for Sse {
    const NAME: &'static str = "sse";
    type Begin = SseBegin;
    type Data = SseEvent;
    type End = SseEnd;
    /// An sse stream is refused with the http status the sse server answers the client with.
    type Reset = proto_http::HttpReset;
    type Challenge = ();
}

/// Where an event stream is, and where the client left off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseBegin {
    /// `http` or `https`.
    pub scheme: Bytes,
    /// Host and port.
    pub authority: Bytes,
    /// Path, without the query string.
    pub path: Bytes,
    /// The last event id the client saw (`Last-Event-ID`), if any; empty is not absent.
    pub last_id: Option<Bytes>,
    /// The client asked for timestamps (`Accept: text/event-stream;ext=timestamp`).
    pub timestamps: bool,
    /// The opener writes events as they are framed and takes them in batches: a reply frame
    /// may be [`SseEvent::batch`]. An sse server asks for it unless the client wants timestamps
    /// (it checks each event of a batch itself when the stream is validated).
    pub batch: bool,
}

/// Metadata of one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `id` field, if the event set one (empty resets the client's last id).
    pub id: Option<Bytes>,
    /// `event` field (the type), if set.
    pub event: Option<Bytes>,
    /// Milliseconds since the epoch, 0 for none.
    pub timestamp: u64,
    /// `0`: the payload is one event's data. `n > 0`: the payload is `n` whole events exactly
    /// as they go on the wire (`id:`, `event:`, `data:` lines, each event ended by a blank
    /// line); `id` is the last one's. Only sent to an opener that asked with
    /// [`SseBegin::batch`].
    pub batch: u32,
    /// When the event was read from upstream, for the proxy's latency metric (`None` if it was
    /// not read from a network peer).
    pub read_at: Option<std::time::Instant>,
}

impl SseEvent {
    /// Number of events the frame carries.
    pub fn events(&self) -> u64 {
        u64::from(self.batch.max(1))
    }
}

/// End extension: an id written as a final `id:` event before the stream closes, so the client
/// reconnects with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEnd {
    /// The id.
    pub id: Bytes,
}

pub mod config;
pub mod metrics;
