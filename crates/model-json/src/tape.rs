//! A JSON representation for the validator that allocates nothing per payload: the payload is
//! parsed (by `serde_json`'s parser, so exactly what it accepts) into a flat tape of entries
//! kept per thread and reused; strings are slices of the payload (an escaped one is decoded
//! into the tape's own text). `jsonschema` validates it through its `json::Json` extension
//! point; a `serde_json::Value` is built only to report an error.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use jsonschema::json::{Array, Json, JsonNumber, Node, NodeIdentity, Object};
use jsonschema::types::JsonType;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Where a string's text is: the payload or the tape's own text (escaped strings).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Span {
    Input(u32, u32),
    Own(u32, u32),
}

/// One tape entry. A container is followed by its members (an object's as key, value pairs);
/// `end` is the index just past its last descendant.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Entry {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Span),
    Key(Span),
    Array { len: u32, end: u32 },
    Object { len: u32, end: u32 },
}

/// The parsed form of one payload, reused from one payload to the next on a thread.
#[derive(Debug, Default)]
pub(crate) struct Tape {
    entries: Vec<Entry>,
    text: String,
}

thread_local! {
    static TAPE: RefCell<Tape> = RefCell::new(Tape::default());
}

/// Most a thread keeps between payloads (a tape grown past these is freed after its payload).
const KEEP_ENTRIES: usize = 64 * 1024;
const KEEP_TEXT: usize = 1 << 20;

impl Tape {
    /// Parses `payload` onto this thread's tape and calls `f` with its root node; when it is
    /// not JSON, serde_json's error for it (the same parser, so the same message and position).
    pub(crate) fn with<T>(
        payload: &[u8],
        f: impl FnOnce(TapeNode<'_>) -> T,
    ) -> Result<T, serde_json::Error> {
        let input = match std::str::from_utf8(payload) {
            Ok(input) if input.len() <= u32::MAX as usize => input,
            // Not UTF-8: serde_json says where (a cold path).
            _ => {
                return Err(serde_json::from_slice::<serde_json::Value>(payload)
                    .err()
                    .unwrap_or_else(|| serde::de::Error::custom("payload too large")))
            }
        };
        TAPE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut tape) => tape.parse(input, f),
            // Only if `f` validated another payload on this thread: a tape of its own.
            Err(_) => Tape::default().parse(input, f),
        })
    }

    fn parse<T>(
        &mut self,
        input: &str,
        f: impl FnOnce(TapeNode<'_>) -> T,
    ) -> Result<T, serde_json::Error> {
        self.entries.clear();
        self.text.clear();
        let out = self.fill(input).map(|()| {
            let doc = Doc {
                entries: &self.entries,
                text: &self.text,
                input,
            };
            f(TapeNode::At(&doc, 0))
        });
        // A tape grown by a large payload is not kept for the next (which may never come).
        if self.entries.capacity() > KEEP_ENTRIES || self.text.capacity() > KEEP_TEXT {
            *self = Tape::default();
        }
        out
    }

    /// Parses `input` onto the (cleared) tape.
    fn fill(&mut self, input: &str) -> Result<(), serde_json::Error> {
        if self.fast(input.as_bytes()).is_some() {
            return Ok(());
        }
        // Anything the fast parser does not take (escapes, exponents, long numbers, deep
        // nesting, any error) goes through serde_json: its answer and its message.
        self.entries.clear();
        let mut de = serde_json::Deserializer::from_str(input);
        Seed { tape: self, input }.deserialize(&mut de)?;
        de.end()
    }
}

/// Deepest nesting the fast parser takes (serde_json's own limit is 128).
const FAST_DEPTH: u32 = 64;

/// Whitespace as JSON has it.
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut at: usize) -> usize {
    while b.get(at).copied().is_some_and(is_ws) {
        at += 1;
    }
    at
}

/// Exact powers of ten (every one up to 10^22 is an `f64` without rounding).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The fast parser: the common shape of a payload (strings without escapes, integers of up to
/// 18 digits, decimals of up to 15 digits without an exponent) straight onto the tape, in one
/// pass with no visitor. It answers `None` for anything else, valid or not, and the caller
/// parses again with serde_json, so what is accepted, how numbers read and every error message
/// stay serde_json's (`fast_parser_agrees_with_serde_json` and the `json_tape` fuzz target
/// hold that: whatever it takes, serde_json takes, onto the same tape).
impl Tape {
    fn fast(&mut self, b: &[u8]) -> Option<()> {
        let at = self.fast_value(b, skip_ws(b, 0), 0)?;
        (skip_ws(b, at) == b.len()).then_some(())
    }

    fn fast_value(&mut self, b: &[u8], at: usize, depth: u32) -> Option<usize> {
        let (entry, next) = match *b.get(at)? {
            b'{' => return self.fast_object(b, at + 1, depth + 1),
            b'[' => return self.fast_array(b, at + 1, depth + 1),
            b'"' => {
                let (span, next) = fast_string(b, at + 1)?;
                (Entry::Str(span), next)
            }
            b't' if b[at..].starts_with(b"true") => (Entry::Bool(true), at + 4),
            b'f' if b[at..].starts_with(b"false") => (Entry::Bool(false), at + 5),
            b'n' if b[at..].starts_with(b"null") => (Entry::Null, at + 4),
            b'-' | b'0'..=b'9' => fast_number(b, at)?,
            _ => return None,
        };
        self.entries.push(entry);
        Some(next)
    }

    fn fast_object(&mut self, b: &[u8], at: usize, depth: u32) -> Option<usize> {
        if depth > FAST_DEPTH {
            return None;
        }
        let slot = self.entries.len();
        self.entries.push(Entry::Object { len: 0, end: 0 });
        let mut len = 0u32;
        let mut at = skip_ws(b, at);
        if b.get(at) == Some(&b'}') {
            at += 1;
        } else {
            loop {
                if b.get(at) != Some(&b'"') {
                    return None;
                }
                let (span, next) = fast_string(b, at + 1)?;
                self.entries.push(Entry::Key(span));
                at = skip_ws(b, next);
                if b.get(at) != Some(&b':') {
                    return None;
                }
                at = self.fast_value(b, skip_ws(b, at + 1), depth)?;
                len += 1;
                at = skip_ws(b, at);
                match *b.get(at)? {
                    b',' => at = skip_ws(b, at + 1),
                    b'}' => {
                        at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let end = self.entries.len() as u32;
        self.entries[slot] = Entry::Object { len, end };
        Some(at)
    }

    fn fast_array(&mut self, b: &[u8], at: usize, depth: u32) -> Option<usize> {
        if depth > FAST_DEPTH {
            return None;
        }
        let slot = self.entries.len();
        self.entries.push(Entry::Array { len: 0, end: 0 });
        let mut len = 0u32;
        let mut at = skip_ws(b, at);
        if b.get(at) == Some(&b']') {
            at += 1;
        } else {
            loop {
                at = skip_ws(b, self.fast_value(b, at, depth)?);
                len += 1;
                match *b.get(at)? {
                    b',' => at = skip_ws(b, at + 1),
                    b']' => {
                        at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let end = self.entries.len() as u32;
        self.entries[slot] = Entry::Array { len, end };
        Some(at)
    }
}

/// A string whose opening quote is just before `at`, when it has no escape and no control
/// character: its span and the index past its closing quote.
fn fast_string(b: &[u8], at: usize) -> Option<(Span, usize)> {
    let rest = b.get(at..)?;
    let len = string_stop(rest)?;
    (rest[len] == b'"').then(|| (Span::Input(at as u32, (at + len) as u32), at + len + 1))
}

/// The index of the first `"`, `\\` or control character in `s`, eight bytes at a time.
fn string_stop(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte that is zero (exact for the lowest such byte, which is all
    // that is read: a borrow only ever marks bytes above a true one).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().ok()?);
        let stops = zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGHS);
        if stops != 0 {
            return Some(i + stops.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|at| i + at)
}

/// A number starting at `at`, when it is an integer of up to 18 digits (not `-0`, which
/// serde_json reads as a float) or a decimal of up to 15 digits without an exponent. Both
/// read exactly as serde_json reads them: a decimal is its digits divided by an exact power of
/// ten, one correctly rounded division (its digits are below 2^53).
fn fast_number(b: &[u8], at: usize) -> Option<(Entry, usize)> {
    let negative = b[at] == b'-';
    let mut i = at + usize::from(negative);
    // Digits into `significand` (at most 18 of them: no overflow); their count.
    let mut significand = 0u64;
    let mut digits = |i: &mut usize| {
        let start = *i;
        while let Some(d) = b.get(*i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d < 10) {
            significand = significand.wrapping_mul(10).wrapping_add(u64::from(d));
            *i += 1;
        }
        *i - start
    };
    let int_digits = match b.get(i)? {
        b'0' => {
            i += 1;
            1
        }
        b'1'..=b'9' => digits(&mut i),
        _ => return None,
    };
    let frac_digits = if b.get(i) == Some(&b'.') {
        i += 1;
        match digits(&mut i) {
            0 => return None,
            n => n,
        }
    } else {
        0
    };
    if int_digits + frac_digits > 18 || matches!(b.get(i), Some(b'e' | b'E')) {
        return None;
    }
    let entry = if frac_digits == 0 {
        match (negative, significand) {
            (false, n) => Entry::U64(n),
            (true, 0) => return None,
            (true, n) => Entry::I64(-(n as i64)),
        }
    } else {
        if int_digits + frac_digits > 15 {
            return None;
        }
        let f = significand as f64 / POW10[frac_digits];
        Entry::F64(if negative { -f } else { f })
    };
    Some((entry, i))
}

/// Panics unless the fast parser agrees with serde_json on `payload`: when it takes the
/// payload, serde_json takes it onto the same tape. (For the tests and the `json_tape` fuzz
/// target; true when the fast parser took it.)
pub(crate) fn assert_fast_agrees(payload: &[u8]) -> bool {
    let Ok(input) = std::str::from_utf8(payload) else {
        return false;
    };
    let mut fast = Tape::default();
    if fast.fast(payload).is_none() {
        return false;
    }
    let mut slow = Tape::default();
    let mut de = serde_json::Deserializer::from_str(input);
    let parsed = Seed {
        tape: &mut slow,
        input,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    assert!(
        parsed.is_ok(),
        "the fast parser took {input:?}, serde_json did not: {parsed:?}"
    );
    // Through `Debug`, which tells -0.0 from 0.0 (`==` does not).
    assert_eq!(
        format!("{:?}", fast.entries),
        format!("{:?}", slow.entries),
        "tapes differ for {input:?}"
    );
    assert_eq!(fast.text, slow.text, "tapes differ for {input:?}");
    true
}

/// Builds tape entries from the parser's calls.
struct Seed<'t, 'i> {
    tape: &'t mut Tape,
    input: &'i str,
}

impl Seed<'_, '_> {
    /// Where `s` is: inside the payload (borrowed by the parser) or copied into the tape's text.
    fn span(&mut self, s: &str, borrowed: bool) -> Span {
        let base = self.input.as_ptr() as usize;
        let at = s.as_ptr() as usize;
        if borrowed && at >= base && at + s.len() <= base + self.input.len() {
            let start = (at - base) as u32;
            return Span::Input(start, start + s.len() as u32);
        }
        let start = self.tape.text.len() as u32;
        self.tape.text.push_str(s);
        Span::Own(start, self.tape.text.len() as u32)
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.tape.entries.push(Entry::Null);
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.tape.entries.push(Entry::Bool(v));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.tape.entries.push(Entry::U64(v));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.tape.entries.push(Entry::I64(v));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.tape.entries.push(Entry::F64(v));
        Ok(())
    }

    fn visit_borrowed_str<E>(mut self, v: &'de str) -> Result<(), E> {
        let span = self.span(v, true);
        self.tape.entries.push(Entry::Str(span));
        Ok(())
    }

    fn visit_str<E>(mut self, v: &str) -> Result<(), E> {
        let span = self.span(v, false);
        self.tape.entries.push(Entry::Str(span));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = self.tape.entries.len();
        self.tape.entries.push(Entry::Array { len: 0, end: 0 });
        let mut len = 0u32;
        while seq
            .next_element_seed(Seed {
                tape: &mut *self.tape,
                input: self.input,
            })?
            .is_some()
        {
            len += 1;
        }
        let end = self.tape.entries.len() as u32;
        self.tape.entries[at] = Entry::Array { len, end };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = self.tape.entries.len();
        self.tape.entries.push(Entry::Object { len: 0, end: 0 });
        let mut len = 0u32;
        while map
            .next_key_seed(KeySeed(Seed {
                tape: &mut *self.tape,
                input: self.input,
            }))?
            .is_some()
        {
            map.next_value_seed(Seed {
                tape: &mut *self.tape,
                input: self.input,
            })?;
            len += 1;
        }
        let end = self.tape.entries.len() as u32;
        self.tape.entries[at] = Entry::Object { len, end };
        Ok(())
    }
}

/// An object's member name.
struct KeySeed<'t, 'i>(Seed<'t, 'i>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(mut self, v: &'de str) -> Result<(), E> {
        let span = self.0.span(v, true);
        self.0.tape.entries.push(Entry::Key(span));
        Ok(())
    }

    fn visit_str<E>(mut self, v: &str) -> Result<(), E> {
        let span = self.0.span(v, false);
        self.0.tape.entries.push(Entry::Key(span));
        Ok(())
    }
}

/// A parsed payload, borrowed for one validation.
#[derive(Debug)]
pub(crate) struct Doc<'a> {
    entries: &'a [Entry],
    text: &'a str,
    input: &'a str,
}

impl<'a> Doc<'a> {
    #[inline]
    fn str(&self, span: Span) -> &'a str {
        match span {
            Span::Input(a, b) => &self.input[a as usize..b as usize],
            Span::Own(a, b) => &self.text[a as usize..b as usize],
        }
    }

    /// The index just past the value at `i`.
    fn next(&self, i: u32) -> u32 {
        match self.entries[i as usize] {
            Entry::Array { end, .. } | Entry::Object { end, .. } => end,
            _ => i + 1,
        }
    }
}

/// The `jsonschema` representation over [`Tape`].
#[derive(Debug)]
pub(crate) struct TapeJson;

impl Json for TapeJson {
    type Node<'a> = TapeNode<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = ();

    // A lookup scans the members: a members pass is never dearer.
    const KEYS_PER_LOOKUP: usize = 16;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(TapeNode<'_>) -> T) -> T {
        f(TapeNode::Str(string))
    }
}

/// A value on the tape, or a lone string (a member name being validated).
#[derive(Debug, Clone, Copy)]
pub(crate) enum TapeNode<'a> {
    At(&'a Doc<'a>, u32),
    Str(&'a str),
}

impl<'a> TapeNode<'a> {
    fn entry(&self) -> Option<(&'a Doc<'a>, u32, Entry)> {
        match *self {
            TapeNode::At(doc, i) => Some((doc, i, doc.entries[i as usize])),
            TapeNode::Str(_) => None,
        }
    }
}

/// A number as the parser read it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TapeNumber {
    U64(u64),
    I64(i64),
    F64(f64),
}

impl TapeNumber {
    fn number(&self) -> Number {
        match *self {
            TapeNumber::U64(n) => Number::from(n),
            TapeNumber::I64(n) => Number::from(n),
            // The parser never yields a non-finite number.
            TapeNumber::F64(f) => Number::from_f64(f).unwrap_or_else(|| Number::from(0)),
        }
    }
}

impl JsonNumber for TapeNumber {
    // As `serde_json::Number` answers them, without building one.
    fn as_u64(&self) -> Option<u64> {
        match *self {
            TapeNumber::U64(n) => Some(n),
            TapeNumber::I64(n) => u64::try_from(n).ok(),
            TapeNumber::F64(_) => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match *self {
            TapeNumber::U64(n) => i64::try_from(n).ok(),
            TapeNumber::I64(n) => Some(n),
            TapeNumber::F64(_) => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        Some(match *self {
            TapeNumber::U64(n) => n as f64,
            TapeNumber::I64(n) => n as f64,
            TapeNumber::F64(f) => f,
        })
    }

    fn as_str(&self) -> Cow<'_, str> {
        Cow::Owned(self.number().to_string())
    }

    fn to_number(&self) -> Cow<'_, Number> {
        Cow::Owned(self.number())
    }

    fn is_integer(&self) -> bool {
        match *self {
            TapeNumber::U64(_) | TapeNumber::I64(_) => true,
            TapeNumber::F64(f) => f.fract() == 0.0,
        }
    }

    fn is_written_as_integer(&self) -> bool {
        !matches!(self, TapeNumber::F64(_))
    }
}

impl<'a> Node<'a, TapeJson> for TapeNode<'a> {
    type Object = TapeObject<'a>;
    type Array = TapeArray<'a>;
    type Number = TapeNumber;

    fn as_object(&self) -> Option<TapeObject<'a>> {
        match self.entry()? {
            (doc, i, Entry::Object { len, end }) => Some(TapeObject {
                doc,
                at: i,
                len,
                end,
            }),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<TapeArray<'a>> {
        match self.entry()? {
            (doc, i, Entry::Array { len, end }) => Some(TapeArray {
                doc,
                at: i,
                len,
                end,
            }),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match *self {
            TapeNode::Str(s) => Some(Cow::Borrowed(s)),
            TapeNode::At(doc, i) => match doc.entries[i as usize] {
                Entry::Str(span) => Some(Cow::Borrowed(doc.str(span))),
                _ => None,
            },
        }
    }

    fn as_number(&self) -> Option<TapeNumber> {
        match self.entry()?.2 {
            Entry::U64(n) => Some(TapeNumber::U64(n)),
            Entry::I64(n) => Some(TapeNumber::I64(n)),
            Entry::F64(f) => Some(TapeNumber::F64(f)),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.entry()?.2 {
            Entry::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.entry(), Some((_, _, Entry::Null)))
    }

    fn is_number(&self) -> bool {
        matches!(
            self.entry(),
            Some((_, _, Entry::U64(_) | Entry::I64(_) | Entry::F64(_)))
        )
    }

    fn json_type(&self) -> JsonType {
        match self.entry() {
            None => JsonType::String,
            Some((_, _, e)) => match e {
                Entry::Null => JsonType::Null,
                Entry::Bool(_) => JsonType::Boolean,
                Entry::U64(_) | Entry::I64(_) | Entry::F64(_) => JsonType::Number,
                Entry::Str(_) | Entry::Key(_) => JsonType::String,
                Entry::Array { .. } => JsonType::Array,
                Entry::Object { .. } => JsonType::Object,
            },
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(match *self {
            TapeNode::Str(s) => Value::String(s.to_string()),
            TapeNode::At(doc, i) => value(doc, i),
        })
    }

    fn identity(&self) -> Option<NodeIdentity> {
        match *self {
            TapeNode::At(doc, i) => Some(NodeIdentity::tagged(
                std::ptr::from_ref::<Doc<'_>>(doc) as usize,
                i,
            )),
            TapeNode::Str(_) => None,
        }
    }
}

/// The `serde_json::Value` of the value at `i` (for error reports).
fn value(doc: &Doc<'_>, i: u32) -> Value {
    match doc.entries[i as usize] {
        Entry::Null => Value::Null,
        Entry::Bool(b) => Value::Bool(b),
        Entry::U64(n) => Value::from(n),
        Entry::I64(n) => Value::from(n),
        Entry::F64(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Entry::Str(span) | Entry::Key(span) => Value::String(doc.str(span).to_string()),
        Entry::Array { .. } => {
            let array = TapeArray::of(doc, i);
            Value::Array(
                array
                    .elements()
                    .map(|n| n.to_value().into_owned())
                    .collect(),
            )
        }
        Entry::Object { .. } => {
            let object = TapeObject::of(doc, i);
            let mut map = Map::new();
            for (k, v) in object.members() {
                map.insert(k.to_string(), v.to_value().into_owned());
            }
            Value::Object(map)
        }
    }
}

/// An object on the tape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TapeObject<'a> {
    doc: &'a Doc<'a>,
    at: u32,
    len: u32,
    end: u32,
}

impl<'a> TapeObject<'a> {
    fn of(doc: &'a Doc<'a>, at: u32) -> TapeObject<'a> {
        match doc.entries[at as usize] {
            Entry::Object { len, end } => TapeObject { doc, at, len, end },
            _ => TapeObject {
                doc,
                at,
                len: 0,
                end: at + 1,
            },
        }
    }
}

/// The members of an object, in order.
#[derive(Debug)]
pub(crate) struct Members<'a> {
    doc: &'a Doc<'a>,
    next: u32,
    end: u32,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, TapeNode<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let Entry::Key(span) = self.doc.entries[self.next as usize] else {
            return None;
        };
        let value = self.next + 1;
        self.next = self.doc.next(value);
        Some((self.doc.str(span), TapeNode::At(self.doc, value)))
    }
}

impl<'a> Object<'a, TapeJson> for TapeObject<'a> {
    type Node = TapeNode<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        self.len as usize
    }

    fn get(&self, key: &Box<str>) -> Option<TapeNode<'a>> {
        // Duplicate names: the last one wins, as in a `serde_json::Map`.
        self.members()
            .filter(|(name, _)| *name == &**key)
            .last()
            .map(|(_, node)| node)
    }

    fn members(&self) -> Members<'a> {
        Members {
            doc: self.doc,
            next: self.at + 1,
            end: self.end,
        }
    }
}

/// An array on the tape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TapeArray<'a> {
    doc: &'a Doc<'a>,
    at: u32,
    len: u32,
    end: u32,
}

impl<'a> TapeArray<'a> {
    fn of(doc: &'a Doc<'a>, at: u32) -> TapeArray<'a> {
        match doc.entries[at as usize] {
            Entry::Array { len, end } => TapeArray { doc, at, len, end },
            _ => TapeArray {
                doc,
                at,
                len: 0,
                end: at + 1,
            },
        }
    }
}

/// The elements of an array, in order.
#[derive(Debug)]
pub(crate) struct Elements<'a> {
    doc: &'a Doc<'a>,
    next: u32,
    end: u32,
}

impl<'a> Iterator for Elements<'a> {
    type Item = TapeNode<'a>;

    fn next(&mut self) -> Option<TapeNode<'a>> {
        if self.next >= self.end {
            return None;
        }
        let at = self.next;
        self.next = self.doc.next(at);
        Some(TapeNode::At(self.doc, at))
    }
}

impl<'a> Array<'a, TapeJson> for TapeArray<'a> {
    type Node = TapeNode<'a>;
    type ElementsIter = Elements<'a>;

    fn len(&self) -> usize {
        self.len as usize
    }

    fn elements(&self) -> Elements<'a> {
        Elements {
            doc: self.doc,
            next: self.at + 1,
            end: self.end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conforms_to_the_validators_contract() {
        let text = jsonschema::json::conformance::document().to_string();
        Tape::with(text.as_bytes(), |root| {
            jsonschema::json::conformance::assert_conformance::<TapeJson>(&root);
        })
        .expect("the document parses");
    }

    #[test]
    fn reads_back_what_it_parsed() {
        for text in [
            r#"{"a":1,"b":[true,null,-2,2.5,"x\n\u00e9"],"c":{"d":{}},"e\"":[]}"#,
            r#"[1,[2,[3,[4]]],{"k":"v"}]"#,
            r#""just a string""#,
            "18446744073709551615",
            "-9223372036854775808",
            "1e400",
        ] {
            let expected: Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(_) => {
                    assert!(Tape::with(text.as_bytes(), |_| ()).is_err(), "{text}");
                    continue;
                }
            };
            let got = Tape::with(text.as_bytes(), |root| root.to_value().into_owned()).unwrap();
            assert_eq!(got, expected, "{text}");
        }
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "1 2", "\"\\ud800\"", "nul"] {
            let ours = Tape::with(bad.as_bytes(), |_| ()).unwrap_err().to_string();
            let serde = serde_json::from_str::<Value>(bad).unwrap_err().to_string();
            assert_eq!(ours, serde, "{bad}");
        }
        let ours = Tape::with(b"\"\xff\"", |_| ()).unwrap_err().to_string();
        let serde = serde_json::from_slice::<Value>(b"\"\xff\"")
            .unwrap_err()
            .to_string();
        assert_eq!(ours, serde);
    }

    #[test]
    fn duplicate_member_names_read_as_serde_json_does() {
        let text = r#"{"a":1,"a":"two"}"#;
        Tape::with(text.as_bytes(), |root| {
            let object = root.as_object().unwrap();
            let a = object.get(&TapeJson::prepare_key("a")).unwrap();
            assert_eq!(a.as_string().as_deref(), Some("two"));
        })
        .expect("the document parses");
    }

    #[test]
    fn numbers_read_as_serde_json_numbers_do() {
        for n in [
            TapeNumber::U64(0),
            TapeNumber::U64(u64::MAX),
            TapeNumber::U64(i64::MAX as u64 + 1),
            TapeNumber::I64(-1),
            TapeNumber::I64(i64::MIN),
            TapeNumber::F64(-2.5),
            TapeNumber::F64(3.0),
        ] {
            let serde = n.number();
            assert_eq!(n.as_u64(), serde.as_u64(), "{n:?}");
            assert_eq!(n.as_i64(), serde.as_i64(), "{n:?}");
            assert_eq!(n.as_f64(), serde.as_f64(), "{n:?}");
        }
    }

    #[test]
    fn string_stops_are_found_wherever_they_are() {
        for len in 0..40 {
            for stop in [b'"', b'\\', 0x00, 0x1f] {
                for at in 0..len {
                    let mut s = vec![b'a'; len];
                    s[at] = stop;
                    // Bytes that look like stops to a careless mask: above 0x7f, 0x20, 0x21.
                    for (i, c) in s.iter_mut().enumerate().skip(at + 1) {
                        *c = [0xe9, 0x20, 0x21, b'"'][i % 4];
                    }
                    assert_eq!(string_stop(&s), Some(at), "{s:?}");
                }
            }
            let plain: Vec<u8> = (0..len)
                .map(|i| [b'a', 0xc3, 0xa9, 0x20, 0x7f][i % 5])
                .collect();
            assert_eq!(string_stop(&plain), None, "{plain:?}");
        }
    }

    #[test]
    fn fast_parser_agrees_with_serde_json() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "-0.0",
            "1.5",
            "-1.25",
            "01",
            "1.",
            ".5",
            "1e3",
            "1E-2",
            "-",
            "--1",
            "18446744073709551615",
            "999999999999999999",
            "1000000000000000000",
            "-999999999999999999",
            "0.1",
            "0.30000000000000004",
            "123456789012345.6",
            "12345678901234.56",
            "9007199254740993.0",
            "3.141592653589793",
            "1.7976931348623157",
            "true",
            "false",
            "null",
            "tru",
            "nulll",
            "\"\"",
            "\"a\\nb\"",
            "\"\u{1}\"",
            "\"\u{7f}é\"",
            "[]",
            "{}",
            "[,]",
            "[1,]",
            "{\"a\":}",
            "{\"a\" :1 , \"b\":[ ]}",
            " \t\r\n[1]\n",
            "[1]x",
            "{\"a\":1}}",
            "[[[[[[[[]]]]]]]]",
            "\u{c}1",
            "1\u{b}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        texts.push("[".repeat(70) + &"]".repeat(70));
        texts.push("[".repeat(64) + &"]".repeat(64));
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let noise = b",:{}[]\"\\ 0-.eE19tfn\n\x01";
        for v in values(0xfa57, 1500) {
            for text in [v.to_string(), serde_json::to_string_pretty(&v).unwrap()] {
                let mut bytes = text.clone().into_bytes();
                texts.push(text);
                if bytes.is_empty() {
                    continue;
                }
                let at = (next() % bytes.len() as u64) as usize;
                texts.push(String::from_utf8_lossy(&bytes[..at]).into_owned());
                bytes[at] = noise[(next() % noise.len() as u64) as usize];
                texts.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        let taken = texts
            .iter()
            .filter(|t| assert_fast_agrees(t.as_bytes()))
            .count();
        // The fast parser does the common work (not every payload falls back).
        assert!(taken > texts.len() / 3, "{taken} of {}", texts.len());
        for (text, fast) in [
            ("{\"price\":12.5,\"id\":7,\"n\":-3,\"s\":\"x\"}", true),
            ("{\"s\":\"\\u00e9\"}", false),
            ("1e3", false),
            ("-0", false),
        ] {
            assert_eq!(assert_fast_agrees(text.as_bytes()), fast, "{text}");
        }
    }

    /// A deterministic stream of JSON values of every kind, nested.
    fn values(seed: u64, count: usize) -> Vec<Value> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        fn build(next: &mut dyn FnMut() -> u64, depth: u32) -> Value {
            match next() % if depth > 3 { 6 } else { 8 } {
                0 => Value::Null,
                1 => Value::Bool(next().is_multiple_of(2)),
                2 => Value::from((next() % 200) as i64 - 100),
                3 => Value::from((next() % 1000) as f64 / 8.0),
                4 => Value::from(
                    ["", "a", "ab", "éé", "abcdefghij", "x-1", "2024-01-01"][(next() % 7) as usize],
                ),
                5 => Value::from(next() % 3),
                6 => Value::Array((0..next() % 4).map(|_| build(next, depth + 1)).collect()),
                _ => {
                    let keys = ["id", "name", "tags", "n", "nested", "extra"];
                    Value::Object(
                        (0..next() % 5)
                            .map(|_| {
                                (
                                    keys[(next() % 6) as usize].to_string(),
                                    build(next, depth + 1),
                                )
                            })
                            .collect(),
                    )
                }
            }
        }
        (0..count).map(|_| build(&mut next, 0)).collect()
    }

    /// The tape and `serde_json::Value` give the same answer for every schema and value.
    #[test]
    fn validates_exactly_as_serde_json_values_do() {
        let schemas = [
            serde_json::json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "integer", "minimum": 0}, "name": {"type": "string", "minLength": 2, "pattern": "^[a-z]"}}}),
            serde_json::json!({"type": "array", "items": {"type": ["number", "null"]}, "uniqueItems": true, "maxItems": 3}),
            serde_json::json!({"anyOf": [{"type": "string", "maxLength": 2}, {"type": "object", "additionalProperties": false, "properties": {"n": {"multipleOf": 0.5}}}]}),
            serde_json::json!({"type": "object", "propertyNames": {"maxLength": 3}, "minProperties": 1, "dependentRequired": {"tags": ["n"]}}),
            serde_json::json!({"enum": [1, "a", null, [], {"id": 1}]}),
            serde_json::json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"}),
            serde_json::json!({"type": "object", "properties": {"nested": {"$ref": "#"}}, "patternProperties": {"^t": {"type": "array", "contains": {"const": true}}}}),
            serde_json::json!({"not": {"type": "object", "required": ["extra"]}, "if": {"type": "number"}, "then": {"exclusiveMaximum": 50}, "else": true}),
        ];
        let samples = values(0x5eed, 3000);
        for schema in &schemas {
            let by_value = jsonschema::validator_for(schema).unwrap();
            let by_tape = jsonschema::options_for::<TapeJson>().build(schema).unwrap();
            let mut agreed = [0usize; 2];
            for v in &samples {
                let text = v.to_string();
                let expected = by_value.is_valid(v);
                let got = Tape::with(text.as_bytes(), |root| by_tape.is_valid(root)).unwrap();
                assert_eq!(got, expected, "schema {schema} on {text}");
                agreed[usize::from(expected)] += 1;
            }
            assert!(
                agreed[0] > 0 && agreed[1] > 0,
                "schema {schema}: {agreed:?} (both answers must occur)"
            );
        }
    }
}
