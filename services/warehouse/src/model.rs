//! The stored records (versioned JSON through [`Record`]) and their wire forms.

use meshwork_common::Record;
use meshwork_common::fields::{timestamp, timestamp_opt};
use meshwork_proto::pb::warehouse::v1 as pb;
use serde::{Deserialize, Serialize};

/// A warehouse and its aisle geometry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarehouseRec {
    pub warehouse_id: String,
    pub name: String,
    pub inventory_location: String,
    pub aisles: i32,
    pub aisle_length_dm: i32,
    pub aisle_spacing_dm: i32,
    pub rack_pitch_dm: i32,
    pub over_receipt_percent: i32,
    pub create_ms: i64,
}

impl Record for WarehouseRec {
    const KIND: &'static str = "warehouse record";
}

impl WarehouseRec {
    /// Returns the wire form.
    pub fn to_pb(&self) -> pb::Facility {
        pb::Facility {
            warehouse_id: self.warehouse_id.clone(),
            name: self.name.clone(),
            inventory_location: self.inventory_location.clone(),
            aisles: self.aisles,
            aisle_length_dm: self.aisle_length_dm,
            aisle_spacing_dm: self.aisle_spacing_dm,
            rack_pitch_dm: self.rack_pitch_dm,
            over_receipt_percent: self.over_receipt_percent,
            create_time: Some(timestamp(self.create_ms)),
        }
    }

    /// Returns the geometry the pick paths walk.
    pub fn geometry(&self) -> meshwork_routing::Warehouse {
        meshwork_routing::Warehouse {
            aisles: usize::try_from(self.aisles).unwrap_or(1).max(1),
            aisle_length: i64::from(self.aisle_length_dm),
            aisle_spacing: i64::from(self.aisle_spacing_dm),
        }
    }
}

/// What kind of place a location is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocKind {
    Receiving,
    Storage,
    Packing,
    Shipping,
    Loss,
}

impl LocKind {
    /// Returns the wire enum value.
    pub fn to_pb(self) -> i32 {
        (match self {
            LocKind::Receiving => pb::LocationType::Receiving,
            LocKind::Storage => pb::LocationType::Storage,
            LocKind::Packing => pb::LocationType::Packing,
            LocKind::Shipping => pb::LocationType::Shipping,
            LocKind::Loss => pb::LocationType::Loss,
        }) as i32
    }

    /// Whether units here count as the warehouse's physical stock (against inventory's
    /// on-hand): not yet put away (RECEIVING) and lost (LOSS) do not.
    pub fn is_physical(self) -> bool {
        matches!(self, LocKind::Storage | LocKind::Packing | LocKind::Shipping)
    }
}

/// Units of one sku and lot in a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    #[serde(default)]
    pub lot: String,
    pub quantity: i64,
    /// Units promised to unconfirmed pick tasks (never moved or counted away from them).
    #[serde(default)]
    pub allocated: i64,
    #[serde(default)]
    pub expire_ms: Option<i64>,
}

impl Item {
    /// Returns the wire form.
    pub fn to_pb(&self) -> pb::StockItem {
        pb::StockItem {
            sku: self.sku.clone(),
            lot: self.lot.clone(),
            quantity: self.quantity,
            expire_time: self.expire_ms.and_then(timestamp_opt),
        }
    }
}

/// A location with its contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationRec {
    pub code: String,
    pub kind: LocKind,
    /// Most units (0 for docks: unbounded).
    pub capacity: i64,
    pub aisle: i32,
    pub position_dm: i32,
    pub items: Vec<Item>,
}

impl Record for LocationRec {
    const KIND: &'static str = "location record";
}

impl LocationRec {
    /// Units in it.
    pub fn used(&self) -> i64 {
        self.items.iter().map(|i| i.quantity).sum()
    }

    /// Free room (unbounded docks: `i64::MAX`).
    pub fn room(&self) -> i64 {
        if self.capacity == 0 { i64::MAX } else { (self.capacity - self.used()).max(0) }
    }

    /// The item of `sku` and `lot`, if any.
    pub fn item(&self, sku: &str, lot: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.sku == sku && i.lot == lot)
    }

    /// The item of `sku` and `lot`, made empty when absent.
    pub fn item_mut(&mut self, sku: &str, lot: &str, expire_ms: Option<i64>) -> &mut Item {
        let at = match self.items.iter().position(|i| i.sku == sku && i.lot == lot) {
            Some(at) => at,
            None => {
                self.items.push(Item { sku: sku.into(), lot: lot.into(), quantity: 0, allocated: 0, expire_ms });
                self.items.len() - 1
            }
        };
        &mut self.items[at]
    }

    /// Adds `delta` units (negative removes) of `sku`/`lot`; empties are dropped.
    pub fn add(&mut self, sku: &str, lot: &str, delta: i64, expire_ms: Option<i64>) {
        let item = self.item_mut(sku, lot, expire_ms);
        item.quantity += delta;
        if item.expire_ms.is_none() {
            item.expire_ms = expire_ms;
        }
        self.items.retain(|i| i.quantity != 0 || i.allocated != 0);
    }

    /// Whether it holds any of `sku` (for the sku -> location index).
    pub fn holds(&self, sku: &str) -> bool {
        self.items.iter().any(|i| i.sku == sku)
    }

    /// Returns the wire form.
    pub fn to_pb(&self, warehouse_id: &str) -> pb::Location {
        pb::Location {
            warehouse_id: warehouse_id.into(),
            code: self.code.clone(),
            r#type: self.kind.to_pb(),
            capacity: self.capacity,
            used: self.used(),
            aisle: self.aisle,
            position_dm: self.position_dm,
            items: self.items.iter().filter(|i| i.quantity != 0).map(Item::to_pb).collect(),
        }
    }
}

/// One sku's movement and commitments in a warehouse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuRec {
    pub sku: String,
    /// Units committed to open orders (sold in inventory) and not yet shipped.
    pub outstanding: i64,
    /// Units picked so far (the ABC class).
    pub picked_units: i64,
    pub first_receipt_ms: i64,
    #[serde(default)]
    pub last_count_ms: Option<i64>,
}

impl Record for SkuRec {
    const KIND: &'static str = "warehouse sku record";
}

/// A purchase order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoLine {
    pub sku: String,
    pub quantity: i64,
    pub lot_tracked: bool,
    pub received: i64,
}

/// A purchase order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoRec {
    pub po_id: String,
    pub supplier: String,
    pub lines: Vec<PoLine>,
    pub create_ms: i64,
}

impl Record for PoRec {
    const KIND: &'static str = "purchase order record";
}

impl PoRec {
    /// Returns the wire form.
    pub fn to_pb(&self, warehouse_id: &str) -> pb::PurchaseOrder {
        let state = if self.lines.iter().all(|l| l.received == 0) {
            pb::PurchaseOrderState::Open
        } else if self.lines.iter().all(|l| l.received >= l.quantity) {
            pb::PurchaseOrderState::Received
        } else {
            pb::PurchaseOrderState::PartiallyReceived
        };
        pb::PurchaseOrder {
            po_id: self.po_id.clone(),
            warehouse_id: warehouse_id.into(),
            supplier: self.supplier.clone(),
            lines: self
                .lines
                .iter()
                .map(|l| pb::PurchaseOrderLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    lot_tracked: l.lot_tracked,
                    received: l.received,
                })
                .collect(),
            state: state as i32,
            create_time: Some(timestamp(self.create_ms)),
        }
    }
}

/// Where an order is in this warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FState {
    Waiting,
    Picking,
    Picked,
    Packed,
    Shipped,
    Cancelled,
}

/// One line of an order being fulfilled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FLine {
    pub sku: String,
    pub quantity: i64,
    /// Units committed in inventory for the line (by checkout, or by a backorder allocation),
    /// shipped ones included. A short pick takes its missing units off: they were the sold
    /// ones, lost; the line is backordered by `quantity - allocated`.
    pub allocated: i64,
    pub in_wave: i64,
    /// Units picked, shipped ones included.
    pub picked: i64,
    pub shipped: i64,
}

impl FLine {
    /// Units waiting for stock.
    pub fn backordered(&self) -> i64 {
        self.quantity - self.allocated
    }

    /// Units neither picked nor in a wave.
    pub fn to_pick(&self) -> i64 {
        self.quantity - self.picked - self.in_wave
    }

    /// Units committed and neither picked nor in a wave: what a wave may take now.
    pub fn pickable(&self) -> i64 {
        (self.allocated - self.picked - self.in_wave).max(0)
    }
}

/// A packed carton.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartonRec {
    pub carton_id: String,
    pub items: Vec<(String, i64)>,
    pub weight_grams: i64,
}

/// An order's fulfilment in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentRec {
    pub order_id: String,
    pub state: FState,
    pub lines: Vec<FLine>,
    /// Whether checkout committed the order's stock (orders restocks it on a cancellation).
    pub committed_by_checkout: bool,
    #[serde(default)]
    pub cartons: Vec<CartonRec>,
    #[serde(default)]
    pub carrier: String,
    #[serde(default)]
    pub tracking_number: String,
    #[serde(default)]
    pub wave_id: String,
    pub update_ms: i64,
}

impl Record for FulfillmentRec {
    const KIND: &'static str = "fulfillment record";
}

impl FulfillmentRec {
    /// The state its lines imply while it is being picked.
    pub fn picking_state(&self) -> FState {
        if self.lines.iter().all(|l| l.picked >= l.quantity) {
            FState::Picked
        } else if self.lines.iter().any(|l| l.in_wave > 0) {
            FState::Picking
        } else {
            FState::Waiting
        }
    }

    /// Whether it still has units to bring into a wave.
    pub fn is_waiting(&self) -> bool {
        matches!(self.state, FState::Waiting | FState::Picking) && self.lines.iter().any(|l| l.to_pick() > 0)
    }

    /// Returns the wire form.
    pub fn to_pb(&self, warehouse_id: &str) -> pb::Fulfillment {
        use pb::FulfillmentState as S;
        let state = match self.state {
            FState::Waiting => S::Waiting,
            FState::Picking => S::Picking,
            FState::Picked => S::Picked,
            FState::Packed => S::Packed,
            FState::Shipped => S::Shipped,
            FState::Cancelled => S::Cancelled,
        };
        pb::Fulfillment {
            order_id: self.order_id.clone(),
            warehouse_id: warehouse_id.into(),
            state: state as i32,
            lines: self
                .lines
                .iter()
                .map(|l| pb::FulfillmentLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    allocated: l.allocated - l.shipped,
                    in_wave: l.in_wave,
                    picked: l.picked,
                    backordered: l.backordered(),
                })
                .collect(),
            cartons: self
                .cartons
                .iter()
                .map(|c| pb::Carton {
                    carton_id: c.carton_id.clone(),
                    items: c
                        .items
                        .iter()
                        .map(|(sku, q)| pb::StockItem { sku: sku.clone(), quantity: *q, ..Default::default() })
                        .collect(),
                    weight_grams: c.weight_grams,
                })
                .collect(),
            carrier: self.carrier.clone(),
            tracking_number: self.tracking_number.clone(),
            wave_id: self.wave_id.clone(),
            update_time: Some(timestamp(self.update_ms)),
        }
    }
}

/// One pick task of a wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickRec {
    pub order_id: String,
    pub sku: String,
    pub lot: String,
    pub code: String,
    pub quantity: i64,
    pub picked: i64,
    pub confirmed: bool,
}

/// A wave: its pick tasks in walking order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveRec {
    pub wave_id: String,
    pub order_ids: Vec<String>,
    pub picks: Vec<PickRec>,
    pub distance_dm: i64,
    pub s_shape_distance_dm: i64,
    pub create_ms: i64,
}

impl Record for WaveRec {
    const KIND: &'static str = "wave record";
}

impl WaveRec {
    /// Returns the wire form.
    pub fn to_pb(&self, warehouse_id: &str) -> pb::Wave {
        pb::Wave {
            wave_id: self.wave_id.clone(),
            warehouse_id: warehouse_id.into(),
            order_ids: self.order_ids.clone(),
            picks: self.picks.iter().enumerate().map(|(i, p)| pick_pb(i, p)).collect(),
            distance_dm: self.distance_dm,
            s_shape_distance_dm: self.s_shape_distance_dm,
            saved_dm: self.s_shape_distance_dm - self.distance_dm,
            complete: self.picks.iter().all(|p| p.confirmed),
            create_time: Some(timestamp(self.create_ms)),
        }
    }
}

/// Returns the wire form of pick task `index`.
pub fn pick_pb(index: usize, p: &PickRec) -> pb::PickTask {
    pb::PickTask {
        index: i32::try_from(index).unwrap_or(i32::MAX),
        order_id: p.order_id.clone(),
        sku: p.sku.clone(),
        lot: p.lot.clone(),
        code: p.code.clone(),
        quantity: p.quantity,
        picked: p.picked,
        confirmed: p.confirmed,
    }
}
