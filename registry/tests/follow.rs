//! The registry on real stores: the memory backend and a real 3-member etcd cluster. A gateway's
//! view ([`follow`]) sees a replica join when it registers, leave at once when it deregisters,
//! and leave within the TTL when it dies without a word (its renewals stop).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshwork_registry::{Members, follow, register};
use meshwork_storage::DynStore;
use meshwork_storage::testing::EtcdCluster;
use tokio::sync::watch;

const PREFIX: &str = "test/registry/";

/// A follower whose latest view can be polled.
struct View {
    members: Arc<Mutex<Members>>,
    stop: watch::Sender<bool>,
}

impl View {
    async fn start(store: DynStore, prefix: &str) -> View {
        let members = Arc::new(Mutex::new(Members::new()));
        let seen = members.clone();
        let (ready, mut is_ready) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(follow(
            store,
            prefix.to_string(),
            move |m: &Members| *seen.lock().unwrap() = m.clone(),
            ready,
            stopped,
        ));
        tokio::time::timeout(Duration::from_secs(10), is_ready.wait_for(|r| *r)).await.unwrap().unwrap();
        View { members, stop }
    }

    fn pool(&self, pool: &str) -> Vec<(SocketAddr, u32)> {
        self.members.lock().unwrap().get(pool).map(|m| m.iter().map(|(a, w)| (*a, *w)).collect()).unwrap_or_default()
    }

    /// Waits up to `limit` for `pool` to have exactly `want`.
    async fn wait_for(&self, pool: &str, want: &[(SocketAddr, u32)], limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.pool(pool) == want {
                return start.elapsed();
            }
            assert!(start.elapsed() < limit, "pool {pool} is {:?}, want {want:?} (after {limit:?})", self.pool(pool));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Join, weight, deregister, and death by silence, on `store` with a registration TTL of `ttl`.
async fn lifecycle(store: DynStore, prefix: &str, ttl: Duration) {
    let view = View::start(store.clone(), prefix).await;
    assert!(view.pool("p").is_empty());

    let a = register(store.clone(), prefix, "p", addr(5001), 1, ttl).await.unwrap();
    let b = register(store.clone(), prefix, "p", addr(5002), 3, ttl).await.unwrap();
    let other = register(store.clone(), prefix, "q", addr(5003), 1, ttl).await.unwrap();
    view.wait_for("p", &[(addr(5001), 1), (addr(5002), 3)], Duration::from_secs(5)).await;
    view.wait_for("q", &[(addr(5003), 1)], Duration::from_secs(5)).await;

    // Renewals keep a live replica registered well past its TTL.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(view.pool("p"), vec![(addr(5001), 1), (addr(5002), 3)]);

    // Deregistering removes the key at once, not after the TTL.
    a.deregister().await.unwrap();
    let took = view.wait_for("p", &[(addr(5002), 3)], ttl).await;
    assert!(took < ttl, "deregistration took {took:?}");

    // A replica that dies (no renewals, no goodbye) leaves within about its TTL.
    drop(b);
    view.wait_for("p", &[], ttl * 4).await;

    // A follower that starts late reads what is there.
    let late = View::start(store.clone(), prefix).await;
    assert_eq!(late.pool("q"), vec![(addr(5003), 1)]);
    assert!(late.pool("p").is_empty());
    other.deregister().await.unwrap();
    late.wait_for("q", &[], Duration::from_secs(5)).await;
}

#[tokio::test]
async fn lifecycle_on_the_memory_store() {
    let store: DynStore = Arc::new(meshwork_storage::memory::MemoryStore::new());
    lifecycle(store, PREFIX, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn lifecycle_on_a_three_member_etcd_cluster() {
    let url = tokio::task::spawn_blocking(|| EtcdCluster::shared().store_url()).await.unwrap();
    let store = meshwork_registry::open(&url.to_string()).await.unwrap();
    lifecycle(store, PREFIX, Duration::from_secs(2)).await;
}
