//! Reading events incrementally, per the WHATWG event-stream rules: CR, LF and CRLF line ends
//! (a CRLF split across reads is one line end), one leading BOM skipped, comments and unknown
//! fields ignored, one space after the colon removed, a field name alone means an empty value.
//!
//! Unlike a browser, an event is also dispatched when it has an `id` or `event` but no `data`
//! (with no payload), so that a proxy can pass a bare `id:` on to its clients, as Zilla does.

use bytes::{Bytes, BytesMut};

/// One parsed event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// `id`, if the event set one (values containing NUL are ignored).
    pub id: Option<Bytes>,
    /// `event` (type), if set.
    pub event: Option<Bytes>,
    /// The data lines joined with LF; `None` when the event had no data field.
    pub data: Option<Bytes>,
}

enum Data {
    None,
    One(Bytes),
    Many(BytesMut),
}

/// An incremental parser. Feed it the body as it arrives; it returns complete events.
pub struct Parser {
    max_event: usize,
    bom_checked: bool,
    head: BytesMut,
    partial: BytesMut,
    skip_lf: bool,
    data: Data,
    id: Option<Bytes>,
    event: Option<Bytes>,
    size: usize,
    oversize: bool,
    dropped: u64,
    retry: Option<u64>,
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser")
            .field("dropped", &self.dropped)
            .finish()
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Parser {
    /// A parser that drops (and counts) events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Parser {
            max_event,
            bom_checked: false,
            head: BytesMut::new(),
            partial: BytesMut::new(),
            skip_lf: false,
            data: Data::None,
            id: None,
            event: None,
            size: 0,
            oversize: false,
            dropped: 0,
            retry: None,
        }
    }

    /// Events dropped because they exceeded the size limit.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The last `retry` value seen, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Parses `chunk`, calling `emit` for every event it completes.
    pub fn feed(&mut self, mut chunk: Bytes, emit: &mut impl FnMut(Event)) {
        if !self.bom_checked && self.head.is_empty() && chunk.len() >= BOM.len() {
            // The common case: no copy.
            self.bom_checked = true;
            if chunk.starts_with(BOM) {
                chunk = chunk.slice(BOM.len()..);
            }
        }
        if !self.bom_checked {
            self.head.extend_from_slice(&chunk);
            if self.head.len() < BOM.len() && BOM.starts_with(&self.head) {
                return; // wait: it may still be a BOM
            }
            self.bom_checked = true;
            let mut head = std::mem::take(&mut self.head);
            if head.starts_with(BOM) {
                let _ = head.split_to(BOM.len());
            }
            chunk = head.freeze();
        }
        let mut start = 0;
        if self.skip_lf {
            self.skip_lf = false;
            if chunk.first() == Some(&b'\n') {
                start = 1;
            }
        }
        while start < chunk.len() {
            let rest = &chunk[start..];
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    let end = start + i;
                    let line = if self.partial.is_empty() {
                        chunk.slice(start..end)
                    } else {
                        self.append_partial(&chunk[start..end]);
                        std::mem::take(&mut self.partial).freeze()
                    };
                    let mut next = end + 1;
                    if chunk[end] == b'\r' {
                        match chunk.get(end + 1) {
                            Some(b'\n') => next += 1,
                            Some(_) => {}
                            None => self.skip_lf = true,
                        }
                    }
                    self.line(line, emit);
                    start = next;
                }
                None => {
                    self.append_partial(rest);
                    break;
                }
            }
        }
    }

    fn append_partial(&mut self, bytes: &[u8]) {
        if self.partial.len() + bytes.len() > self.max_event {
            self.oversize = true;
            self.partial.clear();
            return;
        }
        self.partial.extend_from_slice(bytes);
    }

    fn line(&mut self, line: Bytes, emit: &mut impl FnMut(Event)) {
        if line.is_empty() {
            return self.dispatch(emit);
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = if line.get(c + 1) == Some(&b' ') {
                    c + 2
                } else {
                    c + 1
                };
                (line.slice(..c), line.slice(v..))
            }
            None => (line.clone(), Bytes::new()),
        };
        self.size += value.len();
        if self.size > self.max_event {
            self.oversize = true;
        }
        if self.oversize {
            return;
        }
        match name.as_ref() {
            b"data" => {
                self.data = match std::mem::replace(&mut self.data, Data::None) {
                    Data::None => Data::One(value),
                    Data::One(first) => {
                        let mut joined = BytesMut::with_capacity(first.len() + 1 + value.len());
                        joined.extend_from_slice(&first);
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(&value);
                        Data::Many(joined)
                    }
                    Data::Many(mut joined) => {
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(&value);
                        Data::Many(joined)
                    }
                };
            }
            b"event" => self.event = Some(value),
            b"id" if !value.contains(&0) => self.id = Some(value),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, emit: &mut impl FnMut(Event)) {
        let data = match std::mem::replace(&mut self.data, Data::None) {
            Data::None => None,
            Data::One(b) => Some(b),
            Data::Many(b) => Some(b.freeze()),
        };
        let id = self.id.take();
        let event = self.event.take();
        self.size = 0;
        if std::mem::take(&mut self.oversize) {
            self.dropped += 1;
            return;
        }
        if data.is_some() || id.is_some() || event.is_some() {
            emit(Event { id, event, data });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(Bytes::copy_from_slice(c), &mut |e| out.push(e));
        }
        out
    }

    fn data(s: &str) -> Event {
        Event {
            data: Some(Bytes::copy_from_slice(s.as_bytes())),
            ..Default::default()
        }
    }

    /// Every split of `text` into two and three reads gives the same events.
    fn check_all_splits(text: &[u8], expected: &[Event]) {
        assert_eq!(parse_chunks(&[text]), expected, "whole");
        for i in 0..=text.len() {
            assert_eq!(
                parse_chunks(&[&text[..i], &text[i..]]),
                expected,
                "split at {i}"
            );
            for j in i..=text.len() {
                assert_eq!(
                    parse_chunks(&[&text[..i], &text[i..j], &text[j..]]),
                    expected,
                    "split at {i},{j}"
                );
            }
        }
    }

    #[test]
    fn line_endings_at_every_boundary() {
        check_all_splits(b"data:Hello, world\n\n", &[data("Hello, world")]);
        check_all_splits(b"data:Hello, world\r\r", &[data("Hello, world")]);
        check_all_splits(b"data:Hello, world\r\n\r\n", &[data("Hello, world")]);
        check_all_splits(b"\r\ndata:a\r\n\r\ndata:b\n\n", &[data("a"), data("b")]);
    }

    #[test]
    fn fields_comments_and_unknown_lines() {
        check_all_splits(
            b":comment\n:\ndata: Hello, world\ncustom:  field\ncustom\nid: 105\nevent: one\nretry:10\n\n",
            &[Event {
                id: Some(Bytes::from_static(b"105")),
                event: Some(Bytes::from_static(b"one")),
                data: Some(Bytes::from_static(b"Hello, world")),
            }],
        );
    }

    #[test]
    fn multi_line_and_name_only() {
        check_all_splits(
            b"data:Hello\ndata:world\ndata:\n\n",
            &[data("Hello\nworld\n")],
        );
        check_all_splits(b"data\n\n", &[data("")]);
        check_all_splits(
            b"event\ndata:x\n\n",
            &[Event {
                event: Some(Bytes::new()),
                ..data("x")
            }],
        );
    }

    #[test]
    fn id_only_events_pass_and_retry_only_events_do_not() {
        check_all_splits(
            b"id:105\n\n",
            &[Event {
                id: Some(Bytes::from_static(b"105")),
                ..Default::default()
            }],
        );
        check_all_splits(b"retry:10\n\n", &[]);
        check_all_splits(b"id:a\0b\ndata:x\n\n", &[data("x")]);
    }

    #[test]
    fn bom_is_skipped_once() {
        check_all_splits(
            b"\xEF\xBB\xBFdata:Hello, world\n\n",
            &[data("Hello, world")],
        );
        check_all_splits(b"\xEF\xBB\xBFdata:\n\n", &[data("")]);
        assert_eq!(
            parse_chunks(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata:x\n\n"]),
            vec![]
        );
    }

    #[test]
    fn large_events_stream_through_many_reads() {
        let payload = "x".repeat(100 * 1024);
        let text = format!("data:{payload}\n\n");
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(1000).collect();
        assert_eq!(parse_chunks(&chunks), vec![data(&payload)]);
    }

    #[test]
    fn oversize_events_are_dropped_and_counted() {
        let mut p = Parser::new(10);
        let mut out = Vec::new();
        p.feed(
            Bytes::from_static(b"data:0123456789abc\n\ndata:ok\n\n"),
            &mut |e| out.push(e),
        );
        assert_eq!(out, vec![data("ok")]);
        assert_eq!(p.dropped(), 1);
        p.feed(Bytes::from_static(b"data:01234"), &mut |e| out.push(e));
        p.feed(Bytes::from_static(b"56789abcdef"), &mut |e| out.push(e));
        p.feed(Bytes::from_static(b"\n\ndata:ok\n\n"), &mut |e| out.push(e));
        assert_eq!(out.len(), 2);
        assert_eq!(p.dropped(), 2);
    }

    /// Random bytes in random reads never panic, and the size limit always holds.
    #[test]
    fn random_input_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const ALPHABET: &[u8] = b"data:id:event:retry: \r\n\0\xEF\xBB\xBF\xC3x";
        for _ in 0..2000 {
            let mut p = Parser::new(64);
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let mut at = 0;
            while at < bytes.len() {
                let take = 1 + (next() % 40) as usize;
                let end = (at + take).min(bytes.len());
                p.feed(Bytes::copy_from_slice(&bytes[at..end]), &mut |e| {
                    assert!(
                        e.data.as_ref().map_or(0, Bytes::len) <= 64,
                        "an event over the limit got through"
                    );
                });
                at = end;
            }
        }
    }

    #[test]
    fn invalid_utf8_passes_through() {
        check_all_splits(
            b"data:\xC3\x28\n\n",
            &[Event {
                data: Some(Bytes::from_static(b"\xC3\x28")),
                ..Default::default()
            }],
        );
    }

    #[test]
    fn zero_copy_for_single_line_data() {
        let chunk = Bytes::from_static(b"data:Hello\n\n");
        let mut p = Parser::new(1 << 20);
        let mut got = None;
        p.feed(chunk.clone(), &mut |e| got = e.data);
        let got = got.unwrap();
        assert_eq!(
            got.as_ptr(),
            chunk[5..].as_ptr(),
            "data is a slice of the read"
        );
    }
}
