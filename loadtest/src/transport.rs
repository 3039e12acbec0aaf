//! Raw unary gRPC over h2: one `h2` client connection per `--connections`, shared by the
//! workers round-robin (a cloned `SendRequest` is a handle on the same connection). A call
//! is one HEADERS + one DATA frame out and headers, data and trailers in; the status comes
//! from `grpc-status` (trailers, or headers of a trailers-only answer) and, when a response
//! is not gRPC at all, from its HTTP status, so a gRPC error on HTTP 200 is still an error.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::Error;
use crate::status;

/// Opens an h2c connection to `addr` and spawns its driver.
pub async fn connect(addr: &str) -> Result<SendRequest<Bytes>, Error> {
    let connect_err = |reason: String| Error::Connect { addr: addr.to_string(), reason };
    let tcp = TcpStream::connect(addr).await.map_err(|e| connect_err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(1 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let peer = addr.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, addr = %peer, "h2 connection ended");
        }
    });
    Ok(sender)
}

/// One shared connection that workers reconnect after it fails.
pub struct Connection {
    addr: String,
    state: Mutex<(u64, SendRequest<Bytes>)>,
}

impl Connection {
    /// Connects to `addr`.
    pub async fn open(addr: &str) -> Result<Arc<Connection>, Error> {
        let sender = connect(addr).await?;
        Ok(Arc::new(Connection { addr: addr.to_string(), state: Mutex::new((0, sender)) }))
    }

    /// Returns the current handle and its generation.
    pub async fn handle(&self) -> (u64, SendRequest<Bytes>) {
        let state = self.state.lock().await;
        (state.0, state.1.clone())
    }

    /// Replaces the connection of generation `seen` with a new one (once, whichever worker
    /// gets here first) and returns the current handle.
    pub async fn reconnect(&self, seen: u64) -> Result<(u64, SendRequest<Bytes>), Error> {
        let mut state = self.state.lock().await;
        if state.0 == seen {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let sender = connect(&self.addr).await?;
            tracing::debug!(addr = %self.addr, generation = seen + 1, "reconnected");
            *state = (seen + 1, sender);
        }
        Ok((state.0, state.1.clone()))
    }
}

/// The fixed part of every request of one method: URI and headers.
#[derive(Debug, Clone)]
pub struct CallTarget {
    uri: Uri,
    headers: HeaderMap,
}

impl CallTarget {
    /// Prepares calls of `/<service>/<method>` on `authority` with `timeout` announced in
    /// `grpc-timeout` and the fixed metadata `extra`.
    pub fn new(
        authority: &str,
        service: &str,
        method: &str,
        timeout: Duration,
        extra: Option<&HeaderMap>,
    ) -> Result<CallTarget, Error> {
        let uri: Uri = format!("http://{authority}/{service}/{method}")
            .parse()
            .map_err(|e| Error::Config(format!("target {authority:?} /{service}/{method}: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        headers.insert(http::header::USER_AGENT, HeaderValue::from_static("meshwork-load/0.1"));
        let ms = timeout.as_millis().clamp(1, 99_999_999);
        if let Ok(v) = HeaderValue::from_str(&format!("{ms}m")) {
            headers.insert("grpc-timeout", v);
        }
        if let Some(extra) = extra {
            for (k, v) in extra {
                headers.append(k.clone(), v.clone());
            }
        }
        Ok(CallTarget { uri, headers })
    }

    /// Returns the request head, with per-request metadata `extra` added.
    pub fn request(&self, extra: Option<HeaderMap>) -> Request<()> {
        let mut req = Request::new(());
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        if let Some(extra) = extra {
            for (k, v) in extra {
                if let Some(k) = k {
                    req.headers_mut().append(k, v);
                }
            }
        }
        req
    }
}

/// How one call ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The gRPC status code.
    pub code: u8,
    /// `grpc-message` (or what went wrong), empty on success.
    pub message: String,
    /// The response messages, when asked for.
    pub body: Option<Bytes>,
}

impl Outcome {
    /// An outcome without a response.
    pub fn failed(code: u8, message: impl Into<String>) -> Outcome {
        Outcome { code, message: message.into(), body: None }
    }
}

/// Maps a stream or connection error to a status, as grpc-go would report it.
pub fn h2_failure(e: &h2::Error) -> Outcome {
    let code = match e.reason() {
        Some(h2::Reason::CANCEL) => status::CANCELED,
        Some(h2::Reason::REFUSED_STREAM) => status::UNAVAILABLE,
        Some(h2::Reason::NO_ERROR) | None if e.is_io() || e.is_go_away() => status::UNAVAILABLE,
        Some(_) => status::INTERNAL,
        None => status::UNAVAILABLE,
    };
    Outcome::failed(code, e.to_string())
}

fn grpc_status(headers: &HeaderMap) -> Option<(u8, String)> {
    let code = status::parse(headers.get("grpc-status")?.as_bytes());
    let message = headers.get("grpc-message").map(|m| status::decode_message(m.as_bytes())).unwrap_or_default();
    Some((code, message))
}

/// Sends one unary call on `sender` and waits for its status; `keep_body` keeps the response
/// messages (for a scenario's setup).
pub async fn unary(
    sender: &mut SendRequest<Bytes>,
    head: Request<()>,
    body: Bytes,
    keep_body: bool,
) -> Result<Outcome, h2::Error> {
    futures::future::poll_fn(|cx| sender.poll_ready(cx)).await?;
    let (response, mut stream) = sender.send_request(head, false)?;
    stream.send_data(body, true)?;
    let response = response.await?;
    let http_status = response.status();
    let (parts, mut recv) = response.into_parts();
    if let Some((code, message)) = grpc_status(&parts.headers) {
        // Trailers-only response.
        return Ok(Outcome { code, message, body: None });
    }
    let mut kept = keep_body.then(BytesMut::new);
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        if let Some(k) = kept.as_mut() {
            k.extend_from_slice(&chunk);
        }
    }
    let trailers = recv.trailers().await?;
    let (code, message) = match trailers.as_ref().and_then(grpc_status) {
        Some(s) => s,
        None if http_status != http::StatusCode::OK => (
            status::from_http(http_status.as_u16()),
            format!("unexpected HTTP status code received from server: {}", http_status.as_u16()),
        ),
        None => (status::INTERNAL, "server closed the stream without sending trailers".to_string()),
    };
    Ok(Outcome { code, message, body: kept.map(BytesMut::freeze) })
}

/// Returns the first message of a response body (a gRPC length-prefixed frame).
pub fn first_message(body: &Bytes) -> Option<Bytes> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    (body.len() >= 5 + len).then(|| body.slice(5..5 + len))
}
