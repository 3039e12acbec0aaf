//! Field rules of every inventory request, one function per request, checked before the store
//! is touched: INVALID_ARGUMENT naming the field (`lines[2].quantity`) and the reason.

use std::collections::HashSet;
use std::time::Duration;

use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::fields;
use meshwork_proto::pb::inventory::v1 as pb;

/// Largest |delta| of one adjustment.
pub const MAX_DELTA: i64 = 1_000_000_000;
/// Most lines of a BatchAdjust.
pub const MAX_BATCH_LINES: usize = 1000;
/// Most lines of a Reserve.
pub const MAX_RESERVE_LINES: usize = 100;
/// Largest quantity of one reservation line.
pub const MAX_QUANTITY: i64 = 1_000_000;
/// Largest low-stock threshold.
pub const MAX_THRESHOLD: i64 = 1_000_000_000;
/// Hold time when a Reserve gives none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
/// Shortest hold.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest hold.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most characters of a note or a release reason.
pub const MAX_NOTE_CHARS: usize = 500;
/// Most characters of a reservation's reference.
pub const MAX_REFERENCE_CHARS: usize = 64;
/// Random base62 characters after `res_` in a reservation id.
pub const RESERVATION_ID_CHARS: usize = 20;

/// Checks a `request_id`: the kit's rule, 1-64 characters of `[A-Za-z0-9._:-]`.
pub fn request_id(value: &str) -> ServiceResult<()> {
    meshwork_common::validate_request_id(value)
}

/// Checks a location id: `[a-z0-9-]{1,40}`.
pub fn location(field: &str, value: &str) -> ServiceResult<()> {
    if value.is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if value.len() > 40 || !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(ServiceError::invalid(field, "must match [a-z0-9-]{1,40}"));
    }
    Ok(())
}

/// Checks one adjustment (`prefix` is `""` for AdjustStock, `lines[i].` in a batch).
pub fn adjustment(prefix: &str, sku: &str, loc: &str, delta: i64, reason: i32, note: &str) -> ServiceResult<()> {
    let field = |name: &str| format!("{prefix}{name}");
    fields::sku(&field("sku"), sku)?;
    location(&field("location"), loc)?;
    if delta == 0 {
        return Err(ServiceError::invalid(field("delta"), "must not be 0"));
    }
    if !(-MAX_DELTA..=MAX_DELTA).contains(&delta) {
        return Err(ServiceError::invalid(field("delta"), "at most 1,000,000,000 either way"));
    }
    match pb::AdjustReason::try_from(reason) {
        Err(_) => return Err(ServiceError::invalid(field("reason"), format!("unknown reason {reason}"))),
        Ok(pb::AdjustReason::Unspecified) => {
            return Err(ServiceError::invalid(field("reason"), "required: RECEIVE, SHRINK, CORRECTION or RESTOCK"));
        }
        Ok(pb::AdjustReason::Receive | pb::AdjustReason::Restock) if delta < 0 => {
            return Err(ServiceError::invalid(field("delta"), "must be positive for RECEIVE and RESTOCK"));
        }
        Ok(pb::AdjustReason::Shrink) if delta > 0 => {
            return Err(ServiceError::invalid(field("delta"), "must be negative for SHRINK"));
        }
        Ok(_) => {}
    }
    fields::text(&field("note"), note, MAX_NOTE_CHARS, false)
}

/// Checks an AdjustStock request.
pub fn adjust_stock(req: &pb::AdjustStockRequest) -> ServiceResult<()> {
    request_id(&req.request_id)?;
    adjustment("", &req.sku, &req.location, req.delta, req.reason, &req.note)
}

/// Checks a BatchAdjust request as a whole (request id, line count) and returns each line's
/// own verdict: a bad line is answered alone, the others are applied.
pub fn batch_adjust(req: &pb::BatchAdjustRequest) -> ServiceResult<Vec<ServiceResult<()>>> {
    request_id(&req.request_id)?;
    if req.lines.is_empty() {
        return Err(ServiceError::invalid("lines", "at least one line"));
    }
    if req.lines.len() > MAX_BATCH_LINES {
        return Err(ServiceError::invalid("lines", format!("at most 1,000 lines, got {}", req.lines.len())));
    }
    Ok(req
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| adjustment(&format!("lines[{i}]."), &l.sku, &l.location, l.delta, l.reason, &l.note))
        .collect())
}

/// Checks a GetStock request.
pub fn get_stock(req: &pb::GetStockRequest) -> ServiceResult<()> {
    fields::sku("sku", &req.sku)
}

/// Checks a SetLowStockThreshold request.
pub fn set_threshold(req: &pb::SetLowStockThresholdRequest) -> ServiceResult<()> {
    fields::sku("sku", &req.sku)?;
    if !(0..=MAX_THRESHOLD).contains(&req.threshold) {
        return Err(ServiceError::invalid("threshold", "must be 0 to 1,000,000,000"));
    }
    Ok(())
}

/// Checks a Reserve request and returns its hold time.
pub fn reserve(req: &pb::ReserveRequest) -> ServiceResult<Duration> {
    request_id(&req.request_id)?;
    if req.lines.is_empty() {
        return Err(ServiceError::invalid("lines", "at least one line"));
    }
    if req.lines.len() > MAX_RESERVE_LINES {
        return Err(ServiceError::invalid("lines", format!("at most 100 lines, got {}", req.lines.len())));
    }
    let mut seen = HashSet::new();
    for (i, line) in req.lines.iter().enumerate() {
        fields::sku(&format!("lines[{i}].sku"), &line.sku)?;
        if !seen.insert(line.sku.as_str()) {
            return Err(ServiceError::invalid(
                format!("lines[{i}].sku"),
                format!("{} appears more than once", line.sku),
            ));
        }
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            return Err(ServiceError::invalid(format!("lines[{i}].quantity"), "must be 1 to 1,000,000"));
        }
        if !line.location.is_empty() {
            location(&format!("lines[{i}].location"), &line.location)?;
        }
    }
    fields::text("reference", &req.reference, MAX_REFERENCE_CHARS, false)?;
    let ttl = match &req.ttl {
        None => DEFAULT_TTL,
        Some(d) => fields::duration("ttl", d)?,
    };
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(ServiceError::invalid("ttl", "must be 1 s to 24 h"));
    }
    Ok(ttl)
}

/// Checks a reservation id: `res_` and 20 base62 characters.
pub fn reservation_id(value: &str) -> ServiceResult<()> {
    if value.is_empty() {
        return Err(ServiceError::invalid("reservation_id", "required"));
    }
    if !meshwork_common::is_random_id(value, "res_", RESERVATION_ID_CHARS) {
        return Err(ServiceError::invalid("reservation_id", "must be res_ and 20 base62 characters"));
    }
    Ok(())
}

/// Checks a ReleaseReservation request.
pub fn release(req: &pb::ReleaseReservationRequest) -> ServiceResult<()> {
    reservation_id(&req.reservation_id)?;
    fields::text("reason", &req.reason, MAX_NOTE_CHARS, false)
}

/// Checks a WatchStock request.
pub fn watch(req: &pb::WatchStockRequest) -> ServiceResult<()> {
    let p = &req.sku_prefix;
    if p.len() > 40 || !p.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-') {
        return Err(ServiceError::invalid("sku_prefix", "must match [A-Z0-9-]{0,40}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: ServiceResult<impl Sized>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            _ => "(accepted)".into(),
        }
    }

    #[test]
    fn adjustments() {
        assert!(adjustment("", "ABC", "w1", 5, 1, "").is_ok());
        assert_eq!(field_of(adjustment("", "ABC", "w1", -5, 1, "")), "delta");
        assert_eq!(field_of(adjustment("", "ABC", "w1", 5, 2, "")), "delta");
        assert!(adjustment("", "ABC", "w1", 5, 3, "").is_ok());
        assert!(adjustment("", "ABC", "w1", -5, 3, "").is_ok());
        assert_eq!(field_of(adjustment("", "ABC", "w1", 5, 99, "")), "reason");
        assert_eq!(field_of(adjustment("", "ABC", "w1", 5, 0, "")), "reason");
        assert_eq!(field_of(adjustment("lines[3].", "ab", "w1", 5, 1, "")), "lines[3].sku");
        assert_eq!(field_of(adjustment("", "ABC", "W1", 5, 1, "")), "location");
        assert_eq!(field_of(adjustment("", "ABC", "w1", MAX_DELTA + 1, 1, "")), "delta");
        assert_eq!(field_of(adjustment("", "ABC", "w1", 1, 1, &"x".repeat(501))), "note");
    }

    #[test]
    fn ids() {
        assert!(request_id("a.b_c:d-9").is_ok());
        assert_eq!(field_of(request_id("a/b")), "request_id");
        assert_eq!(field_of(request_id(&"a".repeat(65))), "request_id");
        assert!(reservation_id("res_0123456789abcdefABCD").is_ok());
        assert_eq!(field_of(reservation_id("res_short")), "reservation_id");
    }
}
