//! The payments mechanism under concurrency on every backend (memory, embedded fjall, the
//! shared 3-member etcd cluster): many concurrent Authorize calls with one request_id make one
//! payment; concurrent captures capture once; concurrent refunds (each sent twice at once with
//! its request_id) never give back more than was captured, and the refunds that succeeded add
//! up exactly to what the payment says was refunded.

mod support;

use std::collections::{HashMap, HashSet};

use meshwork_proto::pb::payments::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use support::*;
use tonic::Code;

on_every_backend!(one_request_id_makes_one_payment, captures_and_refunds_never_exceed_the_limits);

async fn one_request_id_makes_one_payment(backend: Backend) {
    let svc = start(backend.store.clone()).await;
    let order = uid("order");
    let req = authorize(&uid("rid"), &order, &uid("user"), 4200);
    let calls = (0..50).map(|_| {
        let mut c = svc.client.clone();
        let req = req.clone();
        tokio::spawn(async move { c.authorize(req).await.map(|r| r.into_inner().payment.unwrap()) })
    });
    let mut ids = HashSet::new();
    for call in calls {
        let payment = call.await.unwrap().expect("every duplicate answers the first answer");
        assert_eq!(payment.authorized_minor, 4200);
        ids.insert(payment.payment_id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let mut c = svc.client.clone();
    let listed = list_all(&mut c, &order).await;
    assert_eq!(listed.len(), 1);
    assert!(ids.contains(&listed[0].payment_id));
}

async fn captures_and_refunds_never_exceed_the_limits(backend: Backend) {
    let svc = start(backend.store.clone()).await;
    let mut c = svc.client.clone();
    let p = authorized(&mut c, &uid("user"), 10_000).await;
    let id = p.payment_id.clone();

    // 20 captures of 600..12,000 at once: exactly one wins, within the authorization.
    let captures = (1..=20i64).map(|i| {
        let mut c = svc.client.clone();
        let req = capture(&uid("cap"), &id, i * 600);
        tokio::spawn(async move { (i * 600, c.capture(req).await) })
    });
    let mut won = Vec::new();
    for call in captures {
        let (amount, result) = call.await.unwrap();
        match result {
            Ok(r) => won.push((amount, r.into_inner().payment.unwrap())),
            Err(s) => assert!(matches!(s.code(), Code::FailedPrecondition), "{s:?}"),
        }
    }
    assert_eq!(won.len(), 1, "one capture only: {won:?}");
    let (amount, captured) = &won[0];
    assert!(*amount <= 10_000);
    assert_eq!(captured.captured_minor, *amount);
    let captured_minor = captured.captured_minor;

    // 20 refunds that together ask for more than was captured, each sent twice concurrently.
    let asks: Vec<(String, i64)> = (0..20i64).map(|i| (uid("ref"), captured_minor / 8 + i)).collect();
    let mut answers: HashMap<String, Vec<pb::Payment>> = HashMap::new();
    let mut amounts: HashMap<String, i64> = HashMap::new();
    let handles: Vec<_> = asks
        .iter()
        .flat_map(|(rid, amount)| {
            (0..2)
                .map(|_| {
                    let mut c = svc.client.clone();
                    let req = refund(rid, &id, *amount);
                    let rid = rid.clone();
                    tokio::spawn(async move { (rid, req.amount_minor, c.refund(req).await) })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for handle in handles {
        let (rid, amount, result) = handle.await.unwrap();
        match result {
            Ok(r) => {
                answers.entry(rid.clone()).or_default().push(r.into_inner().payment.unwrap());
                amounts.insert(rid, amount);
            }
            Err(s) => assert!(matches!(s.code(), Code::FailedPrecondition), "{s:?}"),
        }
    }
    for (rid, got) in &answers {
        assert!(got.windows(2).all(|w| w[0] == w[1]), "both sends of {rid} answer alike");
    }
    let refunded: i64 = amounts.values().sum();
    let last = c.get_payment(pb::GetPaymentRequest { payment_id: id.clone() }).await.unwrap().into_inner();
    let last = last.payment.unwrap();
    assert!(!amounts.is_empty() && amounts.len() < asks.len(), "some refunds fit, not all: {}", amounts.len());
    assert_eq!(last.refunded_minor, refunded, "the successful refunds add up to refunded_minor");
    assert!(last.refunded_minor <= last.captured_minor && last.captured_minor <= last.authorized_minor);
    assert_eq!(last.captured_minor, captured_minor);
    // The version counts every change: authorize, capture, and each distinct refund.
    assert_eq!(last.version, 2 + amounts.len() as i64);
}
