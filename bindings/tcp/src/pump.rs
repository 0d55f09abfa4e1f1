//! Moves bytes between a socket and a stream, in both directions, with backpressure and
//! Zilla's close semantics: FIN <-> `End`, RST <-> `Abort`/reset.

use std::time::Duration;

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};
use proto_tcp::Tcp;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use zilla_engine::{Data, Frame, Rx, Tx};

/// Bytes asked for per socket read of a quiet connection (into the stack, zeroed each time:
/// small, as one event is).
const READ_SIZE: usize = 4 * 1024;
/// Bytes asked for per read once a connection's reads fill [`READ_SIZE`].
const BUSY_READ: usize = 64 * 1024;

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

async fn inbound(r: ReadHalf<'_>, tx: &mut Tx<Tcp>) -> Inbound {
    let mut busy = false;
    loop {
        if tx.ready().await.is_err() {
            return Inbound::Refused;
        }
        tokio::select! {
            biased;
            _ = tx.reset() => return Inbound::Refused,
            ready = r.as_ref().readable() => if ready.is_err() { return fail(tx) },
        }
        match read(&r, &mut busy) {
            Read::Eof => {
                let _ = tx.push(Frame::End(None));
                return Inbound::End;
            }
            Read::Data(payload) => {
                if tx.push(Frame::Data(Data::bytes(payload))).is_err() {
                    return Inbound::Refused;
                }
            }
            // Readiness was a false alarm: wait again.
            Read::Nothing => {}
            Read::Failed => return fail(tx),
        }
    }
}

/// What one read of a readable socket gave.
enum Read {
    Data(Bytes),
    Eof,
    Nothing,
    Failed,
}

/// Reads what the socket holds. A quiet connection reads into the stack and keeps an
/// exact-size copy: one allocation per read, and it holds no read buffer while idle (the array
/// is not held across an await). A busy one (its last read filled the stack buffer) reads up to
/// [`BUSY_READ`] straight into a buffer that is handed on as it is: no copy (unless the read
/// was short, see [`handed_on`]).
///
/// A read that did not fill its buffer has drained the socket: its readiness is cleared then
/// and there (as nginx does with edge-triggered epoll), instead of paying a second `recv` that
/// can only say `EAGAIN`, one per event otherwise. Data arriving after the read raises a new
/// readiness event, which the clearing does not lose (tokio clears only the readiness it saw).
fn read(r: &ReadHalf<'_>, busy: &mut bool) -> Read {
    use std::io::Read as _;
    let stream = r.as_ref();
    let mut got = Read::Nothing;
    let outcome = stream.try_io(tokio::io::Interest::READABLE, || {
        let (n, size) = if *busy {
            let mut buf = bytes::BytesMut::with_capacity(BUSY_READ);
            let n = stream.try_read_buf(&mut buf)?;
            if n > 0 {
                got = Read::Data(handed_on(buf));
            }
            (n, BUSY_READ)
        } else {
            let mut buf = [0u8; READ_SIZE];
            let n = (&*socket2::SockRef::from(stream)).read(&mut buf)?;
            if n > 0 {
                got = Read::Data(Bytes::copy_from_slice(&buf[..n]));
            }
            (n, READ_SIZE)
        };
        if n == 0 {
            got = Read::Eof;
            return Ok(());
        }
        *busy = n == size;
        if n < size {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    });
    match (outcome, got) {
        (Err(e), Read::Nothing) if e.kind() != std::io::ErrorKind::WouldBlock => Read::Failed,
        (_, got) => got,
    }
}

/// What a busy read hands on: the buffer as it is, or an exact-size copy of what it holds
/// when that is under a quarter of it. Every slice of the events in a read keeps the whole
/// buffer alive, and credit counts their bytes, not the buffer's: a burst's last, short read
/// would otherwise pin 64 KiB for a few events, for as long as a slow client takes them.
fn handed_on(buf: bytes::BytesMut) -> Bytes {
    if buf.len() < BUSY_READ / 4 {
        Bytes::copy_from_slice(&buf)
    } else {
        buf.freeze()
    }
}

fn fail(tx: &mut Tx<Tcp>) -> Inbound {
    let _ = tx.push(Frame::Abort(None));
    Inbound::Failed
}

/// Most payloads gathered into one vectored write.
const MAX_BATCH: usize = 32;

async fn outbound(mut w: WriteHalf<'_>, rx: &mut Rx<Tcp>) -> Outbound {
    let mut batch: VecDeque<Bytes> = VecDeque::new();
    loop {
        let mut next = rx.recv().await;
        // Gather every payload already queued, so frames that arrived together leave in one
        // write (no added latency: nothing waits for more).
        loop {
            match next {
                Some(Frame::Data(d)) => {
                    if let Some(payload) = d.payload.filter(|p| !p.is_empty()) {
                        batch.push_back(payload);
                    }
                }
                Some(Frame::Begin(_) | Frame::Flush) => {}
                terminal => {
                    if write_all(&mut w, &mut batch).await.is_err() {
                        return Outbound::Failed;
                    }
                    return match terminal {
                        Some(Frame::End(_)) => {
                            let _ = w.shutdown().await;
                            Outbound::End
                        }
                        _ => Outbound::Aborted,
                    };
                }
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            match rx.try_recv() {
                Some(frame) => next = Some(frame),
                None => break,
            }
        }
        if write_all(&mut w, &mut batch).await.is_err() {
            return Outbound::Failed;
        }
    }
}

/// Writes every buffer of `batch` with vectored writes, emptying it.
async fn write_all(w: &mut WriteHalf<'_>, batch: &mut VecDeque<Bytes>) -> std::io::Result<()> {
    while !batch.is_empty() {
        // The slice array is built inside each poll, so it is not part of the task's state
        // (a connection's task stays small while it waits).
        let n = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); MAX_BATCH];
            let count = batch.len().min(MAX_BATCH);
            for (slot, b) in slices.iter_mut().zip(batch.iter()) {
                *slot = IoSlice::new(b);
            }
            std::pin::Pin::new(&mut *w).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut left = n;
        while left > 0 {
            let front = batch
                .front_mut()
                .expect("written bytes come from the batch");
            if left >= front.len() {
                left -= front.len();
                batch.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes a handed-on read keeps allocated.
    fn held(b: Bytes) -> usize {
        b.try_into_mut().map(|m| m.capacity()).unwrap_or(usize::MAX)
    }

    /// Writes `bytes` from the peer and reads them on `r` as the pump does.
    async fn next(
        peer: &mut std::net::TcpStream,
        r: &ReadHalf<'_>,
        bytes: &[u8],
        busy: &mut bool,
    ) -> Bytes {
        use std::io::Write as _;
        peer.write_all(bytes).unwrap();
        let mut got = Vec::new();
        loop {
            r.as_ref().readable().await.unwrap();
            match read(r, busy) {
                Read::Data(b) => {
                    got.push(b);
                    if got.iter().map(Bytes::len).sum::<usize>() == bytes.len() {
                        assert_eq!(got.len(), 1, "one read");
                        return got.pop().unwrap();
                    }
                }
                Read::Nothing => {}
                _ => panic!("the connection failed"),
            }
        }
    }

    #[tokio::test]
    async fn a_short_busy_read_does_not_pin_its_whole_buffer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut socket, _) = listener.accept().await.unwrap();
        let (r, _w) = socket.split();
        let mut busy = false;
        // A read that fills the quiet buffer makes the connection busy.
        let first = next(&mut peer, &r, &[b'x'; READ_SIZE], &mut busy).await;
        assert_eq!(first.len(), READ_SIZE);
        assert!(busy);
        // The next read is a busy one, and short: an exact copy is handed on.
        let short = next(&mut peer, &r, b"data:hello\n\n", &mut busy).await;
        assert_eq!(&short[..], b"data:hello\n\n");
        assert!(!busy);
        assert_eq!(held(short), 12, "a short read keeps only its bytes");
    }
}
