//! The waste service's operations over the Store.
//!
//! - Sites, trucks and bins have client-chosen ids: creating the same thing again answers it
//!   again, a different thing under a taken id is ALREADY_EXISTS (one conditional write).
//! - A reading updates the bin's record (current fill and its [`crate::predict::FillModel`])
//!   and adds a history key, in one transaction; a stream of readings is stored in batches of
//!   up to [`READINGS_PER_TXN`] per transaction, which stays well under etcd's 128
//!   operations. The latest reading or pickup wins, whatever the order of arrival: a bin's
//!   state only moves forward in time.
//! - PlanRoutes chooses the due bins, solves the multi-trip CVRP with the routing crate
//!   (haversine metres, on a blocking thread), then stores the plan and its routes with the
//!   request_id's answer in one transaction: concurrent calls with one request_id store one
//!   plan and all answer it.
//! - Execution changes a route record, the bin and the route's own event log in one
//!   transaction (transactional outbox): WatchRoute follows that log with a gapless
//!   per-route sequence.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use meshwork_common::caller::Caller;
use meshwork_common::clock::Clock;
use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::events::EventLog;
use meshwork_common::fields::timestamp;
use meshwork_common::idempotency::{Fingerprint, Idempotency};
use meshwork_common::paging::{PageToken, fingerprint};
use meshwork_common::record::Record;
use meshwork_proto::pb::waste::v1 as pb;
use meshwork_routing::{DistanceMatrix, Metric, MultiTripProblem, SolveOptions, solve_multi_trip};
use meshwork_storage::{Direction, DynStore, KeyRange, Txn, scan_all, transact};
use prost::Message;

use crate::keys::{Keys, ROOT};
use crate::model::{BinRecord, PlanRecord, PositionRecord, RouteRecord, SiteRecord, StopRecord, TruckRecord};
use crate::predict::FillModel;
use crate::validate;

/// Roles that may manage sites, trucks and bins and plan routes (when a caller is known).
pub const STAFF_ROLES: [&str; 2] = ["admin", "waste"];
/// Roles that may also report fill readings.
pub const SENSOR_ROLES: [&str; 3] = ["admin", "waste", "sensor"];
/// Roles that may also execute routes and send truck positions.
pub const DRIVER_ROLES: [&str; 3] = ["admin", "waste", "driver"];

/// Readings stored per transaction by ReportFillStream (each costs at most 3 operations).
pub const READINGS_PER_TXN: usize = 32;
/// Planning speed for duration estimates, metres per second (30 km/h).
const SPEED_M_PER_S: f64 = 30_000.0 / 3600.0;
/// Planned service time per stop.
const STOP_SECONDS: i64 = 120;
/// Planned time per landfill visit.
const LANDFILL_SECONDS: i64 = 1200;
/// Most trucks in one plan (each route is one write of the plan's transaction).
const MAX_TRUCKS: usize = 100;

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Root of every key (`waste`); tests give each case its own on a shared store.
    pub root: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { root: ROOT.to_string() }
    }
}

/// The waste service's domain logic.
pub struct Waste {
    store: DynStore,
    clock: Arc<dyn Clock>,
    keys: Keys,
    idem: Idempotency,
}

impl std::fmt::Debug for Waste {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waste").field("root", &self.keys.root()).finish_non_exhaustive()
    }
}

fn authorize(caller: Option<&Caller>, roles: &[&str], what: &str) -> ServiceResult<()> {
    match caller {
        Some(c) if !roles.iter().any(|r| c.has_role(r)) => Err(ServiceError::PermissionDenied(format!(
            "{what} needs one of the roles {roles:?}; \"{}\" has none",
            c.subject.escape_debug()
        ))),
        _ => Ok(()),
    }
}

fn decode<R: Record>(raw: &[u8]) -> ServiceResult<R> {
    Ok(R::decode(raw)?)
}

fn encode<R: Record>(r: &R) -> ServiceResult<Vec<u8>> {
    Ok(r.encode()?)
}

async fn get_in<R: Record>(tx: &Txn, key: &[u8]) -> ServiceResult<Option<R>> {
    match tx.get(key).await? {
        Some(v) => Ok(Some(decode(&v.value)?)),
        None => Ok(None),
    }
}

fn corrupt(what: String) -> ServiceError {
    ServiceError::Internal(what)
}

impl Waste {
    /// The service over `store`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, config: Config) -> Self {
        let keys = Keys::new(&config.root);
        let idem = Idempotency::new(store.clone(), &config.root).with_clock(clock.clone());
        Waste { store, clock, keys, idem }
    }

    fn route_log(&self, route_id: &str) -> EventLog {
        EventLog::new(self.store.clone(), &self.keys.route_log(route_id)).with_clock(self.clock.clone())
    }

    async fn load<R: Record>(&self, key: &[u8], what: impl FnOnce() -> String) -> ServiceResult<R> {
        match self.store.get(key).await? {
            Some(v) => decode(&v.value),
            None => Err(ServiceError::not_found(what())),
        }
    }

    /// Creates `record` under `key` unless an equal one is there (answered again); a
    /// different one is ALREADY_EXISTS.
    async fn create_once<R: Record + PartialEq + Clone + Send + Sync + 'static>(
        &self,
        key: Vec<u8>,
        record: R,
        what: String,
    ) -> ServiceResult<R> {
        transact(&self.store, |tx| {
            let (key, record, what) = (key.clone(), record.clone(), what.clone());
            Box::pin(async move {
                if let Some(found) = get_in::<R>(&tx, &key).await? {
                    return if found == record { Ok(found) } else { Err(ServiceError::AlreadyExists { what }) };
                }
                tx.put(key, encode(&record)?);
                Ok(record)
            })
        })
        .await
    }

    /// CreateSite.
    pub async fn create_site(&self, caller: Option<&Caller>, req: pb::CreateSiteRequest) -> ServiceResult<pb::Site> {
        let (site, (lat, lon)) = validate::create_site(&req)?;
        authorize(caller, &STAFF_ROLES, "creating a site")?;
        let record = SiteRecord { site_id: site.site_id.clone(), kind: site.kind, name: site.name.clone(), lat, lon };
        let what = format!("site {:?}", site.site_id);
        Ok(self.create_once(self.keys.site(&site.site_id), record, what).await?.to_pb())
    }

    /// CreateTruck: its depot must exist and be a DEPOT.
    pub async fn create_truck(&self, caller: Option<&Caller>, req: pb::CreateTruckRequest) -> ServiceResult<pb::Truck> {
        let t = validate::create_truck(&req)?;
        authorize(caller, &STAFF_ROLES, "creating a truck")?;
        let depot: SiteRecord = self.load(&self.keys.site(&t.depot_id), || format!("depot {:?}", t.depot_id)).await?;
        if depot.kind != pb::SiteKind::Depot as i32 {
            return Err(ServiceError::FailedPrecondition(format!("site {:?} is not a depot", t.depot_id)));
        }
        let record = TruckRecord {
            truck_id: t.truck_id.clone(),
            depot_id: t.depot_id.clone(),
            capacity_litres: t.capacity_litres,
            shift_start_minute: t.shift_start_minute,
            shift_end_minute: t.shift_end_minute,
        };
        let what = format!("truck {:?}", t.truck_id);
        Ok(self.create_once(self.keys.truck(&t.truck_id), record, what).await?.to_pb())
    }

    /// CreateBin.
    pub async fn create_bin(&self, caller: Option<&Caller>, req: pb::CreateBinRequest) -> ServiceResult<pb::Bin> {
        let (b, (lat, lon)) = validate::create_bin(&req)?;
        authorize(caller, &STAFF_ROLES, "creating a bin")?;
        let record = BinRecord {
            bin_id: b.bin_id.clone(),
            lat,
            lon,
            capacity_litres: b.capacity_litres,
            waste_type: b.waste_type,
            fill: 0.0,
            fill_ms: 0,
            emptied_ms: 0,
            carried_over: false,
            model: FillModel::default(),
        };
        let what = format!("bin {:?}", b.bin_id);
        // Creating again answers the bin as it is now (its fill may have moved on).
        let key = self.keys.bin(&b.bin_id);
        let stored = transact(&self.store, |tx| {
            let (key, record, what) = (key.clone(), record.clone(), what.clone());
            Box::pin(async move {
                if let Some(found) = get_in::<BinRecord>(&tx, &key).await? {
                    let same = found.lat == record.lat
                        && found.lon == record.lon
                        && found.capacity_litres == record.capacity_litres
                        && found.waste_type == record.waste_type;
                    return if same { Ok(found) } else { Err(ServiceError::AlreadyExists { what }) };
                }
                tx.put(key, encode(&record)?);
                Ok(record)
            })
        })
        .await?;
        Ok(stored.to_pb(self.clock.now_ms()))
    }

    /// GetBin: the bin and its latest readings, newest first.
    pub async fn get_bin(&self, req: pb::GetBinRequest) -> ServiceResult<pb::GetBinResponse> {
        let limit = validate::get_bin(&req)?;
        let bin: BinRecord = self.load(&self.keys.bin(&req.bin_id), || format!("bin {:?}", req.bin_id)).await?;
        let prefix = self.keys.history_prefix(&req.bin_id);
        let page = self.store.scan(KeyRange::prefix(prefix.clone()), limit, Direction::Reverse).await?;
        let mut history = Vec::with_capacity(page.entries.len());
        for e in page.entries {
            let time = e.key.get(prefix.len()..).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes);
            let fill = <[u8; 8]>::try_from(e.value.as_slice()).ok().map(f64::from_be_bytes);
            match (time, fill) {
                (Some(t), Some(f)) => {
                    history.push(pb::FillReading { fill_percent: f, time: Some(timestamp(t as i64)) })
                }
                _ => return Err(corrupt(format!("malformed reading of bin {:?}", req.bin_id))),
            }
        }
        Ok(pb::GetBinResponse { bin: Some(bin.to_pb(self.clock.now_ms())), history })
    }

    /// ListBins: bins in key order filtered by predicted fill and area.
    pub async fn list_bins(&self, req: pb::ListBinsRequest) -> ServiceResult<pb::ListBinsResponse> {
        let (size, area, at) = validate::list_bins(&req)?;
        let at = at.unwrap_or_else(|| self.clock.now_ms());
        let fp = fingerprint(&[
            b"bins",
            &req.min_predicted_fill.to_be_bytes(),
            format!("{area:?}").as_bytes(),
            &at.to_be_bytes(),
        ]);
        let token = PageToken::decode(&req.page_token, fp)?;
        let mut range = KeyRange::prefix(self.keys.bins());
        if let Some(token) = token {
            if !range.contains(&token.resume_key) {
                return Err(ServiceError::invalid("page_token", "is not a token returned by this query"));
            }
            range.start = std::ops::Bound::Included(token.resume_key);
        }
        let mut bins = Vec::new();
        let mut next_token = String::new();
        'pages: loop {
            let page = self.store.scan(range.clone(), 500, Direction::Forward).await?;
            for e in page.entries {
                if bins.len() == size {
                    next_token = PageToken { resume_key: e.key, fingerprint: fp }.encode();
                    break 'pages;
                }
                let bin: BinRecord = decode(&e.value)?;
                if let Some((s, w, n, east)) = area
                    && !(bin.lat >= s && bin.lat <= n && bin.lon >= w && bin.lon <= east)
                {
                    continue;
                }
                if bin.predicted_fill(at) < req.min_predicted_fill {
                    continue;
                }
                bins.push(bin.to_pb(at));
            }
            match page.next {
                Some(next) => range.start = std::ops::Bound::Included(next),
                None => break,
            }
        }
        Ok(pb::ListBinsResponse { bins, next_page_token: next_token })
    }

    /// Stores readings (already validated, with their times) in one transaction.
    async fn store_readings(&self, readings: &[(String, f64, i64)]) -> ServiceResult<HashMap<String, BinRecord>> {
        transact(&self.store, |tx| {
            Box::pin(async move {
                let mut bins: HashMap<String, BinRecord> = HashMap::new();
                for (bin_id, fill, at) in readings {
                    if !bins.contains_key(bin_id) {
                        let bin = get_in::<BinRecord>(&tx, &self.keys.bin(bin_id))
                            .await?
                            .ok_or_else(|| ServiceError::not_found(format!("bin {bin_id:?}")))?;
                        bins.insert(bin_id.clone(), bin);
                    }
                    if let Some(bin) = bins.get_mut(bin_id) {
                        bin.apply_reading(*fill, *at);
                    }
                    tx.put(self.keys.history(bin_id, *at), fill.to_be_bytes().to_vec());
                }
                for (id, bin) in &bins {
                    tx.put(self.keys.bin(id), encode(bin)?);
                }
                Ok(bins)
            })
        })
        .await
    }

    /// ReportFill.
    pub async fn report_fill(
        &self,
        caller: Option<&Caller>,
        req: pb::ReportFillRequest,
    ) -> ServiceResult<pb::ReportFillResponse> {
        let at = validate::report_fill(&req, self.clock.now_ms())?;
        authorize(caller, &SENSOR_ROLES, "reporting a fill level")?;
        let mut bins = self.store_readings(&[(req.bin_id.clone(), req.fill_percent, at)]).await?;
        let bin = bins.remove(&req.bin_id).map(|b| b.to_pb(self.clock.now_ms()));
        Ok(pb::ReportFillResponse { bin })
    }

    /// ReportFillStream: readings as they arrive, in batches of what is ready (at most
    /// [`READINGS_PER_TXN`] per transaction). A bad reading ends the call with its error;
    /// the batches before it are stored.
    pub async fn report_fill_stream<S>(&self, caller: Option<&Caller>, stream: S) -> ServiceResult<i64>
    where
        S: Stream<Item = Result<pb::ReportFillRequest, tonic::Status>> + Send,
    {
        authorize(caller, &SENSOR_ROLES, "reporting fill levels")?;
        let mut chunks = std::pin::pin!(stream.ready_chunks(READINGS_PER_TXN));
        let mut accepted = 0i64;
        while let Some(chunk) = chunks.next().await {
            let now = self.clock.now_ms();
            let mut readings = Vec::with_capacity(chunk.len());
            let mut failure = None;
            for item in chunk {
                let req = match item {
                    Ok(r) => r,
                    Err(status) => {
                        failure = Some(ServiceError::invalid("stream", format!("broken: {}", status.message())));
                        break;
                    }
                };
                match validate::report_fill(&req, now) {
                    Ok(at) => readings.push((req.bin_id, req.fill_percent, at)),
                    Err(e) => {
                        failure = Some(with_position(e, accepted + readings.len() as i64));
                        break;
                    }
                }
            }
            if !readings.is_empty() {
                self.store_readings(&readings).await.map_err(|e| with_position(e, accepted))?;
                accepted += readings.len() as i64;
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(accepted)
    }

    /// Scans every record under `prefix`.
    async fn scan_records<R: Record>(&self, prefix: Vec<u8>) -> ServiceResult<Vec<R>> {
        let entries = scan_all(&self.store, KeyRange::prefix(prefix), Direction::Forward).await?;
        entries.iter().map(|e| decode(&e.value)).collect()
    }

    /// PlanRoutes (see the module docs).
    pub async fn plan_routes(&self, caller: Option<&Caller>, req: pb::PlanRoutesRequest) -> ServiceResult<pb::Plan> {
        let input = validate::plan_routes(&req)?;
        authorize(caller, &STAFF_ROLES, "planning routes")?;
        let fp = Fingerprint::of(&req);
        // A repeat answers from the record without solving again.
        if self.store.get(&self.idem.key(&req.request_id)).await?.is_some() {
            return self
                .idem
                .transact(&req.request_id, fp, |_tx| {
                    Box::pin(async { Err(ServiceError::Aborted("the recorded plan disappeared; retry".into())) })
                })
                .await;
        }
        let depot: SiteRecord =
            self.load(&self.keys.site(&req.depot_id), || format!("depot {:?}", req.depot_id)).await?;
        if depot.kind != pb::SiteKind::Depot as i32 {
            return Err(ServiceError::FailedPrecondition(format!("site {:?} is not a depot", req.depot_id)));
        }
        let landfill: SiteRecord = if req.landfill_id.is_empty() {
            let sites: Vec<SiteRecord> = self.scan_records(self.keys.sites()).await?;
            let dist = |s: &SiteRecord| meshwork_routing::problem::haversine_m((depot.lat, depot.lon), (s.lat, s.lon));
            sites
                .into_iter()
                .filter(|s| s.kind == pb::SiteKind::Landfill as i32)
                .min_by(|a, b| dist(a).total_cmp(&dist(b)).then_with(|| a.site_id.cmp(&b.site_id)))
                .ok_or_else(|| ServiceError::FailedPrecondition("there is no landfill to unload at".into()))?
        } else {
            let l: SiteRecord =
                self.load(&self.keys.site(&req.landfill_id), || format!("landfill {:?}", req.landfill_id)).await?;
            if l.kind != pb::SiteKind::Landfill as i32 {
                return Err(ServiceError::FailedPrecondition(format!("site {:?} is not a landfill", req.landfill_id)));
            }
            l
        };
        let trucks: Vec<TruckRecord> = if req.truck_ids.is_empty() {
            let all: Vec<TruckRecord> = self.scan_records(self.keys.trucks()).await?;
            all.into_iter().filter(|t| t.depot_id == req.depot_id).collect()
        } else {
            let mut list = Vec::with_capacity(req.truck_ids.len());
            for id in &req.truck_ids {
                let t: TruckRecord = self.load(&self.keys.truck(id), || format!("truck {id:?}")).await?;
                if t.depot_id != req.depot_id {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "truck {id:?} is based at {:?}, not {:?}",
                        t.depot_id, req.depot_id
                    )));
                }
                list.push(t);
            }
            list
        };
        if trucks.is_empty() {
            return Err(ServiceError::FailedPrecondition(format!("depot {:?} has no trucks", req.depot_id)));
        }
        if trucks.len() > MAX_TRUCKS {
            return Err(ServiceError::ResourceExhausted(format!("at most {MAX_TRUCKS} trucks per plan")));
        }
        // One load's capacity: the smallest truck's, so every trip fits every truck.
        let capacity = trucks.iter().map(|t| t.capacity_litres).min().unwrap_or(1);
        let bins: Vec<BinRecord> = self.scan_records(self.keys.bins()).await?;
        let due: Vec<(BinRecord, i64)> = bins
            .into_iter()
            .filter(|b| req.waste_type == 0 || b.waste_type == req.waste_type)
            .filter_map(|b| {
                let predicted = b.predicted_fill(input.date_ms);
                let is_due = b.carried_over || b.fill >= 100.0 || predicted >= req.threshold;
                let litres = ((predicted / 100.0) * b.capacity_litres as f64).ceil() as i64;
                is_due.then_some((b, litres.clamp(1, capacity)))
            })
            .collect();
        let plan_id = meshwork_common::random_id("pl_", 20);
        let routes = self.solve(&depot, &landfill, &trucks, &due, capacity, &input, req.seed, &plan_id).await?;
        let distance_m = routes.iter().map(|r| r.distance_m).sum();
        let plan = PlanRecord {
            plan_id: plan_id.clone(),
            date_ms: input.date_ms,
            depot_id: depot.site_id.clone(),
            landfill_id: landfill.site_id.clone(),
            threshold: req.threshold,
            route_ids: routes.iter().map(|r| r.route_id.clone()).collect(),
            distance_m,
            bins: due.len() as i32,
            create_ms: self.clock.now_ms(),
        };
        let answer = plan_to_pb(&plan, &routes);
        self.idem
            .transact(&req.request_id, fp, |tx| {
                let (plan, routes, answer) = (plan.clone(), routes.clone(), answer.clone());
                Box::pin(async move {
                    tx.put(self.keys.plan(&plan.plan_id), encode(&plan)?);
                    for r in &routes {
                        tx.put(self.keys.route(&r.route_id), encode(r)?);
                    }
                    Ok(answer)
                })
            })
            .await
    }

    /// Builds the routing problem, solves it on a blocking thread and turns the trucks'
    /// trips into route records.
    #[allow(clippy::too_many_arguments)]
    async fn solve(
        &self,
        depot: &SiteRecord,
        landfill: &SiteRecord,
        trucks: &[TruckRecord],
        due: &[(BinRecord, i64)],
        capacity: i64,
        input: &validate::PlanInput,
        seed: u64,
        plan_id: &str,
    ) -> ServiceResult<Vec<RouteRecord>> {
        // Nodes: 0 depot, 1 landfill, 2.. the due bins.
        let mut coords = vec![(depot.lat, depot.lon), (landfill.lat, landfill.lon)];
        coords.extend(due.iter().map(|(b, _)| (b.lat, b.lon)));
        let mut demand = vec![0, 0];
        demand.extend(due.iter().map(|(_, l)| *l));
        let problem = MultiTripProblem {
            dist: DistanceMatrix::from_coords(&coords, Metric::Haversine),
            depot: 0,
            landfill: 1,
            customers: (2..coords.len()).collect(),
            demand,
            capacity,
            trucks: trucks.len(),
        };
        let opts = SolveOptions::timed(input.time_limit, seed);
        // The plan is checked (every bin once, no load over capacity, distances recomputed)
        // before it is stored.
        let solved = tokio::task::spawn_blocking(move || {
            solve_multi_trip(&problem, &opts).and_then(|plan| problem.check(&plan).map(|()| plan))
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("the solver stopped: {e}")))?
        .map_err(|e| ServiceError::Internal(format!("the routing problem was malformed: {e}")))?;
        let mut routes = Vec::new();
        for (truck, route) in trucks.iter().zip(solved.trucks) {
            if route.trips.is_empty() {
                continue;
            }
            let mut stops = Vec::new();
            for (k, trip) in route.trips.iter().enumerate() {
                for &node in &trip.stops {
                    let (bin, litres) = &due[node - 2];
                    stops.push(StopRecord {
                        bin_id: bin.bin_id.clone(),
                        trip: k as i32,
                        expected_litres: *litres,
                        status: pb::StopStatus::Pending as i32,
                        weight_kg: 0.0,
                        skip_reason: String::new(),
                        done_ms: 0,
                        lat: bin.lat,
                        lon: bin.lon,
                    });
                }
            }
            let trips = route.trips.len() as i32;
            let duration_s = (route.distance as f64 / SPEED_M_PER_S).ceil() as i64
                + STOP_SECONDS * stops.len() as i64
                + LANDFILL_SECONDS * i64::from(trips);
            let shift_s = i64::from(truck.shift_end_minute - truck.shift_start_minute) * 60;
            routes.push(RouteRecord {
                route_id: format!("{plan_id}-{}", routes.len()),
                plan_id: plan_id.to_string(),
                truck_id: truck.truck_id.clone(),
                state: pb::RouteState::Planned as i32,
                stops,
                distance_m: route.distance,
                trips,
                duration_s,
                over_shift: duration_s > shift_s,
                position: None,
            });
        }
        Ok(routes)
    }

    /// GetPlan.
    pub async fn get_plan(&self, req: pb::GetPlanRequest) -> ServiceResult<pb::Plan> {
        validate::get_plan(&req)?;
        let plan: PlanRecord = self.load(&self.keys.plan(&req.plan_id), || format!("plan {:?}", req.plan_id)).await?;
        let mut routes = Vec::with_capacity(plan.route_ids.len());
        for id in &plan.route_ids {
            routes.push(self.load::<RouteRecord>(&self.keys.route(id), || format!("route {id:?}")).await?);
        }
        Ok(plan_to_pb(&plan, &routes))
    }

    /// Loads a route inside a transaction (NOT_FOUND when missing).
    async fn route_in(&self, tx: &Txn, id: &str) -> ServiceResult<RouteRecord> {
        get_in::<RouteRecord>(tx, &self.keys.route(id))
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("route {id:?}")))
    }

    async fn append(&self, tx: &Txn, route_id: &str, event: pb::RouteEvent) -> ServiceResult<()> {
        let kind = pb::RouteEventType::try_from(event.r#type).map(|t| t.as_str_name()).unwrap_or("UNKNOWN");
        self.route_log(route_id).append(tx, kind, event.encode_to_vec()).await?;
        Ok(())
    }

    fn event(&self, kind: pb::RouteEventType, route_id: &str) -> pb::RouteEvent {
        pb::RouteEvent {
            r#type: kind as i32,
            route_id: route_id.to_string(),
            time: Some(timestamp(self.clock.now_ms())),
            ..Default::default()
        }
    }

    /// StartRoute.
    pub async fn start_route(&self, caller: Option<&Caller>, req: pb::StartRouteRequest) -> ServiceResult<pb::Route> {
        validate::start_route(&req)?;
        authorize(caller, &DRIVER_ROLES, "starting a route")?;
        let route = transact(&self.store, |tx| {
            let id = req.route_id.clone();
            Box::pin(async move {
                let mut route = self.route_in(&tx, &id).await?;
                if route.state != pb::RouteState::Planned as i32 {
                    return Ok::<_, ServiceError>(route);
                }
                route.state = pb::RouteState::InProgress as i32;
                self.append(&tx, &id, self.event(pb::RouteEventType::Started, &id)).await?;
                tx.put(self.keys.route(&id), encode(&route)?);
                Ok(route)
            })
        })
        .await?;
        Ok(route.to_pb())
    }

    /// Marks a route COMPLETED (with its event) when no stop is pending.
    async fn maybe_complete(&self, tx: &Txn, route: &mut RouteRecord) -> ServiceResult<()> {
        if route.all_done() && route.state == pb::RouteState::InProgress as i32 {
            route.state = pb::RouteState::Completed as i32;
            self.append(tx, &route.route_id, self.event(pb::RouteEventType::Completed, &route.route_id)).await?;
        }
        Ok(())
    }

    /// Finds the PENDING stop of `bin_id` on an IN_PROGRESS route.
    fn pending_stop(route: &RouteRecord, bin_id: &str) -> ServiceResult<usize> {
        if route.state != pb::RouteState::InProgress as i32 {
            return Err(ServiceError::FailedPrecondition(format!("route {:?} is not in progress", route.route_id)));
        }
        let i =
            route.stops.iter().position(|s| s.bin_id == bin_id).ok_or_else(|| {
                ServiceError::not_found(format!("stop of bin {bin_id:?} on route {:?}", route.route_id))
            })?;
        Ok(i)
    }

    /// RecordPickup.
    pub async fn record_pickup(
        &self,
        caller: Option<&Caller>,
        req: pb::RecordPickupRequest,
    ) -> ServiceResult<pb::Route> {
        validate::record_pickup(&req)?;
        authorize(caller, &DRIVER_ROLES, "recording a pickup")?;
        self.idem
            .transact(&req.request_id, Fingerprint::of(&req), |tx| {
                let req = req.clone();
                Box::pin(async move {
                    let mut route = self.route_in(&tx, &req.route_id).await?;
                    let i = Self::pending_stop(&route, &req.bin_id)?;
                    if route.stops[i].status != pb::StopStatus::Pending as i32 {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "the stop of bin {:?} is not pending",
                            req.bin_id
                        )));
                    }
                    let now = self.clock.now_ms();
                    let bin_key = self.keys.bin(&req.bin_id);
                    let mut bin = get_in::<BinRecord>(&tx, &bin_key)
                        .await?
                        .ok_or_else(|| ServiceError::not_found(format!("bin {:?}", req.bin_id)))?;
                    bin.apply_pickup(now);
                    tx.put(bin_key, encode(&bin)?);
                    let stop = &mut route.stops[i];
                    stop.status = pb::StopStatus::Collected as i32;
                    stop.weight_kg = req.weight_kg;
                    stop.done_ms = now;
                    let mut ev = self.event(pb::RouteEventType::Collected, &req.route_id);
                    ev.bin_id = req.bin_id.clone();
                    ev.weight_kg = req.weight_kg;
                    self.append(&tx, &req.route_id, ev).await?;
                    self.maybe_complete(&tx, &mut route).await?;
                    tx.put(self.keys.route(&req.route_id), encode(&route)?);
                    Ok(route.to_pb())
                })
            })
            .await
    }

    /// SkipStop.
    pub async fn skip_stop(&self, caller: Option<&Caller>, req: pb::SkipStopRequest) -> ServiceResult<pb::Route> {
        validate::skip_stop(&req)?;
        authorize(caller, &DRIVER_ROLES, "skipping a stop")?;
        let route = transact(&self.store, |tx| {
            let req = req.clone();
            Box::pin(async move {
                let mut route: RouteRecord = self.route_in(&tx, &req.route_id).await?;
                let i = match Self::pending_stop(&route, &req.bin_id) {
                    Ok(i) => i,
                    // A repeated skip after the route completed answers it again.
                    Err(e) => match route.stops.iter().position(|s| s.bin_id == req.bin_id) {
                        Some(i) if route.stops[i].status == pb::StopStatus::Skipped as i32 => return Ok(route),
                        _ => return Err(e),
                    },
                };
                match pb::StopStatus::try_from(route.stops[i].status) {
                    Ok(pb::StopStatus::Skipped) => return Ok(route),
                    Ok(pb::StopStatus::Pending) => {}
                    _ => {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "the stop of bin {:?} was collected already",
                            req.bin_id
                        )));
                    }
                }
                let now = self.clock.now_ms();
                let bin_key = self.keys.bin(&req.bin_id);
                let mut bin = get_in::<BinRecord>(&tx, &bin_key)
                    .await?
                    .ok_or_else(|| ServiceError::not_found(format!("bin {:?}", req.bin_id)))?;
                bin.carried_over = true;
                tx.put(bin_key, encode(&bin)?);
                let stop = &mut route.stops[i];
                stop.status = pb::StopStatus::Skipped as i32;
                stop.skip_reason = req.reason.clone();
                stop.done_ms = now;
                let mut ev = self.event(pb::RouteEventType::Skipped, &req.route_id);
                ev.bin_id = req.bin_id.clone();
                ev.reason = req.reason.clone();
                self.append(&tx, &req.route_id, ev).await?;
                self.maybe_complete(&tx, &mut route).await?;
                tx.put(self.keys.route(&req.route_id), encode(&route)?);
                Ok::<_, ServiceError>(route)
            })
        })
        .await?;
        Ok(route.to_pb())
    }

    /// TrackTruck: each ping in its own transaction, in order.
    pub async fn track_truck<S>(&self, caller: Option<&Caller>, stream: S) -> ServiceResult<i64>
    where
        S: Stream<Item = Result<pb::TruckPing, tonic::Status>> + Send,
    {
        authorize(caller, &DRIVER_ROLES, "tracking a truck")?;
        let mut stream = std::pin::pin!(stream);
        let mut accepted = 0i64;
        let mut known_trucks: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            let ping = item.map_err(|s| ServiceError::invalid("stream", format!("broken: {}", s.message())))?;
            let ((lat, lon), time) =
                validate::ping(&ping, self.clock.now_ms()).map_err(|e| with_position(e, accepted))?;
            if !known_trucks.contains(&ping.truck_id) {
                let _: TruckRecord =
                    self.load(&self.keys.truck(&ping.truck_id), || format!("truck {:?}", ping.truck_id)).await?;
                known_trucks.push(ping.truck_id.clone());
            }
            transact(&self.store, |tx| {
                let ping = ping.clone();
                Box::pin(async move {
                    let key = self.keys.position(&ping.truck_id);
                    if let Some(prev) = get_in::<PositionRecord>(&tx, &key).await?
                        && prev.time_ms > time
                    {
                        // An older ping than the stored one: not the latest position.
                        return Ok(());
                    }
                    let pos = PositionRecord { lat, lon, time_ms: time, route_id: ping.route_id.clone() };
                    tx.put(key, encode(&pos)?);
                    if ping.route_id.is_empty() {
                        return Ok(());
                    }
                    let mut route = self.route_in(&tx, &ping.route_id).await?;
                    if route.truck_id != ping.truck_id {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "route {:?} is driven by truck {:?}",
                            ping.route_id, route.truck_id
                        )));
                    }
                    if route.state == pb::RouteState::InProgress as i32 {
                        route.position = Some((lat, lon));
                        let mut ev = self.event(pb::RouteEventType::Position, &ping.route_id);
                        ev.position = Some(pb::LatLon { lat, lon });
                        ev.time = Some(timestamp(time));
                        self.append(&tx, &ping.route_id, ev).await?;
                        tx.put(self.keys.route(&ping.route_id), encode(&route)?);
                    }
                    Ok(())
                })
            })
            .await?;
            accepted += 1;
        }
        Ok(accepted)
    }

    /// WatchRoute: the route's log from `from_sequence` (0 = only new events), then live.
    pub async fn watch_route(
        &self,
        req: pb::WatchRouteRequest,
    ) -> ServiceResult<BoxStream<'static, ServiceResult<pb::RouteEvent>>> {
        validate::watch_route(&req)?;
        let _: RouteRecord = self.load(&self.keys.route(&req.route_id), || format!("route {:?}", req.route_id)).await?;
        let log = self.route_log(&req.route_id);
        let from = match req.from_sequence {
            0 => log.head().await? + 1,
            n => n,
        };
        let stream = log.follow(from).map(|item| {
            let event = item?;
            let mut wire = pb::RouteEvent::decode(event.payload.as_slice())
                .map_err(|e| corrupt(format!("undecodable route event {}: {e}", event.sequence)))?;
            wire.sequence = event.sequence;
            Ok(wire)
        });
        Ok(Box::pin(stream))
    }
}

/// Adds how many stream items were stored before an error to its message.
fn with_position(e: ServiceError, stored: i64) -> ServiceError {
    match e {
        ServiceError::InvalidArgument { field, reason } => {
            ServiceError::InvalidArgument { field, reason: format!("{reason} (after {stored} stored)") }
        }
        ServiceError::NotFound { what } => ServiceError::NotFound { what: format!("{what} (after {stored} stored)") },
        other => other,
    }
}

/// The wire form of a plan with its routes.
pub fn plan_to_pb(plan: &PlanRecord, routes: &[RouteRecord]) -> pb::Plan {
    pb::Plan {
        plan_id: plan.plan_id.clone(),
        date: Some(timestamp(plan.date_ms)),
        depot_id: plan.depot_id.clone(),
        landfill_id: plan.landfill_id.clone(),
        threshold: plan.threshold,
        routes: routes.iter().map(RouteRecord::to_pb).collect(),
        distance_m: plan.distance_m,
        bins: plan.bins,
        create_time: Some(timestamp(plan.create_ms)),
    }
}
