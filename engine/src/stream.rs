//! Streams: the credit-bounded, two-direction pipes that connect bindings.
//!
//! An *exchange* between two bindings is two directions: the *initial* one (opener to acceptor)
//! and the *reply* (acceptor to opener). Each direction is a [`Tx`] held by its writer and an
//! [`Rx`] held by its reader. Frames follow Zilla's model: `Begin`, `Data`, `Flush`, then one
//! terminal `End` (clean) or `Abort` (failed); the reader can refuse a direction with a *reset*
//! and can *challenge* the writer.
//!
//! Memory is bounded by byte credit: a writer may only add a frame while the bytes buffered in
//! the direction are under its window, so a slow reader stops its writer, hop by hop, back to the
//! socket. Dropping a half always has a meaning: a [`Tx`] dropped before its terminal frame sends
//! `Abort`; an [`Rx`] dropped before it saw the terminal frame resets the writer. Task
//! cancellation, errors and panics therefore never leave a stream half open.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::meter::PipeMeter;

/// A protocol spoken on a stream edge: the typed extensions its frames carry.
///
/// Protocols are defined in small shared crates (`proto-tcp`, ...), never in the engine; the
/// engine only compares their names when it checks that an exit speaks what its binding emits.
pub trait Protocol: Send + Sync + 'static {
    /// Name used in config diagnostics (`tcp`, `http`, `sse`).
    const NAME: &'static str;
    /// Extension carried by the `Begin` frame of either direction.
    type Begin: Send + 'static;
    /// Extension carried by every `Data` frame (use `()` when there is none).
    type Data: Send + Default + 'static;
    /// Extension an `End` may carry (http trailers, a last SSE id); `()` when there is none.
    type End: Send + 'static;
    /// Extension a refusal may carry: a reader's reset, or a writer's `Abort` before its reply
    /// began (the status an http server answers with); `()` when there is none.
    type Reset: Send + 'static;
    /// Extension a challenge carries (what the client must send back); `()` when there is none.
    type Challenge: Send + 'static;
}

/// Flag bits of a [`Data`] frame: a message may span several frames from `INIT` to `FIN`.
pub mod flags {
    /// Last fragment of a message.
    pub const FIN: u8 = 0x01;
    /// First fragment of a message.
    pub const INIT: u8 = 0x02;
    /// A whole message in one frame.
    pub const COMPLETE: u8 = INIT | FIN;
}

/// A payload frame.
#[derive(Debug)]
pub struct Data<M> {
    /// [`flags`] bits.
    pub flags: u8,
    /// The bytes; `None` is a null payload (distinct from an empty one).
    pub payload: Option<Bytes>,
    /// Protocol metadata (for example an SSE event id and type).
    pub meta: M,
}

impl<M: Default> Data<M> {
    /// A complete message with no metadata.
    pub fn bytes(payload: Bytes) -> Self {
        Data {
            flags: flags::COMPLETE,
            payload: Some(payload),
            meta: M::default(),
        }
    }
}

/// One frame of a direction.
pub enum Frame<P: Protocol> {
    /// Opens the direction.
    Begin(P::Begin),
    /// Payload.
    Data(Data<P::Data>),
    /// "Push what you have": an advisory without payload.
    Flush,
    /// Clean close of the direction.
    End(Option<P::End>),
    /// Failed close of the direction, with the refusal it stands for, if any.
    Abort(Option<P::Reset>),
}

impl<P: Protocol> Frame<P> {
    fn cost(&self) -> usize {
        const FRAME_COST: usize = 32;
        match self {
            Frame::Data(d) => FRAME_COST + d.payload.as_ref().map_or(0, Bytes::len),
            _ => FRAME_COST,
        }
    }

    /// The refusal an `Abort` carries (`None` for any other frame): what a reader that was
    /// waiting for a reply `Begin` answers with.
    pub fn refusal(self) -> Option<P::Reset> {
        match self {
            Frame::Abort(ext) => ext,
            _ => None,
        }
    }

    fn is_terminal(&self) -> bool {
        matches!(self, Frame::End(_) | Frame::Abort(_))
    }

    /// Short name of the frame kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Begin(_) => "BEGIN",
            Frame::Data(_) => "DATA",
            Frame::Flush => "FLUSH",
            Frame::End(_) => "END",
            Frame::Abort(_) => "ABORT",
        }
    }
}

impl<P: Protocol> fmt::Debug for Frame<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Data(d) => write!(
                f,
                "DATA(flags={:#x}, len={:?})",
                d.flags,
                d.payload.as_ref().map(Bytes::len)
            ),
            other => f.write_str(other.kind()),
        }
    }
}

/// What the reader of a direction can tell its writer.
pub enum Signal<P: Protocol> {
    /// The reader refused the direction.
    Reset(Reset<P>),
    /// The reader asks the writer to challenge its client.
    Challenge(Option<P::Challenge>),
}

impl<P: Protocol> fmt::Debug for Signal<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::Reset(_) => f.write_str("Reset"),
            Signal::Challenge(_) => f.write_str("Challenge"),
        }
    }
}

/// The reader refused the direction (Zilla's RESET), with an optional extension such as the
/// status an http server should answer with.
pub struct Reset<P: Protocol>(pub Option<P::Reset>);

impl<P: Protocol> Reset<P> {
    /// A refusal without an extension.
    pub fn none() -> Self {
        Reset(None)
    }

    /// A refusal carrying `ext`.
    pub fn with(ext: P::Reset) -> Self {
        Reset(Some(ext))
    }

    /// The same refusal on a stream of protocol `Q` whose refusals carry the same extension
    /// (an sse stream refused because its http request was).
    pub fn relay<Q: Protocol<Reset = P::Reset>>(self) -> Reset<Q> {
        Reset(self.0)
    }
}

impl<P: Protocol> fmt::Debug for Reset<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reset({})", P::NAME)
    }
}

impl<P: Protocol> fmt::Display for Reset<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stream reset by its reader")
    }
}

impl<P: Protocol> std::error::Error for Reset<P> {}

/// Queue capacity a direction keeps once drained.
const SMALL_QUEUE: usize = 4;

struct State<P: Protocol> {
    /// The oldest queued frame, kept inline: most directions hold at most one frame at a time,
    /// so `queue` (and its allocation) is only used while frames pile up.
    head: Option<Frame<P>>,
    /// Frames after `head`, in order.
    queue: VecDeque<Frame<P>>,
    charged: usize,
    writer: Option<Waker>,
    reader: Option<Waker>,
    reset: bool,
    /// A reset's extension and the challenges not yet taken: boxed, as most directions never
    /// see either and every stream keeps several directions.
    rare: Option<Box<Rare<P>>>,
    /// What makes the frames after the queued ones, in the reader's task (see [`Source`]);
    /// the reader takes it once the queue is drained.
    source: Option<Pulled<P>>,
}

/// What a direction rarely holds.
struct Rare<P: Protocol> {
    reset_ext: Option<P::Reset>,
    challenges: VecDeque<Option<P::Challenge>>,
}

impl<P: Protocol> State<P> {
    /// The reset's extension, taken.
    fn reset_ext(&mut self) -> Option<P::Reset> {
        self.rare.as_mut().and_then(|r| r.reset_ext.take())
    }

    /// The oldest challenge not yet taken.
    fn challenge(&mut self) -> Option<Option<P::Challenge>> {
        self.rare.as_mut().and_then(|r| r.challenges.pop_front())
    }

    fn rare(&mut self) -> &mut Rare<P> {
        self.rare.get_or_insert_with(|| {
            Box::new(Rare {
                reset_ext: None,
                challenges: VecDeque::new(),
            })
        })
    }
}

/// Makes a direction's frames when its reader asks for them, in the reader's task: a binding
/// that only transforms frames one way (the sse client parsing an upstream event stream) hands
/// its writing half over to one ([`Tx::pull`]) instead of running a task of its own, which saves
/// the task's memory per stream and a wake-up and a pipe hop per frame.
///
/// Backpressure is the reader's: nothing is made until it asks. The reader refusing or
/// dropping the direction drops the source (and with it whatever the source reads from);
/// so does a terminal frame. Challenges to a pulled direction are not seen by anyone.
pub trait Source<P: Protocol>: Send + 'static {
    /// The next frame, or `Pending` with `cx` registered wherever the next one will come from
    /// (the source polls its own inputs with the reader's context). Not polled again after a
    /// terminal frame. [`Rx::try_recv`] polls it with a waker that does nothing: a source must
    /// register the waker it is given each time it is polled (the engine's pipes do).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Frame<P>>;
}

/// A direction's source, boxed twice: one word in every pipe and every `Rx`.
type Pulled<P> = Box<Box<dyn Source<P>>>;

struct Pipe<P: Protocol> {
    state: Mutex<State<P>>,
    window: usize,
    /// Stream metrics, when the bindings at either end record them (boxed: unmetered pipes,
    /// the common case, stay one word larger).
    meter: Option<Box<PipeMeter>>,
    /// The stream's trace id (0 for a direction made outside a graph).
    trace_id: u64,
}

impl<P: Protocol> Pipe<P> {
    fn lock(&self) -> MutexGuard<'_, State<P>> {
        // A panic while holding this lock cannot leave the state inconsistent (every update is a
        // single assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates one direction with `window` bytes of credit.
pub fn direction<P: Protocol>(window: usize) -> (Tx<P>, Rx<P>) {
    metered_direction(window, None, 0)
}

/// Creates one direction with `window` bytes of credit, counting what `meter` counts.
pub(crate) fn metered_direction<P: Protocol>(
    window: usize,
    meter: Option<PipeMeter>,
    trace_id: u64,
) -> (Tx<P>, Rx<P>) {
    let pipe = Arc::new(Pipe {
        state: Mutex::new(State {
            head: None,
            queue: VecDeque::new(),
            charged: 0,
            writer: None,
            reader: None,
            reset: false,
            rare: None,
            source: None,
        }),
        window: window.max(1),
        meter: meter.map(Box::new),
        trace_id,
    });
    (
        Tx {
            pipe: pipe.clone(),
            done: false,
        },
        Rx {
            pipe,
            source: None,
            done: false,
        },
    )
}

/// Writing half of one direction.
pub struct Tx<P: Protocol> {
    pipe: Arc<Pipe<P>>,
    done: bool,
}

impl<P: Protocol> fmt::Debug for Tx<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("protocol", &P::NAME)
            .field("done", &self.done)
            .finish()
    }
}

impl<P: Protocol> Tx<P> {
    /// The trace id of the stream this direction belongs to, for events about it.
    pub fn trace_id(&self) -> u64 {
        self.pipe.trace_id
    }

    /// Polls for credit: ready when the direction has room for another frame, or with the
    /// reset if the reader refused the direction.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Reset<P>>> {
        let mut s = self.pipe.lock();
        if s.reset {
            return Poll::Ready(Err(Reset(s.reset_ext())));
        }
        if s.charged < self.pipe.window {
            return Poll::Ready(Ok(()));
        }
        store(&mut s.writer, cx);
        Poll::Pending
    }

    /// Waits for credit (see [`Tx::poll_ready`]). Cancel-safe.
    pub async fn ready(&mut self) -> Result<(), Reset<P>> {
        poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Adds a frame now, whatever the credit: call after [`Tx::ready`] so the overshoot is at
    /// most one frame.
    pub fn push(&mut self, frame: Frame<P>) -> Result<(), Reset<P>> {
        self.push_all([frame])
    }

    /// Adds several frames now, under one lock and with one wake-up of the reader (an HTTP/1.1
    /// chunk: its size line, payload and CRLF). Call after [`Tx::ready`], as for [`Tx::push`].
    pub fn push_all<const N: usize>(&mut self, frames: [Frame<P>; N]) -> Result<(), Reset<P>> {
        if self.done {
            return Err(Reset(None));
        }
        let mut terminal = false;
        let waker = {
            let mut s = self.pipe.lock();
            if s.reset {
                return Err(Reset(s.reset_ext()));
            }
            for frame in frames {
                terminal |= frame.is_terminal();
                if let Some(m) = &self.pipe.meter {
                    meter(m, &frame);
                }
                s.charged += frame.cost();
                if s.head.is_none() && s.queue.is_empty() {
                    s.head = Some(frame);
                } else {
                    s.queue.push_back(frame);
                }
            }
            s.reader.take()
        };
        self.done = terminal;
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Hands the rest of this direction to `source`: once the frames already pushed are read,
    /// the reader's task makes the next ones by polling it (see [`Source`]). Nothing happens
    /// if the reader has already refused the direction.
    pub fn pull(mut self, source: impl Source<P>) {
        self.done = true;
        let (refused, stale, waker) = {
            let mut s = self.pipe.lock();
            // The writer's task is handing over (and may end): a waker of its left here would
            // keep its memory alive as long as the direction.
            let stale = s.writer.take();
            if s.reset {
                (Some(source), stale, None)
            } else {
                s.source = Some(Box::new(Box::new(source)));
                (None, stale, s.reader.take())
            }
        };
        drop((refused, stale));
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Waits for credit, then adds the frame.
    pub async fn send(&mut self, frame: Frame<P>) -> Result<(), Reset<P>> {
        self.ready().await?;
        self.push(frame)
    }

    /// Sends a complete data message.
    pub async fn data(&mut self, payload: Bytes) -> Result<(), Reset<P>> {
        self.send(Frame::Data(Data::bytes(payload))).await
    }

    /// Closes the direction cleanly. Terminal frames need no credit.
    pub fn end(mut self, ext: Option<P::End>) {
        let _ = self.push(Frame::End(ext));
    }

    /// Closes the direction as failed.
    pub fn abort(mut self, ext: Option<P::Reset>) {
        let _ = self.push(Frame::Abort(ext));
    }

    /// Polls for the reader's refusal of this direction.
    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Reset<P>> {
        let mut s = self.pipe.lock();
        if s.reset {
            return Poll::Ready(Reset(s.reset_ext()));
        }
        store(&mut s.writer, cx);
        Poll::Pending
    }

    /// Resolves when the reader refuses this direction (its [`Rx`] was reset or dropped).
    /// Cancel-safe: use it in `select!` beside reads of the writer's own source.
    pub async fn reset(&mut self) -> Reset<P> {
        poll_fn(|cx| self.poll_reset(cx)).await
    }

    /// True once the reader has refused the direction.
    pub fn is_reset(&self) -> bool {
        self.pipe.lock().reset
    }

    /// Polls for a challenge from the reader (for example: the guard session is expiring).
    pub fn poll_challenge(&mut self, cx: &mut Context<'_>) -> Poll<Option<P::Challenge>> {
        let mut s = self.pipe.lock();
        if let Some(ext) = s.challenge() {
            return Poll::Ready(ext);
        }
        store(&mut s.writer, cx);
        Poll::Pending
    }

    /// Resolves with the next challenge sent by the reader. Cancel-safe.
    pub async fn challenged(&mut self) -> Option<P::Challenge> {
        poll_fn(|cx| self.poll_challenge(cx)).await
    }

    /// Polls for the next word from the reader: a reset, or a challenge.
    pub fn poll_signal(&mut self, cx: &mut Context<'_>) -> Poll<Signal<P>> {
        let mut s = self.pipe.lock();
        if s.reset {
            return Poll::Ready(Signal::Reset(Reset(s.reset_ext())));
        }
        if let Some(ext) = s.challenge() {
            return Poll::Ready(Signal::Challenge(ext));
        }
        store(&mut s.writer, cx);
        Poll::Pending
    }

    /// Resolves with the next word from the reader (reset or challenge). Cancel-safe; use it in
    /// `select!` when both matter.
    pub async fn signal(&mut self) -> Signal<P> {
        poll_fn(|cx| self.poll_signal(cx)).await
    }
}

impl<P: Protocol> Drop for Tx<P> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.push(Frame::Abort(None));
        }
    }
}

/// Reading half of one direction.
pub struct Rx<P: Protocol> {
    pipe: Arc<Pipe<P>>,
    /// The direction's [`Source`], once its queue is drained: from then on nothing else writes
    /// the direction, so the reader polls it without taking the pipe's lock.
    source: Option<Pulled<P>>,
    done: bool,
}

impl<P: Protocol> fmt::Debug for Rx<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rx")
            .field("protocol", &P::NAME)
            .field("done", &self.done)
            .finish()
    }
}

impl<P: Protocol> Rx<P> {
    /// Polls for the next frame; `None` after the terminal frame was received.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame<P>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.source.is_some() {
            return self.poll_source(cx);
        }
        let (frame, waker) = {
            let mut s = self.pipe.lock();
            let next = match s.head.take() {
                Some(frame) => Some(frame),
                None => s.queue.pop_front(),
            };
            if next.is_none() {
                if let Some(source) = s.source.take() {
                    // The writer handed over and everything it pushed is read: the source is
                    // the reader's alone now.
                    drop(s);
                    self.source = Some(source);
                    return self.poll_source(cx);
                }
            }
            match next {
                Some(frame) => {
                    let before = s.charged;
                    s.charged -= frame.cost();
                    let crossed = before >= self.pipe.window && s.charged < self.pipe.window;
                    let waker = if crossed { s.writer.take() } else { None };
                    if s.queue.is_empty() && s.queue.capacity() > SMALL_QUEUE {
                        // A burst is over: give a large buffer back. A small one is kept, so
                        // a writer that queues a few frames at a time (an HTTP/1.1 chunk is
                        // three) does not allocate and free one per message.
                        s.queue = VecDeque::new();
                    }
                    (frame, waker)
                }
                None => {
                    store(&mut s.reader, cx);
                    return Poll::Pending;
                }
            }
        };
        self.done = frame.is_terminal();
        if let Some(w) = waker {
            w.wake();
        }
        Poll::Ready(Some(frame))
    }

    /// The next frame from the direction's [`Source`]; a terminal one drops it.
    fn poll_source(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame<P>>> {
        let Some(source) = self.source.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(source.poll_next(cx));
        if let Some(m) = &self.pipe.meter {
            meter(m, &frame);
        }
        if frame.is_terminal() {
            self.done = true;
            self.source = None;
        }
        Poll::Ready(Some(frame))
    }

    /// Takes the next frame if one is queued, without waiting (to batch frames into one write).
    pub fn try_recv(&mut self) -> Option<Frame<P>> {
        let waker = futures_noop_waker();
        match self.poll_recv(&mut Context::from_waker(&waker)) {
            Poll::Ready(frame) => frame,
            Poll::Pending => None,
        }
    }

    /// Receives the next frame; `None` after the terminal frame. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Frame<P>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Refuses the direction: frames not yet read are dropped and the writer sees a reset.
    pub fn reset(mut self, ext: Option<P::Reset>) {
        self.refuse(ext);
    }

    fn refuse(&mut self, ext: Option<P::Reset>) {
        if self.done {
            return;
        }
        self.done = true;
        let pulled = self.source.take();
        if let Some(m) = &self.pipe.meter {
            m.failed();
        }
        let (dropped, waker) = {
            let mut s = self.pipe.lock();
            s.reset = true;
            if ext.is_some() {
                s.rare().reset_ext = ext;
            }
            s.charged = 0;
            (
                (s.head.take(), std::mem::take(&mut s.queue), s.source.take()),
                s.writer.take(),
            )
        };
        drop((dropped, pulled));
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Challenges the writer (it sees it through [`Tx::challenged`]).
    pub fn challenge(&self, ext: Option<P::Challenge>) {
        let waker = {
            let mut s = self.pipe.lock();
            if s.rare.as_ref().is_some_and(|r| r.challenges.len() >= 4) {
                return;
            }
            s.rare().challenges.push_back(ext);
            s.writer.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// True once the terminal frame was received (or the direction was reset).
    pub fn is_done(&self) -> bool {
        self.done
    }
}

impl<P: Protocol> Drop for Rx<P> {
    fn drop(&mut self) {
        self.refuse(None);
    }
}

/// Counts a frame written on a metered direction.
fn meter<P: Protocol>(m: &PipeMeter, frame: &Frame<P>) {
    match frame {
        Frame::Data(d) => m.data(d.payload.as_ref().map_or(0, Bytes::len)),
        Frame::Abort(_) => m.failed(),
        _ => {}
    }
}

fn futures_noop_waker() -> Waker {
    Waker::noop().clone()
}

fn store(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if cx.waker().will_wake(Waker::noop()) {
        // `try_recv` polls with a no-op waker: keep the real one registered.
        return;
    }
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bytes0;
    impl Protocol for Bytes0 {
        const NAME: &'static str = "test";
        type Begin = ();
        type Data = ();
        type End = ();
        type Reset = ();
        type Challenge = ();
    }

    #[tokio::test]
    async fn credit_blocks_writer_until_reader_consumes() {
        let (mut tx, mut rx) = direction::<Bytes0>(100);
        tx.data(Bytes::from(vec![0u8; 200])).await.unwrap();
        // Over the window now: the next send must wait.
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            tx.data(Bytes::from_static(b"x")),
        )
        .await;
        assert!(blocked.is_err(), "writer should wait for credit");
        assert!(matches!(rx.recv().await, Some(Frame::Data(_))));
        tx.data(Bytes::from_static(b"x")).await.unwrap();
    }

    #[tokio::test]
    async fn dropped_writer_aborts_and_dropped_reader_resets() {
        let (tx, mut rx) = direction::<Bytes0>(100);
        drop(tx);
        assert!(matches!(rx.recv().await, Some(Frame::Abort(_))));
        assert!(rx.recv().await.is_none());

        let (mut tx, rx) = direction::<Bytes0>(100);
        drop(rx);
        assert!(tx.is_reset());
        assert!(tx.data(Bytes::from_static(b"x")).await.is_err());
    }

    #[tokio::test]
    async fn reset_wakes_a_writer_waiting_for_credit() {
        let (mut tx, rx) = direction::<Bytes0>(10);
        tx.data(Bytes::from_static(b"0123456789")).await.unwrap();
        let waiter = tokio::spawn(async move { tx.data(Bytes::from_static(b"x")).await.is_err() });
        tokio::task::yield_now().await;
        rx.reset(None);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn frames_keep_their_order_across_the_inline_slot() {
        let (mut tx, mut rx) = direction::<Bytes0>(1 << 20);
        let payload = |n: u8| Frame::Data(Data::bytes(Bytes::from(vec![n])));
        let got = |f: Option<Frame<Bytes0>>| match f {
            Some(Frame::Data(d)) => d.payload.unwrap()[0],
            other => panic!("{other:?}"),
        };
        tx.push(payload(1)).unwrap();
        tx.push(payload(2)).unwrap();
        assert_eq!(got(rx.try_recv()), 1);
        tx.push(payload(3)).unwrap();
        assert_eq!(got(rx.try_recv()), 2);
        tx.push(payload(4)).unwrap();
        assert_eq!(got(rx.try_recv()), 3);
        assert_eq!(got(rx.try_recv()), 4);
        assert!(rx.try_recv().is_none());
        tx.push(payload(5)).unwrap();
        assert_eq!(got(rx.recv().await), 5);
    }

    /// A source that upper-cases what it reads from another direction (a one-way transform),
    /// and says when it is dropped.
    struct Upper(Rx<Bytes0>, Arc<std::sync::atomic::AtomicBool>);

    impl Source<Bytes0> for Upper {
        fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Frame<Bytes0>> {
            Poll::Ready(match std::task::ready!(self.0.poll_recv(cx)) {
                Some(Frame::Data(d)) => {
                    Frame::Data(Data::bytes(d.payload.unwrap().to_ascii_uppercase().into()))
                }
                Some(other) => other,
                None => Frame::Abort(None),
            })
        }
    }

    impl Drop for Upper {
        fn drop(&mut self) {
            self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn upper(input: Rx<Bytes0>) -> (Upper, Arc<std::sync::atomic::AtomicBool>) {
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        (Upper(input, dropped.clone()), dropped)
    }

    fn text(f: Option<Frame<Bytes0>>) -> String {
        match f {
            Some(Frame::Data(d)) => String::from_utf8(d.payload.unwrap().to_vec()).unwrap(),
            other => format!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_pulled_direction_reads_its_queue_then_its_source_in_the_readers_task() {
        let (mut up_tx, up_rx) = direction::<Bytes0>(1000);
        let (mut tx, mut rx) = direction::<Bytes0>(1000);
        tx.push(Frame::Data(Data::bytes(Bytes::from_static(b"pushed"))))
            .unwrap();
        let (source, dropped) = upper(up_rx);
        tx.pull(source);
        assert_eq!(text(rx.recv().await), "pushed");
        // Nothing upstream yet: the reader waits, woken by the source's own input.
        assert!(rx.try_recv().is_none());
        let reader = tokio::spawn(async move {
            let got = text(rx.recv().await);
            (got, rx)
        });
        tokio::task::yield_now().await;
        up_tx.data(Bytes::from_static(b"event")).await.unwrap();
        let (got, mut rx) = reader.await.unwrap();
        assert_eq!(got, "EVENT");
        // A terminal frame ends the direction and drops the source.
        up_tx.end(None);
        assert!(matches!(rx.recv().await, Some(Frame::End(_))));
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
        assert!(rx.recv().await.is_none());
    }

    #[test]
    fn pulling_lets_go_of_the_writers_waker() {
        struct Counted;
        impl std::task::Wake for Counted {
            fn wake(self: Arc<Self>) {}
        }
        let task = Arc::new(Counted);
        let waker = Waker::from(task.clone());
        let (up_tx, up_rx) = direction::<Bytes0>(1000);
        let (mut tx, _rx) = direction::<Bytes0>(1000);
        // The writer's task waits for the reader's word, as a task relaying a reply does.
        assert!(tx.poll_reset(&mut Context::from_waker(&waker)).is_pending());
        drop(waker);
        assert_eq!(
            Arc::strong_count(&task),
            2,
            "the pipe holds the writer's waker"
        );
        let (source, _dropped) = upper(up_rx);
        tx.pull(source);
        // Otherwise the writer's task (ended after handing over) stays allocated as long as
        // the direction lasts.
        assert_eq!(Arc::strong_count(&task), 1);
        drop(up_tx);
    }

    #[tokio::test]
    async fn refusing_a_pulled_direction_drops_its_source_and_resets_what_it_read() {
        let (up_tx, up_rx) = direction::<Bytes0>(1000);
        let (tx, rx) = direction::<Bytes0>(1000);
        let (source, dropped) = upper(up_rx);
        tx.pull(source);
        assert!(!dropped.load(std::sync::atomic::Ordering::SeqCst));
        drop(rx);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
        assert!(up_tx.is_reset(), "the source's input is refused in turn");

        // The same once the reader has polled the source (it holds it then).
        let (up_tx, up_rx) = direction::<Bytes0>(1000);
        let (tx, mut rx) = direction::<Bytes0>(1000);
        let (source, dropped) = upper(up_rx);
        tx.pull(source);
        assert!(rx.try_recv().is_none());
        assert!(!dropped.load(std::sync::atomic::Ordering::SeqCst));
        drop(rx);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
        assert!(up_tx.is_reset());

        // Pulling a direction already refused drops the source at once.
        let (_up_tx, up_rx) = direction::<Bytes0>(1000);
        let (tx, rx) = direction::<Bytes0>(1000);
        drop(rx);
        let (source, dropped) = upper(up_rx);
        tx.pull(source);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn end_after_data_is_clean() {
        let (mut tx, mut rx) = direction::<Bytes0>(1000);
        tx.data(Bytes::from_static(b"hi")).await.unwrap();
        tx.end(None);
        assert!(matches!(rx.recv().await, Some(Frame::Data(_))));
        assert!(matches!(rx.recv().await, Some(Frame::End(_))));
        assert!(rx.recv().await.is_none());
    }
}
