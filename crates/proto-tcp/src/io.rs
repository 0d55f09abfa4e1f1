//! [`StreamIo`]: a `tcp` stream's two halves as `AsyncRead + AsyncWrite`, so that libraries that
//! speak over a socket (rustls, h2) can speak over a stream of the graph instead.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zilla_engine::{Data, Frame, Rx, Tx};

use crate::Tcp;

/// Reads the frames of `rx` as bytes and writes bytes as frames of `tx`.
///
/// End of the read direction is EOF; an `Abort` reads as `ConnectionReset`. `poll_shutdown`
/// sends `End`. Writes wait for credit, so a slow reader backpressures the library writing.
/// Dropping it aborts/resets whatever direction is still open.
#[derive(Debug)]
pub struct StreamIo {
    tx: Option<Tx<Tcp>>,
    rx: Rx<Tcp>,
    chunk: Bytes,
    eof: bool,
}

impl StreamIo {
    /// Wraps a stream's writing and reading halves.
    pub fn new(tx: Tx<Tcp>, rx: Rx<Tcp>) -> Self {
        StreamIo {
            tx: Some(tx),
            rx,
            chunk: Bytes::new(),
            eof: false,
        }
    }

    /// Aborts the writing direction (the peer sees a reset connection).
    pub fn abort(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.abort(None);
        }
    }
}

impl AsyncRead for StreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.chunk.is_empty() {
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.rx.poll_recv(cx)) {
                Some(Frame::Data(Data {
                    payload: Some(p), ..
                })) => this.chunk = p,
                Some(Frame::Data(_) | Frame::Begin(_) | Frame::Flush) => {}
                Some(Frame::End(_)) => this.eof = true,
                Some(Frame::Abort(_)) | None => {
                    this.eof = true;
                    return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
                }
            }
        }
        let n = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk[..n]);
        this.chunk.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(tx) = self.tx.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        if ready!(tx.poll_ready(cx)).is_err() {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        match tx.push(Frame::Data(Data::bytes(Bytes::copy_from_slice(buf)))) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(tx) = self.tx.take() {
            tx.end(None);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use zilla_engine::direction;

    #[tokio::test]
    async fn bytes_round_trip_and_end_is_eof() {
        let (a_tx, b_rx) = direction::<Tcp>(1024);
        let (b_tx, a_rx) = direction::<Tcp>(1024);
        let mut a = StreamIo::new(a_tx, a_rx);
        let mut b = StreamIo::new(b_tx, b_rx);
        a.write_all(b"hello").await.unwrap();
        a.shutdown().await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        drop(b);
        let mut rest = Vec::new();
        assert!(
            a.read_to_end(&mut rest).await.is_err(),
            "a dropped peer reads as a reset"
        );
    }
}
