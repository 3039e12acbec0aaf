//! The payment life cycle over real gRPC on a real store: capture, void and refund limits and
//! states (FAILED_PRECONDITION naming the amounts or the status), idempotent replays, the event
//! of each change, ownership, oldest-first paging, and failure and latency injection from the
//! service's settings.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use meshwork_common::{EventLog, Settings};
use meshwork_proto::pb::payments::v1 as pb;
use meshwork_test_support::memory_store;
use pb::PaymentStatus as S;
use prost::Message;
use support::*;
use tonic::Code;

fn status(p: &pb::Payment) -> S {
    S::try_from(p.status).unwrap()
}

#[tokio::test]
async fn capture_and_refund_keep_to_the_amounts_and_replays_answer_the_first_answer() {
    let svc = start(memory_store()).await;
    let mut c = svc.client.clone();
    let order = uid("order");
    let rid = uid("rid");
    let auth = authorize(&rid, &order, "bob", 1000);
    let p = c.authorize(auth.clone()).await.unwrap().into_inner().payment.unwrap();
    assert!(p.payment_id.starts_with("pay_") && p.payment_id.len() == 24, "{}", p.payment_id);
    assert!(p.payment_id[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!((status(&p), p.authorized_minor, p.captured_minor, p.version), (S::Authorized, 1000, 0, 1));
    assert_eq!((p.token_last4.as_str(), p.currency.as_str(), p.user_id.as_str()), ("k_ok", "USD", "bob"));
    assert!(p.create_time.is_some() && p.create_time == p.update_time);
    // The same request again: the same payment, nothing new.
    assert_eq!(c.authorize(auth).await.unwrap().into_inner().payment.unwrap(), p);
    assert_eq!(list_all(&mut c, &order).await, vec![p.clone()]);
    let id = p.payment_id.clone();

    assert_status(c.capture(capture(&uid("r"), &id, 1001)).await, Code::FailedPrecondition, &["1001", "1000"]);
    let cap_rid = uid("r");
    let cap = c.capture(capture(&cap_rid, &id, 600)).await.unwrap().into_inner().payment.unwrap();
    assert_eq!((status(&cap), cap.captured_minor, cap.version), (S::Captured, 600, 2));
    assert_eq!(c.capture(capture(&cap_rid, &id, 600)).await.unwrap().into_inner().payment.unwrap(), cap);
    assert_status(c.capture(capture(&cap_rid, &id, 500)).await, Code::AlreadyExists, &["request_id"]);
    // One capture only; a captured payment cannot be voided.
    assert_status(c.capture(capture(&uid("r"), &id, 1)).await, Code::FailedPrecondition, &["CAPTURED"]);
    assert_status(c.void(void(&uid("r"), &id)).await, Code::FailedPrecondition, &["CAPTURED"]);

    assert_status(c.refund(refund(&uid("r"), &id, 601)).await, Code::FailedPrecondition, &["601", "600"]);
    let ref_rid = uid("r");
    let part = c.refund(refund(&ref_rid, &id, 200)).await.unwrap().into_inner().payment.unwrap();
    assert_eq!((status(&part), part.refunded_minor), (S::PartiallyRefunded, 200));
    // A replayed refund gives nothing back twice.
    assert_eq!(c.refund(refund(&ref_rid, &id, 200)).await.unwrap().into_inner().payment.unwrap(), part);
    assert_status(c.refund(refund(&uid("r"), &id, 401)).await, Code::FailedPrecondition, &["401", "400"]);
    let rest = c.refund(refund(&uid("r"), &id, 0)).await.unwrap().into_inner().payment.unwrap();
    assert_eq!((status(&rest), rest.refunded_minor, rest.version), (S::Refunded, 600, 4));
    assert_status(c.refund(refund(&uid("r"), &id, 1)).await, Code::FailedPrecondition, &["REFUNDED"]);
    let got = c.get_payment(pb::GetPaymentRequest { payment_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(got.payment.unwrap(), rest);

    // One event per change, in order, each carrying the payment after it.
    let events = EventLog::new(svc.store.clone(), "payments").read(1, 100).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(types, ["payment.authorized", "payment.captured", "payment.refunded", "payment.refunded"]);
    assert_eq!(pb::Payment::decode(events[3].payload.as_slice()).unwrap(), rest);
}

#[tokio::test]
async fn void_cancels_only_an_authorization_and_twice_is_a_no_op() {
    let svc = start(memory_store()).await;
    let mut c = svc.client.clone();
    let p = authorized(&mut c, "bob", 300).await;
    let voided = c.void(void(&uid("r"), &p.payment_id)).await.unwrap().into_inner().payment.unwrap();
    assert_eq!((status(&voided), voided.version), (S::Voided, 2));
    let again = c.void(void(&uid("r"), &p.payment_id)).await.unwrap().into_inner().payment.unwrap();
    assert_eq!(again, voided, "voiding a VOIDED payment changes nothing");
    assert_status(c.capture(capture(&uid("r"), &p.payment_id, 0)).await, Code::FailedPrecondition, &["VOIDED"]);
    assert_status(c.refund(refund(&uid("r"), &p.payment_id, 0)).await, Code::FailedPrecondition, &["VOIDED"]);
    let events = EventLog::new(svc.store.clone(), "payments").read(1, 100).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(types, ["payment.authorized", "payment.voided"]);
}

#[tokio::test]
async fn any_well_formed_token_authorizes_and_only_owners_or_admins_act() {
    let svc = start(memory_store()).await;
    let mut c = svc.client.clone();
    let order = uid("order");
    let custom =
        pb::AuthorizeRequest { payment_token: "tok_visa_4242".into(), ..authorize(&uid("r"), &order, "alice", 50) };
    let mine = c.authorize(by("alice", &[], custom)).await.unwrap().into_inner().payment.unwrap();
    assert_eq!((status(&mine), mine.token_last4.as_str()), (S::Authorized, "4242"));
    let admin_made = c.authorize(by("root", &["admin"], authorize(&uid("r"), &order, "bob", 70))).await.unwrap();
    let bobs = admin_made.into_inner().payment.unwrap();
    // Alice may capture her own, not Bob's; an admin may.
    c.capture(by("alice", &[], capture(&uid("r"), &mine.payment_id, 0))).await.unwrap();
    assert_status(
        c.capture(by("alice", &[], capture(&uid("r"), &bobs.payment_id, 0))).await,
        Code::PermissionDenied,
        &[],
    );
    c.capture(by("root", &["admin"], capture(&uid("r"), &bobs.payment_id, 0))).await.unwrap();
    // Listing as Alice shows only hers; anonymously or as an admin, both.
    let as_alice = c.list_payments(by("alice", &[], list(&order, 0, ""))).await.unwrap().into_inner().payments;
    assert_eq!(as_alice.iter().map(|p| p.user_id.as_str()).collect::<Vec<_>>(), ["alice"]);
    let as_admin = c.list_payments(by("root", &["admin"], list(&order, 0, ""))).await.unwrap().into_inner().payments;
    assert_eq!(as_admin.len(), 2);
    assert_eq!(list_all(&mut c, &order).await.len(), 2);
}

#[tokio::test]
async fn lists_are_oldest_first_and_paged_per_order_or_for_all() {
    let svc = start(memory_store()).await;
    let mut c = svc.client.clone();
    let (a, b) = (uid("order-a"), uid("order-b"));
    let mut made_a = Vec::new();
    let mut made = Vec::new();
    for i in 0..7 {
        let order = if i % 3 == 2 { &b } else { &a };
        let p = c.authorize(authorize(&uid("r"), order, "u", 10 + i)).await.unwrap().into_inner().payment.unwrap();
        if order == &a {
            made_a.push(p.clone());
        }
        made.push(p);
    }
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = c.list_payments(list(&a, 2, &token)).await.unwrap().into_inner();
        pages.push(page.payments.len());
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, [2, 2, 1], "5 payments of order a in pages of 2, no empty last page");
    assert_eq!(list_all(&mut c, &a).await, made_a);
    assert_eq!(list_all(&mut c, &b).await.len(), 2);
    assert_eq!(list_all(&mut c, "").await, made, "every payment, oldest first");
    assert!(list_all(&mut c, "no-such-order").await.is_empty());
}

#[tokio::test]
async fn failure_injection_fails_that_share_of_calls_before_any_change() {
    let store = memory_store();
    let healthy = start(store.clone()).await;
    let mut ok = healthy.client.clone();
    let p = authorized(&mut ok, "bob", 1000).await;
    let captured = authorized(&mut ok, "bob", 1000).await;
    ok.capture(capture(&uid("r"), &captured.payment_id, 0)).await.unwrap();
    let before = dump(&store).await;

    // Rate 1.0: every mutating call fails, nothing is stored; reads still work.
    let down = start_with(store.clone(), Settings::default().with("payments.failure_rate", "1.0")).await;
    let mut c = down.client.clone();
    let rid = uid("r");
    for _ in 0..10 {
        assert_status(
            c.authorize(authorize(&rid, &uid("o"), "bob", 5)).await,
            Code::Unavailable,
            &["injected failure"],
        );
    }
    assert_status(c.capture(capture(&rid, &p.payment_id, 0)).await, Code::Unavailable, &["injected failure"]);
    assert_status(c.void(void(&rid, &p.payment_id)).await, Code::Unavailable, &["injected failure"]);
    assert_status(c.refund(refund(&rid, &captured.payment_id, 0)).await, Code::Unavailable, &["injected failure"]);
    c.get_payment(pb::GetPaymentRequest { payment_id: p.payment_id.clone() }).await.unwrap();
    assert!(dump(&store).await == before, "an injected failure changed the store");
    // The same request_id retried where nothing is injected succeeds.
    ok.void(void(&rid, &p.payment_id)).await.unwrap();

    // Rate 0.0: none fail.
    let fine = start_with(store.clone(), Settings::default().with("payments.failure_rate", "0.0")).await;
    let mut c = fine.client.clone();
    for _ in 0..50 {
        c.authorize(authorize(&uid("r"), &uid("o"), "bob", 5)).await.unwrap();
    }

    // Rate 0.3: about 30% of 200 calls fail (binomial sd ~6.5, so 15%..45% is over 4 sd wide),
    // and every failed request_id succeeds when retried without injection.
    let flaky = start_with(store.clone(), Settings::default().with("payments.failure_rate", "0.3")).await;
    let mut c = flaky.client.clone();
    let order = uid("o");
    let mut failed = Vec::new();
    for _ in 0..200 {
        let req = authorize(&uid("r"), &order, "bob", 5);
        match c.authorize(req.clone()).await {
            Ok(_) => {}
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                failed.push(req);
            }
        }
    }
    assert!((30..=90).contains(&failed.len()), "{} of 200 failed", failed.len());
    assert_eq!(list_all(&mut ok, &order).await.len(), 200 - failed.len(), "failed calls stored nothing");
    for req in failed {
        ok.authorize(req).await.unwrap();
    }
    let ids: HashSet<String> = list_all(&mut ok, &order).await.into_iter().map(|p| p.payment_id).collect();
    assert_eq!(ids.len(), 200);
}

#[tokio::test]
async fn latency_injection_delays_calls_that_move_money_only() {
    let store = memory_store();
    let slow = start_with(store.clone(), Settings::default().with("payments.latency_ms", "300")).await;
    let mut c = slow.client.clone();
    let started = Instant::now();
    let p = authorized(&mut c, "bob", 10).await;
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    let started = Instant::now();
    c.void(void(&uid("r"), &p.payment_id)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    c.get_payment(pb::GetPaymentRequest { payment_id: p.payment_id }).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300), "reads are not delayed: {:?}", started.elapsed());
}
