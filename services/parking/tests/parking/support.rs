//! Shared fixtures: replicas of the parking service on a store, each test under a key root and
//! a lot of its own (the etcd cluster is shared by every test of the run), a manual clock.

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::clock::{Clock, ManualClock};
use meshwork_common::fields::timestamp;
use meshwork_parking::Config;
use meshwork_parking::model::ReservationRecord;
use meshwork_parking::rules::{HOUR_MS, QUARTER_MS, floor_quarter};
use meshwork_proto::pb::parking::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange, scan_all};
use meshwork_test_support::{TestServer, backends::unique, context_with_clock};
use pb::parking_client::ParkingClient;
use tonic::transport::Channel;

pub type Client = ParkingClient<Channel>;

/// Returns a key root of its own.
pub fn root(tag: &str) -> String {
    unique(&format!("park-{tag}"))
}

/// Returns a lot id no other test uses.
pub fn lot_id(tag: &str) -> String {
    unique(&format!("lot-{tag}"))
}

/// Returns a request id no other call uses.
pub fn rid(tag: &str) -> String {
    unique(tag)
}

/// Returns the wall clock now, as a manual clock's start.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Returns a manual clock at the wall clock's time.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(wall_ms()))
}

/// Returns a quarter hour `hours` ahead of `clock`'s now.
pub fn quarter_ahead(clock: &dyn Clock, hours: i64) -> i64 {
    floor_quarter(clock.now_ms()) + hours * HOUR_MS + QUARTER_MS
}

/// One replica on `store` under `root`, timed by `clock`, with a hold time and sweep interval.
pub async fn replica(
    store: &DynStore,
    root: &str,
    clock: Arc<dyn Clock>,
    hold_ttl: Duration,
    sweep_interval: Duration,
) -> (TestServer, Client) {
    let config = Config { root: root.to_string(), hold_ttl, sweep_interval, ..Config::default() };
    let server =
        TestServer::start(vec![meshwork_parking::hosted_with(&context_with_clock(store.clone(), clock), config)]).await;
    let client = ParkingClient::new(server.channel.clone());
    (server, client)
}

/// One replica with a 10-minute hold and a sweeper that does not run within a test.
pub async fn quiet_replica(store: &DynStore, root: &str, clock: Arc<dyn Clock>) -> (TestServer, Client) {
    replica(store, root, clock, Duration::from_secs(600), Duration::from_secs(3600)).await
}

/// Returns a level with generated spots.
pub fn level(id: &str, blocks: &[(pb::SpotType, i32)]) -> pb::Level {
    pb::Level {
        level_id: id.into(),
        name: format!("Level {id}"),
        spots: vec![],
        blocks: blocks.iter().map(|(t, count)| pb::SpotBlock { r#type: *t as i32, count: *count }).collect(),
    }
}

/// Creates a USD lot priced REGULAR 400, COMPACT 300, LARGE 600, EV 500, ACCESSIBLE 200 an hour.
pub async fn create_lot(client: &mut Client, lot_id: &str, levels: Vec<pb::Level>) -> pb::Lot {
    use pb::SpotType as T;
    let prices = [(T::Compact, 300), (T::Regular, 400), (T::Large, 600), (T::Ev, 500), (T::Accessible, 200)]
        .into_iter()
        .map(|(t, p)| pb::Price { r#type: t as i32, hourly_minor: p })
        .collect();
    let lot = pb::Lot {
        lot_id: lot_id.into(),
        name: format!("Lot {lot_id}"),
        currency: "USD".into(),
        prices,
        levels,
        ..Default::default()
    };
    client
        .create_lot(pb::CreateLotRequest { request_id: rid("lot"), lot: Some(lot) })
        .await
        .expect("create lot")
        .into_inner()
        .lot
        .expect("lot")
}

/// Returns a Reserve request for a spot (or, with an empty spot, any REGULAR spot).
pub fn reserve_req(lot: &str, spot: &str, start: i64, end: i64, plate: &str) -> pb::ReserveRequest {
    pb::ReserveRequest {
        request_id: rid("rsv"),
        lot_id: lot.into(),
        r#type: if spot.is_empty() { pb::SpotType::Regular as i32 } else { 0 },
        spot_id: spot.into(),
        start_time: Some(timestamp(start)),
        end_time: Some(timestamp(end)),
        plate: plate.into(),
        ..Default::default()
    }
}

/// Reserves, answering the reservation.
pub async fn reserve(client: &mut Client, req: pb::ReserveRequest) -> Result<pb::Reservation, tonic::Status> {
    Ok(client.reserve(req).await?.into_inner().reservation.expect("reservation"))
}

/// Returns a reservation as GetReservation shows it.
pub async fn get(client: &mut Client, id: &str) -> pb::Reservation {
    client
        .get_reservation(pb::GetReservationRequest { reservation_id: id.into() })
        .await
        .expect("get reservation")
        .into_inner()
        .reservation
        .expect("reservation")
}

/// Returns a reservation as stored (what the sweeper or an action recorded).
pub async fn stored(store: &DynStore, root: &str, id: &str) -> ReservationRecord {
    use meshwork_common::record::Record;
    let key = meshwork_parking::keys::Keys::new(root).reservation(id);
    let found = store.get(&key).await.expect("store get").expect("stored reservation");
    ReservationRecord::decode(&found.value).expect("decode reservation")
}

/// Returns every reservation stored under `root`.
pub async fn all_reservations(store: &DynStore, root: &str) -> Vec<ReservationRecord> {
    use meshwork_common::record::Record;
    let range = KeyRange::prefix(format!("{root}/reservations/").into_bytes());
    scan_all(store, range, Direction::Forward)
        .await
        .expect("scan reservations")
        .into_iter()
        .map(|e| ReservationRecord::decode(&e.value).expect("decode reservation"))
        .collect()
}

/// Returns every key and version under `root`, to show that nothing changed.
pub async fn snapshot(store: &DynStore, root: &str) -> Vec<(Vec<u8>, u64)> {
    let range = KeyRange::prefix(format!("{root}/").into_bytes());
    scan_all(store, range, Direction::Forward).await.expect("scan").into_iter().map(|e| (e.key, e.version)).collect()
}

/// Waits up to `within` for `check` to hold, polling.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
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

/// Returns a timestamp's milliseconds.
pub fn ms(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}
