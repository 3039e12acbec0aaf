//! `scan_all` and `scan_stream` against every backend (memory, embedded fjall in a temporary
//! directory, a real 3-member etcd cluster shared by this test binary): ranges of several
//! pages, read forward and in reverse, keys outside the range left out.

use std::sync::Arc;

use futures::TryStreamExt;
use meshwork_storage::embedded::EmbeddedStore;
use meshwork_storage::etcd::EtcdStore;
use meshwork_storage::memory::MemoryStore;
use meshwork_storage::testing::EtcdCluster;
use meshwork_storage::{Direction, DynStore, Entry, KeyRange, Mutation, SCAN_PAGE, scan_all, scan_stream};

async fn etcd_store() -> DynStore {
    let endpoints = tokio::task::spawn_blocking(|| EtcdCluster::shared().endpoints()).await.unwrap();
    Arc::new(EtcdStore::connect(endpoints).await.expect("connect to etcd"))
}

fn keys(entries: &[Entry]) -> Vec<Vec<u8>> {
    entries.iter().map(|e| e.key.clone()).collect()
}

async fn reads_every_page(store: DynStore, prefix: &str) {
    // Two full pages of the helpers' page size and a partial third, with neighbours outside.
    let n = 2 * SCAN_PAGE + 17;
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(100) {
        let puts = chunk.iter().map(|i| Mutation::put(format!("{prefix}p/{i:05}"), i.to_string())).collect();
        store.write(vec![], puts).await.unwrap();
    }
    let outside = vec![Mutation::put(format!("{prefix}o"), "x"), Mutation::put(format!("{prefix}q"), "x")];
    store.write(vec![], outside).await.unwrap();
    let forward: Vec<Vec<u8>> = (0..n).map(|i| format!("{prefix}p/{i:05}").into_bytes()).collect();
    let reverse: Vec<Vec<u8>> = forward.iter().rev().cloned().collect();
    let range = || KeyRange::prefix(format!("{prefix}p/"));

    let all = scan_all(&store, range(), Direction::Forward).await.unwrap();
    assert_eq!(keys(&all), forward);
    assert!(all.iter().enumerate().all(|(i, e)| e.value == i.to_string().into_bytes()));
    assert_eq!(keys(&scan_all(&store, range(), Direction::Reverse).await.unwrap()), reverse);
    for (direction, want) in [(Direction::Forward, &forward), (Direction::Reverse, &reverse)] {
        for page_size in [0, 333] {
            let streamed: Vec<Entry> =
                scan_stream(store.clone(), range(), direction, page_size).try_collect().await.unwrap();
            assert_eq!(&keys(&streamed), want, "{direction:?} page {page_size}");
        }
    }
    let none = scan_all(&store, KeyRange::prefix(format!("{prefix}none/")), Direction::Forward).await.unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn scan_helpers_on_memory() {
    reads_every_page(Arc::new(MemoryStore::new()), "scan/").await;
}

#[tokio::test]
async fn scan_helpers_on_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    reads_every_page(store, "scan/").await;
}

#[tokio::test]
async fn scan_helpers_on_etcd() {
    reads_every_page(etcd_store().await, "scan-helpers/").await;
}
