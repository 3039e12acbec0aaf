//! Hostile clients on the downstream side, with hand-written frames; a well-behaved tonic
//! client keeps being served meanwhile.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::*;
use meshwork_h2relay::frame::{flags, kind};
use meshwork_h2relay::{Limits, RateLimit, Reason, ServerConfig, UpstreamConfig};

/// A tonic client calling through the relay in a loop until stopped.
struct GoodClient {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl GoodClient {
    async fn start(relay: &Relay) -> Self {
        let ch = channel(relay.addr).await;
        let (stop, ok) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, o) = (stop.clone(), ok.clone());
        let task = tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                match unary(&ch, "/test.Relay/Unary", msg(i, 200)).await {
                    Ok(r) if r.get_ref() == &msg(i, 200) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    other => errors.push(format!("{other:?}")),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            errors
        });
        GoodClient { stop, ok, task }
    }

    async fn finish(self) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.task.await.unwrap();
        assert!(errors.is_empty(), "the good client failed: {errors:?}");
        assert!(self.ok.load(Ordering::Relaxed) > 0);
    }
}

async fn setup(config: ServerConfig) -> (Relay, GoodClient) {
    let (up, _) = start_upstream().await;
    let relay = start_relay(up, config, UpstreamConfig::default()).await;
    let good = GoodClient::start(&relay).await;
    (relay, good)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_enhance_your_calm() {
    let limits = Limits { resets: RateLimit::new(20, Duration::from_secs(10)), ..Limits::default() };
    let (relay, good) = setup(ServerConfig { limits, ..ServerConfig::default() }).await;
    let mut bad = RawClient::connect(relay.addr).await;
    let mut out = BytesMut::new();
    for i in 0..100u32 {
        let sid = 2 * i + 1;
        let block = bad.request_block("/test.Relay/Hang");
        out.extend_from_slice(&RawClient::frame(kind::HEADERS, flags::END_HEADERS, sid, &block));
        out.extend_from_slice(&RawClient::frame(kind::RST_STREAM, 0, sid, &Reason::CANCEL.0.to_be_bytes()));
    }
    let _ = bad.send_raw(&out).await;
    assert_eq!(bad.until_goaway().await, Some(Reason::ENHANCE_YOUR_CALM));
    assert!(bad.closed().await);
    good.finish().await;
    // The attack did not break the upstream connections the good client shares with it.
    assert!(relay.pool.connections_opened() <= 2, "{} upstream connections opened", relay.pool.connections_opened());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_closed() {
    let (relay, good) = setup(ServerConfig::default()).await;
    let mut bad = RawClient::connect(relay.addr).await;
    let block = bad.request_block("/test.Relay/Unary");
    let mut out = RawClient::frame(kind::HEADERS, 0, 1, &block);
    for _ in 0..10_000 {
        out.extend_from_slice(&RawClient::frame(kind::CONTINUATION, 0, 1, &[0x40; 16]));
    }
    let _ = bad.send_raw(&out).await;
    assert_eq!(bad.until_goaway().await, Some(Reason::ENHANCE_YOUR_CALM));
    assert!(bad.closed().await);
    good.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_gets_frame_size_error() {
    let (relay, good) = setup(ServerConfig::default()).await;
    let mut bad = RawClient::connect(relay.addr).await;
    let block = bad.request_block("/test.Relay/Unary");
    let mut out = RawClient::frame(kind::HEADERS, flags::END_HEADERS, 1, &block);
    out.extend_from_slice(&RawClient::frame(kind::DATA, 0, 1, &vec![0; 16_385]));
    let _ = bad.send_raw(&out).await;
    assert_eq!(bad.until_goaway().await, Some(Reason::FRAME_SIZE_ERROR));
    assert!(bad.closed().await);
    good.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_preface_is_closed() {
    let (relay, good) = setup(ServerConfig::default()).await;
    let mut sock = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_to_end(&mut sock, &mut buf));
    assert!(read.await.is_ok(), "the relay closed the connection");
    good.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_settings_floods_get_enhance_your_calm() {
    let (relay, good) = setup(ServerConfig::default()).await;
    for kind in [kind::PING, kind::SETTINGS] {
        let mut bad = RawClient::connect(relay.addr).await;
        let mut out = BytesMut::new();
        for i in 0..1000u64 {
            let payload = if kind == kind::PING { i.to_be_bytes().to_vec() } else { Vec::new() };
            out.extend_from_slice(&RawClient::frame(kind, 0, 0, &payload));
        }
        let _ = bad.send_raw(&out).await;
        assert_eq!(bad.until_goaway().await, Some(Reason::ENHANCE_YOUR_CALM), "kind {kind}");
    }
    good.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_get_their_codes() {
    let (relay, good) = setup(ServerConfig::default()).await;
    // HPACK garbage: COMPRESSION_ERROR.
    let mut bad = RawClient::connect(relay.addr).await;
    let _ = bad
        .send_raw(&RawClient::frame(kind::HEADERS, flags::END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]))
        .await;
    assert_eq!(bad.until_goaway().await, Some(Reason::COMPRESSION_ERROR));
    // DATA beyond the stream window: RST_STREAM FLOW_CONTROL_ERROR on that stream, and the
    // connection goes on. (The upstream does not read `Hang`'s body; its own windows are
    // 1 MiB at most, the relay's 256 KiB: 4 MiB cannot fit.)
    let mut bad = RawClient::connect(relay.addr).await;
    let block = bad.request_block("/test.Relay/Hang");
    let mut out = RawClient::frame(kind::HEADERS, flags::END_HEADERS, 1, &block);
    for _ in 0..256 {
        out.extend_from_slice(&RawClient::frame(kind::DATA, 0, 1, &vec![0; 16_384]));
    }
    let _ = bad.send_raw(&out).await;
    assert_eq!(bad.until_rst(1).await, Reason::FLOW_CONTROL_ERROR);
    let _ = bad.send_raw(&RawClient::frame(kind::PING, 0, 0, &[7; 8])).await;
    // DATA on a stream never opened: PROTOCOL_ERROR.
    let _ = bad.send_raw(&RawClient::frame(kind::DATA, 0, 9, &[0; 10])).await;
    assert_eq!(bad.until_goaway().await, Some(Reason::PROTOCOL_ERROR));
    // A first frame other than SETTINGS: PROTOCOL_ERROR.
    let mut sock = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let mut out = BytesMut::new();
    out.put_slice(meshwork_h2relay::frame::PREFACE);
    out.extend_from_slice(&RawClient::frame(kind::PING, 0, 0, &[0; 8]));
    tokio::io::AsyncWriteExt::write_all(&mut sock, &out).await.unwrap();
    let mut raw = RawClient::from_sock(sock);
    assert_eq!(raw.until_goaway().await, Some(Reason::PROTOCOL_ERROR));
    good.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_busy_ones_are_not() {
    let config = ServerConfig { idle_timeout: Some(Duration::from_millis(300)), ..ServerConfig::default() };
    let (relay, good) = setup(config).await;
    let mut idle = RawClient::connect(relay.addr).await;
    let started = std::time::Instant::now();
    assert_eq!(idle.until_goaway().await, Some(Reason::NO_ERROR));
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    // The good client calls every few milliseconds on one connection for longer than that.
    tokio::time::sleep(Duration::from_millis(400)).await;
    good.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_errors_past_the_limit_get_enhance_your_calm() {
    let limits = Limits { error_resets: 5, ..Limits::default() };
    let (relay, good) = setup(ServerConfig { limits, ..ServerConfig::default() }).await;
    let mut bad = RawClient::connect(relay.addr).await;
    // HEADERS without :path: a malformed request, RST_STREAM(PROTOCOL_ERROR) each.
    let fields = [(bytes::Bytes::from_static(b":method"), bytes::Bytes::from_static(b"POST"))];
    let mut out = BytesMut::new();
    for i in 0..5u32 {
        let mut block = BytesMut::new();
        bad.encoder.encode(fields.iter().map(|(n, v)| (n, v)), &mut block);
        out.extend_from_slice(&RawClient::frame(
            kind::HEADERS,
            flags::END_HEADERS | flags::END_STREAM,
            1 + 2 * i,
            &block,
        ));
    }
    let _ = bad.send_raw(&out).await;
    assert_eq!(bad.until_rst(9).await, Reason::PROTOCOL_ERROR, "five are answered one by one");
    let mut block = BytesMut::new();
    bad.encoder.encode(fields.iter().map(|(n, v)| (n, v)), &mut block);
    let _ = bad.send_raw(&RawClient::frame(kind::HEADERS, flags::END_HEADERS | flags::END_STREAM, 11, &block)).await;
    assert_eq!(bad.until_goaway().await, Some(Reason::ENHANCE_YOUR_CALM), "the sixth ends the connection");
    good.finish().await;
}
