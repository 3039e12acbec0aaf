//! The parking service's operations over the Store.
//!
//! No double booking: each spot has one occupancy record (`rules::Occupancy`, the ranges of its
//! live reservations), and every change of a reservation of that spot is one conditional
//! transaction that reads that record, checks, and writes it back together with the
//! reservation and its index entries. Two reservations racing for overlapping ranges of a spot
//! both read the same record version and only one commit's condition holds; the other retries,
//! sees the winner's range and is refused. A transaction touches one spot, a handful of keys
//! (about 10 operations), far under etcd's 128.
//!
//! A type-level request tries candidate spots one transaction each, never the whole lot in one:
//! the lot's spots of that type in an order rotated by the request id (so concurrent requests
//! spread over the lot instead of all racing for the first spot), their occupancy records read
//! in small parallel windows to skip the busy ones, then a transaction on each spot that looked
//! free until one commits. The `request_id` record is part of every attempt's transaction, so a
//! concurrent duplicate finds the first call's answer whichever spot it tried.
//!
//! Holds expire by themselves: a hold stops occupying its spot the moment its time is up (the
//! overlap check ignores it, and the next write of the spot drops it), so the next caller gets
//! the spot whether or not anyone looked at the reservation; every replica's sweeper also
//! records EXPIRED (and NO_SHOW, 30 minutes after the start of a confirmed reservation nobody
//! checked in to) from time-ordered due indexes. A confirmation that finds its hold dropped or
//! due records EXPIRED instead.
//!
//! Within one replica, writers of the same spot queue on a striped local lock first: queueing
//! is cheaper than failing and retrying optimistic commits; replicas still race through the
//! store's conditions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use meshwork_common::caller::Caller;
use meshwork_common::clock::Clock;
use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::fields::timestamp;
use meshwork_common::idempotency::{Fingerprint, Idempotency};
use meshwork_common::locks::LockStripes;
use meshwork_common::paging::{PageToken, fingerprint};
use meshwork_common::record::Record;
use meshwork_proto::pb::parking::v1 as pb;
use meshwork_storage::{Condition, Direction, DynStore, KeyRange, Mutation, Txn, transact};
use tokio::sync::Mutex;

use crate::keys::{Due, Keys, ROOT};
use crate::model::{LotRecord, ReservationRecord, ReservationState, SpotKind};
use crate::rules::{self, EARLY_CHECK_IN_MS, Occupancy, Slot, SlotState};
use crate::validate::{self, ListBy, Target};

/// Roles that manage lots and act on anyone's reservations.
pub const STAFF_ROLES: [&str; 2] = ["admin", "parking"];

/// The setting that overrides the hold time, in seconds.
pub const HOLD_TTL_SETTING: &str = "parking.hold_ttl_secs";

/// Hold time when no setting gives one.
pub const DEFAULT_HOLD_TTL: Duration = Duration::from_secs(600);

/// Occupancy records read at once when looking for a free spot of a type.
const CANDIDATE_WINDOW: usize = 16;

/// Local lock stripes (spots hash onto them).
const STRIPES: usize = 256;

/// Most lots a replica caches.
const LOT_CACHE: usize = 4096;

/// Tunables of the parking service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Root of every key (`parking`); tests give each case its own on a shared store.
    pub root: String,
    /// How long a HELD reservation holds its spot.
    pub hold_ttl: Duration,
    /// How often each replica looks for due holds and no-shows.
    pub sweep_interval: Duration,
    /// Most due entries settled per sweep page.
    pub sweep_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: ROOT.to_string(),
            hold_ttl: DEFAULT_HOLD_TTL,
            sweep_interval: Duration::from_millis(500),
            sweep_batch: 100,
        }
    }
}

/// A move of a reservation's life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Confirm,
    Cancel(String),
    CheckIn,
    CheckOut,
    /// The sweeper found this due index key.
    Sweep(Vec<u8>),
}

impl Action {
    fn verb(&self) -> &'static str {
        match self {
            Action::Confirm => "confirming",
            Action::Cancel(_) => "cancelling",
            Action::CheckIn => "checking in",
            Action::CheckOut => "checking out",
            Action::Sweep(_) => "sweeping",
        }
    }
}

/// The outcome of a settling transaction.
enum Settled {
    /// The reservation as it now stands.
    Done(ReservationRecord),
    /// It was due (a hold past its time, a no-show) and has just been recorded so; the action
    /// itself did not happen.
    DueNow(ReservationRecord),
    /// Nothing to do (a sweep of a settled or not yet due reservation).
    Nothing,
}

/// The parking service's domain logic.
pub struct Parking {
    store: DynStore,
    clock: Arc<dyn Clock>,
    keys: Keys,
    idem: Idempotency,
    config: Config,
    lots: StdMutex<HashMap<String, Arc<LotRecord>>>,
    stripes: LockStripes,
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking").field("root", &self.keys.root()).finish_non_exhaustive()
    }
}

fn is_staff(caller: &Caller) -> bool {
    STAFF_ROLES.iter().any(|r| caller.has_role(r))
}

/// Fails with PERMISSION_DENIED unless the caller is anonymous (the dev gateway) or staff.
fn authorize_staff(caller: Option<&Caller>, what: &str) -> ServiceResult<()> {
    match caller {
        Some(c) if !is_staff(c) => Err(ServiceError::PermissionDenied(format!(
            "{what} needs role \"admin\" or \"parking\"; \"{}\" has neither",
            c.subject.escape_debug()
        ))),
        _ => Ok(()),
    }
}

/// Fails with PERMISSION_DENIED when an identified caller who is not staff acts on a
/// reservation of someone else.
fn authorize_owner(caller: Option<&Caller>, owner: &str) -> ServiceResult<()> {
    match caller {
        Some(c) if !owner.is_empty() && c.subject != owner && !is_staff(c) => Err(ServiceError::PermissionDenied(
            format!("the reservation belongs to another user; \"{}\" is not staff", c.subject.escape_debug()),
        )),
        _ => Ok(()),
    }
}

/// Returns a new reservation id: `rsv_` and 20 random base62 characters (about 119 bits).
fn new_reservation_id() -> String {
    meshwork_common::random_id("rsv_", validate::RESERVATION_ID_CHARS)
}

/// Returns `ms` as RFC 3339, for messages.
fn at(ms: i64) -> String {
    meshwork_clock::rfc3339_seconds(ms.div_euclid(1000))
}

impl Parking {
    /// Returns the service on `store`, timed by `clock`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, config: Config) -> Self {
        let keys = Keys::new(&config.root);
        let idem = Idempotency::new(store.clone(), keys.root()).with_clock(clock.clone());
        let stripes = LockStripes::new(STRIPES);
        Parking { store, clock, keys, idem, config, lots: StdMutex::new(HashMap::new()), stripes }
    }

    /// Returns the keys of this deployment.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn stripe(&self, lot: &str, spot: &str) -> &Mutex<()> {
        self.stripes.stripe(&[lot.as_bytes(), spot.as_bytes()])
    }

    /// Returns a lot, from this replica's cache when it has it (lots never change).
    async fn lot(&self, id: &str) -> ServiceResult<Arc<LotRecord>> {
        if let Some(lot) = self.lots.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(lot.clone());
        }
        let Some(found) = self.store.get(&self.keys.lot(id)).await? else {
            return Err(ServiceError::not_found(format!("lot {id}")));
        };
        let lot = Arc::new(LotRecord::decode(&found.value)?);
        let mut cache = self.lots.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= LOT_CACHE {
            cache.clear();
        }
        cache.insert(id.to_string(), lot.clone());
        Ok(lot)
    }

    /// CreateLot: idempotent by `request_id`; an existing lot id is ALREADY_EXISTS.
    pub async fn create_lot(
        &self,
        caller: Option<&Caller>,
        req: pb::CreateLotRequest,
    ) -> ServiceResult<pb::CreateLotResponse> {
        authorize_staff(caller, "creating a lot")?;
        let lot = validate::create_lot(&req, self.clock.now_ms())?;
        let key = self.keys.lot(&lot.id);
        let (lot, key) = (&lot, &key);
        self.idem
            .transact(&req.request_id, Fingerprint::of(&req), |tx| {
                Box::pin(async move {
                    if tx.get(key).await?.is_some() {
                        return Err(ServiceError::AlreadyExists { what: format!("lot {}", lot.id) });
                    }
                    tx.put(key.clone(), lot.encode()?);
                    Ok(pb::CreateLotResponse { lot: Some(lot.to_pb()) })
                })
            })
            .await
    }

    /// GetLot.
    pub async fn get_lot(&self, req: pb::GetLotRequest) -> ServiceResult<pb::GetLotResponse> {
        validate::get_lot(&req)?;
        Ok(pb::GetLotResponse { lot: Some(self.lot(&req.lot_id).await?.to_pb()) })
    }

    /// Reads the occupancy records of a lot's spots of one type (or all), by spot id.
    async fn occupancies(&self, lot: &str, kind: Option<SpotKind>) -> ServiceResult<HashMap<String, Occupancy>> {
        let range = KeyRange::prefix(self.keys.occ_prefix(lot, kind.map(SpotKind::letter)));
        let entries = meshwork_storage::scan_all(&self.store, range, Direction::Forward).await?;
        let mut out = HashMap::with_capacity(entries.len());
        for e in entries {
            if let Some(spot) = self.keys.occ_spot(&e.key) {
                out.insert(spot.to_string(), Occupancy::decode(&e.value)?);
            }
        }
        Ok(out)
    }

    /// SearchAvailability: counts the spots free over the whole window and lists some.
    pub async fn search(&self, req: pb::SearchAvailabilityRequest) -> ServiceResult<pb::SearchAvailabilityResponse> {
        let now = self.clock.now_ms();
        let search = validate::search(&req, now)?;
        let lot = self.lot(&req.lot_id).await?;
        let occupancy = self.occupancies(&lot.id, search.kind).await?;
        let (mut free, mut total, mut spots) = (0, 0, Vec::new());
        for (level, spot) in lot.spots().filter(|(_, s)| search.kind.is_none_or(|k| s.kind == k)) {
            total += 1;
            if occupancy.get(&spot.id).is_none_or(|o| o.is_free(search.start, search.end, now)) {
                free += 1;
                if spots.len() < search.limit {
                    spots.push(LotRecord::spot_pb(level, spot));
                }
            }
        }
        let price = search.kind.and_then(|k| lot.hourly(k)).map(|h| rules::quote(h, search.start, search.end));
        Ok(pb::SearchAvailabilityResponse {
            start_time: Some(timestamp(search.start)),
            end_time: Some(timestamp(search.end)),
            free_count: free,
            total_count: total,
            spots,
            price_minor: price.unwrap_or(0),
            currency: lot.currency.clone(),
        })
    }

    /// Reserve: a HELD reservation of the named spot, or of any free spot of the type.
    pub async fn reserve(
        &self,
        caller: Option<&Caller>,
        req: pb::ReserveRequest,
    ) -> ServiceResult<pb::ReserveResponse> {
        let spec = validate::reserve(&req, self.clock.now_ms())?;
        let user = match caller {
            Some(c) if req.user_id.is_empty() => c.subject.clone(),
            Some(c) if req.user_id != c.subject && !is_staff(c) => {
                return Err(ServiceError::PermissionDenied(format!(
                    "booking for another user needs role \"admin\" or \"parking\"; \"{}\" has neither",
                    c.subject.escape_debug()
                )));
            }
            _ => req.user_id.clone(),
        };
        let lot = self.lot(&req.lot_id).await?;
        let fp = Fingerprint::of(&req);
        let candidates: Vec<String> = match &spec.target {
            Target::Spot(id) => {
                if lot.spot(id).is_none() {
                    return Err(ServiceError::not_found(format!("spot {id} in lot {}", lot.id)));
                }
                vec![id.clone()]
            }
            Target::Kind(kind) => {
                let of_kind: Vec<String> =
                    lot.spots().filter(|(_, s)| s.kind == *kind).map(|(_, s)| s.id.clone()).collect();
                if of_kind.is_empty() {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "lot {} has no {} spots",
                        lot.id,
                        kind.name()
                    )));
                }
                // A repeated request must find its answer even when its own hold now fills
                // the lot.
                if let Some(answer) = self.answered(&req.request_id, fp).await? {
                    return Ok(answer);
                }
                let offset = fingerprint(&[req.request_id.as_bytes()]) as usize % of_kind.len();
                of_kind[offset..].iter().chain(&of_kind[..offset]).cloned().collect()
            }
        };
        let (lot, spec): (&LotRecord, &validate::Reserve) = (&lot, &spec);
        let ask = Ask { req: &req, lot, spec, user: &user, fp };
        // The first candidate is tried at once (in a lot with room it is free); after it,
        // windows of candidates are read together and only those that look free are tried.
        let (mut next, mut size) = (0, 1);
        while next < candidates.len() {
            let window = &candidates[next..(next + size).min(candidates.len())];
            (next, size) = (next + window.len(), CANDIDATE_WINDOW);
            let looks_free: Vec<bool> = if window.len() == 1 {
                vec![true]
            } else {
                let now = self.clock.now_ms();
                // Only a type-level request has windows of several spots, all of its type.
                let letter = match &spec.target {
                    Target::Kind(kind) => kind.letter(),
                    Target::Spot(_) => return Err(ServiceError::Internal("a spot request has one candidate".into())),
                };
                let reads = window.iter().map(|spot| async move {
                    match self.store.get(&self.keys.occ(&lot.id, letter, spot)).await? {
                        None => Ok::<bool, ServiceError>(true),
                        Some(v) => Ok(Occupancy::decode(&v.value)?.is_free(spec.start, spec.end, now)),
                    }
                });
                futures::future::try_join_all(reads).await?
            };
            for (spot, free) in window.iter().zip(looks_free) {
                if free && let Some(answer) = self.try_spot(&ask, spot).await? {
                    return Ok(answer);
                }
            }
        }
        if let Some(answer) = self.answered(&req.request_id, fp).await? {
            return Ok(answer);
        }
        Err(ServiceError::FailedPrecondition(match &spec.target {
            Target::Spot(id) => {
                format!("spot {id} in lot {} is taken between {} and {}", lot.id, at(spec.start), at(spec.end))
            }
            Target::Kind(kind) => format!(
                "no {} spot of lot {} is free between {} and {}",
                kind.name(),
                lot.id,
                at(spec.start),
                at(spec.end)
            ),
        }))
    }

    /// Returns the recorded answer of `request_id`, if it has one.
    async fn answered(&self, request_id: &str, fp: Fingerprint) -> ServiceResult<Option<pb::ReserveResponse>> {
        let unanswered = StdMutex::new(false);
        let unanswered = &unanswered;
        let outcome = self
            .idem
            .transact(request_id, fp, |_tx| {
                Box::pin(async move {
                    *unanswered.lock().unwrap_or_else(|p| p.into_inner()) = true;
                    Err::<pb::ReserveResponse, _>(ServiceError::Aborted("not answered yet".into()))
                })
            })
            .await;
        match outcome {
            Ok(answer) => Ok(Some(answer)),
            Err(_) if *unanswered.lock().unwrap_or_else(|p| p.into_inner()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Tries to hold `spot` in one transaction; `None` when it is taken over the window.
    async fn try_spot(&self, ask: &Ask<'_>, spot: &str) -> ServiceResult<Option<pb::ReserveResponse>> {
        let Some((level, spot_rec)) = ask.lot.spot(spot) else {
            return Ok(None);
        };
        let Some(hourly) = ask.lot.hourly(spot_rec.kind) else {
            return Err(ServiceError::Internal(format!(
                "lot {} has no price for {}",
                ask.lot.id,
                spot_rec.kind.name()
            )));
        };
        let occ_key = self.keys.occ(&ask.lot.id, spot_rec.kind.letter(), spot);
        let busy = StdMutex::new(false);
        let (busy, occ_key) = (&busy, &occ_key);
        let _local = self.stripe(&ask.lot.id, spot).lock().await;
        let outcome = self
            .idem
            .transact(&ask.req.request_id, ask.fp, |tx| {
                Box::pin(async move {
                    let now = self.clock.now_ms();
                    let mut occ = match tx.get(occ_key).await? {
                        Some(v) => Occupancy::decode(&v.value)?,
                        None => Occupancy::default(),
                    };
                    occ.prune(now);
                    if !occ.is_free(ask.spec.start, ask.spec.end, now) {
                        *busy.lock().unwrap_or_else(|p| p.into_inner()) = true;
                        return Err(ServiceError::FailedPrecondition(format!("spot {spot} is taken")));
                    }
                    let id = new_reservation_id();
                    let hold_until = now.saturating_add(self.config.hold_ttl.as_millis() as i64);
                    let record = ReservationRecord {
                        id: id.clone(),
                        lot: ask.lot.id.clone(),
                        spot: spot.to_string(),
                        level: level.id.clone(),
                        kind: spot_rec.kind,
                        plate: ask.spec.plate.clone(),
                        user: ask.user.to_string(),
                        state: ReservationState::Held,
                        start: ask.spec.start,
                        end: ask.spec.end,
                        hold_until,
                        hourly,
                        price: rules::quote(hourly, ask.spec.start, ask.spec.end),
                        currency: ask.lot.currency.clone(),
                        refund: 0,
                        overstay: 0,
                        confirm_ms: 0,
                        check_in_ms: 0,
                        check_out_ms: 0,
                        cancel_reason: String::new(),
                        create_ms: now,
                        update_ms: now,
                    };
                    occ.insert(Slot {
                        id: id.clone(),
                        start: record.start,
                        end: record.end,
                        state: SlotState::Held,
                        hold_until,
                    });
                    tx.put(occ_key.clone(), occ.encode()?);
                    let key = self.keys.reservation(&id);
                    tx.require(Condition::Absent(key.clone()));
                    tx.put(key, record.encode()?);
                    tx.put(Keys::entry(&self.keys.by_plate_prefix(&record.plate), record.start, &id), vec![]);
                    tx.put(Keys::entry(&self.keys.by_lot_prefix(&record.lot), record.start, &id), vec![]);
                    tx.put(self.keys.due(Due::Hold, hold_until, &id), vec![]);
                    Ok(pb::ReserveResponse { reservation: Some(record.to_pb(now)) })
                })
            })
            .await;
        match outcome {
            Ok(answer) => Ok(Some(answer)),
            Err(_) if *busy.lock().unwrap_or_else(|p| p.into_inner()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a reservation outside a transaction.
    async fn read(&self, id: &str) -> ServiceResult<ReservationRecord> {
        match self.store.get(&self.keys.reservation(id)).await? {
            Some(v) => Ok(ReservationRecord::decode(&v.value)?),
            None => Err(ServiceError::not_found(format!("reservation {id}"))),
        }
    }

    /// GetReservation.
    pub async fn get_reservation(&self, caller: Option<&Caller>, id: &str) -> ServiceResult<pb::Reservation> {
        validate::reservation_id(id)?;
        let record = self.read(id).await?;
        authorize_owner(caller, &record.user)?;
        Ok(record.to_pb(self.clock.now_ms()))
    }

    /// ConfirmReservation.
    pub async fn confirm(&self, caller: Option<&Caller>, id: &str) -> ServiceResult<pb::Reservation> {
        validate::reservation_id(id)?;
        self.act(caller, id, Action::Confirm).await
    }

    /// CancelReservation.
    pub async fn cancel(
        &self,
        caller: Option<&Caller>,
        req: pb::CancelReservationRequest,
    ) -> ServiceResult<pb::Reservation> {
        validate::cancel(&req)?;
        self.act(caller, &req.reservation_id, Action::Cancel(req.reason.clone())).await
    }

    /// CheckIn.
    pub async fn check_in(&self, caller: Option<&Caller>, id: &str) -> ServiceResult<pb::Reservation> {
        validate::reservation_id(id)?;
        self.act(caller, id, Action::CheckIn).await
    }

    /// CheckOut.
    pub async fn check_out(&self, caller: Option<&Caller>, id: &str) -> ServiceResult<pb::Reservation> {
        validate::reservation_id(id)?;
        self.act(caller, id, Action::CheckOut).await
    }

    /// Runs an action and answers the reservation, or the error of a reservation that turned
    /// out due (its change recorded all the same).
    async fn act(&self, caller: Option<&Caller>, id: &str, action: Action) -> ServiceResult<pb::Reservation> {
        let now = self.clock.now_ms();
        match self.settle(caller, id, &action).await? {
            Settled::Done(r) => Ok(r.to_pb(self.clock.now_ms().max(now))),
            // Cancelling a hold that ran out: it is gone either way.
            Settled::DueNow(r) if matches!(action, Action::Cancel(_)) && r.state == ReservationState::Expired => {
                Ok(r.to_pb(self.clock.now_ms().max(now)))
            }
            Settled::DueNow(r) => Err(ServiceError::FailedPrecondition(format!(
                "reservation {id} is {}: {}",
                r.state.name(),
                if r.state == ReservationState::Expired {
                    "its hold ran out before a confirmation"
                } else {
                    "nobody checked in within 30 minutes of the start"
                }
            ))),
            Settled::Nothing => Err(ServiceError::Internal(format!("{} settled nothing", action.verb()))),
        }
    }

    /// Moves a reservation on in one transaction over it and its spot's occupancy.
    async fn settle(&self, caller: Option<&Caller>, id: &str, action: &Action) -> ServiceResult<Settled> {
        // Lot, spot and type never change: read once to find the spot's lock and record.
        let first = match self.read(id).await {
            Ok(r) => r,
            Err(ServiceError::NotFound { .. }) if matches!(action, Action::Sweep(_)) => {
                if let Action::Sweep(index) = action {
                    self.store.write(vec![], vec![Mutation::delete(index.clone())]).await?;
                }
                return Ok(Settled::Nothing);
            }
            Err(e) => return Err(e),
        };
        if !matches!(action, Action::Sweep(_)) {
            authorize_owner(caller, &first.user)?;
        }
        let occ_key = self.keys.occ(&first.lot, first.kind.letter(), &first.spot);
        let (occ_key, res_key) = (&occ_key, &self.keys.reservation(id));
        let _local = self.stripe(&first.lot, &first.spot).lock().await;
        transact(&self.store, |tx| {
            Box::pin(async move {
                let now = self.clock.now_ms();
                let Some(found) = tx.get(res_key).await? else {
                    return Err(ServiceError::not_found(format!("reservation {id}")));
                };
                let mut res = ReservationRecord::decode(&found.value)?;
                let mut occ = match tx.get(occ_key).await? {
                    Some(v) => Occupancy::decode(&v.value)?,
                    None => Occupancy::default(),
                };
                let had = occ.clone();
                // Due first: a hold past its time (or dropped from the spot by a writer that
                // judged it due) expires, a confirmed reservation past its no-show time is a
                // NO_SHOW; the action does not happen.
                let slot_live = occ.find(id).is_some_and(|s| s.is_live(now));
                let due = match res.state {
                    ReservationState::Held if !slot_live => Some((ReservationState::Expired, Due::Hold)),
                    ReservationState::Confirmed if !slot_live => Some((ReservationState::NoShow, Due::NoShow)),
                    _ => None,
                };
                if let Some((to, index)) = due {
                    let at_ms = if index == Due::Hold { res.hold_until } else { res.no_show_at() };
                    tx.delete(self.keys.due(index, at_ms, id));
                    occ.remove(id);
                    res.state = to;
                    res.update_ms = now;
                    self.save(&tx, occ_key, &had, &occ, &res)?;
                    return Ok(Settled::DueNow(res));
                }
                let state = res.state;
                match (state, action) {
                    (ReservationState::Held, Action::Confirm) => {
                        if let Some(slot) = occ.find_mut(id) {
                            slot.state = SlotState::Confirmed;
                            slot.hold_until = 0;
                        }
                        tx.delete(self.keys.due(Due::Hold, res.hold_until, id));
                        tx.put(self.keys.due(Due::NoShow, res.no_show_at(), id), vec![]);
                        res.state = ReservationState::Confirmed;
                        res.confirm_ms = now;
                    }
                    (ReservationState::Held, Action::Cancel(reason)) => {
                        occ.remove(id);
                        tx.delete(self.keys.due(Due::Hold, res.hold_until, id));
                        res.state = ReservationState::Cancelled;
                        res.cancel_reason = reason.clone();
                    }
                    (ReservationState::Confirmed, Action::Cancel(reason)) => {
                        occ.remove(id);
                        tx.delete(self.keys.due(Due::NoShow, res.no_show_at(), id));
                        res.refund = rules::refund(res.price, now, res.start);
                        res.state = ReservationState::Cancelled;
                        res.cancel_reason = reason.clone();
                    }
                    (ReservationState::Confirmed, Action::CheckIn) => {
                        if now < res.start - EARLY_CHECK_IN_MS {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "check-in for reservation {id} opens at {}",
                                at(res.start - EARLY_CHECK_IN_MS)
                            )));
                        }
                        if let Some(slot) = occ.find_mut(id) {
                            slot.state = SlotState::CheckedIn;
                        }
                        tx.delete(self.keys.due(Due::NoShow, res.no_show_at(), id));
                        res.state = ReservationState::CheckedIn;
                        res.check_in_ms = now;
                    }
                    (ReservationState::CheckedIn, Action::CheckOut) => {
                        occ.remove(id);
                        res.overstay = rules::overstay(res.hourly, res.end, now);
                        res.state = ReservationState::CheckedOut;
                        res.check_out_ms = now;
                    }
                    // Repeats answer again.
                    (ReservationState::Confirmed, Action::Confirm)
                    | (ReservationState::CheckedIn, Action::CheckIn)
                    | (ReservationState::CheckedOut, Action::CheckOut)
                    | (ReservationState::Cancelled | ReservationState::Expired, Action::Cancel(_)) => {
                        return Ok(Settled::Done(res));
                    }
                    (ReservationState::Held | ReservationState::Confirmed, Action::Sweep(index)) => {
                        // Not due by this replica's clock: leave the entry unless it is stale.
                        let current = if state == ReservationState::Held {
                            self.keys.due(Due::Hold, res.hold_until, id)
                        } else {
                            self.keys.due(Due::NoShow, res.no_show_at(), id)
                        };
                        if *index != current {
                            tx.delete(index.clone());
                            return Ok(Settled::Nothing);
                        }
                        // A read-only attempt commits nothing.
                        return Err(ServiceError::Aborted(String::new()));
                    }
                    (_, Action::Sweep(index)) => {
                        tx.delete(index.clone());
                        return Ok(Settled::Nothing);
                    }
                    (_, _) => {
                        let needs = match action {
                            Action::Confirm => "a HELD one",
                            Action::Cancel(_) => "a HELD or CONFIRMED one",
                            Action::CheckIn => "a CONFIRMED one",
                            _ => "a CHECKED_IN one",
                        };
                        return Err(ServiceError::FailedPrecondition(format!(
                            "reservation {id} is {}; {} needs {needs}",
                            state.name(),
                            action.verb()
                        )));
                    }
                }
                res.update_ms = now;
                self.save(&tx, occ_key, &had, &occ, &res)?;
                Ok(Settled::Done(res))
            })
        })
        .await
        .or_else(|e| match (action, &e) {
            (Action::Sweep(_), ServiceError::Aborted(m)) if m.is_empty() => Ok(Settled::Nothing),
            _ => Err(e),
        })
    }

    /// Writes a reservation, and its spot's occupancy when it changed (deleted when empty).
    fn save(
        &self,
        tx: &Txn,
        occ_key: &[u8],
        had: &Occupancy,
        occ: &Occupancy,
        res: &ReservationRecord,
    ) -> ServiceResult<()> {
        if occ != had {
            if occ.slots.is_empty() {
                tx.delete(occ_key.to_vec());
            } else {
                tx.put(occ_key.to_vec(), occ.encode()?);
            }
        }
        tx.put(self.keys.reservation(&res.id), res.encode()?);
        Ok(())
    }

    /// Settles every due hold and no-show of one page per index; returns how many index
    /// entries it handled.
    pub async fn sweep_once(&self) -> ServiceResult<usize> {
        let now = self.clock.now_ms();
        let mut handled = 0;
        for due in [Due::Hold, Due::NoShow] {
            let prefix = self.keys.due_prefix(due);
            let range = KeyRange::between(prefix.clone(), self.keys.due_after(due, now));
            let page = self.store.scan(range, self.config.sweep_batch, Direction::Forward).await?;
            for entry in page.entries {
                match Keys::entry_id(&prefix, &entry.key).map(str::to_string) {
                    Some(id) => {
                        if let Settled::DueNow(r) = self.settle(None, &id, &Action::Sweep(entry.key.clone())).await? {
                            tracing::debug!(reservation = %id, state = r.state.name(), "reservation settled as due");
                        }
                    }
                    None => {
                        self.store.write(vec![], vec![Mutation::delete(entry.key.clone())]).await?;
                    }
                }
                handled += 1;
            }
        }
        Ok(handled)
    }

    /// Runs the sweeper forever: every `sweep_interval`, settles due holds and no-shows.
    pub async fn sweep_task(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.sweep_interval).await;
            loop {
                match self.sweep_once().await {
                    Ok(n) if n >= self.config.sweep_batch => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "parking sweep failed; trying again");
                        break;
                    }
                }
            }
        }
    }

    /// ListReservations: by plate or lot, starting in `[start_time, end_time)`, by start.
    pub async fn list(
        &self,
        caller: Option<&Caller>,
        req: pb::ListReservationsRequest,
    ) -> ServiceResult<pb::ListReservationsResponse> {
        let list = validate::list(&req)?;
        let prefix = match &list.by {
            ListBy::Plate(plate) => self.keys.by_plate_prefix(plate),
            ListBy::Lot(lot) => {
                authorize_staff(caller, "listing a lot's reservations")?;
                self.keys.by_lot_prefix(lot)
            }
        };
        let fp = fingerprint(&[&prefix, &list.from.to_be_bytes(), &list.to.to_be_bytes()]);
        let start = match PageToken::decode(&req.page_token, fp)? {
            Some(token) if token.resume_key.starts_with(&prefix) => token.resume_key,
            Some(_) => return Err(ServiceError::invalid("page_token", "is not a token returned by this query")),
            None => Keys::at(&prefix, list.from),
        };
        let end = Keys::at(&prefix, list.to.min(i64::MAX - 1));
        let page = self.store.scan(KeyRange::between(start, end), list.page_size, Direction::Forward).await?;
        let ids: Vec<String> =
            page.entries.iter().filter_map(|e| Keys::entry_id(&prefix, &e.key).map(str::to_string)).collect();
        let records = futures::future::try_join_all(ids.iter().map(|id| {
            let key = self.keys.reservation(id);
            async move { self.store.get(&key).await }
        }))
        .await?;
        let now = self.clock.now_ms();
        let mut reservations = Vec::with_capacity(records.len());
        for found in records.into_iter().flatten() {
            let record = ReservationRecord::decode(&found.value)?;
            if authorize_owner(caller, &record.user).is_ok() {
                reservations.push(record.to_pb(now));
            }
        }
        let next_page_token =
            page.next.map(|resume_key| PageToken { resume_key, fingerprint: fp }.encode()).unwrap_or_default();
        Ok(pb::ListReservationsResponse { reservations, next_page_token })
    }
}

/// One Reserve call, as its candidate attempts share it.
struct Ask<'a> {
    req: &'a pb::ReserveRequest,
    lot: &'a LotRecord,
    spec: &'a validate::Reserve,
    user: &'a str,
    fp: Fingerprint,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_and_owners() {
        let clerk = Caller { subject: "c".into(), roles: vec!["parking".into()] };
        let driver = Caller { subject: "d".into(), roles: vec![] };
        assert!(authorize_staff(None, "x").is_ok());
        assert!(authorize_staff(Some(&clerk), "x").is_ok());
        assert_eq!(authorize_staff(Some(&driver), "x").unwrap_err().code(), tonic::Code::PermissionDenied);
        assert!(authorize_owner(Some(&driver), "d").is_ok());
        assert!(authorize_owner(Some(&driver), "").is_ok());
        assert!(authorize_owner(Some(&clerk), "d").is_ok());
        assert!(authorize_owner(Some(&driver), "e").is_err());
        assert!(validate::reservation_id(&new_reservation_id()).is_ok());
    }
}
