//! Every meshwork `.proto` and the types generated from them. Services, the load tester and
//! tests use these modules; `FILE_DESCRIPTOR_SET` feeds gRPC reflection and the gateway's
//! JSON transcoding. The module tree is generated from the packages (`meshwork.<name>.v1` is
//! `pb::<name>::v1`): adding a `.proto` needs no edit here.
//!
//! This crate is also meshwork's Rust SDK: the tonic client of every service is
//! `pb::<name>::v1::<service>_client::<Service>Client`, and each package's page shows how to
//! call it through the gateway (the examples are generated from the `.proto` files by
//! `build.rs`, and `cargo test --doc -p meshwork-proto` compiles every one). A call with a
//! deadline, a token and the caller's trace context:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use meshwork_proto::pb::urlshortener::v1::url_shortener_client::UrlShortenerClient;
//! use meshwork_proto::pb::urlshortener::v1::ShortenRequest;
//!
//! let mut client = UrlShortenerClient::connect("http://127.0.0.1:8080").await?;
//! let mut request = tonic::Request::new(ShortenRequest {
//!     long_url: "https://example.com/a/long/path".into(),
//!     ..Default::default()
//! });
//! request.set_timeout(std::time::Duration::from_secs(2));
//! request.metadata_mut().insert("authorization", "Bearer <token>".parse()?);
//! request.metadata_mut().insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse()?);
//! let link = client.shorten(request).await?.into_inner();
//! println!("{link:?}");
//! # Ok(())
//! # }
//! ```

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// The encoded `FileDescriptorSet` of every meshwork proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/meshwork_descriptor.bin"));

// Generated types, one module per package: `pb::<service>::v1` for `meshwork.<service>.v1`.
include!(concat!(env!("OUT_DIR"), "/pb_tree.rs"));

/// A generated tonic server whose message size limits can be set, so that the one service
/// builder (`meshwork_common`) gives every service the same limits. Implemented for every
/// server generated here.
pub trait MessageLimits {
    /// Returns the server with `max` bytes as its decoding and encoding limit.
    fn with_message_limits(self, max: usize) -> Self;
}

include!(concat!(env!("OUT_DIR"), "/message_limits.rs"));
