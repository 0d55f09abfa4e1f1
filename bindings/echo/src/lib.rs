//! The `echo` binding: a server that writes back every frame it reads, over whatever protocol
//! routes to it, as Zilla's does: over `tcp` the bytes; over `http` a `200` response whose body
//! is the request's body (with its `content-type`, and its `content-length` when it had one),
//! streamed back as it arrives; over `sse` the events it is sent.
//!
//! It is the worked example of "write your own binding" in `docs/ARCHITECTURE.md`: a factory with
//! typed config, a registration line, one handler per protocol it accepts, and one task per
//! stream whose loop is the same for every protocol.
//!
//! ```yaml
//! echo_server:
//!   type: echo
//!   kind: server
//! ```

use std::sync::Arc;

use proto_http::{Http, HttpBegin};
use proto_sse::{Sse, SseBegin};
use proto_tcp::{Tcp, TcpBegin};
use zilla_engine::{
    AnyHandler, Binding, BindingContext, BindingDescriptor, BindingFactory, ConfigErrors, Frame,
    Graph, Handler, Kind, Nothing, Protocol, Protocols, Reset, Stream,
};

/// The `echo` binding type.
#[derive(Debug)]
pub struct EchoFactory;

zilla_engine::inventory::submit! { BindingDescriptor::new::<EchoFactory>() }

impl BindingFactory for EchoFactory {
    const TYPE: &'static str = "echo";
    const KINDS: &'static [Kind] = &[Kind::Server];
    type Options = Nothing;
    type When = Nothing;
    type With = Nothing;

    fn protocols(_: Kind) -> Protocols {
        // One handler per protocol (see `EchoBinding::handler`); the engine lets any of them
        // route here.
        Protocols::accepts::<Tcp>().and_accepts(&[Http::NAME, Sse::NAME])
    }

    fn build(cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        cx.forbid_exit()?;
        Ok(Box::new(EchoBinding))
    }
}

/// The built binding: no state, a handler for each protocol.
struct EchoBinding;

impl Binding for EchoBinding {
    fn handler(&self) -> Option<AnyHandler> {
        Some(
            AnyHandler::new::<Tcp>(Arc::new(Echo))
                .with::<Http>(Arc::new(Echo))
                .with::<Sse>(Arc::new(Echo)),
        )
    }
}

/// How a protocol's reply begins when its request is echoed.
trait Echoed: Protocol {
    /// The reply `Begin` for a stream that began with `begin`.
    fn reply(begin: &Self::Begin) -> Self::Begin;
}

impl Echoed for Tcp {
    fn reply(_: &TcpBegin) -> TcpBegin {
        TcpBegin::default()
    }
}

impl Echoed for Http {
    /// `200`, with the request's `content-type` and `content-length` (without one the body is
    /// streamed back as it arrives).
    fn reply(request: &HttpBegin) -> HttpBegin {
        let mut response = HttpBegin::status(200);
        for name in ["content-type", "content-length"] {
            if let Some(value) = request.headers.get(name) {
                response.headers.set(name, value.clone());
            }
        }
        response
    }
}

impl Echoed for Sse {
    fn reply(_: &SseBegin) -> SseBegin {
        SseBegin::default()
    }
}

struct Echo;

impl<P: Echoed> Handler<P> for Echo {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<P>) -> Result<(), Reset<P>> {
        let begin = P::reply(&stream.begin);
        graph.spawn(echo(stream, begin));
        Ok(())
    }
}

/// Replies with `begin`, then every frame it receives, in order. Credit on the reply direction
/// holds back reading: a client that does not read stops the echo, not the echo's memory.
async fn echo<P: Protocol>(stream: Stream<P>, begin: P::Begin) {
    let (mut rx, mut tx, _) = stream.into_halves();
    if tx.push(Frame::Begin(begin)).is_err() {
        return;
    }
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => frame,
            // The client refused the replies: dropping `rx` resets its requests in turn.
            _ = tx.reset() => return,
        };
        match frame {
            Some(Frame::Data(d)) => {
                if tx.send(Frame::Data(d)).await.is_err() {
                    return;
                }
            }
            Some(Frame::Flush) => {
                let _ = tx.push(Frame::Flush);
            }
            Some(Frame::End(ext)) => return tx.end(ext),
            Some(Frame::Abort(ext)) => return tx.abort(ext),
            Some(Frame::Begin(_)) => {}
            None => return,
        }
    }
}
