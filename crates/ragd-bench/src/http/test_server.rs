//! A tiny HTTP/1.1 server for the tests of the load generators: each
//! connection it accepts reads one request, then either closes without a
//! word (a connection the server dropped) or writes a scripted response
//! and closes, however the client asked to keep it alive.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Endpoint;

/// What the server does with the connections it accepts, in order (the
/// last applies to every later one): `None` closes after reading the
/// request, `Some(response)` writes it.
pub type Script = Vec<Option<String>>;

/// A `200` response with a JSON body.
pub fn json_response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n{body}",
        body.len()
    )
}

/// A `200` event stream of these `data:` payloads (its body ends when the
/// connection closes).
pub fn sse_response(payloads: &[&str]) -> String {
    let mut out = String::from("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n");
    for p in payloads {
        out.push_str(&format!("data: {p}\n\n"));
    }
    out
}

/// The server at `addr`, as the load generators talk to it.
pub fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::new(
        &format!("http://{addr}/v1"),
        None,
        std::time::Duration::from_secs(10),
    )
    .expect("client")
}

/// Starts the server; its address and the count of connections accepted.
pub async fn start(script: Script) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let i = count.fetch_add(1, Ordering::SeqCst);
            let action = script.get(i).or(script.last()).cloned().flatten();
            tokio::spawn(async move {
                read_request(&mut socket).await;
                if let Some(response) = action {
                    let _ = socket.write_all(response.as_bytes()).await;
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, accepted)
}

/// Reads one request: headers, then `content-length` bytes of body.
async fn read_request(socket: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = socket.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = (text[..end].lines())
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return;
            }
        }
    }
}
