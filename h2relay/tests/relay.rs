//! gRPC through the relay: real tonic clients, a real tonic upstream, h2c on loopback.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use meshwork_h2relay::{ServerConfig, UpstreamConfig};
use tonic::Code;

async fn setup() -> (Relay, std::sync::Arc<Seen>) {
    let (up, seen) = start_upstream().await;
    (start_relay(up, ServerConfig::default(), UpstreamConfig::default()).await, seen)
}

#[tokio::test]
async fn unary_call() {
    let (relay, seen) = setup().await;
    let ch = channel(relay.addr).await;
    let resp = unary(&ch, "/test.Relay/Unary", msg(7, 100)).await.unwrap().into_inner();
    assert_eq!(resp, msg(7, 100));
    assert_eq!(
        seen.relayed_header.lock().unwrap().as_deref(),
        Some("yes"),
        "the route's header edit reached the upstream"
    );
    // Many calls on one connection keep the HPACK tables of both sides in step.
    for i in 0..50 {
        assert_eq!(unary(&ch, "/test.Relay/Unary", msg(i, 10)).await.unwrap().into_inner(), msg(i, 10));
    }
    assert_eq!(relay.config.stats.buffered.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn server_streaming() {
    let (relay, _) = setup().await;
    let ch = channel(relay.addr).await;
    let req = Msg { count: 500, payload: vec![1; 1000], ..Msg::default() };
    let mut stream =
        streaming(&ch, "/test.Relay/ServerStream", futures::stream::iter([req])).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(m) = stream.next().await {
        let m = m.unwrap();
        assert_eq!(m.seq, n);
        n += 1;
    }
    assert_eq!(n, 500);
}

#[tokio::test]
async fn client_streaming() {
    let (relay, _) = setup().await;
    let ch = channel(relay.addr).await;
    let input = futures::stream::iter((0..300).map(|i| msg(i, 3000)));
    let mut out = streaming(&ch, "/test.Relay/ClientStream", input).await.unwrap().into_inner();
    let summary = out.next().await.unwrap().unwrap();
    assert_eq!((summary.seq, summary.count, summary.fail_code), (300, 300 * 3000, 0));
    assert!(out.next().await.is_none());
}

#[tokio::test]
async fn message_larger_than_the_windows() {
    let (relay, _) = setup().await;
    let ch = channel(relay.addr).await;
    let big = msg(1, 3 * 1024 * 1024 / 2);
    let resp = unary(&ch, "/test.Relay/Unary", big.clone()).await.unwrap().into_inner();
    assert_eq!(resp, big);
}

#[tokio::test]
async fn trailers_pass_through_exactly() {
    let (relay, _) = setup().await;
    let ch = channel(relay.addr).await;
    let m = Msg { fail_code: 5, payload: "no such thing: ünïcode, 100% \"quoted\"".into(), ..Msg::default() };
    let status = unary(&ch, "/test.Relay/Unary", m).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such thing: ünïcode, 100% \"quoted\"");
    assert_eq!(status.metadata().get("x-trailer").unwrap(), "kept");
}

#[tokio::test]
async fn router_reject_answers_trailers_only() {
    let (relay, seen) = setup().await;
    let ch = channel(relay.addr).await;
    let status = unary(&ch, "/test.Relay/RejectMe", msg(1, 10)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "no route: 100% closed");
    assert!(seen.peers.lock().unwrap().is_empty(), "the upstream saw nothing");
    // The connection goes on.
    assert_eq!(unary(&ch, "/test.Relay/Unary", msg(2, 10)).await.unwrap().into_inner(), msg(2, 10));
}

#[tokio::test]
async fn client_cancel_reaches_the_upstream() {
    let (relay, seen) = setup().await;
    let ch = channel(relay.addr).await;
    let notified = seen.cancel_notify.notified();
    let call = tokio::spawn({
        let ch = ch.clone();
        async move { unary(&ch, "/test.Relay/Hang", msg(1, 10)).await }
    });
    // Wait for the call to reach the upstream, then cancel it.
    for _ in 0..200 {
        if !seen.peers.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    call.abort();
    tokio::time::timeout(Duration::from_secs(5), notified).await.expect("the upstream handler was cancelled");
    assert_eq!(seen.cancelled.load(Ordering::SeqCst), 1);
    assert_eq!(unary(&ch, "/test.Relay/Unary", msg(2, 10)).await.unwrap().into_inner(), msg(2, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_spread_over_upstream_connections() {
    let (up, seen) = start_upstream().await;
    let relay =
        start_relay(up, ServerConfig::default(), UpstreamConfig { connections: 4, ..UpstreamConfig::default() }).await;
    // Four client connections of 50 calls each (the relay allows 100 streams per connection).
    let mut calls = Vec::new();
    for c in 0..4 {
        let ch = channel(relay.addr).await;
        for i in 0..50u64 {
            let ch = ch.clone();
            calls.push(tokio::spawn(async move {
                let m = Msg { delay_ms: 50, ..msg(c * 100 + i, 100) };
                unary(&ch, "/test.Relay/Unary", m.clone()).await.map(|r| (r.into_inner(), m))
            }));
        }
    }
    for call in calls {
        let (got, sent) = call.await.unwrap().unwrap();
        assert_eq!(got, sent);
    }
    let peers = seen.peers.lock().unwrap().len();
    eprintln!("200 calls: {peers} upstream connections seen, {} opened", relay.pool.connections_opened());
    assert!(peers > 1, "the upstream saw {peers} relay connection(s)");
    assert!(relay.pool.connections_opened() > 1);
    assert!(relay.pool.connections_opened() <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_bidi_stream_with_a_slow_reader_is_back_pressured() {
    let (up, _) = start_upstream().await;
    let window = 65_535;
    let config = ServerConfig { initial_stream_window: window, ..ServerConfig::default() };
    let relay =
        start_relay(up, config, UpstreamConfig { initial_stream_window: window, ..UpstreamConfig::default() }).await;
    // The client's own windows are small too, so its slow reading pushes back on the relay.
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", relay.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    const N: u64 = 400;
    const SIZE: usize = 16 * 1024;
    let input = futures::stream::iter((0..N).map(|i| msg(i, SIZE)));
    let mut out = streaming(&ch, "/test.Relay/Bidi", input).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(m) = out.next().await {
        let m = m.unwrap();
        assert_eq!(m.seq, n, "in order");
        assert_eq!(m.payload, msg(n, SIZE).payload);
        n += 1;
        if n % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(n, N);
    let peak = relay.config.stats.buffered_peak.load(Ordering::Relaxed);
    let total = 2 * N as i64 * SIZE as i64;
    eprintln!("bidi: peak {peak} bytes held by the relay for {total} relayed");
    // At most one stream window each way (see the crate docs), against 13 MB relayed.
    assert!(peak <= 2 * i64::from(window), "peak {peak} bytes held for {total} relayed");
    assert_eq!(relay.config.stats.buffered.load(Ordering::Relaxed), 0);
}

/// An upstream (the raw `h2` crate) that resets every stream with an unusual code.
async fn start_resetting_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(sock).await else { return };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    respond.send_reset(h2::Reason::INADEQUATE_SECURITY);
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_reset_reaches_the_client() {
    let up = start_resetting_upstream().await;
    let relay = start_relay(up, ServerConfig::default(), UpstreamConfig::default()).await;
    let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}/test.Relay/Unary", relay.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (resp, _body) = client.send_request(req, false).unwrap();
        let err = resp.await.unwrap_err();
        assert_eq!(err.reason(), Some(h2::Reason::INADEQUATE_SECURITY), "{err}");
    }
}

#[tokio::test]
async fn unreachable_upstream_is_unavailable() {
    // A port nothing listens on.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let relay = start_relay(dead, ServerConfig::default(), UpstreamConfig::default()).await;
    let ch = channel(relay.addr).await;
    for _ in 0..3 {
        let status = unary(&ch, "/test.Relay/Unary", msg(1, 10)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "upstream connect failed");
    }
}

/// An upstream (the raw `h2` crate) answering OK to each call and shutting each connection
/// down gracefully (GOAWAY) after three calls.
async fn start_draining_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(sock).await else { return };
                let mut served = 0;
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let head = http::Response::builder().status(200).header("content-type", "application/grpc");
                    let Ok(mut body) = respond.send_response(head.body(()).unwrap(), false) else { continue };
                    let _ = body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), false);
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    let _ = body.send_trailers(trailers);
                    served += 1;
                    if served == 3 {
                        conn.graceful_shutdown();
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_goaway_drains_and_the_pool_reconnects() {
    let up = start_draining_upstream().await;
    let relay =
        start_relay(up, ServerConfig::default(), UpstreamConfig { connections: 1, ..UpstreamConfig::default() }).await;
    let ch = channel(relay.addr).await;
    for i in 0..10 {
        let resp = unary(&ch, "/test.Relay/Unary", msg(i, 10)).await.unwrap().into_inner();
        assert_eq!(resp, Msg::default());
    }
    assert!(relay.pool.connections_opened() >= 4, "{} connections", relay.pool.connections_opened());
}
