//! Staged rollouts: the share of devices in a 10% rollout (100,000 device ids through the
//! bucketing rules on the stored tracks, 2,000 through CheckUpdate, which must agree with
//! them), widening to 20% keeps every device, a halt takes in no new device and never
//! downgrades one already updated, resume brings back the same devices, the fraction only
//! goes up, and min_sdk and track visibility (a beta tester also gets newer production
//! releases) are honoured.

use std::collections::BTreeSet;

use futures::{StreamExt, stream};
use meshwork_appstore::rollout::{self, Device};
use meshwork_proto::pb::appstore::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::{self, Client, offered, rid, set_track, upload};

/// The devices of the RPC rounds at 10% and 20%.
const RPC_DEVICES: usize = 2_000;
/// The devices of the later rounds (halt, resume, complete).
const FEW_DEVICES: usize = 500;

/// Returns the devices (of the first `n`) that CheckUpdate offers `want` when `installed`.
async fn offered_set(client: &Client, package: &str, n: usize, installed: i64, want: i64) -> BTreeSet<usize> {
    stream::iter(0..n)
        .map(|i| {
            let mut c = client.clone();
            let package = package.to_string();
            async move { (i, offered(&mut c, &package, &format!("device-{i}"), installed, 30, "").await) }
        })
        .buffer_unordered(32)
        .filter_map(|(i, v)| async move { (v == want).then_some(i) })
        .collect()
        .await
}

async fn shares_widening_halt_resume(backend: Backend) {
    let root = support::root("roll");
    let (_server, mut client) = support::replica(&backend.store, &root, support::manual_clock()).await;
    let package = support::app(&mut client, "owner").await;
    upload(&mut client, &package, 1, 21).await;
    upload(&mut client, &package, 2, 21).await;
    set_track(&mut client, &package, "production", 1, 1.0).await;
    let t = set_track(&mut client, &package, "production", 2, 0.1).await;
    assert_eq!(t.releases.len(), 2, "the completed release stays under the rollout: {t:?}");
    assert_eq!(t.releases[1].status, pb::ReleaseStatus::InProgress as i32);

    // 100,000 devices through the bucketing rules on the tracks as stored.
    let app = support::stored_app(&backend.store, &root, &package).await;
    let in_rollout = |app: &meshwork_appstore::model::AppRecord, id: &str| {
        let d = Device { device_id: id, installed_version_code: 1, sdk_level: 30, track: "production" };
        rollout::check(&package, &d, |n| app.tracks.get(n)).is_some_and(|o| o.update && o.release.version_code == 2)
    };
    let ids: Vec<String> = (0..100_000).map(|i| format!("fleet-{i}")).collect();
    let ten: Vec<bool> = ids.iter().map(|id| in_rollout(&app, id)).collect();
    let share = ten.iter().filter(|b| **b).count() as f64 / ids.len() as f64;
    assert!((share - 0.10).abs() <= 0.005, "share at 10%: {share}");

    // 2,000 through CheckUpdate: the same answers as the rules.
    let rpc_ten = offered_set(&client, &package, RPC_DEVICES, 1, 2).await;
    let rules_ten: BTreeSet<usize> = (0..RPC_DEVICES).filter(|i| in_rollout(&app, &format!("device-{i}"))).collect();
    assert_eq!(rpc_ten, rules_ten, "CheckUpdate agrees with the bucketing rules");
    let rpc_share = rpc_ten.len() as f64 / RPC_DEVICES as f64;
    assert!((rpc_share - 0.10).abs() < 0.03, "rpc share at 10%: {rpc_share}");

    // Lowering is refused; widening keeps every device that was in.
    let lower = client
        .update_rollout(pb::UpdateRolloutRequest {
            request_id: rid("low"),
            package_name: package.clone(),
            track: "production".into(),
            user_fraction: 0.05,
        })
        .await;
    assert_eq!(lower.unwrap_err().code(), Code::FailedPrecondition);
    client
        .update_rollout(pb::UpdateRolloutRequest {
            request_id: rid("widen"),
            package_name: package.clone(),
            track: "production".into(),
            user_fraction: 0.2,
        })
        .await
        .expect("widen");
    let widened = support::stored_app(&backend.store, &root, &package).await;
    let twenty: Vec<bool> = ids.iter().map(|id| in_rollout(&widened, id)).collect();
    assert!(ten.iter().zip(&twenty).all(|(a, b)| !a || *b), "widening keeps every device that was in");
    let share20 = twenty.iter().filter(|b| **b).count() as f64 / ids.len() as f64;
    assert!((share20 - 0.20).abs() <= 0.005, "share at 20%: {share20}");
    let rpc_twenty = offered_set(&client, &package, RPC_DEVICES, 1, 2).await;
    assert!(rpc_ten.is_subset(&rpc_twenty), "through CheckUpdate too");
    assert!(rpc_twenty.len() > rpc_ten.len());

    // A halt takes in no new device, and a device already on 2 is not moved back to 1.
    client
        .halt_rollout(pb::HaltRolloutRequest {
            request_id: rid("halt"),
            package_name: package.clone(),
            track: "production".into(),
        })
        .await
        .expect("halt");
    assert!(
        offered_set(&client, &package, FEW_DEVICES, 1, 2).await.is_empty(),
        "a halted rollout takes in no new device"
    );
    assert!(
        offered_set(&client, &package, FEW_DEVICES, 2, 0).await.len() == FEW_DEVICES,
        "updated devices keep their version"
    );
    let mut c = client.clone();
    assert_eq!(offered(&mut c, &package, "device-0", 0, 30, "").await, 1, "a new install gets the completed release");

    // Resume brings back the same devices; complete takes every device.
    client
        .resume_rollout(pb::ResumeRolloutRequest {
            request_id: rid("res"),
            package_name: package.clone(),
            track: "production".into(),
        })
        .await
        .expect("resume");
    let few_twenty: BTreeSet<usize> = rpc_twenty.iter().copied().filter(|i| *i < FEW_DEVICES).collect();
    assert_eq!(offered_set(&client, &package, FEW_DEVICES, 1, 2).await, few_twenty);
    let done = client
        .complete_rollout(pb::CompleteRolloutRequest {
            request_id: rid("done"),
            package_name: package.clone(),
            track: "production".into(),
        })
        .await
        .expect("complete")
        .into_inner()
        .track
        .expect("track");
    assert_eq!(done.releases.len(), 1);
    assert_eq!(done.releases[0].status, pb::ReleaseStatus::Completed as i32);
    assert_eq!(offered_set(&client, &package, FEW_DEVICES, 1, 2).await.len(), FEW_DEVICES);
}

async fn min_sdk_and_track_visibility(backend: Backend) {
    let root = support::root("sdk");
    let (_server, mut client) = support::replica(&backend.store, &root, support::manual_clock()).await;
    let package = support::app(&mut client, "owner").await;
    upload(&mut client, &package, 10, 21).await;
    upload(&mut client, &package, 11, 30).await;
    set_track(&mut client, &package, "production", 10, 1.0).await;
    // Nothing on production yet for 11: put 11 on beta, which requires SDK 30.
    set_track(&mut client, &package, "beta", 11, 1.0).await;
    let c = &mut client;
    assert_eq!(offered(c, &package, "d1", 0, 25, "").await, 10, "production device");
    assert_eq!(offered(c, &package, "d1", 0, 30, "").await, 10, "production devices never see beta");
    assert_eq!(offered(c, &package, "d1", 0, 30, "beta").await, 11, "beta tester on SDK 30");
    assert_eq!(offered(c, &package, "d1", 0, 25, "beta").await, 10, "min_sdk 30 skipped on SDK 25");
    assert_eq!(offered(c, &package, "d1", 0, 20, "beta").await, 0, "nothing runs on SDK 20");
    assert_eq!(offered(c, &package, "d1", 0, 30, "internal").await, 11, "internal sees beta");
    assert_eq!(offered(c, &package, "d1", 10, 25, "").await, 0, "up to date");
    // A newer production release reaches beta testers too.
    upload(c, &package, 12, 21).await;
    set_track(c, &package, "production", 12, 1.0).await;
    assert_eq!(offered(c, &package, "d1", 11, 30, "beta").await, 12);
    // Promotion: beta's 11 cannot go on production, which has the newer 12.
    let stale = c
        .promote_release(pb::PromoteReleaseRequest {
            request_id: rid("promo"),
            package_name: package.clone(),
            from_track: "beta".into(),
            to_track: "production".into(),
            user_fraction: 0.0,
        })
        .await;
    assert_eq!(stale.unwrap_err().code(), Code::FailedPrecondition);
    upload(c, &package, 13, 21).await;
    set_track(c, &package, "alpha", 13, 0.5).await;
    let promoted = c
        .promote_release(pb::PromoteReleaseRequest {
            request_id: rid("promo"),
            package_name: package.clone(),
            from_track: "alpha".into(),
            to_track: "production".into(),
            user_fraction: 1.0,
        })
        .await
        .expect("promote")
        .into_inner()
        .track
        .expect("track");
    assert_eq!(promoted.releases[0].version_code, 13);
    assert_eq!(offered(c, &package, "d9", 12, 25, "").await, 13);
    let details = c
        .get_app_details(pb::GetAppDetailsRequest { package_name: package.clone() })
        .await
        .expect("details")
        .into_inner();
    assert_eq!(details.latest_production_release.expect("latest").version_code, 13);
    assert!(details.rating.is_none());
    assert_eq!(details.tracks.iter().map(|t| t.track.as_str()).collect::<Vec<_>>(), ["alpha", "beta", "production"]);
}

on_every_backend!(shares_widening_halt_resume, min_sdk_and_track_visibility);
