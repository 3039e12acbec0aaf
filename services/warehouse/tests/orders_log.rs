//! The consumer of the orders' log, on every backend: delivery is at least once, so every
//! event of the log handled again (a second replica, a restart before the checkpoint) changes
//! nothing; and an order cancelled after a short pick leaves stock conserved (orders restocks
//! the checkout's units, the warehouse gives back the ones the short pick lost).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use meshwork_common::EventLog;
use meshwork_proto::pb::orders::v1 as ord;
use meshwork_proto::pb::warehouse::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use meshwork_warehouse::{Config, Warehouses};
use prost::Message;
use support::{Site, sku};

/// Receives `units` of `s` and puts them away into one bin.
async fn stock(site: &Site, s: &str, units: i64, bin: &str) {
    let mut wh = site.wh();
    site.product(s, 100).await;
    let po = wh
        .create_purchase_order(pb::CreatePurchaseOrderRequest {
            request_id: format!("po-{s}"),
            warehouse_id: site.wid.clone(),
            supplier: "Acme".into(),
            lines: vec![pb::PurchaseOrderLine { sku: s.into(), quantity: units, lot_tracked: false, received: 0 }],
        })
        .await
        .expect("po")
        .into_inner()
        .purchase_order
        .expect("po");
    wh.receive(pb::ReceiveRequest {
        request_id: format!("rcv-{s}"),
        warehouse_id: site.wid.clone(),
        po_id: po.po_id,
        lines: vec![pb::ReceiptLine { sku: s.into(), quantity: units, lot: String::new(), expire_time: None }],
    })
    .await
    .expect("receive");
    wh.put_away(pb::PutAwayRequest {
        request_id: format!("put-{s}"),
        warehouse_id: site.wid.clone(),
        sku: s.into(),
        lot: String::new(),
        quantity: units,
        to_code: bin.into(),
    })
    .await
    .expect("put away");
}

async fn replayed_events_change_nothing(backend: Backend) {
    let site = Site::start(backend.store.clone(), 50).await;
    let s = sku("REPLAY");
    stock(&site, &s, 20, "A-02-2-A").await;
    let orders = [site.buy(&[(&s, 3)]).await, site.buy(&[(&s, 4)]).await];
    for o in &orders {
        site.fulfillment(o).await;
    }
    let before = site.sku_stock(&s).await;
    assert_eq!(before.outstanding, 7);
    // Every event of the log again, through a second instance (as another replica would).
    let again = Warehouses::new(&site.ctx, Config { orders_consumer: false, ..Config::default() });
    let log = EventLog::new(backend.store.clone(), "orders");
    let mut from = 1;
    loop {
        let events = log.read(from, 500).await.expect("read the orders' log");
        let Some(last) = events.last() else { break };
        from = last.sequence + 1;
        for e in &events {
            let event = ord::OrderEvent::decode(e.payload.as_slice()).expect("order event");
            again.apply_order_event(&event).await.expect("apply again");
        }
    }
    assert_eq!(site.sku_stock(&s).await, before, "a replay changed the warehouse");
    let ledger: BTreeMap<String, i64> = [(s.clone(), 20)].into();
    site.conservation(&ledger).await.expect("conserved");
}

async fn cancelled_after_a_short_pick(backend: Backend) {
    let site = Site::start(backend.store.clone(), 50).await;
    let s = sku("CANCEL");
    stock(&site, &s, 10, "A-01-3-A").await;
    let order = site.buy(&[(&s, 4)]).await;
    site.fulfillment(&order).await;
    let wave = site.wave("wave-cancel").await.wave.expect("wave");
    assert_eq!(wave.picks.len(), 1);
    // One of four found: three lost.
    let answer = site.confirm(&wave.wave_id, 0, 1).await;
    assert_eq!(answer.short_quantity, 3);
    let ledger: BTreeMap<String, i64> = [(s.clone(), 10)].into();
    site.conservation(&ledger).await.expect("conserved after the short pick");
    let current = site.order(&order).await;
    site.orders()
        .transition_order(ord::TransitionOrderRequest {
            order_id: order.clone(),
            to: ord::OrderState::Cancelled as i32,
            expected_version: current.version,
            reason: "customer changed their mind".into(),
            payment_id: String::new(),
        })
        .await
        .expect("cancel");
    // Orders restocks and the warehouse's consumer follows: wait until both are done.
    let mut last = Err(String::new());
    for _ in 0..250 {
        let f = site.fulfillment(&order).await;
        if f.state == pb::FulfillmentState::Cancelled as i32 {
            last = site.conservation(&ledger).await;
            if last.is_ok() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last.expect("conserved after the cancellation");
    let stock = site.sku_stock(&s).await;
    assert_eq!((stock.outstanding, stock.lost, stock.physical), (0, 3, 7), "{stock:?}");
    assert_eq!(site.on_hand(&s).await, 7, "the picked unit is back on sale, the lost ones are not");
}

on_every_backend!(replayed_events_change_nothing, cancelled_after_a_short_pick);
