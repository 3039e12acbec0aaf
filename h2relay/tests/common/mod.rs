//! What the relay's tests share: a real tonic gRPC upstream with a small test service, the
//! relay itself on a loopback port, tonic clients, and a hand-written HTTP/2 client for
//! hostile input.

#![allow(dead_code)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use meshwork_h2relay::frame::{self, Frame};
use meshwork_h2relay::hpack::Encoder;
use meshwork_h2relay::{Reject, RequestHead, Route, Router, ServerConfig, UpstreamConfig, UpstreamPool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tonic::codegen::http;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};

/// The test service's one message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    /// ServerStream: how many messages to answer with.
    #[prost(uint32, tag = "3")]
    pub count: u32,
    /// Unary: fail with this gRPC code (and `payload` as the message).
    #[prost(uint32, tag = "4")]
    pub fail_code: u32,
    /// Unary: wait this long first.
    #[prost(uint32, tag = "5")]
    pub delay_ms: u32,
}

pub fn msg(seq: u64, payload_len: usize) -> Msg {
    Msg { payload: vec![(seq % 251) as u8; payload_len], seq, ..Msg::default() }
}

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// What the upstream saw.
#[derive(Default)]
pub struct Seen {
    /// Client addresses of calls (one per upstream connection of the relay).
    pub peers: Mutex<HashSet<SocketAddr>>,
    /// The `x-relayed` header of the last call.
    pub relayed_header: Mutex<Option<String>>,
    /// Calls of `Hang` whose handler was dropped (the client's cancel reached the upstream).
    pub cancelled: AtomicU64,
    pub cancel_notify: Notify,
}

struct OnDrop(Arc<Seen>);
impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        self.0.cancel_notify.notify_waiters();
    }
}

/// The test service: `/test.Relay/{Unary,ServerStream,ClientStream,Bidi,Hang}`.
#[derive(Clone)]
pub struct TestService {
    pub seen: Arc<Seen>,
}

impl NamedService for TestService {
    const NAME: &'static str = "test.Relay";
}

fn one(m: Msg) -> MsgStream {
    Box::pin(futures::stream::once(async move { Ok(m) }))
}

impl TestService {
    async fn handle(
        seen: Arc<Seen>,
        path: String,
        req: Request<Streaming<Msg>>,
    ) -> Result<Response<MsgStream>, Status> {
        if let Some(addr) = req.remote_addr() {
            seen.peers.lock().unwrap().insert(addr);
        }
        *seen.relayed_header.lock().unwrap() =
            req.metadata().get("x-relayed").map(|v| v.to_str().unwrap_or_default().to_string());
        let mut input = req.into_inner();
        match path.as_str() {
            "/test.Relay/Unary" => {
                let m = input.next().await.ok_or_else(|| Status::invalid_argument("no message"))??;
                if m.delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(u64::from(m.delay_ms))).await;
                }
                if m.fail_code != 0 {
                    let mut status =
                        Status::new(Code::from_i32(m.fail_code as i32), String::from_utf8_lossy(&m.payload));
                    status.metadata_mut().insert("x-trailer", "kept".parse().unwrap());
                    return Err(status);
                }
                Ok(Response::new(one(m)))
            }
            "/test.Relay/ServerStream" => {
                let m = input.next().await.ok_or_else(|| Status::invalid_argument("no message"))??;
                let out = futures::stream::iter((0..m.count).map(move |i| Ok(msg(u64::from(i), m.payload.len()))));
                Ok(Response::new(Box::pin(out)))
            }
            "/test.Relay/ClientStream" => {
                let (mut n, mut bytes, mut in_order) = (0u64, 0usize, true);
                while let Some(m) = input.next().await {
                    let m = m?;
                    in_order &= m.seq == n;
                    n += 1;
                    bytes += m.payload.len();
                }
                Ok(Response::new(one(Msg {
                    seq: n,
                    count: bytes as u32,
                    fail_code: u32::from(!in_order),
                    ..Msg::default()
                })))
            }
            "/test.Relay/Bidi" => Ok(Response::new(Box::pin(input.map(|m| m.map(|m| Msg { delay_ms: 0, ..m }))))),
            "/test.Relay/Hang" => {
                let _guard = OnDrop(seen.clone());
                tokio::time::sleep(Duration::from_secs(60)).await;
                Err(Status::deadline_exceeded("hung"))
            }
            _ => Err(Status::unimplemented(path)),
        }
    }
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for TestService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let seen = self.seen.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let svc = tower::service_fn(move |r: Request<Streaming<Msg>>| Self::handle(seen.clone(), path.clone(), r));
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Msg, Msg>::default())
                .apply_max_message_size_config(Some(8 << 20), Some(8 << 20));
            Ok(grpc.streaming(svc, req).await)
        })
    }
}

/// A tonic server of [`TestService`] on a loopback port.
pub async fn start_upstream() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let svc = TestService { seen: seen.clone() };
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (addr, seen)
}

/// Routes `/test.Relay/*` to the pool, answers `Reject*` methods itself.
pub struct TestRouter {
    pub pool: Arc<UpstreamPool>,
}

impl Router for TestRouter {
    fn route(&self, head: &RequestHead) -> Result<Route, Reject> {
        if head.path.starts_with(b"/test.Relay/Reject") {
            return Err(Reject { grpc_status: 14, message: "no route: 100% closed".into() });
        }
        let mut route = Route::to(self.pool.clone());
        route.add_headers.push((Bytes::from_static(b"x-relayed"), Bytes::from_static(b"yes")));
        Ok(route)
    }
}

/// The relay on a loopback port.
pub struct Relay {
    pub addr: SocketAddr,
    pub config: Arc<ServerConfig>,
    pub pool: Arc<UpstreamPool>,
}

pub async fn start_relay(upstream: SocketAddr, config: ServerConfig, up: UpstreamConfig) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Arc::new(config);
    let pool = UpstreamPool::new(upstream, up);
    let router = Arc::new(TestRouter { pool: pool.clone() });
    let cfg = config.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let _ = sock.set_nodelay(true);
            tokio::spawn(meshwork_h2relay::serve_connection(sock, cfg.clone(), router.clone()));
        }
    });
    Relay { addr, config, pool }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

pub fn codec() -> tonic_prost::ProstCodec<Msg, Msg> {
    tonic_prost::ProstCodec::default()
}

pub async fn unary(ch: &Channel, path: &'static str, m: Msg) -> Result<Response<Msg>, Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone()).max_decoding_message_size(8 << 20);
    grpc.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
    grpc.unary(Request::new(m), PathAndQuery::from_static(path), codec()).await
}

pub async fn streaming<S>(ch: &Channel, path: &'static str, input: S) -> Result<Response<Streaming<Msg>>, Status>
where
    S: Stream<Item = Msg> + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(ch.clone()).max_decoding_message_size(8 << 20);
    grpc.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
    grpc.streaming(Request::new(input), PathAndQuery::from_static(path), codec()).await
}

/// A hand-written HTTP/2 client: frames in, frames out, nothing checked.
pub struct RawClient {
    pub sock: TcpStream,
    rbuf: BytesMut,
    pub encoder: Encoder,
}

impl RawClient {
    /// Connects and sends the preface and an empty SETTINGS.
    pub async fn connect(addr: SocketAddr) -> Self {
        let mut c = RawClient {
            sock: TcpStream::connect(addr).await.unwrap(),
            rbuf: BytesMut::new(),
            encoder: Encoder::default(),
        };
        let mut out = BytesMut::new();
        out.put_slice(frame::PREFACE);
        frame::put_header(&mut out, 0, frame::kind::SETTINGS, 0, 0);
        c.sock.write_all(&out).await.unwrap();
        c
    }

    /// Wraps a socket that has sent whatever the test wanted.
    pub fn from_sock(sock: TcpStream) -> Self {
        RawClient { sock, rbuf: BytesMut::new(), encoder: Encoder::default() }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sock.write_all(bytes).await
    }

    pub fn frame(kind: u8, flags: u8, sid: u32, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        frame::put_header(&mut out, payload.len(), kind, flags, sid);
        out.put_slice(payload);
        out
    }

    /// A request header block for `path`.
    pub fn request_block(&mut self, path: &'static str) -> Bytes {
        let fields: Vec<(Bytes, Bytes)> = vec![
            (Bytes::from_static(b":method"), Bytes::from_static(b"POST")),
            (Bytes::from_static(b":scheme"), Bytes::from_static(b"http")),
            (Bytes::from_static(b":path"), Bytes::from_static(path.as_bytes())),
            (Bytes::from_static(b":authority"), Bytes::from_static(b"localhost")),
            (Bytes::from_static(b"content-type"), Bytes::from_static(b"application/grpc")),
            (Bytes::from_static(b"te"), Bytes::from_static(b"trailers")),
        ];
        let mut block = BytesMut::new();
        self.encoder.encode(fields.iter().map(|(n, v)| (n, v)), &mut block);
        block.freeze()
    }

    /// Reads frames until GOAWAY (its code) or the connection closes (`None`), within 5 s.
    pub async fn until_goaway(&mut self) -> Option<meshwork_h2relay::Reason> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            while let Ok(Some(f)) = frame::decode(&mut self.rbuf, 1 << 24) {
                if let Frame::GoAway { reason, .. } = f {
                    return Some(reason);
                }
            }
            let mut buf = [0u8; 16384];
            match tokio::time::timeout_at(deadline, self.sock.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.rbuf.extend_from_slice(&buf[..n]),
                Err(_) => panic!("no GOAWAY nor close within 5 s"),
            }
        }
    }

    /// Reads frames until RST_STREAM on `sid` (its code), within 5 s.
    pub async fn until_rst(&mut self, sid: u32) -> meshwork_h2relay::Reason {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            while let Ok(Some(f)) = frame::decode(&mut self.rbuf, 1 << 24) {
                match f {
                    Frame::RstStream { stream_id, reason } if stream_id == sid => return reason,
                    Frame::GoAway { reason, .. } => panic!("GOAWAY {reason:?} instead of RST_STREAM"),
                    _ => {}
                }
            }
            let mut buf = [0u8; 16384];
            match tokio::time::timeout_at(deadline, self.sock.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.rbuf.extend_from_slice(&buf[..n]),
                Ok(_) => panic!("closed without RST_STREAM"),
                Err(_) => panic!("no RST_STREAM within 5 s"),
            }
        }
    }

    /// Whether the server closes the connection (after whatever it sends) within 5 s.
    pub async fn closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 16384];
        loop {
            match tokio::time::timeout_at(deadline, self.sock.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}
