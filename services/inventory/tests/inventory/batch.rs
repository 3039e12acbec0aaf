//! BatchAdjust: 1,000 lines in a few store writes (chunked under etcd's operation limit), each
//! line atomic and answering for itself: the bad ones are refused alone, the rest applied; the
//! same request_id answers the same without applying anything twice.

use meshwork_proto::pb::inventory::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::{self, stock};

const SKUS: usize = 250;
const LOCATIONS: usize = 4;

async fn a_thousand_lines_with_bad_ones_refused_alone(backend: Backend) {
    let (_server, mut client) = support::start(&backend.store, "batch").await;
    let base = support::sku("BAT");
    let skus: Vec<String> = (0..SKUS).map(|i| format!("{base}-{i}")).collect();
    let mut lines = Vec::with_capacity(SKUS * LOCATIONS);
    for sku in &skus {
        for l in 0..LOCATIONS {
            lines.push(pb::AdjustLine {
                sku: sku.clone(),
                location: format!("w{l}"),
                delta: (l + 1) as i64,
                reason: pb::AdjustReason::Receive as i32,
                note: String::new(),
            });
        }
    }
    assert_eq!(lines.len(), 1000);
    // An unknown reason, and a shrink of more than is on hand.
    lines[137].reason = 99;
    lines[502] = pb::AdjustLine { delta: -50, reason: pb::AdjustReason::Shrink as i32, ..lines[502].clone() };
    let request = pb::BatchAdjustRequest { request_id: support::rid("batch"), lines: lines.clone() };
    let answer = client.batch_adjust(request.clone()).await.expect("batch").into_inner();
    assert_eq!(answer.applied, 998);
    assert_eq!(answer.results.len(), 1000);
    for (i, result) in answer.results.iter().enumerate() {
        assert_eq!(result.index, i as i32);
        match i {
            137 => {
                assert_eq!(result.code, Code::InvalidArgument as i32);
                assert!(result.message.starts_with("lines[137].reason:"), "{}", result.message);
            }
            502 => assert_eq!(result.code, Code::FailedPrecondition as i32, "{}", result.message),
            _ => assert_eq!(result.code, 0, "line {i}: {}", result.message),
        }
    }
    // Line 137 is sku 34 at w1 (delta 2); line 502 is sku 125 at w2 (delta 3).
    assert_eq!(stock(&mut client, &skus[34]).await.on_hand, 1 + 3 + 4);
    assert_eq!(stock(&mut client, &skus[125]).await.on_hand, 1 + 2 + 4);
    assert_eq!(stock(&mut client, &skus[0]).await.on_hand, 10);
    let last = stock(&mut client, &skus[SKUS - 1]).await;
    assert_eq!((last.on_hand, last.locations.len()), (10, LOCATIONS));

    // A replay answers the same and applies nothing again; another batch under the id is refused.
    let again = client.batch_adjust(request.clone()).await.expect("replay").into_inner();
    assert_eq!(again, answer);
    assert_eq!(stock(&mut client, &skus[0]).await.on_hand, 10);
    let other = pb::BatchAdjustRequest { lines: lines[..10].to_vec(), ..request };
    assert_eq!(client.batch_adjust(other).await.unwrap_err().code(), Code::AlreadyExists);
    assert_eq!(stock(&mut client, &skus[0]).await.on_hand, 10);
}

on_every_backend!(a_thousand_lines_with_bad_ones_refused_alone);
