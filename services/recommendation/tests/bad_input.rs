//! The bad-input catalogue of every Recommendations RPC, through a real server: missing and
//! malformed ids, skus and categories, unknown enum values, ratings out of range, values on
//! kinds that take none, times far in the future, k and windows out of range, a request_id
//! reused for another request, and a caller acting for someone else. Each answers its code
//! (INVALID_ARGUMENT naming the field), and afterwards the store and the model are exactly as
//! before.

mod support;

use std::time::Duration;

use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::recommendation::v1 as pb;
use meshwork_storage::{Direction, DynStore, Entry, KeyRange, scan_all};
use meshwork_test_support::memory_store;
use prost_types::Timestamp;
use support::*;
use tonic::Code;

async fn snapshot(store: &DynStore) -> Vec<Entry> {
    scan_all(store, KeyRange::prefix(Vec::new()), Direction::Forward).await.expect("scan the store")
}

/// Checks one answer: `Err` with `code`, and for INVALID_ARGUMENT a message naming `field`.
fn check<T: std::fmt::Debug>(what: &str, answer: Result<T, tonic::Status>, code: Code, field: &str) {
    match answer {
        Ok(ok) => panic!("{what}: expected {code:?}, got {ok:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            if code == Code::InvalidArgument {
                assert!(
                    status.message().starts_with(&format!("{field}:")),
                    "{what}: {:?} does not name {field}",
                    status.message()
                );
            }
        }
    }
}

fn as_caller<T>(message: T, subject: &str, roles: &[&str]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::Jwt).encode();
    request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().expect("identity header"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_rejects_bad_input_and_changes_nothing() {
    let store = memory_store();
    let mut reco = Replica::start(store.clone()).await;
    let item = sku("good");
    reco.client.record_interaction(interaction("used-id", "ann", &item, pb::InteractionKind::View, 0.0)).await.unwrap();
    eventually(Duration::from_secs(5), "the view is learned", || {
        let n = reco.live.read(|m| m.interaction_counts(&item)[0]);
        async move { n == 1 }
    })
    .await;
    let before = snapshot(&store).await;
    let model_before = reco.live.snapshot();
    let c = &mut reco.client;

    // RecordInteraction.
    let good = || interaction("new-id", "ann", &item, pb::InteractionKind::Rating, 4.5);
    let future = Timestamp { seconds: 4_000_000_000, nanos: 0 };
    let cases: Vec<(&str, pb::RecordInteractionRequest, &str)> = vec![
        ("no request_id", pb::RecordInteractionRequest { request_id: String::new(), ..good() }, "request_id"),
        ("long request_id", pb::RecordInteractionRequest { request_id: "r".repeat(65), ..good() }, "request_id"),
        ("bad request_id", pb::RecordInteractionRequest { request_id: "a b".into(), ..good() }, "request_id"),
        ("no user", pb::RecordInteractionRequest { user_id: String::new(), ..good() }, "user_id"),
        ("long user", pb::RecordInteractionRequest { user_id: "u".repeat(129), ..good() }, "user_id"),
        ("control user", pb::RecordInteractionRequest { user_id: "a\u{1}".into(), ..good() }, "user_id"),
        ("no item", pb::RecordInteractionRequest { item: String::new(), ..good() }, "item"),
        ("lower-case item", pb::RecordInteractionRequest { item: "abc".into(), ..good() }, "item"),
        ("long item", pb::RecordInteractionRequest { item: "A".repeat(41), ..good() }, "item"),
        ("no kind", pb::RecordInteractionRequest { kind: 0, ..good() }, "kind"),
        ("unknown kind", pb::RecordInteractionRequest { kind: 17, ..good() }, "kind"),
        ("rating 0", pb::RecordInteractionRequest { value: 0.0, ..good() }, "value"),
        ("rating 6", pb::RecordInteractionRequest { value: 6.0, ..good() }, "value"),
        ("rating 3.3", pb::RecordInteractionRequest { value: 3.3, ..good() }, "value"),
        ("rating NaN", pb::RecordInteractionRequest { value: f64::NAN, ..good() }, "value"),
        (
            "value on a view",
            pb::RecordInteractionRequest { kind: pb::InteractionKind::View as i32, value: 1.0, ..good() },
            "value",
        ),
        ("future", pb::RecordInteractionRequest { at: Some(future), ..good() }, "at"),
        ("bad nanos", pb::RecordInteractionRequest { at: Some(Timestamp { seconds: 1, nanos: -5 }), ..good() }, "at"),
        (
            "before 1970",
            pb::RecordInteractionRequest { at: Some(Timestamp { seconds: -10, nanos: 0 }), ..good() },
            "at",
        ),
    ];
    for (what, req, field) in cases {
        check(what, c.record_interaction(req).await, Code::InvalidArgument, field);
    }
    // The same request_id with another request.
    let reused = interaction("used-id", "ann", &item, pb::InteractionKind::Cart, 0.0);
    check("reused request_id", c.record_interaction(reused).await, Code::AlreadyExists, "");
    // Acting for someone else needs the admin role.
    check("for another user", c.record_interaction(as_caller(good(), "bob", &[])).await, Code::PermissionDenied, "");

    // RecommendForUser.
    let rec = || pb::RecommendForUserRequest {
        user_id: "ann".into(),
        k: 5,
        exclude_purchased: true,
        category: String::new(),
    };
    let cases: Vec<(&str, pb::RecommendForUserRequest, &str)> = vec![
        ("no user", pb::RecommendForUserRequest { user_id: String::new(), ..rec() }, "user_id"),
        ("k negative", pb::RecommendForUserRequest { k: -1, ..rec() }, "k"),
        ("k 101", pb::RecommendForUserRequest { k: 101, ..rec() }, "k"),
        ("upper-case category", pb::RecommendForUserRequest { category: "Home".into(), ..rec() }, "category"),
        ("empty segment", pb::RecommendForUserRequest { category: "home//x".into(), ..rec() }, "category"),
        ("six segments", pb::RecommendForUserRequest { category: "a/b/c/d/e/f".into(), ..rec() }, "category"),
    ];
    for (what, req, field) in cases {
        check(what, c.recommend_for_user(req).await, Code::InvalidArgument, field);
    }
    check("someone else's", c.recommend_for_user(as_caller(rec(), "bob", &[])).await, Code::PermissionDenied, "");
    assert!(c.recommend_for_user(as_caller(rec(), "bob", &["admin"])).await.is_ok(), "an admin may");
    assert!(c.recommend_for_user(as_caller(rec(), "ann", &[])).await.is_ok(), "the user may");

    // SimilarItems.
    let sim = || pb::SimilarItemsRequest { item: item.clone(), k: 5 };
    let cases: Vec<(&str, pb::SimilarItemsRequest, &str)> = vec![
        ("no item", pb::SimilarItemsRequest { item: String::new(), ..sim() }, "item"),
        ("bad item", pb::SimilarItemsRequest { item: "x y".into(), ..sim() }, "item"),
        ("k negative", pb::SimilarItemsRequest { k: -3, ..sim() }, "k"),
        ("k 1000", pb::SimilarItemsRequest { k: 1000, ..sim() }, "k"),
    ];
    for (what, req, field) in cases {
        check(what, c.similar_items(req).await, Code::InvalidArgument, field);
    }

    // Trending.
    let window = |seconds: i64, nanos: i32| Some(prost_types::Duration { seconds, nanos });
    let tr = || pb::TrendingRequest { category: String::new(), window: window(3600, 0), k: 5 };
    let cases: Vec<(&str, pb::TrendingRequest, &str)> = vec![
        ("bad category", pb::TrendingRequest { category: "/home".into(), ..tr() }, "category"),
        ("negative window", pb::TrendingRequest { window: window(-60, 0), ..tr() }, "window"),
        ("bad nanos", pb::TrendingRequest { window: window(60, -1), ..tr() }, "window"),
        ("window under a minute", pb::TrendingRequest { window: window(59, 0), ..tr() }, "window"),
        ("window over 30 days", pb::TrendingRequest { window: window(31 * 86_400, 0), ..tr() }, "window"),
        ("k negative", pb::TrendingRequest { k: -1, ..tr() }, "k"),
    ];
    for (what, req, field) in cases {
        check(what, c.trending(req).await, Code::InvalidArgument, field);
    }

    // Nothing changed: not the store, not the model.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(snapshot(&store).await, before, "a rejected call changed the store");
    assert_eq!(reco.live.snapshot().model.differences(&model_before.model, 5), Vec::<String>::new());
    // Good calls still work, and the same request_id with the same request answers the first answer.
    let again =
        c.record_interaction(interaction("used-id", "ann", &item, pb::InteractionKind::View, 0.0)).await.unwrap();
    assert_eq!(again.into_inner().sequence, 1);
}
