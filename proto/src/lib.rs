//! Every meshwork `.proto` and the types generated from them. Services, the load tester and
//! tests use these modules; `FILE_DESCRIPTOR_SET` feeds gRPC reflection and the gateway's
//! JSON transcoding. The module tree is generated from the packages (`meshwork.<name>.v1` is
//! `pb::<name>::v1`): adding a `.proto` needs no edit here.

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
