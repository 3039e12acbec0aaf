//! The embedded trace backend that `meshwork up` (and `meshwork traces`) starts, so traces work
//! with nothing installed: an OTLP receiver (gRPC on 4317, HTTP on 4318), a trace store bounded
//! by span count and age (in memory, kept in the embedded store when one is given so that
//! traces survive a restart), the Jaeger query API (v1 and v3) and a built-in web page on 16686.

#![forbid(unsafe_code)]

pub mod api;
pub mod jaeger;
pub mod otlp;
pub mod persist;
pub mod store;
pub mod tls;
mod web;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use meshwork_storage::DynStore;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use store::{StoreLimits, TraceQuery, TraceStore};

/// Where the collector listens and how much it keeps.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// OTLP/gRPC receiver (Jaeger's and the OTel Collector's default port is 4317).
    pub otlp_grpc: SocketAddr,
    /// OTLP/HTTP receiver, `POST /v1/traces` (default port 4318).
    pub otlp_http: SocketAddr,
    /// Jaeger query API and the web page (default port 16686).
    pub query: SocketAddr,
    pub limits: StoreLimits,
    /// TLS for both OTLP receivers (the query API stays plain HTTP).
    pub tls: Option<meshwork_identity::tls::TlsIdentity>,
    /// More gRPC services on the OTLP/gRPC port (`meshwork up` adds the log store's OTLP
    /// LogsService there).
    pub extra_grpc: Option<tonic::service::Routes>,
    /// More routes on the OTLP/HTTP port (`POST /v1/logs`).
    pub extra_http: Option<Router>,
}

impl CollectorConfig {
    /// Returns the default ports on `host`.
    pub fn on_host(host: std::net::IpAddr) -> Self {
        CollectorConfig {
            otlp_grpc: SocketAddr::new(host, 4317),
            otlp_http: SocketAddr::new(host, 4318),
            query: SocketAddr::new(host, 16686),
            limits: StoreLimits::default(),
            tls: None,
            extra_grpc: None,
            extra_http: None,
        }
    }
}

/// Errors of starting the collector.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { addr: SocketAddr, what: &'static str, source: std::io::Error },
    #[error("loading stored traces: {0}")]
    Load(meshwork_storage::StoreError),
    #[error("OTLP receiver TLS: {0}")]
    Tls(String),
}

/// A running collector.
pub struct Collector {
    pub store: Arc<TraceStore>,
    /// Bound addresses (the configured ones, with real ports when 0 was asked).
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub query: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    sink: Arc<otlp::Sink>,
    /// The persistent copy's writer and the store it writes to.
    writer: Option<(JoinHandle<()>, DynStore)>,
}

pub(crate) fn store_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, CollectorError> {
    TcpListener::bind(addr).await.map_err(|source| CollectorError::Bind { addr, what, source })
}

/// Returns the query API and web page router over `store`.
pub fn query_router(store: Arc<TraceStore>) -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/api/services", get(api::v1_services))
        .route("/api/services/{service}/operations", get(api::v1_service_operations))
        .route("/api/operations", get(api::v1_operations))
        .route("/api/traces", get(api::v1_search))
        .route("/api/traces/{id}", get(api::v1_trace_by_id))
        .route("/api/dependencies", get(api::v1_dependencies))
        .route("/api/v3/services", get(api::v3_services))
        .route("/api/v3/operations", get(api::v3_operations))
        .route("/api/v3/traces", get(api::v3_search))
        .route("/api/v3/traces/{id}", get(api::v3_trace_by_id))
        .route("/api/v3/trace-summaries", get(api::v3_summaries))
        .with_state(store)
}

impl Collector {
    /// Binds every port (failing before anything runs when one is taken) and starts serving.
    /// With `persist`, traces are also kept in that store and loaded from it at start.
    pub async fn start(config: CollectorConfig, persist: Option<DynStore>) -> Result<Collector, CollectorError> {
        // TLS settings are checked before anything is bound or loaded.
        let mut grpc_server = tonic::transport::Server::builder();
        let http_tls = match &config.tls {
            Some(tls) => {
                grpc_server =
                    grpc_server.tls_config(tls::tonic_config(tls)).map_err(|e| CollectorError::Tls(e.to_string()))?;
                Some(tls::rustls_config(tls).map_err(CollectorError::Tls)?)
            }
            None => None,
        };
        let grpc_listener = bind(config.otlp_grpc, "OTLP/gRPC").await?;
        let http_listener = bind(config.otlp_http, "OTLP/HTTP").await?;
        let query_listener = bind(config.query, "trace query API").await?;
        let (otlp_grpc, otlp_http, query) = (
            grpc_listener.local_addr().unwrap_or(config.otlp_grpc),
            http_listener.local_addr().unwrap_or(config.otlp_http),
            query_listener.local_addr().unwrap_or(config.query),
        );
        let store = Arc::new(TraceStore::new(config.limits));
        let (persister, writer) = match persist {
            Some(backing) => {
                let loaded = persist::load(&backing, &store).await.map_err(CollectorError::Load)?;
                tracing::info!(spans = loaded.spans, "traces loaded from the store");
                let (persister, writer) = persist::spawn(backing.clone(), config.limits.max_age, loaded.next_segment);
                persister.delete(loaded.dead);
                (Some(persister), Some((writer, backing)))
            }
            None => (None, None),
        };
        let sink = Arc::new(otlp::Sink { traces: store.clone(), persister });
        let (stop, stopped) = watch::channel(false);
        let until_stopped = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };

        let receiver = otlp::OtlpGrpc { sink: sink.clone() };
        let grpc_stop = until_stopped();
        let grpc_router = match config.extra_grpc {
            Some(routes) => grpc_server.add_routes(routes).add_service(receiver),
            None => grpc_server.add_service(receiver),
        };
        let grpc = tokio::spawn(async move {
            let incoming = meshwork_telemetry::grpc::incoming(grpc_listener);
            if let Err(e) = grpc_router.serve_with_incoming_shutdown(incoming, grpc_stop).await {
                tracing::error!(error = %e, "OTLP/gRPC receiver stopped");
            }
        });

        let mut http_app = Router::new()
            .route("/v1/traces", post(otlp::http_export))
            .layer(axum::extract::DefaultBodyLimit::max(otlp::MAX_EXPORT_BYTES))
            .with_state(sink.clone());
        if let Some(extra) = config.extra_http {
            http_app = http_app.merge(extra);
        }
        let http =
            match http_tls {
                Some(config) => {
                    let listener = tls::TlsListener::new(http_listener, config)
                        .map_err(|source| CollectorError::Bind { addr: otlp_http, what: "OTLP/HTTP", source })?;
                    spawn_http(listener, http_app, until_stopped(), "OTLP/HTTP receiver")
                }
                None => spawn_http(http_listener, http_app, until_stopped(), "OTLP/HTTP receiver"),
            };
        let query_task = spawn_http(query_listener, query_router(store.clone()), until_stopped(), "trace query API");
        tracing::info!(%otlp_grpc, %otlp_http, %query, "trace collector ready");
        Ok(Collector { store, otlp_grpc, otlp_http, query, stop, tasks: vec![grpc, http, query_task], sink, writer })
    }

    /// Returns how many spans the persistent copy dropped because its queue was full.
    pub fn persist_dropped(&self) -> u64 {
        self.sink.persister.as_ref().map_or(0, |p| p.dropped())
    }

    /// Stops every listener, then lets the persistent writer finish what it has queued and
    /// flushes the store it wrote to.
    pub async fn shutdown(self) -> Result<(), meshwork_storage::StoreError> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        drop(self.sink);
        if let Some((writer, backing)) = self.writer {
            let _ = writer.await;
            backing.flush().await?;
        }
        Ok(())
    }
}

/// Serves `app` on `listener` until `stop`, logging an error that ends it as `what`'s.
fn spawn_http<L>(
    listener: L,
    app: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    what: &'static str,
) -> JoinHandle<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "{what} stopped");
        }
    })
}
