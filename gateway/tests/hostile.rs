//! Hostile RTMP clients against the real server loop: garbage bytes, a truncated handshake,
//! absurd chunk sizes and message lengths. Each is closed or left waiting on its own, and the
//! gateway keeps completing handshakes with well-behaved clients meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgevideo_gateway::metrics::Metrics;
use edgevideo_gateway::push::Edge;
use edgevideo_gateway::server;
use edgevideo_gateway::stream::{Gateway, StreamSettings};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Set by the panic hook: a panic in a connection task is caught by tokio, so it is counted
/// here and every test asserts there was none.
static PANICKED: AtomicBool = AtomicBool::new(false);

fn assert_no_panic() {
    assert!(
        !PANICKED.load(Ordering::SeqCst),
        "a connection task panicked"
    );
}

async fn start() -> std::net::SocketAddr {
    start_with(edgevideo_gateway::stream::DEFAULT_CONNECTIONS_PER_ADDRESS).await
}

/// The server with at most `limit` connections per client address.
async fn start_with(limit: usize) -> std::net::SocketAddr {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            default(info);
        }));
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Nothing listens on port 1: a publish would be refused, which these tests never reach.
    let edge = Edge::new("http://127.0.0.1:1", 1, Duration::ZERO).unwrap();
    let gateway = Arc::new(
        Gateway::new(
            edge,
            Arc::new(Metrics::default()),
            StreamSettings {
                segment_ms: 2000,
                part_ms: 334,
                chunk_ms: 0,
                queue: 4,
            },
        )
        .with_connection_limit(limit),
    );
    tokio::spawn(server::serve(listener, gateway));
    addr
}

/// A client handshake; the connection after it.
async fn handshake(addr: std::net::SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let mut client = Handshake::new(PeerType::Client);
    let c0c1 = client.generate_outbound_p0_and_p1().unwrap();
    socket.write_all(&c0c1).await.unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
            .await
            .expect("the server answers the handshake")
            .unwrap();
        assert!(n > 0, "the server closed a well-behaved handshake");
        match client.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                socket.write_all(&response_bytes).await.unwrap();
            }
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                socket.write_all(&response_bytes).await.unwrap();
                return socket;
            }
        }
    }
}

/// Whether the server closes `socket` within `within` (reading and discarding its output).
async fn closed_within(socket: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn garbage(len: usize, mut seed: u32) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        })
        .collect()
}

#[tokio::test]
async fn garbage_before_the_handshake_is_closed() {
    let addr = start().await;
    for seed in 0..20 {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let mut bytes = garbage(8192, seed);
        bytes[0] = 0x47; // not RTMP version 3
        let _ = socket.write_all(&bytes).await;
        assert!(
            closed_within(&mut socket, Duration::from_secs(5)).await,
            "seed {seed}"
        );
    }
    drop(handshake(addr).await);
    assert_no_panic();
}

#[tokio::test]
async fn a_truncated_handshake_does_not_stop_other_clients() {
    let addr = start().await;
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let mut client = Handshake::new(PeerType::Client);
    let c0c1 = client.generate_outbound_p0_and_p1().unwrap();
    stalled.write_all(&c0c1[..700]).await.unwrap();
    // The stalled client holds its connection; others are served meanwhile.
    for _ in 0..3 {
        drop(handshake(addr).await);
    }
    // A client that leaves mid-handshake is forgotten.
    drop(stalled);
    drop(handshake(addr).await);
    assert_no_panic();
}

#[tokio::test]
async fn absurd_chunk_sizes_and_message_lengths_do_not_take_the_server_down() {
    let addr = start().await;
    let mut socket = handshake(addr).await;
    let mut bytes = Vec::new();
    // Set Chunk Size (type 1) on chunk stream 2 to 2^31 - 1.
    bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0]);
    bytes.extend_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
    // An AMF0 command (type 20) announcing 16 MiB - 1, then garbage that never completes it.
    bytes.extend_from_slice(&[0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x14, 0, 0, 0, 0]);
    bytes.extend_from_slice(&garbage(256 * 1024, 7));
    let _ = socket.write_all(&bytes).await;
    drop(socket);

    // A zero chunk size and then chunks on every chunk stream id form.
    let mut socket = handshake(addr).await;
    let mut bytes = vec![0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&garbage(64 * 1024, 11));
    let _ = socket.write_all(&bytes).await;
    let _ = closed_within(&mut socket, Duration::from_secs(2)).await;
    drop(socket);

    // Garbage after a good handshake.
    for seed in 0..20 {
        let mut socket = handshake(addr).await;
        let _ = socket.write_all(&garbage(16 * 1024, 100 + seed)).await;
        drop(socket);
    }
    drop(handshake(addr).await);
    assert_no_panic();
}

/// Whether the server takes a new connection: it answers the start of a handshake.
async fn admitted(addr: std::net::SocketAddr) -> Option<TcpStream> {
    let mut socket = TcpStream::connect(addr).await.ok()?;
    let mut client = Handshake::new(PeerType::Client);
    let c0c1 = client.generate_outbound_p0_and_p1().unwrap();
    socket.write_all(&c0c1).await.ok()?;
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(socket),
        _ => None,
    }
}

#[tokio::test]
async fn an_address_holding_the_most_connections_gets_no_more() {
    let addr = start_with(3).await;
    // A slowloris client: three connections that never finish their handshake hold the
    // address's places.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(admitted(addr).await.expect("within the limit"));
    }
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut fourth, Duration::from_secs(5)).await,
        "a fourth connection is closed at once"
    );
    // One leaves: once the server has seen it go, its place is free again.
    drop(idle.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let again = loop {
        if let Some(socket) = admitted(addr).await {
            break socket;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(again);
    drop(idle);
    assert_no_panic();
}
