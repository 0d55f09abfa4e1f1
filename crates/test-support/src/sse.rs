//! A scriptable SSE backend for tests: answers every `GET` with `text/event-stream` (chunked) and
//! sends each published event to every open stream. It records the request heads it saw and
//! knows which streams are still open, so tests can check what reached the backend and that a
//! client going away closed the upstream.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    requests: Vec<String>,
    streams: Vec<Option<TcpStream>>,
    /// Bytes each stream has written so far.
    written: Vec<u64>,
}

/// The backend; dropping it stops accepting (open streams stay until their sockets close).
#[derive(Debug, Clone)]
pub struct SseBackend {
    port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl SseBackend {
    /// Starts listening on a free port of 127.0.0.1.
    pub fn start() -> SseBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let port = listener.local_addr().expect("addr").port();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let s = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let s = s.clone();
                thread::spawn(move || {
                    let head = read_head(&mut conn);
                    let head = match head {
                        Some(h) => h,
                        None => return,
                    };
                    let (lock, cv) = &*s;
                    // The head is written under the lock that registers the stream: a test that
                    // saw the 200 through the proxy finds the stream open (a broadcast right
                    // after it reaches it), and no event can go out before the head.
                    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
                    let ok = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                        .is_ok();
                    st.requests.push(head);
                    st.streams
                        .push(if ok { conn.try_clone().ok() } else { None });
                    st.written.push(0);
                    cv.notify_all();
                    drop(st);
                    // Watch for the peer closing: a read of 0 or an error.
                    let mut buf = [0u8; 1024];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(i) = st.streams.iter().position(|c| {
                        c.as_ref()
                            .is_some_and(|c| c.peer_addr().ok() == conn.peer_addr().ok())
                    }) {
                        st.streams[i] = None;
                    }
                    cv.notify_all();
                });
            }
        });
        SseBackend { port, state }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Request heads received so far.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requests
            .clone()
    }

    /// Number of streams still open.
    pub fn open_streams(&self) -> usize {
        self.state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .streams
            .iter()
            .filter(|s| s.is_some())
            .count()
    }

    /// Waits until `n` streams were ever opened.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |st| st.requests.len() >= n)
    }

    /// Waits until at most `n` streams are open.
    pub fn wait_open_at_most(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |st| {
            st.streams.iter().filter(|s| s.is_some()).count() <= n
        })
    }

    fn wait(&self, timeout: Duration, ok: impl Fn(&State) -> bool) -> bool {
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        while !ok(&st) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = cv
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Sends `text` (raw event-stream bytes, e.g. `"data:hi\n\n"`) as one chunk to stream `i`.
    /// Returns false if that stream is closed or the write failed.
    pub fn send_to(&self, i: usize, text: &[u8]) -> bool {
        let stream = {
            let st = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
            st.streams
                .get(i)
                .and_then(|s| s.as_ref())
                .and_then(|s| s.try_clone().ok())
        };
        let Some(mut s) = stream else { return false };
        let mut chunk = format!("{:x}\r\n", text.len()).into_bytes();
        chunk.extend_from_slice(text);
        chunk.extend_from_slice(b"\r\n");
        let ok = s.write_all(&chunk).is_ok();
        if ok {
            let mut st = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(w) = st.written.get_mut(i) {
                *w += text.len() as u64;
            }
        }
        ok
    }

    /// Sends `text` to every open stream; returns how many took it.
    pub fn broadcast(&self, text: &[u8]) -> usize {
        let n = self
            .state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .streams
            .len();
        (0..n).filter(|&i| self.send_to(i, text)).count()
    }

    /// Ends stream `i` cleanly (chunked terminator, then close).
    pub fn end(&self, i: usize) {
        let mut st = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(mut s)) = st.streams.get_mut(i).map(Option::take) {
            let _ = s.write_all(b"0\r\n\r\n");
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Sets a write timeout on stream `i` (so a test can detect the proxy stopped reading).
    pub fn set_write_timeout(&self, i: usize, t: Duration) {
        let st = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(s)) = st.streams.get(i) {
            let _ = s.set_write_timeout(Some(t));
        }
    }
}

/// Reads an HTTP head (a request's or a response's) up to its blank line, byte by byte, so
/// nothing after it is consumed; `None` when the connection ends first or the head passes
/// 64 KiB.
pub fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 65536 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Resident memory of process `pid` in KiB (Linux `/proc`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
