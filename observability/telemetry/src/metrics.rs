//! Prometheus metrics of every meshwork process, in one registry (the `prometheus` crate's
//! default one), rendered as text on the admin port's `/metrics`. The names here are the ones
//! the Grafana dashboard in `observability/dashboards/` queries (a test checks that).
//!
//! - `meshwork_grpc_server_requests_total{service,method,code}`: calls answered (RED: rate, errors)
//! - `meshwork_grpc_server_duration_seconds{service,method}`: call latency (RED: duration)
//! - `meshwork_storage_operation_duration_seconds{backend,operation}`: storage latency (defined
//!   by the storage crate's traced wrapper)
//! - `meshwork_storage_errors_total{backend,operation}`: storage failures (likewise)
//! - `meshwork_storage_conflicts_total{backend,prefix}`: writes refused by a conflict, by key prefix
//! - `meshwork_cache_requests_total{cache,result}`: cache lookups by `hit`, `negative_hit`, `miss`,
//!   and `bypass` (the cache's watch was down, so the lookup went to the store)
//! - `meshwork_event_consumer_lag{service,consumer}`: events of a service's event log that a
//!   consumer has not yet handled (head sequence minus the consumer's checkpoint)

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, RwLock};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, TextEncoder};

/// Latency buckets in seconds, 50 us to 10 s: the one set every latency histogram of the mesh
/// uses (gRPC servers, storage, the gateway), so that their quantiles compare.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Registers `metric` in the default registry and returns it. Registering twice can only happen
/// in tests that build the statics twice; the first stays.
pub fn registered<M: prometheus::core::Collector + Clone + 'static>(metric: M) -> M {
    let _ = prometheus::default_registry().register(Box::new(metric.clone()));
    metric
}

/// A registered counter family with `labels`.
pub fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable!("metric {name}: {e}")))
}

/// A registered counter without labels.
pub fn single_counter(name: &str, help: &str) -> IntCounter {
    registered(IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}")))
}

/// A registered gauge family with `labels`.
pub fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable!("metric {name}: {e}")))
}

/// A registered latency histogram family with `labels`, over [`LATENCY_BUCKETS`].
pub fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    registered(HistogramVec::new(opts, labels).unwrap_or_else(|e| unreachable!("metric {name}: {e}")))
}

/// gRPC calls answered by this process's services.
pub static GRPC_SERVER_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "meshwork_grpc_server_requests_total",
        "gRPC calls answered, by service, method and status code",
        &["service", "method", "code"],
    )
});

/// Latency of gRPC calls answered by this process's services.
pub static GRPC_SERVER_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram("meshwork_grpc_server_duration_seconds", "gRPC call latency at the service", &["service", "method"])
});

/// Cache lookups by outcome.
pub static CACHE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "meshwork_cache_requests_total",
        "cache lookups by cache and result (hit, negative_hit, miss, bypass while the cache's watch is down)",
        &["cache", "result"],
    )
});

/// Events of a service's event log not yet handled by a consumer (head - checkpoint).
pub static EVENT_CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "meshwork_event_consumer_lag",
        "events of a service's event log that a consumer has not handled yet (head sequence - checkpoint)",
        &["service", "consumer"],
    )
});

/// Returns the Prometheus text exposition of every registered metric.
pub fn render() -> String {
    // Touch the statics so that every family is present (with no samples) from the start.
    LazyLock::force(&GRPC_SERVER_REQUESTS);
    LazyLock::force(&GRPC_SERVER_DURATION);
    LazyLock::force(&CACHE_REQUESTS);
    LazyLock::force(&EVENT_CONSUMER_LAG);
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A renderer of metrics kept outside the registry (the gateway's lock-free counters).
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// Extra metric sources appended to `/metrics`; added once they exist (the gateway starts
/// after the admin port is bound).
#[derive(Default)]
pub struct ExtraMetrics(RwLock<Vec<MetricsSource>>);

impl ExtraMetrics {
    /// Adds a source.
    pub fn add(&self, source: MetricsSource) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).push(source);
    }

    fn render(&self) -> String {
        self.0.read().unwrap_or_else(|p| p.into_inner()).iter().map(|source| source()).collect()
    }
}

/// Returns the admin router: `/metrics` (the registry, then every extra source) and `/ready`.
pub fn admin_router(extra: Arc<ExtraMetrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || async move {
                let text = render() + &extra.render();
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
            }),
        )
        .route("/ready", get(|| async { "ready" }))
}

/// Serves the admin router on `listener` until `shutdown` resolves.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    extra: Arc<ExtraMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, admin_router(extra)).with_graceful_shutdown(shutdown).await
}

/// Binds the admin port (so a taken port fails before anything starts).
pub async fn bind_admin(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
