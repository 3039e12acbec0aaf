//! Routing by gRPC service name, method and metadata.
//!
//! A gRPC call's path is `/<package>.<Service>/<Method>`; the [`Router`] maps it to a [`Route`]
//! (its pool or weighted split of pools, which methods are idempotent, its timeout). A route for
//! `<package>.<Service>/<Method>` (a method-level override) wins; otherwise the longest route that
//! equals the service name or is a dot-separated prefix of it (so an exact service route beats its
//! package's route). Among the routes of one name, those with header matches are tried first
//! (more headers first), and the first whose headers all match wins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

pub use crate::pool::Pool;

/// What the gateway does with calls to one service, package or method.
#[derive(Debug)]
pub struct Route {
    /// The service name, package prefix or `<service>/<method>`, as configured.
    pub service: String,
    /// The route's main pool.
    pub pool: Arc<Pool>,
    /// Every pool with its cumulative weight (the main pool first); one entry without splits.
    splits: Vec<(Arc<Pool>, u32)>,
    /// Metadata that must all be present with these values.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Methods safe to retry after UNAVAILABLE.
    idempotent: Vec<Box<str>>,
    /// Every method is idempotent (`"*"`).
    all_idempotent: bool,
    /// Upper bound of every call's deadline.
    pub timeout: Option<Duration>,
    /// Calls without credentials may use the route when the gateway authenticates (`[auth]`).
    pub allow_anonymous: bool,
}

impl Route {
    /// A route to `pool` with no idempotent method and no timeout.
    pub fn new(service: impl Into<String>, pool: Arc<Pool>) -> Self {
        Self {
            service: service.into(),
            splits: vec![(pool.clone(), 1)],
            pool,
            headers: Vec::new(),
            idempotent: Vec::new(),
            all_idempotent: false,
            timeout: None,
            allow_anonymous: false,
        }
    }

    /// Lets calls without credentials use the route (see [`crate::authn`]).
    pub fn with_allow_anonymous(mut self, allow: bool) -> Self {
        self.allow_anonymous = allow;
        self
    }

    /// Splits calls between the main pool (`weight`) and `others` (pool, weight), at random in
    /// proportion to the weights (canary releases).
    pub fn with_splits(mut self, weight: u32, others: Vec<(Arc<Pool>, u32)>) -> Self {
        let mut total = 0u32;
        self.splits.clear();
        for (pool, w) in std::iter::once((self.pool.clone(), weight)).chain(others) {
            if w > 0 {
                total = total.saturating_add(w);
                self.splits.push((pool, total));
            }
        }
        if self.splits.is_empty() {
            self.splits.push((self.pool.clone(), 1));
        }
        self
    }

    /// Applies the route only to calls carrying all of `headers` (name, exact value).
    pub fn with_headers(mut self, headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        self.headers = headers;
        self
    }

    /// The pool for one call: the main pool, or one of the splits by weight.
    pub fn pick_pool(&self) -> &Arc<Pool> {
        if self.splits.len() == 1 {
            return &self.splits[0].0;
        }
        let total = self.splits.last().map_or(1, |(_, w)| *w);
        let ticket = (crate::balance::random_below(total as usize) as u32) + 1;
        let idx = self.splits.partition_point(|(_, cumulative)| *cumulative < ticket);
        &self.splits[idx.min(self.splits.len() - 1)].0
    }

    /// Every pool of the route with its share in percent.
    pub fn shares(&self) -> Vec<(&Arc<Pool>, f64)> {
        let total = f64::from(self.splits.last().map_or(1, |(_, w)| *w));
        let mut previous = 0;
        self.splits
            .iter()
            .map(|(pool, cumulative)| {
                let share = f64::from(cumulative - previous) * 100.0 / total;
                previous = *cumulative;
                (pool, share)
            })
            .collect()
    }

    /// The header matches, as configured.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    fn matches<'h>(&self, header: &impl Fn(&HeaderName) -> Option<&'h [u8]>) -> bool {
        self.headers.iter().all(|(name, value)| header(name) == Some(value.as_bytes()))
    }

    /// Marks methods (names, or `"*"`) as idempotent.
    pub fn with_idempotent(mut self, methods: &[String]) -> Self {
        self.all_idempotent = methods.iter().any(|m| m == "*");
        self.idempotent = methods.iter().filter(|m| *m != "*").map(|m| m.as_str().into()).collect();
        self
    }

    /// Sets the route's timeout.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether `method` may be retried after an UNAVAILABLE answer.
    pub fn is_idempotent(&self, method: &str) -> bool {
        self.all_idempotent || self.idempotent.iter().any(|m| &**m == method)
    }

    /// The methods marked idempotent, as configured.
    pub fn idempotent_methods(&self) -> Vec<String> {
        let mut out: Vec<String> = self.idempotent.iter().map(|m| m.to_string()).collect();
        if self.all_idempotent {
            out.push("*".into());
        }
        out
    }
}

/// Maps gRPC calls to routes.
#[derive(Debug, Default)]
pub struct Router {
    /// Service name or package prefix -> its routes (header-matching ones first).
    routes: HashMap<String, Vec<Arc<Route>>, Fast>,
    /// Service name -> method -> its routes (method-level overrides).
    methods: HashMap<String, HashMap<String, Vec<Arc<Route>>, Fast>, Fast>,
}

/// The router's maps are read on every call: a fast hasher.
type Fast = foldhash::fast::RandomState;

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `route` (for a service name, a package prefix or `<service>/<method>`), replacing an
    /// earlier route with the same name and header matches.
    pub fn insert(&mut self, route: Route) {
        let list = match route.service.split_once('/') {
            Some((service, method)) => {
                self.methods.entry(service.to_string()).or_default().entry(method.to_string()).or_default()
            }
            None => self.routes.entry(route.service.clone()).or_default(),
        };
        list.retain(|r| r.headers != route.headers);
        list.push(Arc::new(route));
        // More specific (more header matches) first; a route without matches last.
        list.sort_by_key(|r| std::cmp::Reverse(r.headers.len()));
    }

    /// Every route, in no particular order.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.values().chain(self.methods.values().flat_map(|m| m.values())).flatten()
    }

    /// The route for a call to `service`/`method` with request `headers`: a method-level route,
    /// else the longest service or package route equal to the service or a prefix of it ending
    /// at a `.`; at each name the first route whose header matches hold.
    pub fn lookup(&self, service: &str, method: &str, headers: &HeaderMap) -> Option<&Arc<Route>> {
        self.lookup_by(service, method, |name| headers.get(name).map(HeaderValue::as_bytes))
    }

    /// [`Router::lookup`] with the request's headers read through `header` (the first value of
    /// a header, by lowercase name): the fast path's requests are not `HeaderMap`s.
    pub fn lookup_by<'h>(
        &self,
        service: &str,
        method: &str,
        header: impl Fn(&HeaderName) -> Option<&'h [u8]>,
    ) -> Option<&Arc<Route>> {
        if !self.methods.is_empty()
            && let Some(route) =
                self.methods.get(service).and_then(|m| m.get(method)).and_then(|l| first_match(l, &header))
        {
            return Some(route);
        }
        let mut candidate = service;
        loop {
            if let Some(route) = self.routes.get(candidate).and_then(|l| first_match(l, &header)) {
                return Some(route);
            }
            candidate = &candidate[..candidate.rfind('.')?];
        }
    }
}

/// The first route of `list` whose header matches hold.
fn first_match<'a, 'h>(
    list: &'a [Arc<Route>],
    header: &impl Fn(&HeaderName) -> Option<&'h [u8]>,
) -> Option<&'a Arc<Route>> {
    list.iter().find(|r| r.matches(header))
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
    use std::net::SocketAddr;

    use super::*;

    fn route(service: &str, name: &str) -> Route {
        Route::new(service, Arc::new(Pool::new(name, vec![SocketAddr::from(([127, 0, 0, 1], 1000))])))
    }

    #[test]
    fn longest_match_wins_and_segments_matter() {
        let mut router = Router::new();
        router.insert(route("meshwork", "all"));
        router.insert(route("meshwork.urlshortener.v1", "pkg"));
        router.insert(route("meshwork.urlshortener.v1.UrlShortener", "exact"));
        let none = HeaderMap::new();
        let name = |s: &str| router.lookup(s, "M", &none).map(|r| r.pool.name().to_string());
        assert_eq!(name("meshwork.urlshortener.v1.UrlShortener").as_deref(), Some("exact"));
        assert_eq!(name("meshwork.urlshortener.v1.Admin").as_deref(), Some("pkg"));
        assert_eq!(name("meshwork.orders.v1.Orders").as_deref(), Some("all"));
        assert_eq!(name("meshworkx.orders.v1.Orders"), None);
        assert_eq!(name("meshwork.urlshortener.v1.UrlShortenerX").as_deref(), Some("pkg"));
        assert_eq!(name("other.Svc"), None);
    }

    fn pool(name: &str) -> Arc<Pool> {
        Arc::new(Pool::new(name, vec![SocketAddr::from(([127, 0, 0, 1], 1000))]))
    }

    #[test]
    fn methods_and_headers_take_precedence() {
        let mut router = Router::new();
        router.insert(Route::new("a.B", pool("default")));
        router.insert(Route::new("a.B/Get", pool("get")));
        router.insert(
            Route::new("a.B", pool("canary"))
                .with_headers(vec![(HeaderName::from_static("x-canary"), HeaderValue::from_static("1"))]),
        );
        let mut canary = HeaderMap::new();
        canary.insert("x-canary", HeaderValue::from_static("1"));
        let mut other = HeaderMap::new();
        other.insert("x-canary", HeaderValue::from_static("2"));
        let name = |m: &str, h: &HeaderMap| router.lookup("a.B", m, h).unwrap().pool.name().to_string();
        assert_eq!(name("Put", &HeaderMap::new()), "default");
        assert_eq!(name("Put", &other), "default");
        assert_eq!(name("Put", &canary), "canary");
        assert_eq!(name("Get", &canary), "get", "a method-level route wins");
        assert_eq!(router.routes().count(), 3);
    }

    #[test]
    fn weighted_splits_follow_weights() {
        let route = Route::new("a.B", pool("stable")).with_splits(90, vec![(pool("canary"), 10)]);
        let canary = (0..20_000).filter(|_| route.pick_pool().name() == "canary").count();
        assert!((1700..=2300).contains(&canary), "{canary} of 20000");
        let shares: Vec<_> = route.shares().into_iter().map(|(p, s)| (p.name().to_string(), s)).collect();
        assert_eq!(shares, vec![("stable".to_string(), 90.0), ("canary".to_string(), 10.0)]);
        let only_canary = Route::new("a.B", pool("stable")).with_splits(0, vec![(pool("canary"), 5)]);
        assert!((0..100).all(|_| only_canary.pick_pool().name() == "canary"));
    }

    #[test]
    fn idempotent_methods() {
        let r = route("a.B", "p").with_idempotent(&["Get".into(), "List".into()]);
        assert!(r.is_idempotent("Get") && r.is_idempotent("List"));
        assert!(!r.is_idempotent("Put") && !r.is_idempotent("get"));
        let all = route("a.B", "p").with_idempotent(&["*".into()]);
        assert!(all.is_idempotent("Anything"));
        assert!(!route("a.B", "p").is_idempotent("Get"));
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
