//! What the warehouse suites share: a site (payments, inventory, orders, catalog and the
//! warehouse on one port, calling each other through it as through the gateway) with a
//! warehouse of its own, clients, checkout of orders, and the conservation check.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_proto::pb::catalog::v1 as cat;
use meshwork_proto::pb::inventory::v1 as inv;
use meshwork_proto::pb::orders::v1 as ord;
use meshwork_proto::pb::warehouse::v1 as pb;
use meshwork_storage::DynStore;
use meshwork_test_support::TestServer;
use meshwork_test_support::backends::unique;
use tonic::transport::Channel;

/// The services of the site.
pub const SITE: [fn(&ServiceContext) -> HostedService; 5] = [
    meshwork_payments::hosted,
    meshwork_inventory::hosted,
    meshwork_orders::hosted,
    meshwork_catalog::hosted,
    meshwork_warehouse::hosted,
];

/// Racks per aisle and aisles with bins in the test warehouse.
pub const RACKS: u32 = 4;
pub const BIN_AISLES: u32 = 6;

pub struct Site {
    pub server: TestServer,
    pub ctx: ServiceContext,
    /// The warehouse id, also its inventory location.
    pub wid: String,
}

/// A fresh sku (etcd is shared by the tests of this binary).
pub fn sku(name: &str) -> String {
    unique(name).to_uppercase()
}

/// Every bin code of the test warehouse: `A-0a-r-A` for 6 aisles × 4 racks.
pub fn bin_codes() -> Vec<String> {
    (0..BIN_AISLES).flat_map(|a| (1..=RACKS).map(move |r| format!("A-{a:02}-{r}-A"))).collect()
}

pub fn address() -> ord::Address {
    ord::Address {
        name: "Grace Hopper".into(),
        line1: "1 Navy Way".into(),
        line2: String::new(),
        city: "Arlington".into(),
        region: "VA".into(),
        postal_code: "22202".into(),
        country: "US".into(),
    }
}

impl Site {
    /// Starts the site on `store` and creates a warehouse of 10 aisles (20 m long, 3 m apart,
    /// racks every 2 m; over-receipt up to 10%) with 24 bins of `bin_capacity` units.
    pub async fn start(store: DynStore, bin_capacity: i64) -> Site {
        let ctx = meshwork_test_support::context(store);
        let (server, ctx) = TestServer::mesh(&SITE, ctx).await;
        let wid = unique("wh");
        let site = Site { server, ctx, wid: wid.clone() };
        site.wh()
            .create_warehouse(pb::CreateWarehouseRequest {
                request_id: format!("create-{wid}"),
                warehouse: Some(pb::Facility {
                    warehouse_id: wid.clone(),
                    name: "Test DC".into(),
                    inventory_location: String::new(),
                    aisles: 10,
                    aisle_length_dm: 200,
                    aisle_spacing_dm: 30,
                    rack_pitch_dm: 20,
                    over_receipt_percent: 10,
                    create_time: None,
                }),
            })
            .await
            .expect("create warehouse");
        let locations = bin_codes().into_iter().map(|code| pb::NewLocation { code, capacity: bin_capacity }).collect();
        site.wh()
            .create_locations(pb::CreateLocationsRequest {
                request_id: format!("bins-{wid}"),
                warehouse_id: wid.clone(),
                locations,
            })
            .await
            .expect("create bins");
        site
    }

    pub fn wh(&self) -> pb::warehouse_client::WarehouseClient<Channel> {
        pb::warehouse_client::WarehouseClient::new(self.server.channel.clone())
    }

    pub fn inventory(&self) -> inv::inventory_client::InventoryClient<Channel> {
        inv::inventory_client::InventoryClient::new(self.server.channel.clone())
    }

    pub fn orders(&self) -> ord::orders_client::OrdersClient<Channel> {
        ord::orders_client::OrdersClient::new(self.server.channel.clone())
    }

    /// Creates an ACTIVE product in USD.
    pub async fn product(&self, sku: &str, price_minor: i64) {
        let product = cat::Product {
            sku: sku.into(),
            title: format!("Item {sku}"),
            category: "test/warehouse".into(),
            price_minor,
            currency: "USD".into(),
            ..Default::default()
        };
        cat::catalog_client::CatalogClient::new(self.server.channel.clone())
            .create_product(cat::CreateProductRequest { request_id: format!("create-{sku}"), product: Some(product) })
            .await
            .expect("create product");
    }

    /// Checks out `lines` for a fresh user through the catalog's saga; returns the order id
    /// (CONFIRMED, its stock committed in inventory).
    pub async fn buy(&self, lines: &[(&str, i64)]) -> String {
        let user = unique("buyer");
        let mut carts = cat::carts_client::CartsClient::new(self.server.channel.clone());
        for (sku, quantity) in lines {
            carts
                .add_item(cat::AddItemRequest { user_id: user.clone(), sku: (*sku).into(), quantity: *quantity })
                .await
                .expect("add to cart");
        }
        let chk = cat::checkout_client::CheckoutClient::new(self.server.channel.clone())
            .place_order(cat::PlaceOrderRequest {
                request_id: format!("{user}-checkout"),
                user_id: user.clone(),
                shipping_address: Some(address()),
                payment_token: "tok_ok".into(),
            })
            .await
            .expect("place order")
            .into_inner()
            .checkout
            .expect("checkout");
        assert!(!chk.order_id.is_empty(), "checkout made no order: {chk:?}");
        let order = self.wait_order_state(&chk.order_id, ord::OrderState::Confirmed).await;
        order.order_id
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

    pub async fn wait_order_state(&self, order_id: &str, state: ord::OrderState) -> ord::Order {
        for _ in 0..300 {
            let order = self.order(order_id).await;
            if order.state == state as i32 {
                return order;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("order {order_id} never reached {state:?}: {:?}", self.order(order_id).await);
    }

    /// Waits until the warehouse's consumer took `order_id` from the orders' log.
    pub async fn fulfillment(&self, order_id: &str) -> pb::Fulfillment {
        for _ in 0..750 {
            match self
                .wh()
                .get_fulfillment(pb::GetFulfillmentRequest {
                    warehouse_id: self.wid.clone(),
                    order_id: order_id.into(),
                })
                .await
            {
                Ok(r) => return r.into_inner().fulfillment.expect("fulfillment"),
                Err(s) if s.code() == tonic::Code::NotFound => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(s) => panic!("get fulfillment: {s}"),
            }
        }
        panic!("the warehouse never took order {order_id} from the orders' log");
    }

    pub async fn sku_stock(&self, sku: &str) -> pb::GetSkuStockResponse {
        self.wh()
            .get_sku_stock(pb::GetSkuStockRequest { warehouse_id: self.wid.clone(), sku: sku.into() })
            .await
            .expect("get sku stock")
            .into_inner()
    }

    /// Inventory's on-hand of `sku` at the warehouse's location.
    pub async fn on_hand(&self, sku: &str) -> i64 {
        let s = match self.inventory().get_stock(inv::GetStockRequest { sku: sku.into() }).await {
            Ok(s) => s.into_inner(),
            Err(e) if e.code() == tonic::Code::NotFound => return 0,
            Err(e) => panic!("get stock: {e:?}"),
        };
        s.locations.iter().filter(|l| l.location == self.wid).map(|l| l.on_hand).sum()
    }

    /// Checks stock conservation for every sku of `ledger` (sku -> units received minus units
    /// shipped): the sum over all locations (docks and LOSS included) equals it, so only
    /// receipts and shipments changed it (counts and short picks move units to or from LOSS);
    /// and what the locations physically hold minus what open orders bought equals
    /// inventory's on-hand. Returns a description of the first difference.
    pub async fn conservation(&self, ledger: &BTreeMap<String, i64>) -> Result<(), String> {
        for (sku, expected_total) in ledger {
            let s = self.sku_stock(sku).await;
            let total: i64 = s.places.iter().map(|p| p.quantity).sum();
            if total != *expected_total {
                return Err(format!(
                    "{sku}: locations hold {total} in all, receipts - shipments = {expected_total}: {s:?}"
                ));
            }
            if s.physical + s.receiving + s.lost != total {
                return Err(format!(
                    "{sku}: physical {} + receiving {} + lost {} != {total}",
                    s.physical, s.receiving, s.lost
                ));
            }
            let on_hand = self.on_hand(sku).await;
            if s.sellable != on_hand {
                return Err(format!(
                    "{sku}: physical {} - outstanding {} = {} but inventory's on-hand is {on_hand}: {s:?}",
                    s.physical, s.outstanding, s.sellable
                ));
            }
        }
        Ok(())
    }

    pub async fn wave(&self, request_id: &str) -> pb::BuildWaveResponse {
        self.wh()
            .build_wave(pb::BuildWaveRequest {
                request_id: request_id.into(),
                warehouse_id: self.wid.clone(),
                max_orders: 0,
            })
            .await
            .expect("build wave")
            .into_inner()
    }

    pub async fn confirm(&self, wave_id: &str, index: i32, picked: i64) -> pb::ConfirmPickResponse {
        self.wh()
            .confirm_pick(pb::ConfirmPickRequest {
                request_id: format!("pick-{wave_id}-{index}"),
                warehouse_id: self.wid.clone(),
                wave_id: wave_id.into(),
                index,
                picked_quantity: picked,
            })
            .await
            .expect("confirm pick")
            .into_inner()
    }

    /// Packs every picked unit of `order_id` into one carton and ships it.
    pub async fn pack_and_ship(&self, order_id: &str) -> pb::Fulfillment {
        let f = self.fulfillment(order_id).await;
        let items = f
            .lines
            .iter()
            .map(|l| pb::StockItem { sku: l.sku.clone(), quantity: l.picked, ..Default::default() })
            .collect();
        self.wh()
            .pack(pb::PackRequest {
                request_id: format!("pack-{order_id}"),
                warehouse_id: self.wid.clone(),
                order_id: order_id.into(),
                cartons: vec![pb::Carton { carton_id: "C1".into(), items, weight_grams: 1200 }],
            })
            .await
            .expect("pack");
        self.wh()
            .ship(pb::ShipRequest {
                request_id: format!("ship-{order_id}"),
                warehouse_id: self.wid.clone(),
                order_id: order_id.into(),
                carrier: "UPS".into(),
                tracking_number: format!("1Z{}", &order_id[4..14]),
            })
            .await
            .expect("ship")
            .into_inner()
            .fulfillment
            .expect("fulfillment")
    }
}
