//! What the orders tests share: a shop (payments, inventory and orders served together on one
//! port, calling each other through it as through the gateway), clients, and builders of
//! requests, paid orders and stock.

#![allow(dead_code)]

use std::sync::Arc;

use meshwork_common::{Clock, ServiceContext, SystemClock};
use meshwork_proto::pb::inventory::v1 as inv;
use meshwork_proto::pb::orders::v1 as pb;
use meshwork_proto::pb::payments::v1 as pay;
use meshwork_storage::DynStore;
use meshwork_test_support::{TestServer, backends, context_with_clock};
use tonic::transport::Channel;

pub use inv::inventory_client::InventoryClient;
pub use pay::payments_client::PaymentsClient;
pub use pb::orders_client::OrdersClient;

/// Payments, inventory and orders on one port.
pub struct Shop {
    pub server: TestServer,
    pub ctx: ServiceContext,
    pub orders: OrdersClient<Channel>,
    pub payments: PaymentsClient<Channel>,
    pub inventory: InventoryClient<Channel>,
}

impl Shop {
    /// Serves the three services on `store` with the system clock.
    pub async fn start(store: DynStore) -> Shop {
        Shop::start_with(store, Arc::new(SystemClock), meshwork_orders::hosted).await
    }

    /// Serves the three services on `store` with `clock`, orders built by `orders`.
    pub async fn start_with(
        store: DynStore,
        clock: Arc<dyn Clock>,
        orders: fn(&ServiceContext) -> meshwork_common::HostedService,
    ) -> Shop {
        let ctx = context_with_clock(store, clock);
        let (server, ctx) =
            TestServer::mesh(&[meshwork_payments::hosted, meshwork_inventory::hosted, orders], ctx).await;
        let channel = server.channel.clone();
        Shop {
            server,
            ctx,
            orders: OrdersClient::new(channel.clone()),
            payments: PaymentsClient::new(channel.clone()),
            inventory: InventoryClient::new(channel),
        }
    }

    /// Receives `units` of `sku` at `location`.
    pub async fn receive(&mut self, sku: &str, location: &str, units: i64) {
        self.inventory
            .adjust_stock(inv::AdjustStockRequest {
                request_id: backends::unique("recv"),
                sku: sku.into(),
                location: location.into(),
                delta: units,
                reason: inv::AdjustReason::Receive as i32,
                note: String::new(),
            })
            .await
            .expect("receive stock");
    }

    /// Returns the stock of `sku` (on hand, reserved) in total.
    pub async fn stock(&mut self, sku: &str) -> (i64, i64) {
        let s = self.inventory.get_stock(inv::GetStockRequest { sku: sku.into() }).await.expect("stock").into_inner();
        (s.on_hand, s.reserved)
    }

    /// Returns the stock of `sku` at each location: (location, on hand, reserved).
    pub async fn stock_by_location(&mut self, sku: &str) -> Vec<(String, i64, i64)> {
        let s = self.inventory.get_stock(inv::GetStockRequest { sku: sku.into() }).await.expect("stock").into_inner();
        s.locations.into_iter().map(|l| (l.location, l.on_hand, l.reserved)).collect()
    }

    /// Reserves `lines` (sku, quantity) and returns the reservation.
    pub async fn reserve(&mut self, lines: &[(&str, i64)]) -> inv::Reservation {
        self.inventory
            .reserve(inv::ReserveRequest {
                request_id: backends::unique("res"),
                lines: lines
                    .iter()
                    .map(|(sku, q)| inv::ReserveLine { sku: sku.to_string(), quantity: *q, location: String::new() })
                    .collect(),
                ttl: None,
                reference: "orders-test".into(),
            })
            .await
            .expect("reserve")
            .into_inner()
            .reservation
            .expect("reservation")
    }

    /// Returns a reservation's state.
    pub async fn reservation_state(&mut self, id: &str) -> i32 {
        let r = self.inventory.get_reservation(inv::GetReservationRequest { reservation_id: id.into() }).await;
        r.expect("reservation").into_inner().reservation.expect("reservation").state
    }

    /// Creates an order of `lines` (sku, quantity, unit price) for `user`.
    pub async fn create(&mut self, user: &str, lines: &[(&str, i64, i64)], reservation_id: &str) -> pb::Order {
        let req = create_request(user, lines, reservation_id);
        self.orders.create_order(req).await.expect("create order").into_inner().order.expect("order")
    }

    /// Authorizes and captures `amount` for `order` and returns the payment id.
    pub async fn pay(&mut self, order: &pb::Order) -> String {
        let payment = self
            .payments
            .authorize(pay::AuthorizeRequest {
                request_id: backends::unique("auth"),
                order_id: order.order_id.clone(),
                user_id: order.user_id.clone(),
                amount_minor: order.total_minor,
                currency: order.currency.clone(),
                payment_token: "tok_ok".into(),
            })
            .await
            .expect("authorize")
            .into_inner()
            .payment
            .expect("payment");
        self.payments
            .capture(pay::CaptureRequest {
                request_id: backends::unique("cap"),
                payment_id: payment.payment_id.clone(),
                amount_minor: 0,
            })
            .await
            .expect("capture");
        payment.payment_id
    }

    /// Returns a payment.
    pub async fn payment(&mut self, id: &str) -> pay::Payment {
        let got = self.payments.get_payment(pay::GetPaymentRequest { payment_id: id.into() }).await;
        got.expect("payment").into_inner().payment.expect("payment")
    }

    /// Moves `order` to `to` (with its current version, a reason and a payment when needed).
    pub async fn transition(
        &mut self,
        order: &pb::Order,
        to: pb::OrderState,
        payment_id: &str,
    ) -> Result<pb::Order, tonic::Status> {
        let reason = match to {
            pb::OrderState::Cancelled | pb::OrderState::ReturnRequested => "test reason",
            _ => "",
        };
        self.orders
            .transition_order(pb::TransitionOrderRequest {
                order_id: order.order_id.clone(),
                to: to as i32,
                expected_version: order.version,
                reason: reason.into(),
                payment_id: payment_id.into(),
            })
            .await
            .map(|r| r.into_inner().order.expect("order"))
    }

    /// Returns an order.
    pub async fn get(&mut self, order_id: &str) -> pb::Order {
        let got = self.orders.get_order(pb::GetOrderRequest { order_id: order_id.into() }).await;
        got.expect("get order").into_inner().order.expect("order")
    }

    /// Returns an order's history.
    pub async fn history(&mut self, order_id: &str) -> Vec<pb::OrderEvent> {
        let got = self.orders.get_order_history(pb::GetOrderHistoryRequest { order_id: order_id.into() }).await;
        got.expect("history").into_inner().events
    }

    /// Creates a paid order of `lines` for `user` the way checkout does: reserve, create,
    /// pay, confirm, commit the reservation. Returns the confirmed order.
    pub async fn paid_order(&mut self, user: &str, lines: &[(&str, i64, i64)]) -> pb::Order {
        let holds: Vec<(&str, i64)> = lines.iter().map(|(s, q, _)| (*s, *q)).collect();
        let reservation = self.reserve(&holds).await;
        let order = self.create(user, lines, &reservation.reservation_id).await;
        let payment_id = self.pay(&order).await;
        let confirmed = self.transition(&order, pb::OrderState::Confirmed, &payment_id).await.expect("confirm");
        self.inventory
            .commit_reservation(inv::CommitReservationRequest { reservation_id: reservation.reservation_id.clone() })
            .await
            .expect("commit reservation");
        confirmed
    }
}

/// Returns a valid CreateOrder request.
pub fn create_request(user: &str, lines: &[(&str, i64, i64)], reservation_id: &str) -> pb::CreateOrderRequest {
    pb::CreateOrderRequest {
        request_id: backends::unique("create"),
        user_id: user.into(),
        lines: lines
            .iter()
            .map(|(sku, q, price)| pb::OrderLine {
                sku: sku.to_string(),
                title: format!("title of {sku}"),
                quantity: *q,
                unit_price_minor: *price,
            })
            .collect(),
        currency: "USD".into(),
        shipping_address: Some(pb::Address {
            name: "Ada Lovelace".into(),
            line1: "1 Analytical Way".into(),
            line2: String::new(),
            city: "London".into(),
            region: String::new(),
            postal_code: "N1 9GU".into(),
            country: "GB".into(),
        }),
        reservation_id: reservation_id.into(),
        checkout_id: String::new(),
    }
}

/// Returns a sku no other test uses.
pub fn sku(name: &str) -> String {
    backends::unique(name).to_uppercase()
}
