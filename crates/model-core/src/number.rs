//! `int32`, `int64`, `float`, `double` and `boolean`: text or big-endian binary, a range and a
//! multiple.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use zilla_engine::{ConfigError, Invalid, Model, ModelContext, ModelDescriptor, ModelFactory, Why};

use crate::invalid;

/// How a number is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Decimal text (the default).
    #[default]
    Text,
    /// Fixed-size big-endian binary (4 or 8 bytes; one byte for boolean).
    Binary,
}

/// Keys of the `int32` and `int64` models.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegerOptions {
    /// `text` (optional sign, then ASCII digits) or `binary` (big-endian).
    #[serde(default)]
    pub format: Format,
    /// Allowed values, `[min,max]`: `(`/`)` exclude a bound, either bound may be empty
    /// (`[0,)`).
    #[serde(default)]
    pub range: Option<String>,
    /// Values must be a multiple of this (default 1).
    #[serde(default)]
    pub multiple: Option<i64>,
}

/// Keys of the `float` and `double` models.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FloatOptions {
    /// `text` (optional sign, digits, at most one `.`, optional trailing `f`; no exponent) or
    /// `binary` (IEEE-754, big-endian).
    #[serde(default)]
    pub format: Format,
    /// Allowed values, `[min,max]` with decimals allowed; `(`/`)` exclude a bound.
    #[serde(default)]
    pub range: Option<String>,
    /// Values must be a multiple of this.
    #[serde(default)]
    pub multiple: Option<f64>,
}

/// Keys of the `boolean` model.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BooleanOptions {
    /// `binary` (one byte, 0x00 or 0x01, as Zilla) or `text` (`true` or `false`). Zilla's
    /// boolean is binary only; binary is the default.
    #[serde(default = "binary")]
    pub format: Format,
}

fn binary() -> Format {
    Format::Binary
}

/// A parsed `range`: bounds with whether each is inclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Range<T> {
    min: Option<(T, bool)>,
    max: Option<(T, bool)>,
}

impl<T: PartialOrd + Copy + std::str::FromStr> Range<T> {
    fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("'{s}' is not a range like [0,100) or (,5]");
        let open = s.chars().next().ok_or_else(bad)?;
        let close = s.chars().last().ok_or_else(bad)?;
        if !matches!(open, '[' | '(') || !matches!(close, ']' | ')') || s.len() < 3 {
            return Err(bad());
        }
        let (lo, hi) = s[1..s.len() - 1].split_once(',').ok_or_else(bad)?;
        let bound = |v: &str, inclusive: bool| -> Result<Option<(T, bool)>, String> {
            let v = v.trim();
            if v.is_empty() {
                return Ok(None);
            }
            v.parse().map(|n| Some((n, inclusive))).map_err(|_| bad())
        };
        let r = Range {
            min: bound(lo, open == '[')?,
            max: bound(hi, close == ']')?,
        };
        if let (Some((a, _)), Some((b, _))) = (r.min, r.max) {
            if a > b {
                return Err(format!("'{s}': the lower bound is above the upper one"));
            }
        }
        Ok(r)
    }

    fn contains(&self, v: T) -> bool {
        let above = self
            .min
            .is_none_or(|(m, inc)| if inc { v >= m } else { v > m });
        let below = self
            .max
            .is_none_or(|(m, inc)| if inc { v <= m } else { v < m });
        above && below
    }
}

/// Text digits as Zilla accepts them: an optional sign, then at least one ASCII digit.
fn integer_text(payload: &[u8]) -> Option<&str> {
    let digits = match payload.first() {
        Some(b'+' | b'-') => &payload[1..],
        _ => payload,
    };
    (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(payload).ok())
        .flatten()
}

/// Decimal text: an optional sign, digits with at most one `.`, an optional trailing `f`/`F`,
/// no exponent.
fn decimal_text(payload: &[u8]) -> Option<&str> {
    let body = match payload.last() {
        Some(b'f' | b'F') => &payload[..payload.len() - 1],
        _ => payload,
    };
    let digits = match body.first() {
        Some(b'+' | b'-') => &body[1..],
        _ => body,
    };
    let dots = digits.iter().filter(|&&c| c == b'.').count();
    let ok = dots <= 1
        && digits.iter().any(u8::is_ascii_digit)
        && digits.iter().all(|c| c.is_ascii_digit() || *c == b'.');
    ok.then(|| std::str::from_utf8(body).ok()).flatten()
}

#[derive(Debug)]
struct IntegerModel {
    name: &'static str,
    bytes: usize,
    format: Format,
    range: Option<Range<i64>>,
    multiple: i64,
}

impl Model for IntegerModel {
    fn validate(&self, payload: &[u8]) -> Result<(), Invalid> {
        let malformed = |d: &str| invalid(Why::Malformed, self.name, d);
        let v: i64 = match self.format {
            Format::Text => {
                let t = integer_text(payload).ok_or_else(|| malformed("not an integer"))?;
                let v: i64 = t.parse().map_err(|_| malformed("out of range"))?;
                if self.bytes == 4 && i32::try_from(v).is_err() {
                    return Err(malformed("out of the 32-bit range"));
                }
                v
            }
            Format::Binary => match (self.bytes, payload) {
                (4, [a, b, c, d]) => i64::from(i32::from_be_bytes([*a, *b, *c, *d])),
                (8, p) if p.len() == 8 => i64::from_be_bytes(p.try_into().expect("eight bytes")),
                _ => return Err(malformed(&format!("not {} bytes", self.bytes))),
            },
        };
        if self.range.is_some_and(|r| !r.contains(v)) {
            return Err(invalid(
                Why::Violation,
                self.name,
                format!("{v} is out of range"),
            ));
        }
        if v % self.multiple != 0 {
            return Err(invalid(
                Why::Violation,
                self.name,
                format!("{v} is not a multiple of {}", self.multiple),
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FloatModel {
    name: &'static str,
    bytes: usize,
    format: Format,
    range: Option<Range<f64>>,
    multiple: Option<f64>,
}

impl Model for FloatModel {
    fn validate(&self, payload: &[u8]) -> Result<(), Invalid> {
        let malformed = |d: &str| invalid(Why::Malformed, self.name, d);
        let v: f64 = match self.format {
            Format::Text => {
                let t = decimal_text(payload).ok_or_else(|| malformed("not a decimal number"))?;
                let v: f64 = t.parse().map_err(|_| malformed("not a decimal number"))?;
                if self.bytes == 4 && (v as f32).is_infinite() {
                    return Err(malformed("out of the 32-bit range"));
                }
                v
            }
            Format::Binary => match (self.bytes, payload) {
                (4, [a, b, c, d]) => f64::from(f32::from_be_bytes([*a, *b, *c, *d])),
                (8, p) if p.len() == 8 => f64::from_be_bytes(p.try_into().expect("eight bytes")),
                _ => return Err(malformed(&format!("not {} bytes", self.bytes))),
            },
        };
        if v.is_nan() {
            return Err(malformed("not a number (NaN)"));
        }
        if self.range.is_some_and(|r| !r.contains(v)) {
            return Err(invalid(
                Why::Violation,
                self.name,
                format!("{v} is out of range"),
            ));
        }
        if let Some(m) = self.multiple {
            let q = v / m;
            if (q - q.round()).abs() > 1e-9 * q.abs().max(1.0) {
                return Err(invalid(
                    Why::Violation,
                    self.name,
                    format!("{v} is not a multiple of {m}"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct BooleanModel(Format);

impl Model for BooleanModel {
    fn validate(&self, payload: &[u8]) -> Result<(), Invalid> {
        let ok = match self.0 {
            Format::Binary => matches!(payload, [0] | [1]),
            Format::Text => matches!(payload, b"true" | b"false"),
        };
        if ok {
            Ok(())
        } else {
            Err(invalid(
                Why::Malformed,
                "boolean",
                match self.0 {
                    Format::Binary => "not one byte 0x00 or 0x01",
                    Format::Text => "not true or false",
                },
            ))
        }
    }
}

fn range<T: PartialOrd + Copy + std::str::FromStr>(
    cx: &ModelContext,
    r: &Option<String>,
) -> Result<Option<Range<T>>, ConfigError> {
    r.as_deref()
        .map(Range::parse)
        .transpose()
        .map_err(|e| cx.error("range", e))
}

macro_rules! integer_model {
    ($factory:ident, $name:literal, $bytes:literal) => {
        #[doc = concat!("The `", $name, "` model type.")]
        #[derive(Debug)]
        pub struct $factory;

        zilla_engine::inventory::submit! { ModelDescriptor::new::<$factory>() }

        impl ModelFactory for $factory {
            const TYPE: &'static str = $name;
            const CATALOGED: bool = false;
            type Options = IntegerOptions;

            fn build(cx: &ModelContext, o: IntegerOptions) -> Result<Arc<dyn Model>, ConfigError> {
                let multiple = o.multiple.unwrap_or(1);
                if multiple == 0 {
                    return Err(cx.error("multiple", "must not be 0"));
                }
                Ok(Arc::new(IntegerModel {
                    name: $name,
                    bytes: $bytes,
                    format: o.format,
                    range: range(cx, &o.range)?,
                    multiple,
                }))
            }
        }
    };
}

macro_rules! float_model {
    ($factory:ident, $name:literal, $bytes:literal) => {
        #[doc = concat!("The `", $name, "` model type.")]
        #[derive(Debug)]
        pub struct $factory;

        zilla_engine::inventory::submit! { ModelDescriptor::new::<$factory>() }

        impl ModelFactory for $factory {
            const TYPE: &'static str = $name;
            const CATALOGED: bool = false;
            type Options = FloatOptions;

            fn build(cx: &ModelContext, o: FloatOptions) -> Result<Arc<dyn Model>, ConfigError> {
                if o.multiple.is_some_and(|m| m == 0.0 || !m.is_finite()) {
                    return Err(cx.error("multiple", "must be a finite number other than 0"));
                }
                Ok(Arc::new(FloatModel {
                    name: $name,
                    bytes: $bytes,
                    format: o.format,
                    range: range(cx, &o.range)?,
                    multiple: o.multiple,
                }))
            }
        }
    };
}

integer_model!(Int32Factory, "int32", 4);
integer_model!(Int64Factory, "int64", 8);
float_model!(FloatFactory, "float", 4);
float_model!(DoubleFactory, "double", 8);

/// The `boolean` model type.
#[derive(Debug)]
pub struct BooleanFactory;

zilla_engine::inventory::submit! { ModelDescriptor::new::<BooleanFactory>() }

impl ModelFactory for BooleanFactory {
    const TYPE: &'static str = "boolean";
    const CATALOGED: bool = false;
    type Options = BooleanOptions;

    fn build(_: &ModelContext, o: BooleanOptions) -> Result<Arc<dyn Model>, ConfigError> {
        Ok(Arc::new(BooleanModel(o.format)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_with_open_and_closed_bounds() {
        let r = Range::<i64>::parse("[0,10)").unwrap();
        assert!(r.contains(0) && r.contains(9) && !r.contains(10) && !r.contains(-1));
        let r = Range::<i64>::parse("(,5]").unwrap();
        assert!(r.contains(i64::MIN) && r.contains(5) && !r.contains(6));
        let r = Range::<f64>::parse("(0.5,1.5)").unwrap();
        assert!(!r.contains(0.5) && r.contains(1.0) && !r.contains(1.5));
        for bad in ["0,10", "[a,b]", "[5,1]", "[]", ""] {
            assert!(Range::<i64>::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_forms_are_zillas() {
        assert_eq!(integer_text(b"-42"), Some("-42"));
        assert_eq!(integer_text(b"+7"), Some("+7"));
        for bad in [&b""[..], b"-", b"4 2", b"1e3", b"0x10", b"\xff"] {
            assert_eq!(integer_text(bad), None, "{bad:?}");
        }
        assert_eq!(decimal_text(b"-1.5f"), Some("-1.5"));
        assert_eq!(decimal_text(b"3"), Some("3"));
        for bad in [&b"1.2.3"[..], b"1e5", b".", b"f", b"nan", b"inf"] {
            assert_eq!(decimal_text(bad), None, "{bad:?}");
        }
    }
}
