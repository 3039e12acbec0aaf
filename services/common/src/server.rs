//! The one server builder every service uses, so that all of them answer alike: gRPC health
//! (`grpc.health.v1`, one status per service plus the overall `""`), reflection v1 and v1alpha
//! (grpcurl 1.8 only speaks v1alpha), a panic in a handler becomes an INTERNAL status instead
//! of a dropped connection, a tracing span per call, h2 limits raised for multiplexed load, and
//! a graceful shutdown that marks the services NOT_SERVING, finishes in-flight calls, then runs
//! each service's own shutdown hook (flushing buffers). Optionally over TLS or mutual TLS
//! ([`serve_with_tls`]).

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use meshwork_identity::tls::TlsIdentity;
use meshwork_storage::DynStore;
use meshwork_telemetry::grpc::ServerTraceLayer;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic_health::ServingStatus;
use tower_http::catch_panic::CatchPanicLayer;

use crate::clock::Clock;

/// Largest request or response message a service accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How long a stopping server waits for in-flight calls and open connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Concurrent h2 streams allowed per client connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// What a service gets to run with.
#[derive(Clone)]
pub struct ServiceContext {
    /// The key-value store the service keeps its data in.
    pub store: DynStore,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
    /// Public base URL of the gateway (e.g. `http://127.0.0.1:8080`), for URLs handed out.
    pub public_url: String,
    /// Calls to other services, through the gateway, with the caller's trace and deadline.
    pub mesh: crate::mesh::MeshClient,
    /// Per-service tunables from the command line (`payments.failure_rate`...).
    pub settings: crate::settings::Settings,
}

/// A hook run once after the server stopped taking calls.
pub type ShutdownHook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// One service ready to be served: its gRPC routes and what to do on shutdown.
pub struct HostedService {
    /// Short name, as on the command line (`urlshortener`).
    pub name: &'static str,
    /// Fully qualified gRPC service names it answers (for health and routing).
    pub grpc_names: Vec<&'static str>,
    /// Adds the service's tonic services to the server's routes.
    pub register: Box<dyn FnOnce(Routes) -> Routes + Send>,
    /// Run after in-flight calls finished (flush buffers, stop background tasks).
    pub on_shutdown: Vec<ShutdownHook>,
}

impl HostedService {
    /// Starts a [`HostedServiceBuilder`] for the service called `name` (as on the command line).
    pub fn builder(name: &'static str) -> HostedServiceBuilder {
        HostedServiceBuilder {
            name,
            grpc_names: Vec::new(),
            register: Vec::new(),
            tasks: Vec::new(),
            hooks: Vec::new(),
        }
    }
}

/// Builds a [`HostedService`]: its tonic services (with the mesh's message limits), the
/// background tasks it owns (aborted when the server stops) and its shutdown hooks (run after
/// the tasks are stopped, in the order added).
pub struct HostedServiceBuilder {
    name: &'static str,
    grpc_names: Vec<&'static str>,
    register: Vec<Box<dyn FnOnce(Routes) -> Routes + Send>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    hooks: Vec<ShutdownHook>,
}

impl HostedServiceBuilder {
    /// Adds a generated tonic server, with [`MAX_MESSAGE_BYTES`] as its decoding and encoding
    /// limits; its name (`NamedService::NAME`) is reported to health checks.
    pub fn grpc<S>(mut self, server: S) -> Self
    where
        S: meshwork_proto::MessageLimits
            + tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let server = server.with_message_limits(MAX_MESSAGE_BYTES);
        self.grpc_names.push(S::NAME);
        self.register.push(Box::new(move |routes: Routes| routes.add_service(server)));
        self
    }

    /// Spawns `task` on the current runtime; it is aborted when the server stops, before the
    /// shutdown hooks run.
    pub fn task(mut self, task: impl Future<Output = ()> + Send + 'static) -> Self {
        self.tasks.push(tokio::spawn(task));
        self
    }

    /// Adds a hook run once after in-flight calls finished and the tasks were stopped (flush
    /// buffers, say goodbye).
    pub fn on_shutdown<F>(mut self, hook: impl FnOnce() -> F + Send + 'static) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.hooks.push(Box::new(move || Box::pin(hook())));
        self
    }

    /// Returns the service.
    pub fn build(self) -> HostedService {
        let tasks = self.tasks;
        let mut on_shutdown: Vec<ShutdownHook> = Vec::with_capacity(self.hooks.len() + 1);
        if !tasks.is_empty() {
            on_shutdown.push(Box::new(move || {
                Box::pin(async move {
                    for task in tasks {
                        task.abort();
                        let _ = task.await;
                    }
                })
            }));
        }
        on_shutdown.extend(self.hooks);
        let register = self.register;
        HostedService {
            name: self.name,
            grpc_names: self.grpc_names,
            register: Box::new(move |routes| register.into_iter().fold(routes, |routes, add| add(routes))),
            on_shutdown,
        }
    }
}

/// Errors of serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("building reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Returns the response sent when a handler panics: a trailers-only gRPC INTERNAL.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> http::Response<Full<Bytes>> {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(panic = %detail, "handler panicked");
    let mut response = http::Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", http::HeaderValue::from_static("13"));
    headers.insert("grpc-message", http::HeaderValue::from_static("internal%20error%20(handler%20panicked)"));
    response
}

/// Serves `services` on `listener` until `shutdown` resolves, then drains in-flight calls and
/// runs every shutdown hook.
pub async fn serve(
    listener: TcpListener,
    services: Vec<HostedService>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with_tls(listener, services, shutdown, None).await
}

/// [`serve`], over TLS when `tls` is given (ALPN h2; with a client CA, mutual TLS). The identity
/// is read and checked by the caller (e.g. the command line, with [`TlsIdentity::from_files`]),
/// so that bad files are reported before anything is bound. Handlers see the client's
/// certificates with `Request::peer_certs`.
pub async fn serve_with_tls(
    listener: TcpListener,
    services: Vec<HostedService>,
    shutdown: impl Future<Output = ()> + Send,
    tls: Option<TlsIdentity>,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(meshwork_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(meshwork_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let mut names = Vec::new();
    let mut labels = Vec::new();
    let mut hooks = Vec::new();
    let mut routes = Routes::default();
    for service in services {
        for name in &service.grpc_names {
            health.set_service_status(*name, ServingStatus::Serving).await;
            names.push(*name);
        }
        labels.push(service.name);
        hooks.extend(service.on_shutdown);
        routes = (service.register)(routes);
    }
    health.set_service_status("", ServingStatus::Serving).await;

    let addr = listener.local_addr().ok();
    tracing::info!(?addr, services = ?names, "serving");
    let drain_health = health.clone();
    let draining = Arc::new(tokio::sync::Notify::new());
    let drain_started = draining.clone();
    let signal = async move {
        shutdown.await;
        drain_started.notify_one();
        // Tell health checkers first, so balancers stop sending new calls.
        for name in &names {
            drain_health.set_service_status(*name, ServingStatus::NotServing).await;
        }
        drain_health.set_service_status("", ServingStatus::NotServing).await;
    };

    let label = labels.join(",");
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(tls.cert_pem(), tls.key_pem()));
        if let Some(ca) = tls.client_ca_pem() {
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        builder = builder.tls_config(config)?;
    }
    let server = builder
        // Outermost: a `meshwork-identity` header is kept only from a peer that can be the gateway
        // (loopback, or a verified client certificate), so no one else can claim an identity.
        .layer(crate::caller::TrustedIdentityLayer)
        .layer(ServerTraceLayer::new(&label))
        .layer(CatchPanicLayer::custom(panic_response))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_routes(routes.add_service(health_service).add_service(reflection_v1).add_service(reflection_v1alpha))
        .serve_with_incoming_shutdown(meshwork_telemetry::grpc::incoming(listener), signal);
    // In-flight calls get DRAIN_TIMEOUT to finish; a client that never closes its connection
    // must not hold the process (and the flush hooks below) forever.
    tokio::select! {
        result = server => result?,
        _ = async {
            draining.notified().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => tracing::warn!(?addr, timeout = ?DRAIN_TIMEOUT, "drain timed out; closing remaining connections"),
    }

    for hook in hooks {
        hook().await;
    }
    tracing::info!(?addr, "server stopped");
    Ok(())
}
