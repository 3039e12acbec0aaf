//! Releases and ownership: 64 concurrent uploads of one version code give exactly one release
//! (ALREADY_EXISTS for the other 63), version codes only go up, a retried request_id answers
//! the first answer (a different request under it is ALREADY_EXISTS), and only the owning
//! developer's user (or an admin) may change an app when a caller is present.

use futures::future::join_all;
use meshwork_proto::pb::appstore::v1 as pb;
use meshwork_storage::{Direction, KeyRange, scan_all};
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::{self, as_user, rid, upload_req};

async fn sixty_four_uploads_one_release(backend: Backend) {
    let root = support::root("up");
    let (_a, mut client) = support::replica(&backend.store, &root, support::manual_clock()).await;
    let (_b, other) = support::replica(&backend.store, &root, support::manual_clock()).await;
    let package = support::app(&mut client, "owner").await;
    let calls = (0..64).map(|i| {
        let mut c = if i % 2 == 0 { client.clone() } else { other.clone() };
        let mut req = upload_req(&package, 5, 21);
        req.notes = format!("racer {i}");
        async move { c.upload_release(req).await }
    });
    let results = join_all(calls).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let exists = results.iter().filter(|r| r.as_ref().is_err_and(|s| s.code() == Code::AlreadyExists)).count();
    assert_eq!(
        (won, exists),
        (1, 63),
        "{:?}",
        results.iter().filter_map(|r| r.as_ref().err()).find(|s| s.code() != Code::AlreadyExists)
    );
    let keys = meshwork_appstore::keys::Keys::new(&root);
    let prefix = String::from_utf8(keys.release(&package, 0)).unwrap().trim_end_matches('0').to_string();
    let stored = scan_all(&backend.store, KeyRange::prefix(prefix), Direction::Forward).await.unwrap();
    assert_eq!(stored.len(), 1, "one release stored");

    // Lower is FAILED_PRECONDITION; a retry answers the first answer.
    let lower = client.upload_release(upload_req(&package, 4, 21)).await;
    assert_eq!(lower.unwrap_err().code(), Code::FailedPrecondition);
    let req = upload_req(&package, 6, 21);
    let first = client.upload_release(req.clone()).await.expect("upload 6").into_inner();
    let again = other.clone().upload_release(req.clone()).await.expect("retry").into_inner();
    assert_eq!(first, again);
    let reused = client.upload_release(pb::UploadReleaseRequest { version_code: 7, ..req }).await;
    assert_eq!(reused.unwrap_err().code(), Code::AlreadyExists);
    assert_eq!(support::stored_app(&backend.store, &root, &package).await.last_version_code, 6);

    // A retried track change answers the first answer and changes nothing again: halt, resume,
    // then the halt's retry leaves the rollout in progress.
    support::set_track(&mut client, &package, "production", 6, 0.1).await;
    let halt =
        pb::HaltRolloutRequest { request_id: rid("halt"), package_name: package.clone(), track: "production".into() };
    let first = client.halt_rollout(halt.clone()).await.expect("halt").into_inner();
    let resume = pb::ResumeRolloutRequest {
        request_id: rid("resume"),
        package_name: package.clone(),
        track: "production".into(),
    };
    client.resume_rollout(resume).await.expect("resume");
    let retry = client.halt_rollout(halt).await.expect("retried halt").into_inner();
    assert_eq!(first, retry);
    assert_eq!(retry.track.unwrap().releases[0].status, pb::ReleaseStatus::Halted as i32);
    let track = &support::stored_app(&backend.store, &root, &package).await.tracks["production"];
    assert_eq!(track.rollout.as_ref().unwrap().status, meshwork_appstore::rollout::Status::InProgress);
}

async fn only_the_owner_or_an_admin_changes_an_app(backend: Backend) {
    let root = support::root("own");
    let (_s, mut client) = support::replica(&backend.store, &root, support::manual_clock()).await;
    // A developer for someone else is refused to a caller who is not an admin.
    let denied = client
        .create_developer(as_user(
            pb::CreateDeveloperRequest {
                request_id: rid("d"),
                developer_id: "mallory-studio".into(),
                name: "M".into(),
                owner_user_id: "alice".into(),
            },
            "mallory",
            &[],
        ))
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    let package = support::app(&mut client, "alice").await;
    let before = support::snapshot(&backend.store, &root).await;
    let by_mallory = client.upload_release(as_user(upload_req(&package, 1, 21), "mallory", &[])).await;
    assert_eq!(by_mallory.unwrap_err().code(), Code::PermissionDenied);
    let halt = client
        .halt_rollout(as_user(
            pb::HaltRolloutRequest { request_id: rid("h"), package_name: package.clone(), track: "production".into() },
            "mallory",
            &["moderator"],
        ))
        .await;
    assert_eq!(halt.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(support::snapshot(&backend.store, &root).await, before, "refused calls changed nothing");
    client.upload_release(as_user(upload_req(&package, 1, 21), "alice", &[])).await.expect("owner");
    client.upload_release(as_user(upload_req(&package, 2, 21), "root", &["admin"])).await.expect("admin");
    client.upload_release(upload_req(&package, 3, 21)).await.expect("anonymous (dev gateway)");
    let set = client
        .set_track_release(as_user(
            pb::SetTrackReleaseRequest {
                request_id: rid("s"),
                package_name: package.clone(),
                track: "beta".into(),
                version_code: 3,
                user_fraction: 1.0,
            },
            "alice",
            &[],
        ))
        .await
        .expect("owner sets a track");
    assert_eq!(set.into_inner().track.unwrap().releases[0].version_code, 3);
}

on_every_backend!(sixty_four_uploads_one_release, only_the_owner_or_an_admin_changes_an_app);
