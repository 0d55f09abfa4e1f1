//! The registry catalog's caches: answers from memory at once, fetches in the background.
//!
//! Lookups read an immutable snapshot through [`ArcSwap`] (no lock, no allocation). A lookup
//! that finds nothing, or an entry past its `max-age` and due for a retry, schedules one fetch
//! on the background runtime; the entry is marked busy in the snapshot straight away, so the
//! events behind it neither lock nor fetch again. Concurrent lookups of one key collapse into
//! that one request. A known id keeps serving while the registry is down (stale), retried with
//! a backoff of 1 s doubling up to `max-age`; schema texts never expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode, Url};
use zilla_engine::{Catalog, Counter, Events};

use crate::api::Api;

/// The event names of one registry type, as Zilla's (`catalog.schema.registry.stale.schema`).
#[derive(Debug)]
pub(crate) struct EventNames {
    pub(crate) unretrievable_subject: &'static str,
    pub(crate) stale: &'static str,
    pub(crate) retrievable_subject: &'static str,
    pub(crate) unretrievable_id: &'static str,
    pub(crate) retrievable_id: &'static str,
}

/// How a registry catalog reaches its registry.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) api: Api,
    pub(crate) url: Url,
    pub(crate) client: Client,
    pub(crate) headers: HeaderMap,
    pub(crate) max_age: Duration,
    /// Every request's timeout (connect included).
    pub(crate) timeout: Duration,
    pub(crate) source: String,
    pub(crate) events: Events,
    pub(crate) names: &'static EventNames,
    /// Requests sent and requests that failed, for the operator.
    pub(crate) requests: Counter,
    pub(crate) failures: Counter,
}

/// An id as the snapshot holds it.
#[derive(Debug, Clone, Copy)]
struct IdEntry {
    id: Option<u32>,
    /// Until when `id` is fresh.
    fresh_until: Instant,
    /// No fetch before this (a fetch in flight, or the backoff after a failure).
    retry_at: Instant,
}

/// A schema text as the snapshot holds it.
#[derive(Debug, Clone)]
struct SchemaEntry {
    text: Option<Arc<str>>,
    retry_at: Instant,
}

type Ids = HashMap<String, HashMap<String, IdEntry>>;

/// Per-key fetch state, taken only when a fetch is scheduled or finishes.
#[derive(Debug, Default)]
struct Control {
    subjects: HashMap<(String, String), Attempts>,
    ids: HashMap<u32, Attempts>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Attempts {
    in_flight: bool,
    failed: bool,
    backoff: Option<Duration>,
}

/// A registry catalog.
#[derive(Debug)]
pub(crate) struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    ids: ArcSwap<Ids>,
    schemas: ArcSwap<HashMap<u32, SchemaEntry>>,
    control: Mutex<Control>,
}

/// The first retry after a failure; later ones double up to `max-age`.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How long an id fetch that failed waits before the next (Zilla retries on every lookup).
const ID_RETRY: Duration = Duration::from_secs(1);
/// The most schema texts kept (Zilla keeps 1024).
const MAX_SCHEMAS: usize = 1024;

impl Registry {
    pub(crate) fn new(settings: Settings) -> Self {
        Registry {
            inner: Arc::new(Inner {
                settings,
                ids: ArcSwap::from_pointee(HashMap::new()),
                schemas: ArcSwap::from_pointee(HashMap::new()),
                control: Mutex::new(Control::default()),
            }),
        }
    }
}

impl Inner {
    /// Starts a fetch of `subject` at `version` unless one is running or backing off.
    fn schedule_subject(self: &Arc<Self>, subject: &str, version: &str) {
        let now = Instant::now();
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let current = self
            .ids
            .load()
            .get(subject)
            .and_then(|m| m.get(version))
            .copied();
        if current.is_some_and(|e| now < e.retry_at || (e.id.is_some() && now < e.fresh_until)) {
            return;
        }
        let attempts = control
            .subjects
            .entry((subject.to_string(), version.to_string()))
            .or_default();
        if attempts.in_flight {
            return;
        }
        attempts.in_flight = true;
        // Busy until the request's own timeout has passed; the fetch sets the real value.
        let busy = IdEntry {
            id: current.and_then(|e| e.id),
            fresh_until: current.map_or(now, |e| e.fresh_until),
            retry_at: now + Duration::from_secs(3600),
        };
        self.store_id(subject, version, busy);
        drop(control);
        let me = self.clone();
        let (subject, version) = (subject.to_string(), version.to_string());
        zilla_engine::background().spawn(async move {
            let weak = Arc::downgrade(&me);
            let retry = me.fetch_subject(&subject, &version).await;
            drop(me);
            // A subject named in the config is retried without waiting for traffic, so the
            // first event after the registry recovers already passes. A dropped catalog (a
            // reload replaced it) stops retrying.
            if let Some(delay) = retry {
                tokio::time::sleep(delay).await;
                if let Some(me) = weak.upgrade() {
                    me.schedule_subject(&subject, &version);
                }
            }
        });
    }

    fn store_id(&self, subject: &str, version: &str, entry: IdEntry) {
        self.ids.rcu(|ids| {
            let mut ids = Ids::clone(ids);
            ids.entry(subject.to_string())
                .or_default()
                .insert(version.to_string(), entry);
            ids
        });
    }

    fn store_schema(&self, id: u32, entry: SchemaEntry) {
        self.schemas.rcu(|schemas| {
            let mut schemas = HashMap::clone(schemas);
            if schemas.len() >= MAX_SCHEMAS && !schemas.contains_key(&id) {
                // Make room: forget a schema (a later lookup fetches it again).
                if let Some(k) = schemas.keys().next().copied() {
                    schemas.remove(&k);
                }
            }
            schemas.insert(id, entry.clone());
            schemas
        });
    }

    async fn get(&self, url: Url) -> Result<bytes::Bytes, String> {
        let s = &self.settings;
        s.requests.inc();
        let result = async {
            let response = s
                .client
                .get(url.clone())
                .headers(s.headers.clone())
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let status = response.status();
            if status != StatusCode::OK {
                return Err(format!("the registry answered {status}"));
            }
            response.bytes().await.map_err(|e| describe(&e))
        }
        .await;
        if let Err(e) = &result {
            s.failures.inc();
            tracing::debug!(source = %s.source, %url, "registry request failed: {e}");
        }
        result
    }

    /// Fetches the id of `subject` at `version`; on failure, the backoff before the next try.
    async fn fetch_subject(&self, subject: &str, version: &str) -> Option<Duration> {
        let s = &self.settings;
        let url = s.api.subject_url(&s.url, subject, version);
        let outcome = self
            .get(url)
            .await
            .and_then(|body| s.api.parse_subject(&body));
        let now = Instant::now();
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let key = (subject.to_string(), version.to_string());
        let attempts = control.subjects.entry(key).or_default();
        attempts.in_flight = false;
        let previous = self
            .ids
            .load()
            .get(subject)
            .and_then(|m| m.get(version))
            .and_then(|e| e.id);
        match outcome {
            Ok(resolved) => {
                if let Some(text) = resolved.schema {
                    self.store_schema(
                        resolved.id,
                        SchemaEntry {
                            text: Some(text),
                            retry_at: now,
                        },
                    );
                }
                self.store_id(
                    subject,
                    version,
                    IdEntry {
                        id: Some(resolved.id),
                        fresh_until: now + s.max_age,
                        retry_at: now,
                    },
                );
                attempts.backoff = None;
                if std::mem::take(&mut attempts.failed) {
                    self.emit(
                        s.names.retrievable_subject,
                        format!(
                            "Successfully fetched schema for subject {subject} with version {version}."
                        ),
                    );
                }
                None
            }
            Err(e) => {
                let backoff = match attempts.backoff {
                    None => FIRST_RETRY,
                    Some(b) => (b * 2).min(s.max_age.max(FIRST_RETRY)),
                };
                attempts.backoff = Some(backoff);
                self.store_id(
                    subject,
                    version,
                    IdEntry {
                        id: previous,
                        fresh_until: now,
                        retry_at: now + backoff,
                    },
                );
                if !std::mem::replace(&mut attempts.failed, true) {
                    self.emit(
                        s.names.unretrievable_subject,
                        format!(
                            "Unable to fetch schema for subject {subject} with version {version}: {e}."
                        ),
                    );
                    if let Some(id) = previous {
                        self.emit(
                            s.names.stale,
                            format!(
                                "Unable to fetch schema for subject {subject} with version {version}; using stale schema with id {id}."
                            ),
                        );
                    }
                }
                Some(backoff)
            }
        }
    }

    /// Starts a fetch of schema `id` unless it is known, running or backing off.
    fn schedule_schema(self: &Arc<Self>, id: u32) {
        let now = Instant::now();
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = self.schemas.load().get(&id) {
            if e.text.is_some() || now < e.retry_at {
                return;
            }
        }
        let attempts = control.ids.entry(id).or_default();
        if attempts.in_flight {
            return;
        }
        attempts.in_flight = true;
        self.store_schema(
            id,
            SchemaEntry {
                text: None,
                retry_at: now + Duration::from_secs(3600),
            },
        );
        drop(control);
        let me = self.clone();
        zilla_engine::background().spawn(async move { me.fetch_schema(id).await });
    }

    /// True once a fetch of `subject` at `version` has failed and none is running.
    fn subject_failed(&self, subject: &str, version: &str) -> bool {
        let control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        control
            .subjects
            .get(&(subject.to_string(), version.to_string()))
            .is_some_and(|a| a.failed && !a.in_flight)
    }

    /// True once a fetch of schema `id` has failed and none is running.
    fn schema_failed(&self, id: u32) -> bool {
        let control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        control
            .ids
            .get(&id)
            .is_some_and(|a| a.failed && !a.in_flight)
    }

    async fn fetch_schema(&self, id: u32) {
        let s = &self.settings;
        let url = s.api.schema_url(&s.url, id);
        let outcome = self.get(url).await.and_then(|b| s.api.parse_schema(&b));
        let now = Instant::now();
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let attempts = control.ids.entry(id).or_default();
        attempts.in_flight = false;
        match outcome {
            Ok(text) => {
                self.store_schema(
                    id,
                    SchemaEntry {
                        text: Some(text),
                        retry_at: now,
                    },
                );
                if std::mem::take(&mut attempts.failed) {
                    self.emit(
                        s.names.retrievable_id,
                        format!("Successfully fetched schema id {id}."),
                    );
                }
            }
            Err(e) => {
                self.store_schema(
                    id,
                    SchemaEntry {
                        text: None,
                        retry_at: now + ID_RETRY,
                    },
                );
                if !std::mem::replace(&mut attempts.failed, true) {
                    self.emit(
                        s.names.unretrievable_id,
                        format!("Unable to fetch schema id {id}: {e}."),
                    );
                }
            }
        }
    }

    fn emit(&self, name: &'static str, message: String) {
        tracing::warn!(source = %self.settings.source, event = name, "{message}");
        self.settings
            .events
            .emit(&self.settings.source, name, 0, message);
    }
}

/// A reqwest error in a sentence (reqwest's own text hides the cause behind "error sending").
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "the registry did not answer in time".to_string();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

impl Catalog for Registry {
    fn resolve(&self, subject: &str, version: &str) -> Option<u32> {
        let ids = self.inner.ids.load();
        match ids.get(subject).and_then(|m| m.get(version)) {
            Some(e) => {
                // The common case ends here: a fresh id, or a stale one being retried.
                if e.id.is_some() && e.fresh_until > Instant::now() {
                    return e.id;
                }
                let (id, retry_at) = (e.id, e.retry_at);
                drop(ids);
                if Instant::now() >= retry_at {
                    self.inner.schedule_subject(subject, version);
                }
                id
            }
            None => {
                drop(ids);
                self.inner.schedule_subject(subject, version);
                None
            }
        }
    }

    fn schema(&self, id: u32) -> Option<Arc<str>> {
        let schemas = self.inner.schemas.load();
        match schemas.get(&id) {
            Some(SchemaEntry {
                text: Some(text), ..
            }) => Some(text.clone()),
            Some(e) if Instant::now() < e.retry_at => None,
            _ => {
                drop(schemas);
                self.inner.schedule_schema(id);
                None
            }
        }
    }

    fn decode<'a>(&self, payload: &'a [u8]) -> Option<(u32, &'a [u8])> {
        self.inner.settings.api.decode(payload)
    }

    fn resolve_now(&self, subject: &str, version: &str) -> Option<u32> {
        // The client times out first; this only bounds a wait that should never be reached.
        let deadline = Instant::now() + self.inner.settings.timeout + Duration::from_secs(1);
        let pause = || std::thread::sleep(Duration::from_millis(5));
        let id = loop {
            if let Some(id) = self.resolve(subject, version) {
                break id;
            }
            if self.inner.subject_failed(subject, version) || Instant::now() > deadline {
                return None;
            }
            pause();
        };
        while self.schema(id).is_none()
            && !self.inner.schema_failed(id)
            && Instant::now() < deadline
        {
            pause();
        }
        Some(id)
    }
}
