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

/// Whether the event being read is framed exactly as `encode` writes it (so its bytes can be
/// forwarded as they are), and how far into it the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Canon {
    /// No line of the event yet.
    Fresh,
    /// `id:` seen.
    Id,
    /// `event:` seen.
    Event,
    /// `data:` seen.
    Data,
    /// Not canonical (another order, a space after the colon, CR, a comment, `retry`, an
    /// unknown field, or it spans reads).
    No,
}

/// An incremental parser. Feed it the body as it arrives; it returns complete events.
pub struct Parser {
    max_event: usize,
    bom_checked: bool,
    head: BytesMut,
    partial: BytesMut,
    /// The line being read went over the limit (its start was not kept): when it ends, it is
    /// no line at all, not even an empty one.
    overflowed: bool,
    skip_lf: bool,
    data: Data,
    id: Option<Bytes>,
    event: Option<Bytes>,
    size: usize,
    oversize: bool,
    dropped: u64,
    retry: Option<u64>,
    canon: Canon,
    /// Where the current event began in the chunk being fed (canonical events only).
    raw_start: Option<usize>,
    /// The wire bytes of the event being dispatched, when canonical.
    raw: Option<Bytes>,
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
            overflowed: false,
            skip_lf: false,
            data: Data::None,
            id: None,
            event: None,
            size: 0,
            oversize: false,
            dropped: 0,
            retry: None,
            canon: Canon::Fresh,
            raw_start: None,
            raw: None,
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
    pub fn feed(&mut self, chunk: Bytes, emit: &mut impl FnMut(Event)) {
        self.feed_raw(chunk, &mut |e, _| emit(e));
    }

    /// Parses `chunk`, calling `emit` for every event it completes, with the event's bytes as
    /// they came when they are exactly what [`crate::encode`] writes for it (`id`, `event`,
    /// `data` lines in that order, no space after the colon, LF line ends, nothing else, all
    /// in this chunk): a slice of `chunk`, so a proxy can forward it without encoding again.
    pub fn feed_raw(&mut self, mut chunk: Bytes, emit: &mut impl FnMut(Event, Option<Bytes>)) {
        // An event begun in an earlier read is not one slice of this one.
        if self.canon != Canon::Fresh {
            self.canon = Canon::No;
        }
        self.raw_start = None;
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
        // A CR ended the last read: an LF opening this one belongs to it (an empty read
        // decides nothing).
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk.first() == Some(&b'\n') {
                start = 1;
            }
        }
        while start < chunk.len() {
            let rest = &chunk[start..];
            match memchr::memchr2(b'\n', b'\r', rest) {
                Some(i) => {
                    let end = start + i;
                    let mut next = end + 1;
                    if chunk[end] == b'\r' {
                        match chunk.get(end + 1) {
                            Some(b'\n') => next += 1,
                            Some(_) => {}
                            None => self.skip_lf = true,
                        }
                    }
                    // The line's start came in earlier reads: join it (within the limit).
                    let whole = self.partial.is_empty() && !self.overflowed;
                    if !whole {
                        self.append_partial(&chunk[start..end]);
                    }
                    // A line longer than the limit drops its event whether it came in one read
                    // or several (then its start was not kept): it is not read as a line.
                    if std::mem::take(&mut self.overflowed)
                        || (whole && end - start > self.max_event)
                    {
                        self.exceeded();
                        self.partial.clear();
                        self.canon = Canon::No;
                        start = next;
                        continue;
                    }
                    let assembled;
                    let (src, range) = if whole {
                        (&chunk, start..end)
                    } else {
                        assembled = std::mem::take(&mut self.partial).freeze();
                        (&assembled, 0..assembled.len())
                    };
                    let line = &src[range.clone()];
                    let lf = chunk[end] == b'\n';
                    if line.is_empty() {
                        self.raw = match (self.canon, self.raw_start, lf && whole) {
                            (Canon::Id | Canon::Event | Canon::Data, Some(from), true) => {
                                Some(chunk.slice(from..end + 1))
                            }
                            _ => None,
                        };
                    } else {
                        self.track(line, whole.then_some(start), lf);
                    }
                    self.line(src, range, emit);
                    start = next;
                }
                None => {
                    self.append_partial(rest);
                    break;
                }
            }
        }
    }

    /// Follows whether the event stays canonical with `line` (found at `at` in the chunk, when
    /// it lies whole in it, ended by LF or not).
    fn track(&mut self, line: &[u8], at: Option<usize>, lf: bool) {
        if self.canon == Canon::Fresh {
            self.raw_start = at;
        }
        let field = |name: &[u8]| line.strip_prefix(name).filter(|v| v.first() != Some(&b' '));
        self.canon = match (self.canon, at.is_some() && lf) {
            (_, false) | (Canon::No, _) => Canon::No,
            (c, true) => {
                if field(b"id:").is_some_and(|v| !v.contains(&0)) && c == Canon::Fresh {
                    Canon::Id
                } else if field(b"event:").is_some() && matches!(c, Canon::Fresh | Canon::Id) {
                    Canon::Event
                } else if field(b"data:").is_some() {
                    Canon::Data
                } else {
                    Canon::No
                }
            }
        };
    }

    fn append_partial(&mut self, bytes: &[u8]) {
        if self.overflowed || self.partial.len() + bytes.len() > self.max_event {
            self.exceeded();
            self.partial.clear();
            self.overflowed = true;
            return;
        }
        self.partial.extend_from_slice(bytes);
    }

    /// The event being read is over the limit: it is dropped (and counted) now, what it held is
    /// freed, and the rest of it, up to the next blank line, is skipped without being kept.
    fn exceeded(&mut self) {
        if !self.oversize {
            self.oversize = true;
            self.dropped += 1;
            self.data = Data::None;
            self.id = None;
            self.event = None;
        }
    }

    /// Bytes held for the event being read (its fields and a partial line), for tests.
    #[cfg(test)]
    fn held(&self) -> usize {
        let data = match &self.data {
            Data::None => 0,
            Data::One(b) => b.len(),
            Data::Many(b) => b.len(),
        };
        data + self.partial.len()
            + self.id.as_ref().map_or(0, Bytes::len)
            + self.event.as_ref().map_or(0, Bytes::len)
    }

    /// One line: `src[range]` (a slice of the chunk, or of a line assembled across reads).
    /// Only the values kept (data, id, type) become `Bytes`: slices of `src`, no copy.
    fn line(
        &mut self,
        src: &Bytes,
        range: std::ops::Range<usize>,
        emit: &mut impl FnMut(Event, Option<Bytes>),
    ) {
        let line = &src[range.clone()];
        if line.is_empty() {
            return self.dispatch(emit);
        }
        if line[0] == b':' {
            return;
        }
        let (name, at) = match memchr::memchr(b':', line) {
            Some(c) => (
                &line[..c],
                if line.get(c + 1) == Some(&b' ') {
                    c + 2
                } else {
                    c + 1
                },
            ),
            None => (line, line.len()),
        };
        let value = &line[at..];
        let keep = || src.slice(range.start + at..range.end);
        if self.oversize {
            return;
        }
        // Every byte the event will occupy counts: a data line's value, and the LF that joins
        // it to the one before; an id's or type's value. Comments and unknown fields are not
        // kept, so they do not count.
        self.size += match name {
            b"data" if matches!(self.data, Data::None) => value.len(),
            b"data" => value.len() + 1,
            b"id" | b"event" => value.len(),
            _ => 0,
        };
        if self.size > self.max_event {
            return self.exceeded();
        }
        match name {
            b"data" => {
                self.data = match std::mem::replace(&mut self.data, Data::None) {
                    Data::None => Data::One(keep()),
                    Data::One(first) => {
                        let mut joined = BytesMut::with_capacity(first.len() + 1 + value.len());
                        joined.extend_from_slice(&first);
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(value);
                        Data::Many(joined)
                    }
                    Data::Many(mut joined) => {
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(value);
                        Data::Many(joined)
                    }
                };
            }
            b"event" => self.event = Some(keep()),
            b"id" if !value.contains(&0) => self.id = Some(keep()),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, emit: &mut impl FnMut(Event, Option<Bytes>)) {
        let data = match std::mem::replace(&mut self.data, Data::None) {
            Data::None => None,
            Data::One(b) => Some(b),
            Data::Many(b) => Some(b.freeze()),
        };
        let id = self.id.take();
        let event = self.event.take();
        let raw = self.raw.take();
        self.size = 0;
        self.canon = Canon::Fresh;
        self.raw_start = None;
        if std::mem::take(&mut self.oversize) {
            return; // dropped and counted when it went over the limit
        }
        if data.is_some() || id.is_some() || event.is_some() {
            emit(Event { id, event, data }, raw);
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_empty_read_between_cr_and_lf_is_no_line() {
        // Found by the sse_parser fuzz target: "id\r", "", "\n" made the LF a second, empty
        // line, which dispatched an event that "id\r\n" in one read does not.
        let mut p = Parser::new(256);
        let mut events = 0;
        for piece in [&b"id\r"[..], b"", b"\n"] {
            p.feed(Bytes::copy_from_slice(piece), &mut |_| events += 1);
        }
        assert_eq!(events, 0);
        p.feed(Bytes::from_static(b"data:x\r"), &mut |_| events += 1);
        p.feed(Bytes::new(), &mut |_| events += 1);
        p.feed(Bytes::from_static(b"\n\r\n"), &mut |_| events += 1);
        assert_eq!(events, 1);
    }

    /// Found by the sse_parser fuzz target: a line longer than the limit (here an unknown
    /// field, which is not kept) dropped its event when it came in pieces and not when it came
    /// whole. Now it drops it however the input is cut, and the next event is unaffected.
    #[test]
    fn a_line_over_the_limit_drops_its_event_however_it_is_cut() {
        let input = format!("{}\nid:x\n\nid:y\ndata:ok\n\n", "j".repeat(300));
        for cut in [1, 7, 64, 100, 256, 257, 300, 301, input.len()] {
            let mut p = Parser::new(256);
            let mut ids = Vec::new();
            for piece in input.as_bytes().chunks(cut) {
                p.feed(Bytes::copy_from_slice(piece), &mut |e| ids.push(e.id));
            }
            assert_eq!(ids, vec![Some(Bytes::from_static(b"y"))], "cut {cut}");
            assert_eq!(p.dropped(), 1, "cut {cut}");
        }
    }
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
                    let size = [&e.data, &e.id, &e.event]
                        .iter()
                        .map(|f| f.as_ref().map_or(0, Bytes::len))
                        .sum::<usize>();
                    assert!(size <= 64, "an event of {size} bytes got through: {e:?}");
                });
                assert!(p.held() <= 2 * 64, "held {} bytes", p.held());
                at = end;
            }
        }
    }

    /// Streams made of whole lines (`data`, `data:x...`, `id:...`, blank) in random reads:
    /// an event is delivered exactly when every byte it occupies (LFs joining data lines
    /// included) fits the limit, dropped and counted otherwise, and memory stays bounded.
    #[test]
    fn random_lines_respect_the_limit_exactly() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const LIMIT: usize = 32;
        for _ in 0..2000 {
            let mut text = Vec::new();
            let (mut delivered, mut dropped) = (0u64, 0u64);
            for _ in 0..(1 + next() % 6) {
                let mut size = 0;
                let mut first = true;
                for _ in 0..(1 + next() % 12) {
                    let n = (next() % 9) as usize;
                    match next() % 3 {
                        0 => {
                            text.extend_from_slice(b"id:");
                            text.extend(std::iter::repeat_n(b'i', n));
                            size += n; // each id counts, though the last wins
                        }
                        _ => {
                            text.extend_from_slice(b"data");
                            if n > 0 {
                                text.push(b':');
                                text.extend(std::iter::repeat_n(b'd', n));
                            }
                            size += n + usize::from(!first);
                            first = false;
                        }
                    }
                    text.push(b'\n');
                }
                text.push(b'\n');
                if size <= LIMIT {
                    delivered += 1;
                } else {
                    dropped += 1;
                }
            }
            let mut p = Parser::new(LIMIT);
            let mut events = 0u64;
            let mut at = 0;
            while at < text.len() {
                let end = (at + 1 + (next() % 20) as usize).min(text.len());
                p.feed(Bytes::copy_from_slice(&text[at..end]), &mut |_| events += 1);
                assert!(p.held() <= 2 * LIMIT);
                at = end;
            }
            assert_eq!(
                (events, p.dropped()),
                (delivered, dropped),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }

    /// An upstream sending `data` lines forever without a blank line: the event is dropped as
    /// soon as its LFs reach the limit, nothing more is kept, and the next event arrives.
    #[test]
    fn endless_empty_data_lines_are_dropped_at_the_limit_in_constant_memory() {
        let mut p = Parser::new(1024);
        let mut out = Vec::new();
        let lines = Bytes::from(b"data\n".repeat(10_000));
        for _ in 0..100 {
            p.feed(lines.clone(), &mut |e| out.push(e));
            assert!(p.held() <= 1024, "held {}", p.held());
        }
        assert_eq!(p.dropped(), 1, "dropped once, when it went over");
        p.feed(Bytes::from_static(b"\ndata:next\n\n"), &mut |e| out.push(e));
        assert_eq!(
            out,
            vec![data("next")],
            "the dropped event is never delivered"
        );
        assert_eq!(p.dropped(), 1);
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

    fn raw_events(chunks: &[&[u8]]) -> Vec<Option<Bytes>> {
        let mut p = Parser::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            p.feed_raw(Bytes::copy_from_slice(c), &mut |_, raw| out.push(raw));
        }
        out
    }

    #[test]
    fn canonical_events_come_with_their_wire_bytes() {
        let text = b"id:1\nevent:e\ndata:a\ndata:b\n\ndata:c\n\n";
        let raw = raw_events(&[text]);
        assert_eq!(
            raw,
            vec![
                Some(Bytes::from_static(b"id:1\nevent:e\ndata:a\ndata:b\n\n")),
                Some(Bytes::from_static(b"data:c\n\n")),
            ]
        );
        // Zilla's framing differs: a space after the colon, another order, CR, a comment, an
        // unknown field, `data` without a colon, an event split over two reads.
        for (chunks, what) in [
            (&[&b"data: a\n\n"[..]][..], "space"),
            (&[&b"event:e\nid:1\ndata:x\n\n"[..]], "order"),
            (&[&b"data:x\r\n\r\n"[..]], "crlf"),
            (&[&b":ping\ndata:x\n\n"[..]], "comment"),
            (&[&b"data:x\nfoo:bar\n\n"[..]], "unknown field"),
            (&[&b"data\n\n"[..]], "no colon"),
            (&[&b"id:1\nid:2\ndata:x\n\n"[..]], "two ids"),
            (&[&b"data:x\n"[..], &b"\n"[..]], "split"),
        ] {
            assert_eq!(raw_events(chunks), vec![None], "{what}");
        }
        // A keep-alive between events does not spoil the next one.
        assert_eq!(
            raw_events(&[b":\n\ndata:x\n\n"]),
            vec![Some(Bytes::from_static(b"data:x\n\n"))]
        );
    }

    /// Whatever the input, wire bytes handed out are exactly what `encode` writes for the
    /// event, so forwarding them is the same as encoding it again.
    #[test]
    fn raw_bytes_always_equal_the_encoding() {
        let mut seed = 0x1234_5678_9abc_def1_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const PIECES: &[&[u8]] = &[
            b"id:1\n",
            b"event:e\n",
            b"data:x\n",
            b"data:\n",
            b"\n",
            b"\n",
            b"\n",
            b"id:",
            b"event:",
            b"data:",
            b"data",
            b": ",
            b":",
            b"x",
            b"yz",
            b"\r",
            b"\0",
            b"retry:5",
            b" ",
        ];
        let mut raws = 0;
        for _ in 0..10_000 {
            let text: Vec<u8> = (0..(next() % 40))
                .flat_map(|_| {
                    PIECES[(next() % PIECES.len() as u64) as usize]
                        .iter()
                        .copied()
                })
                .collect();
            let mut p = Parser::new(1 << 20);
            let mut at = 0;
            while at < text.len() {
                let end = (at + 1 + (next() % 200) as usize).min(text.len());
                p.feed_raw(Bytes::copy_from_slice(&text[at..end]), &mut |e, raw| {
                    if let Some(raw) = raw {
                        raws += 1;
                        let encoded = crate::encode(&crate::Fields {
                            timestamp: 0,
                            id: e.id.as_deref(),
                            event: e.event.as_deref(),
                            data: e.data.as_deref(),
                        });
                        assert_eq!(raw, encoded, "{:?}", String::from_utf8_lossy(&text));
                    }
                });
                at = end;
            }
        }
        assert!(
            raws > 1000,
            "the test produced only {raws} canonical events"
        );
    }
}
