//! Service discovery on the [`Store`](meshwork_storage::Store) trait, so that it runs on every
//! backend (an etcd cluster in production, the memory store in tests).
//!
//! A replica [`register`]s itself: the key `<prefix><pool>/<host:port>` (value: its weight) is
//! put with a time-to-live that a background task renews every third of it, so a replica that
//! dies leaves within the TTL (on etcd the TTL is a lease; the other backends sweep expired
//! keys and report their deletion to watchers). [`Registration::deregister`] deletes the key
//! at once, which a graceful shutdown does before draining. A gateway [`follow`]s the prefix:
//! one read, then the store's watch from the revision after it, and calls back with the whole
//! membership after every change; on any error it reads again.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use meshwork_storage::{DynStore, EventKind, KeyRange, Mutation, StoreError, StoreUrl};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The default key prefix of the registry.
pub const DEFAULT_PREFIX: &str = "meshwork/registry/";

/// Shortest registration TTL (etcd's shortest lease).
pub const MIN_TTL: Duration = Duration::from_secs(2);

/// How long a failed read or watch waits before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Why registering or reading the registry failed. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry URL is not a distributed store URL.
    #[error("registry \"{url}\": {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be reached or refused a request.
    #[error("registry: {0}")]
    Store(#[from] StoreError),
}

/// Checks a registry URL: a store URL that several processes can share (`etcd://host:port,...`;
/// `memory:` only within one process, for tests). Returns it parsed.
pub fn parse_url(url: &str) -> Result<StoreUrl, RegistryError> {
    let bad = |reason: String| RegistryError::Url { url: url.to_string(), reason };
    match url.parse::<StoreUrl>() {
        Ok(parsed @ StoreUrl::Etcd(_)) => Ok(parsed),
        Ok(_) => Err(bad("must be etcd://host:port[,host:port...] (a store every replica and gateway reaches)".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Opens the store of a registry URL (see [`parse_url`]).
pub async fn open(url: &str) -> Result<DynStore, RegistryError> {
    Ok(meshwork_storage::open(&parse_url(url)?).await?)
}

/// The key of `addr` in `pool`.
pub fn key(prefix: &str, pool: &str, addr: SocketAddr) -> String {
    format!("{prefix}{pool}/{addr}")
}

/// A replica's registration; renews its TTL until [`Registration::deregister`] (or until
/// dropped, after which the key expires with its TTL).
pub struct Registration {
    store: DynStore,
    key: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("key", &self.key).finish_non_exhaustive()
    }
}

/// Registers `addr` as a replica of `pool` under `prefix` with a TTL of `ttl` (at least
/// [`MIN_TTL`]), renewed every third of it. A renewal that fails is retried every
/// [`RETRY_PAUSE`] until the store answers again, so a replica that outlives a store outage
/// registers again by itself.
pub async fn register(
    store: DynStore,
    prefix: &str,
    pool: &str,
    addr: SocketAddr,
    weight: u32,
    ttl: Duration,
) -> Result<Registration, RegistryError> {
    let key = key(prefix, pool, addr);
    let ttl = ttl.max(MIN_TTL);
    let value = weight.clamp(1, 1000).to_string();
    store.write(Vec::new(), vec![Mutation::put_with_ttl(key.as_bytes(), value.as_bytes(), ttl)]).await?;
    let (stop, mut stopped) = watch::channel(false);
    let task = {
        let (store, key) = (store.clone(), key.clone());
        tokio::spawn(async move {
            let period = ttl / 3;
            let mut wait = period;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                let renew = Mutation::put_with_ttl(key.as_bytes(), value.as_bytes(), ttl);
                wait = match store.write(Vec::new(), vec![renew]).await {
                    Ok(_) => period,
                    Err(e) => {
                        tracing::warn!(key, error = %e, "registry: cannot renew the registration yet");
                        RETRY_PAUSE
                    }
                };
            }
        })
    };
    tracing::info!(key, ttl_ms = ttl.as_millis() as u64, "registered in the registry");
    Ok(Registration { store, key, stop, task })
}

impl Registration {
    /// The registered key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Stops the renewals and deletes the key: gateways stop sending new calls here at once.
    pub async fn deregister(mut self) -> Result<(), RegistryError> {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
        self.store.write(Vec::new(), vec![Mutation::delete(self.key.as_bytes())]).await?;
        tracing::info!(key = self.key, "deregistered from the registry");
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Registered replicas: pool -> address -> weight.
pub type Members = BTreeMap<String, BTreeMap<SocketAddr, u32>>;

/// Parses `<prefix><pool>/<host:port>` and a weight value (1 when unreadable, at most 1000).
pub fn parse_entry(prefix: &str, key: &[u8], value: &[u8]) -> Option<(String, SocketAddr, u32)> {
    let key = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    let (pool, addr) = key.split_once('/')?;
    if pool.is_empty() {
        return None;
    }
    let addr: SocketAddr = addr.parse().ok()?;
    let weight = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(1u32).clamp(1, 1000);
    Some((pool.to_string(), addr, weight))
}

/// Reads the whole prefix; returns the members and the revision the read saw (at least).
async fn read(store: &DynStore, prefix: &str) -> Result<(Members, u64), StoreError> {
    // Every change after this revision comes through the watch that starts there (a change the
    // scan saw too is applied twice, which leaves the same members).
    let revision = store.current_revision().await?;
    let mut members = Members::new();
    for entry in meshwork_storage::scan_all(store, KeyRange::prefix(prefix.as_bytes()), Default::default()).await? {
        if let Some((pool, addr, weight)) = parse_entry(prefix, &entry.key, &entry.value) {
            members.entry(pool).or_default().insert(addr, weight);
        }
    }
    Ok((members, revision))
}

/// Follows the registry under `prefix` until `stop` turns true: calls `on_change` with every
/// pool's members after the first read and after every change, and flips `ready` to true after
/// the first read. Errors are logged and the registry is read again after a short pause.
pub async fn follow(
    store: DynStore,
    prefix: String,
    mut on_change: impl FnMut(&Members) + Send,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let round = async {
            let (mut members, revision) = read(&store, &prefix).await?;
            on_change(&members);
            let _ = ready.send(true);
            let mut events = store.watch(prefix.as_bytes(), Some(revision + 1)).await?;
            while let Some(event) = events.next().await {
                let event = event?;
                let Some((pool, addr, weight)) = parse_entry(&prefix, &event.key, &event.value).or_else(|| {
                    // A delete carries no value; the key alone names the replica.
                    (event.kind == EventKind::Delete).then(|| parse_entry(&prefix, &event.key, b"1")).flatten()
                }) else {
                    continue;
                };
                let changed = match event.kind {
                    EventKind::Put => members.entry(pool).or_default().insert(addr, weight) != Some(weight),
                    EventKind::Delete => members.get_mut(&pool).is_some_and(|p| p.remove(&addr).is_some()),
                };
                if changed {
                    on_change(&members);
                }
            }
            Ok::<(), StoreError>(())
        };
        tokio::select! {
            result = round => match result {
                Ok(()) => tracing::warn!("registry watch ended; reading again"),
                Err(e) => tracing::warn!(error = %e, "registry watch failed; reading again"),
            },
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY_PAUSE) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_urls() {
        assert!(matches!(parse_url("etcd://127.0.0.1:2379"), Ok(StoreUrl::Etcd(_))));
        for bad in ["http://a:1", "etcd://", "etcd://a", "memory:", "embedded:/tmp/x"] {
            let msg = parse_url(bad).unwrap_err().to_string();
            assert!(msg.starts_with(&format!("registry \"{bad}\"")), "{msg}");
        }
    }

    #[test]
    fn entries() {
        let p = DEFAULT_PREFIX;
        assert_eq!(
            parse_entry(p, b"meshwork/registry/urls/127.0.0.1:5", b"3"),
            Some(("urls".into(), "127.0.0.1:5".parse().unwrap(), 3))
        );
        assert_eq!(
            parse_entry(p, b"meshwork/registry/urls/127.0.0.1:5", b""),
            Some(("urls".into(), "127.0.0.1:5".parse().unwrap(), 1))
        );
        assert_eq!(parse_entry(p, b"meshwork/registry/urls/127.0.0.1:5", b"99999").map(|e| e.2), Some(1000));
        assert_eq!(parse_entry(p, b"meshwork/registry/urls/nope", b"1"), None);
        assert_eq!(parse_entry(p, b"meshwork/registry//127.0.0.1:5", b"1"), None);
        assert_eq!(parse_entry(p, b"other/urls/127.0.0.1:5", b"1"), None);
    }
}
