//! The gateway's own gRPC services for the whole mesh: reflection (v1 and v1alpha) and health.
//!
//! They run in a small tonic server on `127.0.0.1:<ephemeral>` inside the gateway's internal
//! runtime; the proxy routes `grpc.reflection.*` and `grpc.health.v1.Health` there like any other
//! pool. Reflection lists exactly the routed services (plus health and reflection) and describes
//! them from the configuration's `descriptor_sets`. Health reports a service SERVING while its
//! pool has at least one healthy replica; the overall status `""` is SERVING while the gateway
//! runs and NOT_SERVING once it drains.
//!
//! A task per pool checks every replica of the pool each `interval_ms` of the pool's health
//! checks (`[health_check]`, changed per pool by `[pools.NAME.health_check]`):
//! `grpc.health.v1.Health/Check` of service `""`, SERVING or UNIMPLEMENTED passes. It marks a
//! replica unhealthy after `unhealthy_threshold` failed checks in a row, healthy again after
//! `healthy_threshold` passes; replica selection avoids unhealthy replicas. It reads the pool's
//! current membership every round, so replicas added by the registry are checked too. A pool with `[pools.NAME.tls]` is
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

/// Replica health checking settings of one pool.
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
    /// Starts the internal server on `listener` and a health checker for each of `pools`, with
    /// its settings. Must run inside the internal runtime. The first round of health checks of
    /// every pool completes before this returns.
    pub async fn start(
        listener: std::net::TcpListener,
        view: MeshView,
        pools: Vec<(Arc<Pool>, CheckSettings)>,
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

        // Every pool's first round runs at once; each pool then goes on at its own interval.
        let mut first_rounds = tokio::task::JoinSet::new();
        for (pool, settings) in pools {
            let mut checker = HealthChecker::new(&view.health, pool, settings);
            let reporter = reporter.clone();
            first_rounds.spawn(async move {
                checker.round(&reporter).await;
                checker
            });
        }
        let mut tasks = vec![server_task];
        while let Some(first) = first_rounds.join_next().await {
            let mut checker = first.map_err(|e| GatewayError::Start(format!("health checker: {e}")))?;
            let reporter = reporter.clone();
            let mut checker_stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(checker.settings.interval) => {}
                        _ = checker_stop.wait_for(|stopped| *stopped) => break,
                    }
                    checker.round(&reporter).await;
                }
            }));
        }

        tracing::debug!(%addr, services = ?view.listed, "gateway internal gRPC server started");
        Ok(Internal { reporter, stop, tasks })
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

/// Periodic gRPC health checks of every replica of one pool.
struct HealthChecker {
    pool: Arc<Pool>,
    /// The services whose health this pool decides.
    services: Vec<String>,
    /// One lazily connected channel per replica address (over the pool's TLS, if any).
    channels: HashMap<SocketAddr, Channel>,
    /// Replica -> consecutive results: positive passes or negative failures.
    streaks: HashMap<SocketAddr, i64>,
    settings: CheckSettings,
}

impl HealthChecker {
    fn new(health: &BTreeMap<String, Arc<Pool>>, pool: Arc<Pool>, settings: CheckSettings) -> Self {
        let services = health.iter().filter(|(_, p)| Arc::ptr_eq(p, &pool)).map(|(s, _)| s.clone()).collect();
        Self { pool, services, channels: HashMap::new(), streaks: HashMap::new(), settings }
    }

    fn channel(&mut self, addr: SocketAddr) -> Channel {
        let connect_timeout = self.settings.connect_timeout;
        let tls = self.pool.tls();
        self.channels.entry(addr).or_insert_with(|| replica_endpoint(addr, tls, connect_timeout).connect_lazy()).clone()
    }

    /// Checks every replica of the pool once (concurrently), updates their health and
    /// publishes the status of the pool's services.
    async fn round(&mut self, reporter: &HealthReporter) {
        let mut checks = tokio::task::JoinSet::new();
        let mut live = HashMap::new();
        let pool = self.pool.clone();
        for replica in pool.members().replicas().iter() {
            live.insert(replica.addr(), ());
            let (channel, timeout) = (self.channel(replica.addr()), self.settings.timeout);
            let replica = replica.clone();
            checks.spawn(async move {
                let up = check_replica(channel, timeout).await;
                (replica, up)
            });
        }
        // Forget replicas that left the pool.
        self.channels.retain(|addr, _| live.contains_key(addr));
        self.streaks.retain(|addr, _| live.contains_key(addr));
        let pool_name = pool.name();
        while let Some(joined) = checks.join_next().await {
            let Ok((replica, up)) = joined else { continue };
            let addr = replica.addr();
            // The first check of a replica decides at once (its state is unknown until then).
            let first = !self.streaks.contains_key(&addr);
            let streak = self.streaks.entry(addr).or_insert(0);
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
        let up = pool.members().replicas().iter().any(|r| r.is_healthy());
        let status = if up { ServingStatus::Serving } else { ServingStatus::NotServing };
        for service in &self.services {
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
