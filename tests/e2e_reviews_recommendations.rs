//! End to end: ratings and recommendations in the real `meshwork up`, on the shop's events,
//! through the gateway with outside clients. One `meshwork up` for the whole journey:
//!
//! - a purchase made through checkout shows in `SimilarItems` of the bought item within 1 s
//!   (the recommendation service follows the orders' event log);
//! - the buyer's review, submitted with grpcurl once the order is DELIVERED, is a verified
//!   purchase, and its trace shows the ratings service asking orders;
//! - the product's aggregate counts it, and `RecommendForUser` answers with a reason.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshwork_proto::pb::catalog::v1 as catalog;
use meshwork_proto::pb::inventory::v1 as inventory;
use meshwork_proto::pb::orders::v1 as orders;
use meshwork_proto::pb::recommendation::v1 as reco;
use serde_json::Value;
use support::{Mesh, Trace, grpcurl};
use tonic::transport::Channel;

/// Creates `sku` in the catalog (category `kitchen/coffee`) with 50 units in stock.
async fn stock_product(channel: &Channel, sku: &str) {
    let product = catalog::Product {
        sku: sku.into(),
        title: format!("Coffee thing {sku}"),
        description: "For the reviews journey".into(),
        category: "kitchen/coffee".into(),
        price_minor: 1500,
        currency: "EUR".into(),
        ..Default::default()
    };
    let mut products = catalog::catalog_client::CatalogClient::new(channel.clone());
    products
        .create_product(catalog::CreateProductRequest { request_id: format!("create-{sku}"), product: Some(product) })
        .await
        .unwrap();
    let mut stock = inventory::inventory_client::InventoryClient::new(channel.clone());
    let receive = inventory::AdjustStockRequest {
        request_id: format!("receive-{sku}"),
        sku: sku.into(),
        location: "main".into(),
        delta: 50,
        reason: inventory::AdjustReason::Receive as i32,
        note: String::new(),
    };
    stock.adjust_stock(receive).await.unwrap();
}

/// Buys `skus` for `user` through the cart and checkout; returns the order id.
async fn buy(channel: &Channel, user: &str, skus: &[&str]) -> String {
    let mut carts = catalog::carts_client::CartsClient::new(channel.clone());
    for sku in skus {
        let item = catalog::AddItemRequest { user_id: user.into(), sku: sku.to_string(), quantity: 1 };
        carts.add_item(item).await.unwrap();
    }
    let mut checkout = catalog::checkout_client::CheckoutClient::new(channel.clone());
    let request = catalog::PlaceOrderRequest {
        request_id: format!("buy-{user}"),
        user_id: user.into(),
        shipping_address: Some(orders::Address {
            name: "Grace Hopper".into(),
            line1: "1 Navy Way".into(),
            city: "Arlington".into(),
            postal_code: "22201".into(),
            country: "US".into(),
            ..Default::default()
        }),
        payment_token: "tok_ok".into(),
    };
    let record = checkout.place_order(request).await.unwrap().into_inner().checkout.unwrap();
    assert_eq!(record.state, catalog::CheckoutState::Completed as i32, "{record:?}");
    record.order_id
}

/// Moves a CONFIRMED order on to DELIVERED, as the warehouse staff would.
async fn deliver(channel: &Channel, order_id: &str) {
    let mut client = orders::orders_client::OrdersClient::new(channel.clone());
    for to in [orders::OrderState::Packed, orders::OrderState::Shipped, orders::OrderState::Delivered] {
        let request = orders::TransitionOrderRequest { order_id: order_id.into(), to: to as i32, ..Default::default() };
        client.transition_order(request).await.unwrap();
    }
}

/// Polls `SimilarItems(item)` until `expected` is among the answers; returns how long it took.
async fn wait_similar(channel: &Channel, item: &str, expected: &str, within: Duration) -> Duration {
    let mut client = reco::recommendations_client::RecommendationsClient::new(channel.clone());
    let start = Instant::now();
    loop {
        let request = reco::SimilarItemsRequest { item: item.into(), k: 10 };
        let answer = client.similar_items(request).await.unwrap().into_inner();
        if answer.items.iter().any(|i| i.item == expected) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{expected} not in SimilarItems({item}) after {within:?}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn grpcurl_json(addr: SocketAddr, flags: &[&str], body: &str, method: &str) -> Value {
    let mut all = flags.to_vec();
    all.extend(["-d", body]);
    let (ok, out, err) = grpcurl(addr, &all, &[method]);
    assert!(ok, "grpcurl {method} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method} answered no JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_and_recommendations_follow_the_shop() {
    let data = tempfile::tempdir().unwrap();
    let (mesh, ui) = Mesh::up_with_args(data.path(), &[]);
    let channel = Channel::from_shared(format!("http://{}", mesh.addr)).unwrap().connect().await.unwrap();
    for sku in ["BEAN-01", "GRIND-02", "KETTLE-03"] {
        stock_product(&channel, sku).await;
    }

    // A purchase through checkout reaches SimilarItems of the bought item within 1 s.
    let order = buy(&channel, "grace", &["BEAN-01", "GRIND-02"]).await;
    let took = wait_similar(&channel, "BEAN-01", "GRIND-02", Duration::from_secs(1)).await;
    eprintln!("purchase visible in SimilarItems after {took:?}");

    // The buyer reviews it once it is delivered: a verified purchase, through grpcurl, and the
    // trace shows the ratings service asking orders.
    deliver(&channel, &order).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("traceparent: 00-{trace_id}-00f067aa0ba902b7-01");
    let review = grpcurl_json(
        mesh.addr,
        &["-H", &traceparent],
        r#"{"request_id":"rv-1","sku":"BEAN-01","user_id":"grace","rating":5,"title":"Great beans","body":"Rich and chocolatey, ground fresh every morning for a month now."}"#,
        "meshwork.ratings.v1.Ratings/SubmitReview",
    );
    assert_eq!(review["review"]["verifiedPurchase"], Value::Bool(true), "{review}");
    assert_eq!(review["review"]["status"], "REVIEW_STATUS_PUBLISHED", "{review}");
    let trace = Trace::wait_for(ui, trace_id, &["gateway", "ratings", "orders"], "00f067aa0ba902b7").await;
    trace.assert_under("orders", trace.span("ratings", "SubmitReview"));

    // Someone who never bought it is not verified; the aggregate counts both.
    let other = grpcurl_json(
        mesh.addr,
        &[],
        r#"{"request_id":"rv-2","sku":"BEAN-01","user_id":"alan","rating":4,"title":"Good","body":"Solid everyday beans, a little too dark a roast for my taste."}"#,
        "meshwork.ratings.v1.Ratings/SubmitReview",
    );
    assert_eq!(other["review"].get("verifiedPurchase"), None, "{other}");
    let rating = grpcurl_json(mesh.addr, &[], r#"{"sku":"BEAN-01"}"#, "meshwork.ratings.v1.Ratings/GetProductRating");
    let rating = &rating["rating"];
    assert_eq!((rating["count"].as_str(), rating["verifiedCount"].as_str()), (Some("2"), Some("1")), "{rating}");

    // Another buyer of the beans is recommended the grinder, because of the beans.
    buy(&channel, "linus", &["BEAN-01", "KETTLE-03"]).await;
    wait_similar(&channel, "BEAN-01", "KETTLE-03", Duration::from_secs(1)).await;
    let answer = grpcurl_json(
        mesh.addr,
        &[],
        r#"{"user_id":"linus","k":5,"exclude_purchased":true}"#,
        "meshwork.recommendation.v1.Recommendations/RecommendForUser",
    );
    let first = &answer["items"][0];
    assert_eq!(first["item"], "GRIND-02", "{answer}");
    assert_eq!(first["becauseItem"], "BEAN-01", "{answer}");
}

/// `meshwork recommend-eval` on synthetic interactions with planted structure: the table has
/// our model and the popularity baseline, and ours ranks better.
#[test]
fn recommend_eval_beats_popularity_on_planted_structure() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .args(["recommend-eval", "--synthetic", "300", "--split", "random", "--k", "10"])
        .output()
        .expect("run meshwork recommend-eval");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "recommend-eval failed: {}", String::from_utf8_lossy(&out.stderr));
    let precision = |model: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(model)).unwrap_or_else(|| panic!("no {model} row in:\n{text}"));
        let fields: Vec<&str> = line[model.len()..].split_whitespace().collect();
        fields[0].parse().unwrap_or_else(|_| panic!("no precision in {line:?}"))
    };
    let (ours, popularity) = (precision("meshwork item-item"), precision("popularity"));
    assert!(ours > 1.5 * popularity, "precision@10: ours {ours}, popularity {popularity}\n{text}");

    // Bad flags are refused with the reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .args(["recommend-eval", "--synthetic", "300", "--k", "0"])
        .output()
        .expect("run meshwork recommend-eval");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains('k'), "{}", String::from_utf8_lossy(&out.stderr));
}
