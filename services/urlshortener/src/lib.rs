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

use meshwork_common::server::{HostedService, MAX_MESSAGE_BYTES, ServiceContext};
use meshwork_proto::pb::urlshortener::v1::url_shortener_server::UrlShortenerServer;
use tonic::service::Routes;

pub use grpc::{LINK_STATE_METADATA, UrlShortenerService};
pub use service::{Config, Shortener};

/// The gRPC service name.
pub const SERVICE_NAME: &str = "meshwork.urlshortener.v1.UrlShortener";

/// Builds the service on `ctx` and starts its background tasks (cache coherence watch, click
/// flushing); the returned service's shutdown hook stops them and flushes the clicks.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    let config = Config { public_url: ctx.public_url.clone(), ..Config::default() };
    hosted_with(ctx, config)
}

/// [`hosted`] with explicit tunables.
pub fn hosted_with(ctx: &ServiceContext, config: Config) -> HostedService {
    let shortener = Arc::new(Shortener::new(ctx.store.clone(), ctx.clock.clone(), config));
    let watch = tokio::spawn(shortener.clone().watch_links());
    let flush = tokio::spawn(shortener.clone().flush_clicks_periodically());
    let server = UrlShortenerServer::new(UrlShortenerService::new(shortener.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let on_shutdown: meshwork_common::server::ShutdownHook = Box::new(move || {
        Box::pin(async move {
            watch.abort();
            flush.abort();
            match shortener.clicks().flush().await {
                Ok(()) => tracing::info!("click counts flushed"),
                Err(e) => tracing::error!(error = %e, "could not flush click counts on shutdown"),
            }
        })
    });
    HostedService {
        name: "urlshortener",
        grpc_names: vec![SERVICE_NAME],
        register: Box::new(move |routes: Routes| routes.add_service(server)),
        on_shutdown: vec![on_shutdown],
    }
}
