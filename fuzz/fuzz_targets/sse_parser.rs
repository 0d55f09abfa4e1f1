//! The SSE parser (upstream events): arbitrary bytes in arbitrary pieces. No panic; every event
//! it emits is within the size limit; fed the same bytes in one piece it emits the same events;
//! the wire bytes it hands out read back (`split_events`) as exactly the event it parsed.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sse_codec::{split_events, Parser};

const MAX: usize = 256;

fn events(pieces: &[&[u8]]) -> Vec<(Option<Bytes>, Option<Bytes>, Option<Bytes>)> {
    let mut parser = Parser::new(MAX);
    let mut out = Vec::new();
    for p in pieces {
        parser.feed_raw(Bytes::copy_from_slice(p), &mut |e, raw| {
            if let Some(raw) = &raw {
                assert!(raw.len() <= MAX + 64 || e.data.as_ref().is_none_or(|d| d.len() <= MAX));
                let back: Vec<_> = split_events(raw).collect();
                assert_eq!(back.len(), 1, "one event's wire bytes");
                assert_eq!(back[0].range, 0..raw.len());
                assert_eq!((&back[0].id, &back[0].event, &back[0].data), (&e.id, &e.event, &e.data));
            }
            assert!(
                e.data.as_ref().is_none_or(|d| d.len() <= MAX),
                "an event over the limit"
            );
            out.push((e.id, e.event, e.data));
        });
    }
    out
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, cuts) = input;
    // Cut `data` where `cuts` says.
    let mut pieces = Vec::new();
    let mut at = 0;
    for c in cuts {
        if at >= data.len() {
            break;
        }
        let n = (c as usize % 64).min(data.len() - at);
        pieces.push(&data[at..at + n]);
        at += n;
    }
    pieces.push(&data[at..]);
    let split = events(&pieces);
    let whole = events(&[&data]);
    assert_eq!(split, whole, "the pieces changed the events");
});
