//! Every meshwork `.proto` and the types generated from them. Services, the gateway, the
//! load tester and tests all use these modules; `FILE_DESCRIPTOR_SET` feeds gRPC reflection.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// The encoded `FileDescriptorSet` of every meshwork proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/meshwork_descriptor.bin"));

/// Generated types, one module per `meshwork.<service>.v1` package.
pub mod pb {
    /// The URL shortener (`meshwork.urlshortener.v1`).
    pub mod urlshortener {
        pub mod v1 {
            tonic::include_proto!("meshwork.urlshortener.v1");
        }
    }
}

/// Fully qualified gRPC service names of every meshwork service, for routing and health.
pub const SERVICE_NAMES: &[&str] = &["meshwork.urlshortener.v1.UrlShortener"];
