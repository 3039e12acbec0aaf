//! The seed's URL shortener as a gRPC service (`meshwork.urlshortener.v1.UrlShortener`).
//!
//! Codes are 7 base62 characters derived from ids leased in blocks from a counter in the store
//! (a conditional write per block), so any number of replicas on one shared store never collide
//! and never reuse a code. Custom aliases win by create-if-absent: exactly one of any number of
//! concurrent requests gets an alias. Resolve runs from an in-process cache kept coherent by a
//! store watch; clicks are counted in memory and flushed in batches.

#![forbid(unsafe_code)]

pub mod clicks;
pub mod codes;
pub mod grpc;
pub mod keys;
pub mod model;
pub mod service;
pub mod validate;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{HttpRoute, RedirectRoute, ServiceSpec, grpc_name};
use meshwork_proto::pb::urlshortener::v1::url_shortener_server::UrlShortenerServer;

pub use grpc::{LINK_STATE_METADATA, UrlShortenerService};
pub use service::{Config, Shortener};

/// The gRPC service name.
pub const SERVICE_NAME: &str = <UrlShortenerServer<UrlShortenerService> as tonic::server::NamedService>::NAME;

/// The service's entry in the mesh's table: `GET /{code}` redirects through `Resolve` (410
/// for an expired or deleted link), and the read-only methods may be retried by the gateway.
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "urlshortener",
        about: "short links with custom aliases, expiry, click analytics and HTTP redirects",
        grpc_services: vec![grpc_name::<UrlShortenerServer<UrlShortenerService>>()],
        hosted,
        http_routes: vec![HttpRoute::Redirect(RedirectRoute {
            path: "/{code}",
            param_pattern: Some("[A-Za-z0-9_-]{1,64}"),
            method: "meshwork.urlshortener.v1.UrlShortener/Resolve",
            location_field: "long_url",
            header_fields: &[("referer", "referrer")],
            head_fields: &[("skip_click", "true")],
            gone_when: Some((LINK_STATE_METADATA, &["expired", "deleted"])),
        })],
        idempotent_methods: vec!["Resolve", "GetLink", "GetStats"],
    }
}

/// Builds the service on `ctx` and starts its background tasks (cache coherence watch, click
/// flushing); the returned service's shutdown hook stops them and flushes the clicks.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    let config = Config { public_url: ctx.public_url.clone(), ..Config::default() };
    hosted_with(ctx, config)
}

/// [`hosted`] with explicit tunables.
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let flush_every = config.click_flush_interval;
    let shortener = Arc::new(Shortener::new(ctx.store.clone(), ctx.clock.clone(), config));
    let clicks = shortener.clicks().counters();
    HostedService::builder("urlshortener")
        .grpc(UrlShortenerServer::new(UrlShortenerService::new(shortener.clone())))
        .task(shortener.links().watch_task())
        .task(clicks.flush_task(flush_every))
        .on_shutdown(clicks.shutdown_hook())
        .build()
}
