//! The `example-proxy` binding: the worked example of a binding that opens its exit.
//!
//! Where `bindings/echo` ends every stream itself, a proxy opens a stream to the next binding
//! and relays both directions: the opener's frames to the exit, and the exit's reply (its
//! `Begin`, data, `End` or `Abort`) back; a reset from either reader travels to the other
//! side. That is where the subtle cases live, so this is the shape to copy. It is not linked
//! into `zilla`; see docs/ARCHITECTURE.md, "Write your own binding".
//!
//! ```yaml
//! relay0:
//!   type: example-proxy
//!   kind: proxy
//!   exit: echo0
//! ```

use std::sync::Arc;

use proto_tcp::Tcp;
use zilla_engine::{
    handler_binding, Binding, BindingContext, BindingDescriptor, BindingFactory, BindingId,
    ConfigErrors, Frame, Graph, Handler, Kind, Nothing, Protocols, Reset, Routes, Rx, Stream, Tx,
};

/// The `example-proxy` binding type.
#[derive(Debug)]
pub struct ExampleProxyFactory;

zilla_engine::inventory::submit! { BindingDescriptor::new::<ExampleProxyFactory>() }

impl BindingFactory for ExampleProxyFactory {
    const TYPE: &'static str = "example-proxy";
    const KINDS: &'static [Kind] = &[Kind::Proxy];
    type Options = Nothing;
    type When = Nothing;
    type With = Nothing;

    fn protocols(_: Kind) -> Protocols {
        Protocols::new::<Tcp, Tcp>()
    }

    fn build(cx: BindingContext<Self>) -> Result<Box<dyn Binding>, ConfigErrors> {
        cx.require_exit()?;
        Ok(handler_binding::<Tcp, _>(Arc::new(Relay {
            id: cx.id,
            routes: cx.routes,
        })))
    }
}

struct Relay {
    /// This binding, the opener of the next hop (its `stream.*` metrics count it).
    id: BindingId,
    routes: Routes<Nothing, Nothing>,
}

impl Handler<Tcp> for Relay {
    fn open(&self, graph: &Arc<Graph>, stream: Stream<Tcp>) -> Result<(), Reset<Tcp>> {
        let exit = self
            .routes
            .resolve(graph, stream.session.as_deref(), |_| true)
            .and_then(|r| r.exit)
            .ok_or_else(Reset::none)?;
        // Open the next hop before taking the stream: if it refuses, the opener sees that
        // refusal as this binding's own (`?` hands the reset back).
        let (next_tx, next_rx) =
            graph.open_from::<Tcp>(self.id, exit, stream.begin.clone(), stream.session.clone())?;
        let (rx, tx, _) = stream.into_halves();
        graph.spawn(async move {
            tokio::join!(relay(rx, next_tx), relay(next_rx, tx));
        });
        Ok(())
    }
}

/// Copies one direction, frame by frame, waiting for credit before each: a reader that stops
/// reading stops this relay, which stops reading its own side. The terminal frame is passed on
/// as it came (`End` stays clean, `Abort` keeps its refusal), and a reset by the reader is
/// passed back to the writer.
async fn relay(mut from: Rx<Tcp>, mut to: Tx<Tcp>) {
    loop {
        let frame = tokio::select! {
            frame = from.recv() => frame,
            reset = to.reset() => return from.reset(reset.0),
        };
        match frame {
            Some(Frame::End(ext)) => return to.end(ext),
            Some(Frame::Abort(ext)) => return to.abort(ext),
            // Dropping `from` on the way out resets its writer in turn.
            Some(frame) => {
                if to.send(frame).await.is_err() {
                    return;
                }
            }
            None => return to.abort(None),
        }
    }
}
