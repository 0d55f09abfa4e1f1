//! The two REST dialects: Confluent's (schema-registry, Karapace) and Apicurio's v2.

use std::sync::Arc;

use reqwest::Url;
use serde_json::Value;

/// Which registry API a catalog speaks, with its dialect's options.
#[derive(Debug, Clone)]
pub(crate) enum Api {
    /// `GET /subjects/{subject}/versions/{version}` -> `id` (and `schema`);
    /// `GET /schemas/ids/{id}` -> `schema`. Wire prefix: `0x00` + 4-byte id.
    Confluent,
    /// `GET /apis/registry/v2/groups/{group}/artifacts/{artifact}[/versions/{v}]/meta` -> the
    /// `use-id` field; `GET /apis/registry/v2/ids/{globalIds|contentIds}/{id}` -> the raw text.
    /// Wire prefix: `0x00` + 8-byte id, or 4-byte with `id-encoding: legacy`.
    Apicurio {
        group: String,
        content_id: bool,
        legacy: bool,
    },
}

/// What a subject lookup answered.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) id: u32,
    /// The schema text, when the answer carries it (Confluent's does): saves a second request.
    pub(crate) schema: Option<Arc<str>>,
}

impl Api {
    /// The URL that resolves `subject` at `version`.
    pub(crate) fn subject_url(&self, base: &Url, subject: &str, version: &str) -> Url {
        match self {
            Api::Confluent => with_segments(base, &["subjects", subject, "versions", version]),
            Api::Apicurio { group, .. } if version == "latest" => with_segments(
                base,
                &[
                    "apis",
                    "registry",
                    "v2",
                    "groups",
                    group,
                    "artifacts",
                    subject,
                    "meta",
                ],
            ),
            Api::Apicurio { group, .. } => with_segments(
                base,
                &[
                    "apis",
                    "registry",
                    "v2",
                    "groups",
                    group,
                    "artifacts",
                    subject,
                    "versions",
                    version,
                    "meta",
                ],
            ),
        }
    }

    /// The URL that fetches the schema text of `id`.
    pub(crate) fn schema_url(&self, base: &Url, id: u32) -> Url {
        let id = id.to_string();
        match self {
            Api::Confluent => with_segments(base, &["schemas", "ids", &id]),
            Api::Apicurio { content_id, .. } => with_segments(
                base,
                &[
                    "apis",
                    "registry",
                    "v2",
                    "ids",
                    if *content_id {
                        "contentIds"
                    } else {
                        "globalIds"
                    },
                    &id,
                ],
            ),
        }
    }

    /// Reads a subject lookup's 200 body.
    pub(crate) fn parse_subject(&self, body: &[u8]) -> Result<Resolved, String> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
        let field = match self {
            Api::Confluent => "id",
            Api::Apicurio { content_id, .. } => {
                if *content_id {
                    "contentId"
                } else {
                    "globalId"
                }
            }
        };
        let id = v
            .get(field)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("the answer has no numeric `{field}`"))?;
        let id = u32::try_from(id).map_err(|_| format!("`{field}` {id} does not fit 32 bits"))?;
        let schema = match self {
            Api::Confluent => v.get("schema").and_then(Value::as_str).map(Arc::from),
            Api::Apicurio { .. } => None,
        };
        Ok(Resolved { id, schema })
    }

    /// Reads a schema lookup's 200 body.
    pub(crate) fn parse_schema(&self, body: &[u8]) -> Result<Arc<str>, String> {
        match self {
            Api::Confluent => {
                let v: Value = serde_json::from_slice(body)
                    .map_err(|e| format!("the answer is not JSON: {e}"))?;
                v.get("schema")
                    .and_then(Value::as_str)
                    .map(Arc::from)
                    .ok_or_else(|| "the answer has no `schema` string".to_string())
            }
            Api::Apicurio { .. } => std::str::from_utf8(body)
                .map(Arc::from)
                .map_err(|_| "the schema is not UTF-8 text".to_string()),
        }
    }

    /// Splits the wire prefix off a payload: `0x00`, then the id big-endian.
    pub(crate) fn decode<'a>(&self, payload: &'a [u8]) -> Option<(u32, &'a [u8])> {
        let width = match self {
            Api::Confluent | Api::Apicurio { legacy: true, .. } => 4,
            Api::Apicurio { legacy: false, .. } => 8,
        };
        let (&magic, rest) = payload.split_first()?;
        if magic != 0 || rest.len() < width {
            return None;
        }
        let (id, rest) = rest.split_at(width);
        let id = id.iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
        Some((u32::try_from(id).ok()?, rest))
    }
}

fn with_segments(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:8081/").unwrap()
    }

    #[test]
    fn confluent_urls_and_answers() {
        let api = Api::Confluent;
        assert_eq!(
            api.subject_url(&base(), "items-snapshots-value", "latest")
                .as_str(),
            "http://127.0.0.1:8081/subjects/items-snapshots-value/versions/latest"
        );
        assert_eq!(
            api.subject_url(&Url::parse("http://h/reg").unwrap(), "a/b", "1")
                .as_str(),
            "http://h/reg/subjects/a%2Fb/versions/1",
            "a subject is one path segment, escaped"
        );
        assert_eq!(
            api.schema_url(&base(), 9).as_str(),
            "http://127.0.0.1:8081/schemas/ids/9"
        );
        let r = api
            .parse_subject(br#"{"subject":"s","version":1,"id":9,"schema":"{}"}"#)
            .unwrap();
        assert_eq!((r.id, r.schema.as_deref()), (9, Some("{}")));
        assert!(api.parse_subject(br#"{"id":"9"}"#).is_err());
        assert_eq!(
            api.parse_schema(br#"{"schema":"{\"type\":\"string\"}"}"#)
                .unwrap()
                .as_ref(),
            r#"{"type":"string"}"#
        );
        assert_eq!(api.decode(&[0, 0, 0, 0, 9, b'x']), Some((9, &b"x"[..])));
        assert_eq!(api.decode(&[1, 0, 0, 0, 9]), None, "no magic byte");
        assert_eq!(api.decode(&[0, 0, 0]), None, "too short");
    }

    #[test]
    fn apicurio_urls_ids_and_prefixes() {
        let api = Api::Apicurio {
            group: "default".into(),
            content_id: false,
            legacy: false,
        };
        assert_eq!(
            api.subject_url(&base(), "items", "latest").as_str(),
            "http://127.0.0.1:8081/apis/registry/v2/groups/default/artifacts/items/meta"
        );
        assert_eq!(
            api.subject_url(&base(), "items", "3").as_str(),
            "http://127.0.0.1:8081/apis/registry/v2/groups/default/artifacts/items/versions/3/meta"
        );
        assert_eq!(
            api.schema_url(&base(), 7).as_str(),
            "http://127.0.0.1:8081/apis/registry/v2/ids/globalIds/7"
        );
        assert_eq!(
            api.parse_subject(br#"{"globalId":7,"contentId":3}"#)
                .unwrap()
                .id,
            7
        );
        assert_eq!(
            api.parse_schema(b"{\"type\":\"string\"}").unwrap().len(),
            17
        );
        assert_eq!(
            api.decode(&[0, 0, 0, 0, 0, 0, 0, 0, 7, b'x']),
            Some((7, &b"x"[..]))
        );
        let legacy = Api::Apicurio {
            group: "g".into(),
            content_id: true,
            legacy: true,
        };
        assert_eq!(
            legacy
                .parse_subject(br#"{"globalId":7,"contentId":3}"#)
                .unwrap()
                .id,
            3
        );
        assert!(legacy
            .schema_url(&base(), 3)
            .as_str()
            .ends_with("/ids/contentIds/3"));
        assert_eq!(legacy.decode(&[0, 0, 0, 0, 3, b'x']), Some((3, &b"x"[..])));
    }
}
