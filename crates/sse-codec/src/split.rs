//! Reading back events that are framed exactly as [`encode`](crate::encode) writes them (what
//! the parser hands out as wire bytes): where each event is, and its fields, without copying.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// One event of canonical wire bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEvent {
    /// Its bytes, blank line included.
    pub range: Range<usize>,
    /// The `id` value.
    pub id: Option<Bytes>,
    /// The `event` value.
    pub event: Option<Bytes>,
    /// The data: a slice of the wire for one `data:` line, its lines joined by LF for several,
    /// `None` for none.
    pub data: Option<Bytes>,
}

/// The events of `wire`, canonical events one after the other. Bytes that do not end an event
/// end the iteration.
pub fn split_events(wire: &Bytes) -> impl Iterator<Item = WireEvent> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at;
        let mut event = WireEvent {
            range: start..start,
            id: None,
            event: None,
            data: None,
        };
        let mut joined: Option<BytesMut> = None;
        loop {
            let rest = wire.get(at..)?;
            let eol = memchr::memchr(b'\n', rest)?;
            let line = at..at + eol;
            at += eol + 1;
            if line.is_empty() {
                break;
            }
            let value = |prefix: &[u8]| {
                wire[line.clone()]
                    .starts_with(prefix)
                    .then(|| wire.slice(line.start + prefix.len()..line.end))
            };
            if let Some(data) = value(b"data:") {
                match (&mut joined, event.data.take()) {
                    (Some(j), _) => {
                        j.extend_from_slice(b"\n");
                        j.extend_from_slice(&data);
                    }
                    (None, Some(first)) => {
                        let mut j = BytesMut::from(&first[..]);
                        j.extend_from_slice(b"\n");
                        j.extend_from_slice(&data);
                        joined = Some(j);
                    }
                    (None, None) => event.data = Some(data),
                }
            } else if let Some(id) = value(b"id:") {
                event.id = Some(id);
            } else if let Some(ty) = value(b"event:") {
                event.event = Some(ty);
            }
        }
        if let Some(j) = joined {
            event.data = Some(j.freeze());
        }
        event.range = start..at;
        Some(event)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, Fields, Parser};

    #[test]
    fn splits_what_encode_writes() {
        let events: [Fields<'_>; 4] = [
            Fields {
                id: Some(b"1"),
                data: Some(b"{\"a\":1}"),
                ..Fields::default()
            },
            Fields {
                event: Some(b"tick"),
                data: Some(b"line one\nline two"),
                ..Fields::default()
            },
            Fields {
                id: Some(b"3"),
                ..Fields::default()
            },
            Fields {
                id: Some(b""),
                event: Some(b"x"),
                data: Some(b""),
                ..Fields::default()
            },
        ];
        let mut wire = BytesMut::new();
        for f in &events {
            wire.extend_from_slice(&encode(f));
        }
        let wire = wire.freeze();
        let split: Vec<WireEvent> = split_events(&wire).collect();
        assert_eq!(split.len(), events.len());
        let mut end = 0;
        for (got, f) in split.iter().zip(&events) {
            assert_eq!(got.range.start, end);
            assert_eq!(&wire[got.range.clone()], &encode(f)[..]);
            end = got.range.end;
            assert_eq!(got.id.as_deref(), f.id);
            assert_eq!(got.event.as_deref(), f.event);
            assert_eq!(got.data.as_deref(), f.data);
        }
        assert_eq!(end, wire.len());
        // A one-line data value is a slice of the wire, not a copy.
        let data = split[0].data.as_ref().unwrap();
        assert!(wire.as_ptr_range().contains(&data.as_ptr()));
    }

    #[test]
    fn agrees_with_the_parser_on_its_wire_bytes() {
        let input = b"id:7\nevent:a\ndata:x\ndata:y\n\ndata:{}\n\nid:9\ndata:z\n\n";
        let mut parser = Parser::new(1 << 20);
        let mut wires = Vec::new();
        let mut parsed = Vec::new();
        parser.feed_raw(Bytes::from_static(input), &mut |e, wire| {
            wires.push(wire.expect("canonical"));
            parsed.push(e);
        });
        let wire: Bytes = wires
            .iter()
            .flat_map(|w| w.iter().copied())
            .collect::<Vec<u8>>()
            .into();
        let split: Vec<WireEvent> = split_events(&wire).collect();
        assert_eq!(split.len(), 3);
        let mut end = 0;
        for ((s, e), w) in split.iter().zip(&parsed).zip(&wires) {
            assert_eq!((&s.id, &s.event, &s.data), (&e.id, &e.event, &e.data));
            assert_eq!(s.range, end..end + w.len());
            end = s.range.end;
        }
    }
}
