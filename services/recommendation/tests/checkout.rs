//! The journey of the issue: a purchase made through the shop's checkout (catalog, inventory,
//! payments and orders served together with recommendation on one port, calling each other
//! as through the gateway) shows in SimilarItems of the bought item within a second, with the
//! category the catalog gave the products.

mod support;

use std::time::Duration;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_proto::pb::catalog::v1 as catalog;
use meshwork_proto::pb::inventory::v1 as inv;
use meshwork_proto::pb::orders::v1 as orders;
use meshwork_proto::pb::recommendation::v1 as pb;
use meshwork_test_support::{TestServer, backends, context};
use support::*;

const SHOP: [fn(&ServiceContext) -> HostedService; 5] = [
    meshwork_payments::hosted,
    meshwork_inventory::hosted,
    meshwork_orders::hosted,
    meshwork_catalog::hosted,
    meshwork_recommendation::hosted,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkout_shows_in_similar_items_within_a_second() {
    let backend = backends::embedded().await;
    let (shop, _ctx) = TestServer::mesh(&SHOP, context(backend.store.clone())).await;
    let channel = shop.channel.clone();
    let mut products = catalog::catalog_client::CatalogClient::new(channel.clone());
    let mut inventory = inv::inventory_client::InventoryClient::new(channel.clone());
    let (pan, lid) = (sku("pan"), sku("lid"));
    for item in [&pan, &lid] {
        let product = catalog::Product {
            sku: item.clone(),
            title: format!("Item {item}"),
            category: "home/kitchen".into(),
            price_minor: 1500,
            currency: "USD".into(),
            ..Default::default()
        };
        products
            .create_product(catalog::CreateProductRequest { request_id: backends::unique("p"), product: Some(product) })
            .await
            .expect("create product");
        inventory
            .adjust_stock(inv::AdjustStockRequest {
                request_id: backends::unique("stock"),
                sku: item.clone(),
                location: "main".into(),
                delta: 10,
                reason: inv::AdjustReason::Receive as i32,
                note: String::new(),
            })
            .await
            .expect("receive stock");
    }
    let user = backends::unique("cook");
    let mut carts = catalog::carts_client::CartsClient::new(channel.clone());
    for item in [&pan, &lid] {
        carts
            .add_item(catalog::AddItemRequest { user_id: user.clone(), sku: item.clone(), quantity: 1 })
            .await
            .expect("add to cart");
    }
    let checkout = catalog::checkout_client::CheckoutClient::new(channel.clone())
        .place_order(catalog::PlaceOrderRequest {
            request_id: backends::unique("chk"),
            user_id: user.clone(),
            shipping_address: Some(orders::Address {
                name: "Ada".into(),
                line1: "1 Main St".into(),
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
                ..Default::default()
            }),
            payment_token: "tok_ok".into(),
        })
        .await
        .expect("place order")
        .into_inner()
        .checkout
        .expect("checkout");
    assert_eq!(checkout.state, catalog::CheckoutState::Completed as i32, "{checkout:?}");

    let client = RecommendationsClient::new(channel.clone());
    let took = eventually(Duration::from_secs(1), "the checkout in SimilarItems", || {
        let (mut c, pan, lid) = (client.clone(), pan.clone(), lid.clone());
        async move {
            let r = c.similar_items(pb::SimilarItemsRequest { item: pan, k: 5 }).await.expect("similar");
            r.into_inner().items.iter().any(|s| s.item == lid && s.category == "home/kitchen")
        }
    })
    .await;
    println!("checkout -> SimilarItems: {took:?}");
}
