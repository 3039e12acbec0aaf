//! The checkout saga against the real payments, inventory, orders and carts, all called
//! through one port as through the gateway: the happy path, compensation of a declined card
//! and of missing stock, one checkout for one `request_id` (also concurrently), the caller's
//! rights, and the bad-input catalogue of PlaceOrder and GetCheckout.

mod checkout_support;

use checkout_support::{CheckoutState, Shop, place, shop, sku, step, user};
use meshwork_common::Settings;
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::catalog::v1 as pb;
use meshwork_proto::pb::orders::v1 as ord;
use meshwork_proto::pb::payments::v1 as pay;
use meshwork_test_support::backends::{self, Backend};
use tonic::Code;

async fn memory_shop() -> Shop {
    shop(backends::memory().store, Settings::default()).await
}

async fn happy_path(backend: Backend) {
    let shop = shop(backend.store, Settings::default()).await;
    let (a, b) = (sku("HAPPY-A"), sku("HAPPY-B"));
    shop.stocked(&a, 1_250, 10).await;
    shop.stocked(&b, 399, 5).await;
    let alice = user("alice");
    shop.add(&alice, &a, 2).await;
    let cart = shop.add(&alice, &b, 3).await;
    assert_eq!(cart.subtotal_minor, 2 * 1_250 + 3 * 399);

    let chk = shop.place_order(place(&format!("{alice}-1"), &alice, "tok_ok")).await.expect("place order");
    assert_eq!(chk.state, CheckoutState::Completed as i32, "{chk:?}");
    assert!(chk.checkout_id.starts_with("chk_") && chk.checkout_id.len() == 24, "{}", chk.checkout_id);
    assert_eq!(chk.user_id, alice);
    assert_eq!(chk.total_minor, cart.subtotal_minor);
    assert_eq!(chk.currency, "USD");
    assert!(shop.assert_settled(&chk).await);

    let order = shop.order(&chk.order_id).await;
    assert_eq!(order.state, ord::OrderState::Confirmed as i32);
    assert_eq!(order.total_minor, chk.total_minor);
    assert_eq!(order.checkout_id, chk.checkout_id);
    assert_eq!(order.reservation_id, chk.reservation_id);
    let payments = shop.order_payments(&chk.order_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, pay::PaymentStatus::Captured as i32);
    assert_eq!(payments[0].captured_minor, chk.total_minor);
    assert_eq!(shop.stock(&a).await, (8, 0));
    assert_eq!(shop.stock(&b).await, (2, 0));
    assert!(shop.cart(&alice).await.lines.is_empty(), "the cart is emptied");

    let got = shop.get_checkout(&chk.checkout_id).await;
    assert_eq!(got.steps.len(), 7);
    for s in &got.steps {
        assert_eq!(s.status, pb::StepStatus::Done as i32, "{s:?}");
        assert!(s.attempts >= 1 && s.start_time.is_some() && s.end_time.is_some(), "{s:?}");
    }
    assert_eq!(step(&got, "create_order").detail, chk.order_id);
    assert_eq!(step(&got, "reserve_stock").detail, chk.reservation_id);
    assert_eq!(step(&got, "authorize_payment").detail, chk.payment_id);
    assert_eq!(got.state, chk.state);
    assert_eq!(shop.checkout_events(&chk.checkout_id).await, ["checkout.completed"]);
}

meshwork_test_support::on_every_backend!(happy_path);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_card_compensates_everything() {
    let shop = memory_shop().await;
    let a = sku("DECLINE");
    shop.stocked(&a, 500, 4).await;
    let bob = user("bob");
    shop.add(&bob, &a, 3).await;

    let chk = shop.place_order(place(&format!("{bob}-1"), &bob, "tok_decline")).await.expect("place order");
    assert_eq!(chk.state, CheckoutState::Failed as i32, "{chk:?}");
    let failure = chk.failure.clone().expect("failure");
    assert_eq!(failure.code, Code::FailedPrecondition as i32);
    assert_eq!(failure.step, "authorize_payment");
    assert!(failure.message.contains("card declined"), "{failure:?}");
    assert!(!shop.assert_settled(&chk).await);

    let order = shop.order(&chk.order_id).await;
    assert_eq!(order.state, ord::OrderState::Cancelled as i32);
    assert!(order.reason.contains(&chk.checkout_id), "the cancellation says why: {}", order.reason);
    assert!(shop.order_payments(&chk.order_id).await.is_empty(), "a declined card authorizes nothing");
    assert_eq!(shop.stock(&a).await, (4, 0), "the hold is released");
    assert_eq!(shop.cart(&bob).await.item_count, 3, "a failed checkout leaves the cart alone");

    let got = shop.get_checkout(&chk.checkout_id).await;
    assert_eq!(step(&got, "reserve_stock").status, pb::StepStatus::Compensated as i32);
    assert_eq!(step(&got, "create_order").status, pb::StepStatus::Compensated as i32);
    assert_eq!(step(&got, "authorize_payment").status, pb::StepStatus::Failed as i32);
    assert_eq!(shop.checkout_events(&chk.checkout_id).await, ["checkout.failed"]);
    for later in ["capture_payment", "commit_stock", "confirm_order", "clear_cart"] {
        assert_eq!(step(&got, later).status, pb::StepStatus::Skipped as i32, "{later}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_stock_fails_at_the_reservation_and_creates_nothing() {
    let shop = memory_shop().await;
    let (a, b) = (sku("PLENTY"), sku("SCARCE"));
    shop.stocked(&a, 100, 10).await;
    shop.stocked(&b, 100, 1).await;
    let carol = user("carol");
    shop.add(&carol, &a, 1).await;
    shop.add(&carol, &b, 2).await;

    let chk = shop.place_order(place(&format!("{carol}-1"), &carol, "tok_ok")).await.expect("place order");
    assert_eq!(chk.state, CheckoutState::Failed as i32, "{chk:?}");
    let failure = chk.failure.clone().expect("failure");
    assert_eq!((failure.code, failure.step.as_str()), (Code::FailedPrecondition as i32, "reserve_stock"));
    assert!(failure.message.contains(&b), "the short sku is named: {failure:?}");
    assert!(chk.order_id.is_empty() && chk.payment_id.is_empty() && chk.reservation_id.is_empty());
    assert!(shop.user_orders(&carol).await.is_empty(), "no order");
    assert_eq!(shop.stock(&a).await, (10, 0));
    assert_eq!(shop.stock(&b).await, (1, 0));
    let got = shop.get_checkout(&chk.checkout_id).await;
    assert!(got.steps[1..].iter().all(|s| s.status == pb::StepStatus::Skipped as i32), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_request_id_is_one_checkout_one_order_one_payment() {
    let shop = memory_shop().await;
    let a = sku("TWICE");
    shop.stocked(&a, 700, 10).await;
    let dave = user("dave");
    shop.add(&dave, &a, 2).await;

    let req = place(&format!("{dave}-1"), &dave, "tok_ok");
    let (first, second) = tokio::join!(shop.place_order(req.clone()), shop.place_order(req.clone()));
    let (first, second) = (first.expect("first"), second.expect("second"));
    assert_eq!(first, second, "the duplicate answers the same checkout");
    assert_eq!(first.state, CheckoutState::Completed as i32);
    let third = shop.place_order(req.clone()).await.expect("third");
    assert_eq!(third, first);

    let orders = shop.user_orders(&dave).await;
    assert_eq!(orders.len(), 1, "one order: {orders:?}");
    assert_eq!(shop.order_payments(&first.order_id).await.len(), 1, "one payment");
    assert_eq!(shop.stock(&a).await, (8, 0), "stock taken once");

    // The same id for another request is refused, and changes nothing.
    let other = place(&format!("{dave}-1"), &dave, "tok_other");
    let err = shop.place_order(other).await.expect_err("reused request id");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert_eq!(shop.user_orders(&dave).await.len(), 1);

    // A new request id on the emptied cart: nothing to check out.
    let err = shop.place_order(place(&format!("{dave}-2"), &dave, "tok_ok")).await.expect_err("empty cart");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(shop.user_orders(&dave).await.len(), 1);
}

fn by<T>(subject: &str, roles: &[&str], message: T) -> tonic::Request<T> {
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::Jwt);
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(IDENTITY_HEADER, identity.encode().parse().expect("identity header"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_user_or_an_admin_checks_out_a_cart() {
    let shop = memory_shop().await;
    let a = sku("OWNED");
    shop.stocked(&a, 100, 5).await;
    let erin = user("erin");
    shop.add(&erin, &a, 1).await;

    let err = shop
        .checkout()
        .place_order(by("mallory", &[], place(&format!("{erin}-1"), &erin, "tok_ok")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(shop.user_orders(&erin).await.is_empty());

    let chk = shop
        .checkout()
        .place_order(by(&erin, &[], place(&format!("{erin}-2"), &erin, "tok_ok")))
        .await
        .unwrap()
        .into_inner();
    let id = chk.checkout.expect("checkout").checkout_id;
    let get = |who: &str, roles: &[&str]| by(who, roles, pb::GetCheckoutRequest { checkout_id: id.clone() });
    assert_eq!(shop.checkout().get_checkout(get("mallory", &[])).await.unwrap_err().code(), Code::PermissionDenied);
    assert!(shop.checkout().get_checkout(get(&erin, &[])).await.is_ok());
    assert!(shop.checkout().get_checkout(get("ops", &["admin"])).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let shop = memory_shop().await;
    let a = sku("BADIN");
    shop.stocked(&a, 100, 5).await;
    let frank = user("frank");
    shop.add(&frank, &a, 1).await;

    type Mutate = fn(&mut pb::PlaceOrderRequest);
    let cases: Vec<(Mutate, &str)> = vec![
        (|r| r.request_id.clear(), "request_id"),
        (|r| r.request_id = "x".repeat(65), "request_id"),
        (|r| r.request_id = "has space".into(), "request_id"),
        (|r| r.user_id.clear(), "user_id"),
        (|r| r.user_id = "u".repeat(129), "user_id"),
        (|r| r.shipping_address = None, "shipping_address"),
        (|r| r.shipping_address.as_mut().unwrap().name.clear(), "shipping_address.name"),
        (|r| r.shipping_address.as_mut().unwrap().line1 = "l".repeat(101), "shipping_address.line1"),
        (|r| r.shipping_address.as_mut().unwrap().postal_code.clear(), "shipping_address.postal_code"),
        (|r| r.shipping_address.as_mut().unwrap().country = "gb".into(), "shipping_address.country"),
        (|r| r.payment_token.clear(), "payment_token"),
        (|r| r.payment_token = "visa-4242".into(), "payment_token"),
        (|r| r.payment_token = format!("tok_{}", "z".repeat(61)), "payment_token"),
    ];
    for (i, (mutate, field)) in cases.into_iter().enumerate() {
        let mut req = place(&format!("{frank}-{i}"), &frank, "tok_ok");
        mutate(&mut req);
        let err = shop.place_order(req).await.expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(field), "{field}: {}", err.message());
    }
    assert!(shop.user_orders(&frank).await.is_empty(), "nothing created");
    assert_eq!(shop.stock(&a).await, (5, 0));
    assert_eq!(shop.cart(&frank).await.item_count, 1);

    // An empty cart is a precondition, not an argument; nothing is created either.
    let err = shop.place_order(place(&format!("{frank}-empty"), &user("nobody"), "tok_ok")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    for (id, code) in [
        ("", Code::InvalidArgument),
        ("chk_short", Code::InvalidArgument),
        ("ord_0123456789abcdefghij", Code::InvalidArgument),
        ("chk_0123456789abcdefgh!j", Code::InvalidArgument),
        ("chk_0123456789abcdefghij", Code::NotFound),
    ] {
        let err = shop.checkout().get_checkout(pb::GetCheckoutRequest { checkout_id: id.into() }).await.unwrap_err();
        assert_eq!(err.code(), code, "{id:?}: {err:?}");
        if code == Code::InvalidArgument {
            assert!(err.message().starts_with("checkout_id"), "{}", err.message());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_that_gives_up_gets_the_finished_checkout_when_it_asks_again() {
    // Every payments call takes 300 ms: the saga outlives a 200 ms deadline.
    let settings = Settings::default().with("payments.latency_ms", 300);
    let shop = shop(backends::memory().store, settings).await;
    let a = sku("SLOW");
    shop.stocked(&a, 100, 5).await;
    let gina = user("gina");
    shop.add(&gina, &a, 2).await;

    let req = place(&format!("{gina}-1"), &gina, "tok_ok");
    let mut hurried = tonic::Request::new(req.clone());
    hurried.set_timeout(std::time::Duration::from_millis(200));
    let err = shop.checkout().place_order(hurried).await.expect_err("deadline");
    // tonic's client gives up on its own deadline with CANCELLED; the server answers
    // DEADLINE_EXCEEDED when it notices first.
    assert!(matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled), "{err:?}");

    // The saga went on without the caller; the same request answers its end.
    let chk = shop.place_order(req).await.expect("asked again");
    assert_eq!(chk.state, CheckoutState::Completed as i32, "{chk:?}");
    assert!(shop.assert_settled(&chk).await);
    assert_eq!(shop.user_orders(&gina).await.len(), 1);
    assert_eq!(shop.stock(&a).await, (3, 0));
}
