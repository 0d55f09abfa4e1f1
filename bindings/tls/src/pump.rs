//! Moves plaintext between an established TLS session and a stream, both ways, with
//! backpressure and Zilla's close semantics: close_notify <-> `End`, failures <-> `Abort`/reset.

use bytes::{Bytes, BytesMut};
use proto_tcp::{StreamIo, Tcp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsStream;
use zilla_engine::{Data, Frame, Rx, Tx};

/// Plaintext asked for per read (a TLS record holds at most 16 KiB).
const READ_SIZE: usize = 16 * 1024;
/// Reads smaller than this are copied into an exact-size buffer, so a small message does not
/// pin a 16 KiB buffer.
const SMALL_READ: usize = 1024;

enum Read {
    Data(usize),
    Eof,
    Failed,
    Refused,
}

/// Reads plaintext once `tx` has credit; watches `tx` for a reset meanwhile.
async fn read(tls: &mut TlsStream<StreamIo>, buf: &mut BytesMut, tx: &mut Tx<Tcp>) -> Read {
    if tx.ready().await.is_err() {
        return Read::Refused;
    }
    // An empty buffer (idle, or after small reads) grows by SMALL_READ: an idle session does
    // not hold a full-size buffer; one that filled its last read gets READ_SIZE.
    if buf.capacity() - buf.len() < SMALL_READ {
        buf.reserve(if buf.capacity() == 0 {
            SMALL_READ
        } else {
            READ_SIZE
        });
    }
    tokio::select! {
        biased;
        _ = tx.reset() => Read::Refused,
        read = tls.read_buf(buf) => match read {
            Ok(0) => Read::Eof,
            Ok(n) => Read::Data(n),
            Err(_) => Read::Failed,
        },
    }
}

/// Runs a TLS session until both directions are closed. `tx`/`rx` are the plaintext stream:
/// what is decrypted goes to `tx`, what `rx` delivers is encrypted. On a failure either way the
/// session's transport is aborted and the stream halves are dropped (abort / reset).
pub(crate) async fn pump(mut tls: TlsStream<StreamIo>, tx: Tx<Tcp>, mut rx: Rx<Tcp>) {
    let mut tx = Some(tx);
    let mut writing = true;
    let mut buf = BytesMut::new();
    loop {
        let reading = tx.is_some();
        if !reading && !writing {
            return;
        }
        tokio::select! {
            got = async {
                match tx.as_mut() {
                    Some(tx) => read(&mut tls, &mut buf, tx).await,
                    None => std::future::pending().await,
                }
            }, if reading => match got {
                Read::Data(n) => {
                    let payload = if n < SMALL_READ {
                        let small = Bytes::copy_from_slice(&buf);
                        // Small messages: give a large buffer back rather than keep it idle.
                        if buf.capacity() > 2 * SMALL_READ {
                            buf = BytesMut::new();
                        } else {
                            buf.clear();
                        }
                        small
                    } else {
                        buf.split().freeze()
                    };
                    let Some(out) = tx.as_mut() else { return };
                    if out.push(Frame::Data(Data::bytes(payload))).is_err() {
                        return abort(tls);
                    }
                }
                Read::Eof => {
                    if let Some(out) = tx.take() {
                        out.end(None);
                    }
                }
                // Dropping `tx` aborts the plaintext stream; aborting the transport resets the
                // connection; dropping `rx` resets the other direction.
                Read::Failed | Read::Refused => return abort(tls),
            },
            frame = rx.recv(), if writing => match frame {
                Some(Frame::Data(Data { payload: Some(p), .. })) => {
                    match write(&mut tls, p, &mut rx).await {
                        Ok(Wrote::More) => {}
                        Ok(Wrote::Ended) => writing = false,
                        Err(_) => return abort(tls),
                    }
                }
                Some(Frame::Data(_) | Frame::Begin(_) | Frame::Flush) => {}
                Some(Frame::End(_)) => {
                    // close_notify, then `End` on the transport.
                    let _ = tls.shutdown().await;
                    writing = false;
                }
                Some(Frame::Abort(_)) | None => return abort(tls),
            },
        }
    }
}

enum Wrote {
    /// The direction is still open.
    More,
    /// `End` was found queued: close_notify was sent.
    Ended,
}

/// Encrypts `first` and every payload already queued behind it, then flushes.
async fn write(
    tls: &mut TlsStream<StreamIo>,
    first: Bytes,
    rx: &mut Rx<Tcp>,
) -> std::io::Result<Wrote> {
    tls.write_all(&first).await?;
    // Gather what is already queued (no waiting), so frames that arrived together leave in as
    // few records as possible; a terminal frame is left for the main loop.
    for _ in 0..32 {
        match rx.try_recv() {
            Some(Frame::Data(Data {
                payload: Some(p), ..
            })) => tls.write_all(&p).await?,
            Some(Frame::Data(_) | Frame::Begin(_) | Frame::Flush) => {}
            Some(Frame::End(_)) => {
                tls.flush().await?;
                tls.shutdown().await?;
                return Ok(Wrote::Ended);
            }
            Some(Frame::Abort(_)) => return Err(std::io::ErrorKind::ConnectionReset.into()),
            None => break,
        }
    }
    tls.flush().await?;
    Ok(Wrote::More)
}

fn abort(mut tls: TlsStream<StreamIo>) {
    tls.get_mut().0.abort();
}
