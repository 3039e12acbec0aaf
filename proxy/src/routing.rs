//! Routing by gRPC service name and replica selection.
//!
//! A gRPC call's path is `/<package>.<Service>/<Method>`; the [`Router`] maps the service name to
//! a [`Pool`] by the longest route that equals the name or is a dot-separated prefix of it (so an
//! exact service route beats its package's route). A [`Pool`] hands out replicas round robin and
//! skips the replicas a call has already failed to connect to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A set of interchangeable replicas.
#[derive(Debug)]
pub struct Pool {
    name: String,
    replicas: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Pool {
    /// A pool named `name` over `replicas`.
    pub fn new(name: impl Into<String>, replicas: Vec<SocketAddr>) -> Self {
        Self { name: name.into(), replicas, next: AtomicUsize::new(0) }
    }

    /// The pool's name from the configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The replica addresses, in configuration order.
    pub fn replicas(&self) -> &[SocketAddr] {
        &self.replicas
    }

    /// Number of replicas.
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// The next replica index in round-robin order that is not in `exclude`, or `None` when every
    /// replica is excluded.
    pub fn pick(&self, exclude: &[usize]) -> Option<usize> {
        let n = self.replicas.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|i| (start.wrapping_add(i)) % n).find(|idx| !exclude.contains(idx))
    }
}

/// Maps gRPC service names to pools.
#[derive(Debug, Default)]
pub struct Router {
    routes: HashMap<String, Arc<Pool>>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `service` (a full service name or a package prefix) to `pool`, replacing any
    /// earlier route for the same name.
    pub fn insert(&mut self, service: impl Into<String>, pool: Arc<Pool>) {
        self.routes.insert(service.into(), pool);
    }

    /// The pool for a full gRPC service name: the longest route equal to it or a prefix of it
    /// ending at a `.`.
    pub fn lookup(&self, service: &str) -> Option<&Arc<Pool>> {
        let mut candidate = service;
        loop {
            if let Some(pool) = self.routes.get(candidate) {
                return Some(pool);
            }
            candidate = &candidate[..candidate.rfind('.')?];
        }
    }
}

/// Splits a gRPC request path `/<package>.<Service>/<Method>` into service and method.
pub fn parse_grpc_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, n: u16) -> Arc<Pool> {
        Arc::new(Pool::new(name, (0..n).map(|i| SocketAddr::from(([127, 0, 0, 1], 1000 + i))).collect()))
    }

    #[test]
    fn longest_match_wins_and_segments_matter() {
        let mut router = Router::new();
        router.insert("meshwork", pool("all", 1));
        router.insert("meshwork.urlshortener.v1", pool("pkg", 1));
        router.insert("meshwork.urlshortener.v1.UrlShortener", pool("exact", 1));
        let name = |s: &str| router.lookup(s).map(|p| p.name().to_string());
        assert_eq!(name("meshwork.urlshortener.v1.UrlShortener").as_deref(), Some("exact"));
        assert_eq!(name("meshwork.urlshortener.v1.Admin").as_deref(), Some("pkg"));
        assert_eq!(name("meshwork.orders.v1.Orders").as_deref(), Some("all"));
        assert_eq!(name("meshworkx.orders.v1.Orders"), None);
        assert_eq!(name("meshwork.urlshortener.v1.UrlShortenerX").as_deref(), Some("pkg"));
        assert_eq!(name("other.Svc"), None);
    }

    #[test]
    fn round_robin_skips_excluded() {
        let p = pool("p", 3);
        let picks: Vec<_> = (0..6).map(|_| p.pick(&[]).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        for _ in 0..6 {
            assert_ne!(p.pick(&[1]).unwrap(), 1);
        }
        assert_eq!(p.pick(&[0, 1, 2]), None);
        assert_eq!(Pool::new("e", vec![]).pick(&[]), None);
    }

    #[test]
    fn grpc_paths() {
        assert_eq!(parse_grpc_path("/a.B/C"), Some(("a.B", "C")));
        assert_eq!(parse_grpc_path("/a.B/"), None);
        assert_eq!(parse_grpc_path("/a.B"), None);
        assert_eq!(parse_grpc_path("//C"), None);
        assert_eq!(parse_grpc_path("/a.B/C/D"), None);
        assert_eq!(parse_grpc_path("a.B/C"), None);
    }
}
