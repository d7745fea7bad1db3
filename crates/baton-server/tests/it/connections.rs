//! What clients may hold open: idle and half-sent connections are closed
//! after the header timeout, and `/healthz` answers while the connection
//! limit is taken.

use std::time::{Duration, Instant};

use baton_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::app_with;

/// A server with `config` on a free port; its address.
async fn listening(dir: &std::path::Path, config: ServerConfig) -> std::net::SocketAddr {
    let app = app_with(dir, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(baton_server::serve(listener, app, std::future::pending()));
    address
}

/// Whether the server closes `stream` within `deadline` (reads to its end).
async fn closed_by_server(stream: &mut TcpStream, deadline: Duration) -> bool {
    let mut buffer = [0; 256];
    let read = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(deadline, read).await.is_ok()
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let address = listening(
        dir.path(),
        ServerConfig {
            require_keys: false,
            header_read_timeout: Duration::from_millis(200),
            ..ServerConfig::default()
        },
    )
    .await;
    let mut idle = TcpStream::connect(address).await.unwrap();
    let mut half = TcpStream::connect(address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let mut kept_alive = TcpStream::connect(address).await.unwrap();
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    for (name, stream) in [
        ("idle", &mut idle),
        ("half-sent", &mut half),
        ("idle after an answer", &mut kept_alive),
    ] {
        assert!(
            closed_by_server(stream, Duration::from_secs(30)).await,
            "the {name} connection was left open"
        );
    }
}

#[tokio::test]
async fn health_answers_while_idle_connections_hold_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let address = listening(
        dir.path(),
        ServerConfig {
            require_keys: false,
            max_connections: 8,
            header_read_timeout: Duration::from_millis(200),
            ..ServerConfig::default()
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(TcpStream::connect(address).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut health = TcpStream::connect(address).await.unwrap();
    health
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout_at(deadline.into(), health.read_to_string(&mut answer))
        .await
        .expect("/healthz did not answer")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
