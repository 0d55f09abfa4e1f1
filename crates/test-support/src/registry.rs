//! A schema registry on 127.0.0.1 for tests: answers the Confluent and Apicurio REST calls it is
//! given, over real HTTP/1.1, and can fail on demand (500s, answers that never come, refused
//! connections) and recover.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How the registry answers every request for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryMode {
    /// Answers the configured paths (404 for others).
    Up,
    /// Answers `500 Internal Server Error` to everything.
    Failing,
    /// Reads the request and never answers (the client's timeout must fire).
    Hanging,
}

/// One request the registry received.
#[derive(Debug, Clone)]
pub struct RegistryRequest {
    /// The request target, e.g. `/subjects/items/versions/latest`.
    pub path: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
struct State {
    mode: RegistryMode,
    answers: HashMap<String, (u16, String, &'static str)>,
    requests: Vec<RegistryRequest>,
}

/// A running fake registry. Dropping it stops it.
#[derive(Debug)]
pub struct FakeRegistry {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakeRegistry {
    /// Starts a registry on a free port of 127.0.0.1.
    pub fn start() -> FakeRegistry {
        Self::start_on(0)
    }

    /// Starts a registry on `port` of 127.0.0.1 (0: any free port).
    pub fn start_on(port: u16) -> FakeRegistry {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the registry");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            mode: RegistryMode::Up,
            answers: HashMap::new(),
            requests: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (s, st) = (s.clone(), st.clone());
                        thread::spawn(move || serve(conn, &s, &st));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeRegistry { addr, state, stop }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answers `GET path` with `status` and a JSON `body`.
    pub fn answer(&self, path: &str, status: u16, body: &str) {
        self.answer_typed(path, status, body, "application/vnd.schemaregistry.v1+json");
    }

    /// Answers `GET path` with `status`, `body` and `content_type`.
    pub fn answer_typed(&self, path: &str, status: u16, body: &str, content_type: &'static str) {
        self.lock()
            .answers
            .insert(path.to_string(), (status, body.to_string(), content_type));
    }

    /// Confluent: `subject` at `version` is schema `id` with `schema` text (both lookups).
    pub fn confluent_subject(&self, subject: &str, version: &str, id: u32, schema: &str) {
        let text = serde_json_string(schema);
        self.answer(
            &format!("/subjects/{subject}/versions/{version}"),
            200,
            &format!(r#"{{"subject":"{subject}","version":1,"id":{id},"schema":{text}}}"#),
        );
        self.answer(
            &format!("/schemas/ids/{id}"),
            200,
            &format!(r#"{{"schema":{text}}}"#),
        );
    }

    /// Switches how every later request is answered.
    pub fn set_mode(&self, mode: RegistryMode) {
        self.lock().mode = mode;
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<RegistryRequest> {
        self.lock().requests.clone()
    }

    /// How many requests for `path` were received.
    pub fn count(&self, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wait for the accept loop to notice, so the port refuses connections from now on.
        thread::sleep(Duration::from_millis(20));
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut writer = conn;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let (mode, answer) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.requests.push(RegistryRequest {
            path: path.clone(),
            headers,
        });
        (s.mode, s.answers.get(&path).cloned())
    };
    let (status, body, content_type) = match mode {
        RegistryMode::Hanging => {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        RegistryMode::Failing => (
            500,
            r#"{"error_code":500,"message":"down"}"#.to_string(),
            "application/json",
        ),
        RegistryMode::Up => answer.unwrap_or((
            404,
            r#"{"error_code":40401,"message":"Subject not found."}"#.to_string(),
            "application/json",
        )),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let _ = write!(
        writer,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = writer.flush();
}

/// `text` as a JSON string literal.
fn serde_json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
