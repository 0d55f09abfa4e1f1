//! Writing events: `id:`, `event:`, `data:` lines with no space after the colon and a blank line
//! after each event, as Zilla writes them.

use bytes::{BufMut, Bytes, BytesMut};

/// The fields of one event to encode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fields<'a> {
    /// Milliseconds since the epoch for `timestamp:0x..` (0: no line).
    pub timestamp: u64,
    /// `id` (`Some(b"")` writes `id:`, which resets the client's last id).
    pub id: Option<&'a [u8]>,
    /// `event` type.
    pub event: Option<&'a [u8]>,
    /// Data: `None` writes no data line; every line of it becomes a `data:` line.
    pub data: Option<&'a [u8]>,
}

/// A keep-alive comment: `:` and a blank line.
pub fn comment() -> Bytes {
    Bytes::from_static(b":\n\n")
}

/// A `retry:<ms>` line and a blank line.
pub fn retry(ms: u64) -> Bytes {
    Bytes::from(format!("retry:{ms}\n\n"))
}

/// Lines of `data`: split at CRLF, CR or LF (a client would split there too, so writing a bare
/// CR inside a `data:` line would corrupt the event). `Hello\nworld\n` gives three lines, the
/// last empty, like Zilla.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let d = rest?;
        match d.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) => {
                let skip = if d[i] == b'\r' && d.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = Some(&d[i + skip..]);
                Some(&d[..i])
            }
            None => {
                rest = None;
                Some(d)
            }
        }
    })
}

/// Writes a field value with any CR or LF removed (they cannot appear in an `id` or `event`).
fn put_value(out: &mut BytesMut, v: &[u8]) {
    if v.iter().any(|&b| b == b'\n' || b == b'\r') {
        out.extend(v.iter().copied().filter(|&b| b != b'\n' && b != b'\r'));
    } else {
        out.put_slice(v);
    }
}

fn value_len(v: &[u8]) -> usize {
    v.iter().filter(|&&b| b != b'\n' && b != b'\r').count()
}

fn hex_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 16 {
        n >>= 4;
        len += 1;
    }
    len
}

/// The exact encoded size of `f`.
pub fn encoded_len(f: &Fields<'_>) -> usize {
    let mut n = 1; // final blank line
    if f.timestamp > 0 {
        n += "timestamp:0x".len() + hex_len(f.timestamp) + 1;
    }
    if let Some(id) = f.id {
        n += 3 + value_len(id) + 1;
    }
    if let Some(ev) = f.event {
        n += 6 + value_len(ev) + 1;
    }
    if let Some(data) = f.data {
        n += lines(data).map(|l| 5 + l.len() + 1).sum::<usize>();
    }
    n
}

/// Encodes one event into a buffer of exactly the right size.
pub fn encode(f: &Fields<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(encoded_len(f));
    if f.timestamp > 0 {
        out.put_slice(format!("timestamp:0x{:x}\n", f.timestamp).as_bytes());
    }
    if let Some(id) = f.id {
        out.put_slice(b"id:");
        put_value(&mut out, id);
        out.put_u8(b'\n');
    }
    if let Some(ev) = f.event {
        out.put_slice(b"event:");
        put_value(&mut out, ev);
        out.put_u8(b'\n');
    }
    if let Some(data) = f.data {
        for line in lines(data) {
            out.put_slice(b"data:");
            out.put_slice(line);
            out.put_u8(b'\n');
        }
    }
    out.put_u8(b'\n');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: Fields<'_>) -> String {
        let b = encode(&f);
        assert_eq!(b.len(), encoded_len(&f), "exact size");
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn zilla_byte_format() {
        assert_eq!(
            enc(Fields {
                data: Some(b"Hello, world"),
                ..Default::default()
            }),
            "data:Hello, world\n\n"
        );
        assert_eq!(
            enc(Fields {
                id: Some(b"105"),
                data: Some(b"Hello, world"),
                ..Default::default()
            }),
            "id:105\ndata:Hello, world\n\n"
        );
        assert_eq!(
            enc(Fields {
                timestamp: 1519937168533,
                event: Some(b"one"),
                data: Some(b"Hello, world"),
                ..Default::default()
            }),
            "timestamp:0x161e350a495\nevent:one\ndata:Hello, world\n\n"
        );
        assert_eq!(
            enc(Fields {
                data: Some(b""),
                ..Default::default()
            }),
            "data:\n\n"
        );
        assert_eq!(
            enc(Fields {
                id: Some(b"105"),
                ..Default::default()
            }),
            "id:105\n\n"
        );
        assert_eq!(
            enc(Fields {
                event: Some(b""),
                data: Some(b"x"),
                ..Default::default()
            }),
            "event:\ndata:x\n\n"
        );
    }

    #[test]
    fn multi_line_data_splits_on_every_line_ending() {
        assert_eq!(
            enc(Fields {
                data: Some(b"Hello\nworld\n"),
                ..Default::default()
            }),
            "data:Hello\ndata:world\ndata:\n\n"
        );
        assert_eq!(
            enc(Fields {
                data: Some(b"a\r\nb\rc"),
                ..Default::default()
            }),
            "data:a\ndata:b\ndata:c\n\n"
        );
    }

    #[test]
    fn ids_cannot_break_framing() {
        assert_eq!(
            enc(Fields {
                id: Some(b"1\n2"),
                data: Some(b"x"),
                ..Default::default()
            }),
            "id:12\ndata:x\n\n"
        );
    }
}
