//! Service discovery for the gateway's pools: [`watch`] follows the registry (see
//! `meshwork-registry`, on any distributed store) and replaces the membership of the configured
//! pools as replicas come and go: no restart, and calls in flight keep the replica they were
//! sent to. Replicas register with `meshwork_registry::register`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshwork_registry::Members;
use tokio::sync::watch as tokio_watch;

use crate::pool::Pool;

pub use meshwork_registry::{DEFAULT_PREFIX, RegistryError, parse_url};

/// What the watcher keeps up to date.
pub(crate) struct Watched {
    /// The configured pools by name.
    pub pools: BTreeMap<String, Arc<Pool>>,
    /// Each pool's static endpoints from the configuration (always members).
    pub fixed: BTreeMap<String, Vec<(SocketAddr, u32)>>,
}

impl Watched {
    fn apply(&self, registered: &Members) {
        for (name, pool) in &self.pools {
            let mut members: Vec<(SocketAddr, u32)> = self.fixed.get(name).cloned().unwrap_or_default();
            let known: BTreeSet<SocketAddr> = members.iter().map(|(a, _)| *a).collect();
            if let Some(extra) = registered.get(name) {
                members.extend(extra.iter().filter(|(a, _)| !known.contains(a)).map(|(a, w)| (*a, *w)));
            }
            let current: Vec<(SocketAddr, u32)> =
                pool.members().replicas().iter().map(|r| (r.addr(), r.weight())).collect();
            if current != members {
                tracing::info!(pool = %name, replicas = ?members.iter().map(|(a, _)| a).collect::<Vec<_>>(), "pool membership changed");
                pool.set_replicas(&members);
            }
        }
    }
}

/// Follows the registry at `url` until `stop` flips: opens its store (again after a short
/// pause while it cannot be reached), then follows `prefix`. `ready` gets true after the first
/// read.
pub(crate) async fn watch(
    url: String,
    prefix: String,
    watched: Watched,
    ready: tokio_watch::Sender<bool>,
    mut stop: tokio_watch::Receiver<bool>,
) {
    let store = loop {
        tokio::select! {
            opened = meshwork_registry::open(&url) => match opened {
                Ok(store) => break store,
                Err(e) => tracing::warn!(registry = %url, error = %e, "registry unreachable; retrying"),
            },
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    };
    meshwork_registry::follow(store, prefix, move |members| watched.apply(members), ready, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_replicas_join_beside_the_static_ones() {
        let pool = Arc::new(Pool::new("p", vec!["127.0.0.1:1".parse().unwrap()]));
        let watched = Watched {
            pools: BTreeMap::from([("p".to_string(), pool.clone())]),
            fixed: BTreeMap::from([("p".to_string(), vec![("127.0.0.1:1".parse().unwrap(), 1)])]),
        };
        let mut members = Members::new();
        members.entry("p".into()).or_default().insert("127.0.0.1:2".parse().unwrap(), 4);
        members.entry("p".into()).or_default().insert("127.0.0.1:1".parse().unwrap(), 9);
        members.entry("unknown".into()).or_default().insert("127.0.0.1:3".parse().unwrap(), 1);
        watched.apply(&members);
        let now: Vec<(SocketAddr, u32)> = pool.members().replicas().iter().map(|r| (r.addr(), r.weight())).collect();
        assert_eq!(now, vec![("127.0.0.1:1".parse().unwrap(), 1), ("127.0.0.1:2".parse().unwrap(), 4)]);
        watched.apply(&Members::new());
        assert_eq!(pool.members().replicas().len(), 1);
    }
}
