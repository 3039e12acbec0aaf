//! The three real backends the service-kit tests run on: memory, embedded fjall in a temporary
//! directory, and a 3-member etcd cluster shared by the test binary (each test uses its own
//! key prefix, so they do not see each other's keys).

use std::sync::{Arc, OnceLock};

use meshwork_storage::DynStore;
use meshwork_storage::embedded::EmbeddedStore;
use meshwork_storage::etcd::EtcdStore;
use meshwork_storage::memory::MemoryStore;
use meshwork_storage::testing::EtcdCluster;

fn shared_cluster() -> &'static EtcdCluster {
    static CLUSTER: OnceLock<Result<EtcdCluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(|| EtcdCluster::start(3)) {
        Ok(c) => c,
        Err(e) => panic!("cannot start the etcd test cluster: {e}"),
    }
}

/// A store and whatever must live as long as it.
pub struct Backend {
    pub store: DynStore,
    _dir: Option<tempfile::TempDir>,
}

pub fn memory() -> Backend {
    Backend { store: Arc::new(MemoryStore::new()), _dir: None }
}

pub async fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = EmbeddedStore::open(dir.path()).await.expect("open embedded store");
    Backend { store: Arc::new(store), _dir: Some(dir) }
}

pub async fn etcd() -> Backend {
    let endpoints = tokio::task::spawn_blocking(|| shared_cluster().endpoints()).await.expect("cluster start");
    let store = EtcdStore::connect(endpoints).await.expect("connect to etcd");
    Backend { store: Arc::new(store), _dir: None }
}

/// Returns a key prefix no other test of this run uses (etcd is shared and outlives a test).
pub fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{name}{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
