//! The per-call observer and the relay's deadlines: real tonic client and upstream.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use meshwork_h2relay::{
    CallObserver, Outcome, Reject, RequestHead, Route, Router, ServerConfig, UpstreamConfig, UpstreamPool,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::Code;

struct Observer(mpsc::UnboundedSender<Outcome>);

impl CallObserver for Observer {
    fn on_end(self: Box<Self>, outcome: &Outcome) {
        let _ = self.0.send(*outcome);
    }
}

/// Routes everything to the pool with an observer; `/test.Relay/Hang` gets a 200 ms deadline.
struct Observed {
    pool: Arc<UpstreamPool>,
    tx: mpsc::UnboundedSender<Outcome>,
}

impl Router for Observed {
    fn route(&self, head: &RequestHead) -> Result<Route, Reject> {
        let mut route = Route::to(self.pool.clone());
        route.observer = Some(Box::new(Observer(self.tx.clone())));
        if head.path.starts_with(b"/test.Relay/Hang") {
            route.timeout = Some(Duration::from_millis(200));
        }
        Ok(route)
    }
}

async fn start(upstream: std::net::SocketAddr) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Outcome>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let router = Arc::new(Observed { pool: UpstreamPool::new(upstream, UpstreamConfig::default()), tx });
    let config = Arc::new(ServerConfig::default());
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            tokio::spawn(meshwork_h2relay::serve_connection(sock, config.clone(), router.clone()));
        }
    });
    (addr, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Outcome>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn observers_learn_each_calls_outcome() {
    let (up, _) = start_upstream().await;
    let (addr, mut rx) = start(up).await;
    let ch = channel(addr).await;

    unary(&ch, "/test.Relay/Unary", msg(1, 10)).await.unwrap();
    let o = next(&mut rx).await;
    assert_eq!((o.http_status, o.grpc_status, o.reset), (200, Some(0), None));
    assert!(!o.upstream_failed && !o.client_cancelled && !o.deadline_exceeded, "{o:?}");
    assert!(o.headers_after.is_some_and(|h| h <= o.elapsed), "{o:?}");

    let failing = Msg { fail_code: 14, ..msg(2, 0) };
    assert_eq!(unary(&ch, "/test.Relay/Unary", failing).await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(next(&mut rx).await.grpc_status, Some(14));

    // An upstream that is not there: the relay's own UNAVAILABLE, counted as the upstream's.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (addr, mut dead_rx) = start(dead).await;
    let status = unary(&channel(addr).await, "/test.Relay/Unary", msg(3, 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let o = next(&mut dead_rx).await;
    assert!(o.upstream_failed && o.grpc_status == Some(14), "{o:?}");
}

#[tokio::test]
async fn deadlines_cancel_upstream_and_answer_deadline_exceeded() {
    let (up, seen) = start_upstream().await;
    let (addr, mut rx) = start(up).await;
    let ch = channel(addr).await;

    let started = Instant::now();
    let status = unary(&ch, "/test.Relay/Hang", msg(1, 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let o = next(&mut rx).await;
    assert!(o.deadline_exceeded && o.grpc_status == Some(4), "{o:?}");
    // The upstream's handler was cancelled (RST_STREAM CANCEL reached it).
    let wait = seen.cancel_notify.notified();
    if seen.cancelled.load(Ordering::SeqCst) == 0 {
        tokio::time::timeout(Duration::from_secs(5), wait).await.unwrap();
    }
    // The connection goes on.
    unary(&ch, "/test.Relay/Unary", msg(2, 1)).await.unwrap();
    assert_eq!(next(&mut rx).await.grpc_status, Some(0));
}

#[tokio::test]
async fn shutdown_sends_goaway_and_lets_calls_finish() {
    let (up, _) = start_upstream().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let router = Arc::new(Observed { pool: UpstreamPool::new(up, UpstreamConfig::default()), tx });
    let config = Arc::new(ServerConfig::default());
    let (drain, drain_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let mut drain = drain_rx.clone();
            let shutdown = async move {
                let _ = drain.wait_for(|d| *d).await;
            };
            tokio::spawn(meshwork_h2relay::serve_connection_until(sock, config.clone(), router.clone(), shutdown));
        }
    });
    let ch = channel(addr).await;
    let mut idle = RawClient::connect(addr).await;
    let slow = Msg { delay_ms: 300, ..msg(1, 1) };
    let call = tokio::spawn(async move { unary(&ch, "/test.Relay/Unary", slow).await });
    // The call is routed (its observer exists) before the drain starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drain.send(true).unwrap();
    assert_eq!(idle.until_goaway().await, Some(meshwork_h2relay::Reason::NO_ERROR));
    assert!(idle.closed().await, "an idle connection closes after its GOAWAY");
    call.await.unwrap().expect("the call in flight finishes");
    assert_eq!(next(&mut rx).await.grpc_status, Some(0));
}

/// An h2 server that reads each request whole, then answers trailers-only UNAVAILABLE; counts
/// the request bytes it took.
async fn start_refusing_upstream() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = taken.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(sock).await else { return };
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    let counter = counter.clone();
                    tokio::spawn(async move {
                        let mut body = request.into_body();
                        while let Some(Ok(chunk)) = body.data().await {
                            counter.fetch_add(chunk.len(), Ordering::SeqCst);
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        let response = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .header("grpc-status", "14")
                            .header("grpc-message", "try another")
                            .body(())
                            .unwrap();
                        let _ = respond.send_response(response, true);
                    });
                }
            });
        }
    });
    (addr, taken)
}

/// Routes to `first`; a failed attempt goes to `then` (once), with a header saying so.
struct Retrying {
    first: Arc<UpstreamPool>,
    then: Arc<UpstreamPool>,
    tx: mpsc::UnboundedSender<Outcome>,
    failures: mpsc::UnboundedSender<meshwork_h2relay::AttemptFailure>,
    caps: (u32, u32),
}

struct RetryOnce {
    then: Option<Arc<UpstreamPool>>,
    tx: mpsc::UnboundedSender<Outcome>,
    failures: mpsc::UnboundedSender<meshwork_h2relay::AttemptFailure>,
}

impl CallObserver for RetryOnce {
    fn on_end(self: Box<Self>, outcome: &Outcome) {
        let _ = self.tx.send(*outcome);
    }

    fn retry(&mut self, failure: meshwork_h2relay::AttemptFailure) -> Option<meshwork_h2relay::Retry> {
        let _ = self.failures.send(failure);
        let upstream = self.then.take()?;
        Some(meshwork_h2relay::Retry {
            upstream,
            set_headers: vec![(bytes::Bytes::from_static(b"x-relayed"), bytes::Bytes::from_static(b"retried"))],
        })
    }
}

impl Router for Retrying {
    fn route(&self, _head: &RequestHead) -> Result<Route, Reject> {
        let mut route = Route::to(self.first.clone());
        route.observer = Some(Box::new(RetryOnce {
            then: Some(self.then.clone()),
            tx: self.tx.clone(),
            failures: self.failures.clone(),
        }));
        route.retry_buffer = 1 << 20;
        (route.max_request_message, route.max_response_message) = self.caps;
        Ok(route)
    }
}

struct RetryRelay {
    addr: std::net::SocketAddr,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    failures: mpsc::UnboundedReceiver<meshwork_h2relay::AttemptFailure>,
    config: Arc<ServerConfig>,
}

async fn start_retrying(first: std::net::SocketAddr, then: std::net::SocketAddr, caps: (u32, u32)) -> RetryRelay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, outcomes) = mpsc::unbounded_channel();
    let (failures_tx, failures) = mpsc::unbounded_channel();
    let router = Arc::new(Retrying {
        first: UpstreamPool::new(first, UpstreamConfig::default()),
        then: UpstreamPool::new(then, UpstreamConfig::default()),
        tx,
        failures: failures_tx,
        caps,
    });
    let config = Arc::new(ServerConfig::default());
    let cfg = config.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            tokio::spawn(meshwork_h2relay::serve_connection(sock, cfg.clone(), router.clone()));
        }
    });
    RetryRelay { addr, outcomes, failures, config }
}

/// A request the first upstream took whole (its window given back to the client) and answered
/// UNAVAILABLE is sent again from the retry buffer to the second; the client sees one answer,
/// and the relay holds no bytes afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_replayed_on_another_upstream() {
    let (refusing, taken) = start_refusing_upstream().await;
    let (good, seen) = start_upstream().await;
    let mut relay = start_retrying(refusing, good, (u32::MAX, u32::MAX)).await;
    let ch = channel(relay.addr).await;

    // Larger than the stream window: the first upstream credits part of it back mid-request.
    let big = msg(7, 600_000);
    let answer = unary(&ch, "/test.Relay/Unary", big.clone()).await.unwrap().into_inner();
    assert_eq!(answer, big, "the second upstream's echo");
    assert!(taken.load(Ordering::SeqCst) > 600_000, "the first upstream took the whole request");
    assert_eq!(relay.failures.recv().await, Some(meshwork_h2relay::AttemptFailure::Unavailable));
    let o = next(&mut relay.outcomes).await;
    assert_eq!((o.grpc_status, o.attempts, o.upstream_failed), (Some(0), 2, false), "{o:?}");
    assert_eq!(seen.relayed_header.lock().unwrap().as_deref(), Some("retried"));

    // A client stream, retried the same way, arrives whole and in order.
    let input = futures::stream::iter((0..40).map(|i| msg(i, 10_000)));
    let mut out = streaming(&ch, "/test.Relay/ClientStream", input).await.unwrap().into_inner();
    let summary = out.next().await.unwrap().unwrap();
    assert_eq!((summary.seq, summary.count, summary.fail_code), (40, 400_000, 0));
    assert_eq!(next(&mut relay.outcomes).await.attempts, 2);

    // The connection goes on, and nothing is held.
    assert_eq!(unary(&ch, "/test.Relay/Unary", msg(8, 10)).await.unwrap().into_inner(), msg(8, 10));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(relay.config.stats.buffered.load(Ordering::SeqCst), 0);
}

/// A dead first upstream (connect refused) is a failure that never reached it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_failure_is_retried_as_not_sent() {
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (good, _) = start_upstream().await;
    let mut relay = start_retrying(dead, good, (u32::MAX, u32::MAX)).await;
    let ch = channel(relay.addr).await;
    assert_eq!(unary(&ch, "/test.Relay/Unary", msg(1, 100)).await.unwrap().into_inner(), msg(1, 100));
    assert_eq!(relay.failures.recv().await, Some(meshwork_h2relay::AttemptFailure::NotSent));
    assert_eq!(next(&mut relay.outcomes).await.attempts, 2);
}

/// Messages over the caps end the call with RESOURCE_EXHAUSTED, either way, cancel it
/// upstream, and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_caps_are_resource_exhausted() {
    let (good, _) = start_upstream().await;
    // Requests up to 4000 bytes, answers up to 1000.
    let mut relay = start_retrying(good, good, (4000, 1000)).await;
    let ch = channel(relay.addr).await;
    let status = unary(&ch, "/test.Relay/Unary", msg(1, 5000)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("request message of"), "{status:?}");
    assert_eq!(next(&mut relay.outcomes).await.grpc_status, Some(8));

    // The echo of a 2000-byte request is over the answer cap.
    let status = unary(&ch, "/test.Relay/Unary", msg(2, 2000)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("response message of"), "{status:?}");
    assert_eq!(next(&mut relay.outcomes).await.grpc_status, Some(8));

    // Under both caps, on the same connection.
    assert_eq!(unary(&ch, "/test.Relay/Unary", msg(3, 500)).await.unwrap().into_inner(), msg(3, 500));
    assert_eq!(next(&mut relay.outcomes).await.grpc_status, Some(0));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(relay.config.stats.buffered.load(Ordering::SeqCst), 0);
}
