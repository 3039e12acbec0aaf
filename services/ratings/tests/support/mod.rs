//! What the ratings suites share: the service served in-process, requests, callers, and a
//! snapshot of every `ratings/` key to prove that a refused call changed nothing.

#![allow(dead_code)]

use meshwork_common::server::ServiceContext;
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::ratings::v1 as pb;
use meshwork_proto::pb::ratings::v1::ratings_client::RatingsClient;
use meshwork_storage::{Direction, DynStore, KeyRange, scan_all};
use meshwork_test_support::{TestServer, backends};
use tonic::transport::Channel;

/// The ratings service alone (its mesh points nowhere: orders is "down").
pub struct Ratings {
    pub server: TestServer,
    pub client: RatingsClient<Channel>,
    pub store: DynStore,
}

impl Ratings {
    pub async fn start(ctx: &ServiceContext) -> Ratings {
        let server = TestServer::hosting(meshwork_ratings::hosted, ctx).await;
        let client = RatingsClient::new(server.channel.clone());
        Ratings { server, client, store: ctx.store.clone() }
    }
}

/// Returns a unique sku (`[A-Z0-9-]`).
pub fn sku(name: &str) -> String {
    backends::unique(name).to_uppercase().replace('_', "-")
}

/// Returns a submit of `user`'s review of `sku`.
pub fn submit(sku: &str, user: &str, rating: i32, body: &str) -> pb::SubmitReviewRequest {
    pb::SubmitReviewRequest {
        request_id: backends::unique("sub"),
        sku: sku.into(),
        user_id: user.into(),
        rating,
        title: String::new(),
        body: body.into(),
        media_urls: vec![],
    }
}

/// A clean body: 24 words drawn from a vocabulary by `n` (different `n`, unrelated texts), no
/// contact details.
pub fn body(n: usize) -> String {
    const WORDS: &[&str] = &[
        "fabric",
        "sturdy",
        "stitching",
        "washes",
        "colour",
        "photos",
        "arrived",
        "quickly",
        "box",
        "battery",
        "lasts",
        "week",
        "screen",
        "bright",
        "sound",
        "clear",
        "handle",
        "comfortable",
        "price",
        "fair",
        "zipper",
        "broke",
        "month",
        "kids",
        "love",
        "daily",
        "use",
        "setup",
        "easy",
        "manual",
        "confusing",
        "smell",
        "strong",
        "first",
        "days",
        "size",
        "runs",
        "small",
        "ordered",
        "larger",
        "fits",
        "well",
        "heavy",
        "light",
        "travel",
        "desk",
        "kitchen",
        "garden",
        "gift",
        "sister",
        "works",
        "expected",
    ];
    let mut x = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..24)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            WORDS[(x % WORDS.len() as u64) as usize]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Wraps `message` with the verified identity of `subject` with `roles`.
pub fn as_caller<T>(message: T, subject: &str, roles: &[&str]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::Jwt).encode();
    request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().unwrap());
    request
}

/// Returns every key and value under `ratings/` except idempotency records.
pub async fn snapshot(store: &DynStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    scan_all(store, KeyRange::prefix(b"ratings/".to_vec()), Direction::Forward)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| !e.key.starts_with(b"ratings/requests/"))
        .map(|e| (e.key, e.value))
        .collect()
}
