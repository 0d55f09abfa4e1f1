//! An OTLP/HTTP collector on 127.0.0.1 for tests: takes `POST /v1/metrics` and `POST /v1/logs`
//! with protobuf bodies over real HTTP/1.1, decodes them with the OpenTelemetry protocol
//! crate, keeps them, and can refuse on demand (`503`) to test an outage.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

#[derive(Debug, Default)]
struct State {
    failing: bool,
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
    /// Every request: method, path, content type, refused.
    seen: Vec<(String, String, String, bool)>,
}

/// A running collector (it stops with the test process).
#[derive(Debug, Clone)]
pub struct OtlpCollector {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl OtlpCollector {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> OtlpCollector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the collector");
        let port = listener.local_addr().expect("addr").port();
        let state: Arc<Mutex<State>> = Arc::default();
        let s = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                thread::spawn(move || serve(conn, &s));
            }
        });
        OtlpCollector { port, state }
    }

    /// Its base URL, e.g. `http://127.0.0.1:4318`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers `503` to everything (`true`) or accepts again.
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// Metrics requests accepted so far.
    pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.lock().metrics.clone()
    }

    /// Logs requests accepted so far.
    pub fn logs(&self) -> Vec<ExportLogsServiceRequest> {
        self.lock().logs.clone()
    }

    /// `(method, path, content-type, refused)` of every request.
    pub fn seen(&self) -> Vec<(String, String, String, bool)> {
        self.lock().seen.clone()
    }

    /// Waits until `f` holds (true) or `timeout` passes (false).
    pub fn wait(&self, timeout: Duration, f: impl Fn(&OtlpCollector) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f(self) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        f(self)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                match n.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "content-type" => content_type = v.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            let refused = s.failing;
            s.seen
                .push((method.clone(), path.clone(), content_type.clone(), refused));
            if refused {
                "503 Service Unavailable"
            } else {
                match path.as_str() {
                    "/v1/metrics" => match ExportMetricsServiceRequest::decode(&body[..]) {
                        Ok(r) => {
                            s.metrics.push(r);
                            "200 OK"
                        }
                        Err(_) => "400 Bad Request",
                    },
                    "/v1/logs" => match ExportLogsServiceRequest::decode(&body[..]) {
                        Ok(r) => {
                            s.logs.push(r);
                            "200 OK"
                        }
                        Err(_) => "400 Bad Request",
                    },
                    _ => "404 Not Found",
                }
            }
        };
        if write!(out, "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}
