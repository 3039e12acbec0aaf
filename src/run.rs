//! What each validated command does: open the store, start services on their own listeners,
//! start the gateway in front of them, and on SIGINT/SIGTERM drain in order: gateway first (no
//! new calls, in-flight ones finish), then the services (their shutdown hooks flush buffers),
//! then the store.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use meshwork_common::SystemClock;
use meshwork_common::server::{HostedService, ServiceContext, serve};
use meshwork_storage::{DynStore, StoreUrl};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::{Command, SERVICES};

/// Runs `command` to completion.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Gateway { config } => runtime()?.block_on(gateway(config)),
        Command::Up { listen, store, public_url } => runtime()?.block_on(up(listen, store, public_url)),
        Command::Serve { services, listen, store, public_url } => {
            runtime()?.block_on(serve_services(services, listen, store, public_url))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")
}

/// Returns the services named, built on `ctx`.
fn build(names: &[String], ctx: &ServiceContext) -> Vec<HostedService> {
    names
        .iter()
        .filter_map(|name| match name.as_str() {
            "urlshortener" => Some(meshwork_urlshortener::hosted(ctx)),
            _ => None,
        })
        .collect()
}

async fn open_store(url: &StoreUrl) -> Result<DynStore> {
    if let StoreUrl::Embedded(dir) = url {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    meshwork_storage::open(url).await.with_context(|| format!("opening store {url}"))
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

async fn start(listener: TcpListener, services: Vec<HostedService>) -> Result<Running> {
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(serve(listener, services, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    Ok(Running { addr, stop, task })
}

impl Running {
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("service task")?.context("service server")?;
        Ok(())
    }
}

/// Returns the gateway configuration for services listening at `pools` (service -> address).
fn gateway_config(listen: SocketAddr, pools: &[(String, SocketAddr)]) -> Result<meshwork_proxy::GatewayConfig> {
    use meshwork_proxy::{GatewayConfig, PoolConfig, RedirectConfig, RouteConfig};
    let mut config = GatewayConfig::new(listen);
    for (name, addr) in pools {
        let grpc = match name.as_str() {
            "urlshortener" => {
                config.redirect = Some(RedirectConfig { pool: name.clone() });
                meshwork_urlshortener::SERVICE_NAME
            }
            other => anyhow::bail!("no gRPC service name known for {other}"),
        };
        config.pools.insert(name.clone(), PoolConfig { endpoints: vec![addr.to_string()] });
        config.routes.push(RouteConfig { service: grpc.to_string(), pool: name.clone() });
    }
    config.validate().context("generated gateway config")?;
    Ok(config)
}

/// `meshwork up`: every service on its own loopback listener, the gateway on `listen`.
async fn up(listen: SocketAddr, store_url: StoreUrl, public_url: String) -> Result<()> {
    // Fail before starting anything when the gateway port is taken.
    drop(std::net::TcpListener::bind(listen).with_context(|| format!("--listen {listen}: cannot bind"))?);
    let store = open_store(&store_url).await?;
    let ctx = ServiceContext { store: store.clone(), clock: Arc::new(SystemClock), public_url };

    let mut running = Vec::new();
    let mut pools = Vec::new();
    for name in SERVICES {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding a service listener")?;
        let r = start(listener, build(&[name.to_string()], &ctx)).await?;
        pools.push((name.to_string(), r.addr));
        running.push(r);
    }
    let config = gateway_config(listen, &pools)?;
    let gateway = tokio::task::spawn_blocking(move || meshwork_proxy::spawn(config))
        .await
        .context("gateway start task")?
        .context("starting the gateway")?;
    tracing::info!(%listen, store = %store_url, "meshwork ready");
    println!("meshwork ready: gateway on {listen} (grpc h2c + http), store {store_url}");

    shutdown_signal().await?;
    tokio::task::spawn_blocking(move || gateway.shutdown())
        .await
        .context("gateway shutdown task")?
        .context("gateway shutdown")?;
    for r in running {
        r.stop().await?;
    }
    store.flush().await.context("flushing the store")?;
    tracing::info!("meshwork stopped");
    Ok(())
}

/// `meshwork serve`: the named services on one listener.
async fn serve_services(names: Vec<String>, listen: SocketAddr, store_url: StoreUrl, public_url: String) -> Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("--listen {listen}: cannot bind"))?;
    let store = open_store(&store_url).await?;
    let ctx = ServiceContext { store: store.clone(), clock: Arc::new(SystemClock), public_url };
    let r = start(listener, build(&names, &ctx)).await?;
    tracing::info!(%listen, services = ?names, store = %store_url, "serving");
    println!("meshwork serving {} on {listen}, store {store_url}", names.join(","));
    shutdown_signal().await?;
    r.stop().await?;
    store.flush().await.context("flushing the store")?;
    Ok(())
}

/// `meshwork gateway`: the gateway alone until SIGINT/SIGTERM.
async fn gateway(config: meshwork_proxy::GatewayConfig) -> Result<()> {
    let listen = config.listen;
    let gateway = tokio::task::spawn_blocking(move || meshwork_proxy::spawn(config))
        .await
        .context("gateway start task")?
        .context("starting the gateway")?;
    println!("meshwork gateway ready on {listen}");
    shutdown_signal().await?;
    tokio::task::spawn_blocking(move || gateway.shutdown())
        .await
        .context("gateway shutdown task")?
        .context("gateway shutdown")?;
    Ok(())
}
