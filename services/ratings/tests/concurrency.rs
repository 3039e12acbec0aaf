//! The core mechanism under concurrency, on the memory, embedded and etcd stores: 100
//! concurrent submits, edits and moderation decisions on one product, through two replicas
//! sharing the store, leave its incremental
//! aggregate exactly equal to a recomputation from the stored reviews, and the event log
//! holds one event per change whose `previous_*` fields chain without a gap.

mod support;

use std::collections::HashMap;

use meshwork_common::Record;
use meshwork_common::events::EventLog;
use meshwork_proto::pb::ratings::v1 as pb;
use meshwork_ratings::aggregate::Aggregate;
use meshwork_ratings::keys;
use meshwork_ratings::model::ReviewRecord;
use meshwork_ratings::service::recompute;
use meshwork_storage::{Direction, KeyRange, scan_all};
use meshwork_test_support::backends::{Backend, unique};
use meshwork_test_support::{context, on_every_backend};
use prost::Message;
use support::{Ratings, body, sku, submit};

async fn aggregates_stay_exact(backend: Backend) {
    let store = backend.store.clone();
    // Two replicas on one store: each queues its own writes per product, and the two race
    // optimistically against each other.
    let r = Ratings::start(&context(store.clone())).await;
    let r2 = Ratings::start(&context(store.clone())).await;
    let replica = |n: usize| if n.is_multiple_of(2) { r.client.clone() } else { r2.client.clone() };
    let product = sku("C");
    let run = unique("c");
    let user = |i: usize| format!("{run}-user-{i}");

    // 40 reviews exist before the storm.
    let mut ids = Vec::new();
    for i in 0..40 {
        let mut client = r.client.clone();
        let review = client.submit_review(submit(&product, &user(i), (i % 5 + 1) as i32, &body(i))).await.unwrap();
        ids.push(review.into_inner().review.unwrap().review_id);
    }

    // 40 new reviews, 30 edits (users 0-29) and 30 decisions (users 10-39) at once: edits and
    // decisions overlap on 20 reviews.
    let mut tasks = Vec::new();
    for i in 40..80 {
        let mut client = replica(i);
        let req = submit(&product, &user(i), (i % 5 + 1) as i32, &body(i));
        tasks.push(tokio::spawn(async move { client.submit_review(req).await.map(|_| ()) }));
    }
    for i in 0..30 {
        let mut client = replica(i);
        let req = submit(&product, &user(i), ((i + 2) % 5 + 1) as i32, &body(1000 + i));
        tasks.push(tokio::spawn(async move { client.submit_review(req).await.map(|_| ()) }));
    }
    for (n, id) in ids.iter().enumerate().skip(10) {
        let mut client = replica(n / 2);
        let decision = if n % 2 == 0 { pb::ModerationDecision::Reject } else { pb::ModerationDecision::Publish };
        let req =
            pb::ModerateRequest { review_id: id.clone(), decision: decision as i32, reason: format!("decision {n}") };
        tasks.push(tokio::spawn(async move { client.moderate(req).await.map(|_| ()) }));
    }
    assert_eq!(tasks.len(), 100);
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    let reviews: Vec<ReviewRecord> = scan_all(&store, KeyRange::prefix(keys::reviews_of(&product)), Direction::Forward)
        .await
        .unwrap()
        .iter()
        .map(|e| ReviewRecord::decode(&e.value).unwrap())
        .collect();
    assert_eq!(reviews.len(), 80, "one review per user");
    let stored = Aggregate::decode(&store.get(&keys::aggregate(&product)).await.unwrap().unwrap().value).unwrap();
    let recomputed = recompute(&reviews);
    assert_eq!(stored, recomputed, "incremental aggregate == recomputation");
    assert!(recomputed.count > 0);

    let mut client = r.client.clone();
    let rating = client.get_product_rating(pb::GetProductRatingRequest { sku: product.clone() }).await.unwrap();
    let rating = rating.into_inner().rating.unwrap();
    assert_eq!(rating.count, recomputed.count);
    assert_eq!(rating.histogram, recomputed.histogram.to_vec());

    // One event per change; each one's previous_* is the state the one before left.
    let events = EventLog::new(store, "ratings").read(1, 100_000).await.unwrap();
    let mut last: HashMap<String, (i32, i32)> = HashMap::new();
    let mut mine = 0;
    for event in events {
        let payload = pb::ReviewEvent::decode(&*event.payload).unwrap();
        if payload.sku != product {
            continue;
        }
        mine += 1;
        let before = last.get(&payload.review_id).copied().unwrap_or((0, 0));
        assert_eq!((payload.previous_status, payload.previous_rating), before, "{} {payload:?}", event.r#type);
        last.insert(payload.review_id.clone(), (payload.status, payload.rating));
    }
    assert_eq!(mine, 40 + 100);
    let mut folded = Aggregate::default();
    for review in &reviews {
        let (status, rating) = last[&review.review_id];
        assert_eq!((status, rating), (review.status.to_pb() as i32, review.rating), "the log ends where the store is");
        if status == pb::ReviewStatus::Published as i32 {
            folded.apply(rating, review.verified, 1);
        }
    }
    assert_eq!(folded, stored, "the event log folds to the same aggregate");
}

on_every_backend!(aggregates_stay_exact);
