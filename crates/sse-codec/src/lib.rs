//! `text/event-stream`: an encoder with Zilla's byte format and an incremental parser that
//! follows the WHATWG event-stream rules.
//!
//! Both are used by the sse bindings and by the bundled SSE backend; they know nothing about the
//! engine.

mod encode;
mod parse;
mod split;

pub use encode::{comment, encode, encoded_len, retry, Fields};
pub use parse::{Event, Parser};
pub use split::{split_events, WireEvent};
