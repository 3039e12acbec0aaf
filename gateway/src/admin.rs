//! The admin HTTP port (`admin_listen`): `GET /metrics` (Prometheus text), `GET /ready` (200
//! while serving, 503 once draining) and `GET /routes` (the live routing table as JSON, with
//! every replica's state). A deliberately small HTTP/1.1 server: one request per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::routing::Router;

/// What the admin port reads.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub metrics: Arc<Metrics>,
    pub router: Arc<Router>,
    pub pools: Vec<Arc<Pool>>,
    pub draining: Arc<AtomicBool>,
}

/// Serves the admin port until `stop` flips.
pub(crate) async fn serve(listener: TcpListener, state: AdminState, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((stream, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, &state).await {
                        tracing::debug!(error = %e, "admin request failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(mut stream: TcpStream, state: &AdminState) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_read = tokio::time::timeout(Duration::from_secs(5), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(head_read, Ok(Ok(()))) {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", state.metrics.render(&state.pools)),
        ("GET", "/ready") if state.draining.load(Ordering::Relaxed) => (503, "text/plain", "draining\n".into()),
        ("GET", "/ready") => (200, "text/plain", "ready\n".into()),
        ("GET", "/routes") => (200, "application/json", routes_json(state)),
        ("GET", _) => (404, "text/plain", "not found: try /metrics, /ready or /routes\n".into()),
        _ => (405, "text/plain", "method not allowed\n".into()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The routing table: every route with its pool, policy and replicas' live state.
fn routes_json(state: &AdminState) -> String {
    let mut routes: Vec<_> = state.router.routes().collect();
    routes.sort_by(|a, b| (&a.service, a.headers().len()).cmp(&(&b.service, b.headers().len())));
    let routes: Vec<serde_json::Value> = routes
        .into_iter()
        .map(|route| {
            let pool = &route.pool;
            let replicas: Vec<serde_json::Value> = pool
                .members()
                .replicas()
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "address": r.addr().to_string(),
                        "weight": r.weight(),
                        "healthy": r.is_healthy(),
                        "ejected": r.is_ejected_now(),
                        "inflight": r.inflight(),
                        // Measured only under policy peak_ewma.
                        "latency_ewma_ms": r.ewma_seconds() * 1e3,
                    })
                })
                .collect();
            let headers: serde_json::Map<String, serde_json::Value> = route
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned().into()))
                .collect();
            let splits: Vec<serde_json::Value> = route
                .shares()
                .into_iter()
                .map(|(p, share)| serde_json::json!({ "pool": p.name(), "percent": share }))
                .collect();
            serde_json::json!({
                "service": route.service,
                "headers": headers,
                "splits": splits,
                "pool": pool.name(),
                "policy": pool.settings().policy.as_str(),
                "idempotent_methods": route.idempotent_methods(),
                "timeout_ms": route.timeout.map(|t| t.as_millis() as u64),
                "replicas": replicas,
            })
        })
        .collect();
    let mut text = serde_json::json!({ "routes": routes }).to_string();
    text.push('\n');
    text
}
