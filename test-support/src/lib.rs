//! What meshwork's tests share (a dev-dependency only): [`TestServer`] runs services in-process
//! through the one server builder, exactly as `meshwork up` and `meshwork serve` do, on a free
//! loopback port; [`backends`] gives the memory, embedded and 3-member etcd stores every
//! concurrency test runs on; [`certs`] makes a throwaway PKI for TLS tests; [`free_addr`] hands
//! out ports below the ephemeral range.

#![forbid(unsafe_code)]

pub mod backends;
pub mod certs;

use std::net::SocketAddr;
use std::sync::Arc;

use meshwork_common::mesh::MeshClient;
use meshwork_common::server::{HostedService, ServiceContext, serve};
use meshwork_common::{Clock, SystemClock};
use meshwork_storage::DynStore;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub use meshwork_storage::testing::{EtcdCluster, free_addr, free_port};

/// Where test contexts' mesh clients point unless a test gives a gateway (nothing listens there:
/// a service that calls another in a test needs [`context_with_mesh`]).
pub const TEST_GATEWAY: &str = "http://127.0.0.1:9";

/// Returns a mesh client of the gateway at `url` (must run inside a tokio runtime).
///
/// # Panics
/// When `url` is not an `http://` or `https://` URL (a test bug).
pub fn mesh_client(url: &str) -> MeshClient {
    MeshClient::new(url).expect("gateway URL")
}

/// Returns a service context on `store` whose mesh client calls the gateway at `gateway_url`.
pub fn context_with_mesh(store: DynStore, gateway_url: &str) -> ServiceContext {
    ServiceContext { mesh: mesh_client(gateway_url), ..context(store) }
}

/// Returns a service context on `store` with the system clock and a placeholder public URL.
pub fn context(store: DynStore) -> ServiceContext {
    context_with_clock(store, Arc::new(SystemClock))
}

/// Returns a service context on `store` with `clock`.
pub fn context_with_clock(store: DynStore, clock: Arc<dyn Clock>) -> ServiceContext {
    ServiceContext {
        store,
        clock,
        public_url: "http://sho.rt".into(),
        mesh: mesh_client(TEST_GATEWAY),
        settings: Default::default(),
    }
}

/// Returns a fresh in-memory store.
pub fn memory_store() -> DynStore {
    Arc::new(meshwork_storage::memory::MemoryStore::new())
}

/// Services served in-process on a loopback port, with a connected channel. Dropping it stops
/// the server without waiting; [`TestServer::stop`] waits for the shutdown hooks.
pub struct TestServer {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// A channel connected to it.
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Serves `services` on a free loopback port and connects to it.
    ///
    /// # Panics
    /// When the port cannot be bound or the server not reached (a test failure).
    pub async fn start(services: Vec<HostedService>) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        TestServer::start_on(listener, services).await
    }

    /// Serves `services` on `listener` and connects to it.
    ///
    /// # Panics
    /// When the server cannot be reached (a test failure).
    pub async fn start_on(listener: tokio::net::TcpListener, services: Vec<HostedService>) -> TestServer {
        let addr = listener.local_addr().expect("listener address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(listener, services, async move {
                let _ = stopped.await;
            })
            .await
            .expect("test server");
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("loopback URI")
            .connect()
            .await
            .expect("connect to the test server");
        TestServer { addr, channel, stop: Some(stop), task }
    }

    /// Builds the service of `hosted` on `ctx` and serves it.
    pub async fn hosting(hosted: fn(&ServiceContext) -> HostedService, ctx: &ServiceContext) -> TestServer {
        TestServer::start(vec![hosted(ctx)]).await
    }

    /// Serves several services that call each other: all of them on one port, with `ctx`'s
    /// mesh client pointed at that port (one server routes by gRPC service name, as the
    /// gateway does). Returns the server and the context the services were built on.
    ///
    /// # Panics
    /// When the port cannot be bound (a test failure).
    pub async fn mesh(
        hosted: &[fn(&ServiceContext) -> HostedService],
        ctx: ServiceContext,
    ) -> (TestServer, ServiceContext) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("listener address");
        let ctx = ServiceContext { mesh: mesh_client(&format!("http://{addr}")), ..ctx };
        let services = hosted.iter().map(|h| h(&ctx)).collect();
        (TestServer::start_on(listener, services).await, ctx)
    }

    /// Stops the server: in-flight calls finish, then the services' shutdown hooks run.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
