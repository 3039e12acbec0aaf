//! The model learns from the shop's real events: a purchase made through the orders service
//! (create, pay, confirm) shows in SimilarItems of the bought item within a second, on every
//! backend; published reviews move the model and withdrawn ones leave it; catalog categories
//! filter recommendations and trending; a user without history gets popularity in the
//! category; and a full rebuild from the logs equals the incremental model, also for a
//! replica started later, whose first answers wait for it to catch up.

mod support;

use std::time::Duration;

use meshwork_proto::pb::orders::v1 as orders;
use meshwork_proto::pb::payments::v1 as pay;
use meshwork_proto::pb::ratings::v1::ReviewStatus;
use meshwork_proto::pb::recommendation::v1 as pb;
use meshwork_storage::DynStore;
use meshwork_test_support::backends::{self, Backend};
use meshwork_test_support::{TestServer, context, on_every_backend};
use support::*;

/// Creates, pays and confirms an order of `skus` for `user` through the orders service.
async fn buy(channel: &tonic::transport::Channel, user: &str, skus: &[&str]) {
    let mut orders = orders::orders_client::OrdersClient::new(channel.clone());
    let mut payments = pay::payments_client::PaymentsClient::new(channel.clone());
    let order = orders
        .create_order(orders::CreateOrderRequest {
            request_id: backends::unique("ord"),
            user_id: user.into(),
            lines: skus
                .iter()
                .map(|s| orders::OrderLine {
                    sku: s.to_string(),
                    title: s.to_string(),
                    quantity: 1,
                    unit_price_minor: 500,
                })
                .collect(),
            currency: "USD".into(),
            shipping_address: Some(orders::Address {
                name: "Ada".into(),
                line1: "1 Main St".into(),
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create order")
        .into_inner()
        .order
        .expect("order");
    let payment = payments
        .authorize(pay::AuthorizeRequest {
            request_id: backends::unique("auth"),
            order_id: order.order_id.clone(),
            user_id: user.into(),
            amount_minor: order.total_minor,
            currency: "USD".into(),
            payment_token: "tok_ok".into(),
        })
        .await
        .expect("authorize")
        .into_inner()
        .payment
        .expect("payment");
    payments
        .capture(pay::CaptureRequest {
            request_id: backends::unique("cap"),
            payment_id: payment.payment_id.clone(),
            amount_minor: 0,
        })
        .await
        .expect("capture");
    orders
        .transition_order(orders::TransitionOrderRequest {
            order_id: order.order_id,
            to: orders::OrderState::Confirmed as i32,
            expected_version: order.version,
            reason: String::new(),
            payment_id: payment.payment_id,
        })
        .await
        .expect("confirm");
}

async fn purchase_shows_in_similar_items_within_a_second(backend: Backend) {
    let store = backend.store.clone();
    let (shop, _ctx) =
        TestServer::mesh(&[meshwork_payments::hosted, meshwork_orders::hosted], context(store.clone())).await;
    let mut reco = Replica::start(store.clone()).await;
    let (kettle, toaster, mug) = (sku("kettle"), sku("toaster"), sku("mug"));
    let first = backends::unique("buyer");
    buy(&shop.channel, &first, &[&kettle, &toaster]).await;
    let took = eventually(Duration::from_secs(1), "first purchase in SimilarItems", || {
        let (mut c, kettle, toaster) = (reco.client.clone(), kettle.clone(), toaster.clone());
        async move {
            let r = c.similar_items(pb::SimilarItemsRequest { item: kettle, k: 5 }).await.expect("similar");
            r.into_inner().items.iter().any(|s| s.item == toaster)
        }
    })
    .await;
    println!("purchase -> SimilarItems: {took:?}");
    // A second customer buys the kettle with a mug: the mug joins the kettle's neighbours.
    buy(&shop.channel, &backends::unique("buyer"), &[&kettle, &mug]).await;
    eventually(Duration::from_secs(1), "second purchase in SimilarItems", || {
        let (mut c, kettle, mug) = (reco.client.clone(), kettle.clone(), mug.clone());
        async move {
            let r = c.similar_items(pb::SimilarItemsRequest { item: kettle, k: 5 }).await.expect("similar");
            r.into_inner().items.iter().any(|s| s.item == mug)
        }
    })
    .await;
    let similar = reco.similar(&kettle, 5).await;
    assert_eq!(similar.len(), 2, "{similar:?}");
    // cos(kettle, toaster) = 16 / (sqrt(32) * 4) = 1/sqrt(2).
    assert!((similar[0].1 - 0.5f64.sqrt()).abs() < 1e-9, "{similar:?}");
    // The first buyer is recommended the mug, because of the kettle, and not what they bought.
    let r = reco.recommend(&first, 5, "").await;
    assert_eq!(r.items[0].item, mug, "{r:?}");
    assert_eq!(r.items[0].reason, format!("because you bought {kettle}"));
    assert!(r.items.iter().all(|s| s.item != kettle && s.item != toaster));
}

on_every_backend!(purchase_shows_in_similar_items_within_a_second);

async fn wait_for_weight(live: &meshwork_recommendation::Live, user: &str, item: &str, want: f64) {
    eventually(Duration::from_secs(5), &format!("weight of ({user}, {item}) = {want}"), || {
        let got = live.read(|m| m.weight(user, item));
        async move { got == want }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_reviews_move_the_model_and_withdrawn_ones_leave_it() {
    let store = meshwork_test_support::memory_store();
    let reco = Replica::start(store.clone()).await;
    let (a, b) = (sku("book"), sku("lamp"));
    append_review(&store, "ann", &a, 5, ReviewStatus::Published).await;
    append_review(&store, "ann", &b, 4, ReviewStatus::Pending).await;
    wait_for_weight(&reco.live, "ann", &a, 5.0).await;
    assert_eq!(reco.live.read(|m| m.weight("ann", &b)), 0.0, "a pending review does not count");
    append_review(&store, "ann", &b, 4, ReviewStatus::Published).await;
    wait_for_weight(&reco.live, "ann", &b, 4.0).await;
    assert_eq!(reco.live.read(|m| m.similar(&a, 5))[0].item, b);
    // An edit replaces the rating; leaving PUBLISHED removes it.
    append_review(&store, "ann", &a, 2, ReviewStatus::Published).await;
    wait_for_weight(&reco.live, "ann", &a, 2.0).await;
    append_review(&store, "ann", &b, 4, ReviewStatus::Rejected).await;
    wait_for_weight(&reco.live, "ann", &b, 0.0).await;
    assert!(reco.live.read(|m| m.similar(&a, 5)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn categories_filter_and_cold_start_users_get_popularity_in_the_category() {
    let store = meshwork_test_support::memory_store();
    let mut reco = Replica::start(store.clone()).await;
    let (tv, radio, sock) = (sku("tv"), sku("radio"), sku("sock"));
    append_product(&store, &tv, "electronics/tv").await;
    append_product(&store, &radio, "electronics/audio").await;
    append_product(&store, &sock, "clothing").await;
    for (user, item) in [("u1", &tv), ("u2", &tv), ("u1", &radio), ("u1", &sock), ("u2", &sock), ("u3", &sock)] {
        reco.record(user, item, pb::InteractionKind::View, 0.0).await;
    }
    reco.record("u1", &tv, pb::InteractionKind::Purchase, 0.0).await;
    eventually(Duration::from_secs(5), "the catalog and the views are learned", || {
        let ok = reco.live.read(|m| m.support(&sock) == 3 && m.category(&sock) == Some("clothing"));
        async move { ok }
    })
    .await;
    let r = reco.recommend("newcomer", 5, "electronics").await;
    assert!(r.cold_start);
    let got: Vec<_> = r.items.iter().map(|s| (s.item.as_str(), s.reason.as_str(), s.category.as_str())).collect();
    assert_eq!(
        got,
        [
            (tv.as_str(), "popular in electronics", "electronics/tv"),
            (radio.as_str(), "popular in electronics", "electronics/audio")
        ]
    );
    // u2 viewed the tv and socks; u1 bought the tv: the radio comes because of the tv, and the
    // category filter keeps the socks out.
    let r = reco.recommend("u2", 5, "electronics").await;
    assert!(!r.cold_start);
    assert_eq!(r.items[0].item, radio, "{r:?}");
    assert_eq!(r.items[0].reason, format!("because you viewed {tv}"));
    assert!(r.items.iter().all(|s| s.category.starts_with("electronics")));
    // Trending: the tv has a purchase (4) and two views.
    let t = reco
        .client
        .trending(pb::TrendingRequest { category: "electronics".into(), window: None, k: 1 })
        .await
        .expect("trending")
        .into_inner();
    assert_eq!(t.items[0].item, tv);
    assert_eq!(t.items[0].score, 6.0);
    assert_eq!(t.items[0].reason, "trending in electronics");
}

/// Interactions, reviews and products in the logs, then a rebuild: the same model.
async fn fill(store: &DynStore, reco: &mut Replica, items: &[String], users: usize) {
    for u in 0..users {
        let user = format!("rb-user-{u}");
        for (n, item) in items.iter().enumerate() {
            if (u * 7 + n * 3) % 5 < 2 {
                reco.record(&user, item, pb::InteractionKind::View, 0.0).await;
            }
            if (u + n) % 4 == 0 {
                append_review(store, &user, item, 1 + ((u + n) % 5) as i32, ReviewStatus::Published).await;
            }
            if (u * n) % 9 == 1 {
                reco.record(&user, item, pb::InteractionKind::Rating, 0.5 + (n % 9) as f64 / 2.0).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_rebuild_equals_the_incremental_model_and_a_late_replica_converges() {
    let backend = backends::embedded().await;
    let store = backend.store.clone();
    let mut reco = Replica::start(store.clone()).await;
    let items: Vec<String> = (0..12).map(|n| sku(&format!("rb{n}"))).collect();
    for item in &items[..6] {
        append_product(&store, item, "home").await;
    }
    fill(&store, &mut reco, &items, 10).await;
    let heads = [
        meshwork_common::EventLog::new(store.clone(), "ratings").head().await.unwrap(),
        meshwork_common::EventLog::new(store.clone(), "recommendation").head().await.unwrap(),
    ];
    eventually(Duration::from_secs(5), "the replica follows every log", || {
        let p = reco.live.positions();
        async move { p[1] == heads[0] && p[3] == heads[1] }
    })
    .await;
    let report = reco.live.rebuild().await.expect("rebuild");
    assert_eq!(report.differences, Vec::<String>::new());
    assert!(report.swapped);
    let before = reco.live.snapshot();
    // A replica started now builds the same model from the logs; its first answer already
    // comes from all of it (queries wait for the catch-up).
    let mut late = Replica::start(store.clone()).await;
    assert_eq!(late.similar(&items[0], 20).await, reco.similar(&items[0], 20).await);
    assert!(late.live.is_ready());
    let positions = reco.live.positions();
    eventually(Duration::from_secs(5), "the late replica catches up", || {
        let p = late.live.positions();
        async move { p == positions }
    })
    .await;
    assert_eq!(late.live.snapshot().model.differences(&before.model, 10), Vec::<String>::new());
    // The periodic rebuild runs on its own and changes nothing.
    let mut periodic = Replica::start_with(
        store.clone(),
        meshwork_recommendation::Config { rebuild_every: Duration::from_millis(200), ..Default::default() },
    )
    .await;
    eventually(Duration::from_secs(5), "the periodic replica catches up", || {
        let p = periodic.live.positions();
        async move { p == positions }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(periodic.live.snapshot().model.differences(&before.model, 10), Vec::<String>::new());
    assert_eq!(periodic.similar(&items[0], 20).await, reco.similar(&items[0], 20).await);
}
