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
#[derive(Debug, Clone, Copy)]
enum Span {
    Input(u32, u32),
    Own(u32, u32),
}

/// One tape entry. A container is followed by its members (an object's as key, value pairs);
/// `end` is the index just past its last descendant.
#[derive(Debug, Clone, Copy)]
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

/// Most a thread keeps between payloads (a tape grown past these is freed before the next).
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
        if self.entries.capacity() > KEEP_ENTRIES || self.text.capacity() > KEEP_TEXT {
            *self = Tape::default();
        }
        self.entries.clear();
        self.text.clear();
        let mut de = serde_json::Deserializer::from_str(input);
        Seed { tape: self, input }.deserialize(&mut de)?;
        de.end()?;
        let doc = Doc {
            entries: &self.entries,
            text: &self.text,
            input,
        };
        Ok(f(TapeNode::At(&doc, 0)))
    }
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
    fn as_u64(&self) -> Option<u64> {
        self.number().as_u64()
    }

    fn as_i64(&self) -> Option<i64> {
        self.number().as_i64()
    }

    fn as_f64(&self) -> Option<f64> {
        self.number().as_f64()
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
