//! A process killed mid-checkout: saga records are left exactly as the driver writes them
//! before each step (lease run out, owner gone), with the effects of the steps that reached
//! the other services really made, at every interesting point: before any step, in the
//! middle of a call that never arrived, of an authorization that did, of a capture that did,
//! while compensating a declined card or a failed capture (one that was made after all, so
//! the saga goes forward), and past the pivot with a hold that was released meanwhile. Two
//! fresh replicas on the same store finish or compensate every one of them
//! within 30 s, a retried PlaceOrder answers the recovered checkout, and the sums of stock,
//! holds and payments hold. On every backend.

mod checkout_support;

use std::collections::BTreeMap;
use std::time::Duration;

use checkout_support::{CheckoutState, Shop, address, place, shop, sku, user};
use meshwork_catalog::checkout::keys;
use meshwork_catalog::checkout::model::{AddressSnapshot, LineSnapshot, NewSaga, SagaRecord, Step};
use meshwork_catalog::checkout::saga;
use meshwork_catalog::checkout::service::new_checkout_id;
use meshwork_common::{Record, Settings};
use meshwork_proto::pb::inventory::v1 as inv;
use meshwork_proto::pb::orders::v1 as ord;
use meshwork_proto::pb::payments::v1 as pay;
use meshwork_storage::Mutation;
use meshwork_test_support::backends::Backend;

/// Where the dead process stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiedAt {
    /// The record was written, no step begun.
    Start,
    /// Reserved; the order's creation begun but never reached orders.
    CreatingOrder,
    /// Order created; the authorization reached payments, its answer was lost.
    Authorizing,
    /// Authorized; the capture reached payments, its answer was lost.
    Capturing,
    /// The card was declined; compensating, nothing undone yet.
    CompensatingDecline,
    /// Captured; the hold was released meanwhile (as if it expired), commit not begun.
    CommittingReleasedHold,
    /// Authorized; the capture failed for good (not captured); compensating, nothing undone.
    CompensatingFailedCapture,
    /// Authorized; the capture's answers were lost but it was made; compensating, nothing
    /// undone: the void finds the payment captured and the saga goes forward.
    CompensatingUncertainCapture,
}

const ALL: [DiedAt; 8] = [
    DiedAt::Start,
    DiedAt::CreatingOrder,
    DiedAt::Authorizing,
    DiedAt::Capturing,
    DiedAt::CompensatingDecline,
    DiedAt::CommittingReleasedHold,
    DiedAt::CompensatingFailedCapture,
    DiedAt::CompensatingUncertainCapture,
];

/// Makes the effects of the steps that reached the services and returns the record the dead
/// process left.
async fn leave_behind(shop: &Shop, user_id: &str, died: DiedAt, now_ms: i64) -> SagaRecord {
    let cart = shop.cart(user_id).await;
    let token = if died == DiedAt::CompensatingDecline { "tok_decline" } else { "tok_ok" };
    let new = NewSaga {
        checkout_id: new_checkout_id(),
        request_id: format!("{user_id}-place"),
        user_id: user_id.into(),
        lines: cart
            .lines
            .iter()
            .map(|l| LineSnapshot {
                sku: l.sku.clone(),
                title: l.title.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
            })
            .collect(),
        currency: cart.currency.clone(),
        total_minor: cart.subtotal_minor,
        cart_version: cart.version,
        address: AddressSnapshot::from(&address()),
        payment_token: token.into(),
    };
    // The lease ran out a while ago.
    let mut rec = SagaRecord::new(new, "drv_dead", now_ms - 60_000, now_ms - 50_000);
    let id = rec.checkout_id.clone();
    if died == DiedAt::Start {
        return rec;
    }

    saga::begin_attempt(&mut rec, Step::ReserveStock, now_ms);
    let reservation = shop
        .inventory()
        .reserve(inv::ReserveRequest {
            request_id: rec.request_id_of(Step::ReserveStock),
            lines: rec
                .lines
                .iter()
                .map(|l| inv::ReserveLine { sku: l.sku.clone(), quantity: l.quantity, location: String::new() })
                .collect(),
            ttl: None,
            reference: id.clone(),
        })
        .await
        .expect("reserve")
        .into_inner()
        .reservation
        .expect("reservation");
    rec.reservation_id = reservation.reservation_id.clone();
    saga::step_done(&mut rec, Step::ReserveStock, reservation.reservation_id.clone(), now_ms);
    saga::begin_attempt(&mut rec, Step::CreateOrder, now_ms);
    if died == DiedAt::CreatingOrder {
        return rec;
    }

    let order = shop
        .orders()
        .create_order(ord::CreateOrderRequest {
            request_id: rec.request_id_of(Step::CreateOrder),
            user_id: user_id.into(),
            lines: rec
                .lines
                .iter()
                .map(|l| ord::OrderLine {
                    sku: l.sku.clone(),
                    title: l.title.clone(),
                    quantity: l.quantity,
                    unit_price_minor: l.unit_price_minor,
                })
                .collect(),
            currency: rec.currency.clone(),
            shipping_address: Some(address()),
            reservation_id: rec.reservation_id.clone(),
            checkout_id: id.clone(),
        })
        .await
        .expect("create order")
        .into_inner()
        .order
        .expect("order");
    rec.order_id = order.order_id.clone();
    saga::step_done(&mut rec, Step::CreateOrder, order.order_id.clone(), now_ms);
    saga::begin_attempt(&mut rec, Step::AuthorizePayment, now_ms);
    let authorized = shop
        .payments()
        .authorize(pay::AuthorizeRequest {
            request_id: rec.request_id_of(Step::AuthorizePayment),
            order_id: rec.order_id.clone(),
            user_id: user_id.into(),
            amount_minor: rec.total_minor,
            currency: rec.currency.clone(),
            payment_token: token.into(),
        })
        .await;
    match died {
        DiedAt::Authorizing => {
            authorized.expect("authorize");
            return rec;
        }
        DiedAt::CompensatingDecline => {
            let status = authorized.expect_err("declined");
            let message = format!("payments: {}", status.message());
            saga::step_failed(&mut rec, Step::AuthorizePayment, status.code() as i32, message, false, now_ms);
            return rec;
        }
        _ => {}
    }
    let payment = authorized.expect("authorize").into_inner().payment.expect("payment");
    rec.payment_id = payment.payment_id.clone();
    saga::step_done(&mut rec, Step::AuthorizePayment, payment.payment_id.clone(), now_ms);
    saga::begin_attempt(&mut rec, Step::CapturePayment, now_ms);
    if died == DiedAt::CompensatingFailedCapture {
        let message = "payments: unavailable: injected failure".to_string();
        saga::step_failed(&mut rec, Step::CapturePayment, 14, message, false, now_ms);
        return rec;
    }
    shop.payments()
        .capture(pay::CaptureRequest {
            request_id: rec.request_id_of(Step::CapturePayment),
            payment_id: rec.payment_id.clone(),
            amount_minor: 0,
        })
        .await
        .expect("capture");
    if died == DiedAt::Capturing {
        return rec;
    }
    if died == DiedAt::CompensatingUncertainCapture {
        let message = "payments: deadline exceeded".to_string();
        saga::step_failed(&mut rec, Step::CapturePayment, 4, message, true, now_ms);
        return rec;
    }
    let payment_id = rec.payment_id.clone();
    saga::step_done(&mut rec, Step::CapturePayment, payment_id, now_ms);
    // The hold goes away before the dead process's successor commits it.
    shop.inventory()
        .release_reservation(inv::ReleaseReservationRequest {
            reservation_id: rec.reservation_id.clone(),
            reason: "expired (test)".into(),
        })
        .await
        .expect("release");
    rec
}

fn expected(died: DiedAt) -> CheckoutState {
    match died {
        DiedAt::CompensatingDecline | DiedAt::CommittingReleasedHold | DiedAt::CompensatingFailedCapture => {
            CheckoutState::Failed
        }
        _ => CheckoutState::Completed,
    }
}

async fn killed_sagas_finish_or_compensate_after_a_restart(backend: Backend) {
    let store = backend.store;
    let first = shop(store.clone(), Settings::default()).await;
    let stock = sku("RECOVER");
    let start = 100;
    first.stocked(&stock, 999, start).await;
    let mut left = Vec::new();
    let now_ms = first.ctx.clock.now_ms();
    for (i, died) in ALL.into_iter().enumerate() {
        let u = user(&format!("recover{i}-"));
        first.add(&u, &stock, 1 + i as i64).await;
        left.push((died, leave_behind(&first, &u, died, now_ms).await));
    }
    // The process dies; what it had written stays in the store.
    first.server.stop().await;
    for (_, rec) in &left {
        let id = &rec.checkout_id;
        let mutations = vec![
            Mutation::put(keys::checkout(id), rec.encode().expect("encode")),
            Mutation::put(keys::open(id), Vec::new()),
            Mutation::put(keys::request(&rec.request_id), id.clone().into_bytes()),
        ];
        store.write(Vec::new(), mutations).await.expect("write the dead process's records");
    }

    // Two replicas start on the store; their recovery tasks race for the sagas, and the
    // conditional takeover gives each saga to one of them.
    let second = shop(store.clone(), Settings::default()).await;
    let _replica = shop(store.clone(), Settings::default()).await;
    let mut sold = 0;
    for (died, rec) in &left {
        let chk = second.finished(&rec.checkout_id, Duration::from_secs(30)).await;
        assert_eq!(chk.state, expected(*died) as i32, "{died:?}: {chk:?}");
        let completed = second.assert_settled(&chk).await;
        if completed {
            sold += rec.lines.iter().map(|l| l.quantity).sum::<i64>();
            assert!(second.cart(&rec.user_id).await.lines.is_empty(), "{died:?}: cart cleared");
        }
        if *died == DiedAt::CommittingReleasedHold {
            let payments = second.order_payments(&chk.order_id).await;
            assert_eq!(payments.len(), 1);
            assert_eq!(payments[0].status, pay::PaymentStatus::Refunded as i32, "the capture is refunded");
            assert_eq!(chk.failure.as_ref().map(|f| f.step.as_str()), Some("commit_stock"));
        }
        if *died == DiedAt::CompensatingFailedCapture {
            let payments = second.order_payments(&chk.order_id).await;
            assert_eq!(payments.len(), 1);
            assert_eq!(payments[0].status, pay::PaymentStatus::Voided as i32, "the authorization is voided");
        }
        if *died == DiedAt::CompensatingDecline {
            assert!(chk.failure.as_ref().is_some_and(|f| f.message.contains("card declined")), "{chk:?}");
        }
        // A client retrying its PlaceOrder after the crash gets the recovered checkout.
        let mut retry = place(&rec.request_id, &rec.user_id, &rec.payment_token);
        retry.shipping_address = Some(address());
        let again = second.place_order(retry).await.expect("retried PlaceOrder");
        assert_eq!(again, chk, "{died:?}");
    }
    assert_eq!(second.stock(&stock).await, (start - sold, 0), "on hand = start - sold, nothing held");
    let unfinished = meshwork_storage::scan_all(
        &store,
        meshwork_storage::KeyRange::prefix(keys::OPEN_PREFIX),
        meshwork_storage::Direction::Forward,
    )
    .await
    .expect("scan the index");
    let ours: BTreeMap<_, _> = left.iter().map(|(d, r)| (r.checkout_id.clone(), *d)).collect();
    assert!(
        unfinished.iter().all(|e| !ours.contains_key(keys::open_id(&e.key).unwrap_or_default())),
        "finished sagas leave the index of open ones"
    );
}

meshwork_test_support::on_every_backend!(killed_sagas_finish_or_compensate_after_a_restart);
