//! `zilla-sse-server`: a small SSE backend, like the one in Zilla's sse.proxy examples.
//!
//! - Any `GET` on the SSE port (default 8001) is answered with `text/event-stream` and receives
//!   every event published from then on (after replaying the ones after its `Last-Event-ID`, if
//!   they are still in the recent history).
//! - Each line sent to the input port (default 7001) is a JSON object
//!   `{"data": <string or any JSON>, "name": "<event type>", "id": "<id>", "path": "<path>"}`
//!   (`name`, `id` and `path` optional) and is broadcast as one event: to every stream, or with
//!   `path` only to the streams requested at that path (query aside). The publisher gets `ok` or
//!   `error: <why>` back.
//! - Each stream opened is printed with the `x-` headers of its request, so what a gateway in
//!   front adds (`x-tenant`, `x-user`, ...) can be seen.
//!
//! ```sh
//! zilla-sse-server --sse-port 8001 --input-port 7001
//! echo '{"data":"Hello, world","id":"1"}' | curl -s telnet://127.0.0.1:7001
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use clap::Parser as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// A small SSE backend for examples and tests.
#[derive(Debug, clap::Parser)]
#[command(name = "zilla-sse-server", version)]
struct Args {
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port serving event streams.
    #[arg(long, default_value_t = 8001)]
    sse_port: u16,
    /// Port taking newline-delimited JSON events to broadcast.
    #[arg(long, default_value_t = 7001)]
    input_port: u16,
}

/// Recent events kept for `Last-Event-ID` replay.
const HISTORY: usize = 1024;

#[derive(Debug, Clone)]
struct Published {
    id: Option<String>,
    /// Only for streams at this path, if set.
    path: Option<String>,
    bytes: Bytes,
}

impl Published {
    fn for_path(&self, path: &str) -> bool {
        self.path.as_deref().is_none_or(|p| p == path)
    }
}

#[derive(Debug)]
struct Hub {
    tx: broadcast::Sender<Published>,
    history: Mutex<VecDeque<Published>>,
}

impl Hub {
    fn publish(&self, p: Published) {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(p.clone());
        // Publish under the lock so a subscriber's replay and live events never overlap.
        let _ = self.tx.send(p);
    }

    /// Subscribes, returning the events after `last_id` still in history.
    fn subscribe(&self, last_id: Option<&str>) -> (Vec<Published>, broadcast::Receiver<Published>) {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let replay = match last_id {
            Some(id) => match h.iter().position(|p| p.id.as_deref() == Some(id)) {
                Some(i) => h.iter().skip(i + 1).cloned().collect(),
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        (replay, rx)
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let sse = TcpListener::bind((args.host.as_str(), args.sse_port))
        .await
        .map_err(|e| {
            eprintln!(
                "zilla-sse-server: cannot listen on {}:{}: {e}",
                args.host, args.sse_port
            );
            e
        })?;
    let input = TcpListener::bind((args.host.as_str(), args.input_port))
        .await
        .map_err(|e| {
            eprintln!(
                "zilla-sse-server: cannot listen on {}:{}: {e}",
                args.host, args.input_port
            );
            e
        })?;
    println!("zilla-sse-server: events on http://{}", sse.local_addr()?);
    println!(
        "zilla-sse-server: publish JSON lines to tcp://{}",
        input.local_addr()?
    );
    let hub = Arc::new(Hub {
        tx: broadcast::channel(1024).0,
        history: Mutex::new(VecDeque::new()),
    });
    let publishers = {
        let hub = hub.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = input.accept().await {
                tokio::spawn(publisher(socket, hub.clone()));
            }
        })
    };
    loop {
        tokio::select! {
            accepted = sse.accept() => {
                if let Ok((socket, _)) = accepted {
                    let _ = socket.set_nodelay(true);
                    tokio::spawn(subscriber(socket, hub.clone()));
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    publishers.abort();
    Ok(())
}

/// Parses one published line into an encoded event.
fn event(line: &str) -> Result<Published, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("expected a JSON object with \"data\"")?;
    let data = match obj.get("data") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => return Err("missing \"data\"".into()),
    };
    let text = |k: &str| {
        obj.get(k).map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
    };
    let id = text("id");
    let name = text("name");
    let path = text("path");
    let bytes = sse_codec::encode(&sse_codec::Fields {
        id: id.as_deref().map(str::as_bytes),
        event: name.as_deref().map(str::as_bytes),
        data: Some(data.as_bytes()),
        timestamp: 0,
    });
    Ok(Published { id, path, bytes })
}

async fn publisher(socket: TcpStream, hub: Arc<Hub>) {
    let (r, mut w) = socket.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let reply = match event(&line) {
            Ok(p) => {
                hub.publish(p);
                "ok\n".to_string()
            }
            Err(e) => format!("error: {e}\n"),
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn subscriber(mut socket: TcpStream, hub: Arc<Hub>) {
    // Read the request head (up to 16 KiB).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            let _ = socket
                .write_all(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    if !text.starts_with("GET ") {
        let _ = socket
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    }
    let header = |wanted: &str| {
        text.lines().skip(1).find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_string())
        })
    };
    let last_id = header("last-event-id");
    let target = text.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_string();
    let identity: Vec<String> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().to_ascii_lowercase().starts_with("x-"))
        .map(|(n, v)| format!("{}: {}", n.trim().to_ascii_lowercase(), v.trim()))
        .collect();
    println!(
        "zilla-sse-server: stream opened: GET {path} ({})",
        if identity.is_empty() {
            "no x- headers".to_string()
        } else {
            identity.join(", ")
        }
    );
    let (replay, mut rx) = hub.subscribe(last_id.as_deref());
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    if socket.write_all(head).await.is_err() {
        return;
    }
    for p in replay.iter().filter(|p| p.for_path(&path)) {
        if chunk(&mut socket, &p.bytes).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            published = rx.recv() => match published {
                Ok(p) if !p.for_path(&path) => {}
                Ok(p) => if chunk(&mut socket, &p.bytes).await.is_err() { return },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("zilla-sse-server: a slow subscriber missed {n} events");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            // The client went away.
            read = socket.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { return },
        }
    }
}

async fn chunk(socket: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(bytes.len() + 12);
    out.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    socket.write_all(&out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_lines_become_events() {
        let p = event(r#"{"data":"Hello, world","id":"1","name":"greeting"}"#).unwrap();
        assert_eq!(p.bytes, "id:1\nevent:greeting\ndata:Hello, world\n\n");
        let p = event(r#"{"data":{"a":1}}"#).unwrap();
        assert_eq!(p.bytes, "data:{\"a\":1}\n\n");
        assert!(event("nope").unwrap_err().starts_with("not JSON"));
        assert_eq!(event(r#"{"id":"1"}"#).unwrap_err(), "missing \"data\"");
        let p = event(r#"{"data":"x","path":"/tenants/acme/events"}"#).unwrap();
        assert!(p.for_path("/tenants/acme/events"));
        assert!(!p.for_path("/tenants/globex/events"));
        assert!(event(r#"{"data":"x"}"#).unwrap().for_path("/any"));
    }
}
