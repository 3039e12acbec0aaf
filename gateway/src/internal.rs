//! The gateway's own gRPC services for the whole mesh: reflection (v1 and v1alpha) and health.
//!
//! They run in a small tonic server on `127.0.0.1:<ephemeral>` inside the gateway's internal
//! runtime; the proxy routes `grpc.reflection.*` and `grpc.health.v1.Health` there like any other
//! pool. Reflection lists exactly the routed services (plus health and reflection) and describes
//! them from the configuration's `descriptor_sets`. Health reports a service SERVING while its
//! pool has at least one healthy replica; the overall status `""` is SERVING while the gateway
//! runs and NOT_SERVING once it drains.
//!
//! The same task checks every replica of every pool each interval (`grpc.health.v1.Health/Check`
//! of service `""`, SERVING or UNIMPLEMENTED passes) and marks a replica unhealthy after
//! `unhealthy_threshold` failed checks in a row, healthy again after `healthy_threshold` passes;
//! replica selection avoids unhealthy replicas. It reads each pool's current membership every
//! round, so replicas added by the registry are checked too. A pool with `[pools.NAME.tls]` is
//! checked over the same TLS (and client certificate) as its calls.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Server};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

use crate::GatewayError;
use crate::config::BUILTIN_SERVICES;
use crate::routing::{Pool, Router};
use crate::tls::replica_endpoint;

/// What the internal server serves: the services reflection lists, and which pool decides the
/// health of which service name.
#[derive(Debug, Default)]
pub(crate) struct MeshView {
    /// Routed services that reflection lists and describes.
    pub listed: Vec<String>,
    /// The encoded descriptor sets that describe them.
    pub descriptor_sets: Vec<Bytes>,
    /// Service name -> the pool whose replicas serve it.
    pub health: BTreeMap<String, Arc<Pool>>,
}

impl MeshView {
    /// Which described services are routed (to a non-internal pool), and which names get a
    /// health status: those, plus routes that name a service (last segment capitalised) directly.
    pub fn new(router: &Router, described: &[String], route_services: &[(String, Arc<Pool>)]) -> Self {
        let mut view = MeshView::default();
        let no_headers = http::HeaderMap::new();
        for name in described {
            if let Some(route) = router.lookup(name, "", &no_headers)
                && !BUILTIN_SERVICES.contains(&name.as_str())
            {
                view.listed.push(name.clone());
                view.health.insert(name.clone(), route.pool.clone());
            }
        }
        for (service, pool) in route_services {
            let last = service.rsplit('.').next().unwrap_or("");
            if last.starts_with(|c: char| c.is_ascii_uppercase()) {
                view.health.entry(service.clone()).or_insert_with(|| pool.clone());
            }
        }
        view.listed.sort();
        view.listed.dedup();
        view
    }
}

/// The running internal server and health checker.
pub(crate) struct Internal {
    reporter: HealthReporter,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Replica health checking settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CheckSettings {
    pub interval: Duration,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

fn reflection_builder<'a>(listed: &[String], sets: &'a [Bytes]) -> tonic_reflection::server::Builder<'a> {
    let mut builder = tonic_reflection::server::Builder::configure();
    for set in sets {
        builder = builder.register_encoded_file_descriptor_set(set);
    }
    let mut builder = builder
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
    for name in listed.iter().map(String::as_str).chain(BUILTIN_SERVICES.iter().copied()) {
        builder = builder.with_service_name(name);
    }
    builder
}

impl Internal {
    /// Starts the internal server on `listener` and the health checker. Must run inside the
    /// internal runtime. The first round of health checks completes before this returns.
    pub async fn start(
        listener: std::net::TcpListener,
        view: MeshView,
        pools: Vec<Arc<Pool>>,
        settings: CheckSettings,
    ) -> Result<Internal, GatewayError> {
        let addr = listener.local_addr().map_err(|e| GatewayError::Start(format!("internal listener: {e}")))?;
        listener.set_nonblocking(true).map_err(|e| GatewayError::Start(format!("internal listener: {e}")))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| GatewayError::Start(format!("internal listener: {e}")))?;

        let reflection_v1 = reflection_builder(&view.listed, &view.descriptor_sets)
            .build_v1()
            .map_err(|e| GatewayError::Start(format!("reflection v1: {e}")))?;
        let reflection_v1alpha = reflection_builder(&view.listed, &view.descriptor_sets)
            .build_v1alpha()
            .map_err(|e| GatewayError::Start(format!("reflection v1alpha: {e}")))?;
        let (reporter, health_server) = tonic_health::server::health_reporter();
        for name in BUILTIN_SERVICES {
            reporter.set_service_status(name, ServingStatus::Serving).await;
        }

        let (stop, stop_rx) = watch::channel(false);
        let mut server_stop = stop_rx.clone();
        let server = Server::builder()
            .add_service(health_server)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async move {
                let _ = server_stop.wait_for(|stopped| *stopped).await;
            });
        let server_task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "gateway internal gRPC server failed");
            }
        });

        let mut checker = HealthChecker::new(&view.health, pools, settings);
        checker.round(&reporter).await;
        let checker_reporter = reporter.clone();
        let mut checker_stop = stop_rx;
        let checker_task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(settings.interval) => {}
                    _ = checker_stop.wait_for(|stopped| *stopped) => break,
                }
                checker.round(&checker_reporter).await;
            }
        });

        tracing::debug!(%addr, services = ?view.listed, "gateway internal gRPC server started");
        Ok(Internal { reporter, stop, tasks: vec![server_task, checker_task] })
    }

    /// A watch that flips to true when the internal server stops (for companion tasks).
    pub fn stop_watch(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// The health reporter (to change statuses from elsewhere).
    pub fn reporter(&self) -> HealthReporter {
        self.reporter.clone()
    }

    /// Marks the gateway as draining: overall health `""` becomes NOT_SERVING.
    pub async fn set_draining(reporter: &HealthReporter) {
        reporter.set_service_status("", ServingStatus::NotServing).await;
    }

    /// Stops the server and the checker and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Periodic gRPC health checks of every replica of every pool.
struct HealthChecker {
    pools: Vec<Arc<Pool>>,
    /// Service name -> the pool that decides its health.
    services: BTreeMap<String, Arc<Pool>>,
    /// One lazily connected channel per (pool, replica address): pools may differ in TLS.
    channels: HashMap<(usize, SocketAddr), Channel>,
    /// (pool, replica) -> consecutive results: positive passes or negative failures.
    streaks: HashMap<(String, SocketAddr), i64>,
    settings: CheckSettings,
}

impl HealthChecker {
    fn new(health: &BTreeMap<String, Arc<Pool>>, pools: Vec<Arc<Pool>>, settings: CheckSettings) -> Self {
        Self { pools, services: health.clone(), channels: HashMap::new(), streaks: HashMap::new(), settings }
    }

    fn channel(&mut self, pool_idx: usize, addr: SocketAddr) -> Channel {
        let connect_timeout = self.settings.connect_timeout;
        let tls = self.pools[pool_idx].tls();
        self.channels
            .entry((pool_idx, addr))
            .or_insert_with(|| replica_endpoint(addr, tls, connect_timeout).connect_lazy())
            .clone()
    }

    /// Checks every replica once (concurrently), updates their health and publishes every
    /// service's status.
    async fn round(&mut self, reporter: &HealthReporter) {
        let mut checks = tokio::task::JoinSet::new();
        let mut live = HashMap::new();
        for (pool_idx, pool) in self.pools.clone().iter().enumerate() {
            for (idx, replica) in pool.members().replicas().iter().enumerate() {
                live.insert(replica.addr(), ());
                let (channel, timeout) = (self.channel(pool_idx, replica.addr()), self.settings.timeout);
                let replica = replica.clone();
                checks.spawn(async move { (pool_idx, idx, replica, check_replica(channel, timeout).await) });
            }
        }
        // Forget replicas that left every pool.
        self.channels.retain(|(_, addr), _| live.contains_key(addr));
        self.streaks.retain(|(_, addr), _| live.contains_key(addr));
        while let Some(joined) = checks.join_next().await {
            let Ok((pool_idx, _idx, replica, up)) = joined else { continue };
            let pool_name = self.pools[pool_idx].name().to_string();
            let addr = replica.addr();
            let key = (pool_name.clone(), addr);
            // The first check of a replica decides at once (its state is unknown until then).
            let first = !self.streaks.contains_key(&key);
            let streak = self.streaks.entry(key).or_insert(0);
            *streak = match (up, *streak > 0) {
                (true, true) => *streak + 1,
                (true, false) => 1,
                (false, false) => *streak - 1,
                (false, true) => -1,
            };
            let verdict = if first {
                up
            } else if replica.is_healthy() {
                *streak > -i64::from(self.settings.unhealthy_threshold)
            } else {
                *streak >= i64::from(self.settings.healthy_threshold)
            };
            if replica.set_healthy(verdict) {
                if verdict {
                    tracing::info!(pool = %pool_name, replica = %addr, "replica is healthy");
                } else {
                    tracing::warn!(pool = %pool_name, replica = %addr, "replica is not healthy");
                }
            }
        }
        for (service, pool) in &self.services {
            let up = pool.members().replicas().iter().any(|r| r.is_healthy());
            let status = if up { ServingStatus::Serving } else { ServingStatus::NotServing };
            reporter.set_service_status(service, status).await;
        }
    }
}

/// A replica is healthy when its overall gRPC health is SERVING, or when it answers gRPC but has
/// no health service (UNIMPLEMENTED).
async fn check_replica(channel: Channel, timeout: Duration) -> bool {
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.check(request)).await {
        Ok(Ok(response)) => {
            response.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        }
        Ok(Err(status)) => status.code() == tonic::Code::Unimplemented,
        Err(_) => false,
    }
}
