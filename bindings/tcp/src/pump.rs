//! Moves bytes between a socket and a stream, in both directions, with backpressure and
//! Zilla's close semantics: FIN <-> `End`, RST <-> `Abort`/reset.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proto_tcp::Tcp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use zilla_engine::{Data, Frame, Rx, Tx};

/// Bytes asked for per socket read.
const READ_SIZE: usize = 16 * 1024;
/// Reads smaller than this are copied into an exact-size buffer so that a mostly empty read
/// buffer is not kept alive by the payload (idle streams hold no read buffer at all).
const SMALL_READ: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inbound {
    /// The peer sent FIN; `End` was sent on the stream.
    End,
    /// The stream's reader refused it; stop reading.
    Refused,
    /// The socket failed (RST); the stream must abort.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outbound {
    /// `End` received; FIN sent.
    End,
    /// `Abort` received; the connection must be reset.
    Aborted,
    /// Writing failed (peer gone); the stream must be reset.
    Failed,
}

/// Runs a connection until both directions are closed, or until one side fails, in which case
/// the socket is reset and the stream halves are dropped (abort / reset).
pub(crate) async fn pump(mut socket: TcpStream, mut tx: Tx<Tcp>, mut rx: Rx<Tcp>) {
    let reset = {
        let (r, w) = socket.split();
        let inbound = inbound(r, &mut tx);
        let outbound = outbound(w, &mut rx);
        tokio::pin!(inbound, outbound);
        let (mut i, mut o) = (None, None);
        loop {
            tokio::select! {
                done = &mut inbound, if i.is_none() => i = Some(done),
                done = &mut outbound, if o.is_none() => o = Some(done),
            }
            if i == Some(Inbound::Failed) || matches!(o, Some(Outbound::Aborted | Outbound::Failed))
            {
                break true;
            }
            if i.is_some() && o.is_some() {
                break false;
            }
        }
    };
    if reset {
        let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
    }
    drop(socket);
    drop(tx);
    drop(rx);
}

async fn inbound(mut r: ReadHalf<'_>, tx: &mut Tx<Tcp>) -> Inbound {
    loop {
        if tx.ready().await.is_err() {
            return Inbound::Refused;
        }
        tokio::select! {
            biased;
            _ = tx.reset() => return Inbound::Refused,
            ready = r.as_ref().readable() => if ready.is_err() { return fail(tx) },
        }
        // Allocate only once data is there, so an idle connection holds no read buffer.
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        match r.read_buf(&mut buf).await {
            Ok(0) => {
                let _ = tx.push(Frame::End(None));
                return Inbound::End;
            }
            Ok(n) => {
                let payload = if n < SMALL_READ {
                    Bytes::copy_from_slice(&buf)
                } else {
                    buf.freeze()
                };
                if tx.push(Frame::Data(Data::bytes(payload))).is_err() {
                    return Inbound::Refused;
                }
            }
            Err(_) => return fail(tx),
        }
    }
}

fn fail(tx: &mut Tx<Tcp>) -> Inbound {
    let _ = tx.push(Frame::Abort(None));
    Inbound::Failed
}

async fn outbound(mut w: WriteHalf<'_>, rx: &mut Rx<Tcp>) -> Outbound {
    loop {
        match rx.recv().await {
            Some(Frame::Data(d)) => {
                if let Some(mut payload) = d.payload {
                    if w.write_all_buf(&mut payload).await.is_err() {
                        return Outbound::Failed;
                    }
                }
            }
            Some(Frame::End(_)) => {
                let _ = w.shutdown().await;
                return Outbound::End;
            }
            Some(Frame::Abort(_)) | None => return Outbound::Aborted,
            Some(Frame::Begin(_) | Frame::Flush(_)) => {}
        }
    }
}
