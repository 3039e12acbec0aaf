//! What the checkout suites share: a shop (payments, inventory, orders and catalog on one
//! port, calling each other through it as through the gateway), clients of it, builders of
//! products, stock and carts, and the sums that find leaked stock or money.

#![allow(dead_code)]

use std::time::Duration;

use meshwork_common::Settings;
use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_proto::pb::catalog::v1 as pb;
use meshwork_proto::pb::inventory::v1 as inv;
use meshwork_proto::pb::orders::v1 as ord;
use meshwork_proto::pb::payments::v1 as pay;
use meshwork_storage::DynStore;
use meshwork_test_support::TestServer;
use tonic::transport::Channel;

pub use pb::CheckoutState;

/// Where the tests keep stock.
pub const LOCATION: &str = "main";

/// The four services of the shop.
pub const SHOP: [fn(&ServiceContext) -> HostedService; 4] =
    [meshwork_payments::hosted, meshwork_inventory::hosted, meshwork_orders::hosted, meshwork_catalog::hosted];

/// A running shop on a store.
pub struct Shop {
    pub server: TestServer,
    pub ctx: ServiceContext,
}

/// Starts the shop on `store` with `settings` (e.g. `payments.failure_rate`).
pub async fn shop(store: DynStore, settings: Settings) -> Shop {
    let ctx = ServiceContext { settings, ..meshwork_test_support::context(store) };
    let (server, ctx) = TestServer::mesh(&SHOP, ctx).await;
    Shop { server, ctx }
}

/// A fresh sku no other test of this run uses (etcd is shared).
pub fn sku(name: &str) -> String {
    meshwork_test_support::backends::unique(name).to_uppercase()
}

/// A fresh user id.
pub fn user(name: &str) -> String {
    meshwork_test_support::backends::unique(name)
}

/// A valid shipping address.
pub fn address() -> ord::Address {
    ord::Address {
        name: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        line2: String::new(),
        city: "London".into(),
        region: String::new(),
        postal_code: "SW1Y 4JH".into(),
        country: "GB".into(),
    }
}

/// A PlaceOrder of `user`'s cart paid with `token`.
pub fn place(request_id: &str, user: &str, token: &str) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        request_id: request_id.into(),
        user_id: user.into(),
        shipping_address: Some(address()),
        payment_token: token.into(),
    }
}

impl Shop {
    pub fn catalog(&self) -> pb::catalog_client::CatalogClient<Channel> {
        pb::catalog_client::CatalogClient::new(self.server.channel.clone())
    }

    pub fn carts(&self) -> pb::carts_client::CartsClient<Channel> {
        pb::carts_client::CartsClient::new(self.server.channel.clone())
    }

    pub fn checkout(&self) -> pb::checkout_client::CheckoutClient<Channel> {
        pb::checkout_client::CheckoutClient::new(self.server.channel.clone())
    }

    pub fn inventory(&self) -> inv::inventory_client::InventoryClient<Channel> {
        inv::inventory_client::InventoryClient::new(self.server.channel.clone())
    }

    pub fn orders(&self) -> ord::orders_client::OrdersClient<Channel> {
        ord::orders_client::OrdersClient::new(self.server.channel.clone())
    }

    pub fn payments(&self) -> pay::payments_client::PaymentsClient<Channel> {
        pay::payments_client::PaymentsClient::new(self.server.channel.clone())
    }

    /// Creates an ACTIVE product in USD.
    pub async fn product(&self, sku: &str, price_minor: i64) {
        let product = pb::Product {
            sku: sku.into(),
            title: format!("Item {sku}"),
            category: "test/checkout".into(),
            price_minor,
            currency: "USD".into(),
            ..Default::default()
        };
        self.catalog()
            .create_product(pb::CreateProductRequest { request_id: format!("create-{sku}"), product: Some(product) })
            .await
            .expect("create product");
    }

    /// Receives `units` of `sku` at [`LOCATION`].
    pub async fn receive(&self, sku: &str, units: i64) {
        self.inventory()
            .adjust_stock(inv::AdjustStockRequest {
                request_id: format!("receive-{sku}-{units}"),
                sku: sku.into(),
                location: LOCATION.into(),
                delta: units,
                reason: inv::AdjustReason::Receive as i32,
                note: "test stock".into(),
            })
            .await
            .expect("receive stock");
    }

    /// Creates a product with `units` in stock.
    pub async fn stocked(&self, sku: &str, price_minor: i64, units: i64) {
        self.product(sku, price_minor).await;
        self.receive(sku, units).await;
    }

    /// Adds `quantity` of `sku` to `user`'s cart and returns the cart.
    pub async fn add(&self, user: &str, sku: &str, quantity: i64) -> pb::Cart {
        self.carts()
            .add_item(pb::AddItemRequest { user_id: user.into(), sku: sku.into(), quantity })
            .await
            .expect("add to cart")
            .into_inner()
            .cart
            .expect("cart")
    }

    pub async fn cart(&self, user: &str) -> pb::Cart {
        self.carts()
            .get_cart(pb::GetCartRequest { user_id: user.into() })
            .await
            .expect("get cart")
            .into_inner()
            .cart
            .expect("cart")
    }

    /// Returns (on hand, reserved) of `sku` over every location.
    pub async fn stock(&self, sku: &str) -> (i64, i64) {
        let s =
            self.inventory().get_stock(inv::GetStockRequest { sku: sku.into() }).await.expect("get stock").into_inner();
        (s.on_hand, s.reserved)
    }

    pub async fn place_order(&self, req: pb::PlaceOrderRequest) -> Result<pb::CheckoutRecord, tonic::Status> {
        Ok(self.checkout().place_order(req).await?.into_inner().checkout.expect("checkout in the answer"))
    }

    pub async fn get_checkout(&self, checkout_id: &str) -> pb::CheckoutRecord {
        self.checkout()
            .get_checkout(pb::GetCheckoutRequest { checkout_id: checkout_id.into() })
            .await
            .expect("get checkout")
            .into_inner()
            .checkout
            .expect("checkout")
    }

    pub async fn order(&self, order_id: &str) -> ord::Order {
        self.orders()
            .get_order(ord::GetOrderRequest { order_id: order_id.into() })
            .await
            .expect("get order")
            .into_inner()
            .order
            .expect("order")
    }

    pub async fn user_orders(&self, user: &str) -> Vec<ord::Order> {
        self.orders()
            .list_orders(ord::ListOrdersRequest { user_id: user.into(), page_size: 1000, page_token: String::new() })
            .await
            .expect("list orders")
            .into_inner()
            .orders
    }

    pub async fn order_payments(&self, order_id: &str) -> Vec<pay::Payment> {
        self.payments()
            .list_payments(pay::ListPaymentsRequest {
                order_id: order_id.into(),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .expect("list payments")
            .into_inner()
            .payments
    }

    pub async fn reservation(&self, reservation_id: &str) -> inv::Reservation {
        self.inventory()
            .get_reservation(inv::GetReservationRequest { reservation_id: reservation_id.into() })
            .await
            .expect("get reservation")
            .into_inner()
            .reservation
            .expect("reservation")
    }

    /// Checks that a finished checkout left nothing behind: COMPLETED has its order
    /// CONFIRMED with the payment captured for the total and the stock committed; FAILED has
    /// its order (if any) CANCELLED, its hold (if any) released and no payment left
    /// authorized or captured. Returns whether it completed.
    pub async fn assert_settled(&self, chk: &pb::CheckoutRecord) -> bool {
        let id = &chk.checkout_id;
        let completed = chk.state == CheckoutState::Completed as i32;
        assert!(completed || chk.state == CheckoutState::Failed as i32, "{id} not finished: {chk:?}");
        let orders = self.user_orders(&chk.user_id).await;
        assert!(orders.len() <= 1, "{id}: one order per checkout, got {}", orders.len());
        if completed {
            let order = self.order(&chk.order_id).await;
            assert_eq!(order.state, ord::OrderState::Confirmed as i32, "{id}: order {order:?}");
            assert_eq!(order.payment_id, chk.payment_id);
            let payments = self.order_payments(&chk.order_id).await;
            assert_eq!(payments.len(), 1, "{id}: {payments:?}");
            assert_eq!(payments[0].status, pay::PaymentStatus::Captured as i32, "{id}: {payments:?}");
            assert_eq!(payments[0].captured_minor, chk.total_minor);
            let reservation = self.reservation(&chk.reservation_id).await;
            assert_eq!(reservation.state, inv::ReservationState::Committed as i32, "{id}");
            assert!(chk.failure.is_none());
        } else {
            assert!(chk.failure.is_some(), "{id}: a FAILED checkout says why");
            for order in &orders {
                assert_eq!(order.state, ord::OrderState::Cancelled as i32, "{id}: order {order:?}");
                for p in self.order_payments(&order.order_id).await {
                    assert!(
                        p.status == pay::PaymentStatus::Voided as i32
                            || p.status == pay::PaymentStatus::Refunded as i32,
                        "{id}: payment left {p:?}"
                    );
                }
            }
            if !chk.reservation_id.is_empty() {
                let reservation = self.reservation(&chk.reservation_id).await;
                assert!(
                    reservation.state == inv::ReservationState::Released as i32
                        || reservation.state == inv::ReservationState::Expired as i32,
                    "{id}: hold left {reservation:?}"
                );
            }
        }
        completed
    }

    /// Polls GetCheckout until `checkout_id` is finished, at most `budget`.
    pub async fn finished(&self, checkout_id: &str, budget: Duration) -> pb::CheckoutRecord {
        let start = tokio::time::Instant::now();
        loop {
            let chk = self.get_checkout(checkout_id).await;
            if chk.state == CheckoutState::Completed as i32 || chk.state == CheckoutState::Failed as i32 {
                return chk;
            }
            assert!(start.elapsed() < budget, "{checkout_id} not finished within {budget:?}: {chk:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Shop {
    /// Returns the types of the catalog events about `checkout_id` (their payload is the
    /// checkout record).
    pub async fn checkout_events(&self, checkout_id: &str) -> Vec<String> {
        use prost::Message;
        let log = meshwork_common::EventLog::new(self.ctx.store.clone(), "catalog");
        let events = log.read(1, 100_000).await.expect("read the catalog's events");
        events
            .into_iter()
            .filter(|e| e.r#type.starts_with("checkout."))
            .filter(|e| pb::CheckoutRecord::decode(e.payload.as_slice()).is_ok_and(|c| c.checkout_id == checkout_id))
            .map(|e| e.r#type)
            .collect()
    }
}

/// Returns the step of `chk` called `name`.
pub fn step<'a>(chk: &'a pb::CheckoutRecord, name: &str) -> &'a pb::CheckoutStep {
    chk.steps.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no step {name} in {chk:?}"))
}
