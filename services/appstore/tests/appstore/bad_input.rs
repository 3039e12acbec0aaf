//! The bad-input catalogue: every RPC with empty, malformed and out-of-range values, unknown
//! apps and illegal moves: each answers the right code naming the field, and nothing under
//! the service's key root changes (a snapshot of every key and version before and after).

use meshwork_proto::pb::appstore::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::{Code, Status};

use crate::support::{self, app_req, rid, set_track, upload, upload_req};

/// Asserts `result` failed with `code`, its message starting with `field:` when one is named.
fn expect<T: std::fmt::Debug>(case: &str, result: Result<T, Status>, code: Code, field: &str) {
    match result {
        Ok(v) => panic!("{case}: accepted: {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{case}: {}", s.message());
            assert!(field.is_empty() || s.message().starts_with(&format!("{field}:")), "{case}: {}", s.message());
        }
    }
}

async fn every_rpc_names_the_bad_field_and_changes_nothing(backend: Backend) {
    let root = support::root("bad");
    let (_s, mut c) = support::replica(&backend.store, &root, support::manual_clock()).await;
    let dev = support::developer(&mut c, "owner").await;
    let package = support::package("bad");
    c.create_app(app_req(&dev, &package, "Good", "TOOLS", 0)).await.expect("app");
    upload(&mut c, &package, 1, 21).await;
    upload(&mut c, &package, 2, 21).await;
    set_track(&mut c, &package, "production", 1, 1.0).await;
    let before = support::snapshot(&backend.store, &root).await;
    let p = package.clone();
    let inv = Code::InvalidArgument;

    // CreateDeveloper.
    let dev_req = |f: &dyn Fn(&mut pb::CreateDeveloperRequest)| {
        let mut r = pb::CreateDeveloperRequest {
            request_id: rid("d"),
            developer_id: "fresh-dev".into(),
            name: "Fresh".into(),
            owner_user_id: "u".into(),
        };
        f(&mut r);
        r
    };
    expect("dev request_id", c.create_developer(dev_req(&|r| r.request_id.clear())).await, inv, "request_id");
    expect("dev id", c.create_developer(dev_req(&|r| r.developer_id = "X!".into())).await, inv, "developer_id");
    expect("dev name", c.create_developer(dev_req(&|r| r.name = " ".into())).await, inv, "name");
    expect("dev owner", c.create_developer(dev_req(&|r| r.owner_user_id.clear())).await, inv, "owner_user_id");
    let dup = pb::CreateDeveloperRequest {
        request_id: rid("d"),
        developer_id: dev.clone(),
        name: "x".into(),
        owner_user_id: "u".into(),
    };
    expect("dev exists", c.create_developer(dup).await, Code::AlreadyExists, "");

    // CreateApp.
    let app_with = |f: &dyn Fn(&mut pb::App)| {
        let mut r = app_req(&dev, "com.fresh.app", "Fresh", "TOOLS", 0);
        f(r.app.as_mut().unwrap());
        r
    };
    expect("no app", c.create_app(pb::CreateAppRequest { request_id: rid("a"), app: None }).await, inv, "app");
    for bad in ["", "com", "Com.x", "com..x", "com.1x", "com/x.y"] {
        expect(bad, c.create_app(app_with(&|a| a.package_name = bad.into())).await, inv, "app.package_name");
    }
    expect(
        "long",
        c.create_app(app_with(&|a| a.package_name = format!("a.{}", "b".repeat(149)))).await,
        inv,
        "app.package_name",
    );
    expect("app dev", c.create_app(app_with(&|a| a.developer_id = "?".into())).await, inv, "app.developer_id");
    expect("title", c.create_app(app_with(&|a| a.title.clear())).await, inv, "app.title");
    expect("category", c.create_app(app_with(&|a| a.category = "tools".into())).await, inv, "app.category");
    expect("description", c.create_app(app_with(&|a| a.description = "x".repeat(4001))).await, inv, "app.description");
    expect("icon", c.create_app(app_with(&|a| a.icon_url = "ftp://x".into())).await, inv, "app.icon_url");
    expect("price", c.create_app(app_with(&|a| a.price_minor = -1)).await, inv, "app.price_minor");
    expect(
        "currency",
        c.create_app(app_with(&|a| {
            a.price_minor = 1;
            a.currency = "XXX".into()
        }))
        .await,
        inv,
        "app.currency",
    );
    expect("unknown dev", c.create_app(app_with(&|a| a.developer_id = "nobody-here".into())).await, Code::NotFound, "");
    expect("app exists", c.create_app(app_with(&|a| a.package_name = package.clone())).await, Code::AlreadyExists, "");

    // UploadRelease.
    let up = |f: &dyn Fn(&mut pb::UploadReleaseRequest)| {
        let mut r = upload_req(&p, 3, 21);
        f(&mut r);
        r
    };
    expect("up rid", c.upload_release(up(&|r| r.request_id = "a b".into())).await, inv, "request_id");
    expect("up pkg", c.upload_release(up(&|r| r.package_name = "x".into())).await, inv, "package_name");
    expect("up vc", c.upload_release(up(&|r| r.version_code = 0)).await, inv, "version_code");
    expect("up name", c.upload_release(up(&|r| r.version_name.clear())).await, inv, "version_name");
    expect("up sdk", c.upload_release(up(&|r| r.min_sdk = 0)).await, inv, "min_sdk");
    expect("up sha", c.upload_release(up(&|r| r.artifact_sha256 = "abc".into())).await, inv, "artifact_sha256");
    expect("up size", c.upload_release(up(&|r| r.size_bytes = 0)).await, inv, "size_bytes");
    expect("up notes", c.upload_release(up(&|r| r.notes = "n".repeat(501))).await, inv, "notes");
    expect("up unknown", c.upload_release(up(&|r| r.package_name = "com.nobody.app".into())).await, Code::NotFound, "");
    expect("up dup", c.upload_release(up(&|r| r.version_code = 2)).await, Code::AlreadyExists, "");
    expect("up lower", c.upload_release(up(&|r| r.version_code = 1)).await, Code::AlreadyExists, "");

    // SetTrackRelease and the rollout changes.
    let set = |f: &dyn Fn(&mut pb::SetTrackReleaseRequest)| {
        let mut r = pb::SetTrackReleaseRequest {
            request_id: rid("s"),
            package_name: p.clone(),
            track: "production".into(),
            version_code: 2,
            user_fraction: 0.1,
        };
        f(&mut r);
        r
    };
    expect("set rid", c.set_track_release(set(&|r| r.request_id.clear())).await, inv, "request_id");
    expect("set pkg", c.set_track_release(set(&|r| r.package_name.clear())).await, inv, "package_name");
    expect("set track", c.set_track_release(set(&|r| r.track = "gamma".into())).await, inv, "track");
    expect("set empty track", c.set_track_release(set(&|r| r.track.clear())).await, inv, "track");
    expect("set vc", c.set_track_release(set(&|r| r.version_code = -1)).await, inv, "version_code");
    for f in [0.0, -0.5, 1.5, f64::NAN] {
        expect("set fraction", c.set_track_release(set(&|r| r.user_fraction = f)).await, inv, "user_fraction");
    }
    expect("set unknown release", c.set_track_release(set(&|r| r.version_code = 9)).await, Code::NotFound, "");
    expect("set not newer", c.set_track_release(set(&|r| r.version_code = 1)).await, Code::FailedPrecondition, "");
    expect(
        "set unknown app",
        c.set_track_release(set(&|r| r.package_name = "com.nobody.app".into())).await,
        Code::NotFound,
        "",
    );
    let track_req = |track: &str| (rid("t"), p.clone(), track.to_string());
    let (request_id, package_name, track) = track_req("production");
    expect(
        "update fraction",
        c.update_rollout(pb::UpdateRolloutRequest { request_id, package_name, track, user_fraction: 2.0 }).await,
        inv,
        "user_fraction",
    );
    let (request_id, package_name, track) = track_req("production");
    expect(
        "update without rollout",
        c.update_rollout(pb::UpdateRolloutRequest { request_id, package_name, track, user_fraction: 0.5 }).await,
        Code::FailedPrecondition,
        "",
    );
    let (request_id, package_name, _) = track_req("");
    expect(
        "halt track",
        c.halt_rollout(pb::HaltRolloutRequest { request_id, package_name, track: "x".into() }).await,
        inv,
        "track",
    );
    let (request_id, package_name, track) = track_req("production");
    expect(
        "halt nothing",
        c.halt_rollout(pb::HaltRolloutRequest { request_id, package_name, track }).await,
        Code::FailedPrecondition,
        "",
    );
    let (request_id, package_name, track) = track_req("beta");
    expect(
        "resume nothing",
        c.resume_rollout(pb::ResumeRolloutRequest { request_id, package_name, track }).await,
        Code::FailedPrecondition,
        "",
    );
    let (_, package_name, track) = track_req("production");
    expect(
        "complete rid",
        c.complete_rollout(pb::CompleteRolloutRequest { request_id: String::new(), package_name, track }).await,
        inv,
        "request_id",
    );
    let (request_id, package_name, track) = track_req("production");
    expect(
        "complete nothing",
        c.complete_rollout(pb::CompleteRolloutRequest { request_id, package_name, track }).await,
        Code::FailedPrecondition,
        "",
    );
    let promote = |from: &str, to: &str, f: f64| pb::PromoteReleaseRequest {
        request_id: rid("p"),
        package_name: p.clone(),
        from_track: from.into(),
        to_track: to.into(),
        user_fraction: f,
    };
    expect("promote from", c.promote_release(promote("", "production", 1.0)).await, inv, "from_track");
    expect("promote to", c.promote_release(promote("beta", "prod", 1.0)).await, inv, "to_track");
    expect("promote same", c.promote_release(promote("beta", "beta", 1.0)).await, inv, "to_track");
    expect("promote fraction", c.promote_release(promote("beta", "production", 3.0)).await, inv, "user_fraction");
    expect("promote empty", c.promote_release(promote("beta", "production", 1.0)).await, Code::FailedPrecondition, "");

    // CheckUpdate.
    let check = |f: &dyn Fn(&mut pb::CheckUpdateRequest)| {
        let mut r = pb::CheckUpdateRequest {
            package_name: p.clone(),
            installed_version_code: 1,
            device_id: "d1".into(),
            sdk_level: 30,
            track: String::new(),
        };
        f(&mut r);
        r
    };
    expect("check pkg", c.check_update(check(&|r| r.package_name = "nope".into())).await, inv, "package_name");
    expect(
        "check installed",
        c.check_update(check(&|r| r.installed_version_code = -1)).await,
        inv,
        "installed_version_code",
    );
    expect("check device", c.check_update(check(&|r| r.device_id.clear())).await, inv, "device_id");
    expect("check device chars", c.check_update(check(&|r| r.device_id = "a/b".into())).await, inv, "device_id");
    expect("check sdk", c.check_update(check(&|r| r.sdk_level = 0)).await, inv, "sdk_level");
    expect("check track", c.check_update(check(&|r| r.track = "canary".into())).await, inv, "track");
    expect(
        "check unknown",
        c.check_update(check(&|r| r.package_name = "com.nobody.app".into())).await,
        Code::NotFound,
        "",
    );

    // Installs.
    let inst = |package: &str, device: &str, v: i64| pb::RecordInstallRequest {
        package_name: package.into(),
        device_id: device.into(),
        version_code: v,
    };
    expect("install pkg", c.record_install(inst("x", "d", 1)).await, inv, "package_name");
    expect("install device", c.record_install(inst(&p, "", 1)).await, inv, "device_id");
    expect("install vc", c.record_install(inst(&p, "d", -1)).await, inv, "version_code");
    expect("install unknown", c.record_install(inst("com.nobody.app", "d", 1)).await, Code::NotFound, "");
    let uninst = |package: &str, device: &str| pb::RecordUninstallRequest {
        package_name: package.into(),
        device_id: device.into(),
    };
    expect("uninstall pkg", c.record_uninstall(uninst("", "d")).await, inv, "package_name");
    expect("uninstall device", c.record_uninstall(uninst(&p, &"d".repeat(129))).await, inv, "device_id");
    let never = c.record_uninstall(uninst(&p, "never-installed")).await.expect("uninstall of nothing");
    assert!(!never.into_inner().counted, "an uninstall of an app a device never had counts nothing");

    // Reads.
    expect(
        "details pkg",
        c.get_app_details(pb::GetAppDetailsRequest { package_name: "A.B".into() }).await,
        inv,
        "package_name",
    );
    expect(
        "details unknown",
        c.get_app_details(pb::GetAppDetailsRequest { package_name: "com.nobody.app".into() }).await,
        Code::NotFound,
        "",
    );
    let s = |f: &dyn Fn(&mut pb::SearchAppsRequest)| {
        let mut r = pb::SearchAppsRequest::default();
        f(&mut r);
        r
    };
    expect("search query", c.search_apps(s(&|r| r.query = "q".repeat(201))).await, inv, "query");
    expect("search control", c.search_apps(s(&|r| r.query = "a\u{7}".into())).await, inv, "query");
    expect("search category", c.search_apps(s(&|r| r.category = "x".into())).await, inv, "category");
    expect("search size", c.search_apps(s(&|r| r.page_size = 101)).await, inv, "page_size");
    expect("search token", c.search_apps(s(&|r| r.page_token = "garbage".into())).await, inv, "page_token");
    let ch = |f: &dyn Fn(&mut pb::TopChartsRequest)| {
        let mut r = pb::TopChartsRequest { chart: pb::Chart::TopFree as i32, ..Default::default() };
        f(&mut r);
        r
    };
    expect("chart kind", c.top_charts(ch(&|r| r.chart = 0)).await, inv, "chart");
    expect("chart unknown kind", c.top_charts(ch(&|r| r.chart = 42)).await, inv, "chart");
    expect("chart category", c.top_charts(ch(&|r| r.category = "_X".into())).await, inv, "category");
    expect("chart size", c.top_charts(ch(&|r| r.page_size = -1)).await, inv, "page_size");
    expect("chart token", c.top_charts(ch(&|r| r.page_token = "garbage".into())).await, inv, "page_token");

    assert_eq!(support::snapshot(&backend.store, &root).await, before, "refused calls changed nothing");
}

on_every_backend!(every_rpc_names_the_bad_field_and_changes_nothing);
