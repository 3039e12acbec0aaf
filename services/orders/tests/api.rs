//! The orders API served for real (with the real payments and inventory beside it): the state
//! machine over every legal path and the refusals of illegal ones, stale versions and closed
//! return windows; the event-sourced history folding back to every order; ListOrders newest
//! first across pages; WatchOrders resuming after a reconnect without gaps or repeats; who may
//! act on whose order; and the bad-input catalogue of every RPC.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meshwork_common::ManualClock;
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::orders::v1 as pb;
use meshwork_test_support::{backends::unique, memory_store};
use pb::OrderState as S;
use support::{Shop, create_request, sku};
use tonic::{Code, Status};

const WAIT: Duration = Duration::from_secs(10);

/// The states each state may move to, as the proto's comment draws them.
fn allowed(s: S) -> Vec<S> {
    match s {
        S::Created => vec![S::Confirmed, S::Cancelled],
        S::Confirmed => vec![S::Packed, S::Cancelled],
        S::Packed => vec![S::Shipped, S::Cancelled],
        S::Shipped => vec![S::Delivered],
        S::Delivered => vec![S::ReturnRequested],
        S::ReturnRequested => vec![S::Returned],
        _ => vec![],
    }
}

fn short(s: S) -> &'static str {
    s.as_str_name().trim_start_matches("ORDER_STATE_")
}

const TARGETS: [S; 7] =
    [S::Confirmed, S::Packed, S::Shipped, S::Delivered, S::Cancelled, S::ReturnRequested, S::Returned];

/// Tries every illegal move of `order` and checks each is FAILED_PRECONDITION naming the
/// current state and the allowed ones, with the order unchanged.
async fn illegal_moves_refused(shop: &mut Shop, order: &pb::Order) {
    let current = S::try_from(order.state).unwrap();
    for to in TARGETS {
        if allowed(current).contains(&to) {
            continue;
        }
        let payment = if to == S::Confirmed { "pay_00000000000000000000" } else { "" };
        let err = shop.transition(order, to, payment).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{} -> {}: {err:?}", short(current), short(to));
        let message = err.message();
        assert!(message.contains(&format!("is {}", short(current))), "{message}");
        for a in allowed(current) {
            assert!(message.contains(short(a)), "{message} should name {}", short(a));
        }
        if allowed(current).is_empty() {
            assert!(message.contains("allowed: none"), "{message}");
        }
    }
    assert_eq!(shop.get(&order.order_id).await, *order, "refused moves changed the order");
}

/// Moves `order` along `path`, checking each step's state and version and, at every state
/// reached, that the illegal moves are refused.
async fn walk(shop: &mut Shop, mut order: pb::Order, path: &[S]) -> pb::Order {
    illegal_moves_refused(shop, &order).await;
    for to in path {
        let payment = if *to == S::Confirmed { shop.pay(&order).await } else { String::new() };
        let moved = shop.transition(&order, *to, &payment).await.unwrap_or_else(|e| panic!("-> {}: {e:?}", short(*to)));
        assert_eq!(moved.state, *to as i32);
        assert!(moved.version > order.version);
        if *to == S::Confirmed {
            assert_eq!(moved.payment_id, payment);
        }
        if *to == S::Delivered {
            assert!(moved.delivery_time.is_some());
        }
        order = shop.get(&order.order_id).await;
        assert_eq!(order.state, *to as i32);
        illegal_moves_refused(shop, &order).await;
    }
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_legal_path_and_every_illegal_move() {
    let mut shop = Shop::start(memory_store()).await;
    let user = unique("walker");
    let s = sku("WALK");
    let line = [(s.as_str(), 2, 1250)];
    let paths: [&[S]; 4] = [
        &[S::Cancelled],
        &[S::Confirmed, S::Cancelled],
        &[S::Confirmed, S::Packed, S::Cancelled],
        &[S::Confirmed, S::Packed, S::Shipped, S::Delivered, S::ReturnRequested, S::Returned],
    ];
    for path in paths {
        let order = shop.create(&user, &line, "").await;
        assert_eq!((order.state, order.version, order.total_minor), (S::Created as i32, 1, 2500));
        let end = walk(&mut shop, order, path).await;
        assert_eq!(end.state, *path.last().unwrap() as i32);
        if path.contains(&S::Confirmed) && path.len() > 1 {
            // A paid order that is cancelled or returned is refunded in full.
            assert_eq!(end.refunded_minor, 2500, "{path:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_versions_are_aborted_and_change_nothing() {
    let mut shop = Shop::start(memory_store()).await;
    let order = shop.create(&unique("stale"), &[(sku("STALE").as_str(), 1, 10)], "").await;
    let payment = shop.pay(&order).await;
    let confirmed = shop.transition(&order, S::Confirmed, &payment).await.unwrap();
    assert_eq!(confirmed.version, 2);
    // `order` is version 1: stale.
    let err = shop.transition(&order, S::Cancelled, "").await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("version 2"), "{}", err.message());
    assert_eq!(shop.get(&order.order_id).await, confirmed);
    // 0 skips the check.
    let mut unchecked = order.clone();
    unchecked.version = 0;
    let packed = shop.transition(&unchecked, S::Packed, "").await.unwrap();
    assert_eq!((packed.state, packed.version), (S::Packed as i32, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_are_refused_thirty_days_after_delivery() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let mut shop = Shop::start_with(memory_store(), clock.clone(), meshwork_orders::hosted).await;
    let user = unique("returner");
    let s = sku("RET");
    let mut delivered = Vec::new();
    for _ in 0..2 {
        let order = shop.create(&user, &[(s.as_str(), 1, 500)], "").await;
        let payment = shop.pay(&order).await;
        let mut o = shop.transition(&order, S::Confirmed, &payment).await.unwrap();
        for to in [S::Packed, S::Shipped, S::Delivered] {
            o = shop.transition(&o, to, "").await.unwrap();
        }
        delivered.push(o);
    }
    // Day 30 (to the millisecond): still open.
    clock.advance(30 * 24 * 3600 * 1000);
    let requested = shop.transition(&delivered[0], S::ReturnRequested, "").await.unwrap();
    assert_eq!(requested.state, S::ReturnRequested as i32);
    assert_eq!(requested.reason, "test reason");
    // One millisecond later: closed.
    clock.advance(1);
    let err = shop.transition(&delivered[1], S::ReturnRequested, "").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("return window"), "{}", err.message());
    assert_eq!(shop.get(&delivered[1].order_id).await, delivered[1]);
}

/// Rebuilds `order_id` from its history alone and compares with GetOrder; also checks that
/// versions count up from 1, sequences grow, and each event carries the fold so far.
async fn rebuilt_equals_current(shop: &mut Shop, order_id: &str) -> usize {
    let history = shop.history(order_id).await;
    let current = shop.get(order_id).await;
    let rebuilt = meshwork_orders::fold_history(&history).unwrap();
    assert_eq!(rebuilt, current, "order {order_id} rebuilt from its events differs");
    for (i, e) in history.iter().enumerate() {
        assert_eq!(e.version, i as i64 + 1);
        assert_eq!(e.order_id, order_id);
        assert_eq!(meshwork_orders::fold_history(&history[..=i]).unwrap(), e.order.clone().unwrap());
    }
    assert!(history.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(history[0].r#type, pb::OrderEventType::OrderCreated as i32);
    history.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_folds_back_from_its_history() {
    let mut shop = Shop::start(memory_store()).await;
    let user = unique("folder");
    let (a, b) = (sku("FOLDA"), sku("FOLDB"));
    shop.receive(&a, "north", 50).await;
    shop.receive(&b, "south", 50).await;
    let lines = [(a.as_str(), 3, 199), (b.as_str(), 1, 2500)];
    let mut ids = Vec::new();
    // Left in CREATED; cancelled unpaid with a hold; cancelled paid; shipped; returned.
    ids.push(shop.create(&user, &lines, "").await.order_id);
    let hold = shop.reserve(&[(a.as_str(), 3), (b.as_str(), 1)]).await;
    let held = shop.create(&user, &lines, &hold.reservation_id).await;
    shop.transition(&held, S::Cancelled, "").await.unwrap();
    ids.push(held.order_id);
    let paid = shop.paid_order(&user, &lines).await;
    shop.transition(&paid, S::Cancelled, "").await.unwrap();
    ids.push(paid.order_id);
    let mut shipped = shop.paid_order(&user, &lines).await;
    for to in [S::Packed, S::Shipped] {
        shipped = shop.transition(&shipped, to, "").await.unwrap();
    }
    ids.push(shipped.order_id);
    let mut returned = shop.paid_order(&user, &lines).await;
    for to in [S::Packed, S::Shipped, S::Delivered, S::ReturnRequested, S::Returned] {
        returned = shop.transition(&returned, to, "").await.unwrap();
    }
    ids.push(returned.order_id.clone());
    let mut total_events = 0;
    for id in &ids {
        total_events += rebuilt_equals_current(&mut shop, id).await;
    }
    // The returned order's history shows its refund and its restock.
    let kinds: Vec<i32> = shop.history(&returned.order_id).await.iter().map(|e| e.r#type).collect();
    assert!(kinds.contains(&(pb::OrderEventType::Refunded as i32)), "{kinds:?}");
    assert!(kinds.contains(&(pb::OrderEventType::Restocked as i32)), "{kinds:?}");
    assert!(total_events >= 20, "{total_events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_orders_is_newest_first_and_paged() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let mut shop = Shop::start_with(memory_store(), clock.clone(), meshwork_orders::hosted).await;
    let user = unique("lister");
    let s = sku("LIST");
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(shop.create(&user, &[(s.as_str(), 1, 1)], "").await.order_id);
        clock.advance(1000);
    }
    shop.create(&unique("someone-else"), &[(s.as_str(), 1, 1)], "").await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = shop
            .orders
            .list_orders(pb::ListOrdersRequest { user_id: user.clone(), page_size: 2, page_token: token.clone() })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.orders.len() <= 2);
        seen.extend(page.orders.into_iter().map(|o| o.order_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    created.reverse();
    assert_eq!(seen, created, "newest first, each once");
    assert_eq!(pages, 3);
    // A token of another user's query is refused.
    let first = shop
        .orders
        .list_orders(pb::ListOrdersRequest { user_id: user.clone(), page_size: 1, page_token: String::new() })
        .await
        .unwrap()
        .into_inner();
    let err = shop
        .orders
        .list_orders(pb::ListOrdersRequest {
            user_id: unique("other"),
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_token"));
}

/// Reads `n` events from `stream` (each within [`WAIT`]).
async fn take(stream: &mut tonic::Streaming<pb::OrderEvent>, n: usize) -> Vec<pb::OrderEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(WAIT, stream.next()).await.expect("an event in time");
        out.push(next.expect("stream open").expect("event"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_a_reconnect_without_gaps_or_repeats() {
    let mut shop = Shop::start(memory_store()).await;
    let user = unique("watcher");
    let s = sku("WATCH");
    // Before the watch: not sent with from_sequence 0.
    let early = shop.create(&user, &[(s.as_str(), 1, 1)], "").await;
    let watch = |from: u64, target: pb::watch_orders_request::Target| pb::WatchOrdersRequest {
        target: Some(target),
        from_sequence: from,
    };
    let by_user = |u: &str| pb::watch_orders_request::Target::UserId(u.to_string());
    let mut stream = shop.orders.watch_orders(watch(0, by_user(&user))).await.unwrap().into_inner();
    let mut order_stream = shop
        .orders
        .watch_orders(watch(0, pb::watch_orders_request::Target::OrderId(early.order_id.clone())))
        .await
        .unwrap()
        .into_inner();
    // Another user's events are not sent.
    shop.create(&unique("not-watched"), &[(s.as_str(), 1, 1)], "").await;
    let mut ids = vec![early.order_id.clone()];
    for _ in 0..2 {
        let o = shop.create(&user, &[(s.as_str(), 1, 1)], "").await;
        shop.transition(&o, S::Cancelled, "").await.unwrap();
        ids.push(o.order_id);
    }
    let first = take(&mut stream, 3).await;
    drop(stream);
    // While disconnected.
    shop.transition(&early, S::Cancelled, "").await.unwrap();
    let o = shop.create(&user, &[(s.as_str(), 1, 1)], "").await;
    ids.push(o.order_id.clone());
    let resume_from = first.last().unwrap().sequence + 1;
    let mut resumed = shop.orders.watch_orders(watch(resume_from, by_user(&user))).await.unwrap().into_inner();
    // Live after the reconnect.
    shop.transition(&o, S::Cancelled, "").await.unwrap();
    let rest = take(&mut resumed, 4).await;
    let got: Vec<u64> = first.iter().chain(&rest).map(|e| e.sequence).collect();
    // The expected events: every event of the user's orders after the watch started.
    let mut expected = BTreeSet::new();
    for id in &ids {
        for e in shop.history(id).await {
            if e.order_id != early.order_id || e.version > 1 {
                expected.insert(e.sequence);
            }
        }
    }
    assert_eq!(got, expected.into_iter().collect::<Vec<_>>(), "every event once, in order");
    assert!(first.iter().chain(&rest).all(|e| e.user_id == user && e.order.is_some()));
    // Nothing more is pending for the user.
    assert!(tokio::time::timeout(Duration::from_millis(300), resumed.next()).await.is_err());
    // The order's own stream saw only its cancellation.
    let mine = take(&mut order_stream, 1).await;
    assert_eq!((mine[0].order_id.as_str(), mine[0].to), (early.order_id.as_str(), S::Cancelled as i32));
}

fn as_caller<T>(message: T, subject: &str, roles: &[&str]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::Jwt).encode();
    request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_act_on_their_own_orders_unless_they_have_a_role() {
    let mut shop = Shop::start(memory_store()).await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let s = sku("WHO");
    let mut req = create_request(&alice, &[(s.as_str(), 1, 1)], "");
    let err = shop.orders.create_order(as_caller(req.clone(), &bob, &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    req.request_id = unique("create");
    let order = shop.orders.create_order(as_caller(req, &alice, &[])).await.unwrap().into_inner().order.unwrap();
    let get = || pb::GetOrderRequest { order_id: order.order_id.clone() };
    assert!(shop.orders.get_order(as_caller(get(), &alice, &[])).await.is_ok());
    assert_eq!(shop.orders.get_order(as_caller(get(), &bob, &[])).await.unwrap_err().code(), Code::PermissionDenied);
    assert!(shop.orders.get_order(as_caller(get(), &bob, &["admin"])).await.is_ok());
    let history = pb::GetOrderHistoryRequest { order_id: order.order_id.clone() };
    assert_eq!(
        shop.orders.get_order_history(as_caller(history, &bob, &[])).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let list = pb::ListOrdersRequest { user_id: alice.clone(), ..Default::default() };
    assert_eq!(shop.orders.list_orders(as_caller(list, &bob, &[])).await.unwrap_err().code(), Code::PermissionDenied);
    let watch = pb::WatchOrdersRequest {
        target: Some(pb::watch_orders_request::Target::UserId(alice.clone())),
        from_sequence: 0,
    };
    assert_eq!(shop.orders.watch_orders(as_caller(watch, &bob, &[])).await.unwrap_err().code(), Code::PermissionDenied);
    // Staff pack anyone's order but do not cancel it; bob may not touch it.
    let payment = shop.pay(&order).await;
    let confirm = pb::TransitionOrderRequest {
        order_id: order.order_id.clone(),
        to: S::Confirmed as i32,
        payment_id: payment,
        ..Default::default()
    };
    let confirmed =
        shop.orders.transition_order(as_caller(confirm, &alice, &[])).await.unwrap().into_inner().order.unwrap();
    let to = |state: S, reason: &str| pb::TransitionOrderRequest {
        order_id: order.order_id.clone(),
        to: state as i32,
        expected_version: 0,
        reason: reason.into(),
        payment_id: String::new(),
    };
    let denied = shop.orders.transition_order(as_caller(to(S::Packed, ""), &bob, &[])).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = shop.orders.transition_order(as_caller(to(S::Cancelled, "x"), &bob, &["orders"])).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(shop.get(&order.order_id).await, confirmed, "refused calls changed nothing");
    let packed = shop.orders.transition_order(as_caller(to(S::Packed, ""), &bob, &["orders"])).await.unwrap();
    assert_eq!(packed.into_inner().order.unwrap().state, S::Packed as i32);
}

/// Checks an INVALID_ARGUMENT naming `field`.
#[track_caller]
fn invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    let err = result.expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
    assert!(err.message().starts_with(&format!("{field}:")), "{field}: {}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let mut shop = Shop::start(memory_store()).await;
    let user = unique("catalogue");
    let s = sku("BAD");
    let good = || create_request(&user, &[(s.as_str(), 1, 100)], "");
    type Edit = Box<dyn Fn(&mut pb::CreateOrderRequest)>;
    let creates: Vec<(&str, Edit)> = vec![
        ("request_id", Box::new(|r| r.request_id.clear())),
        ("request_id", Box::new(|r| r.request_id = "r".repeat(65))),
        ("request_id", Box::new(|r| r.request_id = "white space".into())),
        ("user_id", Box::new(|r| r.user_id.clear())),
        ("user_id", Box::new(|r| r.user_id = "u".repeat(129))),
        ("lines", Box::new(|r| r.lines.clear())),
        (
            "lines",
            Box::new(|r| {
                r.lines = (0..101)
                    .map(|i| pb::OrderLine { sku: format!("SKU-{i}"), quantity: 1, ..Default::default() })
                    .collect()
            }),
        ),
        ("lines[0].sku", Box::new(|r| r.lines[0].sku.clear())),
        ("lines[0].sku", Box::new(|r| r.lines[0].sku = "lower-case".into())),
        ("lines[0].sku", Box::new(|r| r.lines[0].sku = "S".repeat(41))),
        ("lines[1].sku", Box::new(|r| r.lines.push(r.lines[0].clone()))),
        ("lines[0].quantity", Box::new(|r| r.lines[0].quantity = -3)),
        ("lines[0].quantity", Box::new(|r| r.lines[0].quantity = 0)),
        ("lines[0].quantity", Box::new(|r| r.lines[0].quantity = 1000)),
        ("lines[0].unit_price_minor", Box::new(|r| r.lines[0].unit_price_minor = -1)),
        ("lines[0].unit_price_minor", Box::new(|r| r.lines[0].unit_price_minor = 100_000_000_001)),
        ("lines[0].title", Box::new(|r| r.lines[0].title = "t".repeat(201))),
        ("currency", Box::new(|r| r.currency.clear())),
        ("currency", Box::new(|r| r.currency = "usd".into())),
        ("currency", Box::new(|r| r.currency = "XYZ".into())),
        ("shipping_address", Box::new(|r| r.shipping_address = None)),
        ("shipping_address.name", Box::new(|r| r.shipping_address.as_mut().unwrap().name.clear())),
        ("shipping_address.line1", Box::new(|r| r.shipping_address.as_mut().unwrap().line1 = "l".repeat(101))),
        ("shipping_address.city", Box::new(|r| r.shipping_address.as_mut().unwrap().city.clear())),
        ("shipping_address.postal_code", Box::new(|r| r.shipping_address.as_mut().unwrap().postal_code.clear())),
        ("shipping_address.country", Box::new(|r| r.shipping_address.as_mut().unwrap().country = "gb".into())),
        ("shipping_address.country", Box::new(|r| r.shipping_address.as_mut().unwrap().country = "GBR".into())),
        ("reservation_id", Box::new(|r| r.reservation_id = "res_nope".into())),
        ("checkout_id", Box::new(|r| r.checkout_id = "c".repeat(65))),
    ];
    for (field, edit) in creates {
        let mut req = good();
        edit(&mut req);
        invalid(shop.orders.create_order(req).await, field);
    }
    // Nothing was created.
    let list = |user: &str| pb::ListOrdersRequest { user_id: user.to_string(), ..Default::default() };
    assert!(shop.orders.list_orders(list(&user)).await.unwrap().into_inner().orders.is_empty());

    // The same request_id with another request.
    let first = good();
    let order = shop.orders.create_order(first.clone()).await.unwrap().into_inner().order.unwrap();
    let mut reused = first.clone();
    reused.lines[0].quantity = 2;
    assert_eq!(shop.orders.create_order(reused).await.unwrap_err().code(), Code::AlreadyExists);
    assert_eq!(shop.orders.create_order(first).await.unwrap().into_inner().order.unwrap(), order, "same answer");

    let unknown = "ord_00000000000000000000".to_string();
    for bad in [String::new(), "ord_short".into(), "x".repeat(300), "ord_0000000000000000000!".into()] {
        invalid(shop.orders.get_order(pb::GetOrderRequest { order_id: bad.clone() }).await, "order_id");
        invalid(shop.orders.get_order_history(pb::GetOrderHistoryRequest { order_id: bad.clone() }).await, "order_id");
    }
    let not_found = shop.orders.get_order(pb::GetOrderRequest { order_id: unknown.clone() }).await.unwrap_err();
    assert_eq!(not_found.code(), Code::NotFound);
    let history = shop.orders.get_order_history(pb::GetOrderHistoryRequest { order_id: unknown.clone() }).await;
    assert_eq!(history.unwrap_err().code(), Code::NotFound);

    let move_to = |to: i32| pb::TransitionOrderRequest { order_id: order.order_id.clone(), to, ..Default::default() };
    let transitions: Vec<(&str, pb::TransitionOrderRequest)> = vec![
        ("order_id", pb::TransitionOrderRequest { order_id: String::new(), ..move_to(S::Packed as i32) }),
        ("to", move_to(0)),
        ("to", move_to(99)),
        ("to", move_to(-1)),
        ("to", move_to(S::Created as i32)),
        ("expected_version", pb::TransitionOrderRequest { expected_version: -1, ..move_to(S::Packed as i32) }),
        ("reason", move_to(S::Cancelled as i32)),
        ("reason", pb::TransitionOrderRequest { reason: "  ".into(), ..move_to(S::ReturnRequested as i32) }),
        ("reason", pb::TransitionOrderRequest { reason: "r".repeat(501), ..move_to(S::Packed as i32) }),
        ("payment_id", move_to(S::Confirmed as i32)),
        ("payment_id", pb::TransitionOrderRequest { payment_id: "pay_x".into(), ..move_to(S::Confirmed as i32) }),
        (
            "payment_id",
            pb::TransitionOrderRequest { payment_id: "pay_00000000000000000000".into(), ..move_to(S::Packed as i32) },
        ),
    ];
    for (field, req) in transitions {
        invalid(shop.orders.transition_order(req).await, field);
    }
    let unknown_order = pb::TransitionOrderRequest { order_id: unknown.clone(), ..move_to(S::Packed as i32) };
    assert_eq!(shop.orders.transition_order(unknown_order).await.unwrap_err().code(), Code::NotFound);
    // A payment that does not exist, and one not captured, do not confirm.
    let ghost =
        pb::TransitionOrderRequest { payment_id: "pay_00000000000000000000".into(), ..move_to(S::Confirmed as i32) };
    assert_eq!(shop.orders.transition_order(ghost).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(shop.get(&order.order_id).await, order, "refused transitions changed nothing");
    assert_eq!(shop.history(&order.order_id).await.len(), 1);

    let lists: Vec<(&str, pb::ListOrdersRequest)> = vec![
        ("user_id", list("")),
        ("user_id", list(&"u".repeat(129))),
        ("page_size", pb::ListOrdersRequest { page_size: -1, ..list(&user) }),
        ("page_size", pb::ListOrdersRequest { page_size: 1001, ..list(&user) }),
        ("page_token", pb::ListOrdersRequest { page_token: "garbage".into(), ..list(&user) }),
    ];
    for (field, req) in lists {
        invalid(shop.orders.list_orders(req).await, field);
    }

    use pb::watch_orders_request::Target;
    let watches: Vec<(&str, pb::WatchOrdersRequest)> = vec![
        ("target", pb::WatchOrdersRequest { target: None, from_sequence: 0 }),
        ("user_id", pb::WatchOrdersRequest { target: Some(Target::UserId(String::new())), from_sequence: 0 }),
        ("order_id", pb::WatchOrdersRequest { target: Some(Target::OrderId("ord_bad".into())), from_sequence: 0 }),
    ];
    for (field, req) in watches {
        invalid(shop.orders.watch_orders(req).await, field);
    }
    let ghost_watch = pb::WatchOrdersRequest { target: Some(Target::OrderId(unknown)), from_sequence: 0 };
    assert_eq!(shop.orders.watch_orders(ghost_watch).await.unwrap_err().code(), Code::NotFound);

    // In the end: one order, untouched.
    let listed = shop.orders.list_orders(list(&user)).await.unwrap().into_inner().orders;
    assert_eq!(listed, vec![order]);
}
