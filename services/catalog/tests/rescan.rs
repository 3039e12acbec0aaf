//! The search projection survives a broken watch: a store whose first watch fails after one
//! change makes the replica rescan and follow again, so the product whose change was cut off
//! and every later one are still searchable.

mod catalog_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use catalog_support::*;
use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_storage::{
    Condition, Direction, DynStore, KeyRange, Limits, Mutation, Page, Result, Store, StoreError, Versioned, WatchEvent,
};
use meshwork_test_support::{TestServer, context, memory_store};

/// A store whose first watch yields one change and then fails.
struct BrokenFirstWatch {
    inner: DynStore,
    watches: AtomicUsize,
}

#[async_trait::async_trait]
impl Store for BrokenFirstWatch {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        self.inner.get(key).await
    }

    async fn scan(&self, range: KeyRange, limit: usize, direction: Direction) -> Result<Page> {
        self.inner.scan(range, limit, direction).await
    }

    async fn write(&self, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Result<u64> {
        self.inner.write(conditions, mutations).await
    }

    async fn watch(&self, prefix: &[u8], from: Option<u64>) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        let stream = self.inner.watch(prefix, from).await?;
        if self.watches.fetch_add(1, Ordering::SeqCst) > 0 {
            return Ok(stream);
        }
        let failure = futures::stream::once(async { Err(StoreError::Unavailable("watch connection lost".into())) });
        Ok(stream.take(1).chain(failure).boxed())
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_watch_is_followed_by_a_rescan() {
    let store = Arc::new(BrokenFirstWatch { inner: memory_store(), watches: AtomicUsize::new(0) });
    let server = TestServer::hosting(meshwork_catalog::hosted, &context(store.clone())).await;
    let mut client = catalog(&server);
    let ready = poll_search(&mut client, &query(""), Duration::from_secs(5), |_| true).await;
    assert!(ready.is_some(), "the index loaded");

    create(&mut client, product("CUT-1", "Walnut cutting board", "home/kitchen", 100, &[])).await;
    let found = poll_search(&mut client, &query("walnut"), Duration::from_secs(3), |r| skus(r) == vec!["CUT-1"]).await;
    assert!(found.is_some(), "the change cut off by the broken watch is found by the rescan");
    assert!(store.watches.load(Ordering::SeqCst) >= 2, "the replica watched again");

    create(&mut client, product("CUT-2", "Maple cutting board", "home/kitchen", 100, &[])).await;
    let found = poll_search(&mut client, &query("maple"), Duration::from_secs(1), |r| skus(r) == vec!["CUT-2"]).await;
    assert!(found.is_some(), "later changes follow the new watch");
}
