//! Field rules, one function per request: every RPC is checked here before the store is
//! touched, and a failure is INVALID_ARGUMENT naming the field.

use meshwork_common::fields::{self, millis};
use meshwork_common::{ServiceError, ServiceResult, is_random_id, validate_request_id};
use meshwork_proto::pb::warehouse::v1 as pb;

use crate::codes::{check_code, parse_bin};

/// Most units in one line or bin.
pub const MAX_UNITS: i64 = 1_000_000;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ServiceError {
    ServiceError::invalid(field, reason)
}

/// `[a-z0-9-]{1,40}`: warehouse ids and inventory locations.
pub fn slug(field: &str, value: &str) -> ServiceResult<()> {
    if value.is_empty() {
        return Err(invalid(field, "required"));
    }
    if value.len() > 40 || !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(invalid(field, "must match [a-z0-9-]{1,40}"));
    }
    Ok(())
}

fn token(field: &str, value: &str, min: usize, max: usize) -> ServiceResult<()> {
    if value.is_empty() && min > 0 {
        return Err(invalid(field, "required"));
    }
    if !(min..=max).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(invalid(field, format!("must match [A-Za-z0-9-]{{{min},{max}}}")));
    }
    Ok(())
}

/// A lot code: empty (untracked) or `[A-Za-z0-9-]{1,40}`.
pub fn lot(field: &str, value: &str) -> ServiceResult<()> {
    if value.is_empty() { Ok(()) } else { token(field, value, 1, 40) }
}

fn units(field: &str, value: i64) -> ServiceResult<()> {
    if !(1..=MAX_UNITS).contains(&value) {
        return Err(invalid(field, format!("must be 1 to {MAX_UNITS}, got {value}")));
    }
    Ok(())
}

fn code(field: &str, value: &str) -> ServiceResult<()> {
    if value.is_empty() {
        return Err(invalid(field, "required"));
    }
    check_code(value).map_err(|reason| invalid(field, reason))
}

fn order_id(field: &str, value: &str) -> ServiceResult<()> {
    if value.is_empty() {
        return Err(invalid(field, "required"));
    }
    if !is_random_id(value, "ord_", 20) {
        return Err(invalid(field, "must be an order id (ord_ and 20 base62 characters)"));
    }
    Ok(())
}

fn range(field: &str, value: i32, min: i32, max: i32) -> ServiceResult<()> {
    if !(min..=max).contains(&value) {
        return Err(invalid(field, format!("must be {min} to {max}, got {value}")));
    }
    Ok(())
}

pub fn create_warehouse(r: &pb::CreateWarehouseRequest) -> ServiceResult<()> {
    validate_request_id(&r.request_id)?;
    let Some(w) = &r.warehouse else {
        return Err(invalid("warehouse", "required"));
    };
    slug("warehouse.warehouse_id", &w.warehouse_id)?;
    fields::text("warehouse.name", &w.name, 200, true)?;
    if !w.inventory_location.is_empty() {
        slug("warehouse.inventory_location", &w.inventory_location)?;
    }
    range("warehouse.aisles", w.aisles, 1, 100)?;
    range("warehouse.aisle_length_dm", w.aisle_length_dm, 10, 10_000)?;
    range("warehouse.aisle_spacing_dm", w.aisle_spacing_dm, 5, 1_000)?;
    range("warehouse.rack_pitch_dm", w.rack_pitch_dm, 1, 1_000)?;
    range("warehouse.over_receipt_percent", w.over_receipt_percent, 0, 100)
}

pub fn get_warehouse(r: &pb::GetWarehouseRequest) -> ServiceResult<()> {
    slug("warehouse_id", &r.warehouse_id)
}

pub fn create_locations(r: &pb::CreateLocationsRequest) -> ServiceResult<()> {
    validate_request_id(&r.request_id)?;
    slug("warehouse_id", &r.warehouse_id)?;
    if r.locations.is_empty() || r.locations.len() > 100 {
        return Err(invalid("locations", format!("must hold 1 to 100 bins, got {}", r.locations.len())));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, l) in r.locations.iter().enumerate() {
        let f = format!("locations[{i}]");
        if l.code.is_empty() {
            return Err(invalid(format!("{f}.code"), "required"));
        }
        parse_bin(&l.code).map_err(|reason| invalid(format!("{f}.code"), reason))?;
        if !seen.insert(l.code.as_str()) {
            return Err(invalid(format!("{f}.code"), format!("{} appears twice", l.code)));
        }
        units(&format!("{f}.capacity"), l.capacity)?;
    }
    Ok(())
}

pub fn get_location(r: &pb::GetLocationRequest) -> ServiceResult<()> {
    slug("warehouse_id", &r.warehouse_id)?;
    code("code", &r.code)
}

pub fn list_locations(r: &pb::ListLocationsRequest) -> ServiceResult<usize> {
    slug("warehouse_id", &r.warehouse_id)?;
    fields::page_size("page_size", r.page_size)
}

pub fn get_sku_stock(r: &pb::GetSkuStockRequest) -> ServiceResult<()> {
    slug("warehouse_id", &r.warehouse_id)?;
    fields::sku("sku", &r.sku)
}

pub fn create_purchase_order(r: &pb::CreatePurchaseOrderRequest) -> ServiceResult<()> {
    validate_request_id(&r.request_id)?;
    slug("warehouse_id", &r.warehouse_id)?;
    fields::text("supplier", &r.supplier, 200, true)?;
    if r.lines.is_empty() || r.lines.len() > 100 {
        return Err(invalid("lines", format!("must hold 1 to 100 lines, got {}", r.lines.len())));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, l) in r.lines.iter().enumerate() {
        fields::sku(&format!("lines[{i}].sku"), &l.sku)?;
        if !seen.insert(l.sku.as_str()) {
            return Err(invalid(format!("lines[{i}].sku"), format!("{} appears twice", l.sku)));
        }
        units(&format!("lines[{i}].quantity"), l.quantity)?;
    }
    Ok(())
}

fn po_id(field: &str, value: &str) -> ServiceResult<()> {
    if value.is_empty() {
        return Err(invalid(field, "required"));
    }
    if !is_random_id(value, "po_", 20) {
        return Err(invalid(field, "must be a purchase order id (po_ and 20 base62 characters)"));
    }
    Ok(())
}

pub fn get_purchase_order(r: &pb::GetPurchaseOrderRequest) -> ServiceResult<()> {
    slug("warehouse_id", &r.warehouse_id)?;
    po_id("po_id", &r.po_id)
}

/// Checks a Receive and returns each line's expiry (ms) when it names a lot.
pub fn receive(r: &pb::ReceiveRequest) -> ServiceResult<Vec<Option<i64>>> {
    validate_request_id(&r.request_id)?;
    slug("warehouse_id", &r.warehouse_id)?;
    po_id("po_id", &r.po_id)?;
    // Each line writes its audit record and sku summary in the one transaction (etcd: 128
    // operations).
    if r.lines.is_empty() || r.lines.len() > 20 {
        return Err(invalid("lines", format!("must hold 1 to 20 lines, got {}", r.lines.len())));
    }
    let mut seen = std::collections::HashSet::new();
    let mut expiries = Vec::with_capacity(r.lines.len());
    for (i, l) in r.lines.iter().enumerate() {
        let f = format!("lines[{i}]");
        fields::sku(&format!("{f}.sku"), &l.sku)?;
        units(&format!("{f}.quantity"), l.quantity)?;
        lot(&format!("{f}.lot"), &l.lot)?;
        if !seen.insert((l.sku.as_str(), l.lot.as_str())) {
            return Err(invalid(format!("{f}.sku"), format!("{} (lot {:?}) appears twice", l.sku, l.lot)));
        }
        let expiry = match (&l.expire_time, l.lot.is_empty()) {
            (Some(_), true) => return Err(invalid(format!("{f}.expire_time"), "only a lot has an expiry")),
            (None, false) => return Err(invalid(format!("{f}.expire_time"), "required with a lot")),
            (Some(t), false) => Some(millis(&format!("{f}.expire_time"), t)?),
            (None, true) => None,
        };
        expiries.push(expiry);
    }
    Ok(expiries)
}

pub fn suggest_put_away(r: &pb::SuggestPutAwayRequest) -> ServiceResult<()> {
    slug("warehouse_id", &r.warehouse_id)?;
    fields::sku("sku", &r.sku)?;
    lot("lot", &r.lot)?;
    units("quantity", r.quantity)
}

pub fn put_away(r: &pb::PutAwayRequest) -> ServiceResult<()> {
    validate_request_id(&r.request_id)?;
    slug("warehouse_id", &r.warehouse_id)?;
    fields::sku("sku", &r.sku)?;
    lot("lot", &r.lot)?;
    units("quantity", r.quantity)?;
    if r.to_code.is_empty() {
        return Err(invalid("to_code", "required"));
    }
    parse_bin(&r.to_code).map(|_| ()).map_err(|reason| invalid("to_code", format!("a STORAGE bin: {reason}")))
}

pub fn move_stock(r: &pb::MoveStockRequest) -> ServiceResult<()> {
    validate_request_id(&r.request_id)?;
    slug("warehouse_id", &r.warehouse_id)?;
    fields::sku("sku", &r.sku)?;
    lot("lot", &r.lot)?;
    units("quantity", r.quantity)?;
    for (field, value) in [("from_code", &r.from_code), ("to_code", &r.to_code)] {
        if value.is_empty() {
            return Err(invalid(field, "required"));
        }
        parse_bin(value).map_err(|reason| invalid(field, format!("a STORAGE bin: {reason}")))?;
    }
    if r.from_code == r.to_code {
        return Err(invalid("to_code", "must differ from from_code"));
    }
    Ok(())
}

/// Checks a BuildWave and returns its order limit.
pub fn build_wave(r: &pb::BuildWaveRequest) -> ServiceResult<usize> {
    validate_request_id(&r.request_id)?;
    slug("warehouse_id", &r.warehouse_id)?;
    match r.max_orders {
        0 => Ok(20),
        n => {
            range("max_orders", n, 1, 100)?;
            Ok(n as usize)
        }
    }
}

fn wave_id(field: &str, value: &str) -> ServiceResult<()> {
    if value.is_empty() {
        return Err(invalid(field, "required"));
    }
    if !is_random_id(value, "wave_", 20) {
        return Err(invalid(field, "must be a wave id (wave_ and 20 base62 characters)"));
    }
    Ok(())
}

pub fn get_wave(r: &pb::GetWaveRequest) -> ServiceResult<()> {
    slug("warehouse_id", &r.warehouse_id)?;
    wave_id("wave_id", &r.wave_id)
}

pub fn confirm_pick(r: &pb::ConfirmPickRequest) -> ServiceResult<()> {
    validate_request_id(&r.request_id)?;
    slug("warehouse_id", &r.warehouse_id)?;
    wave_id("wave_id", &r.wave_id)?;
    if r.index < 0 {
        return Err(invalid("index", "must not be negative"));
    }
    if !(0..=MAX_UNITS).contains(&r.picked_quantity) {
        return Err(invalid("picked_quantity", format!("must be 0 to {MAX_UNITS}")));
    }
    Ok(())
}

pub fn pack(r: &pb::PackRequest) -> ServiceResult<()> {
    validate_request_id(&r.request_id)?;
    slug("warehouse_id", &r.warehouse_id)?;
    order_id("order_id", &r.order_id)?;
    if r.cartons.is_empty() || r.cartons.len() > 50 {
        return Err(invalid("cartons", format!("must hold 1 to 50 cartons, got {}", r.cartons.len())));
    }
    let mut ids = std::collections::HashSet::new();
    for (i, c) in r.cartons.iter().enumerate() {
        let f = format!("cartons[{i}]");
        token(&format!("{f}.carton_id"), &c.carton_id, 1, 40)?;
        if !ids.insert(c.carton_id.as_str()) {
            return Err(invalid(format!("{f}.carton_id"), format!("{} appears twice", c.carton_id)));
        }
        if c.items.is_empty() || c.items.len() > 100 {
            return Err(invalid(format!("{f}.items"), "must hold 1 to 100 items"));
        }
        if !(0..=1_000_000).contains(&c.weight_grams) {
            return Err(invalid(format!("{f}.weight_grams"), "must be 0 to 1,000,000"));
        }
        let mut skus = std::collections::HashSet::new();
        for (j, item) in c.items.iter().enumerate() {
            fields::sku(&format!("{f}.items[{j}].sku"), &item.sku)?;
            if !skus.insert(item.sku.as_str()) {
                return Err(invalid(format!("{f}.items[{j}].sku"), format!("{} appears twice", item.sku)));
            }
            units(&format!("{f}.items[{j}].quantity"), item.quantity)?;
        }
    }
    Ok(())
}

pub fn ship(r: &pb::ShipRequest) -> ServiceResult<()> {
    validate_request_id(&r.request_id)?;
    slug("warehouse_id", &r.warehouse_id)?;
    order_id("order_id", &r.order_id)?;
    fields::text("carrier", &r.carrier, 100, true)?;
    token("tracking_number", &r.tracking_number, 4, 64)
}

pub fn get_fulfillment(r: &pb::GetFulfillmentRequest) -> ServiceResult<()> {
    slug("warehouse_id", &r.warehouse_id)?;
    order_id("order_id", &r.order_id)
}

pub fn plan_cycle_counts(r: &pb::PlanCycleCountsRequest) -> ServiceResult<()> {
    slug("warehouse_id", &r.warehouse_id)
}

pub fn record_count(r: &pb::RecordCountRequest) -> ServiceResult<()> {
    validate_request_id(&r.request_id)?;
    slug("warehouse_id", &r.warehouse_id)?;
    if r.code.is_empty() {
        return Err(invalid("code", "required"));
    }
    parse_bin(&r.code).map_err(|reason| invalid("code", format!("a STORAGE bin: {reason}")))?;
    fields::sku("sku", &r.sku)?;
    lot("lot", &r.lot)?;
    if !(0..=1_000_000_000).contains(&r.counted_quantity) {
        return Err(invalid("counted_quantity", "must be 0 to 1,000,000,000"));
    }
    fields::user_id("counted_by", &r.counted_by)
}

/// Checks a ListAudit and returns its page size.
pub fn list_audit(r: &pb::ListAuditRequest) -> ServiceResult<usize> {
    slug("warehouse_id", &r.warehouse_id)?;
    fields::page_size("page_size", r.page_size)
}
