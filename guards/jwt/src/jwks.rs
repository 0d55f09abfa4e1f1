//! Keys read from a JWKS URL: fetched with `reqwest` on the engine's background runtime, once
//! at start (a failure is a config error), then kept fresh. Zilla reads the URL once and never
//! again, so a rotated signing key refuses every new token until a restart; here:
//!
//! - the set is fetched again after the answer's `Cache-Control: max-age` (at least 30 s), or
//!   every `zilla.guard.jwt.keys.refresh` (5 minutes) when it has none;
//! - a token whose `kid` is unknown triggers a fetch, at most once per
//!   `zilla.guard.jwt.keys.refetch` (30 s) per guard, so junk `kid`s cannot turn the gateway
//!   into a load generator against the identity provider (the token itself is refused; the
//!   next one signed with the new key passes);
//! - while the provider fails, the last good set keeps serving; each transition (fetch failed,
//!   fetched again, key added, key retired) is one event.
//!
//! Every fetch has one deadline for the whole exchange, body included
//! (`zilla.guard.jwt.keys.timeout`, 10 s), and reads at most 1 MiB.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use zilla_engine::{background, block_on_background, Events, Properties};

use crate::keys::{parse_jwks, KeySet};

/// The largest JWKS answer read.
const MAX_BODY: usize = 1 << 20;
/// The shortest refresh a `max-age` can ask for.
const MIN_REFRESH: Duration = Duration::from_secs(30);

/// Events (stdout exporter names).
const UNRETRIEVABLE: &str = "GUARD_JWT_KEYS_UNRETRIEVABLE";
const RETRIEVABLE: &str = "GUARD_JWT_KEYS_RETRIEVABLE";
const ADDED: &str = "GUARD_JWT_KEY_ADDED";
const RETIRED: &str = "GUARD_JWT_KEY_RETIRED";

/// How a guard reaches its JWKS.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The URL.
    pub(crate) url: String,
    /// The deadline of one fetch.
    pub(crate) timeout: Duration,
    /// The refresh interval when the answer has no `max-age`.
    pub(crate) refresh: Duration,
    /// The least time between two fetches caused by unknown `kid`s.
    pub(crate) refetch: Duration,
    /// Where transitions are reported, and as which source (`ns:guard`).
    pub(crate) events: Events,
    pub(crate) source: String,
}

impl Settings {
    /// Settings for `url` from the engine properties.
    pub(crate) fn new(
        url: String,
        properties: &Properties,
        events: Events,
        source: String,
    ) -> Self {
        Settings {
            url,
            timeout: properties.duration("zilla.guard.jwt.keys.timeout", Duration::from_secs(10)),
            refresh: properties.duration("zilla.guard.jwt.keys.refresh", Duration::from_secs(300)),
            refetch: properties.duration("zilla.guard.jwt.keys.refetch", Duration::from_secs(30)),
            events,
            source,
        }
    }
}

/// A JWKS kept fresh in the background. Readers take no lock.
#[derive(Debug)]
pub(crate) struct RemoteKeys {
    settings: Settings,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    /// When this was built, the origin of `last_fetch`.
    epoch: Instant,
    /// Milliseconds after `epoch` of the last fetch that started.
    last_fetch: AtomicU64,
    fetching: AtomicBool,
    failing: AtomicBool,
}

/// One fetch's answer: the body and its `max-age`.
type Answer = (String, Option<Duration>);

impl RemoteKeys {
    /// Fetches the set now (waiting at most the timeout) and starts keeping it fresh.
    pub(crate) fn start(settings: Settings) -> Result<Arc<RemoteKeys>, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("zilla/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let fetched = {
            let (client, url, timeout) = (client.clone(), settings.url.clone(), settings.timeout);
            block_on_background(async move { fetch(&client, &url, timeout).await })
        };
        let (body, max_age) = fetched?;
        let keys = parse_jwks(&body)?;
        let me = Arc::new(RemoteKeys {
            settings,
            client,
            keys: ArcSwap::from_pointee(keys),
            epoch: Instant::now(),
            last_fetch: AtomicU64::new(0),
            fetching: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        });
        let first = me.interval(max_age);
        background().spawn(refresh_loop(Arc::downgrade(&me), first));
        Ok(me)
    }

    /// The current set.
    pub(crate) fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// A token named a `kid` the set does not have: fetch again, unless a fetch is running or
    /// one started less than `refetch` ago.
    pub(crate) fn unknown_kid(self: &Arc<Self>) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_fetch.load(Ordering::Relaxed);
        if now.saturating_sub(last) < self.settings.refetch.as_millis() as u64
            || self.fetching.load(Ordering::Relaxed)
        {
            return;
        }
        let me = self.clone();
        background().spawn(async move {
            me.refresh().await;
        });
    }

    fn interval(&self, max_age: Option<Duration>) -> Duration {
        max_age.map_or(self.settings.refresh, |a| a.max(MIN_REFRESH))
    }

    /// Fetches the set once (unless a fetch is running); returns when to fetch next.
    async fn refresh(&self) -> Duration {
        if self.fetching.swap(true, Ordering::AcqRel) {
            return self.settings.refresh;
        }
        self.last_fetch
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let s = &self.settings;
        let outcome = fetch(&self.client, &s.url, s.timeout)
            .await
            .and_then(|(body, max_age)| parse_jwks(&body).map(|keys| (keys, max_age)));
        let next = match outcome {
            Ok((keys, max_age)) => {
                let old = self.keys.load();
                for kid in keys.keys().filter(|k| !old.contains_key(*k)) {
                    self.emit(ADDED, format!("Key {kid} added from {}.", s.url));
                }
                for kid in old.keys().filter(|k| !keys.contains_key(*k)) {
                    self.emit(
                        RETIRED,
                        format!("Key {kid} retired: {} no longer lists it.", s.url),
                    );
                }
                self.keys.store(Arc::new(keys));
                if self.failing.swap(false, Ordering::Relaxed) {
                    self.emit(
                        RETRIEVABLE,
                        format!("Successfully fetched keys from {}.", s.url),
                    );
                }
                self.interval(max_age)
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    let kept = self.keys.load().len();
                    self.emit(
                        UNRETRIEVABLE,
                        format!(
                            "Unable to fetch keys from {}: {e}; keeping the {kept} key(s) it had.",
                            s.url
                        ),
                    );
                }
                // Retry within a minute while it fails (sooner if the refresh is shorter).
                self.settings.refresh.min(Duration::from_secs(60))
            }
        };
        self.fetching.store(false, Ordering::Release);
        next
    }

    fn emit(&self, name: &'static str, message: String) {
        tracing::info!(source = %self.settings.source, event = name, "{message}");
        self.settings
            .events
            .emit(&self.settings.source, name, 0, message);
    }
}

/// Refreshes while the guard lives (a reload drops it, and the loop ends at its next wake).
async fn refresh_loop(keys: Weak<RemoteKeys>, mut next: Duration) {
    loop {
        tokio::time::sleep(next).await;
        let Some(keys) = keys.upgrade() else {
            return;
        };
        next = keys.refresh().await;
    }
}

/// `GET url` within one deadline: the body of a 200 answer (at most [`MAX_BODY`]) and its
/// `max-age`.
async fn fetch(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<Answer, String> {
    let exchange = async {
        let mut response = client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("the server answered {status}, not 200"));
        }
        let max_age = response
            .headers()
            .get_all("cache-control")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|d| {
                let (k, v) = d.trim().split_once('=')?;
                k.eq_ignore_ascii_case("max-age")
                    .then(|| v.trim().parse::<u64>().ok())
                    .flatten()
            })
            .map(Duration::from_secs);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("the answer is larger than {} KiB", MAX_BODY >> 10));
            }
            body.extend_from_slice(&chunk);
        }
        let body =
            String::from_utf8(body).map_err(|_| "the answer is not UTF-8 text".to_string())?;
        Ok((body, max_age))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no complete answer within {timeout:?}"))?
}

/// A reqwest error with its causes (`error sending request: ... : connection refused`).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
