//! Starting and stopping the gateway: [`spawn`] runs the Pingora server on its own threads and
//! returns a [`GatewayHandle`] once the port accepts connections; [`GatewayHandle::shutdown`]
//! drains (stops accepting, sends HTTP/2 GOAWAY, lets in-flight calls finish up to the grace
//! period) and returns when everything stopped; [`run`] does both around SIGINT/SIGTERM.
//!
//! Pingora's own shutdown waits a fixed grace period and owns the process signals. Here the
//! proxy service is wrapped so that its shutdown watch is ours: draining starts when we say, we
//! count in-flight requests and stop as soon as they are done, then tell Pingora (through a
//! [`ShutdownSignalWatch`] of ours, never a process signal) to tear its runtimes down.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use meshwork_clock::{Clock, SystemClock};
use pingora_core::apps::HttpServerOptions;
use pingora_core::protocols::http::v2::server::default_h2_options;
use pingora_core::server::configuration::Opt;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{
    ExecutionPhase, ListenFds, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch,
};
use pingora_core::services::listening::Service;
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};
use tokio::sync::watch;

use crate::GatewayError;
use crate::admin::AdminState;
use crate::config::{BUILTIN_SERVICES, ConfigError, GatewayConfig, PoolConfig};
use crate::guard::{GuardSettings, Guarded};
use crate::http_routes::upstream::Upstream;
use crate::http_routes::{Descriptors, HttpRoutes, RouteTable};
use crate::internal::{CheckSettings, Internal, MeshView};
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::pool::{OutlierSettings, PoolSettings};
use crate::proxy::{GatewayProxy, ProxySettings, RateLimit};
use crate::routing::{Pool, Route, Router};
use crate::tls::{TlsMaterial, install_crypto_provider};

/// HTTP/2 flow-control window per stream, downstream and upstream.
pub(crate) const H2_STREAM_WINDOW: u32 = 1 << 20;
/// HTTP/2 flow-control window per connection, downstream and upstream.
pub(crate) const H2_CONNECTION_WINDOW: u32 = 8 << 20;

/// How long [`spawn`] waits for the first read of the registry.
const REGISTRY_START_WAIT: Duration = Duration::from_secs(3);

/// How long [`spawn`] waits for the listener to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running gateway. Dropping it stops the gateway without waiting for in-flight calls.
pub struct GatewayHandle {
    listen: SocketAddr,
    internal_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    draining: Arc<AtomicBool>,
    grace: Duration,
    inflight: Arc<AtomicUsize>,
    drain: watch::Sender<bool>,
    stop: watch::Sender<Stop>,
    /// Pingora's execution phases, to know when a hand-over has sent the listening socket.
    phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    server_thread: Option<JoinHandle<()>>,
    internal: Option<Internal>,
    runtime: InternalRuntime,
    metrics: Arc<Metrics>,
    pools: Vec<Arc<Pool>>,
}

/// The gateway's internal runtime; dropping it never blocks (so that it may happen inside
/// another runtime, where dropping a `Runtime` panics).
struct InternalRuntime(Option<tokio::runtime::Runtime>);

impl InternalRuntime {
    fn get(&self) -> Option<&tokio::runtime::Runtime> {
        self.0.as_ref()
    }
}

impl Drop for InternalRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for GatewayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHandle")
            .field("listen", &self.listen)
            .field("internal_addr", &self.internal_addr)
            .field("inflight", &self.inflight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl GatewayHandle {
    /// The address the gateway listens on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The address of the gateway's internal gRPC server (reflection and health).
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    /// The address of the admin HTTP port, when `admin_listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Returns a function that renders the gateway's Prometheus metrics (what the admin port's
    /// `/metrics` serves), for a process that exposes them on its own admin port.
    pub fn metrics_renderer(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let (metrics, pools) = (self.metrics.clone(), self.pools.clone());
        move || metrics.render(&pools)
    }

    /// Requests being processed right now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Drains and stops: stops accepting, tells HTTP/2 clients GOAWAY, waits until in-flight calls
    /// finish or the grace period ends, then stops the proxy and the internal server. Returns
    /// when everything has stopped.
    pub fn shutdown(mut self) -> Result<(), GatewayError> {
        self.stop_all(true)
    }

    /// Hands the listening socket over to a new gateway process started with `take_over`
    /// (`meshwork gateway --upgrade`) on the same upgrade socket, then drains and stops like
    /// [`GatewayHandle::shutdown`]: Pingora's graceful upgrade. The socket never closes, so no
    /// connection attempt is refused during the upgrade; this process's connections get GOAWAY
    /// and their in-flight calls finish here (Pingora tears this process down 5 s after the
    /// hand-over, so calls longer than that are cut).
    pub fn hand_over(mut self) -> Result<(), GatewayError> {
        let _ = self.stop.send(Stop::Upgrade);
        // Draining closes this process's listener: only after the socket has been sent.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.phases.try_recv() {
                Ok(ExecutionPhase::GracefulUpgradeCloseTimeout)
                | Ok(ExecutionPhase::ShutdownStarted)
                | Ok(ExecutionPhase::ShutdownGracePeriod)
                | Ok(ExecutionPhase::ShutdownRuntimes)
                | Ok(ExecutionPhase::Terminated)
                | Err(tokio::sync::broadcast::error::TryRecvError::Closed) => break,
                Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                    if Instant::now() > deadline {
                        tracing::warn!("no hand-over of the listening socket within 15 s; draining anyway");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        tracing::info!(listen = %self.listen, "listening socket handed over; draining");
        self.stop_all(true)
    }

    fn stop_all(&mut self, drain: bool) -> Result<(), GatewayError> {
        let Some(server_thread) = self.server_thread.take() else { return Ok(()) };
        let started = Instant::now();
        self.draining.store(true, Ordering::Relaxed);
        if let (Some(internal), Some(runtime)) = (&self.internal, self.runtime.get()) {
            let reporter = internal.reporter();
            on_runtime(runtime, async move { Internal::set_draining(&reporter).await });
        }
        let _ = self.drain.send(true);
        if drain {
            let deadline = started + self.grace;
            while self.inflight() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let left = self.inflight();
            if left > 0 {
                tracing::warn!(
                    in_flight = left,
                    grace_seconds = self.grace.as_secs(),
                    "grace period over, cutting calls"
                );
            }
        }
        let _ = self.stop.send(Stop::Terminate);
        let joined = server_thread.join();
        if let (Some(internal), Some(runtime)) = (self.internal.take(), self.runtime.get()) {
            on_runtime(runtime, internal.stop());
        }
        drop(std::mem::replace(&mut self.runtime, InternalRuntime(None)));
        tracing::info!(listen = %self.listen, elapsed_ms = started.elapsed().as_millis() as u64, "gateway stopped");
        joined.map_err(|_| GatewayError::Stopped("the gateway server thread panicked".into()))
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop_all(false) {
            tracing::error!(error = %e, "gateway stop failed");
        }
    }
}

/// What the handle asks of Pingora's main loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Run,
    Terminate,
    /// Send the listening sockets to the new process, then stop.
    Upgrade,
}

/// Tells Pingora to stop (or to hand over and stop) when our stop flag says so, instead of on a
/// process signal.
struct StopSignal(watch::Receiver<Stop>);

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        // An Err means the handle is gone: stop as well.
        match rx.wait_for(|stop| *stop != Stop::Run).await.map(|s| *s) {
            Ok(Stop::Upgrade) => ShutdownSignal::GracefulUpgrade,
            _ => ShutdownSignal::GracefulTerminate,
        }
    }
}

/// Wraps the proxy service so that its listeners and connections watch our drain flag instead
/// of Pingora's shutdown broadcast.
struct Drainable<S> {
    inner: S,
    drain: ShutdownWatch,
}

#[async_trait]
impl<S: ServiceWithDependents> ServiceWithDependents for Drainable<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        _shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        self.inner.start_service(fds, self.drain.clone(), listeners_per_fd, ready_notifier).await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

/// The relay's downstream settings for the fast path: the gateway's stream and header limits.
fn fast_path_server_config(config: &GatewayConfig) -> meshwork_h2relay::ServerConfig {
    meshwork_h2relay::ServerConfig {
        max_concurrent_streams: config.max_concurrent_streams,
        max_header_list_size: config.max_header_list_bytes,
        // The proxy path's windows, so that both paths let a client send as far ahead.
        initial_stream_window: H2_STREAM_WINDOW,
        connection_window: H2_CONNECTION_WINDOW,
        idle_timeout: Some(Duration::from_millis(config.h2_idle_timeout_ms)),
        limits: meshwork_h2relay::Limits {
            error_resets: config.max_error_reset_streams,
            ..meshwork_h2relay::Limits::default()
        },
        ..meshwork_h2relay::ServerConfig::default()
    }
}

/// The runtime settings of a configured pool: its `[pools.NAME.outlier]` and
/// `[pools.NAME.retry_budget]` merged over `[outlier]` and `[retry_budget]`.
fn pool_settings(config: &GatewayConfig, pool: &PoolConfig) -> PoolSettings {
    let outlier = pool.outlier.over(&config.outlier);
    let retry_budget = pool.retry_budget.over(&config.retry_budget);
    PoolSettings {
        policy: pool.policy,
        hash_key: pool.hash_key.as_deref().and_then(|k| http::HeaderName::from_bytes(k.as_bytes()).ok()),
        max_inflight_per_replica: pool.max_inflight_per_replica,
        slow_start: Duration::from_millis(pool.slow_start_ms),
        outlier: OutlierSettings {
            consecutive_failures: outlier.consecutive_failures,
            base_ejection: Duration::from_millis(outlier.base_ejection_ms),
            max_ejection: Duration::from_millis(outlier.max_ejection_ms),
            max_ejection_percent: outlier.max_ejection_percent,
        },
        retry_budget_percent: retry_budget.percent,
        retry_min_per_second: retry_budget.min_per_second,
    }
}

/// The health checks of a configured pool: its `[pools.NAME.health_check]` merged over
/// `[health_check]`.
fn check_settings(config: &GatewayConfig, pool: &PoolConfig) -> CheckSettings {
    let health_check = pool.health_check.over(&config.health_check);
    CheckSettings {
        interval: Duration::from_millis(health_check.interval_ms),
        connect_timeout: Duration::from_millis(config.connect_timeout_ms),
        timeout: Duration::from_millis(health_check.timeout_ms),
        healthy_threshold: health_check.healthy_threshold,
        unhealthy_threshold: health_check.unhealthy_threshold,
    }
}

/// Resolves every pool's endpoints (the first address of each `host:port`) and gives each pool
/// its upstream TLS (if any), which remembers the configured host of every address, and `clock`.
fn resolve_pools(
    config: &GatewayConfig,
    tls: &TlsMaterial,
    clock: &Arc<dyn Clock>,
) -> Result<BTreeMap<String, Arc<Pool>>, GatewayError> {
    let mut pools = BTreeMap::new();
    for (name, pool) in &config.pools {
        let mut replicas = Vec::with_capacity(pool.endpoints.len());
        let mut hosts = HashMap::new();
        for endpoint in &pool.endpoints {
            let address = endpoint.address();
            let addr = address
                .to_socket_addrs()
                .map_err(|e| e.to_string())
                .and_then(|mut addrs| addrs.next().ok_or_else(|| "no address".to_string()))
                .map_err(|reason| GatewayError::Resolve {
                    pool: name.clone(),
                    endpoint: address.to_string(),
                    reason,
                })?;
            replicas.push((addr, endpoint.weight()));
            if let Some((host, _)) = address.rsplit_once(':') {
                hosts.insert(addr, host.to_string());
            }
        }
        let pool_tls = tls.pools.get(name).map(|t| t.with_hosts(hosts));
        let pool =
            Pool::with_clock(name.clone(), replicas, pool_settings(config, pool), clock.clone()).with_tls(pool_tls);
        pools.insert(name.clone(), Arc::new(pool));
    }
    Ok(pools)
}

/// Starts the gateway and returns once its port accepts connections.
///
/// Blocks the calling thread while starting (normally well under a second). It may be called
/// from inside a tokio runtime, but then blocks that worker thread; prefer `spawn_blocking`.
///
/// Fails (with nothing left running) when the configuration is invalid, an endpoint does not
/// resolve, or the port cannot be bound.
pub fn spawn(config: GatewayConfig) -> Result<GatewayHandle, GatewayError> {
    spawn_with_clock(config, Arc::new(SystemClock))
}

/// [`spawn`] with the time source of the pools (ejection, slow start, peak-EWMA decay, retry
/// budgets) and the rate limiter: tests give a `meshwork_clock::ManualClock` and move the
/// time by hand. Timeouts and deadlines of calls and health checks keep real time.
pub fn spawn_with_clock(config: GatewayConfig, clock: Arc<dyn Clock>) -> Result<GatewayHandle, GatewayError> {
    config.validate()?;
    install_crypto_provider();
    let tls = TlsMaterial::load(&config)?;
    let pools = resolve_pools(&config, &tls, &clock)?;
    let listen = config.listen;
    // Bind once ourselves so that "address in use" is a clean error rather than a failure inside
    // Pingora's service thread (unless the socket is to be taken over: it is in use, by design).
    if !config.take_over {
        drop(std::net::TcpListener::bind(listen).map_err(|source| GatewayError::Bind { addr: listen, source })?);
    }

    let runtime = InternalRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("meshwork-gw-internal")
            .enable_all()
            .build()
            .map_err(|e| GatewayError::Start(format!("internal runtime: {e}")))?,
    ));
    let Some(rt) = runtime.get() else {
        return Err(GatewayError::Start("internal runtime missing".into()));
    };
    let internal_listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|source| GatewayError::Bind { addr: SocketAddr::from(([127, 0, 0, 1], 0)), source })?;
    let internal_addr =
        internal_listener.local_addr().map_err(|e| GatewayError::Start(format!("internal listener: {e}")))?;
    let internal_pool = Arc::new(Pool::with_clock(
        "gateway-internal",
        vec![(internal_addr, 1)],
        PoolSettings::default(),
        clock.clone(),
    ));

    let mut router = Router::new();
    let mut route_services = Vec::new();
    for route in &config.routes {
        let pool = pools
            .get(&route.pool)
            .ok_or_else(|| GatewayError::Start(format!("route to unknown pool {}", route.pool)))?;
        let mut splits = Vec::with_capacity(route.splits.len());
        for split in &route.splits {
            let other = pools
                .get(&split.pool)
                .ok_or_else(|| GatewayError::Start(format!("route splits to unknown pool {}", split.pool)))?;
            splits.push((other.clone(), split.weight));
        }
        // Validated: names and values are valid metadata.
        let headers = route
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((http::HeaderName::from_bytes(k.as_bytes()).ok()?, http::HeaderValue::from_str(v).ok()?))
            })
            .collect();
        router.insert(
            Route::new(route.service.clone(), pool.clone())
                .with_splits(route.weight, splits)
                .with_headers(headers)
                .with_idempotent(&route.idempotent_methods)
                .with_timeout(route.timeout_ms.map(Duration::from_millis))
                // Without [auth] every caller is anonymous, and welcome (crate::authn::admits).
                .with_allow_anonymous(route.allow_anonymous || config.auth.is_none()),
        );
        if route.headers.is_empty() && !route.service.contains('/') {
            route_services.push((route.service.clone(), pool.clone()));
        }
    }
    for name in BUILTIN_SERVICES {
        router.insert(Route::new(*name, internal_pool.clone()));
    }
    let router = Arc::new(router);
    let descriptors =
        Descriptors::load(&config.descriptor_sets).map_err(|e| GatewayError::Config(ConfigError::Invalid(e)))?;
    let route_table =
        RouteTable::compile(&config, &descriptors).map_err(|e| GatewayError::Config(ConfigError::Invalid(e)))?;
    let mut view = MeshView::new(&router, &descriptors.services(), &route_services);
    view.descriptor_sets = descriptors.encoded().to_vec();
    let all_pools: Vec<Arc<Pool>> = pools.values().cloned().collect();
    let checked = config
        .pools
        .iter()
        .filter_map(|(name, pool)| Some((pools.get(name)?.clone(), check_settings(&config, pool))))
        .collect();
    let internal = on_runtime(rt, Internal::start(internal_listener, view, checked))
        .ok_or_else(|| GatewayError::Start("the internal runtime stopped".into()))??;
    let connect_timeout = Duration::from_millis(config.connect_timeout_ms);

    let metrics = Arc::new(Metrics::default());
    let http_routes = (!route_table.is_empty()).then(|| {
        let upstream = Upstream::new(
            rt.handle().clone(),
            connect_timeout,
            config.max_request_message_bytes as usize,
            config.max_response_message_bytes as usize,
            metrics.clone(),
        );
        Arc::new(HttpRoutes::new(
            route_table,
            router.clone(),
            upstream,
            metrics.clone(),
            config.propagate_unsampled,
            config.max_request_message_bytes as usize,
        ))
    });
    let draining = Arc::new(AtomicBool::new(false));
    let admin_addr = match config.admin_listen {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr).map_err(|source| GatewayError::Bind { addr, source })?;
            let bound = listener.local_addr().map_err(|e| GatewayError::Start(format!("admin listener: {e}")))?;
            listener.set_nonblocking(true).map_err(|e| GatewayError::Start(format!("admin listener: {e}")))?;
            let state = AdminState {
                metrics: metrics.clone(),
                router: router.clone(),
                pools: all_pools.clone(),
                draining: draining.clone(),
            };
            let stop = internal.stop_watch();
            let _guard = rt.enter();
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| GatewayError::Start(format!("admin listener: {e}")))?;
            rt.spawn(crate::admin::serve(listener, state, stop));
            Some(bound)
        }
        None => None,
    };

    if let Some(registry) = &config.registry {
        let url = &registry.url;
        let fixed = pools
            .iter()
            .map(|(name, pool)| {
                let members = pool.members();
                (name.clone(), members.replicas().iter().map(|r| (r.addr(), r.weight())).collect())
            })
            .collect();
        let watched = crate::registry::Watched { pools: pools.clone(), fixed };
        let (ready, mut ready_rx) = watch::channel(false);
        rt.spawn(crate::registry::watch(url.clone(), registry.prefix.clone(), watched, ready, internal.stop_watch()));
        // Start with the registered replicas when the registry answers quickly; otherwise start
        // with the static endpoints and let the watch catch up.
        let synced = on_runtime(rt, async move {
            tokio::time::timeout(REGISTRY_START_WAIT, ready_rx.wait_for(|r| *r)).await.is_ok()
        });
        if synced != Some(true) {
            tracing::warn!(registry = %url, "registry not read yet; starting with the static endpoints");
        }
    }

    let rate_limit = config.rate_limit.as_ref().map(|limit| {
        Arc::new(RateLimit {
            limiter: RateLimiter::new(limit.requests_per_second, limit.burst.unwrap_or(limit.requests_per_second))
                .with_clock(clock.clone()),
            key: limit.key.as_deref().and_then(|k| http::HeaderName::from_bytes(k.as_bytes()).ok()),
        })
    });
    let inflight = Arc::new(AtomicUsize::new(0));
    let authn = config.auth.as_ref().map(crate::authn::Authn::load).transpose()?.map(Arc::new);
    let fast_path = config.fast_path.then(|| {
        let server = fast_path_server_config(&config);
        let _ = metrics.fast_path.set(server.stats.clone());
        Arc::new(crate::fastpath::Shared::new(
            router.clone(),
            metrics.clone(),
            rate_limit.clone(),
            authn.clone(),
            clock.clone(),
            inflight.clone(),
            server,
            meshwork_h2relay::UpstreamConfig {
                connections: config.threads.max(2),
                connect_timeout,
                ..meshwork_h2relay::UpstreamConfig::default()
            },
            crate::fastpath::Settings {
                propagate_unsampled: config.propagate_unsampled,
                max_request_message_bytes: config.max_request_message_bytes,
                max_response_message_bytes: config.max_response_message_bytes,
            },
            all_pools.clone(),
        ))
    });
    let proxy = GatewayProxy::new(
        router,
        http_routes,
        inflight.clone(),
        ProxySettings {
            connect_timeout,
            upstream_max_h2_streams: config.upstream_max_h2_streams,
            max_request_message_bytes: config.max_request_message_bytes,
            max_response_message_bytes: config.max_response_message_bytes,
            propagate_unsampled: config.propagate_unsampled,
        },
        metrics.clone(),
        rate_limit,
        config.cors.as_ref().map(crate::grpc_web::Cors::new),
    )
    .with_authn(authn, clock.clone());

    let conf = ServerConf {
        threads: config.threads,
        // Draining is ours (see the module docs); Pingora only tears down once we are done.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: config.upgrade_sock_path().to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = Opt { upgrade: config.take_over, ..Opt::default() };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    let mut server_options = HttpServerOptions::default();
    server_options.h2c = true;
    // Half-open connections and clients that trickle a frame hold no call: they are closed
    // once idle this long (the preface itself is timed by the head guard).
    server_options.h2_idle_timeout = Some(Duration::from_millis(config.h2_idle_timeout_ms));
    let mut app = pingora_proxy::http_proxy(&server.configuration, proxy);
    app.server_options = Some(server_options);
    // Pingora's defaults keep the header-list cap; raise the stream limit and the windows.
    // Bigger windows also matter for h2 0.4.20's small-DATA-frame budget (half the
    // connection window by default): every unary gRPC request is one small DATA frame, and
    // with the 64 KiB default ~130 concurrent calls on one connection end it with GOAWAY
    // ENHANCE_YOUR_CALM "too_many_data_frames". The limits on hostile clients are h2's own:
    // the header list (also what HEADERS + CONTINUATION may buffer), streams reset before
    // they are taken up (rapid reset) and streams reset for protocol errors, each ending the
    // connection with GOAWAY past its bound.
    let mut h2 = default_h2_options();
    h2.max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(config.max_header_list_bytes)
        .max_pending_accept_reset_streams(config.max_pending_reset_streams as usize)
        .max_local_error_reset_streams(Some(config.max_error_reset_streams as usize))
        .initial_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .data_frame_budget(H2_CONNECTION_WINDOW as usize / 2);
    app.h2_options = Some(h2);
    let guard = GuardSettings {
        header_timeout: Duration::from_millis(config.header_read_timeout_ms),
        max_head_bytes: config.max_header_list_bytes as usize,
    };
    let mut service = Service::new(
        "meshwork-gateway".to_string(),
        Guarded::new(crate::fastpath::FastPath::new(app, fast_path), guard),
    );
    match &tls.listener {
        Some(listener_tls) => {
            let settings = listener_tls.settings().map_err(|e| GatewayError::Start(format!("TLS listener: {e}")))?;
            service.add_tls_with_settings(&listen.to_string(), None, settings);
        }
        None => service.add_tcp(&listen.to_string()),
    }
    let (drain, drain_rx) = watch::channel(false);
    server.add_service(Drainable { inner: service, drain: drain_rx });

    if config.take_over {
        // Receives the running gateway's listening socket (it sends it on SIGQUIT; Pingora
        // waits about 5 s for it and ends the process when none comes).
        tracing::info!(sock = %config.upgrade_sock_path().display(), "waiting for the running gateway's socket");
        server.bootstrap();
    }
    let phases = server.watch_execution_phase();
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let server_thread = std::thread::Builder::new()
        .name("meshwork-gateway".into())
        .spawn(move || server.run(RunArgs { shutdown_signal: Box::new(StopSignal(stop_rx)) }))
        .map_err(|e| GatewayError::Start(format!("cannot start the gateway thread: {e}")))?;

    let mut handle = GatewayHandle {
        listen,
        internal_addr,
        admin_addr,
        draining,
        grace: Duration::from_secs(config.grace_period_seconds),
        inflight,
        drain,
        stop,
        phases,
        server_thread: Some(server_thread),
        internal: Some(internal),
        runtime,
        metrics,
        pools: all_pools,
    };
    if let Err(e) = wait_until_listening(&handle, tls.listener.is_some()) {
        let _ = handle.stop_all(false);
        return Err(e);
    }
    tracing::info!(
        %listen,
        tls = tls.listener.is_some(),
        threads = config.threads,
        routes = config.routes.len(),
        "gateway listening"
    );
    Ok(handle)
}

/// Runs `fut` on `runtime` and blocks the calling thread until it finishes (`None` if the task
/// died). Unlike `Runtime::block_on` this also works from inside another tokio runtime, so
/// `spawn` and `shutdown` may be called from async code (they block that worker thread briefly).
fn on_runtime<F>(runtime: &tokio::runtime::Runtime, fut: F) -> Option<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().ok()
}

/// Waits until the gateway's port accepts connections. A TLS listener is not probed with a
/// connection (Pingora would log every probe as a failed handshake at ERROR level); on Linux the
/// kernel's socket table says when the port listens.
fn wait_until_listening(handle: &GatewayHandle, tls: bool) -> Result<(), GatewayError> {
    let socket_table = tls && std::path::Path::new("/proc/net/tcp").exists();
    let mut probe = handle.listen;
    if probe.ip().is_unspecified() {
        probe.set_ip(match probe {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let started = Instant::now();
    loop {
        let listening = if socket_table {
            port_listening(probe.port())
        } else {
            TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()
        };
        if listening {
            return Ok(());
        }
        if handle.server_thread.as_ref().is_none_or(|t| t.is_finished()) {
            return Err(GatewayError::Start("the gateway server stopped while starting".into()));
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(GatewayError::Start(format!(
                "{} did not accept connections within {START_TIMEOUT:?}",
                handle.listen
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a socket listens on TCP `port` (`/proc/net/tcp` and `tcp6`, state 0A = LISTEN). The
/// port was free when `spawn` started, so a listener there is the gateway's.
fn port_listening(port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|table| {
            table.lines().skip(1).any(|line| {
                // sl local_address rem_address st ...
                let mut fields = line.split_whitespace().skip(1);
                let local = fields.next().unwrap_or("");
                let state = fields.nth(1).unwrap_or("");
                local.ends_with(&suffix) && state == "0A"
            })
        })
    })
}

/// Runs the gateway until SIGINT or SIGTERM, then drains and returns.
pub fn run(config: GatewayConfig) -> Result<(), GatewayError> {
    let handle = spawn(config)?;
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| GatewayError::Start(format!("signal runtime: {e}")))?;
    let signal = signals.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok::<_, std::io::Error>(tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        })
    });
    match signal {
        Ok(name) => tracing::info!(signal = name, "shutting down the gateway"),
        Err(e) => tracing::error!(error = %e, "cannot watch signals; shutting down the gateway"),
    }
    handle.shutdown()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool's own tables win field by field; what it leaves out comes from the global tables.
    #[test]
    fn pools_are_built_with_their_tables_merged_over_the_global_ones() {
        let config = GatewayConfig::from_toml_str(
            "listen = \"127.0.0.1:8080\"\nconnect_timeout_ms = 300\n\
             [health_check]\ninterval_ms = 500\nunhealthy_threshold = 4\n\
             [retry_budget]\npercent = 30\n\
             [outlier]\nmax_ejection_ms = 60000\n\
             [pools.own]\nendpoints = [\"127.0.0.1:1\"]\n\
             [pools.own.health_check]\ninterval_ms = 100\nhealthy_threshold = 2\n\
             [pools.own.retry_budget]\nmin_per_second = 1\n\
             [pools.own.outlier]\nconsecutive_failures = 0\n\
             [pools.inherits]\nendpoints = [\"127.0.0.1:2\"]\n",
        )
        .unwrap();
        config.validate().unwrap();
        let (own, inherits) = (&config.pools["own"], &config.pools["inherits"]);

        let checks = check_settings(&config, own);
        assert_eq!(
            (checks.interval, checks.timeout, checks.connect_timeout),
            (Duration::from_millis(100), Duration::from_millis(1000), Duration::from_millis(300))
        );
        assert_eq!((checks.unhealthy_threshold, checks.healthy_threshold), (4, 2));
        let checks = check_settings(&config, inherits);
        assert_eq!(
            (checks.interval, checks.unhealthy_threshold, checks.healthy_threshold),
            (Duration::from_millis(500), 4, 1)
        );

        let settings = pool_settings(&config, own);
        assert_eq!((settings.retry_budget_percent, settings.retry_min_per_second), (30, 1));
        assert_eq!(settings.outlier.consecutive_failures, 0);
        assert_eq!(settings.outlier.max_ejection, Duration::from_secs(60));
        assert_eq!(settings.outlier.base_ejection, Duration::from_secs(5));
        let settings = pool_settings(&config, inherits);
        assert_eq!((settings.retry_budget_percent, settings.retry_min_per_second), (30, 10));
        assert_eq!(
            (settings.outlier.consecutive_failures, settings.outlier.max_ejection),
            (5, Duration::from_secs(60))
        );
    }
}
