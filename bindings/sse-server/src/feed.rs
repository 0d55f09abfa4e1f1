//! Shared feeds (beyond Zilla, `options.share`): the clients of one feed share one upstream
//! stream, and a client reconnecting with a `Last-Event-ID` still in the feed's replay window
//! gets what it missed from memory.
//!
//! A feed is keyed by the upstream authority and path, plus (when configured) the request's
//! guard identity and chosen headers, so per-tenant feeds never mix. The first client opens the
//! upstream; later ones attach; after the last one leaves the feed lingers, then closes. Each
//! event is checked (`options.requests`) and encoded once; the same `Bytes` go to every client.
//!
//! A client is its own stream to the rest of the binding: a forwarder task feeds it through a
//! pipe, so `stream::run` applies its credit, keep-alive, challenge and slow-client policy as to
//! any stream, and the http server its guard's expiry. A client that falls `queue` events behind
//! the feed is dropped (and counted): it never slows the feed or the others. Memory per feed is
//! the replay window (bounded in events, bytes and age) plus the broadcast queue, both of shared
//! `Bytes`.
//!
//! If the upstream ends or fails, the feed opens it again once with the last event id it saw;
//! its clients stay connected and see no gap when the backend honours `Last-Event-ID`. If it
//! goes away again the feed ends, its clients reconnect with their last id, and the first of
//! them opens a new feed after that id, which the others coming back with the same id share.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto_http::{Headers, HttpReset};
use proto_sse::config::ShareOptions;
use proto_sse::metrics::{Dropped, SseMetrics};
use proto_sse::{Sse, SseBegin, SseEvent};
use sse_codec::{encode, Fields};
use tokio::sync::{broadcast, watch};
use zilla_engine::{
    direction, BindingId, Data, Frame, Gauge, Graph, MetricDescriptor, MetricScope, MetricUnit,
    Reset, Rx, Session, Tx,
};

use crate::stream::Settings;
use crate::validate::Rule;

zilla_engine::inventory::submit! { MetricDescriptor::gauge("sse.feeds.active", MetricUnit::Count, "Shared feeds open (one upstream stream each).") }
zilla_engine::inventory::submit! { MetricDescriptor::gauge("sse.feeds.buffered", MetricUnit::Bytes, "Bytes of events the shared feeds keep for replay.") }

/// The settings of `options.share`.
#[derive(Debug, Clone)]
pub(crate) struct Share {
    identity: bool,
    headers: Vec<String>,
    events: usize,
    bytes: usize,
    age: Option<Duration>,
    queue: usize,
    linger: Duration,
}

impl Share {
    /// What is wrong with `o`: `(key under options.share, message)` for each value out of range.
    pub(crate) fn check(o: &ShareOptions) -> Vec<(&'static str, &'static str)> {
        let replay = o.replay.clone().unwrap_or_default();
        let mut wrong = Vec::new();
        if o.queue == Some(0) {
            wrong.push((
                "queue",
                "must be at least 1 (events a client may fall behind)",
            ));
        }
        if o.linger.is_some_and(|l| !(0.0..=86_400.0).contains(&l)) {
            wrong.push(("linger", "must be between 0 and 86400 seconds"));
        }
        if replay.events == Some(0) {
            wrong.push(("replay.events", "must be at least 1"));
        }
        if replay.bytes == Some(0) {
            wrong.push(("replay.bytes", "must be at least 1"));
        }
        if replay.age.is_some_and(|a| !(a.is_finite() && a > 0.0)) {
            wrong.push(("replay.age", "must be a positive number of seconds"));
        }
        wrong
    }

    /// From options [`Share::check`] found right.
    pub(crate) fn new(o: &ShareOptions) -> Share {
        let replay = o.replay.clone().unwrap_or_default();
        Share {
            identity: o.identity,
            headers: o.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            events: replay.events.unwrap_or(1000),
            bytes: replay.bytes.unwrap_or(1 << 20),
            age: replay.age.map(Duration::from_secs_f64),
            queue: o.queue.unwrap_or(1024),
            linger: Duration::from_secs_f64(o.linger.unwrap_or(5.0)),
        }
    }
}

/// What makes two requests the same feed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    authority: Bytes,
    path: Bytes,
    identity: Option<Arc<str>>,
    headers: Vec<Option<Bytes>>,
}

/// One event of a feed, encoded once.
#[derive(Debug, Clone)]
struct Item {
    id: Option<Bytes>,
    wire: Bytes,
    read_at: Option<Instant>,
}

/// Where a feed's upstream stands.
#[derive(Debug, Clone)]
enum Status {
    /// Being opened.
    Opening,
    /// Open: events flow.
    Open,
    /// Refused before it ever opened, with the upstream's answer (its clients get it).
    Refused(Option<HttpReset>),
    /// Over (its clients end, and reconnect into a new feed).
    Ended,
}

struct Ring {
    events: VecDeque<(Item, Instant)>,
    bytes: usize,
    /// The id the feed's upstream was first opened after (a client reconnecting with it made
    /// the feed), while the window still holds every event since: a client with that id gets
    /// the whole window.
    origin: Option<Bytes>,
}

struct Feed {
    key: Key,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Item>,
    status: watch::Sender<Status>,
    /// Clients attached (changed under the registry's lock).
    clients: watch::Sender<usize>,
}

/// The feeds of one sse server binding.
pub(crate) struct Feeds {
    binding: BindingId,
    name: String,
    share: Share,
    map: Mutex<HashMap<Key, Arc<Feed>>>,
    metrics: SseMetrics,
    active: Gauge,
    buffered: Gauge,
}

impl Feeds {
    pub(crate) fn new(
        binding: BindingId,
        name: String,
        share: Share,
        scope: &MetricScope,
    ) -> Arc<Feeds> {
        Arc::new(Feeds {
            binding,
            name,
            share,
            map: Mutex::new(HashMap::new()),
            metrics: SseMetrics::new(scope),
            active: scope.gauge("sse.feeds.active", &[]),
            buffered: scope.gauge("sse.feeds.buffered", &[]),
        })
    }

    /// Attaches a client to its feed (opening the feed if it is the first). Returns the halves
    /// the client's stream reads and writes, as if it had opened the upstream itself; `None`
    /// when its `Last-Event-ID` is not in the feed's window (it goes upstream on its own).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attach(
        self: &Arc<Self>,
        graph: &Arc<Graph>,
        exit: BindingId,
        begin: &SseBegin,
        headers: &Headers,
        session: Option<Arc<Session>>,
        rule: Option<Arc<Rule>>,
        settings: &Arc<Settings>,
    ) -> Option<(Tx<Sse>, Rx<Sse>)> {
        let key = Key {
            authority: begin.authority.clone(),
            path: begin.path.clone(),
            identity: if self.share.identity {
                session.as_ref().and_then(|s| s.identity.clone())
            } else {
                None
            },
            headers: self
                .share
                .headers
                .iter()
                .map(|h| headers.get(h).cloned())
                .collect(),
        };
        let (feed, replay, rx) = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            let feed = match map.get(&key) {
                Some(f) if !matches!(*f.status.borrow(), Status::Ended) => f.clone(),
                // No feed yet: this client makes it. With a Last-Event-ID (its clients came
                // back after the upstream went away) the upstream is opened after that id,
                // and clients that come back with the same id share it from its start.
                _ => {
                    let feed = Arc::new(Feed {
                        key: key.clone(),
                        ring: Mutex::new(Ring {
                            events: VecDeque::new(),
                            bytes: 0,
                            origin: begin.last_id.clone(),
                        }),
                        tx: broadcast::channel(self.share.queue).0,
                        status: watch::channel(Status::Opening).0,
                        clients: watch::channel(0).0,
                    });
                    map.insert(key, feed.clone());
                    self.active.inc();
                    let upstream = SseBegin {
                        last_id: begin.last_id.clone(),
                        timestamps: false,
                        batch: false,
                        ..begin.clone()
                    };
                    let session = if self.share.identity { session } else { None };
                    graph.spawn(run_feed(
                        self.clone(),
                        feed.clone(),
                        graph.clone(),
                        (exit, upstream, session),
                        (rule, settings.clone()),
                    ));
                    feed
                }
            };
            // Under the ring's lock, as events are published: the replay and the live events
            // neither overlap nor leave a gap.
            let ring = feed.ring.lock().unwrap_or_else(|e| e.into_inner());
            let replay: Vec<Item> = match &begin.last_id {
                None => Vec::new(),
                Some(last) => {
                    let from = match ring
                        .events
                        .iter()
                        .rposition(|(e, _)| e.id.as_ref() == Some(last))
                    {
                        Some(at) => at + 1,
                        None if ring.origin.as_ref() == Some(last) => 0,
                        // Not in the window: the client goes upstream on its own.
                        None => return None,
                    };
                    ring.events
                        .iter()
                        .skip(from)
                        .map(|(e, _)| e.clone())
                        .collect()
                }
            };
            let rx = feed.tx.subscribe();
            drop(ring);
            feed.clients.send_modify(|n| *n += 1);
            (feed, replay, rx)
        };
        let window = graph.window();
        let (req_tx, req_rx) = direction::<Sse>(window);
        let (reply_tx, reply_rx) = direction::<Sse>(window);
        graph.spawn(forward(self.clone(), feed, (replay, rx), req_rx, reply_tx));
        Some((req_tx, reply_rx))
    }

    fn publish(&self, feed: &Feed, item: Item) {
        let now = Instant::now();
        let mut ring = feed.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.bytes += item.wire.len();
        self.buffered.add(item.wire.len() as i64);
        ring.events.push_back((item.clone(), now));
        while ring.events.len() > self.share.events
            || ring.bytes > self.share.bytes
            || self
                .share
                .age
                .zip(ring.events.front())
                .is_some_and(|(age, (_, at))| now.duration_since(*at) > age)
        {
            let Some((old, _)) = ring.events.pop_front() else {
                break;
            };
            // The window no longer starts at the origin.
            ring.origin = None;
            ring.bytes -= old.wire.len();
            self.buffered.add(-(old.wire.len() as i64));
        }
        let _ = feed.tx.send(item);
    }

    /// Ends `feed` if no client is attached; false if one came meanwhile.
    fn close_if_idle(&self, feed: &Arc<Feed>) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if *feed.clients.borrow() > 0 {
            return false;
        }
        if map.get(&feed.key).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            map.remove(&feed.key);
        }
        true
    }

    fn ended(&self, feed: &Arc<Feed>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&feed.key).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            map.remove(&feed.key);
        }
        drop(map);
        // A refusal stays what its clients see (they are answered with it, not ended).
        feed.status.send_if_modified(|status| {
            let refused = matches!(status, Status::Refused(_));
            if !refused {
                *status = Status::Ended;
            }
            !refused
        });
        let mut ring = feed.ring.lock().unwrap_or_else(|e| e.into_inner());
        self.buffered.add(-(ring.bytes as i64));
        ring.events.clear();
        ring.bytes = 0;
        self.active.dec();
    }
}

/// Waits until no client has been attached for `linger`.
async fn idle(clients: &mut watch::Receiver<usize>, linger: Duration) {
    loop {
        if *clients.borrow_and_update() > 0 {
            if clients.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(linger) => return,
            changed = clients.changed() => if changed.is_err() { return },
        }
    }
}

/// The feed's upstream: opened, read, encoded once, published; opened again once (with the
/// last id) when it ends or fails; closed when its last client left `linger` ago.
async fn run_feed(
    feeds: Arc<Feeds>,
    feed: Arc<Feed>,
    graph: Arc<Graph>,
    (exit, begin, session): (BindingId, SseBegin, Option<Arc<Session>>),
    (rule, settings): (Option<Arc<Rule>>, Arc<Settings>),
) {
    let mut clients = feed.clients.subscribe();
    // Where the upstream resumes: the origin id until an event carries one.
    let mut last_id: Option<Bytes> = begin.last_id.clone();
    let mut ever_open = false;
    let mut reopened = false;
    let shutdown = graph.shutdown().clone();
    'upstream: loop {
        let mut b = begin.clone();
        b.last_id = last_id.clone();
        let (mut app_tx, mut app_rx) =
            match graph.open_from::<Sse>(feeds.binding, exit, b, session.clone()) {
                Ok(halves) => halves,
                Err(Reset(ext)) => {
                    if !ever_open {
                        feed.status.send_replace(Status::Refused(ext));
                    }
                    break 'upstream;
                }
            };
        // Until the upstream answers (or every client gave up). An upstream's refusal rides
        // on the abort.
        let mut refusal = None;
        let begun = loop {
            tokio::select! {
                frame = app_rx.recv() => match frame {
                    Some(Frame::Begin(_)) => break true,
                    Some(Frame::Data(_) | Frame::Flush) => {}
                    Some(frame @ (Frame::End(_) | Frame::Abort(_))) => {
                        refusal = frame.refusal();
                        break false;
                    }
                    None => break false,
                },
                reset = app_tx.reset() => {
                    if !ever_open {
                        feed.status.send_replace(Status::Refused(reset.0));
                        break 'upstream;
                    }
                    break false;
                }
                () = idle(&mut clients, feeds.share.linger) => {
                    if feeds.close_if_idle(&feed) {
                        break 'upstream;
                    }
                }
            }
        };
        if !begun {
            if !ever_open {
                // Its refusal: on the abort, else maybe on the reset of the request; never a
                // wait without end.
                let ext = match refusal {
                    Some(ext) => Some(ext),
                    None => tokio::select! {
                        reset = app_tx.reset() => reset.0,
                        () = tokio::time::sleep(Duration::from_secs(1)) => None,
                        () = shutdown.cancelled() => None,
                    },
                };
                feed.status.send_replace(Status::Refused(ext));
                break 'upstream;
            }
            if std::mem::replace(&mut reopened, true) {
                break 'upstream;
            }
            continue 'upstream;
        }
        ever_open = true;
        feed.status.send_replace(Status::Open);
        loop {
            tokio::select! {
                frame = app_rx.recv() => match frame {
                    Some(Frame::Data(mut d)) => {
                        reopened = false;
                        feeds.metrics.received.inc();
                        if let Some(rule) = &rule {
                            if let Some(payload) = d.payload.take() {
                                match settings.rules.check(rule, payload, &feeds.name, 0) {
                                    Some(checked) => d.payload = Some(checked),
                                    None => continue,
                                }
                            }
                        }
                        if d.meta.id.is_some() {
                            last_id = d.meta.id.clone();
                        }
                        let wire = encode(&Fields {
                            timestamp: 0,
                            id: d.meta.id.as_deref(),
                            event: d.meta.event.as_deref(),
                            data: d.payload.as_deref(),
                        });
                        feeds.publish(&feed, Item { id: d.meta.id.clone(), wire, read_at: d.meta.read_at });
                    }
                    Some(Frame::End(_) | Frame::Abort(_)) | None => {
                        // Once: the upstream again, from the last id seen.
                        if std::mem::replace(&mut reopened, true) {
                            break 'upstream;
                        }
                        tracing::debug!(binding = %feeds.name, ?last_id, "shared feed's upstream ended: opening it again");
                        continue 'upstream;
                    }
                    Some(Frame::Begin(_) | Frame::Flush) => {}
                },
                () = idle(&mut clients, feeds.share.linger) => {
                    if feeds.close_if_idle(&feed) {
                        app_tx.end(None);
                        break 'upstream;
                    }
                }
                () = shutdown.cancelled() => {
                    app_tx.end(None);
                    break 'upstream;
                }
            }
        }
    }
    feeds.ended(&feed);
}

/// One client of a feed: what it missed (from the window), then the live events, through the
/// pipe its stream reads; dropped when it falls `queue` events behind.
async fn forward(
    feeds: Arc<Feeds>,
    feed: Arc<Feed>,
    (replay, mut rx): (Vec<Item>, broadcast::Receiver<Item>),
    mut req_rx: Rx<Sse>,
    mut reply_tx: Tx<Sse>,
) {
    struct Leave(Arc<Feed>);
    impl Drop for Leave {
        fn drop(&mut self) {
            self.0.clients.send_modify(|n| *n = n.saturating_sub(1));
        }
    }
    let _leave = Leave(feed.clone());
    let mut status = feed.status.subscribe();
    loop {
        let now = status.borrow_and_update().clone();
        match now {
            Status::Open => break,
            Status::Refused(ext) => {
                // As an upstream refuses an opener: the reason rides on the reply's abort.
                reply_tx.abort(ext);
                drop(req_rx);
                return;
            }
            Status::Ended => return reply_tx.end(None),
            Status::Opening => {}
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return reply_tx.end(None) },
            frame = req_rx.recv() => if !matches!(frame, Some(Frame::Begin(_) | Frame::Data(_) | Frame::Flush)) { return },
        }
    }
    if reply_tx.push(Frame::Begin(SseBegin::default())).is_err() {
        return;
    }
    let queue = feeds.share.queue;
    let lagged = |behind: u64| {
        feeds.metrics.dropped(Dropped::SlowConsumer, behind);
        tracing::warn!(binding = %feeds.name, behind,
            "client too far behind its shared feed: dropping it; it reconnects into the replay window");
    };
    for item in replay {
        match deliver(&mut reply_tx, item, &rx, queue).await {
            Delivered::Yes => {}
            Delivered::Gone => return,
            Delivered::Behind(n) => {
                lagged(n as u64);
                return reply_tx.abort(None);
            }
        }
    }
    loop {
        tokio::select! {
            // Events before the feed's end.
            biased;
            received = rx.recv() => match received {
                Ok(item) => match deliver(&mut reply_tx, item, &rx, queue).await {
                    Delivered::Yes => {}
                    Delivered::Gone => return,
                    Delivered::Behind(n) => {
                        lagged(n as u64);
                        return reply_tx.abort(None);
                    }
                },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    lagged(n);
                    return reply_tx.abort(None);
                }
                Err(broadcast::error::RecvError::Closed) => return reply_tx.end(None),
            },
            frame = req_rx.recv() => {
                if !matches!(frame, Some(Frame::Begin(_) | Frame::Data(_) | Frame::Flush)) {
                    return;
                }
            }
            changed = status.changed() => {
                if changed.is_err() || matches!(*status.borrow_and_update(), Status::Ended) {
                    // The feed is over: what it published before goes out, then the stream
                    // ends cleanly and the client reconnects with its last id.
                    while let Ok(item) = rx.try_recv() {
                        if !matches!(deliver(&mut reply_tx, item, &rx, queue).await, Delivered::Yes) {
                            return;
                        }
                    }
                    return reply_tx.end(None);
                }
            }
        }
    }
}

/// What became of an event handed to a client.
enum Delivered {
    Yes,
    /// The client's stream is gone.
    Gone,
    /// The client has no credit and is this many events behind the feed: past its queue.
    Behind(usize),
}

/// Hands `item` to the client when it has credit. While it has none, how far it has fallen
/// behind the feed is checked every so often: past `queue` events it is cut, however long the
/// stream's own slow-client policy would have held it (a shared feed never waits for a client).
async fn deliver(
    tx: &mut Tx<Sse>,
    item: Item,
    rx: &broadcast::Receiver<Item>,
    queue: usize,
) -> Delivered {
    const CHECK: Duration = Duration::from_millis(100);
    // Mostly there is credit: no timer.
    let mut ready = std::future::poll_fn(|cx| std::task::Poll::Ready(tx.poll_ready(cx))).await;
    loop {
        match ready {
            std::task::Poll::Ready(Ok(())) => {
                return match tx.push(frame(item)) {
                    Ok(()) => Delivered::Yes,
                    Err(_) => Delivered::Gone,
                }
            }
            std::task::Poll::Ready(Err(_)) => return Delivered::Gone,
            std::task::Poll::Pending => {}
        }
        ready = match tokio::time::timeout(CHECK, tx.ready()).await {
            Ok(r) => std::task::Poll::Ready(r),
            Err(_) if rx.len() > queue => return Delivered::Behind(rx.len()),
            Err(_) => std::task::Poll::Pending,
        };
    }
}

fn frame(item: Item) -> Frame<Sse> {
    Frame::Data(Data {
        flags: zilla_engine::flags::COMPLETE,
        payload: Some(item.wire),
        meta: SseEvent {
            id: item.id,
            event: None,
            timestamp: 0,
            batch: 1,
            read_at: item.read_at,
        },
    })
}
