//! What cancellations and returns give back, against the real payments and inventory
//! services: a cancelled paid order is refunded in full and its units go back to the
//! locations they were taken from; a cancelled unpaid order's hold is released; a return
//! refunds and restocks. The effects are completed by the event-log consumer when the
//! transition did not run them (a crash between commit and effect), and running them again,
//! or concurrently, or after a crash between a call and its record, gives back exactly once.

mod support;

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::mesh::CallContext;
use meshwork_common::{HostedService, ServiceContext, SystemClock};
use meshwork_orders::{Config, Orders, effects};
use meshwork_proto::pb::inventory::v1 as inv;
use meshwork_proto::pb::orders::v1 as pb;
use meshwork_proto::pb::payments::v1 as pay;
use meshwork_test_support::{backends::unique, memory_store};
use pb::OrderState as S;
use support::{Shop, sku};

fn without_effects(ctx: &ServiceContext) -> HostedService {
    meshwork_orders::hosted_with(ctx, Config { inline_effects: false, effects_consumer: false, ..Config::default() })
}

fn consumer_only(ctx: &ServiceContext) -> HostedService {
    meshwork_orders::hosted_with(ctx, Config { inline_effects: false, ..Config::default() })
}

fn count(history: &[pb::OrderEvent], kind: pb::OrderEventType) -> usize {
    history.iter().filter(|e| e.r#type == kind as i32).count()
}

/// A shop with two skus: `a` only at `east` (10 units), `b` only at `west` (6 units).
async fn stocked(shop: &mut Shop) -> (String, String) {
    let (a, b) = (sku("EFA"), sku("EFB"));
    shop.receive(&a, "east", 10).await;
    shop.receive(&b, "west", 6).await;
    (a, b)
}

/// Checks the order was refunded once in full and its units are back where they were.
async fn given_back(shop: &mut Shop, order_id: &str, a: &str, b: &str) {
    let order = shop.get(order_id).await;
    let payment = shop.payment(&order.payment_id).await;
    assert_eq!(payment.status, pay::PaymentStatus::Refunded as i32);
    assert_eq!(payment.refunded_minor, order.total_minor);
    assert_eq!(order.refunded_minor, order.total_minor);
    assert_eq!(shop.stock_by_location(a).await, vec![("east".to_string(), 10, 0)]);
    assert_eq!(shop.stock_by_location(b).await, vec![("west".to_string(), 6, 0)]);
    let history = shop.history(order_id).await;
    assert_eq!(count(&history, pb::OrderEventType::Refunded), 1, "{history:?}");
    assert_eq!(count(&history, pb::OrderEventType::Restocked), 1, "{history:?}");
    let restocked = history.iter().find(|e| e.r#type == pb::OrderEventType::Restocked as i32).unwrap();
    assert_eq!(restocked.amount, 5);
    assert_eq!(meshwork_orders::fold_history(&history).unwrap(), order);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_paid_order_refunds_and_restocks_where_units_came_from() {
    let mut shop = Shop::start(memory_store()).await;
    let (a, b) = stocked(&mut shop).await;
    let paid = shop.paid_order(&unique("buyer"), &[(a.as_str(), 2, 1000), (b.as_str(), 3, 250)]).await;
    assert_eq!(shop.stock(&a).await, (8, 0), "committed");
    let packed = shop.transition(&paid, S::Packed, "").await.unwrap();
    let cancelled = shop.transition(&packed, S::Cancelled, "").await.unwrap();
    // The answer already shows the refund.
    assert_eq!(cancelled.state, S::Cancelled as i32);
    assert_eq!(cancelled.refunded_minor, 2750);
    assert_eq!(cancelled.reason, "test reason");
    given_back(&mut shop, &paid.order_id, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_unpaid_order_releases_its_hold() {
    let mut shop = Shop::start(memory_store()).await;
    let (a, _) = stocked(&mut shop).await;
    let hold = shop.reserve(&[(a.as_str(), 4)]).await;
    assert_eq!(shop.stock(&a).await, (10, 4));
    let order = shop.create(&unique("browser"), &[(a.as_str(), 4, 10)], &hold.reservation_id).await;
    let cancelled = shop.transition(&order, S::Cancelled, "").await.unwrap();
    assert_eq!(cancelled.refunded_minor, 0);
    assert_eq!(shop.reservation_state(&hold.reservation_id).await, inv::ReservationState::Released as i32);
    assert_eq!(shop.stock(&a).await, (10, 0));
    let history = shop.history(&order.order_id).await;
    assert_eq!(count(&history, pb::OrderEventType::Refunded), 0);
    assert_eq!(count(&history, pb::OrderEventType::Restocked), 1);
    assert_eq!(history.last().unwrap().amount, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_refunds_and_restocks() {
    let mut shop = Shop::start(memory_store()).await;
    let (a, b) = stocked(&mut shop).await;
    let mut order = shop.paid_order(&unique("returner"), &[(a.as_str(), 2, 1000), (b.as_str(), 3, 250)]).await;
    for to in [S::Packed, S::Shipped, S::Delivered, S::ReturnRequested] {
        order = shop.transition(&order, to, "").await.unwrap();
    }
    assert_eq!(shop.stock(&b).await, (3, 0), "sold");
    let returned = shop.transition(&order, S::Returned, "").await.unwrap();
    assert_eq!(returned.refunded_minor, 2750);
    given_back(&mut shop, &order.order_id, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_completes_effects_the_transition_did_not_run() {
    let mut shop = Shop::start_with(memory_store(), Arc::new(SystemClock), consumer_only).await;
    let (a, b) = stocked(&mut shop).await;
    let paid = shop.paid_order(&unique("crashed"), &[(a.as_str(), 2, 1000), (b.as_str(), 3, 250)]).await;
    let cancelled = shop.transition(&paid, S::Cancelled, "").await.unwrap();
    // The transition answered without its effects, as if the process died right after commit.
    assert_eq!(cancelled.refunded_minor, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let history = shop.history(&paid.order_id).await;
        if count(&history, pb::OrderEventType::Restocked) == 1 && count(&history, pb::OrderEventType::Refunded) == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the consumer did not complete the effects: {history:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    given_back(&mut shop, &paid.order_id, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_run_again_or_concurrently_give_back_once() {
    let mut shop = Shop::start_with(memory_store(), Arc::new(SystemClock), without_effects).await;
    let orders = Arc::new(Orders::new(&shop.ctx, Config::default()));
    let (a, b) = stocked(&mut shop).await;
    let lines = [(a.as_str(), 2, 1000), (b.as_str(), 3, 250)];

    // Four concurrent runs of the same effects.
    let paid = shop.paid_order(&unique("twice"), &lines).await;
    shop.transition(&paid, S::Cancelled, "").await.unwrap();
    let runs = (0..4).map(|_| {
        let (orders, id) = (orders.clone(), paid.order_id.clone());
        tokio::spawn(async move { orders.complete_effects(&CallContext::background(), &id).await })
    });
    for run in futures::future::join_all(runs).await {
        run.unwrap().expect("effects");
    }
    assert!(
        orders.complete_effects(&CallContext::background(), &paid.order_id).await.unwrap().is_none(),
        "nothing left"
    );
    given_back(&mut shop, &paid.order_id, &a, &b).await;

    // A crash after the calls and before their records: the calls are made again, with the
    // same request ids, and give back nothing more.
    let paid = shop.paid_order(&unique("crash"), &lines).await;
    shop.transition(&paid, S::Cancelled, "").await.unwrap();
    let snapshot_before = shop.get(&paid.order_id).await;
    let record = meshwork_orders::model::OrderRecord {
        order_id: paid.order_id.clone(),
        user_id: paid.user_id.clone(),
        state: meshwork_orders::state::State::Cancelled,
        lines: vec![],
        currency: paid.currency.clone(),
        total_minor: paid.total_minor,
        address: Default::default(),
        reservation_id: paid.reservation_id.clone(),
        payment_id: paid.payment_id.clone(),
        checkout_id: String::new(),
        version: snapshot_before.version,
        reason: String::new(),
        create_ms: 0,
        update_ms: 0,
        delivery_ms: 0,
        refunded_minor: 0,
        cancelled_from: Some(meshwork_orders::state::State::Confirmed),
        refunded: false,
        restocked: false,
    };
    let cx = CallContext::background();
    effects::refund(&shop.ctx.mesh, &cx, &record, &paid.payment_id).await.unwrap();
    effects::put_back(&shop.ctx.mesh, &cx, &record, &paid.reservation_id).await.unwrap();
    assert_eq!(shop.get(&paid.order_id).await, snapshot_before, "nothing recorded yet");
    orders.complete_effects(&cx, &paid.order_id).await.unwrap();
    given_back(&mut shop, &paid.order_id, &a, &b).await;
}
