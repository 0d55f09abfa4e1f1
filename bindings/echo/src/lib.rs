//! The `echo` binding: a server that writes back every byte it reads.
//!
//! It is the worked example of "write your own binding" in `docs/ARCHITECTURE.md`: a factory with
//! typed config, a registration line, a handler that routes nothing and one task per stream.
//!
//! ```yaml
//! echo_server:
//!   type: echo
//!   kind: server
//! ```

use std::sync::Arc;

use proto_tcp::{Tcp, TcpBegin};
use zilla_engine::{
    handler_binding, Binding, BindingContext, BindingDescriptor, BindingFactory, ConfigErrors,
    Frame, Graph, Handler, Kind, Nothing, Protocols, Reset, Stream,
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
        Protocols::accepts::<Tcp>()
    }

    fn build(cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        cx.forbid_exit()?;
        Ok(handler_binding::<Tcp, _>(Arc::new(EchoHandler)))
    }
}

struct EchoHandler;

impl Handler<Tcp> for EchoHandler {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Tcp>) -> Result<(), Reset<Tcp>> {
        graph.spawn(echo(stream));
        Ok(())
    }
}

/// Replies with every frame it receives, in order. Credit on the reply direction holds back
/// reading: a client that does not read stops the echo, not the echo's memory.
async fn echo(stream: Stream<Tcp>) {
    let (mut rx, mut tx, _) = stream.into_halves();
    if tx.push(Frame::Begin(TcpBegin::default())).is_err() {
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
