//! Executes one script (one side of a scenario) over a real TCP connection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::script::{escape, escape_truncated, Action, Payload, Script, Step};

/// Chunk size for streaming large payloads.
const CHUNK: usize = 64 * 1024;
/// Payloads up to this size are shown whole in failure messages.
const SHOW_WHOLE: u64 = 256;
/// Bytes of context shown before a mismatch in large payloads.
const CONTEXT_BEFORE: u64 = 16;
/// Bytes of context shown after a mismatch in large payloads.
const CONTEXT_AFTER: u64 = 48;
/// Polling interval for accept and cancellable sleeps.
const POLL: Duration = Duration::from_millis(5);
/// Pause between attempts while a write is blocked and nothing arrives.
const WRITE_POLL: Duration = Duration::from_micros(200);
/// Most bytes read ahead (buffered) while writes are blocked.
const MAX_READ_AHEAD: usize = 256 * 1024 * 1024;

/// State shared by all sides of one scenario.
#[derive(Debug)]
pub(crate) struct Shared {
    barriers: Mutex<Barriers>,
    signal: Condvar,
    /// Duplicates of each side's connection, used to unblock it on cancel.
    streams: Mutex<HashMap<usize, TcpStream>>,
    /// Pre-bound listeners for `accept`, keyed by port.
    listeners: HashMap<u16, Mutex<TcpListener>>,
}

#[derive(Debug, Default)]
struct Barriers {
    notified: HashSet<String>,
    cancelled: bool,
}

impl Shared {
    pub(crate) fn new(listeners: HashMap<u16, TcpListener>) -> Self {
        Self {
            barriers: Mutex::new(Barriers::default()),
            signal: Condvar::new(),
            streams: Mutex::new(HashMap::new()),
            listeners: listeners
                .into_iter()
                .map(|(port, l)| (port, Mutex::new(l)))
                .collect(),
        }
    }

    fn barriers(&self) -> MutexGuard<'_, Barriers> {
        self.barriers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<usize, TcpStream>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every side: wakes `await`s and shuts down every open connection.
    pub(crate) fn cancel(&self) {
        self.barriers().cancelled = true;
        self.signal.notify_all();
        for stream in self.streams().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.barriers().cancelled
    }

    /// Drops the duplicated connections so that closing a side's stream
    /// really closes the socket.
    pub(crate) fn release_streams(&self) {
        self.streams().clear();
    }

    fn register(&self, side: usize, stream: &TcpStream) -> Result<(), String> {
        let dup = stream
            .try_clone()
            .map_err(|e| format!("cannot duplicate socket: {e}"))?;
        self.streams().insert(side, dup);
        if self.is_cancelled() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Ok(())
    }

    fn unregister(&self, side: usize) {
        self.streams().remove(&side);
    }
}

/// Why a side stopped before the end of its script.
#[derive(Debug, Clone)]
pub(crate) struct SideError {
    /// The failing step's line.
    pub(crate) line: usize,
    /// The failing step's text.
    pub(crate) statement: String,
    /// What went wrong.
    pub(crate) message: String,
    /// Whether the scenario was already cancelled when this happened (so
    /// the error is most likely a consequence of another side's failure).
    pub(crate) cancelled: bool,
}

/// The result of running one side.
#[derive(Debug)]
pub(crate) struct SideResult {
    pub(crate) result: Result<(), SideError>,
    /// The connection, kept open until the whole scenario is over.
    pub(crate) conn: Option<Conn>,
}

/// Runs `script` as side number `id`.
pub(crate) fn run(id: usize, script: &Script, shared: &Shared) -> SideResult {
    let mut side = Side {
        id,
        shared,
        conn: None,
    };
    let mut result = Ok(());
    for step in &script.steps {
        if shared.is_cancelled() {
            result = Err(SideError {
                line: step.line,
                statement: step.text.clone(),
                message: "cancelled: another side failed".into(),
                cancelled: true,
            });
            break;
        }
        if let Err(message) = side.step(step) {
            result = Err(SideError {
                line: step.line,
                statement: step.text.clone(),
                message,
                cancelled: shared.is_cancelled(),
            });
            break;
        }
    }
    SideResult {
        result,
        conn: side.conn.take(),
    }
}

struct Side<'a> {
    id: usize,
    shared: &'a Shared,
    conn: Option<Conn>,
}

/// A side's connection, plus the bytes read ahead while a write was
/// blocked.
///
/// While a `write` cannot make progress (the other end is not reading,
/// e.g. an echo whose replies fill our receive buffer), the side keeps
/// reading whatever arrives into `ahead`, so that `write N; read N`
/// against an echo does not deadlock. Later reads consume `ahead` first.
/// Outside of blocked writes nothing is read before a statement asks for
/// it, so backpressure towards the other end is preserved.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    ahead: VecDeque<u8>,
    /// How the stream ended, when that was seen while reading ahead.
    ended: Option<(ErrorKind, String)>,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            ahead: VecDeque::new(),
            ended: None,
        }
    }

    /// Reads whatever is available without blocking (the stream must be in
    /// non-blocking mode). Returns whether anything was read.
    fn read_ahead(&mut self) -> bool {
        let mut progressed = false;
        let mut buf = [0; 16 * 1024];
        while self.ended.is_none() && self.ahead.len() < MAX_READ_AHEAD {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.ended = Some((ErrorKind::UnexpectedEof, "end of stream".into()));
                    progressed = true;
                }
                Ok(n) => {
                    self.ahead.extend(&buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.ended = Some((e.kind(), e.to_string()));
                    progressed = true;
                }
            }
        }
        progressed
    }
}

impl Side<'_> {
    fn step(&mut self, step: &Step) -> Result<(), String> {
        let deadline = Instant::now() + step.timeout;
        let timeout = step.timeout;
        match &step.action {
            Action::Connect(addr) => {
                let stream = TcpStream::connect_timeout(addr, timeout)
                    .map_err(|e| format!("connect to {addr} failed: {}", describe_io(&e)))?;
                self.opened(stream)
            }
            Action::Accept(port) => {
                let stream = self.accept(*port, deadline, timeout)?;
                self.opened(stream)
            }
            Action::Write(payload) => write_payload(self.conn()?, payload, deadline, timeout),
            Action::Read(payload) => read_payload(self.conn()?, payload, deadline, timeout),
            Action::WriteClose => self
                .conn()?
                .stream
                .shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown(write) failed: {}", describe_io(&e))),
            Action::ReadClosed => read_closed(self.conn()?, deadline, timeout),
            Action::Abort => {
                let stream = self.conn.take().ok_or("no connection")?.stream;
                // Drop our duplicate first: the socket must really close.
                self.shared.unregister(self.id);
                socket2::SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .map_err(|e| format!("setting SO_LINGER 0 failed: {}", describe_io(&e)))?;
                drop(stream);
                Ok(())
            }
            Action::ReadAborted => read_aborted(self.conn()?, deadline, timeout),
            Action::Wait(duration) => {
                let until = Instant::now() + *duration;
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    if self.shared.is_cancelled() {
                        return Err("cancelled: another side failed".into());
                    }
                    thread::sleep(left.min(Duration::from_millis(50)));
                }
                Ok(())
            }
            Action::Notify(name) => {
                self.shared.barriers().notified.insert(name.clone());
                self.shared.signal.notify_all();
                Ok(())
            }
            Action::Await(name) => {
                let mut barriers = self.shared.barriers();
                loop {
                    if barriers.notified.contains(name) {
                        return Ok(());
                    }
                    if barriers.cancelled {
                        return Err("cancelled: another side failed".into());
                    }
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return Err(format!(
                            "timed out after {} waiting for `notify {name}`",
                            fmt_duration(timeout)
                        ));
                    };
                    barriers = self
                        .shared
                        .signal
                        .wait_timeout(barriers, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    fn conn(&mut self) -> Result<&mut Conn, String> {
        self.conn
            .as_mut()
            .ok_or_else(|| "no connection".to_string())
    }

    fn opened(&mut self, stream: TcpStream) -> Result<(), String> {
        let _ = stream.set_nodelay(true);
        self.shared.register(self.id, &stream)?;
        self.conn = Some(Conn::new(stream));
        Ok(())
    }

    fn accept(&self, port: u16, deadline: Instant, timeout: Duration) -> Result<TcpStream, String> {
        let listener = self
            .shared
            .listeners
            .get(&port)
            .ok_or_else(|| format!("no listener on port {port}"))?;
        loop {
            if self.shared.is_cancelled() {
                return Err("cancelled: another side failed".into());
            }
            let accepted = listener.lock().unwrap_or_else(|e| e.into_inner()).accept();
            match accepted {
                Ok((stream, _)) => {
                    stream
                        .set_nonblocking(false)
                        .map_err(|e| format!("accepted socket: {}", describe_io(&e)))?;
                    return Ok(stream);
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "timed out after {} waiting for a connection on 127.0.0.1:{port} \
                             (zilla never connected)",
                            fmt_duration(timeout)
                        ));
                    }
                    thread::sleep(POLL);
                }
                Err(e) => return Err(format!("accept on port {port} failed: {}", describe_io(&e))),
            }
        }
    }
}

fn is_reset(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

fn is_timeout(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn describe_io(e: &io::Error) -> String {
    if is_reset(e.kind()) {
        format!("connection reset by peer (RST) [{e}]")
    } else {
        e.to_string()
    }
}

/// Formats a duration as `5s`, `250ms` or `1.5s`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Time left until `deadline`, or `None` when it has passed.
fn left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn write_payload(
    conn: &mut Conn,
    payload: &Payload,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), String> {
    conn.stream
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let result = write_nonblocking(conn, payload, deadline, timeout);
    let _ = conn.stream.set_nonblocking(false);
    result
}

fn write_nonblocking(
    conn: &mut Conn,
    payload: &Payload,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), String> {
    let total = payload.len();
    let mut buf = vec![0; (total.min(CHUNK as u64)) as usize];
    let mut offset = 0u64;
    while offset < total {
        let n = (total - offset).min(buf.len() as u64) as usize;
        payload.fill(offset, &mut buf[..n]);
        let mut done = 0;
        while done < n {
            match conn.stream.write(&buf[done..n]) {
                Ok(0) => return Err("write returned 0 bytes".into()),
                Ok(k) => done += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // Blocked: drain what the other end sends meanwhile.
                    let progressed = conn.read_ahead();
                    if Instant::now() >= deadline {
                        return Err(write_timeout(offset + done as u64, total, timeout));
                    }
                    if !progressed {
                        thread::sleep(WRITE_POLL);
                    }
                }
                Err(e) => {
                    return Err(format!(
                        "write failed after {} of {total} bytes: {}",
                        offset + done as u64,
                        describe_io(&e)
                    ))
                }
            }
        }
        offset += n as u64;
    }
    Ok(())
}

fn write_timeout(written: u64, total: u64, timeout: Duration) -> String {
    format!(
        "timed out after {} writing: {written} of {total} bytes written (the other end stopped reading?)",
        fmt_duration(timeout)
    )
}

/// Outcome of one bounded read.
enum ReadEvent {
    Data(usize),
    Eof,
    Reset(io::Error),
    TimedOut,
    Failed(io::Error),
}

fn read_some(conn: &mut Conn, buf: &mut [u8], deadline: Instant) -> ReadEvent {
    if !conn.ahead.is_empty() {
        let n = buf.len().min(conn.ahead.len());
        for (dst, src) in buf.iter_mut().zip(conn.ahead.drain(..n)) {
            *dst = src;
        }
        return ReadEvent::Data(n);
    }
    if let Some((kind, message)) = &conn.ended {
        return match *kind {
            ErrorKind::UnexpectedEof => ReadEvent::Eof,
            kind if is_reset(kind) => ReadEvent::Reset(io::Error::new(kind, message.clone())),
            kind => ReadEvent::Failed(io::Error::new(kind, message.clone())),
        };
    }
    let stream = &mut conn.stream;
    loop {
        let Some(left) = left(deadline) else {
            return ReadEvent::TimedOut;
        };
        if let Err(e) = stream.set_read_timeout(Some(left)) {
            return ReadEvent::Failed(e);
        }
        return match stream.read(buf) {
            Ok(0) => ReadEvent::Eof,
            Ok(n) => ReadEvent::Data(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(e.kind()) => ReadEvent::TimedOut,
            Err(e) if is_reset(e.kind()) => ReadEvent::Reset(e),
            Err(e) => ReadEvent::Failed(e),
        };
    }
}

fn read_payload(
    conn: &mut Conn,
    payload: &Payload,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), String> {
    let total = payload.len();
    let small = total <= SHOW_WHOLE;
    let mut received = Vec::new(); // everything so far, for small payloads
    let mut tail = Vec::new(); // the last few bytes, for large payloads
    let mut buf = vec![0; (total.min(CHUNK as u64)) as usize];
    let mut expected = vec![0; buf.len()];
    let mut got = 0u64;
    while got < total {
        let want = (total - got).min(buf.len() as u64) as usize;
        let n = match read_some(conn, &mut buf[..want], deadline) {
            ReadEvent::Data(n) => n,
            other => {
                let what = match other {
                    ReadEvent::Eof => "connection closed by the other end (EOF)".to_string(),
                    ReadEvent::Reset(_) => "connection reset by the other end (RST)".to_string(),
                    ReadEvent::TimedOut => format!("timed out after {}", fmt_duration(timeout)),
                    ReadEvent::Failed(e) => format!("read failed: {e}"),
                    ReadEvent::Data(_) => unreachable!(),
                };
                let mut message = format!("{what} after receiving {got} of {total} expected bytes");
                message.push_str(&format!("\n  expected: {}", payload.describe()));
                if small {
                    message.push_str(&format!("\n  received: {}", escape(&received)));
                }
                return Err(message);
            }
        };
        payload.fill(got, &mut expected[..n]);
        if let Some(i) = (0..n).find(|&i| buf[i] != expected[i]) {
            let at = got + i as u64;
            let message = if small {
                received.extend_from_slice(&buf[..n]);
                format!(
                    "data mismatch at byte {at} of {total}\n  expected: {}\n  received: {}",
                    escape(&payload.slice(0, total)),
                    escape(&received)
                )
            } else {
                // `tail` holds the bytes just before `got`.
                let mut seen = tail.clone();
                seen.extend_from_slice(&buf[..n]);
                let seen_from = got - tail.len() as u64;
                let from = at.saturating_sub(CONTEXT_BEFORE).max(seen_from);
                let to = (at + CONTEXT_AFTER).min(got + n as u64);
                let window = |bytes: &[u8]| escape_truncated(bytes, 200);
                format!(
                    "data mismatch at byte {at} of {total} (expected {})\n  \
                     expected[{from}..{to}]: {}\n  received[{from}..{to}]: {}",
                    payload.describe(),
                    window(&payload.slice(from, to)),
                    window(&seen[(from - seen_from) as usize..(to - seen_from) as usize]),
                )
            };
            return Err(message);
        }
        if small {
            received.extend_from_slice(&buf[..n]);
        } else {
            tail.extend_from_slice(&buf[..n]);
            let excess = tail.len().saturating_sub(CONTEXT_BEFORE as usize);
            tail.drain(..excess);
        }
        got += n as u64;
    }
    Ok(())
}

fn read_closed(conn: &mut Conn, deadline: Instant, timeout: Duration) -> Result<(), String> {
    let mut buf = [0; 256];
    match read_some(conn, &mut buf, deadline) {
        ReadEvent::Eof => Ok(()),
        ReadEvent::Data(n) => Err(format!(
            "expected end of stream (FIN) but received {n} more bytes: {}",
            escape_truncated(&buf[..n], 120)
        )),
        ReadEvent::Reset(e) => Err(format!(
            "expected a clean end of stream (FIN) but the connection was reset (RST) [{e}]"
        )),
        ReadEvent::TimedOut => Err(format!(
            "timed out after {} waiting for end of stream (FIN)",
            fmt_duration(timeout)
        )),
        ReadEvent::Failed(e) => Err(format!("read failed: {e}")),
    }
}

fn read_aborted(conn: &mut Conn, deadline: Instant, timeout: Duration) -> Result<(), String> {
    let mut buf = [0; 256];
    match read_some(conn, &mut buf, deadline) {
        ReadEvent::Reset(_) => Ok(()),
        ReadEvent::Eof => Err(
            "expected the connection to be reset (RST) but it was closed cleanly (EOF/FIN)".into(),
        ),
        ReadEvent::Data(n) => Err(format!(
            "expected the connection to be reset (RST) but received {n} bytes: {}",
            escape_truncated(&buf[..n], 120)
        )),
        ReadEvent::TimedOut => Err(format!(
            "timed out after {} waiting for the connection to be reset (RST)",
            fmt_duration(timeout)
        )),
        ReadEvent::Failed(e) => Err(format!("read failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::parse;

    /// Runs two scripts against each other over loopback, without zilla.
    fn pair(client: &str, server: &str) -> (Result<(), SideError>, Result<(), SideError>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let vars = HashMap::from([("PORT".to_string(), port.to_string())]);
        let client = parse("client.spec", client, &vars).unwrap();
        let server = parse("server.spec", server, &vars).unwrap();
        let shared = Shared::new(HashMap::from([(port, listener)]));
        let (c, s) = thread::scope(|scope| {
            let c = scope.spawn(|| {
                let r = run(0, &client, &shared);
                if r.result.is_err() {
                    shared.cancel();
                }
                r
            });
            let s = scope.spawn(|| {
                let r = run(1, &server, &shared);
                if r.result.is_err() {
                    shared.cancel();
                }
                r
            });
            (c.join().unwrap(), s.join().unwrap())
        });
        shared.release_streams();
        (c.result, s.result)
    }

    #[test]
    fn data_both_ways_and_half_close() {
        let (c, s) = pair(
            "connect ${PORT}\nwrite \"hello\"\nwrite close\nread \"world\"\nread closed\n",
            "accept ${PORT}\nread \"hello\"\nread closed\nwrite \"world\"\nwrite close\n",
        );
        c.unwrap();
        s.unwrap();
    }

    #[test]
    fn large_repeat_payload() {
        let (c, s) = pair(
            "connect ${PORT}\nwrite repeat 100000 \"0123456789\"\n",
            "accept ${PORT}\nwait 100ms\nread repeat 100000 \"0123456789\"\n",
        );
        c.unwrap();
        s.unwrap();
    }

    #[test]
    fn blocked_writes_read_ahead() {
        // Both sides write 32 MiB before reading: more than the socket
        // buffers hold, so this only finishes because blocked writes read
        // ahead.
        let script = |open: &str| {
            format!(
                "{open} ${{PORT}}\ntimeout 30s\nwrite repeat 524288 \"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\"\n\
                 write close\nread repeat 524288 \"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\"\nread closed\n"
            )
        };
        let (c, s) = pair(&script("connect"), &script("accept"));
        c.unwrap();
        s.unwrap();
    }

    #[test]
    fn mismatch_shows_expected_and_received() {
        let (_, s) = pair(
            "connect ${PORT}\nwrite \"server DATA\\r\\n\"\n",
            "accept ${PORT}\nread \"server data\\r\\n\"\n",
        );
        let err = s.unwrap_err();
        assert_eq!(err.line, 2);
        assert!(!err.cancelled);
        assert!(
            err.message.contains("mismatch at byte 7 of 13"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains(r#"expected: "server data\r\n""#),
            "{}",
            err.message
        );
        assert!(
            err.message.contains(r#"received: "server DATA\r\n""#),
            "{}",
            err.message
        );
    }

    #[test]
    fn large_mismatch_shows_window() {
        let (_, s) = pair(
            // the pause makes the mismatch start a new read: context then
            // comes from the previous chunk
            "connect ${PORT}\nwrite repeat 1000 \"a\"\nwait 100ms\nwrite \"b\"\nwrite repeat 999 \"a\"\n",
            "accept ${PORT}\nread repeat 2000 \"a\"\n",
        );
        let err = s.unwrap_err().message;
        assert!(err.contains("mismatch at byte 1000 of 2000"), "{err}");
        assert!(err.contains("received[984.."), "{err}");
        assert!(err.contains("aaab"), "{err}");
    }

    #[test]
    fn read_closed_rejects_data_and_reset() {
        let (_, s) = pair(
            "connect ${PORT}\nwrite \"extra\"\nwrite close\n",
            "accept ${PORT}\nread closed\n",
        );
        let err = s.unwrap_err().message;
        assert!(err.contains(r#"received 5 more bytes: "extra""#), "{err}");

        let (_, s) = pair("connect ${PORT}\nabort\n", "accept ${PORT}\nread closed\n");
        let err = s.unwrap_err().message;
        assert!(err.contains("reset (RST)"), "{err}");
    }

    #[test]
    fn read_aborted_accepts_reset_only() {
        let (c, s) = pair("connect ${PORT}\nabort\n", "accept ${PORT}\nread aborted\n");
        c.unwrap();
        s.unwrap();

        let (_, s) = pair(
            "connect ${PORT}\nwrite close\n",
            "accept ${PORT}\nread aborted\n",
        );
        let err = s.unwrap_err().message;
        assert!(err.contains("closed cleanly"), "{err}");
    }

    #[test]
    fn eof_during_read() {
        let (_, s) = pair(
            "connect ${PORT}\nwrite \"par\"\nwrite close\n",
            "accept ${PORT}\nread \"partial\"\n",
        );
        let err = s.unwrap_err().message;
        assert!(err.contains("EOF) after receiving 3 of 7"), "{err}");
        assert!(err.contains(r#"received: "par""#), "{err}");
    }

    #[test]
    fn timeouts_and_barriers() {
        let (c, s) = pair(
            "timeout 200ms\nconnect ${PORT}\nread \"never\"\n",
            "accept ${PORT}\nawait NEVER\n",
        );
        let c = c.unwrap_err();
        assert_eq!(c.line, 3);
        assert!(c.message.contains("timed out after 200ms"), "{}", c.message);
        // the server was cancelled by the client's failure
        assert!(s.unwrap_err().cancelled);

        let (c, s) = pair(
            "await GO\nconnect ${PORT}\nwrite \"x\"\n",
            "wait 50ms\nnotify GO\naccept ${PORT}\nread \"x\"\n",
        );
        c.unwrap();
        s.unwrap();
    }

    #[test]
    fn accept_timeout_names_port() {
        let (_, s) = pair("await NEVER\n", "timeout 100ms\naccept ${PORT}\n");
        let err = s.unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err
            .message
            .contains("waiting for a connection on 127.0.0.1:"));
    }

    #[test]
    fn durations_format() {
        assert_eq!(fmt_duration(Duration::from_secs(5)), "5s");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    }
}
