//! Shared fixtures: replicas of the app store on a store, each test under a key root of its
//! own (the etcd cluster is shared by every test of the run), a manual clock, and helpers that
//! create a developer, an app and its releases.

use std::sync::Arc;
use std::time::Duration;

use meshwork_appstore::Config;
use meshwork_appstore::model::AppRecord;
use meshwork_common::clock::ManualClock;
use meshwork_common::record::Record;
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::appstore::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange, scan_all};
use meshwork_test_support::{TestServer, backends::unique, context_with_clock};
use pb::app_store_client::AppStoreClient;
use tonic::Request;
use tonic::transport::Channel;

pub type Client = AppStoreClient<Channel>;

/// Returns a key root of its own.
pub fn root(tag: &str) -> String {
    unique(&format!("as-{tag}"))
}

/// Returns a request id no other call uses.
pub fn rid(tag: &str) -> String {
    unique(tag)
}

/// Returns a package name no other test uses.
pub fn package(tag: &str) -> String {
    format!("com.{}.app", unique(tag))
}

/// Returns a manual clock at a fixed day (2026-01-01T12:00Z).
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(1_767_268_800_000))
}

/// One replica on `store` under `root`, timed by `clock`, flushing counters every hour (so
/// only reads and shutdown flush them within a test).
pub async fn replica(store: &DynStore, root: &str, clock: Arc<ManualClock>) -> (TestServer, Client) {
    let config =
        Config { root: root.to_string(), counter_flush_interval: Duration::from_secs(3600), ..Config::default() };
    let server =
        TestServer::start(vec![meshwork_appstore::hosted_with(&context_with_clock(store.clone(), clock), config)])
            .await;
    let client = AppStoreClient::new(server.channel.clone());
    (server, client)
}

/// Wraps `message` with a verified identity.
pub fn as_user<T>(message: T, subject: &str, roles: &[&str]) -> Request<T> {
    let mut request = Request::new(message);
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::Jwt).encode();
    request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().expect("ascii identity"));
    request
}

/// Creates a developer owned by `owner`, returning its id.
pub async fn developer(client: &mut Client, owner: &str) -> String {
    let developer_id = unique("dev");
    client
        .create_developer(pb::CreateDeveloperRequest {
            request_id: rid("dev"),
            developer_id: developer_id.clone(),
            name: format!("Studio {developer_id}"),
            owner_user_id: owner.into(),
        })
        .await
        .expect("create developer");
    developer_id
}

/// Returns a CreateApp request.
pub fn app_req(
    developer_id: &str,
    package: &str,
    title: &str,
    category: &str,
    price_minor: i64,
) -> pb::CreateAppRequest {
    pb::CreateAppRequest {
        request_id: rid("app"),
        app: Some(pb::App {
            package_name: package.into(),
            developer_id: developer_id.into(),
            title: title.into(),
            category: category.into(),
            description: format!("{title}: the app"),
            icon_url: "https://example.com/icon.png".into(),
            price_minor,
            currency: if price_minor > 0 { "USD".into() } else { String::new() },
            ..Default::default()
        }),
    }
}

/// Creates a developer (owned by `owner`) and a free TOOLS app, returning the package.
pub async fn app(client: &mut Client, owner: &str) -> String {
    let dev = developer(client, owner).await;
    let package = package("p");
    client.create_app(app_req(&dev, &package, "Tool", "TOOLS", 0)).await.expect("create app");
    package
}

/// Returns an UploadRelease request.
pub fn upload_req(package: &str, version_code: i64, min_sdk: i32) -> pb::UploadReleaseRequest {
    pb::UploadReleaseRequest {
        request_id: rid("up"),
        package_name: package.into(),
        version_code,
        version_name: format!("1.{version_code}"),
        min_sdk,
        artifact_sha256: "ab".repeat(32),
        size_bytes: 1_000_000,
        notes: String::new(),
    }
}

/// Uploads a release.
pub async fn upload(client: &mut Client, package: &str, version_code: i64, min_sdk: i32) {
    client.upload_release(upload_req(package, version_code, min_sdk)).await.expect("upload");
}

/// Puts a release on a track.
pub async fn set_track(client: &mut Client, package: &str, track: &str, version_code: i64, fraction: f64) -> pb::Track {
    client
        .set_track_release(pb::SetTrackReleaseRequest {
            request_id: rid("set"),
            package_name: package.into(),
            track: track.into(),
            version_code,
            user_fraction: fraction,
        })
        .await
        .expect("set track release")
        .into_inner()
        .track
        .expect("track")
}

/// Asks CheckUpdate, answering the offered version code (0 for none).
pub async fn offered(client: &mut Client, package: &str, device: &str, installed: i64, sdk: i32, track: &str) -> i64 {
    let r = client
        .check_update(pb::CheckUpdateRequest {
            package_name: package.into(),
            installed_version_code: installed,
            device_id: device.into(),
            sdk_level: sdk,
            track: track.into(),
        })
        .await
        .expect("check update")
        .into_inner();
    if r.update_available { r.release.expect("release").version_code } else { 0 }
}

/// Reads an app record straight from the store.
pub async fn stored_app(store: &DynStore, root: &str, package: &str) -> AppRecord {
    let keys = meshwork_appstore::keys::Keys::new(root);
    AppRecord::decode(&store.get(&keys.app(package)).await.expect("read").expect("app").value).expect("decode")
}

/// Returns every key and version under `root`, to prove a refused call changed nothing.
pub async fn snapshot(store: &DynStore, root: &str) -> Vec<(Vec<u8>, u64)> {
    scan_all(store, KeyRange::prefix(format!("{root}/")), Direction::Forward)
        .await
        .expect("scan")
        .into_iter()
        .map(|e| (e.key, e.version))
        .collect()
}
