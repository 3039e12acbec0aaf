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
