//! Shared fixtures: a server (or two replicas) of the inventory on a store, each test under a
//! key root and skus of its own (the etcd cluster is shared by every test of the run).

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::clock::{Clock, SystemClock};
use meshwork_inventory::Config;
use meshwork_proto::pb::inventory::v1 as pb;
use meshwork_storage::DynStore;
use meshwork_test_support::{TestServer, backends::unique, context_with_clock};
use pb::inventory_client::InventoryClient;
use tonic::transport::Channel;

pub type Client = InventoryClient<Channel>;

/// Returns a sku no other test uses (`[A-Z0-9-]{3,40}`).
pub fn sku(tag: &str) -> String {
    unique(tag).to_uppercase()
}

/// Returns a request id no other call uses.
pub fn rid(tag: &str) -> String {
    unique(tag)
}

/// Returns a key root of its own.
pub fn root(tag: &str) -> String {
    unique(&format!("inv-{tag}"))
}

/// Serves one inventory replica on `store` under `root`, timed by `clock`, sweeping every 50 ms.
pub async fn replica(store: &DynStore, root: &str, clock: Arc<dyn Clock>) -> (TestServer, Client) {
    replica_sweeping(store, root, clock, Duration::from_millis(50)).await
}

/// [`replica`] with its sweeper running every `sweep_interval`.
pub async fn replica_sweeping(
    store: &DynStore,
    root: &str,
    clock: Arc<dyn Clock>,
    sweep_interval: Duration,
) -> (TestServer, Client) {
    let config = Config { root: root.to_string(), sweep_interval, ..Config::default() };
    let server =
        TestServer::start(vec![meshwork_inventory::hosted_with(&context_with_clock(store.clone(), clock), config)])
            .await;
    let client = InventoryClient::new(server.channel.clone());
    (server, client)
}

/// Serves one replica with the system clock.
pub async fn start(store: &DynStore, tag: &str) -> (TestServer, Client) {
    replica(store, &root(tag), Arc::new(SystemClock)).await
}

/// Receives `n` units of `sku` at `location`.
pub async fn receive(client: &mut Client, sku: &str, location: &str, n: i64) -> pb::StockLevel {
    client
        .adjust_stock(pb::AdjustStockRequest {
            request_id: rid("recv"),
            sku: sku.into(),
            location: location.into(),
            delta: n,
            reason: pb::AdjustReason::Receive as i32,
            note: String::new(),
        })
        .await
        .expect("receive stock")
        .into_inner()
        .level
        .expect("level")
}

/// Returns the stock of `sku`.
pub async fn stock(client: &mut Client, sku: &str) -> pb::GetStockResponse {
    client.get_stock(pb::GetStockRequest { sku: sku.into() }).await.expect("get stock").into_inner()
}

/// Returns a reservation line.
pub fn line(sku: &str, quantity: i64) -> pb::ReserveLine {
    pb::ReserveLine { sku: sku.into(), quantity, location: String::new() }
}

/// Reserves `lines` with a fresh request id and the given ttl.
pub async fn reserve(
    client: &mut Client,
    lines: Vec<pb::ReserveLine>,
    ttl: Option<Duration>,
) -> Result<pb::Reservation, tonic::Status> {
    let ttl = ttl.map(|d| prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 });
    let response =
        client.reserve(pb::ReserveRequest { request_id: rid("res"), lines, ttl, reference: "test".into() }).await?;
    Ok(response.into_inner().reservation.expect("reservation"))
}

/// Waits up to `within` for `check` to hold, polling.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
