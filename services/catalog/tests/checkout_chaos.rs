//! Fifty concurrent checkouts while payments fails 30% of its calls (UNAVAILABLE), some cards
//! decline and one sku runs out: every checkout ends COMPLETED (order CONFIRMED, stock
//! committed, payment CAPTURED) or FAILED (order CANCELLED, hold released, authorization
//! voided), and the sums of stock, holds and payments find nothing leaked. On every backend.

mod checkout_support;

use std::collections::BTreeMap;

use checkout_support::{CheckoutState, place, shop, sku, user};
use futures::StreamExt;
use meshwork_common::Settings;
use meshwork_proto::pb::payments::v1 as pay;
use meshwork_test_support::backends::Backend;

const CHECKOUTS: usize = 50;

async fn checkouts_under_payment_failures_leak_nothing(backend: Backend) {
    let settings = Settings::default().with("payments.failure_rate", 0.3);
    let shop = shop(backend.store, settings).await;
    // SCARCE has stock for 30 of the 50 carts that want it; the others take one of two skus
    // with plenty.
    let (scarce, left, right) = (sku("CHAOS-S"), sku("CHAOS-L"), sku("CHAOS-R"));
    let start: BTreeMap<String, i64> = [(scarce.clone(), 30), (left.clone(), 100), (right.clone(), 100)].into();
    for (s, units) in &start {
        shop.stocked(s, 250, *units).await;
    }
    let mut wanted = Vec::new();
    for i in 0..CHECKOUTS {
        let u = user(&format!("chaos{i}-"));
        let other = if i % 2 == 0 { &left } else { &right };
        shop.add(&u, &scarce, 1).await;
        shop.add(&u, other, 1 + (i as i64 % 3)).await;
        let token = if i % 10 == 7 { "tok_decline" } else { "tok_ok" };
        wanted.push(place(&format!("{u}-place"), &u, token));
    }

    let shop = &shop;
    let placed: Vec<_> = futures::stream::iter(wanted.clone())
        .map(|req| async move { shop.place_order(req).await.expect("PlaceOrder answers a finished checkout") })
        .buffer_unordered(25)
        .collect()
        .await;
    assert_eq!(placed.len(), CHECKOUTS);

    let mut sold: BTreeMap<String, i64> = BTreeMap::new();
    let mut completed = 0;
    for chk in &placed {
        if shop.assert_settled(chk).await {
            completed += 1;
            let got = shop.get_checkout(&chk.checkout_id).await;
            assert_eq!(&got, chk, "GetCheckout shows the answer PlaceOrder gave");
            let cart_of = wanted.iter().find(|r| r.user_id == chk.user_id).expect("request");
            assert!(shop.cart(&cart_of.user_id).await.lines.is_empty());
            for line in shop.order(&chk.order_id).await.lines {
                *sold.entry(line.sku).or_default() += line.quantity;
            }
        }
    }
    let failed = CHECKOUTS - completed;
    assert!(completed >= 20, "most checkouts complete: {completed}");
    assert!(failed >= 5, "declines and the scarce sku fail some: {failed}");
    assert!(sold[&scarce] <= 30, "never oversold");
    let retried = placed.iter().filter(|c| c.steps.iter().any(|s| s.attempts > 1)).count();
    assert!(retried > 0, "payments' injected failures were retried");

    for (s, units) in &start {
        let (on_hand, reserved) = shop.stock(s).await;
        assert_eq!(reserved, 0, "{s}: no hold left");
        assert_eq!(on_hand, units - sold.get(s).copied().unwrap_or(0), "{s}: on hand = start - sold");
    }
    let mut captured = 0;
    for chk in &placed {
        if chk.order_id.is_empty() {
            continue;
        }
        for p in shop.order_payments(&chk.order_id).await {
            assert_ne!(p.status, pay::PaymentStatus::Authorized as i32, "authorization left: {p:?}");
            if p.status == pay::PaymentStatus::Captured as i32 {
                assert_eq!(chk.state, CheckoutState::Completed as i32);
                captured += p.captured_minor;
            }
        }
    }
    let completed_total: i64 =
        placed.iter().filter(|c| c.state == CheckoutState::Completed as i32).map(|c| c.total_minor).sum();
    assert_eq!(captured, completed_total, "money taken = totals of the completed checkouts");
}

meshwork_test_support::on_every_backend!(checkouts_under_payment_failures_leak_nothing);
