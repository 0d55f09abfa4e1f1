//! `string`: an encoding, a length range in characters (code points) and a whole-string
//! pattern.

use std::sync::Arc;

use regex::Regex;
use schemars::JsonSchema;
use serde::Deserialize;
use zilla_engine::{ConfigError, Invalid, Model, ModelContext, ModelDescriptor, ModelFactory, Why};

use crate::invalid;

/// The `string` model type.
#[derive(Debug)]
pub struct StringFactory;

zilla_engine::inventory::submit! { ModelDescriptor::new::<StringFactory>() }

/// How the text is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum Encoding {
    /// UTF-8 (the default): every byte sequence must be well formed.
    #[default]
    #[serde(rename = "utf_8")]
    Utf8,
    /// UTF-16, big-endian unless a byte order mark says otherwise.
    #[serde(rename = "utf_16")]
    Utf16,
}

/// Keys of the `string` model.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StringOptions {
    /// The encoding (`utf_8` by default).
    #[serde(default)]
    pub encoding: Encoding,
    /// Fewest characters (code points, not bytes), at least 1.
    #[serde(default, rename = "minLength")]
    #[schemars(range(min = 1))]
    pub min_length: Option<usize>,
    /// Most characters (code points, not bytes), at least 1.
    #[serde(default, rename = "maxLength")]
    #[schemars(range(min = 1))]
    pub max_length: Option<usize>,
    /// A regular expression the whole string must match.
    #[serde(default)]
    pub pattern: Option<String>,
}

impl ModelFactory for StringFactory {
    const TYPE: &'static str = "string";
    const CATALOGED: bool = false;
    type Options = StringOptions;

    fn build(cx: &ModelContext, o: StringOptions) -> Result<Arc<dyn Model>, ConfigError> {
        for (key, v) in [("minLength", o.min_length), ("maxLength", o.max_length)] {
            if v == Some(0) {
                return Err(cx.error(key, "must be at least 1"));
            }
        }
        if let (Some(min), Some(max)) = (o.min_length, o.max_length) {
            if min > max {
                return Err(cx.error("minLength", format!("{min} is more than maxLength {max}")));
            }
        }
        let pattern = match &o.pattern {
            Some(p) => Some(
                Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| cx.error("pattern", format!("not a regular expression: {e}")))?,
            ),
            None => None,
        };
        Ok(Arc::new(StringModel {
            encoding: o.encoding,
            min: o.min_length,
            max: o.max_length,
            pattern,
        }))
    }
}

#[derive(Debug)]
struct StringModel {
    encoding: Encoding,
    min: Option<usize>,
    max: Option<usize>,
    pattern: Option<Regex>,
}

fn utf16(payload: &[u8]) -> Option<String> {
    if !payload.len().is_multiple_of(2) {
        return None;
    }
    let (little, body) = match payload {
        [0xff, 0xfe, rest @ ..] => (true, rest),
        [0xfe, 0xff, rest @ ..] => (false, rest),
        _ => (false, payload),
    };
    let units = body.chunks_exact(2).map(|c| {
        if little {
            u16::from_le_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], c[1]])
        }
    });
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

impl Model for StringModel {
    fn validate(&self, payload: &[u8]) -> Result<(), Invalid> {
        let decoded;
        let text = match self.encoding {
            Encoding::Utf8 => std::str::from_utf8(payload)
                .map_err(|e| invalid(Why::Malformed, "string", format!("not UTF-8 ({e})")))?,
            Encoding::Utf16 => {
                decoded = utf16(payload)
                    .ok_or_else(|| invalid(Why::Malformed, "string", "not UTF-16"))?;
                decoded.as_str()
            }
        };
        if self.min.is_some() || self.max.is_some() {
            let n = text.chars().count();
            if self.min.is_some_and(|m| n < m) || self.max.is_some_and(|m| n > m) {
                return Err(invalid(
                    Why::Violation,
                    "string",
                    format!(
                        "{n} characters, outside [{}, {}]",
                        self.min.map_or("0".into(), |m| m.to_string()),
                        self.max.map_or("any".into(), |m| m.to_string())
                    ),
                ));
            }
        }
        if let Some(p) = &self.pattern {
            if !p.is_match(text) {
                return Err(invalid(
                    Why::Violation,
                    "string",
                    format!("does not match the pattern {}", p.as_str()),
                ));
            }
        }
        Ok(())
    }
}
