//! Service discovery through etcd.
//!
//! A replica registers itself with [`register`]: the key `<prefix><pool>/<host:port>` (value: its
//! weight) is put under a lease that a background task keeps alive, so a replica that dies leaves
//! within the lease TTL; [`Registration::deregister`] revokes the lease (the key goes at once),
//! which a graceful shutdown does before draining. The gateway ([`watch`]) reads the prefix,
//! then follows it with an etcd watch and replaces the membership of the configured pools as keys
//! come and go: no restart, and calls in flight keep the replica they were sent to.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinHandle;

use crate::pool::Pool;

/// The default key prefix of the registry.
pub const DEFAULT_PREFIX: &str = "meshwork/registry/";

/// Why registering or reading the registry failed. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry URL is not `etcd://host:port[,host:port...]`.
    #[error("registry \"{url}\": {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// etcd could not be reached or refused a request.
    #[error("registry: {0}")]
    Etcd(String),
}

impl From<etcd_client::Error> for RegistryError {
    fn from(e: etcd_client::Error) -> Self {
        RegistryError::Etcd(e.to_string().replace('\n', " "))
    }
}

/// The etcd endpoints of a registry URL (`etcd://h1:p1,h2:p2` -> `["http://h1:p1", ...]`).
pub fn endpoints(url: &str) -> Result<Vec<String>, RegistryError> {
    let bad = |reason| RegistryError::Url { url: url.to_string(), reason };
    let rest = url.strip_prefix("etcd://").ok_or_else(|| bad("must start with etcd://"))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(bad("names no endpoint"));
    }
    rest.split(',')
        .map(|hostport| {
            let ok =
                hostport.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
            if ok { Ok(format!("http://{hostport}")) } else { Err(bad("endpoints must be host:port")) }
        })
        .collect()
}

/// A replica's registration; keeps its lease alive until [`Registration::deregister`] (or until
/// dropped, after which the key expires with the lease).
pub struct Registration {
    client: Client,
    lease: Arc<std::sync::atomic::AtomicI64>,
    key: String,
    stop: tokio_watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("key", &self.key).finish_non_exhaustive()
    }
}

/// Registers `addr` as a replica of `pool` under `prefix` with a lease of `ttl` (at least 2 s,
/// etcd's minimum), kept alive every third of the TTL. If the lease is lost (etcd restarted, a
/// long pause) it is granted anew and the key put again.
pub async fn register(
    url: &str,
    prefix: &str,
    pool: &str,
    addr: SocketAddr,
    weight: u32,
    ttl: Duration,
) -> Result<Registration, RegistryError> {
    let mut client = Client::connect(endpoints(url)?, None).await?;
    let key = format!("{prefix}{pool}/{addr}");
    let ttl_secs = ttl.as_secs().max(2) as i64;
    let value = weight.max(1).to_string();
    let lease = put_leased(&mut client, &key, &value, ttl_secs).await?;
    let lease = Arc::new(std::sync::atomic::AtomicI64::new(lease));
    let (stop, mut stopped) = tokio_watch::channel(false);
    let task = {
        let (mut client, key, lease) = (client.clone(), key.clone(), lease.clone());
        tokio::spawn(async move {
            let period = Duration::from_millis((ttl_secs as u64 * 1000 / 3).max(500));
            loop {
                let id = lease.load(std::sync::atomic::Ordering::Relaxed);
                let alive = async {
                    let (mut keeper, mut responses) = client.lease_keep_alive(id).await?;
                    loop {
                        keeper.keep_alive().await?;
                        match responses.message().await? {
                            Some(r) if r.ttl() > 0 => {}
                            _ => return Ok::<_, etcd_client::Error>(()), // the lease is gone
                        }
                        tokio::time::sleep(period).await;
                    }
                };
                tokio::select! {
                    result = alive => {
                        tracing::warn!(key, error = ?result.err().map(|e| e.to_string()), "registry lease lost; registering again");
                    }
                    _ = stopped.wait_for(|s| *s) => return,
                }
                // Lost: grant a new lease and put the key again (retrying until it works).
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stopped.wait_for(|s| *s) => return,
                    }
                    match put_leased(&mut client, &key, &value, ttl_secs).await {
                        Ok(id) => {
                            lease.store(id, std::sync::atomic::Ordering::Relaxed);
                            break;
                        }
                        Err(e) => tracing::warn!(key, error = %e, "registry: cannot register again yet"),
                    }
                }
            }
        })
    };
    tracing::info!(key, ttl_secs, "registered in the registry");
    Ok(Registration { client, lease, key, stop, task })
}

async fn put_leased(client: &mut Client, key: &str, value: &str, ttl_secs: i64) -> Result<i64, RegistryError> {
    let lease = client.lease_grant(ttl_secs, None).await?.id();
    client.put(key, value, Some(PutOptions::new().with_lease(lease))).await?;
    Ok(lease)
}

impl Registration {
    /// The registered key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Stops the keep-alive and revokes the lease: the key disappears at once and gateways stop
    /// sending new calls here.
    pub async fn deregister(mut self) -> Result<(), RegistryError> {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
        let id = self.lease.load(std::sync::atomic::Ordering::Relaxed);
        self.client.lease_revoke(id).await?;
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
type Registered = BTreeMap<String, BTreeMap<SocketAddr, u32>>;

/// Parses `<prefix><pool>/<host:port>` and a weight value.
fn parse_entry(prefix: &str, key: &[u8], value: &[u8]) -> Option<(String, SocketAddr, u32)> {
    let key = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    let (pool, addr) = key.split_once('/')?;
    let addr: SocketAddr = addr.parse().ok()?;
    let weight = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(1u32).clamp(1, 1000);
    Some((pool.to_string(), addr, weight))
}

/// What the watcher keeps up to date.
pub(crate) struct Watched {
    /// The configured pools by name.
    pub pools: BTreeMap<String, Arc<Pool>>,
    /// Each pool's static endpoints from the configuration (always members).
    pub fixed: BTreeMap<String, Vec<(SocketAddr, u32)>>,
}

impl Watched {
    fn apply(&self, registered: &Registered) {
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

/// Reads the registry once and applies it; returns the revision to watch from.
async fn sync(
    client: &mut Client,
    prefix: &str,
    watched: &Watched,
    registered: &mut Registered,
) -> Result<i64, RegistryError> {
    let response = client.get(prefix, Some(GetOptions::new().with_prefix())).await?;
    registered.clear();
    for kv in response.kvs() {
        if let Some((pool, addr, weight)) = parse_entry(prefix, kv.key(), kv.value()) {
            registered.entry(pool).or_default().insert(addr, weight);
        }
    }
    watched.apply(registered);
    Ok(response.header().map(|h| h.revision()).unwrap_or(0))
}

/// Follows the registry until `stop` flips: an initial read, then a watch; on any error it
/// reconnects and reads again after a short pause. `ready` gets true after the first read.
pub(crate) async fn watch(
    url: String,
    prefix: String,
    watched: Watched,
    ready: tokio_watch::Sender<bool>,
    mut stop: tokio_watch::Receiver<bool>,
) {
    let mut registered = Registered::new();
    loop {
        let round = async {
            let mut client = Client::connect(endpoints(&url)?, None).await?;
            let revision = sync(&mut client, &prefix, &watched, &mut registered).await?;
            let _ = ready.send(true);
            let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
            let mut stream = client.watch(prefix.as_str(), Some(options)).await?;
            while let Some(response) = stream.message().await? {
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let Some((pool, addr, weight)) = parse_entry(&prefix, kv.key(), kv.value()) else { continue };
                    match event.event_type() {
                        EventType::Put => {
                            registered.entry(pool).or_default().insert(addr, weight);
                        }
                        EventType::Delete => {
                            if let Some(p) = registered.get_mut(&pool) {
                                p.remove(&addr);
                            }
                        }
                    }
                }
                watched.apply(&registered);
            }
            Ok::<(), RegistryError>(())
        };
        tokio::select! {
            result = round => {
                if let Err(e) = result {
                    tracing::warn!(registry = %url, error = %e, "registry watch failed; retrying");
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_urls() {
        assert_eq!(endpoints("etcd://127.0.0.1:2379").unwrap(), vec!["http://127.0.0.1:2379"]);
        assert_eq!(endpoints("etcd://a:1,b:2/").unwrap(), vec!["http://a:1", "http://b:2"]);
        for bad in ["http://a:1", "etcd://", "etcd://a", "etcd://a:0", "etcd://:5"] {
            let msg = endpoints(bad).unwrap_err().to_string();
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
        assert_eq!(parse_entry(p, b"meshwork/registry/urls/nope", b"1"), None);
        assert_eq!(parse_entry(p, b"other/urls/127.0.0.1:5", b"1"), None);
    }
}
