//! The bad-input catalogue: every RPC with empty, oversized, negative and malformed fields,
//! unknown ids, wrong currencies, bad tokens, illegal states and strangers' payments. Each
//! answers the right code naming the field (or the amounts, or the status), and changes
//! nothing: the service's keys in the store are byte-for-byte the same afterwards, and so is
//! ListPayments.

mod support;

use meshwork_identity::IDENTITY_HEADER;
use meshwork_test_support::memory_store;
use support::*;
use tonic::{Code, Request};

#[tokio::test]
async fn every_bad_request_is_refused_and_changes_nothing() {
    let svc = start(memory_store()).await;
    let mut c = svc.client.clone();
    let order = uid("order");
    let auth_rid = uid("rid");
    let held = c.authorize(authorize(&auth_rid, &order, "bob", 1000)).await.unwrap().into_inner().payment.unwrap();
    let pid = held.payment_id.clone();
    let unknown = "pay_00000000000000000000";
    let before = dump(&svc.store).await;
    let listed = list_all(&mut c, "").await;
    assert_eq!(listed, vec![held.clone()]);

    // Authorize: every field.
    let ok = || authorize(&uid("rid"), &order, "bob", 1000);
    let long = |n: usize| "a".repeat(n);
    let cases: Vec<(&str, pb_auth::AuthorizeRequest)> = vec![
        ("request_id", pb_auth::AuthorizeRequest { request_id: String::new(), ..ok() }),
        ("request_id", pb_auth::AuthorizeRequest { request_id: long(65), ..ok() }),
        ("request_id", pb_auth::AuthorizeRequest { request_id: "a/b".into(), ..ok() }),
        ("order_id", pb_auth::AuthorizeRequest { order_id: String::new(), ..ok() }),
        ("order_id", pb_auth::AuthorizeRequest { order_id: long(65), ..ok() }),
        ("order_id", pb_auth::AuthorizeRequest { order_id: "o\u{0}1".into(), ..ok() }),
        ("user_id", pb_auth::AuthorizeRequest { user_id: String::new(), ..ok() }),
        ("user_id", pb_auth::AuthorizeRequest { user_id: long(129), ..ok() }),
        ("amount_minor", pb_auth::AuthorizeRequest { amount_minor: 0, ..ok() }),
        ("amount_minor", pb_auth::AuthorizeRequest { amount_minor: -5, ..ok() }),
        ("amount_minor", pb_auth::AuthorizeRequest { amount_minor: 100_000_000_001, ..ok() }),
        ("amount_minor", pb_auth::AuthorizeRequest { amount_minor: i64::MIN, ..ok() }),
        ("currency", pb_auth::AuthorizeRequest { currency: String::new(), ..ok() }),
        ("currency", pb_auth::AuthorizeRequest { currency: "usd".into(), ..ok() }),
        ("currency", pb_auth::AuthorizeRequest { currency: "XXX".into(), ..ok() }),
        ("currency", pb_auth::AuthorizeRequest { currency: "USDD".into(), ..ok() }),
        ("payment_token", pb_auth::AuthorizeRequest { payment_token: String::new(), ..ok() }),
        ("payment_token", pb_auth::AuthorizeRequest { payment_token: "tok_".into(), ..ok() }),
        ("payment_token", pb_auth::AuthorizeRequest { payment_token: "4242424242424242".into(), ..ok() }),
        ("payment_token", pb_auth::AuthorizeRequest { payment_token: "tok_ok!".into(), ..ok() }),
        ("payment_token", pb_auth::AuthorizeRequest { payment_token: format!("tok_{}", long(61)), ..ok() }),
    ];
    for (field, req) in cases {
        let what = format!("{req:?}");
        let status = c.authorize(req).await.expect_err(&what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().starts_with(&format!("{field}: ")), "{what}: {:?}", status.message());
    }
    // Cards that decline or whose processor fails store nothing.
    let declined = pb_auth::AuthorizeRequest { payment_token: "tok_decline".into(), ..ok() };
    assert_status(c.authorize(declined).await, Code::FailedPrecondition, &["card declined"]);
    let failing = pb_auth::AuthorizeRequest { payment_token: "tok_fail".into(), ..ok() };
    assert_status(c.authorize(failing).await, Code::Unavailable, &[]);
    // Paying for someone else needs the admin role; a forged identity is refused.
    assert_status(c.authorize(by("alice", &["editor"], ok())).await, Code::PermissionDenied, &["admin"]);
    let mut forged = Request::new(ok());
    forged.metadata_mut().insert(IDENTITY_HEADER, "not-an-identity!".parse().unwrap());
    assert_status(c.authorize(forged).await, Code::Unauthenticated, &[]);
    // The first request_id reused for another request.
    let reused = authorize(&auth_rid, &order, "bob", 999);
    assert_status(c.authorize(reused).await, Code::AlreadyExists, &["request_id"]);

    // Capture.
    for (field, req) in [
        ("request_id", capture("", &pid, 0)),
        ("request_id", capture(&long(65), &pid, 0)),
        ("payment_id", capture(&uid("rid"), "", 0)),
        ("payment_id", capture(&uid("rid"), "pay_short", 0)),
        ("payment_id", capture(&uid("rid"), "ch_00000000000000000000", 0)),
        ("amount_minor", capture(&uid("rid"), &pid, -1)),
        ("amount_minor", capture(&uid("rid"), &pid, 100_000_000_001)),
    ] {
        assert_status(c.capture(req).await, Code::InvalidArgument, &[field]);
    }
    assert_status(c.capture(capture(&uid("rid"), unknown, 0)).await, Code::NotFound, &[unknown]);
    assert_status(c.capture(capture(&uid("rid"), &pid, 1001)).await, Code::FailedPrecondition, &["1001", "1000"]);
    assert_status(c.capture(by("alice", &[], capture(&uid("rid"), &pid, 0))).await, Code::PermissionDenied, &["admin"]);

    // Void.
    for (field, req) in [
        ("request_id", void("", &pid)),
        ("request_id", void(&long(65), &pid)),
        ("payment_id", void(&uid("rid"), "")),
        ("payment_id", void(&uid("rid"), "pay_!0000000000000000000")),
    ] {
        assert_status(c.void(req).await, Code::InvalidArgument, &[field]);
    }
    assert_status(c.void(void(&uid("rid"), unknown)).await, Code::NotFound, &[unknown]);
    assert_status(c.void(by("alice", &[], void(&uid("rid"), &pid))).await, Code::PermissionDenied, &[]);

    // Refund.
    let long_reason = pb_auth::RefundRequest { reason: long(501), ..refund(&uid("rid"), &pid, 1) };
    for (field, req) in [
        ("request_id", refund("", &pid, 1)),
        ("request_id", refund(&long(65), &pid, 1)),
        ("payment_id", refund(&uid("rid"), "", 1)),
        ("payment_id", refund(&uid("rid"), "pay_", 1)),
        ("amount_minor", refund(&uid("rid"), &pid, -1)),
        ("amount_minor", refund(&uid("rid"), &pid, i64::MAX)),
        ("reason", long_reason),
    ] {
        assert_status(c.refund(req).await, Code::InvalidArgument, &[field]);
    }
    assert_status(c.refund(refund(&uid("rid"), unknown, 1)).await, Code::NotFound, &[unknown]);
    // Not captured yet: the message names the status.
    assert_status(c.refund(refund(&uid("rid"), &pid, 1)).await, Code::FailedPrecondition, &["AUTHORIZED"]);
    assert_status(c.refund(by("alice", &[], refund(&uid("rid"), &pid, 1))).await, Code::PermissionDenied, &[]);

    // GetPayment.
    for bad in ["", "pay_", "pay_000000000000000000000", "PAY_00000000000000000000"] {
        let req = pb_auth::GetPaymentRequest { payment_id: bad.into() };
        assert_status(c.get_payment(req).await, Code::InvalidArgument, &["payment_id"]);
    }
    let req = pb_auth::GetPaymentRequest { payment_id: unknown.into() };
    assert_status(c.get_payment(req).await, Code::NotFound, &[unknown]);
    let req = pb_auth::GetPaymentRequest { payment_id: pid.clone() };
    assert_status(c.get_payment(by("alice", &[], req)).await, Code::PermissionDenied, &[]);

    // ListPayments.
    for (field, req) in [
        ("order_id", list(&long(65), 0, "")),
        ("order_id", list("o\u{7}", 0, "")),
        ("page_size", list("", -1, "")),
        ("page_size", list("", 1001, "")),
        ("page_token", list("", 0, "garbage")),
        ("page_token", list("", 0, "AAAAAAAAAAAAAAAA")),
    ] {
        assert_status(c.list_payments(req).await, Code::InvalidArgument, &[field]);
    }
    // Nothing above changed anything: every key and value is as before, and so is the list.
    assert!(dump(&svc.store).await == before, "a refused call changed the store");
    assert_eq!(list_all(&mut c, "").await, listed);

    // A token of one query does not continue another.
    let second = c.authorize(authorize(&uid("rid"), &order, "bob", 5)).await.unwrap().into_inner().payment.unwrap();
    let page = c.list_payments(list(&order, 1, "")).await.unwrap().into_inner();
    assert!(!page.next_page_token.is_empty());
    let before = dump(&svc.store).await;
    assert_status(c.list_payments(list("", 1, &page.next_page_token)).await, Code::InvalidArgument, &["page_token"]);
    assert_status(
        c.list_payments(list("other-order", 1, &page.next_page_token)).await,
        Code::InvalidArgument,
        &["page_token"],
    );
    assert!(dump(&svc.store).await == before);
    assert_eq!(list_all(&mut c, "").await, vec![held, second]);
}

/// The generated request and response types.
mod pb_auth {
    pub use meshwork_proto::pb::payments::v1::*;
}
