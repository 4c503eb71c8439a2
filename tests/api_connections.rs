//! The connection loop against slow and idle clients (issue 10, finding
//! 2): `axum::serve` ran without header, body or idle timeouts and without
//! a connection cap, so 200 connections with partial headers stayed open
//! for as long as the attacker liked, and 300 slow connections under a
//! 256-file limit made `/health` time out with "too many open files".

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ragd_server::config::ConnectionConfig;
use ragd_suite::{get_text, metric_value, no_models, start_on_own_thread};

fn server(connections: ConnectionConfig) -> (SocketAddr, ragd_suite::StopOnDrop) {
    start_on_own_thread(|c| {
        no_models(c);
        c.connections = connections;
    })
}

/// Whether the server closes `conn` within `limit` (EOF or reset on read).
fn closed_within(conn: &mut TcpStream, limit: Duration) -> bool {
    conn.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 or similar before closing
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn health(addr: SocketAddr) -> Option<String> {
    let mut conn = TcpStream::connect(addr).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    conn.read_to_string(&mut out).ok()?;
    Some(out)
}

#[tokio::test]
async fn partial_headers_and_idle_connections_are_closed_after_the_timeout() {
    let (addr, _server) = server(ConnectionConfig {
        header_timeout: Duration::from_secs(1),
        ..ConnectionConfig::default()
    });
    let t0 = Instant::now();
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            c
        })
        .collect();
    for c in &mut slow {
        assert!(
            closed_within(c, Duration::from_secs(10)),
            "a partial header was left open"
        );
    }
    assert!(t0.elapsed() < Duration::from_secs(10));
    // A kept-alive connection idle after its request is closed too.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut idle, Duration::from_secs(10)),
        "an idle keep-alive stayed open"
    );
    assert!(health(addr).unwrap().starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_and_health_recovers() {
    let (addr, _server) = server(ConnectionConfig {
        max_connections: 16,
        header_timeout: Duration::from_secs(2),
        ..ConnectionConfig::default()
    });
    // 40 silent connections: 16 take the slots, the rest are closed at once.
    let mut held: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let refused = held
        .iter_mut()
        .map(|c| closed_within(c, Duration::from_secs(1)))
        .filter(|&closed| closed)
        .count();
    assert!(refused >= 24, "{refused} of 40 refused");
    // The held ones time out; then the server answers again.
    let t0 = Instant::now();
    let answered = loop {
        if let Some(reply) = health(addr).filter(|r| r.starts_with("HTTP/1.1 200")) {
            break reply;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "/health never came back");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        answered.contains("ok") || answered.contains("status"),
        "{answered}"
    );
    let metrics = get_text(&format!("http://{addr}"), "/metrics").await;
    let refused_total = metric_value(&metrics, "ragd_http_connections_refused_total", "").unwrap();
    assert!(refused_total >= 24.0, "{metrics}");
    drop(held);
}
