//! The bad-input catalogue: every RPC with empty, oversized, negative, zero and unknown values,
//! unknown ids, too many and duplicate lines, and a caller without the role: each answers the
//! right code naming the field, and nothing changes.

use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::inventory::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::{Code, Request, Status};

use crate::support::{self, line, receive, reserve, stock};

/// Asserts `result` failed with `code`, its message starting with `field:` when one is named.
fn expect<T: std::fmt::Debug>(case: &str, result: Result<T, Status>, code: Code, field: &str) {
    match result {
        Ok(v) => panic!("{case}: accepted: {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{case}: {}", s.message());
            assert!(s.message().starts_with(&format!("{field}:")) || field.is_empty(), "{case}: {}", s.message());
        }
    }
}

fn adjust(sku: &str, location: &str, delta: i64, reason: pb::AdjustReason) -> pb::AdjustStockRequest {
    pb::AdjustStockRequest {
        request_id: support::rid("bad"),
        sku: sku.into(),
        location: location.into(),
        delta,
        reason: reason as i32,
        note: String::new(),
    }
}

fn as_user<T>(message: T, roles: &[&str]) -> Request<T> {
    let mut request = Request::new(message);
    let identity = Identity::new("someone", roles.iter().map(|r| r.to_string()).collect(), Method::Jwt).encode();
    request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().expect("ascii identity"));
    request
}

async fn every_rpc_refuses_bad_input_and_changes_nothing(backend: Backend) {
    let (_server, mut c) = support::start(&backend.store, "bad").await;
    let sku = support::sku("BAD");
    receive(&mut c, &sku, "w1", 10).await;
    let held = reserve(&mut c, vec![line(&sku, 4)], None).await.expect("reserve");
    let before = stock(&mut c, &sku).await;
    let unknown_res = "res_00000000000000000000".to_string();
    use pb::AdjustReason as R;

    // AdjustStock.
    let cases: Vec<(&str, pb::AdjustStockRequest, Code, &str)> = vec![
        (
            "empty request_id",
            pb::AdjustStockRequest { request_id: String::new(), ..adjust(&sku, "w1", 1, R::Receive) },
            Code::InvalidArgument,
            "request_id",
        ),
        (
            "long request_id",
            pb::AdjustStockRequest { request_id: "r".repeat(65), ..adjust(&sku, "w1", 1, R::Receive) },
            Code::InvalidArgument,
            "request_id",
        ),
        ("empty sku", adjust("", "w1", 1, R::Receive), Code::InvalidArgument, "sku"),
        ("lower-case sku", adjust("abc", "w1", 1, R::Receive), Code::InvalidArgument, "sku"),
        ("long sku", adjust(&"A".repeat(41), "w1", 1, R::Receive), Code::InvalidArgument, "sku"),
        ("empty location", adjust(&sku, "", 1, R::Receive), Code::InvalidArgument, "location"),
        ("upper-case location", adjust(&sku, "W1", 1, R::Receive), Code::InvalidArgument, "location"),
        ("long location", adjust(&sku, &"w".repeat(41), 1, R::Receive), Code::InvalidArgument, "location"),
        ("zero delta", adjust(&sku, "w1", 0, R::Correction), Code::InvalidArgument, "delta"),
        ("huge delta", adjust(&sku, "w1", 1_000_000_001, R::Receive), Code::InvalidArgument, "delta"),
        ("negative receive", adjust(&sku, "w1", -1, R::Receive), Code::InvalidArgument, "delta"),
        ("positive shrink", adjust(&sku, "w1", 1, R::Shrink), Code::InvalidArgument, "delta"),
        ("negative restock", adjust(&sku, "w1", -1, R::Restock), Code::InvalidArgument, "delta"),
        ("no reason", adjust(&sku, "w1", 1, R::Unspecified), Code::InvalidArgument, "reason"),
        (
            "unknown reason",
            pb::AdjustStockRequest { reason: 99, ..adjust(&sku, "w1", 1, R::Receive) },
            Code::InvalidArgument,
            "reason",
        ),
        (
            "long note",
            pb::AdjustStockRequest { note: "n".repeat(501), ..adjust(&sku, "w1", 1, R::Receive) },
            Code::InvalidArgument,
            "note",
        ),
        ("below reserved", adjust(&sku, "w1", -7, R::Shrink), Code::FailedPrecondition, ""),
        ("negative at a new location", adjust(&sku, "w9", -1, R::Correction), Code::FailedPrecondition, ""),
    ];
    for (case, request, code, field) in cases {
        expect(case, c.adjust_stock(request).await, code, field);
    }
    let request = adjust(&sku, "w1", 1, R::Receive);
    expect("shopper adjusts", c.adjust_stock(as_user(request.clone(), &["shopper"])).await, Code::PermissionDenied, "");
    let threshold = pb::SetLowStockThresholdRequest { sku: sku.clone(), threshold: 3 };
    expect(
        "shopper sets a threshold",
        c.set_low_stock_threshold(as_user(threshold, &[])).await,
        Code::PermissionDenied,
        "",
    );

    // BatchAdjust: whole-request problems refuse the batch.
    let one = pb::AdjustLine {
        sku: sku.clone(),
        location: "w1".into(),
        delta: 1,
        reason: R::Receive as i32,
        note: String::new(),
    };
    let batch = |request_id: String, lines: Vec<pb::AdjustLine>| pb::BatchAdjustRequest { request_id, lines };
    expect(
        "batch without request_id",
        c.batch_adjust(batch(String::new(), vec![one.clone()])).await,
        Code::InvalidArgument,
        "request_id",
    );
    expect("empty batch", c.batch_adjust(batch(support::rid("b"), vec![])).await, Code::InvalidArgument, "lines");
    expect(
        "1,001 lines",
        c.batch_adjust(batch(support::rid("b"), vec![one.clone(); 1001])).await,
        Code::InvalidArgument,
        "lines",
    );
    let shopper = as_user(batch(support::rid("b"), vec![one.clone()]), &["shopper"]);
    expect("shopper batch", c.batch_adjust(shopper).await, Code::PermissionDenied, "");

    // GetStock and SetLowStockThreshold.
    expect(
        "get empty sku",
        c.get_stock(pb::GetStockRequest { sku: String::new() }).await,
        Code::InvalidArgument,
        "sku",
    );
    expect("get bad sku", c.get_stock(pb::GetStockRequest { sku: "a b".into() }).await, Code::InvalidArgument, "sku");
    let never = support::sku("NEVER");
    expect("get unknown sku", c.get_stock(pb::GetStockRequest { sku: never }).await, Code::NotFound, "");
    for (case, sku, threshold, field) in [
        ("threshold bad sku", "x".to_string(), 1, "sku"),
        ("negative threshold", sku.clone(), -1, "threshold"),
        ("huge threshold", sku.clone(), 1_000_000_001, "threshold"),
    ] {
        let request = pb::SetLowStockThresholdRequest { sku, threshold };
        expect(case, c.set_low_stock_threshold(request).await, Code::InvalidArgument, field);
    }

    // Reserve.
    let dur = |seconds: i64, nanos: i32| Some(prost_types::Duration { seconds, nanos });
    let reserve_req = |lines: Vec<pb::ReserveLine>| pb::ReserveRequest {
        request_id: support::rid("r"),
        lines,
        ttl: None,
        reference: String::new(),
    };
    let other = support::sku("OTHERBAD");
    let cases: Vec<(&str, pb::ReserveRequest, Code, &str)> = vec![
        (
            "reserve without request_id",
            pb::ReserveRequest { request_id: String::new(), ..reserve_req(vec![line(&sku, 1)]) },
            Code::InvalidArgument,
            "request_id",
        ),
        ("no lines", reserve_req(vec![]), Code::InvalidArgument, "lines"),
        (
            "101 lines",
            reserve_req((0..101).map(|i| line(&format!("{sku}-{i}"), 1)).collect()),
            Code::InvalidArgument,
            "lines",
        ),
        ("zero quantity", reserve_req(vec![line(&sku, 0)]), Code::InvalidArgument, "lines[0].quantity"),
        ("negative quantity", reserve_req(vec![line(&sku, -3)]), Code::InvalidArgument, "lines[0].quantity"),
        ("huge quantity", reserve_req(vec![line(&sku, 1_000_001)]), Code::InvalidArgument, "lines[0].quantity"),
        ("bad line sku", reserve_req(vec![line("no", 1)]), Code::InvalidArgument, "lines[0].sku"),
        (
            "duplicate sku",
            reserve_req(vec![line(&sku, 1), line(&other, 1), line(&sku, 1)]),
            Code::InvalidArgument,
            "lines[2].sku",
        ),
        (
            "bad location",
            reserve_req(vec![pb::ReserveLine { location: "W 1".into(), ..line(&sku, 1) }]),
            Code::InvalidArgument,
            "lines[0].location",
        ),
        (
            "short ttl",
            pb::ReserveRequest { ttl: dur(0, 500_000_000), ..reserve_req(vec![line(&sku, 1)]) },
            Code::InvalidArgument,
            "ttl",
        ),
        (
            "long ttl",
            pb::ReserveRequest { ttl: dur(25 * 3600, 0), ..reserve_req(vec![line(&sku, 1)]) },
            Code::InvalidArgument,
            "ttl",
        ),
        (
            "negative ttl",
            pb::ReserveRequest { ttl: dur(-5, 0), ..reserve_req(vec![line(&sku, 1)]) },
            Code::InvalidArgument,
            "ttl",
        ),
        (
            "long reference",
            pb::ReserveRequest { reference: "x".repeat(65), ..reserve_req(vec![line(&sku, 1)]) },
            Code::InvalidArgument,
            "reference",
        ),
        ("more than available", reserve_req(vec![line(&sku, 7)]), Code::FailedPrecondition, ""),
        (
            "empty location named",
            reserve_req(vec![pb::ReserveLine { location: "w2".into(), ..line(&sku, 1) }]),
            Code::FailedPrecondition,
            "",
        ),
        ("unstocked sku", reserve_req(vec![line(&other, 1)]), Code::FailedPrecondition, ""),
    ];
    for (case, request, code, field) in cases {
        expect(case, c.reserve(request).await, code, field);
    }

    // Commit, release, get.
    for (case, id, code) in [
        ("empty id", String::new(), Code::InvalidArgument),
        ("malformed id", "res_short".to_string(), Code::InvalidArgument),
        ("unknown id", unknown_res.clone(), Code::NotFound),
    ] {
        let field = if code == Code::InvalidArgument { "reservation_id" } else { "" };
        let commit = pb::CommitReservationRequest { reservation_id: id.clone() };
        expect(case, c.commit_reservation(commit).await, code, field);
        let release = pb::ReleaseReservationRequest { reservation_id: id.clone(), reason: String::new() };
        expect(case, c.release_reservation(release).await, code, field);
        expect(case, c.get_reservation(pb::GetReservationRequest { reservation_id: id }).await, code, field);
    }
    let release =
        pb::ReleaseReservationRequest { reservation_id: held.reservation_id.clone(), reason: "r".repeat(501) };
    expect("long release reason", c.release_reservation(release).await, Code::InvalidArgument, "reason");

    // WatchStock.
    for prefix in ["abc".to_string(), "A".repeat(41), "A/B".to_string()] {
        let request = pb::WatchStockRequest { sku_prefix: prefix, from_sequence: 0 };
        expect("bad prefix", c.watch_stock(request).await.map(|_| ()), Code::InvalidArgument, "sku_prefix");
    }

    // Nothing changed.
    assert_eq!(stock(&mut c, &sku).await, before);
    let got = c.get_reservation(pb::GetReservationRequest { reservation_id: held.reservation_id.clone() }).await;
    assert_eq!(got.expect("get").into_inner().reservation, Some(held));
}

on_every_backend!(every_rpc_refuses_bad_input_and_changes_nothing);

/// Staff may adjust; an identified shopper may not (checked on one backend: it is no store
/// matter).
#[tokio::test]
async fn staff_roles_may_adjust() {
    let store = meshwork_test_support::memory_store();
    let (_server, mut c) = support::start(&store, "staff").await;
    let sku = support::sku("STAFF");
    for roles in [&["inventory"][..], &["admin"], &["shopper", "inventory"]] {
        c.adjust_stock(as_user(adjust(&sku, "w1", 1, pb::AdjustReason::Receive), roles)).await.expect("staff adjusts");
    }
    assert_eq!(stock(&mut c, &sku).await.on_hand, 3);
}
