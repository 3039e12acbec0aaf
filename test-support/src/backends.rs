//! The three real backends every service's concurrency test runs on (DESIGN "Service
//! conventions": the core mechanism on the embedded store and on the 3-member etcd cluster):
//! memory, embedded fjall in a temporary directory, and the 3-member etcd cluster of the test
//! binary ([`EtcdCluster::shared`]; each test takes its own key prefix from [`unique`], so they
//! do not see each other's keys). [`on_every_backend!`](crate::on_every_backend) makes one test
//! per backend of an `async fn case(backend: Backend)`.

use std::sync::Arc;

use meshwork_storage::DynStore;
use meshwork_storage::embedded::EmbeddedStore;
use meshwork_storage::etcd::EtcdStore;
use meshwork_storage::memory::MemoryStore;
use meshwork_storage::testing::EtcdCluster;

/// A store and whatever must live as long as it.
pub struct Backend {
    /// The store.
    pub store: DynStore,
    _dir: Option<tempfile::TempDir>,
}

/// Returns a fresh memory store.
pub fn memory() -> Backend {
    Backend { store: Arc::new(MemoryStore::new()), _dir: None }
}

/// Returns an embedded (fjall) store in a fresh temporary directory.
///
/// # Panics
/// When the store cannot be opened (a test failure).
pub async fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = EmbeddedStore::open(dir.path()).await.expect("open embedded store");
    Backend { store: Arc::new(store), _dir: Some(dir) }
}

/// Returns a client of the shared 3-member etcd cluster.
///
/// # Panics
/// When the cluster cannot start or be reached (a test failure).
pub async fn etcd() -> Backend {
    let endpoints = tokio::task::spawn_blocking(|| EtcdCluster::shared().endpoints()).await.expect("cluster start");
    let store = EtcdStore::connect(endpoints).await.expect("connect to etcd");
    Backend { store: Arc::new(store), _dir: None }
}

/// Returns a key prefix (or service name) no other test of this run uses: etcd is shared and
/// outlives a test.
pub fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{name}{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Makes, for each `async fn case(backend: Backend)` named, a module `case` with three tests:
/// `memory`, `embedded` and `etcd` (multi-thread runtime, 4 workers).
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                super::$case($crate::backends::memory()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded() {
                super::$case($crate::backends::embedded().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn etcd() {
                super::$case($crate::backends::etcd().await).await;
            }
        }
    )*};
}
