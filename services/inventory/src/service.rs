//! The inventory's operations over the Store. Every change is one conditional transaction that
//! reads each stock record it touches, checks, writes them and appends its change events to
//! the inventory's event log (transactional outbox), so available stock can never go below
//! zero whatever the concurrency or the number of replicas: two reservations racing for the
//! last unit both read the same record version, and only one commit's condition holds.
//!
//! Within one replica, writes also pass a local lock: every change serializes on the event
//! log's head anyway, and queueing locally is cheaper than failing and retrying optimistic
//! commits; replicas still race through the store's conditions.
//!
//! Holds expire by themselves: a HELD reservation has an index key ordered by its expiry time
//! ([`crate::keys`]), written with it; every replica's sweeper scans the due ones and expires
//! each in a conditional transaction (one replica wins, the others find it settled), and a
//! commit or release that finds a due hold expires it on the spot instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_common::caller::Caller;
use meshwork_common::clock::Clock;
use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::events::EventLog;
use meshwork_common::fields::timestamp;
use meshwork_common::idempotency::{Fingerprint, Idempotency};
use meshwork_common::record::Record;
use meshwork_proto::pb::inventory::v1 as pb;
use meshwork_storage::{Condition, Direction, DynStore, KeyRange, Txn, transact};
use prost::Message;
use tokio::sync::Mutex;

use crate::allocation;
use crate::keys::{Keys, ROOT};
use crate::model::{AllocationRecord, LineRecord, LocationStock, ReservationRecord, ReservationState, SkuStock};
use crate::validate;

/// Roles allowed to change stock levels directly.
pub const STAFF_ROLES: [&str; 2] = ["admin", "inventory"];

/// How long a BatchAdjust chunk's answer is kept for replays.
const BATCH_RECORD_TTL: Duration = Duration::from_secs(24 * 3600);

/// Store operations of a BatchAdjust chunk besides its lines (the log head and the chunk
/// record, each a condition and a put).
const CHUNK_OVERHEAD_OPS: usize = 4;

/// Tunables of the inventory.
#[derive(Debug, Clone)]
pub struct Config {
    /// Root of every key (`inventory`); tests give each case its own on a shared store.
    pub root: String,
    /// How often each replica looks for holds past their time.
    pub sweep_interval: Duration,
    /// Most holds expired per sweep page.
    pub sweep_batch: usize,
    /// How long change-log events are kept (a `WatchStock` resuming from further back starts
    /// at the oldest event left).
    pub event_retention: Duration,
    /// How often each replica trims the change log.
    pub trim_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: ROOT.to_string(),
            sweep_interval: Duration::from_millis(500),
            sweep_batch: 100,
            event_retention: Duration::from_secs(24 * 3600),
            trim_interval: Duration::from_secs(60),
        }
    }
}

/// What settling a reservation means.
#[derive(Debug, Clone)]
enum Settle {
    Commit,
    Release(String),
    /// The sweeper found this index key due.
    Sweep(Vec<u8>),
}

/// The outcome of a settling transaction.
enum Settled {
    /// The reservation as it now stands.
    Done(ReservationRecord),
    /// It was HELD past its time and has just been expired.
    ExpiredNow(ReservationRecord),
    /// Nothing to do (a sweep of a settled or not yet due reservation).
    Nothing,
}

/// The inventory service's domain logic.
pub struct Inventory {
    store: DynStore,
    clock: Arc<dyn Clock>,
    keys: Keys,
    log: EventLog,
    idem: Idempotency,
    config: Config,
    /// Local writer lock (see the module docs).
    writer: Mutex<()>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory").field("root", &self.keys.root()).finish_non_exhaustive()
    }
}

/// Fails with PERMISSION_DENIED unless the caller is anonymous (the dev gateway) or staff.
fn authorize_staff(caller: Option<&Caller>) -> ServiceResult<()> {
    match caller {
        Some(c) if !STAFF_ROLES.iter().any(|r| c.has_role(r)) => Err(ServiceError::PermissionDenied(format!(
            "changing stock needs role \"admin\" or \"inventory\"; \"{}\" has neither",
            c.subject.escape_debug()
        ))),
        _ => Ok(()),
    }
}

/// Returns a new reservation id: `res_` and 20 random base62 characters (about 119 bits).
fn new_reservation_id() -> String {
    meshwork_common::random_id("res_", validate::RESERVATION_ID_CHARS)
}

/// Returns the location after adding `delta` to its on hand, or FAILED_PRECONDITION when on
/// hand would fall below what is reserved there.
fn adjusted(
    sku: &str,
    location: &str,
    current: Option<&LocationStock>,
    delta: i64,
    now: i64,
) -> ServiceResult<LocationStock> {
    let mut level = current.cloned().unwrap_or_default();
    let on_hand = level
        .on_hand
        .checked_add(delta)
        .ok_or_else(|| ServiceError::FailedPrecondition(format!("sku {sku} at {location}: on hand would overflow")))?;
    if on_hand < level.reserved {
        return Err(ServiceError::FailedPrecondition(format!(
            "sku {sku} at {location}: on hand would be {on_hand}, below the {} reserved (on hand is {})",
            level.reserved, level.on_hand
        )));
    }
    level.on_hand = on_hand;
    level.version += 1;
    level.update_ms = now;
    Ok(level)
}

/// Splits BatchAdjust lines into chunks that each fit one store write of at most `max_ops`
/// operations: per line an event and maybe a LOW_STOCK event, per distinct sku a condition and
/// a put, plus [`CHUNK_OVERHEAD_OPS`]. Depends on the request only, so a replay finds the same
/// chunks.
pub fn plan_chunks(lines: &[pb::AdjustLine], max_ops: usize) -> Vec<std::ops::Range<usize>> {
    let budget = max_ops.saturating_sub(CHUNK_OVERHEAD_OPS).max(4);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut ops = 0;
    let mut skus = std::collections::HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        let cost = 2 + if skus.contains(line.sku.as_str()) { 0 } else { 2 };
        if ops + cost > budget && i > start {
            chunks.push(start..i);
            start = i;
            ops = 0;
            skus.clear();
        }
        ops += 2 + if skus.insert(line.sku.as_str()) { 2 } else { 0 };
    }
    if start < lines.len() {
        chunks.push(start..lines.len());
    }
    chunks
}

/// Encodes a BatchAdjust chunk's recorded answer: the request's fingerprint, then the results.
fn encode_chunk(fingerprint: &Fingerprint, results: &[pb::AdjustResult]) -> Vec<u8> {
    let mut out = fingerprint.0.to_vec();
    out.extend(pb::BatchAdjustResponse { results: results.to_vec(), applied: 0 }.encode_to_vec());
    out
}

/// Decodes a chunk record; ALREADY_EXISTS when it belongs to a different request.
fn decode_chunk(raw: &[u8], fingerprint: &Fingerprint, request_id: &str) -> ServiceResult<Vec<pb::AdjustResult>> {
    if raw.len() < 32 {
        return Err(ServiceError::Internal("batch record is too short".into()));
    }
    if raw[..32] != fingerprint.0 {
        return Err(ServiceError::AlreadyExists {
            what: format!("request_id {request_id:?} (with a different request)"),
        });
    }
    pb::BatchAdjustResponse::decode(&raw[32..])
        .map(|r| r.results)
        .map_err(|e| ServiceError::Internal(format!("undecodable batch record: {e}")))
}

impl Inventory {
    /// Returns the inventory on `store`, timed by `clock`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, config: Config) -> Self {
        let keys = Keys::new(&config.root);
        let log = EventLog::new(store.clone(), keys.root()).with_clock(clock.clone());
        let idem = Idempotency::new(store.clone(), keys.root()).with_clock(clock.clone());
        Inventory { store, clock, keys, log, idem, config, writer: Mutex::new(()) }
    }

    /// Returns the change log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    async fn load(&self, tx: &Txn, sku: &str) -> ServiceResult<Option<SkuStock>> {
        match tx.get(&self.keys.stock(sku)).await? {
            Some(v) => Ok(Some(SkuStock::decode(&v.value)?)),
            None => Ok(None),
        }
    }

    fn save(&self, tx: &Txn, sku: &str, stock: &SkuStock) -> ServiceResult<()> {
        tx.put(self.keys.stock(sku), stock.encode()?);
        Ok(())
    }

    /// Appends one stock event (its sequence is the log's).
    #[allow(clippy::too_many_arguments)]
    async fn emit(
        &self,
        tx: &Txn,
        kind: pb::StockEventKind,
        sku: &str,
        location: &str,
        delta: i64,
        stock: &SkuStock,
        reservation_id: &str,
        now: i64,
    ) -> ServiceResult<()> {
        let event = pb::StockEvent {
            sequence: 0,
            kind: kind as i32,
            sku: sku.to_string(),
            location: location.to_string(),
            delta,
            level: (!location.is_empty()).then(|| stock.level(sku, location)),
            reservation_id: reservation_id.to_string(),
            time: Some(timestamp(now)),
            total_available: stock.available(),
            threshold: stock.threshold,
        };
        self.log.append(tx, crate::model::event_type(kind), event.encode_to_vec()).await?;
        Ok(())
    }

    /// Appends LOW_STOCK when the sku's total available went from at or above its threshold
    /// to below it.
    async fn check_low(&self, tx: &Txn, sku: &str, before: i64, stock: &SkuStock, now: i64) -> ServiceResult<()> {
        let after = stock.available();
        if stock.threshold > 0 && before >= stock.threshold && after < stock.threshold {
            self.emit(tx, pb::StockEventKind::LowStock, sku, "", 0, stock, "", now).await?;
        }
        Ok(())
    }

    /// Applies one adjustment to `stock` in `tx`; a line-level refusal changes nothing.
    async fn apply_adjust(
        &self,
        tx: &Txn,
        stock: &mut SkuStock,
        sku: &str,
        location: &str,
        delta: i64,
        now: i64,
    ) -> ServiceResult<Result<pb::StockLevel, ServiceError>> {
        let level = match adjusted(sku, location, stock.locations.get(location), delta, now) {
            Ok(level) => level,
            Err(refused) => return Ok(Err(refused)),
        };
        let before = stock.available();
        stock.locations.insert(location.to_string(), level);
        self.emit(tx, pb::StockEventKind::Adjusted, sku, location, delta, stock, "", now).await?;
        self.check_low(tx, sku, before, stock, now).await?;
        Ok(Ok(stock.level(sku, location)))
    }

    /// AdjustStock: one adjustment, idempotent by `request_id`.
    pub async fn adjust_stock(
        &self,
        caller: Option<&Caller>,
        req: pb::AdjustStockRequest,
    ) -> ServiceResult<pb::AdjustStockResponse> {
        authorize_staff(caller)?;
        validate::adjust_stock(&req)?;
        let _writer = self.writer.lock().await;
        let req = &req;
        self.idem
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                Box::pin(async move {
                    let now = self.clock.now_ms();
                    let mut stock = self.load(&tx, &req.sku).await?.unwrap_or_default();
                    let level = self.apply_adjust(&tx, &mut stock, &req.sku, &req.location, req.delta, now).await??;
                    self.save(&tx, &req.sku, &stock)?;
                    Ok(pb::AdjustStockResponse { level: Some(level) })
                })
            })
            .await
    }

    /// BatchAdjust: each line atomic on its own, a few store writes per batch (chunks sized by
    /// the store's operation limit), each chunk recorded under the batch's `request_id` so a
    /// replay (also of a batch cut short) applies no chunk twice.
    pub async fn batch_adjust(
        &self,
        caller: Option<&Caller>,
        req: pb::BatchAdjustRequest,
    ) -> ServiceResult<pb::BatchAdjustResponse> {
        authorize_staff(caller)?;
        let verdicts = validate::batch_adjust(&req)?;
        let fingerprint = Fingerprint::of(&req);
        let chunks = plan_chunks(&req.lines, self.store.limits().max_ops_per_write);
        let mut results = Vec::with_capacity(req.lines.len());
        for (number, range) in chunks.into_iter().enumerate() {
            let key = self.keys.batch_chunk(&req.request_id, number as u32);
            let _writer = self.writer.lock().await;
            let (req, verdicts, key, fingerprint) = (&req, &verdicts, &key, &fingerprint);
            let chunk = transact(&self.store, |tx| {
                let range = range.clone();
                Box::pin(async move {
                    if let Some(found) = tx.get(key).await? {
                        return decode_chunk(&found.value, fingerprint, &req.request_id);
                    }
                    self.apply_chunk(&tx, req, verdicts, range, key, fingerprint).await
                })
            })
            .await?;
            results.extend(chunk);
        }
        let applied = results.iter().filter(|r| r.code == 0).count() as i32;
        Ok(pb::BatchAdjustResponse { results, applied })
    }

    async fn apply_chunk(
        &self,
        tx: &Txn,
        req: &pb::BatchAdjustRequest,
        verdicts: &[ServiceResult<()>],
        range: std::ops::Range<usize>,
        key: &[u8],
        fingerprint: &Fingerprint,
    ) -> ServiceResult<Vec<pb::AdjustResult>> {
        let now = self.clock.now_ms();
        // Read every sku of the chunk at once (each read becomes a condition of the commit).
        let mut skus: Vec<&str> =
            range.clone().filter(|i| verdicts[*i].is_ok()).map(|i| req.lines[i].sku.as_str()).collect();
        skus.sort_unstable();
        skus.dedup();
        let loaded = futures::future::try_join_all(skus.iter().map(|sku| self.load(tx, sku))).await?;
        let mut stocks: HashMap<&str, (SkuStock, bool)> =
            skus.iter().zip(loaded).map(|(sku, s)| (*sku, (s.unwrap_or_default(), false))).collect();
        let mut results = Vec::with_capacity(range.len());
        for i in range {
            let line = &req.lines[i];
            let index = i as i32;
            let outcome = match (&verdicts[i], stocks.get_mut(line.sku.as_str())) {
                (Err(e), _) => Err(e.clone()),
                (Ok(()), None) => Err(ServiceError::Internal("batch sku not loaded".into())),
                (Ok(()), Some((stock, dirty))) => {
                    let applied = self.apply_adjust(tx, stock, &line.sku, &line.location, line.delta, now).await?;
                    *dirty |= applied.is_ok();
                    applied
                }
            };
            results.push(match outcome {
                Ok(level) => pb::AdjustResult { index, level: Some(level), code: 0, message: String::new() },
                Err(e) => pb::AdjustResult { index, level: None, code: e.code() as i32, message: e.to_string() },
            });
        }
        for (sku, (stock, dirty)) in &stocks {
            if *dirty {
                self.save(tx, sku, stock)?;
            }
        }
        tx.put_with_ttl(key.to_vec(), encode_chunk(fingerprint, &results), BATCH_RECORD_TTL);
        Ok(results)
    }

    /// GetStock: every location of a sku and the totals; NOT_FOUND for a sku never stocked.
    pub async fn get_stock(&self, req: pb::GetStockRequest) -> ServiceResult<pb::GetStockResponse> {
        validate::get_stock(&req)?;
        match self.store.get(&self.keys.stock(&req.sku)).await? {
            Some(v) => Ok(SkuStock::decode(&v.value)?.to_response(&req.sku)),
            None => Err(ServiceError::not_found(format!("stock of sku {}", req.sku))),
        }
    }

    /// SetLowStockThreshold: sets (or with 0 clears) the sku's threshold; allowed before the
    /// sku is first stocked.
    pub async fn set_threshold(
        &self,
        caller: Option<&Caller>,
        req: pb::SetLowStockThresholdRequest,
    ) -> ServiceResult<pb::SetLowStockThresholdResponse> {
        authorize_staff(caller)?;
        validate::set_threshold(&req)?;
        let _writer = self.writer.lock().await;
        let req = &req;
        transact(&self.store, |tx| {
            Box::pin(async move {
                let mut stock = self.load(&tx, &req.sku).await?.unwrap_or_default();
                stock.threshold = req.threshold;
                self.save(&tx, &req.sku, &stock)?;
                Ok::<_, ServiceError>(())
            })
        })
        .await?;
        Ok(pb::SetLowStockThresholdResponse { sku: req.sku.clone(), threshold: req.threshold })
    }

    /// Reserve: every line or none, in one store transaction, idempotent by `request_id`.
    pub async fn reserve(&self, req: pb::ReserveRequest) -> ServiceResult<pb::ReserveResponse> {
        let ttl = validate::reserve(&req)?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let _writer = self.writer.lock().await;
        let req = &req;
        self.idem
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                Box::pin(async move {
                    let now = self.clock.now_ms();
                    let loaded =
                        futures::future::try_join_all(req.lines.iter().map(|l| self.load(&tx, &l.sku))).await?;
                    let mut stocks: Vec<SkuStock> = loaded.into_iter().map(Option::unwrap_or_default).collect();
                    // Plan every line before writing anything: the first short one refuses all.
                    let mut plans = Vec::with_capacity(req.lines.len());
                    for (line, stock) in req.lines.iter().zip(&stocks) {
                        let (plan, available) = if line.location.is_empty() {
                            (allocation::allocate(line.quantity, &stock.available_by_location()), stock.available())
                        } else {
                            let there = stock.locations.get(&line.location).map_or(0, LocationStock::available);
                            (allocation::allocate_at(line.quantity, &line.location, there), there)
                        };
                        let Some(plan) = plan else {
                            let place =
                                if line.location.is_empty() { String::new() } else { format!(" at {}", line.location) };
                            return Err(ServiceError::FailedPrecondition(format!(
                                "insufficient stock of sku {}{place}: requested {}, available {available}",
                                line.sku, line.quantity
                            )));
                        };
                        plans.push(plan);
                    }
                    let id = new_reservation_id();
                    let mut allocations = Vec::new();
                    for ((line, stock), plan) in req.lines.iter().zip(stocks.iter_mut()).zip(plans) {
                        let before = stock.available();
                        for (location, quantity) in plan {
                            let level = stock.locations.entry(location.clone()).or_default();
                            level.reserved += quantity;
                            level.version += 1;
                            level.update_ms = now;
                            self.emit(
                                &tx,
                                pb::StockEventKind::Reserved,
                                &line.sku,
                                &location,
                                quantity,
                                stock,
                                &id,
                                now,
                            )
                            .await?;
                            allocations.push(AllocationRecord { sku: line.sku.clone(), location, quantity });
                        }
                        self.check_low(&tx, &line.sku, before, stock, now).await?;
                        self.save(&tx, &line.sku, stock)?;
                    }
                    let record = ReservationRecord {
                        id: id.clone(),
                        lines: req
                            .lines
                            .iter()
                            .map(|l| LineRecord {
                                sku: l.sku.clone(),
                                quantity: l.quantity,
                                location: l.location.clone(),
                            })
                            .collect(),
                        allocations,
                        state: ReservationState::Held,
                        reference: req.reference.clone(),
                        create_ms: now,
                        expire_ms: now.saturating_add(ttl_ms),
                        update_ms: now,
                        release_reason: String::new(),
                    };
                    let key = self.keys.reservation(&id);
                    tx.require(Condition::Absent(key.clone()));
                    tx.put(key, record.encode()?);
                    tx.put(self.keys.expiry(record.expire_ms, &id), id.as_bytes().to_vec());
                    Ok(pb::ReserveResponse { reservation: Some(record.to_pb()) })
                })
            })
            .await
    }

    /// GetReservation.
    pub async fn get_reservation(&self, id: &str) -> ServiceResult<pb::Reservation> {
        validate::reservation_id(id)?;
        match self.store.get(&self.keys.reservation(id)).await? {
            Some(v) => Ok(ReservationRecord::decode(&v.value)?.to_pb()),
            None => Err(ServiceError::not_found(format!("reservation {id}"))),
        }
    }

    /// CommitReservation: HELD -> COMMITTED (on hand and reserved go down); a due hold is
    /// expired instead and the commit refused.
    pub async fn commit(&self, id: &str) -> ServiceResult<pb::Reservation> {
        validate::reservation_id(id)?;
        match self.settle(id, Settle::Commit).await? {
            Settled::Done(r) => Ok(r.to_pb()),
            Settled::ExpiredNow(r) => Err(ServiceError::FailedPrecondition(format!(
                "reservation {id} is {}: its hold ran out before the commit",
                r.state.name()
            ))),
            Settled::Nothing => Err(ServiceError::Internal("commit settled nothing".into())),
        }
    }

    /// ReleaseReservation: HELD -> RELEASED; released or expired ones answer again.
    pub async fn release(&self, req: pb::ReleaseReservationRequest) -> ServiceResult<pb::Reservation> {
        validate::release(&req)?;
        match self.settle(&req.reservation_id, Settle::Release(req.reason.clone())).await? {
            Settled::Done(r) | Settled::ExpiredNow(r) => Ok(r.to_pb()),
            Settled::Nothing => Err(ServiceError::Internal("release settled nothing".into())),
        }
    }

    /// Moves a reservation on in one transaction (see [`Settle`]).
    async fn settle(&self, id: &str, action: Settle) -> ServiceResult<Settled> {
        let _writer = self.writer.lock().await;
        let action = &action;
        transact(&self.store, |tx| {
            Box::pin(async move {
                let now = self.clock.now_ms();
                let key = self.keys.reservation(id);
                let Some(found) = tx.get(&key).await? else {
                    return match action {
                        Settle::Sweep(index) => {
                            tx.delete(index.clone());
                            Ok(Settled::Nothing)
                        }
                        _ => Err(ServiceError::not_found(format!("reservation {id}"))),
                    };
                };
                let mut res = ReservationRecord::decode(&found.value)?;
                let state = res.state;
                if res.is_due(now) {
                    self.transition(&tx, &mut res, ReservationState::Expired, "", now).await?;
                    return Ok(Settled::ExpiredNow(res));
                }
                match (state, action) {
                    (ReservationState::Held, Settle::Commit) => {
                        self.transition(&tx, &mut res, ReservationState::Committed, "", now).await?;
                        Ok(Settled::Done(res))
                    }
                    (ReservationState::Held, Settle::Release(reason)) => {
                        self.transition(&tx, &mut res, ReservationState::Released, reason, now).await?;
                        Ok(Settled::Done(res))
                    }
                    // Not due yet (the index and this replica's clock disagree): later.
                    (ReservationState::Held, Settle::Sweep(_)) => Ok(Settled::Nothing),
                    (_, Settle::Sweep(index)) => {
                        tx.delete(index.clone());
                        Ok(Settled::Nothing)
                    }
                    (ReservationState::Committed, Settle::Commit)
                    | (ReservationState::Released | ReservationState::Expired, Settle::Release(_)) => {
                        Ok(Settled::Done(res))
                    }
                    (_, _) => Err(ServiceError::FailedPrecondition(format!(
                        "reservation {id} is {}; {} needs a HELD one",
                        state.name(),
                        if matches!(action, Settle::Commit) { "commit" } else { "release" }
                    ))),
                }
            })
        })
        .await
    }

    /// Moves a HELD reservation to `to` in `tx`: the stock of every allocation, its events,
    /// the record, and the expiry index entry removed.
    async fn transition(
        &self,
        tx: &Txn,
        res: &mut ReservationRecord,
        to: ReservationState,
        reason: &str,
        now: i64,
    ) -> ServiceResult<()> {
        let mut by_sku: BTreeMap<String, Vec<&AllocationRecord>> = BTreeMap::new();
        for a in &res.allocations {
            by_sku.entry(a.sku.clone()).or_default().push(a);
        }
        let kind = match to {
            ReservationState::Committed => pb::StockEventKind::Committed,
            ReservationState::Released => pb::StockEventKind::Released,
            _ => pb::StockEventKind::Expired,
        };
        for (sku, allocations) in by_sku {
            let mut stock = self.load(tx, &sku).await?.unwrap_or_default();
            for a in allocations {
                let level =
                    stock.locations.get_mut(&a.location).filter(|l| l.reserved >= a.quantity).ok_or_else(|| {
                        ServiceError::Internal(format!(
                            "sku {sku} at {} holds less than reservation {}",
                            a.location, res.id
                        ))
                    })?;
                level.reserved -= a.quantity;
                if to == ReservationState::Committed {
                    level.on_hand -= a.quantity;
                }
                level.version += 1;
                level.update_ms = now;
                self.emit(tx, kind, &sku, &a.location, -a.quantity, &stock, &res.id, now).await?;
            }
            self.save(tx, &sku, &stock)?;
        }
        tx.delete(self.keys.expiry(res.expire_ms, &res.id));
        res.state = to;
        res.update_ms = now;
        res.release_reason = reason.to_string();
        tx.put(self.keys.reservation(&res.id), res.encode()?);
        Ok(())
    }

    /// Expires every hold due now (one page per call) and returns how many index entries it
    /// handled.
    pub async fn sweep_once(&self) -> ServiceResult<usize> {
        let now = self.clock.now_ms();
        let range = KeyRange::between(self.keys.expiry_prefix(), self.keys.expiry_after(now));
        let page = self.store.scan(range, self.config.sweep_batch, Direction::Forward).await?;
        let mut handled = 0;
        for entry in page.entries {
            match self.keys.expiry_id(&entry.key).map(str::to_string) {
                Some(id) => {
                    if let Settled::ExpiredNow(_) = self.settle(&id, Settle::Sweep(entry.key.clone())).await? {
                        tracing::debug!(reservation = %id, "hold expired");
                    }
                }
                None => {
                    self.store.write(vec![], vec![meshwork_storage::Mutation::delete(entry.key.clone())]).await?;
                }
            }
            handled += 1;
        }
        Ok(handled)
    }

    /// Runs the sweeper forever: every `sweep_interval`, expire due holds.
    pub async fn sweep_task(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.sweep_interval).await;
            loop {
                match self.sweep_once().await {
                    Ok(n) if n >= self.config.sweep_batch => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "expiry sweep failed; trying again");
                        break;
                    }
                }
            }
        }
    }

    /// Runs the change log's retention forever: every `trim_interval`, deletes events older
    /// than `event_retention` (any replica may; deletes are idempotent).
    pub async fn trim_task(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.trim_interval).await;
            match self.log.trim_older_than(self.config.event_retention).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "change log trimmed"),
                Err(e) => tracing::warn!(error = %e, "change log trim failed; trying again later"),
            }
        }
    }

    /// WatchStock: the log's stock events for skus under `sku_prefix`, from `from_sequence`
    /// (0: from the next change), then live. Each log event is one StockEvent, so a client
    /// resumes exactly with `from_sequence = last sequence + 1`.
    pub async fn watch(
        &self,
        req: pb::WatchStockRequest,
    ) -> ServiceResult<BoxStream<'static, ServiceResult<pb::StockEvent>>> {
        validate::watch(&req)?;
        let from = if req.from_sequence == 0 { self.log.head().await? + 1 } else { req.from_sequence };
        let prefix = req.sku_prefix;
        let events = self.log.follow(from).filter_map(move |item| {
            let out = match item {
                Err(e) => Some(Err(e)),
                Ok(event) => match pb::StockEvent::decode(event.payload.as_slice()) {
                    Err(e) => {
                        Some(Err(ServiceError::Internal(format!("undecodable stock event {}: {e}", event.sequence))))
                    }
                    Ok(stock) if stock.sku.starts_with(&prefix) => {
                        Some(Ok(pb::StockEvent { sequence: event.sequence, ..stock }))
                    }
                    Ok(_) => None,
                },
            };
            futures::future::ready(out)
        });
        Ok(events.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str) -> pb::AdjustLine {
        pb::AdjustLine { sku: sku.into(), location: "w".into(), delta: 1, reason: 1, note: String::new() }
    }

    #[test]
    fn chunks_fit_the_operation_limit_and_cover_every_line() {
        let lines: Vec<pb::AdjustLine> = (0..1000).map(|i| line(&format!("SKU-{}", i % 300))).collect();
        assert_eq!(plan_chunks(&lines, 10_000), vec![0..1000]);
        let chunks = plan_chunks(&lines, 128);
        assert!(chunks.len() > 1);
        assert_eq!(chunks.first().map(|c| c.start), Some(0));
        assert_eq!(chunks.last().map(|c| c.end), Some(1000));
        assert!(chunks.windows(2).all(|w| w[0].end == w[1].start));
        for c in &chunks {
            let distinct: std::collections::HashSet<&str> = lines[c.clone()].iter().map(|l| l.sku.as_str()).collect();
            assert!(CHUNK_OVERHEAD_OPS + 2 * c.len() + 2 * distinct.len() <= 128, "{c:?}");
        }
    }

    #[test]
    fn adjustments_never_go_below_reserved() {
        let current = LocationStock { on_hand: 5, reserved: 3, version: 1, update_ms: 0 };
        assert_eq!(adjusted("A", "w", Some(&current), -2, 9).unwrap().on_hand, 3);
        assert!(matches!(adjusted("A", "w", Some(&current), -3, 9), Err(ServiceError::FailedPrecondition(_))));
        assert!(adjusted("A", "w", None, -1, 9).is_err());
        assert_eq!(adjusted("A", "w", None, 4, 9).unwrap().version, 1);
    }

    #[test]
    fn staff_only_when_identified() {
        assert!(authorize_staff(None).is_ok());
        let clerk = Caller { subject: "c".into(), roles: vec!["inventory".into()] };
        let shopper = Caller { subject: "s".into(), roles: vec![] };
        assert!(authorize_staff(Some(&clerk)).is_ok());
        assert_eq!(authorize_staff(Some(&shopper)).unwrap_err().code(), tonic::Code::PermissionDenied);
        assert!(new_reservation_id().starts_with("res_"));
        assert!(validate::reservation_id(&new_reservation_id()).is_ok());
    }
}
