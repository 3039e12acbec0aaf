//! What each validated command does: open the store, start services on their own listeners,
//! start the gateway in front of them, and on SIGINT/SIGTERM drain in order: gateway first (no
//! new calls, in-flight ones finish), then the services (their shutdown hooks flush buffers),
//! then the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use meshwork_common::mesh::MeshClient;
use meshwork_common::server::{HostedService, ServiceContext, serve_with_tls};
use meshwork_common::spec::{HttpRoute, ServiceSpec};
use meshwork_common::{Settings, SystemClock};
use meshwork_registry::Registration;
use meshwork_storage::embedded::{EmbeddedOptions, EmbeddedStore};
use meshwork_storage::{DynStore, StoreUrl};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use meshwork_collector::Collector;
use meshwork_identity::tls::TlsIdentity;

use crate::cli::{Command, ExportFlags, TraceFlags};
use crate::services;

/// Runs `command` to completion.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Gateway { config, export } => runtime()?.block_on(gateway(*config, export)),
        Command::Load(args) => Ok(meshwork_loadtest::run(*args)?),
        Command::RecommendEval(args) => {
            print!("{}", meshwork_recommendation::eval::run(&args)?);
            Ok(())
        }
        Command::ExposureCheck { exports, observed } => {
            let report = meshwork_gaen::exposure_check(&exports, &observed, &meshwork_gaen::RiskConfig::default())
                .map_err(|e| anyhow::anyhow!("exposure-check: {e}"))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::RouteBench { dir, time_limit, seed } => {
            let rows = meshwork_routing::route_bench(&dir, time_limit, seed)?;
            print!("{}", meshwork_routing::bench::format_table("meshwork", &rows));
            let picks = meshwork_routing::pick_bench(200, seed)?;
            println!(
                "pick paths, {} random pick lists on 20-aisle warehouses: S-shape {:.1}, optimized {:.1}, mean saving {:.1}%",
                picks.cases, picks.mean_s_shape, picks.mean_optimized, picks.mean_saving_percent
            );
            Ok(())
        }
        Command::Up {
            listen,
            store,
            data_dir,
            public_url,
            admin,
            traces,
            trace_dir,
            export,
            tls,
            settings,
            loki_listen,
            self_logs,
        } => {
            let traces = traces.map(|flags| (flags, trace_dir));
            let where_ = Where { listen, store, data_dir, public_url, admin };
            let logs = Logs { loki_listen, self_logs };
            runtime()?.block_on(up(where_, traces, export, tls, settings, logs))
        }
        Command::Token { sub, roles, ttl, data_dir } => {
            let keys = meshwork_identity::DevKeys::load_or_create(&data_dir)
                .with_context(|| format!("the development signing key in {}", data_dir.display()))?;
            println!("{}", keys.mint(&sub, &roles, ttl).context("signing the token")?);
            Ok(())
        }
        Command::Traces { traces, dir, tls } => runtime()?.block_on(traces_alone(traces, dir, tls)),
        Command::Serve { services, listen, store, public_url, gateway, admin, registry, export, tls, settings } => {
            let listen = Listen { addr: listen, tls };
            let urls = Urls { public: public_url, gateway };
            runtime()?.block_on(serve_services(services, listen, store, urls, (admin, registry), export, settings))
        }
    }
}

/// Log filter when RUST_LOG is not set: meshwork at info, the libraries' chatter off, and the
/// per-call spans off for logs (they exist only when traces are exported, so cost nothing otherwise).
const DEFAULT_LOG_FILTER: &str = "info,meshwork::grpc=warn,meshwork::gateway=warn,meshwork_gateway::access=warn,meshwork::storage=warn,pingora_core=warn,pingora_proxy=warn,h2=warn,hyper=warn,tower=warn";

/// Installs logging and, when an OTLP endpoint is known, span export as `service`: the
/// `OTEL_*` variables, then the flags over them. Must run inside the runtime (the exporter's
/// connection lives there).
fn telemetry(
    service: &str,
    default_endpoint: Option<String>,
    export: &ExportFlags,
) -> Result<meshwork_telemetry::TelemetryGuard> {
    telemetry_with(service, default_endpoint, export, None)
}

/// [`telemetry`] with one more layer beside the log and trace layers.
fn telemetry_with(
    service: &str,
    default_endpoint: Option<String>,
    export: &ExportFlags,
    extra: Option<meshwork_telemetry::ExtraLayer>,
) -> Result<meshwork_telemetry::TelemetryGuard> {
    use meshwork_telemetry::telemetry::SamplerConfig;
    // `--otlp-endpoint` as the first endpoint variable (the TLS variables go with it), and as a
    // request to export even under OTEL_SDK_DISABLED.
    let flag = export.otlp_endpoint.clone();
    let mut config = meshwork_telemetry::TelemetryConfig::from_vars(service, default_endpoint, |name| match name {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" if flag.is_some() => flag.clone(),
        "OTEL_SDK_DISABLED" if flag.is_some() => None,
        _ => std::env::var(name).ok(),
    })?;
    config.default_log_filter = DEFAULT_LOG_FILTER.to_string();
    if let Some(ratio) = export.trace_sampling {
        config.sampler = if ratio >= 1.0 { SamplerConfig::AlwaysOn } else { SamplerConfig::Ratio(ratio) };
    }
    Ok(meshwork_telemetry::init_with(&config, extra)?)
}

/// Flushes queued spans (from a blocking thread, as the SDK requires).
async fn flush_telemetry(guard: meshwork_telemetry::TelemetryGuard) {
    let _ = tokio::task::spawn_blocking(move || guard.shutdown()).await;
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")
}

/// Returns the services named (validated against the table), built on `ctx`.
fn build(names: &[String], ctx: &ServiceContext) -> Vec<HostedService> {
    names.iter().filter_map(|name| services::find(name)).map(|spec| (spec.hosted)(ctx)).collect()
}

async fn open_store(url: &StoreUrl) -> Result<DynStore> {
    // An embedded store makes its own directory, owner-only (it holds the services' secrets).
    meshwork_storage::open(url).await.with_context(|| format!("opening store {url}"))
}

/// Opens the trace collector's own embedded store in `dir`. Trace records are written once
/// (no changelog: nothing watches them) and acknowledged without an fsync per commit: the
/// collector has answered the exporter before it persists anyway, and a lost last moment of
/// traces is acceptable where an fsync per export is not (it was most of the collector's CPU).
/// The journal does not compress them either (lz4 was 14% of the collector's instructions); the
/// tables they are flushed into do.
async fn open_trace_store(dir: &std::path::Path) -> Result<DynStore> {
    let opts = EmbeddedOptions {
        history_revisions: 0,
        fsync: false,
        journal_compression: false,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open_with(dir, opts)
        .await
        .with_context(|| format!("opening the trace store {}", dir.display()))?;
    // Not wrapped in `TracedStore`: the services' storage metrics stay about their own data.
    Ok(Arc::new(store))
}

/// Opens the log store's own embedded database in `dir` ([`meshwork_logging::store`]) and
/// moves into it the log store's keys an earlier version kept in the mesh's `store` (once; a
/// move a crash interrupted is finished at the next start).
async fn open_log_store(dir: &std::path::Path, store: &DynStore) -> Result<DynStore> {
    let logs = meshwork_logging::store::open_embedded(dir)
        .await
        .with_context(|| format!("opening the log store {}", dir.display()))?;
    let moved = meshwork_logging::store::adopt(store, &logs)
        .await
        .with_context(|| format!("moving the log store's data into {}", dir.display()))?;
    if moved > 0 {
        tracing::info!(keys = moved, dir = %dir.display(), "log store: moved its data out of the shared store");
    }
    Ok(logs)
}

/// Resolves when the process gets SIGINT or SIGTERM.
async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    Ok(())
}

/// A running service server and the switch that stops it.
struct Running {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), meshwork_common::server::ServeError>>,
}

async fn start(listener: TcpListener, services: Vec<HostedService>, tls: Option<TlsIdentity>) -> Result<Running> {
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let task = tokio::spawn(serve_with_tls(listener, services, shutdown, tls));
    Ok(Running { addr, stop, task })
}

impl Running {
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("service task")?.context("service server")?;
        Ok(())
    }
}

/// The admin HTTP port (`/metrics`, `/ready`) of a process.
struct Admin {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    extra: Arc<meshwork_telemetry::metrics::ExtraMetrics>,
}

impl Admin {
    /// Binds `addr` (failing at once when taken) and serves the admin endpoints.
    async fn start(addr: SocketAddr) -> Result<Admin> {
        let listener = meshwork_telemetry::metrics::bind_admin(addr)
            .await
            .with_context(|| format!("--admin-listen {addr}: cannot bind"))?;
        let (stop, mut stopped) = watch::channel(false);
        let extra = Arc::new(meshwork_telemetry::metrics::ExtraMetrics::default());
        let served = extra.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = meshwork_telemetry::metrics::serve_admin(listener, served, shutdown).await {
                tracing::error!(error = %e, "admin port stopped");
            }
        });
        Ok(Admin { stop, task, extra })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Returns the gateway configuration for services listening at `pools` (spec -> address): one
/// pool and one route per service, with its idempotent methods and HTTP routes (not validated
/// yet: the caller completes it first).
fn gateway_config(listen: SocketAddr, pools: &[(ServiceSpec, SocketAddr)]) -> meshwork_gateway::GatewayConfig {
    use meshwork_gateway::{
        CorsConfig, GatewayConfig, HttpRouteConfig, PoolConfig, RedirectRouteConfig, RouteConfig, StatusRuleConfig,
        TranscodeRouteConfig,
    };
    let mut config = GatewayConfig::new(listen);
    // The gateway knows no service: reflection and HTTP routes read the mesh's descriptors.
    config.descriptor_sets.push(meshwork_proto::FILE_DESCRIPTOR_SET.into());
    // `meshwork up` is the local development mesh: a page served by any dev server (another
    // origin) may call it with gRPC-Web. A deployed gateway lists its origins in [cors].
    // Metadata that services answer with (e.g. the link state of a NOT_FOUND, which arrives as
    // a header in a trailers-only answer) is exposed to pages.
    let mut expose = Vec::new();
    let mut transcoded = Vec::new();
    for (spec, addr) in pools {
        config.pools.insert(spec.name.to_string(), PoolConfig::new([addr.to_string()]));
        for grpc in &spec.grpc_services {
            let mut route = RouteConfig::new(grpc.to_string(), spec.name.to_string());
            route.idempotent_methods = spec.idempotent_methods.iter().map(|m| m.to_string()).collect();
            config.routes.push(route);
            transcoded.push(grpc.to_string());
        }
        for route in &spec.http_routes {
            match route {
                HttpRoute::Redirect(redirect) => {
                    let mut http = RedirectRouteConfig::new(redirect.path, redirect.method, redirect.location_field);
                    http.param_pattern = redirect.param_pattern.map(str::to_string);
                    for (header, field) in redirect.header_fields {
                        http.header_fields.insert(header.to_string(), field.to_string());
                    }
                    for (field, value) in redirect.head_fields {
                        http.head_fields.insert(field.to_string(), value.to_string());
                    }
                    if let Some((key, values)) = redirect.gone_when {
                        http.status.push(StatusRuleConfig {
                            grpc: "NOT_FOUND".into(),
                            metadata: Some(key.to_string()),
                            values: values.iter().map(|v| v.to_string()).collect(),
                            http: 410,
                            body: None,
                        });
                        expose.push(key.to_string());
                    }
                    config.http_routes.push(HttpRouteConfig::Redirect(http));
                }
            }
        }
    }
    // Every method with a `google.api.http` annotation answers JSON on the gateway's port.
    config.http_routes.push(HttpRouteConfig::Transcode(TranscodeRouteConfig::new(transcoded)));
    config.cors = Some(CorsConfig { expose_headers: expose, ..CorsConfig::any_origin() });
    // Validated once `up` has added identity and TLS (validation reads the descriptor sets and
    // the key files, so it is not repeated here).
    config
}

/// Where `meshwork up` listens and keeps its data.
struct Where {
    listen: SocketAddr,
    store: StoreUrl,
    data_dir: PathBuf,
    public_url: String,
    admin: SocketAddr,
}

/// `meshwork up`: every service on its own loopback listener, the gateway on `listen`.
/// The log store's outside doors in `meshwork up`.
struct Logs {
    loki_listen: SocketAddr,
    self_logs: bool,
}

async fn up(
    Where { listen, store: store_url, data_dir, public_url, admin }: Where,
    traces: Option<(TraceFlags, Option<PathBuf>)>,
    export: ExportFlags,
    tls: Option<meshwork_gateway::ListenerTlsConfig>,
    settings: Settings,
    logs: Logs,
) -> Result<()> {
    // Fail before starting anything when the gateway, admin or Loki port is taken.
    drop(std::net::TcpListener::bind(listen).with_context(|| format!("--listen {listen}: cannot bind"))?);
    let loki_listener = TcpListener::bind(logs.loki_listen)
        .await
        .with_context(|| format!("--loki-listen {}: cannot bind", logs.loki_listen))?;
    let admin_addr = admin;
    let admin = Admin::start(admin).await?;
    let store = open_store(&store_url).await?;
    // In-mesh calls go through this process's own gateway.
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mesh = MeshClient::new(&format!("{scheme}://{}", listener_addr(listen))).context("the mesh client")?;
    let ctx = ServiceContext { store: store.clone(), clock: Arc::new(SystemClock), public_url, mesh, settings };
    // Beside an embedded store, the log store keeps its data in an embedded database of its own,
    // `<data-dir>/logs` (no changelog, no journal LZ4 of its already-compressed values; fsync as
    // before), having moved in what an earlier version left in the shared store. With `memory:`
    // or etcd it stays in the mesh's store.
    let log_store = match &store_url {
        StoreUrl::Embedded(_) => Some(open_log_store(&data_dir.join("logs"), &store).await?),
        _ => None,
    };
    let log_ctx = match &log_store {
        Some(logs) => ServiceContext { store: logs.clone(), ..ctx.clone() },
        None => ctx.clone(),
    };
    // The log store is one engine shared by its gRPC service, the Loki HTTP API, the OTLP
    // logs receivers and this process's own log lines.
    let logging = meshwork_logging::instance(&log_ctx);
    // The trace backend keeps its traces in a store of its own, so they survive a restart.
    let collector = match &traces {
        Some((flags, dir)) => {
            let persist = match dir {
                Some(dir) => Some(open_trace_store(dir).await?),
                None => None,
            };
            let mut config = flags.collector();
            config.extra_grpc =
                Some(tonic::service::Routes::new(meshwork_logging::OtlpLogsService::server(logging.clone())));
            config.extra_http = Some(meshwork_logging::otlp_http_router(logging.clone()));
            Some(Collector::start(config, persist).await?)
        }
        None => None,
    };
    let self_logs: Option<meshwork_telemetry::ExtraLayer> = logs.self_logs.then(|| {
        use tracing_subscriber::Layer;
        let layer = meshwork_logging::self_logs(logging.clone(), ctx.clock.clone(), "meshwork");
        // INFO and above; never the log store's own lines (they would feed themselves).
        let filter = tracing_subscriber::filter::Targets::new()
            .with_default(tracing::Level::INFO)
            .with_target("meshwork_logging", tracing_subscriber::filter::LevelFilter::OFF);
        Box::new(layer.with_filter(filter)) as meshwork_telemetry::ExtraLayer
    });
    let guard =
        telemetry_with("meshwork", collector.as_ref().map(|c| format!("http://{}", c.otlp_grpc)), &export, self_logs)?;
    let loki = tokio::spawn({
        let router = meshwork_logging::loki_router(logging.clone());
        async move {
            if let Err(e) = axum::serve(loki_listener, router).await {
                tracing::error!(error = %e, "the Loki HTTP API stopped");
            }
        }
    });

    let mut running = Vec::new();
    let mut pools = Vec::new();
    for spec in services::specs() {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding a service listener")?;
        let service_ctx = if spec.name == "logging" { &log_ctx } else { &ctx };
        let r = start(listener, vec![(spec.hosted)(service_ctx)], None).await?;
        pools.push((spec, r.addr));
        running.push(r);
    }
    let mut config = gateway_config(listen, &pools);
    // Identity: the gateway verifies tokens signed by the development key in the data dir
    // (`meshwork token`); credentials are optional at the gateway (a bad one is still refused)
    // and each service decides what needs them, with `Caller`.
    let dev_keys = meshwork_identity::DevKeys::load_or_create(&data_dir)
        .with_context(|| format!("the development signing key in {}", data_dir.display()))?;
    config.auth = Some(meshwork_gateway::AuthConfig::dev(dev_keys.jwks_path()));
    for route in &mut config.routes {
        route.allow_anonymous = true;
    }
    // The services stay on loopback h2c; TLS (when asked) is the gateway's listener only.
    let listener_kind = if tls.is_some() { "grpc tls + https" } else { "grpc h2c + http" };
    config.tls = tls;
    config.validate().context("gateway config")?;
    let gateway = tokio::task::spawn_blocking(move || meshwork_gateway::spawn(config))
        .await
        .context("gateway start task")?
        .context("starting the gateway")?;
    admin.extra.add(Arc::new(gateway.metrics_renderer()));
    tracing::info!(%listen, store = %store_url, "meshwork ready");
    match &collector {
        Some(c) => println!(
            "meshwork ready: gateway on {listen} ({listener_kind}), store {store_url}, traces http://{} (OTLP grpc {}, http {}), metrics http://{admin_addr}/metrics",
            c.query, c.otlp_grpc, c.otlp_http
        ),
        None => println!(
            "meshwork ready: gateway on {listen} ({listener_kind}), store {store_url}, metrics http://{admin_addr}/metrics"
        ),
    }

    shutdown_signal().await?;
    tokio::task::spawn_blocking(move || gateway.shutdown())
        .await
        .context("gateway shutdown task")?
        .context("gateway shutdown")?;
    for r in running {
        r.stop().await?;
    }
    admin.stop().await;
    flush_telemetry(guard).await;
    if let Some(c) = collector {
        c.shutdown().await.context("flushing the trace store")?;
    }
    loki.abort();
    if let Some(logs) = &log_store {
        logs.flush().await.context("flushing the log store")?;
    }
    store.flush().await.context("flushing the store")?;
    tracing::info!("meshwork stopped");
    Ok(())
}

/// `meshwork traces`: the embedded trace backend alone.
async fn traces_alone(flags: TraceFlags, dir: PathBuf, tls: Option<TlsIdentity>) -> Result<()> {
    let guard = telemetry("meshwork-traces", None, &ExportFlags::default())?;
    let mut config = flags.collector();
    let scheme = if tls.is_some() { "https" } else { "http" };
    config.tls = tls;
    let collector = Collector::start(config, Some(open_trace_store(&dir).await?)).await?;
    println!(
        "meshwork traces ready: http://{} (OTLP grpc {scheme}://{}, http {scheme}://{}), store embedded:{}",
        collector.query,
        collector.otlp_grpc,
        collector.otlp_http,
        dir.display()
    );
    shutdown_signal().await?;
    collector.shutdown().await.context("flushing the trace store")?;
    flush_telemetry(guard).await;
    Ok(())
}

/// Where `meshwork serve` listens, and with which TLS (h2c when none).
struct Listen {
    addr: SocketAddr,
    tls: Option<TlsIdentity>,
}

/// The public base URL of what services hand out, and the gateway they call through.
struct Urls {
    public: String,
    gateway: String,
}

/// `meshwork serve`: the named services on one listener.
async fn serve_services(
    names: Vec<String>,
    Listen { addr: listen, tls }: Listen,
    store_url: StoreUrl,
    Urls { public: public_url, gateway }: Urls,
    (admin, registry): (Option<SocketAddr>, Option<String>),
    export: ExportFlags,
    settings: Settings,
) -> Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("--listen {listen}: cannot bind"))?;
    let admin = match admin {
        Some(addr) => Some(Admin::start(addr).await?),
        None => None,
    };
    let guard = telemetry(&names.join(","), None, &export)?;
    let store = open_store(&store_url).await?;
    let mesh = MeshClient::new(&gateway).with_context(|| format!("--gateway {gateway}"))?;
    let ctx = ServiceContext { store: store.clone(), clock: Arc::new(SystemClock), public_url, mesh, settings };
    let transport = match &tls {
        Some(tls) if tls.client_ca_pem().is_some() => " (mutual TLS)",
        Some(_) => " (TLS)",
        None => "",
    };
    let r = start(listener, build(&names, &ctx), tls).await?;
    // Registered before the ready line: once it is printed, gateways can route here, and a
    // replica that cannot register fails without having claimed to serve.
    let registrations = register(registry.as_deref(), &names, listener_addr(listen)).await?;
    tracing::info!(%listen, services = ?names, store = %store_url, "serving");
    let registered = registry.as_deref().map(|url| format!(", registered in {url}")).unwrap_or_default();
    println!("meshwork serving {} on {listen}{transport}, store {store_url}{registered}", names.join(","));
    shutdown_signal().await?;
    deregister(registrations).await;
    r.stop().await?;
    store.flush().await.context("flushing the store")?;
    if let Some(admin) = admin {
        admin.stop().await;
    }
    flush_telemetry(guard).await;
    Ok(())
}

/// TTL of a registration: a replica that dies leaves the gateways' pools within it.
const REGISTRY_TTL: Duration = Duration::from_secs(5);
/// After deregistering, how long a replica keeps serving before it drains (gateways see the
/// change within milliseconds; this covers calls already on their way).
const REGISTRY_LEAVE_GRACE: Duration = Duration::from_millis(500);

/// The address gateways reach `listen` at (loopback for an unspecified address).
fn listener_addr(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// Registers every service as a replica of the gateway pool of the same name.
async fn register(registry: Option<&str>, names: &[String], addr: SocketAddr) -> Result<Vec<Registration>> {
    let Some(url) = registry else { return Ok(Vec::new()) };
    let store = meshwork_registry::open(url).await.with_context(|| format!("opening the registry {url}"))?;
    let mut registrations = Vec::new();
    for name in names {
        let prefix = meshwork_registry::DEFAULT_PREFIX;
        let registration = meshwork_registry::register(store.clone(), prefix, name, addr, 1, REGISTRY_TTL)
            .await
            .with_context(|| format!("registering {name} at {addr} in {url}"))?;
        registrations.push(registration);
    }
    Ok(registrations)
}

/// Leaves the registry (first step of a graceful shutdown), then waits a moment for gateways.
async fn deregister(registrations: Vec<Registration>) {
    if registrations.is_empty() {
        return;
    }
    for registration in registrations {
        if let Err(e) = registration.deregister().await {
            tracing::warn!(error = %e, "deregistering failed; the key will expire");
        }
    }
    tokio::time::sleep(REGISTRY_LEAVE_GRACE).await;
}

/// `meshwork gateway`: the gateway alone until SIGINT/SIGTERM.
async fn gateway(config: meshwork_gateway::GatewayConfig, export: ExportFlags) -> Result<()> {
    let guard = telemetry("gateway", None, &export)?;
    let listen = config.listen;
    let transport = if config.tls.is_some() { "grpc tls + https" } else { "grpc h2c + http" };
    let gateway = tokio::task::spawn_blocking(move || meshwork_gateway::spawn(config))
        .await
        .context("gateway start task")?
        .context("starting the gateway")?;
    println!("meshwork gateway ready on {listen} ({transport})");
    // SIGQUIT: a new gateway started with --upgrade takes the listening socket over (Pingora's
    // graceful upgrade); this one then drains like on SIGTERM.
    let mut quit = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::quit())
        .context("installing the SIGQUIT handler")?;
    let upgrade = tokio::select! {
        stop = shutdown_signal() => { stop?; false }
        _ = quit.recv() => { tracing::info!("SIGQUIT: handing the listening socket over"); true }
    };
    tokio::task::spawn_blocking(move || if upgrade { gateway.hand_over() } else { gateway.shutdown() })
        .await
        .context("gateway shutdown task")?
        .context("gateway shutdown")?;
    flush_telemetry(guard).await;
    Ok(())
}
