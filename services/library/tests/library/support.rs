//! Shared fixtures: a library replica on a store under a key root of its own (the etcd cluster
//! is shared by every test of the run), timed by a manual clock, and short calls for the
//! setup steps.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::clock::{Clock, ManualClock};
use meshwork_common::record::Record;
use meshwork_library::Config;
use meshwork_library::keys::Keys;
use meshwork_library::model::CopyRecord;
use meshwork_proto::pb::library::v1 as pb;
use meshwork_storage::{Direction, DynStore, Entry, KeyRange, scan_all};
use meshwork_test_support::{TestServer, backends::unique, context_with_clock};
use pb::library_client::LibraryClient;
use tonic::transport::Channel;

pub type Client = LibraryClient<Channel>;

/// One day in milliseconds.
pub const DAY: i64 = 24 * 3600 * 1000;

/// Returns a key root of its own.
pub fn root(tag: &str) -> String {
    unique(&format!("lib-{tag}"))
}

/// Returns a request id no other call uses.
pub fn rid(tag: &str) -> String {
    unique(tag)
}

/// Returns the wall clock now, where the manual clocks start.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Returns a manual clock standing at the wall time.
pub fn clock() -> ManualClock {
    ManualClock::new(wall_ms())
}

/// Returns the valid ISBN-13 `978` + the nine digits of `n` + its check digit.
pub fn isbn(n: u64) -> String {
    let twelve: Vec<u32> = format!("978{:09}", n % 1_000_000_000).chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = twelve.iter().enumerate().map(|(i, d)| if i % 2 == 0 { *d } else { 3 * d }).sum();
    let check = (10 - sum % 10) % 10;
    twelve.iter().chain(std::iter::once(&check)).map(|d| char::from(b'0' + *d as u8)).collect()
}

/// A library replica under `root` on `store`, timed by `clock`, sweeping every `sweep`.
pub struct Replica {
    pub server: TestServer,
    pub client: Client,
    pub keys: Keys,
    pub store: DynStore,
}

/// Serves one replica, sweeping missed pickups every 50 ms.
pub async fn replica(store: &DynStore, root: &str, clock: Arc<dyn Clock>) -> Replica {
    replica_sweeping(store, root, clock, Duration::from_millis(50)).await
}

/// [`replica`] with its sweeper running every `sweep_interval`.
pub async fn replica_sweeping(
    store: &DynStore,
    root: &str,
    clock: Arc<dyn Clock>,
    sweep_interval: Duration,
) -> Replica {
    let config = Config { root: root.to_string(), sweep_interval, ..Config::default() };
    let ctx = context_with_clock(store.clone(), clock);
    let server = TestServer::start(vec![meshwork_library::hosted_with(&ctx, config)]).await;
    let client = LibraryClient::new(server.channel.clone());
    Replica { server, client, keys: Keys::new(root), store: store.clone() }
}

/// Returns every key and value under `root`.
pub async fn snapshot(store: &DynStore, root: &str) -> Vec<Entry> {
    scan_all(store, KeyRange::prefix(format!("{root}/").into_bytes()), Direction::Forward)
        .await
        .expect("scan the store")
}

/// Adds a title.
pub async fn add_title(client: &mut Client, isbn: &str, title: &str, authors: &[&str], subjects: &[&str]) -> pb::Title {
    let title = pb::Title {
        isbn: isbn.into(),
        title: title.into(),
        authors: authors.iter().map(|s| s.to_string()).collect(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    client
        .add_title(pb::AddTitleRequest { request_id: rid("title"), title: Some(title) })
        .await
        .expect("add title")
        .into_inner()
        .title
        .expect("title")
}

/// Adds a copy of `isbn` costing `cost` (USD minor units) to replace.
pub async fn add_copy(client: &mut Client, barcode: &str, isbn: &str, cost: i64) -> pb::Copy {
    let copy = pb::Copy {
        barcode: barcode.into(),
        isbn: isbn.into(),
        branch: "main".into(),
        replacement_cost_minor: cost,
        currency: "USD".into(),
        ..Default::default()
    };
    client
        .add_copy(pb::AddCopyRequest { request_id: rid("copy"), copy: Some(copy) })
        .await
        .expect("add copy")
        .into_inner()
        .copy
        .expect("copy")
}

/// Registers a member of `member_type`.
pub async fn register(client: &mut Client, member_id: &str, member_type: pb::MemberType) {
    let member = pb::Member {
        member_id: member_id.into(),
        name: format!("Member {member_id}"),
        r#type: member_type as i32,
        ..Default::default()
    };
    client
        .register_member(pb::RegisterMemberRequest { request_id: rid("member"), member: Some(member) })
        .await
        .expect("register member");
}

/// Checks `barcode` out to `member_id`.
pub async fn checkout(
    client: &mut Client,
    member_id: &str,
    barcode: &str,
) -> Result<pb::CheckoutResponse, tonic::Status> {
    let req = pb::CheckoutRequest { request_id: rid("out"), member_id: member_id.into(), barcode: barcode.into() };
    client.checkout(req).await.map(tonic::Response::into_inner)
}

/// Returns `barcode`.
pub async fn give_back(client: &mut Client, barcode: &str) -> pb::ReturnResponse {
    let req = pb::ReturnRequest { request_id: rid("ret"), barcode: barcode.into() };
    client.r#return(req).await.expect("return").into_inner()
}

/// Renews `member_id`'s loan of `barcode`.
pub async fn renew(client: &mut Client, member_id: &str, barcode: &str) -> Result<pb::RenewResponse, tonic::Status> {
    let req = pb::RenewRequest { request_id: rid("renew"), member_id: member_id.into(), barcode: barcode.into() };
    client.renew(req).await.map(tonic::Response::into_inner)
}

/// Places `member_id`'s hold on `isbn`.
pub async fn place_hold(client: &mut Client, member_id: &str, isbn: &str) -> pb::Hold {
    let req = pb::PlaceHoldRequest { request_id: rid("hold"), member_id: member_id.into(), isbn: isbn.into() };
    client.place_hold(req).await.expect("place hold").into_inner().hold.expect("hold")
}

/// Returns `member_id`'s account.
pub async fn account(client: &mut Client, member_id: &str) -> pb::MemberAccountResponse {
    client
        .member_account(pb::MemberAccountRequest { member_id: member_id.into() })
        .await
        .expect("member account")
        .into_inner()
}

/// Returns a copy through the API.
pub async fn copy(client: &mut Client, barcode: &str) -> pb::Copy {
    client
        .get_copy(pb::GetCopyRequest { barcode: barcode.into() })
        .await
        .expect("get copy")
        .into_inner()
        .copy
        .expect("copy")
}

/// Returns a copy as stored, without the API's read-time settling.
pub async fn stored_copy(replica: &Replica, barcode: &str) -> CopyRecord {
    let found = replica.store.get(&replica.keys.copy(barcode)).await.expect("read copy").expect("copy stored");
    CopyRecord::decode(&found.value).expect("decode copy")
}

/// Polls `check` every 20 ms until it holds or `budget` passes; returns whether it held.
pub async fn eventually<F, Fut>(budget: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
