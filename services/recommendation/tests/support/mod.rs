//! What the recommendation tests share: a replica of the service on a store (with its live
//! model, to read and rebuild), clients, requests, and events appended straight to the other
//! services' logs (reviews, products) the way those services append them.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use meshwork_common::EventLog;
use meshwork_proto::pb::catalog::v1 as catalog;
use meshwork_proto::pb::ratings::v1 as ratings;
use meshwork_proto::pb::recommendation::v1 as pb;
use meshwork_recommendation::{Config, Live};
use meshwork_storage::DynStore;
use meshwork_test_support::{TestServer, context};
use prost::Message;
use tonic::transport::Channel;

pub use pb::recommendations_client::RecommendationsClient;

/// One replica: its server, a client and its live model.
pub struct Replica {
    pub server: TestServer,
    pub client: RecommendationsClient<Channel>,
    pub live: Live,
}

impl Replica {
    /// Serves a replica on `store` with `config`.
    pub async fn start_with(store: DynStore, config: Config) -> Replica {
        let (hosted, live) = meshwork_recommendation::hosted_with(&context(store), config);
        let server = TestServer::start(vec![hosted]).await;
        let client = RecommendationsClient::new(server.channel.clone());
        Replica { server, client, live }
    }

    /// Serves a replica on `store` with the default configuration (no periodic rebuild).
    pub async fn start(store: DynStore) -> Replica {
        Replica::start_with(store, Config { rebuild_every: Duration::ZERO, ..Config::default() }).await
    }

    /// Returns the items similar to `item`, as (item, score).
    pub async fn similar(&mut self, item: &str, k: i32) -> Vec<(String, f64)> {
        let r =
            self.client.similar_items(pb::SimilarItemsRequest { item: item.into(), k }).await.expect("similar items");
        r.into_inner().items.into_iter().map(|s| (s.item, s.score)).collect()
    }

    /// Returns the user's recommendations.
    pub async fn recommend(&mut self, user: &str, k: i32, category: &str) -> pb::RecommendForUserResponse {
        let req =
            pb::RecommendForUserRequest { user_id: user.into(), k, exclude_purchased: true, category: category.into() };
        self.client.recommend_for_user(req).await.expect("recommend").into_inner()
    }

    /// Records an interaction (request id chosen fresh).
    pub async fn record(&mut self, user: &str, item: &str, kind: pb::InteractionKind, value: f64) -> u64 {
        let req = interaction(&meshwork_test_support::backends::unique("rq"), user, item, kind, value);
        self.client.record_interaction(req).await.expect("record interaction").into_inner().sequence
    }
}

/// A RecordInteraction request.
pub fn interaction(
    request_id: &str,
    user: &str,
    item: &str,
    kind: pb::InteractionKind,
    value: f64,
) -> pb::RecordInteractionRequest {
    pb::RecordInteractionRequest {
        request_id: request_id.into(),
        user_id: user.into(),
        item: item.into(),
        kind: kind as i32,
        value,
        at: None,
    }
}

/// Appends a review event to the ratings log, as the ratings service does.
pub async fn append_review(store: &DynStore, user: &str, sku: &str, rating: i32, status: ratings::ReviewStatus) {
    let event = ratings::ReviewEvent {
        review_id: format!("rev-{user}-{sku}"),
        sku: sku.into(),
        user_id: user.into(),
        rating,
        status: status as i32,
        ..Default::default()
    };
    EventLog::new(store.clone(), "ratings")
        .append_alone("review.submitted", event.encode_to_vec())
        .await
        .expect("append review");
}

/// Appends a product event to the catalog log, as the catalog does.
pub async fn append_product(store: &DynStore, sku: &str, category: &str) {
    let product =
        catalog::Product { sku: sku.into(), category: category.into(), title: sku.into(), ..Default::default() };
    EventLog::new(store.clone(), "catalog")
        .append_alone("catalog.product_created", product.encode_to_vec())
        .await
        .expect("append product");
}

/// Upper-cased unique sku.
pub fn sku(name: &str) -> String {
    meshwork_test_support::backends::unique(name).to_uppercase().replace('_', "-")
}

/// Polls `check` every 10 ms until it holds or `within` passes; returns how long it took.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
