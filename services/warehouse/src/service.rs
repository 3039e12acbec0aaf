//! The warehouse's operations over the Store, and its calls to inventory and orders.
//!
//! Every changing call runs as one idempotent store transaction ([`Idempotency::transact`]):
//! reads, checks, then the calls to other services (each with a `request_id` derived from the
//! caller's, so a rerun of the body or a client's retry never applies twice), then the
//! writes, committed together with the recorded answer and the audit records. A call refused
//! by a check, or by inventory or orders, commits nothing.
//!
//! Stock conservation: per sku, `physical - outstanding = inventory on-hand`, where physical
//! is what STORAGE, PACKING and SHIPPING hold and outstanding the units of open orders already
//! committed in inventory. The terms move together:
//! - PutAway: physical +n, inventory +n (AdjustStock RECEIVE).
//! - A CONFIRMED order (checkout committed its stock, inventory -n): outstanding +n.
//! - A backorder allocated later (Reserve + Commit at the warehouse's location, inventory -n):
//!   outstanding +n.
//! - A short pick of k: physical -k (to LOSS) and outstanding -k (the missing units were the
//!   sold ones; the line is backordered by k). Inventory is untouched.
//! - Ship of n: physical -n, outstanding -n.
//! - A count difference d: physical +d, inventory +d (AdjustStock CORRECTION).
//! - Moves, picks (bin -> PACKING) and packing (PACKING -> SHIPPING) change nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::BoxFuture;
use meshwork_common::clock::Clock;
use meshwork_common::events::EventLog;
use meshwork_common::fields::timestamp;
use meshwork_common::idempotency::{Fingerprint, Idempotency};
use meshwork_common::mesh::CallContext;
use meshwork_common::server::ServiceContext;
use meshwork_common::{MeshClient, Record, ServiceError, ServiceResult, base62_encode, random_id};
use meshwork_proto::pb::inventory::v1 as inv;
use meshwork_proto::pb::inventory::v1::inventory_client::InventoryClient;
use meshwork_proto::pb::orders::v1 as ord;
use meshwork_proto::pb::orders::v1::orders_client::OrdersClient;
use meshwork_proto::pb::warehouse::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange, Txn, scan_all, transact};
use prost::Message;

use crate::abc;
use crate::codes::{self, parse_bin};
use crate::keys;
use crate::model::{
    CartonRec, FLine, FState, FulfillmentRec, LocKind, LocationRec, PickRec, PoLine, PoRec, SkuRec, WarehouseRec,
    WaveRec, pick_pb,
};
use crate::picking::{self, Candidate};
use crate::putaway;

/// The channel of calls through the mesh.
type MeshChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, meshwork_common::mesh::MeshInterceptor>;

/// Tunables.
#[derive(Debug, Clone)]
pub struct Config {
    /// Run the consumer that takes CONFIRMED orders from the orders' log (one per replica is
    /// fine: its handler is idempotent).
    pub orders_consumer: bool,
    /// Most store keys one wave touches (etcd allows 128 operations per transaction).
    pub wave_key_budget: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { orders_consumer: true, wave_key_budget: 60 }
    }
}

/// The warehouse service's domain operations.
pub struct Warehouses {
    store: DynStore,
    clock: Arc<dyn Clock>,
    mesh: MeshClient,
    idem: Idempotency,
    config: Config,
}

impl std::fmt::Debug for Warehouses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouses").field("config", &self.config).finish_non_exhaustive()
    }
}

fn decode<R: Record>(raw: &[u8]) -> ServiceResult<R> {
    R::decode(raw).map_err(|e| ServiceError::Internal(e.to_string()))
}

fn encode<R: Record>(rec: &R) -> ServiceResult<Vec<u8>> {
    rec.encode().map_err(|e| ServiceError::Internal(e.to_string()))
}

async fn tx_get<R: Record>(tx: &Txn, key: &[u8]) -> ServiceResult<Option<R>> {
    match tx.get(key).await? {
        Some(v) => Ok(Some(decode(&v.value)?)),
        None => Ok(None),
    }
}

fn tx_put<R: Record>(tx: &Txn, key: Vec<u8>, rec: &R) -> ServiceResult<()> {
    tx.put(key, encode(rec)?);
    Ok(())
}

fn precondition(msg: impl Into<String>) -> ServiceError {
    ServiceError::FailedPrecondition(msg.into())
}

/// Returns a `request_id` for a call to another service, derived from the caller's and what
/// the call is for: 40 hex characters of SHA-256, always within 64 characters.
pub fn derived_request_id(parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(&[0]);
    }
    let digest = ctx.finish();
    let hex: String = digest.as_ref().iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("wh-{hex}")
}

/// A wave id derived from its request, so a rerun of BuildWave's body names the same wave.
fn wave_id_for(warehouse: &str, request_id: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, format!("{warehouse}\0{request_id}").as_bytes());
    let bytes = d.as_ref();
    let a = u64::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]);
    let b = u64::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]]);
    format!("wave_{}{}", base62_encode(a % 62u64.pow(10), 10), base62_encode(b % 62u64.pow(10), 10))
}

/// Saves `loc` and keeps the sku -> location index of `skus` in step with it.
fn save_location(tx: &Txn, warehouse: &str, loc: &LocationRec, skus: &[&str]) -> ServiceResult<()> {
    tx_put(tx, keys::location(warehouse, &loc.code), loc)?;
    for sku in skus {
        let key = keys::sku_location(warehouse, sku, &loc.code);
        if loc.holds(sku) {
            tx.put(key, Vec::new());
        } else {
            tx.delete(key);
        }
    }
    Ok(())
}

fn audit_record(kind: pb::AuditKind, sku: &str, lot: &str, from: &str, to: &str, quantity: i64) -> pb::AuditRecord {
    pb::AuditRecord {
        kind: kind as i32,
        sku: sku.into(),
        lot: lot.into(),
        from_code: from.into(),
        to_code: to.into(),
        quantity,
        ..Default::default()
    }
}

impl Warehouses {
    /// Returns the service on `ctx`'s store, clock and mesh.
    pub fn new(ctx: &ServiceContext, config: Config) -> Self {
        Warehouses {
            store: ctx.store.clone(),
            clock: ctx.clock.clone(),
            mesh: ctx.mesh.clone(),
            idem: Idempotency::new(ctx.store.clone(), keys::SERVICE).with_clock(ctx.clock.clone()),
            config,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn audit_log(&self, warehouse: &str) -> EventLog {
        EventLog::new(self.store.clone(), &keys::audit_log(warehouse)).with_clock(self.clock.clone())
    }

    /// Appends `rec` (stamped with the request and time) to the warehouse's audit log in `tx`.
    async fn audit(&self, tx: &Txn, warehouse: &str, request_id: &str, mut rec: pb::AuditRecord) -> ServiceResult<u64> {
        rec.request_id = request_id.into();
        rec.time = Some(timestamp(self.now()));
        self.audit_log(warehouse).append(tx, "warehouse.audit", rec.encode_to_vec()).await
    }

    async fn warehouse_in(&self, tx: &Txn, warehouse: &str) -> ServiceResult<WarehouseRec> {
        tx_get(tx, &keys::warehouse(warehouse))
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("warehouse {warehouse}")))
    }

    async fn warehouse(&self, warehouse: &str) -> ServiceResult<WarehouseRec> {
        match self.store.get(&keys::warehouse(warehouse)).await? {
            Some(v) => decode(&v.value),
            None => Err(ServiceError::not_found(format!("warehouse {warehouse}"))),
        }
    }

    async fn location_in(&self, tx: &Txn, warehouse: &str, code: &str) -> ServiceResult<LocationRec> {
        tx_get(tx, &keys::location(warehouse, code))
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("location {code} in warehouse {warehouse}")))
    }

    fn inventory(&self) -> InventoryClient<MeshChannel> {
        InventoryClient::new(self.mesh.channel())
    }

    fn orders(&self) -> OrdersClient<MeshChannel> {
        OrdersClient::new(self.mesh.channel())
    }

    /// Applies `adjust` (its location set to the warehouse's) in inventory; returns the
    /// level's on-hand after it.
    async fn adjust_inventory(
        &self,
        cx: &CallContext,
        wh: &WarehouseRec,
        adjust: inv::AdjustStockRequest,
    ) -> ServiceResult<i64> {
        let req = inv::AdjustStockRequest { location: wh.inventory_location.clone(), ..adjust };
        let answer = self
            .inventory()
            .adjust_stock(cx.outgoing(req)?)
            .await
            .map_err(|s| ServiceError::from_upstream("inventory", &s))?
            .into_inner();
        Ok(answer.level.map(|l| l.on_hand).unwrap_or_default())
    }

    /// Returns inventory's on-hand of `sku` at the warehouse's location.
    pub async fn inventory_on_hand(&self, cx: &CallContext, wh: &WarehouseRec, sku: &str) -> ServiceResult<i64> {
        let answer = match self.inventory().get_stock(cx.outgoing(inv::GetStockRequest { sku: sku.into() })?).await {
            Ok(answer) => answer.into_inner(),
            // A sku inventory never saw has nothing on hand.
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(0),
            Err(s) => return Err(ServiceError::from_upstream("inventory", &s)),
        };
        Ok(answer.locations.iter().filter(|l| l.location == wh.inventory_location).map(|l| l.on_hand).sum())
    }

    // ---- warehouses and locations ----

    /// CreateWarehouse.
    pub async fn create_warehouse(
        &self,
        req: pb::CreateWarehouseRequest,
    ) -> ServiceResult<pb::CreateWarehouseResponse> {
        let fp = Fingerprint::of(&req);
        let w = req.warehouse.clone().unwrap_or_default();
        let rec = WarehouseRec {
            inventory_location: if w.inventory_location.is_empty() {
                w.warehouse_id.clone()
            } else {
                w.inventory_location.clone()
            },
            warehouse_id: w.warehouse_id,
            name: w.name,
            aisles: w.aisles,
            aisle_length_dm: w.aisle_length_dm,
            aisle_spacing_dm: w.aisle_spacing_dm,
            rack_pitch_dm: w.rack_pitch_dm,
            over_receipt_percent: w.over_receipt_percent,
            create_ms: self.now(),
        };
        self.idem
            .transact(&req.request_id, fp, |tx| {
                let rec = rec.clone();
                Box::pin(async move {
                    let id = rec.warehouse_id.clone();
                    if tx.get(&keys::warehouse(&id)).await?.is_some() {
                        return Err(ServiceError::AlreadyExists { what: format!("warehouse {id}") });
                    }
                    tx_put(&tx, keys::warehouse(&id), &rec)?;
                    for (code, kind) in [
                        (codes::RECEIVING, LocKind::Receiving),
                        (codes::PACKING, LocKind::Packing),
                        (codes::SHIPPING, LocKind::Shipping),
                        (codes::LOSS, LocKind::Loss),
                    ] {
                        let loc = LocationRec {
                            code: code.into(),
                            kind,
                            capacity: 0,
                            aisle: 0,
                            position_dm: 0,
                            items: vec![],
                        };
                        tx_put(&tx, keys::location(&id, code), &loc)?;
                    }
                    Ok(pb::CreateWarehouseResponse { warehouse: Some(rec.to_pb()) })
                })
            })
            .await
    }

    /// GetWarehouse.
    pub async fn get_warehouse(&self, req: pb::GetWarehouseRequest) -> ServiceResult<pb::GetWarehouseResponse> {
        Ok(pb::GetWarehouseResponse { warehouse: Some(self.warehouse(&req.warehouse_id).await?.to_pb()) })
    }

    /// CreateLocations.
    pub async fn create_locations(
        &self,
        req: pb::CreateLocationsRequest,
    ) -> ServiceResult<pb::CreateLocationsResponse> {
        let fp = Fingerprint::of(&req);
        let wid = req.warehouse_id.clone();
        let news = req.locations.clone();
        self.idem
            .transact(&req.request_id, fp, |tx| {
                let (wid, news) = (wid.clone(), news.clone());
                Box::pin(async move {
                    let wh = self.warehouse_in(&tx, &wid).await?;
                    let mut out = Vec::with_capacity(news.len());
                    for (i, n) in news.iter().enumerate() {
                        let bin =
                            parse_bin(&n.code).map_err(|r| ServiceError::invalid(format!("locations[{i}].code"), r))?;
                        let position = i64::from(bin.rack) * i64::from(wh.rack_pitch_dm);
                        if bin.aisle >= wh.aisles as u32 {
                            return Err(ServiceError::invalid(
                                format!("locations[{i}].code"),
                                format!(
                                    "aisle {} is outside the warehouse's {} aisles (0-{})",
                                    bin.aisle,
                                    wh.aisles,
                                    wh.aisles - 1
                                ),
                            ));
                        }
                        if position > i64::from(wh.aisle_length_dm) {
                            return Err(ServiceError::invalid(
                                format!("locations[{i}].code"),
                                format!(
                                    "rack {} stands {position} dm in, beyond the aisle length {} dm",
                                    bin.rack, wh.aisle_length_dm
                                ),
                            ));
                        }
                        let key = keys::location(&wid, &n.code);
                        if tx.get(&key).await?.is_some() {
                            return Err(ServiceError::AlreadyExists { what: format!("location {}", n.code) });
                        }
                        let loc = LocationRec {
                            code: n.code.clone(),
                            kind: LocKind::Storage,
                            capacity: n.capacity,
                            aisle: bin.aisle as i32,
                            position_dm: position as i32,
                            items: vec![],
                        };
                        tx_put(&tx, key, &loc)?;
                        out.push(loc.to_pb(&wid));
                    }
                    Ok(pb::CreateLocationsResponse { locations: out })
                })
            })
            .await
    }

    /// GetLocation.
    pub async fn get_location(&self, req: pb::GetLocationRequest) -> ServiceResult<pb::GetLocationResponse> {
        self.warehouse(&req.warehouse_id).await?;
        let loc: LocationRec = match self.store.get(&keys::location(&req.warehouse_id, &req.code)).await? {
            Some(v) => decode(&v.value)?,
            None => return Err(ServiceError::not_found(format!("location {}", req.code))),
        };
        Ok(pb::GetLocationResponse { location: Some(loc.to_pb(&req.warehouse_id)) })
    }

    /// ListLocations.
    pub async fn list_locations(
        &self,
        req: pb::ListLocationsRequest,
        size: usize,
    ) -> ServiceResult<pb::ListLocationsResponse> {
        use meshwork_common::paging::{PageToken, fingerprint};
        let fp = fingerprint(&[req.warehouse_id.as_bytes()]);
        let token = PageToken::decode(&req.page_token, fp)?;
        self.warehouse(&req.warehouse_id).await?;
        let prefix = keys::locations(&req.warehouse_id);
        let mut range = KeyRange::prefix(prefix.clone());
        if let Some(t) = token {
            if !t.resume_key.starts_with(&prefix) {
                return Err(ServiceError::invalid("page_token", "is not a token returned by this query"));
            }
            range = KeyRange::between(t.resume_key, meshwork_storage::prefix_end(&prefix).unwrap_or_default());
        }
        let page = self.store.scan(range, size, Direction::Forward).await?;
        let locations = page
            .entries
            .iter()
            .map(|e| decode::<LocationRec>(&e.value).map(|l| l.to_pb(&req.warehouse_id)))
            .collect::<ServiceResult<_>>()?;
        let next_page_token =
            page.next.map(|k| PageToken { resume_key: k, fingerprint: fp }.encode()).unwrap_or_default();
        Ok(pb::ListLocationsResponse { locations, next_page_token })
    }

    /// Every location of a warehouse holding `sku`, read outside a transaction.
    async fn sku_places(&self, warehouse: &str, sku: &str) -> ServiceResult<Vec<LocationRec>> {
        let prefix = keys::sku_locations(warehouse, sku);
        let entries = scan_all(&self.store, KeyRange::prefix(prefix.clone()), Direction::Forward).await?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let Some(code) = keys::code_of(&prefix, &e.key) else { continue };
            if let Some(v) = self.store.get(&keys::location(warehouse, &code)).await? {
                out.push(decode::<LocationRec>(&v.value)?);
            }
        }
        Ok(out)
    }

    /// GetSkuStock.
    pub async fn get_sku_stock(&self, req: pb::GetSkuStockRequest) -> ServiceResult<pb::GetSkuStockResponse> {
        self.warehouse(&req.warehouse_id).await?;
        let sku = req.sku.clone();
        let summary: SkuRec = match self.store.get(&keys::sku(&req.warehouse_id, &sku)).await? {
            Some(v) => decode(&v.value)?,
            None => SkuRec { sku: sku.clone(), ..Default::default() },
        };
        let mut out = pb::GetSkuStockResponse { sku: sku.clone(), ..Default::default() };
        let mut backordered = 0;
        for loc in self.sku_places(&req.warehouse_id, &sku).await? {
            for item in loc.items.iter().filter(|i| i.sku == sku && i.quantity != 0) {
                match loc.kind {
                    k if k.is_physical() => out.physical += item.quantity,
                    LocKind::Receiving => out.receiving += item.quantity,
                    _ => out.lost += item.quantity,
                }
                out.places.push(pb::SkuPlace {
                    code: loc.code.clone(),
                    r#type: loc.kind.to_pb(),
                    lot: item.lot.clone(),
                    quantity: item.quantity,
                    expire_time: item.expire_ms.map(timestamp),
                });
            }
        }
        // Backorders are counted from the waiting orders (few: they wait for stock).
        for f in self.waiting_fulfillments(&req.warehouse_id).await? {
            backordered += f.lines.iter().filter(|l| l.sku == sku).map(FLine::backordered).sum::<i64>();
        }
        out.outstanding = summary.outstanding;
        out.backordered = backordered;
        out.sellable = out.physical - out.outstanding;
        out.picked_units = summary.picked_units;
        Ok(out)
    }

    async fn waiting_fulfillments(&self, warehouse: &str) -> ServiceResult<Vec<FulfillmentRec>> {
        let prefix = keys::waiting_all(warehouse);
        let entries = scan_all(&self.store, KeyRange::prefix(prefix.clone()), Direction::Forward).await?;
        let mut out = Vec::new();
        for e in entries {
            let Some(order_id) = keys::code_of(&prefix, &e.key) else { continue };
            if let Some(v) = self.store.get(&keys::fulfillment(warehouse, &order_id)).await? {
                out.push(decode::<FulfillmentRec>(&v.value)?);
            }
        }
        Ok(out)
    }

    // ---- receiving and put-away ----

    /// CreatePurchaseOrder.
    pub async fn create_purchase_order(
        &self,
        req: pb::CreatePurchaseOrderRequest,
    ) -> ServiceResult<pb::CreatePurchaseOrderResponse> {
        let fp = Fingerprint::of(&req);
        let po = PoRec {
            po_id: random_id("po_", 20),
            supplier: req.supplier.clone(),
            lines: req
                .lines
                .iter()
                .map(|l| PoLine { sku: l.sku.clone(), quantity: l.quantity, lot_tracked: l.lot_tracked, received: 0 })
                .collect(),
            create_ms: self.now(),
        };
        let wid = req.warehouse_id.clone();
        self.idem
            .transact(&req.request_id, fp, |tx| {
                let (po, wid) = (po.clone(), wid.clone());
                Box::pin(async move {
                    self.warehouse_in(&tx, &wid).await?;
                    tx_put(&tx, keys::purchase_order(&wid, &po.po_id), &po)?;
                    Ok(pb::CreatePurchaseOrderResponse { purchase_order: Some(po.to_pb(&wid)) })
                })
            })
            .await
    }

    /// GetPurchaseOrder.
    pub async fn get_purchase_order(
        &self,
        req: pb::GetPurchaseOrderRequest,
    ) -> ServiceResult<pb::GetPurchaseOrderResponse> {
        let po: PoRec = match self.store.get(&keys::purchase_order(&req.warehouse_id, &req.po_id)).await? {
            Some(v) => decode(&v.value)?,
            None => return Err(ServiceError::not_found(format!("purchase order {}", req.po_id))),
        };
        Ok(pb::GetPurchaseOrderResponse { purchase_order: Some(po.to_pb(&req.warehouse_id)) })
    }

    /// Receive: into RECEIVING, against the purchase order's lines, within the over-receipt
    /// tolerance.
    pub async fn receive(
        &self,
        req: pb::ReceiveRequest,
        expiries: Vec<Option<i64>>,
    ) -> ServiceResult<pb::ReceiveResponse> {
        let fp = Fingerprint::of(&req);
        let req = &req;
        let expiries = &expiries;
        self.idem
            .transact(&req.request_id, fp, |tx| {
                Box::pin(async move {
                    let wid = &req.warehouse_id;
                    let wh = self.warehouse_in(&tx, wid).await?;
                    let mut po: PoRec = tx_get(&tx, &keys::purchase_order(wid, &req.po_id))
                        .await?
                        .ok_or_else(|| ServiceError::not_found(format!("purchase order {}", req.po_id)))?;
                    let mut dock = self.location_in(&tx, wid, codes::RECEIVING).await?;
                    let now = self.now();
                    for (i, (l, expiry)) in req.lines.iter().zip(expiries.iter()).enumerate() {
                        let Some(line) = po.lines.iter_mut().find(|p| p.sku == l.sku) else {
                            return Err(precondition(format!("lines[{i}].sku: {} is not on purchase order {}", l.sku, req.po_id)));
                        };
                        if line.lot_tracked && l.lot.is_empty() {
                            return Err(precondition(format!("lines[{i}].lot: {} is lot-tracked: a lot and its expiry are required", l.sku)));
                        }
                        if !line.lot_tracked && !l.lot.is_empty() {
                            return Err(precondition(format!("lines[{i}].lot: {} is not lot-tracked", l.sku)));
                        }
                        let limit = line.quantity + line.quantity * i64::from(wh.over_receipt_percent) / 100;
                        if line.received + l.quantity > limit {
                            return Err(precondition(format!(
                                "lines[{i}].quantity: {} of {} would bring the receipt to {} of {} expected, over the {}% tolerance (at most {limit})",
                                l.quantity, l.sku, line.received + l.quantity, line.quantity, wh.over_receipt_percent
                            )));
                        }
                        line.received += l.quantity;
                        dock.add(&l.sku, &l.lot, l.quantity, *expiry);
                        let home = keys::sku_home(&l.sku);
                        if tx.get(&home).await?.is_none() {
                            tx.put(home, wid.as_bytes().to_vec());
                        }
                        let sku_key = keys::sku(wid, &l.sku);
                        if tx.get(&sku_key).await?.is_none() {
                            tx_put(&tx, sku_key, &SkuRec { sku: l.sku.clone(), first_receipt_ms: now, ..Default::default() })?;
                        }
                        let mut rec = audit_record(pb::AuditKind::Received, &l.sku, &l.lot, "", codes::RECEIVING, l.quantity);
                        rec.reference = req.po_id.clone();
                        self.audit(&tx, wid, &req.request_id, rec).await?;
                    }
                    let skus: Vec<&str> = req.lines.iter().map(|l| l.sku.as_str()).collect();
                    save_location(&tx, wid, &dock, &skus)?;
                    tx_put(&tx, keys::purchase_order(wid, &po.po_id), &po)?;
                    Ok(pb::ReceiveResponse { purchase_order: Some(po.to_pb(wid)), receiving: Some(dock.to_pb(wid)) })
                })
            })
            .await
    }

    async fn all_locations(&self, warehouse: &str) -> ServiceResult<Vec<LocationRec>> {
        let entries = scan_all(&self.store, KeyRange::prefix(keys::locations(warehouse)), Direction::Forward).await?;
        entries.iter().map(|e| decode::<LocationRec>(&e.value)).collect()
    }

    /// SuggestPutAway.
    pub async fn suggest_put_away(&self, req: pb::SuggestPutAwayRequest) -> ServiceResult<pb::SuggestPutAwayResponse> {
        let wh = self.warehouse(&req.warehouse_id).await?;
        let w = wh.geometry();
        let bins = self.all_locations(&req.warehouse_id).await?;
        let (suggestions, unplaced) = putaway::suggest(&bins, &req.sku, &req.lot, req.quantity, |b| {
            w.distance((0, 0), picking::place(&w, b.aisle, b.position_dm))
        });
        Ok(pb::SuggestPutAwayResponse {
            suggestions: suggestions
                .into_iter()
                .map(|s| pb::PutAwaySuggestion {
                    code: s.code,
                    quantity: s.quantity,
                    room: s.room,
                    distance_dm: s.distance_dm,
                    same_product: s.same_product,
                })
                .collect(),
            unplaced,
        })
    }

    /// PutAway: RECEIVING -> a STORAGE bin; inventory's on-hand goes up by the units.
    pub async fn put_away(&self, cx: &CallContext, req: pb::PutAwayRequest) -> ServiceResult<pb::PutAwayResponse> {
        let fp = Fingerprint::of(&req);
        let req = &req;
        self.idem
            .transact(&req.request_id, fp, |tx| {
                Box::pin(async move {
                    let wid = &req.warehouse_id;
                    let wh = self.warehouse_in(&tx, wid).await?;
                    let mut dock = self.location_in(&tx, wid, codes::RECEIVING).await?;
                    let mut bin = self.location_in(&tx, wid, &req.to_code).await?;
                    if bin.kind != LocKind::Storage {
                        return Err(precondition(format!("to_code: {} is not a STORAGE bin", bin.code)));
                    }
                    let Some(item) = dock.item(&req.sku, &req.lot) else {
                        return Err(precondition(format!("RECEIVING holds no {} (lot {:?})", req.sku, req.lot)));
                    };
                    if item.quantity < req.quantity {
                        return Err(precondition(format!(
                            "quantity: RECEIVING holds {} of {} (lot {:?}), not {}",
                            item.quantity, req.sku, req.lot, req.quantity
                        )));
                    }
                    if bin.room() < req.quantity {
                        return Err(precondition(format!(
                            "to_code: {} has room for {} units, not {} (capacity {})",
                            bin.code,
                            bin.room(),
                            req.quantity,
                            bin.capacity
                        )));
                    }
                    let expiry = item.expire_ms;
                    let on_hand = self
                        .adjust_inventory(
                            cx,
                            &wh,
                            inv::AdjustStockRequest {
                                request_id: derived_request_id(&["put-away", wid, &req.request_id]),
                                sku: req.sku.clone(),
                                location: String::new(),
                                delta: req.quantity,
                                reason: inv::AdjustReason::Receive as i32,
                                note: format!("warehouse {wid}: put away into {}", req.to_code),
                            },
                        )
                        .await?;
                    dock.add(&req.sku, &req.lot, -req.quantity, None);
                    bin.add(&req.sku, &req.lot, req.quantity, expiry);
                    save_location(&tx, wid, &dock, &[&req.sku])?;
                    save_location(&tx, wid, &bin, &[&req.sku])?;
                    let rec = audit_record(
                        pb::AuditKind::PutAway,
                        &req.sku,
                        &req.lot,
                        codes::RECEIVING,
                        &req.to_code,
                        req.quantity,
                    );
                    self.audit(&tx, wid, &req.request_id, rec).await?;
                    Ok(pb::PutAwayResponse { location: Some(bin.to_pb(wid)), inventory_on_hand: on_hand })
                })
            })
            .await
    }

    /// MoveStock between two STORAGE bins.
    pub async fn move_stock(&self, req: pb::MoveStockRequest) -> ServiceResult<pb::MoveStockResponse> {
        let fp = Fingerprint::of(&req);
        let req = &req;
        self.idem
            .transact(&req.request_id, fp, |tx| {
                Box::pin(async move {
                    let wid = &req.warehouse_id;
                    self.warehouse_in(&tx, wid).await?;
                    let mut from = self.location_in(&tx, wid, &req.from_code).await?;
                    let mut to = self.location_in(&tx, wid, &req.to_code).await?;
                    for (field, loc) in [("from_code", &from), ("to_code", &to)] {
                        if loc.kind != LocKind::Storage {
                            return Err(precondition(format!("{field}: {} is not a STORAGE bin", loc.code)));
                        }
                    }
                    let (free, expiry) = from
                        .item(&req.sku, &req.lot)
                        .map(|i| (i.quantity - i.allocated, i.expire_ms))
                        .unwrap_or((0, None));
                    if free < req.quantity {
                        return Err(precondition(format!(
                            "quantity: {} has {free} units of {} (lot {:?}) not promised to picks, not {}",
                            from.code, req.sku, req.lot, req.quantity
                        )));
                    }
                    if to.room() < req.quantity {
                        return Err(precondition(format!(
                            "to_code: {} has room for {} units, not {} (capacity {})",
                            to.code,
                            to.room(),
                            req.quantity,
                            to.capacity
                        )));
                    }
                    from.add(&req.sku, &req.lot, -req.quantity, None);
                    to.add(&req.sku, &req.lot, req.quantity, expiry);
                    save_location(&tx, wid, &from, &[&req.sku])?;
                    save_location(&tx, wid, &to, &[&req.sku])?;
                    let rec = audit_record(
                        pb::AuditKind::Moved,
                        &req.sku,
                        &req.lot,
                        &req.from_code,
                        &req.to_code,
                        req.quantity,
                    );
                    self.audit(&tx, wid, &req.request_id, rec).await?;
                    Ok(pb::MoveStockResponse { from: Some(from.to_pb(wid)), to: Some(to.to_pb(wid)) })
                })
            })
            .await
    }

    // ---- orders in, waves and picks ----

    /// Takes one event of the orders' log: a CONFIRMED order of a sku some warehouse stocks
    /// becomes a waiting fulfilment there; a CANCELLED one leaves. Idempotent (at least once).
    pub async fn apply_order_event(&self, event: &ord::OrderEvent) -> ServiceResult<()> {
        let Some(order) = &event.order else { return Ok(()) };
        if event.r#type != ord::OrderEventType::StateChanged as i32 {
            return Ok(());
        }
        if event.to == ord::OrderState::Confirmed as i32 {
            self.take_order(order).await
        } else if event.to == ord::OrderState::Cancelled as i32 {
            self.drop_order(order).await
        } else {
            Ok(())
        }
    }

    async fn take_order(&self, order: &ord::Order) -> ServiceResult<()> {
        // The warehouse of the first sku some warehouse received: one warehouse per order.
        let mut home = None;
        for line in &order.lines {
            if let Some(v) = self.store.get(&keys::sku_home(&line.sku)).await? {
                home = Some(String::from_utf8_lossy(&v.value).into_owned());
                break;
            }
        }
        let Some(wid) = home else { return Ok(()) };
        let now = self.now();
        let committed = !order.reservation_id.is_empty();
        transact(&self.store, |tx| {
            let wid = wid.clone();
            Box::pin(async move {
                let fkey = keys::fulfillment(&wid, &order.order_id);
                if tx.get(&fkey).await?.is_some() {
                    return Ok::<(), ServiceError>(());
                }
                let lines: Vec<FLine> = order
                    .lines
                    .iter()
                    .map(|l| FLine {
                        sku: l.sku.clone(),
                        quantity: l.quantity,
                        allocated: if committed { l.quantity } else { 0 },
                        in_wave: 0,
                        picked: 0,
                        shipped: 0,
                    })
                    .collect();
                for l in &lines {
                    let skey = keys::sku(&wid, &l.sku);
                    let mut s: SkuRec = tx_get(&tx, &skey).await?.unwrap_or_else(|| SkuRec {
                        sku: l.sku.clone(),
                        first_receipt_ms: now,
                        ..Default::default()
                    });
                    s.outstanding += l.allocated;
                    tx_put(&tx, skey, &s)?;
                }
                let f = FulfillmentRec {
                    order_id: order.order_id.clone(),
                    state: FState::Waiting,
                    lines,
                    committed_by_checkout: committed,
                    cartons: vec![],
                    carrier: String::new(),
                    tracking_number: String::new(),
                    wave_id: String::new(),
                    update_ms: now,
                };
                tx_put(&tx, fkey, &f)?;
                tx.put(keys::waiting(&wid, &order.order_id), Vec::new());
                tx.put(keys::order_home(&order.order_id), wid.as_bytes().to_vec());
                Ok(())
            })
        })
        .await
    }

    async fn drop_order(&self, order: &ord::Order) -> ServiceResult<()> {
        let Some(v) = self.store.get(&keys::order_home(&order.order_id)).await? else { return Ok(()) };
        let wid = String::from_utf8_lossy(&v.value).into_owned();
        let now = self.now();
        // Orders restocks the checkout's units on a cancellation; units a short pick lost were
        // those, so inventory must lose them again (`shrink`).
        let shrink: Vec<(String, i64)> = transact(&self.store, |tx| {
            let wid = wid.clone();
            Box::pin(async move {
                let fkey = keys::fulfillment(&wid, &order.order_id);
                let Some(mut f) = tx_get::<FulfillmentRec>(&tx, &fkey).await? else {
                    return Ok::<_, ServiceError>(vec![]);
                };
                if matches!(f.state, FState::Shipped | FState::Cancelled) {
                    return Ok(vec![]);
                }
                let mut shrink = Vec::new();
                for l in &f.lines {
                    let skey = keys::sku(&wid, &l.sku);
                    if let Some(mut s) = tx_get::<SkuRec>(&tx, &skey).await? {
                        s.outstanding -= l.allocated - l.shipped;
                        tx_put(&tx, skey, &s)?;
                    }
                    let restocked = if f.committed_by_checkout { l.quantity } else { 0 };
                    if restocked > l.allocated {
                        shrink.push((l.sku.clone(), restocked - l.allocated));
                    }
                }
                f.state = FState::Cancelled;
                f.update_ms = now;
                tx_put(&tx, fkey, &f)?;
                tx.delete(keys::waiting(&wid, &order.order_id));
                Ok(shrink)
            })
        })
        .await?;
        if shrink.is_empty() {
            return Ok(());
        }
        let wh = self.warehouse(&wid).await?;
        let cx = CallContext::background();
        for (sku, units) in shrink {
            let rid = derived_request_id(&["cancel", &wid, &order.order_id, &sku]);
            if let Err(e) = self
                .adjust_inventory(
                    &cx,
                    &wh,
                    inv::AdjustStockRequest {
                        request_id: rid,
                        sku: sku.clone(),
                        location: String::new(),
                        delta: -units,
                        reason: inv::AdjustReason::Shrink as i32,
                        note: format!("order {} cancelled after a short pick", order.order_id),
                    },
                )
                .await
            {
                if e.is_transient() {
                    return Err(e);
                }
                tracing::warn!(error = %e, order = %order.order_id, %sku, "inventory refused the shrink of a cancelled short-picked order");
            }
        }
        Ok(())
    }

    /// Runs the orders-log consumer until the process stops.
    pub async fn run_orders_consumer(self: Arc<Self>) -> ServiceResult<()> {
        let consumer = EventLog::new(self.store.clone(), keys::ORDERS_LOG).consumer(keys::ORDERS_CONSUMER);
        consumer
            .run(|event| {
                let this = self.clone();
                Box::pin(async move {
                    match ord::OrderEvent::decode(event.payload.as_slice()) {
                        Ok(e) => this.apply_order_event(&e).await,
                        Err(e) => {
                            tracing::warn!(sequence = event.sequence, error = %e, "undecodable order event passed over");
                            Ok(())
                        }
                    }
                }) as BoxFuture<'static, ServiceResult<()>>
            })
            .await
    }

    /// BuildWave.
    pub async fn build_wave(
        &self,
        cx: &CallContext,
        req: pb::BuildWaveRequest,
        max_orders: usize,
    ) -> ServiceResult<pb::BuildWaveResponse> {
        let fp = Fingerprint::of(&req);
        let req = &req;
        self.idem
            .transact(&req.request_id, fp, |tx| {
                Box::pin(async move { self.build_wave_in(cx, &tx, req, max_orders).await })
            })
            .await
    }

    async fn build_wave_in(
        &self,
        cx: &CallContext,
        tx: &Txn,
        req: &pb::BuildWaveRequest,
        max_orders: usize,
    ) -> ServiceResult<pb::BuildWaveResponse> {
        let wid = &req.warehouse_id;
        let wh = self.warehouse_in(tx, wid).await?;
        let w = wh.geometry();
        let wave_id = wave_id_for(wid, &req.request_id);
        let prefix = keys::waiting_all(wid);
        let waiting = scan_all(&self.store, KeyRange::prefix(prefix.clone()), Direction::Forward).await?;
        let mut locations: BTreeMap<String, LocationRec> = BTreeMap::new();
        let mut skus: HashMap<String, SkuRec> = HashMap::new();
        let mut picks: Vec<PickRec> = Vec::new();
        let mut orders: Vec<FulfillmentRec> = Vec::new();
        let mut backordered = Vec::new();
        let mut touched = 3usize;
        for entry in waiting {
            if orders.len() >= max_orders || touched >= self.config.wave_key_budget {
                break;
            }
            let Some(order_id) = keys::code_of(&prefix, &entry.key) else { continue };
            let Some(mut f) = tx_get::<FulfillmentRec>(tx, &keys::fulfillment(wid, &order_id)).await? else { continue };
            if !f.is_waiting() {
                tx.delete(keys::waiting(wid, &order_id));
                continue;
            }
            let mut taken = false;
            for li in 0..f.lines.len() {
                let sku = f.lines[li].sku.clone();
                // Units of the line no one committed yet (a backorder, or an order without a
                // reservation): reserve and commit them at this warehouse first.
                let uncovered = f.lines[li].backordered();
                if uncovered > 0 {
                    let got = self.cover(cx, &wh, &order_id, &req.request_id, &sku, uncovered).await?;
                    if got > 0 {
                        f.lines[li].allocated += got;
                        skus_entry(tx, &mut skus, wid, &sku).await?.outstanding += got;
                    }
                }
                let want = f.lines[li].pickable();
                if want == 0 {
                    continue;
                }
                // FEFO over the bins holding the sku.
                let codes_prefix = keys::sku_locations(wid, &sku);
                let index = scan_all(&self.store, KeyRange::prefix(codes_prefix.clone()), Direction::Forward).await?;
                let mut cands = Vec::new();
                for e in index {
                    let Some(code) = keys::code_of(&codes_prefix, &e.key) else { continue };
                    if !locations.contains_key(&code) {
                        match tx_get::<LocationRec>(tx, &keys::location(wid, &code)).await? {
                            Some(l) if l.kind == LocKind::Storage => {
                                touched += 1;
                                locations.insert(code.clone(), l);
                            }
                            _ => continue,
                        }
                    }
                    let Some(loc) = locations.get(&code) else { continue };
                    let distance_dm = w.distance((0, 0), picking::place(&w, loc.aisle, loc.position_dm));
                    for item in loc.items.iter().filter(|i| i.sku == sku) {
                        cands.push(Candidate {
                            code: code.clone(),
                            lot: item.lot.clone(),
                            available: item.quantity - item.allocated,
                            expire_ms: item.expire_ms,
                            distance_dm,
                        });
                    }
                }
                let (takes, _unfound) = picking::fefo(&cands, want);
                for (i, units) in takes {
                    let c = &cands[i];
                    if let Some(loc) = locations.get_mut(&c.code) {
                        loc.item_mut(&sku, &c.lot, c.expire_ms).allocated += units;
                    }
                    f.lines[li].in_wave += units;
                    picks.push(PickRec {
                        order_id: order_id.clone(),
                        sku: sku.clone(),
                        lot: c.lot.clone(),
                        code: c.code.clone(),
                        quantity: units,
                        picked: 0,
                        confirmed: false,
                    });
                    taken = true;
                }
            }
            touched += 2 + f.lines.len();
            if f.lines.iter().any(|l| l.backordered() > 0) {
                backordered.push(order_id.clone());
            }
            if taken {
                f.wave_id = wave_id.clone();
            }
            f.state = f.picking_state();
            f.update_ms = self.now();
            if !f.is_waiting() {
                tx.delete(keys::waiting(wid, &order_id));
            }
            tx_put(tx, keys::fulfillment(wid, &order_id), &f)?;
            if taken {
                orders.push(f);
            }
        }
        for (sku, s) in &skus {
            tx_put(tx, keys::sku(wid, sku), s)?;
        }
        if picks.is_empty() {
            return Ok(pb::BuildWaveResponse { wave: None, backordered_order_ids: backordered });
        }
        for loc in locations.values() {
            tx_put(tx, keys::location(wid, &loc.code), loc)?;
        }
        let places: Vec<(usize, i64)> = picks
            .iter()
            .map(|p| locations.get(&p.code).map(|l| picking::place(&w, l.aisle, l.position_dm)).unwrap_or((0, 0)))
            .collect();
        let seed = u64::from_be_bytes(
            ring::digest::digest(&ring::digest::SHA256, wave_id.as_bytes()).as_ref()[..8].try_into().unwrap_or([0; 8]),
        );
        let plan = picking::walk(&w, &places, seed).map_err(|e| ServiceError::Internal(format!("pick path: {e}")))?;
        let ordered: Vec<PickRec> = plan.order.iter().filter_map(|&i| picks.get(i).cloned()).collect();
        let wave = WaveRec {
            wave_id: wave_id.clone(),
            order_ids: orders.iter().map(|f| f.order_id.clone()).collect(),
            picks: ordered,
            distance_dm: plan.distance,
            s_shape_distance_dm: plan.s_shape_distance.max(plan.distance),
            create_ms: self.now(),
        };
        tx_put(tx, keys::wave(wid, &wave_id), &wave)?;
        Ok(pb::BuildWaveResponse { wave: Some(wave.to_pb(wid)), backordered_order_ids: backordered })
    }

    /// Reserves and commits up to `units` of `sku` at the warehouse's inventory location for a
    /// line no checkout committed (a backorder); returns how many were committed (0 when
    /// inventory has too few available).
    async fn cover(
        &self,
        cx: &CallContext,
        wh: &WarehouseRec,
        order_id: &str,
        request_id: &str,
        sku: &str,
        units: i64,
    ) -> ServiceResult<i64> {
        let rid = derived_request_id(&["cover", &wh.warehouse_id, request_id, order_id, sku]);
        let reserve = inv::ReserveRequest {
            request_id: rid,
            lines: vec![inv::ReserveLine { sku: sku.into(), quantity: units, location: wh.inventory_location.clone() }],
            ttl: None,
            reference: order_id.into(),
        };
        let reservation = match self.inventory().reserve(cx.outgoing(reserve)?).await {
            Ok(r) => r
                .into_inner()
                .reservation
                .ok_or_else(|| ServiceError::Internal("inventory answered no reservation".into()))?,
            Err(s) if s.code() == tonic::Code::FailedPrecondition => return Ok(0),
            Err(s) => return Err(ServiceError::from_upstream("inventory", &s)),
        };
        self.inventory()
            .commit_reservation(
                cx.outgoing(inv::CommitReservationRequest { reservation_id: reservation.reservation_id })?,
            )
            .await
            .map_err(|s| ServiceError::from_upstream("inventory", &s))?;
        Ok(units)
    }

    /// GetWave.
    pub async fn get_wave(&self, req: pb::GetWaveRequest) -> ServiceResult<pb::GetWaveResponse> {
        let wave: WaveRec = match self.store.get(&keys::wave(&req.warehouse_id, &req.wave_id)).await? {
            Some(v) => decode(&v.value)?,
            None => return Err(ServiceError::not_found(format!("wave {}", req.wave_id))),
        };
        Ok(pb::GetWaveResponse { wave: Some(wave.to_pb(&req.warehouse_id)) })
    }

    /// ConfirmPick: bin -> PACKING; a short pick's missing units go to LOSS and backorder the
    /// line.
    pub async fn confirm_pick(&self, req: pb::ConfirmPickRequest) -> ServiceResult<pb::ConfirmPickResponse> {
        let fp = Fingerprint::of(&req);
        let req = &req;
        self.idem
            .transact(&req.request_id, fp, |tx| {
                Box::pin(async move {
                    let wid = &req.warehouse_id;
                    let wkey = keys::wave(wid, &req.wave_id);
                    let mut wave: WaveRec = tx_get(&tx, &wkey)
                        .await?
                        .ok_or_else(|| ServiceError::not_found(format!("wave {}", req.wave_id)))?;
                    let index = req.index as usize;
                    let Some(task) = wave.picks.get(index).cloned() else {
                        return Err(ServiceError::invalid(
                            "index",
                            format!(
                                "wave {} has {} picks (0-{})",
                                req.wave_id,
                                wave.picks.len(),
                                wave.picks.len().saturating_sub(1)
                            ),
                        ));
                    };
                    if task.confirmed {
                        return Err(precondition(format!("pick {index} of wave {} is confirmed already", req.wave_id)));
                    }
                    if req.picked_quantity > task.quantity {
                        return Err(ServiceError::invalid(
                            "picked_quantity",
                            format!("the pick is for {} units", task.quantity),
                        ));
                    }
                    let mut bin = self.location_in(&tx, wid, &task.code).await?;
                    let (in_bin, expiry) =
                        bin.item(&task.sku, &task.lot).map(|i| (i.quantity, i.expire_ms)).unwrap_or((0, None));
                    if req.picked_quantity > in_bin {
                        return Err(precondition(format!(
                            "{} holds {in_bin} of {}, fewer than the {} picked",
                            task.code, task.sku, req.picked_quantity
                        )));
                    }
                    // The bin gives up the task's units: picked to PACKING, the rest lost.
                    let removed = task.quantity.min(in_bin);
                    let short = task.quantity - req.picked_quantity;
                    let lost = removed - req.picked_quantity;
                    {
                        let item = bin.item_mut(&task.sku, &task.lot, expiry);
                        item.allocated = (item.allocated - task.quantity).max(0);
                    }
                    bin.add(&task.sku, &task.lot, -removed, None);
                    save_location(&tx, wid, &bin, &[&task.sku])?;
                    if req.picked_quantity > 0 {
                        let mut packing = self.location_in(&tx, wid, codes::PACKING).await?;
                        packing.add(&task.sku, &task.lot, req.picked_quantity, expiry);
                        save_location(&tx, wid, &packing, &[&task.sku])?;
                        let mut rec = audit_record(
                            pb::AuditKind::Picked,
                            &task.sku,
                            &task.lot,
                            &task.code,
                            codes::PACKING,
                            req.picked_quantity,
                        );
                        rec.reference = task.order_id.clone();
                        self.audit(&tx, wid, &req.request_id, rec).await?;
                    }
                    if lost > 0 {
                        let mut loss = self.location_in(&tx, wid, codes::LOSS).await?;
                        loss.add(&task.sku, &task.lot, lost, None);
                        save_location(&tx, wid, &loss, &[&task.sku])?;
                        let mut rec =
                            audit_record(pb::AuditKind::ShortPick, &task.sku, &task.lot, &task.code, codes::LOSS, lost);
                        rec.reference = task.order_id.clone();
                        self.audit(&tx, wid, &req.request_id, rec).await?;
                    }
                    let skey = keys::sku(wid, &task.sku);
                    let mut s: SkuRec = tx_get(&tx, &skey)
                        .await?
                        .unwrap_or_else(|| SkuRec { sku: task.sku.clone(), ..Default::default() });
                    s.picked_units += req.picked_quantity;
                    let fkey = keys::fulfillment(wid, &task.order_id);
                    if let Some(mut f) = tx_get::<FulfillmentRec>(&tx, &fkey).await? {
                        let open = !matches!(f.state, FState::Cancelled | FState::Shipped);
                        if let Some(line) = f.lines.iter_mut().find(|l| l.sku == task.sku) {
                            line.in_wave = (line.in_wave - task.quantity).max(0);
                            line.picked += req.picked_quantity;
                            if open {
                                // The units lost here were the ones sold: no longer owed from
                                // stock, the line is backordered by them. Units a count had
                                // already taken out of the bin (short - lost) were charged to
                                // inventory then: they stay committed and a later wave picks
                                // them elsewhere.
                                line.allocated -= lost;
                                s.outstanding -= lost;
                            }
                        }
                        if open {
                            f.state = f.picking_state();
                            if f.is_waiting() {
                                tx.put(keys::waiting(wid, &task.order_id), Vec::new());
                            }
                        }
                        f.update_ms = self.now();
                        tx_put(&tx, fkey, &f)?;
                    }
                    tx_put(&tx, skey, &s)?;
                    wave.picks[index].picked = req.picked_quantity;
                    wave.picks[index].confirmed = true;
                    tx_put(&tx, wkey, &wave)?;
                    Ok(pb::ConfirmPickResponse {
                        pick: Some(pick_pb(index, &wave.picks[index])),
                        short_quantity: short,
                        wave_complete: wave.picks.iter().all(|p| p.confirmed),
                    })
                })
            })
            .await
    }

    // ---- pack and ship ----

    /// Moves `order_id` to `to` through the orders service unless it is there already (a rerun
    /// after a lost answer); `from` is the state it must leave.
    async fn move_order(
        &self,
        cx: &CallContext,
        order_id: &str,
        from: ord::OrderState,
        to: ord::OrderState,
    ) -> ServiceResult<()> {
        let order = self
            .orders()
            .get_order(cx.outgoing(ord::GetOrderRequest { order_id: order_id.into() })?)
            .await
            .map_err(|s| ServiceError::from_upstream("orders", &s))?
            .into_inner()
            .order
            .ok_or_else(|| ServiceError::Internal("orders answered no order".into()))?;
        if order.state == to as i32 {
            return Ok(());
        }
        if order.state != from as i32 {
            let now = ord::OrderState::try_from(order.state).map(|s| s.as_str_name()).unwrap_or("UNKNOWN");
            return Err(precondition(format!(
                "order {order_id} is {now} in the orders service, not {}",
                from.as_str_name()
            )));
        }
        let req = ord::TransitionOrderRequest {
            order_id: order_id.into(),
            to: to as i32,
            expected_version: order.version,
            reason: String::new(),
            payment_id: String::new(),
        };
        self.orders()
            .transition_order(cx.outgoing(req)?)
            .await
            .map_err(|s| ServiceError::from_upstream("orders", &s))?;
        Ok(())
    }

    /// Pack: the order's picked units into cartons, PACKING -> SHIPPING; the order -> PACKED.
    pub async fn pack(&self, cx: &CallContext, req: pb::PackRequest) -> ServiceResult<pb::PackResponse> {
        let fp = Fingerprint::of(&req);
        let req = &req;
        self.idem
            .transact(&req.request_id, fp, |tx| {
                Box::pin(async move {
                    let wid = &req.warehouse_id;
                    let fkey = keys::fulfillment(wid, &req.order_id);
                    let mut f: FulfillmentRec = tx_get(&tx, &fkey)
                        .await?
                        .ok_or_else(|| ServiceError::not_found(format!("order {} in warehouse {wid}", req.order_id)))?;
                    if f.state != FState::Picked {
                        let missing: Vec<String> = f
                            .lines
                            .iter()
                            .filter(|l| l.picked < l.quantity)
                            .map(|l| {
                                format!(
                                    "{} {} of {} picked ({} backordered)",
                                    l.sku,
                                    l.picked,
                                    l.quantity,
                                    l.backordered()
                                )
                            })
                            .collect();
                        return Err(precondition(format!(
                            "order {} is {:?}, not PICKED: {}",
                            req.order_id,
                            f.state,
                            missing.join(", ")
                        )));
                    }
                    let mut packed: BTreeMap<&str, i64> = BTreeMap::new();
                    for c in &req.cartons {
                        for i in &c.items {
                            *packed.entry(i.sku.as_str()).or_default() += i.quantity;
                        }
                    }
                    let picked: BTreeMap<&str, i64> = f.lines.iter().map(|l| (l.sku.as_str(), l.picked)).collect();
                    if packed != picked {
                        return Err(precondition(format!(
                            "cartons: hold {packed:?}, but the order's picked units are {picked:?}"
                        )));
                    }
                    let mut packing = self.location_in(&tx, wid, codes::PACKING).await?;
                    let mut shipping = self.location_in(&tx, wid, codes::SHIPPING).await?;
                    for l in &f.lines {
                        move_units(&mut packing, &mut shipping, &l.sku, l.picked)
                            .map_err(|e| precondition(format!("PACKING: {e}")))?;
                    }
                    self.move_order(cx, &req.order_id, ord::OrderState::Confirmed, ord::OrderState::Packed).await?;
                    let skus: Vec<&str> = f.lines.iter().map(|l| l.sku.as_str()).collect();
                    save_location(&tx, wid, &packing, &skus)?;
                    save_location(&tx, wid, &shipping, &skus)?;
                    f.cartons = req
                        .cartons
                        .iter()
                        .map(|c| CartonRec {
                            carton_id: c.carton_id.clone(),
                            items: c.items.iter().map(|i| (i.sku.clone(), i.quantity)).collect(),
                            weight_grams: c.weight_grams,
                        })
                        .collect();
                    f.state = FState::Packed;
                    f.update_ms = self.now();
                    tx_put(&tx, fkey, &f)?;
                    Ok(pb::PackResponse { fulfillment: Some(f.to_pb(wid)) })
                })
            })
            .await
    }

    /// Ship: the packed units leave; the order -> SHIPPED.
    pub async fn ship(&self, cx: &CallContext, req: pb::ShipRequest) -> ServiceResult<pb::ShipResponse> {
        let fp = Fingerprint::of(&req);
        let req = &req;
        self.idem
            .transact(&req.request_id, fp, |tx| {
                Box::pin(async move {
                    let wid = &req.warehouse_id;
                    let fkey = keys::fulfillment(wid, &req.order_id);
                    let mut f: FulfillmentRec = tx_get(&tx, &fkey)
                        .await?
                        .ok_or_else(|| ServiceError::not_found(format!("order {} in warehouse {wid}", req.order_id)))?;
                    if f.state != FState::Packed {
                        return Err(precondition(format!("order {} is {:?}, not PACKED", req.order_id, f.state)));
                    }
                    let mut shipping = self.location_in(&tx, wid, codes::SHIPPING).await?;
                    let mut gone = LocationRec {
                        code: String::new(),
                        kind: LocKind::Shipping,
                        capacity: 0,
                        aisle: 0,
                        position_dm: 0,
                        items: vec![],
                    };
                    for l in &f.lines {
                        move_units(&mut shipping, &mut gone, &l.sku, l.picked)
                            .map_err(|e| precondition(format!("SHIPPING: {e}")))?;
                    }
                    self.move_order(cx, &req.order_id, ord::OrderState::Packed, ord::OrderState::Shipped).await?;
                    let skus: Vec<&str> = f.lines.iter().map(|l| l.sku.as_str()).collect();
                    save_location(&tx, wid, &shipping, &skus)?;
                    for l in f.lines.iter_mut() {
                        let units = l.picked - l.shipped;
                        l.shipped = l.picked;
                        let skey = keys::sku(wid, &l.sku);
                        let mut s: SkuRec = tx_get(&tx, &skey)
                            .await?
                            .unwrap_or_else(|| SkuRec { sku: l.sku.clone(), ..Default::default() });
                        s.outstanding -= units;
                        tx_put(&tx, skey, &s)?;
                        let mut rec = audit_record(pb::AuditKind::Shipped, &l.sku, "", codes::SHIPPING, "", units);
                        rec.reference = req.order_id.clone();
                        self.audit(&tx, wid, &req.request_id, rec).await?;
                    }
                    f.state = FState::Shipped;
                    f.carrier = req.carrier.clone();
                    f.tracking_number = req.tracking_number.clone();
                    f.update_ms = self.now();
                    tx_put(&tx, fkey, &f)?;
                    Ok(pb::ShipResponse { fulfillment: Some(f.to_pb(wid)) })
                })
            })
            .await
    }

    /// GetFulfillment.
    pub async fn get_fulfillment(&self, req: pb::GetFulfillmentRequest) -> ServiceResult<pb::GetFulfillmentResponse> {
        let f: FulfillmentRec = match self.store.get(&keys::fulfillment(&req.warehouse_id, &req.order_id)).await? {
            Some(v) => decode(&v.value)?,
            None => {
                return Err(ServiceError::not_found(format!(
                    "order {} in warehouse {}",
                    req.order_id, req.warehouse_id
                )));
            }
        };
        Ok(pb::GetFulfillmentResponse { fulfillment: Some(f.to_pb(&req.warehouse_id)) })
    }

    // ---- cycle counts and audit ----

    /// PlanCycleCounts.
    pub async fn plan_cycle_counts(
        &self,
        req: pb::PlanCycleCountsRequest,
    ) -> ServiceResult<pb::PlanCycleCountsResponse> {
        let wid = &req.warehouse_id;
        self.warehouse(wid).await?;
        let entries = scan_all(&self.store, KeyRange::prefix(keys::skus(wid)), Direction::Forward).await?;
        let skus: Vec<SkuRec> = entries.iter().map(|e| decode(&e.value)).collect::<ServiceResult<_>>()?;
        let picked: Vec<(String, i64)> = skus.iter().map(|s| (s.sku.clone(), s.picked_units)).collect();
        let classes = abc::classify(&picked);
        let now = self.now();
        let mut items = Vec::new();
        for (s, class) in skus.iter().zip(classes) {
            let since = s.last_count_ms.unwrap_or(s.first_receipt_ms);
            let due_ms = class.due_ms(since);
            let due = due_ms <= now;
            if req.due_only && !due {
                continue;
            }
            let prefix = keys::sku_locations(wid, &s.sku);
            let codes = scan_all(&self.store, KeyRange::prefix(prefix.clone()), Direction::Forward)
                .await?
                .iter()
                .filter_map(|e| keys::code_of(&prefix, &e.key))
                .filter(|c| parse_bin(c).is_ok())
                .collect();
            items.push(pb::CycleCountItem {
                sku: s.sku.clone(),
                abc_class: match class {
                    abc::Class::A => pb::AbcClass::A,
                    abc::Class::B => pb::AbcClass::B,
                    abc::Class::C => pb::AbcClass::C,
                } as i32,
                picked_units: s.picked_units,
                last_count_time: s.last_count_ms.map(timestamp),
                next_due_time: Some(timestamp(due_ms)),
                due,
                codes,
            });
        }
        Ok(pb::PlanCycleCountsResponse { items })
    }

    /// RecordCount: the difference goes to or from LOSS, to inventory, and to the audit log.
    pub async fn record_count(
        &self,
        cx: &CallContext,
        req: pb::RecordCountRequest,
    ) -> ServiceResult<pb::RecordCountResponse> {
        let fp = Fingerprint::of(&req);
        let req = &req;
        self.idem
            .transact(&req.request_id, fp, |tx| {
                Box::pin(async move {
                    let wid = &req.warehouse_id;
                    let wh = self.warehouse_in(&tx, wid).await?;
                    let mut bin = self.location_in(&tx, wid, &req.code).await?;
                    if bin.kind != LocKind::Storage {
                        return Err(precondition(format!("code: {} is not a STORAGE bin", bin.code)));
                    }
                    let (expected, expiry) =
                        bin.item(&req.sku, &req.lot).map(|i| (i.quantity, i.expire_ms)).unwrap_or((0, None));
                    let difference = req.counted_quantity - expected;
                    if difference > 0 && bin.capacity > 0 && bin.used() + difference > bin.capacity {
                        return Err(precondition(format!(
                            "counted_quantity: {} would hold {} units, over its capacity {}",
                            bin.code,
                            bin.used() + difference,
                            bin.capacity
                        )));
                    }
                    let on_hand = if difference != 0 {
                        let on_hand = self
                            .adjust_inventory(
                                cx,
                                &wh,
                                inv::AdjustStockRequest {
                                    request_id: derived_request_id(&["count", wid, &req.request_id]),
                                    sku: req.sku.clone(),
                                    location: String::new(),
                                    delta: difference,
                                    reason: inv::AdjustReason::Correction as i32,
                                    note: format!("warehouse {wid}: cycle count of {} by {}", req.code, req.counted_by),
                                },
                            )
                            .await?;
                        bin.add(&req.sku, &req.lot, difference, expiry);
                        save_location(&tx, wid, &bin, &[&req.sku])?;
                        let mut loss = self.location_in(&tx, wid, codes::LOSS).await?;
                        loss.add(&req.sku, &req.lot, -difference, None);
                        save_location(&tx, wid, &loss, &[&req.sku])?;
                        on_hand
                    } else {
                        self.inventory_on_hand(cx, &wh, &req.sku).await?
                    };
                    let skey = keys::sku(wid, &req.sku);
                    let mut s: SkuRec = tx_get(&tx, &skey)
                        .await?
                        .unwrap_or_else(|| SkuRec { sku: req.sku.clone(), ..Default::default() });
                    s.last_count_ms = Some(self.now());
                    tx_put(&tx, skey, &s)?;
                    let (from, to) = if difference < 0 {
                        (req.code.as_str(), codes::LOSS)
                    } else {
                        (codes::LOSS, req.code.as_str())
                    };
                    let mut rec = audit_record(pb::AuditKind::Counted, &req.sku, &req.lot, from, to, difference.abs());
                    rec.reference = req.counted_by.clone();
                    rec.expected_quantity = expected;
                    rec.counted_quantity = req.counted_quantity;
                    let seq = self.audit(&tx, wid, &req.request_id, rec).await?;
                    Ok(pb::RecordCountResponse {
                        expected_quantity: expected,
                        counted_quantity: req.counted_quantity,
                        difference,
                        audit_sequence: seq,
                        inventory_on_hand: on_hand,
                    })
                })
            })
            .await
    }

    /// ListAudit.
    pub async fn list_audit(&self, req: pb::ListAuditRequest, size: usize) -> ServiceResult<pb::ListAuditResponse> {
        self.warehouse(&req.warehouse_id).await?;
        let from = req.from_sequence.max(1);
        let events = self.audit_log(&req.warehouse_id).read(from, size + 1).await?;
        let mut records = Vec::new();
        for e in events.iter().take(size) {
            let mut rec = pb::AuditRecord::decode(e.payload.as_slice())
                .map_err(|e| ServiceError::Internal(format!("undecodable audit record: {e}")))?;
            rec.sequence = e.sequence;
            records.push(rec);
        }
        let next_sequence = events.get(size).map(|e| e.sequence).unwrap_or(0);
        Ok(pb::ListAuditResponse { records, next_sequence })
    }
}

/// Moves `units` of `sku` (any lots, oldest expiry first) from `from` to `to`.
fn move_units(from: &mut LocationRec, to: &mut LocationRec, sku: &str, units: i64) -> Result<(), String> {
    let mut lots: Vec<(String, i64, Option<i64>)> =
        from.items.iter().filter(|i| i.sku == sku).map(|i| (i.lot.clone(), i.quantity, i.expire_ms)).collect();
    lots.sort_by_key(|(lot, _, exp)| (exp.is_none(), exp.unwrap_or(0), lot.clone()));
    let held: i64 = lots.iter().map(|l| l.1).sum();
    if held < units {
        return Err(format!("holds {held} of {sku}, not {units}"));
    }
    let mut left = units;
    for (lot, quantity, expiry) in lots {
        if left == 0 {
            break;
        }
        let take = quantity.min(left);
        left -= take;
        from.add(sku, &lot, -take, None);
        to.add(sku, &lot, take, expiry);
    }
    Ok(())
}

/// The sku summary of `sku` in `skus`, read through `tx` on first use.
async fn skus_entry<'a>(
    tx: &Txn,
    skus: &'a mut HashMap<String, SkuRec>,
    wid: &str,
    sku: &str,
) -> ServiceResult<&'a mut SkuRec> {
    if !skus.contains_key(sku) {
        let s = tx_get::<SkuRec>(tx, &keys::sku(wid, sku))
            .await?
            .unwrap_or_else(|| SkuRec { sku: sku.into(), ..Default::default() });
        skus.insert(sku.to_string(), s);
    }
    skus.get_mut(sku).ok_or_else(|| ServiceError::Internal("sku summary vanished".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_short_and_distinct() {
        let a = derived_request_id(&["put-away", "w1", "r1"]);
        assert_eq!(a, derived_request_id(&["put-away", "w1", "r1"]));
        assert_ne!(a, derived_request_id(&["put-away", "w1r", "1"]));
        assert!(a.len() <= 64);
        meshwork_common::validate_request_id(&a).expect("valid request id");
        let w = wave_id_for("w1", "r1");
        assert!(meshwork_common::is_random_id(&w, "wave_", 20), "{w}");
    }

    #[test]
    fn moving_units_takes_first_expiring_lots() {
        let mut from = LocationRec {
            code: "PACKING".into(),
            kind: LocKind::Packing,
            capacity: 0,
            aisle: 0,
            position_dm: 0,
            items: vec![],
        };
        let mut to = from.clone();
        from.add("S-1", "L2", 3, Some(200));
        from.add("S-1", "L1", 2, Some(100));
        move_units(&mut from, &mut to, "S-1", 4).expect("move");
        assert_eq!(from.item("S-1", "L2").map(|i| i.quantity), Some(1));
        assert_eq!(to.item("S-1", "L1").map(|i| i.quantity), Some(2));
        assert!(move_units(&mut from, &mut to, "S-1", 2).is_err());
    }
}
