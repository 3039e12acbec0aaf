//! Field rules, one function per request. Every RPC validates its input here before it
//! touches the store; errors are INVALID_ARGUMENT naming the field and the reason.

use std::time::Duration;

use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::fields::{self, millis};
use meshwork_common::idempotency::validate_request_id;
use meshwork_proto::pb::waste::v1 as pb;

/// Longest id.
pub const MAX_ID: usize = 64;
/// Solver time when the request gives none.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(2);
/// Longest solver time a request may ask for.
pub const MAX_TIME_LIMIT: Duration = Duration::from_secs(60);
/// Shortest solver time a request may ask for.
pub const MIN_TIME_LIMIT: Duration = Duration::from_millis(10);
/// How far in the future a reading's time may be (clock skew of sensors).
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;

/// A client-chosen id: `[A-Za-z0-9_-]{1,64}`.
pub fn id(field: &str, value: &str) -> ServiceResult<()> {
    if value.is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if value.len() > MAX_ID {
        return Err(ServiceError::invalid(field, format!("at most {MAX_ID} characters")));
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(ServiceError::invalid(field, "only letters, digits, '_' and '-'"));
    }
    Ok(())
}

/// A required latitude/longitude.
pub fn location(field: &str, loc: Option<&pb::LatLon>) -> ServiceResult<(f64, f64)> {
    let loc = loc.ok_or_else(|| ServiceError::invalid(field, "required"))?;
    if !loc.lat.is_finite() || !(-90.0..=90.0).contains(&loc.lat) {
        return Err(ServiceError::invalid(format!("{field}.lat"), "must be -90..90"));
    }
    if !loc.lon.is_finite() || !(-180.0..=180.0).contains(&loc.lon) {
        return Err(ServiceError::invalid(format!("{field}.lon"), "must be -180..180"));
    }
    Ok((loc.lat, loc.lon))
}

fn percent(field: &str, v: f64) -> ServiceResult<f64> {
    if !v.is_finite() || !(0.0..=100.0).contains(&v) {
        return Err(ServiceError::invalid(field, "must be a percentage 0..100"));
    }
    Ok(v)
}

fn required_time(field: &str, ts: Option<&prost_types::Timestamp>) -> ServiceResult<i64> {
    let ts = ts.ok_or_else(|| ServiceError::invalid(field, "required"))?;
    let ms = millis(field, ts)?;
    if ms <= 0 {
        return Err(ServiceError::invalid(field, "must be after 1970"));
    }
    Ok(ms)
}

/// CreateSite.
pub fn create_site(req: &pb::CreateSiteRequest) -> ServiceResult<(&pb::Site, (f64, f64))> {
    let site = req.site.as_ref().ok_or_else(|| ServiceError::invalid("site", "required"))?;
    id("site.site_id", &site.site_id)?;
    if !matches!(pb::SiteKind::try_from(site.kind), Ok(pb::SiteKind::Depot | pb::SiteKind::Landfill)) {
        return Err(ServiceError::invalid("site.kind", "must be SITE_KIND_DEPOT or SITE_KIND_LANDFILL"));
    }
    fields::text("site.name", &site.name, 200, false)?;
    let at = location("site.location", site.location.as_ref())?;
    Ok((site, at))
}

/// CreateTruck.
pub fn create_truck(req: &pb::CreateTruckRequest) -> ServiceResult<&pb::Truck> {
    let t = req.truck.as_ref().ok_or_else(|| ServiceError::invalid("truck", "required"))?;
    id("truck.truck_id", &t.truck_id)?;
    id("truck.depot_id", &t.depot_id)?;
    if !(1..=1_000_000).contains(&t.capacity_litres) {
        return Err(ServiceError::invalid("truck.capacity_litres", "must be 1..1,000,000"));
    }
    if !(0..1440).contains(&t.shift_start_minute) {
        return Err(ServiceError::invalid("truck.shift_start_minute", "must be 0..1439"));
    }
    if t.shift_end_minute <= t.shift_start_minute || t.shift_end_minute > 1440 {
        return Err(ServiceError::invalid("truck.shift_end_minute", "must be after the start and at most 1440"));
    }
    Ok(t)
}

/// CreateBin.
pub fn create_bin(req: &pb::CreateBinRequest) -> ServiceResult<(&pb::Bin, (f64, f64))> {
    let b = req.bin.as_ref().ok_or_else(|| ServiceError::invalid("bin", "required"))?;
    id("bin.bin_id", &b.bin_id)?;
    let at = location("bin.location", b.location.as_ref())?;
    if !(1..=100_000).contains(&b.capacity_litres) {
        return Err(ServiceError::invalid("bin.capacity_litres", "must be 1..100,000"));
    }
    if matches!(pb::WasteType::try_from(b.waste_type), Ok(pb::WasteType::Unspecified) | Err(_)) {
        return Err(ServiceError::invalid("bin.waste_type", "must be GENERAL, RECYCLING or ORGANIC"));
    }
    Ok((b, at))
}

/// GetBin: the history limit.
pub fn get_bin(req: &pb::GetBinRequest) -> ServiceResult<usize> {
    id("bin_id", &req.bin_id)?;
    fields::page_size_within("history_limit", req.history_limit, 50, 1000)
}

/// A rectangle: (south, west, north, east) in degrees.
pub type Rect = (f64, f64, f64, f64);

/// ListBins: the page size, the area (if any) and the prediction time (if given).
pub fn list_bins(req: &pb::ListBinsRequest) -> ServiceResult<(usize, Option<Rect>, Option<i64>)> {
    percent("min_predicted_fill", req.min_predicted_fill)?;
    let area = match &req.area {
        None => None,
        Some(a) => {
            let sw = location("area.south_west", a.south_west.as_ref())?;
            let ne = location("area.north_east", a.north_east.as_ref())?;
            if sw.0 > ne.0 || sw.1 > ne.1 {
                return Err(ServiceError::invalid("area", "south_west must be south and west of north_east"));
            }
            Some((sw.0, sw.1, ne.0, ne.1))
        }
    };
    let at = match &req.at {
        Some(ts) => Some(millis("at", ts)?),
        None => None,
    };
    let size = fields::page_size("page_size", req.page_size)?;
    Ok((size, area, at))
}

/// ReportFill (also each message of ReportFillStream): the reading's time.
pub fn report_fill(req: &pb::ReportFillRequest, now_ms: i64) -> ServiceResult<i64> {
    id("bin_id", &req.bin_id)?;
    percent("fill_percent", req.fill_percent)?;
    let at = required_time("time", req.time.as_ref())?;
    if at > now_ms + MAX_FUTURE_MS {
        return Err(ServiceError::invalid("time", "more than 5 minutes in the future"));
    }
    Ok(at)
}

/// What PlanRoutes asks for, validated.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub date_ms: i64,
    pub time_limit: Duration,
}

/// PlanRoutes.
pub fn plan_routes(req: &pb::PlanRoutesRequest) -> ServiceResult<PlanInput> {
    validate_request_id(&req.request_id)?;
    let date_ms = required_time("date", req.date.as_ref())?;
    id("depot_id", &req.depot_id)?;
    for (i, t) in req.truck_ids.iter().enumerate() {
        id(&format!("truck_ids[{i}]"), t)?;
        if req.truck_ids[..i].contains(t) {
            return Err(ServiceError::invalid(format!("truck_ids[{i}]"), "listed twice"));
        }
    }
    if req.truck_ids.len() > 1000 {
        return Err(ServiceError::invalid("truck_ids", "at most 1,000 trucks"));
    }
    if !req.threshold.is_finite() || !(1.0..=100.0).contains(&req.threshold) {
        return Err(ServiceError::invalid("threshold", "must be a percentage 1..100"));
    }
    let time_limit = match &req.time_limit {
        None => DEFAULT_TIME_LIMIT,
        Some(d) => {
            let d = fields::duration("time_limit", d)?;
            if !(MIN_TIME_LIMIT..=MAX_TIME_LIMIT).contains(&d) {
                return Err(ServiceError::invalid("time_limit", "must be 10 ms to 60 s"));
            }
            d
        }
    };
    if !req.landfill_id.is_empty() {
        id("landfill_id", &req.landfill_id)?;
    }
    if pb::WasteType::try_from(req.waste_type).is_err() {
        return Err(ServiceError::invalid("waste_type", "unknown waste type"));
    }
    Ok(PlanInput { date_ms, time_limit })
}

/// GetPlan.
pub fn get_plan(req: &pb::GetPlanRequest) -> ServiceResult<()> {
    id("plan_id", &req.plan_id)
}

/// StartRoute.
pub fn start_route(req: &pb::StartRouteRequest) -> ServiceResult<()> {
    id("route_id", &req.route_id)
}

/// RecordPickup.
pub fn record_pickup(req: &pb::RecordPickupRequest) -> ServiceResult<()> {
    validate_request_id(&req.request_id)?;
    id("route_id", &req.route_id)?;
    id("bin_id", &req.bin_id)?;
    if !req.weight_kg.is_finite() || !(0.0..=100_000.0).contains(&req.weight_kg) {
        return Err(ServiceError::invalid("weight_kg", "must be 0..100,000"));
    }
    Ok(())
}

/// SkipStop.
pub fn skip_stop(req: &pb::SkipStopRequest) -> ServiceResult<()> {
    id("route_id", &req.route_id)?;
    id("bin_id", &req.bin_id)?;
    fields::text("reason", &req.reason, 500, true)
}

/// TrackTruck (each ping): the ping's position and time.
pub fn ping(p: &pb::TruckPing, now_ms: i64) -> ServiceResult<((f64, f64), i64)> {
    id("truck_id", &p.truck_id)?;
    if !p.route_id.is_empty() {
        id("route_id", &p.route_id)?;
    }
    let at = location("position", p.position.as_ref())?;
    let time = required_time("time", p.time.as_ref())?;
    if time > now_ms + MAX_FUTURE_MS {
        return Err(ServiceError::invalid("time", "more than 5 minutes in the future"));
    }
    Ok((at, time))
}

/// WatchRoute.
pub fn watch_route(req: &pb::WatchRouteRequest) -> ServiceResult<()> {
    id("route_id", &req.route_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: ServiceResult<impl std::fmt::Debug>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => format!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn ids_and_locations() {
        assert!(id("x", "bin-1_A").is_ok());
        assert_eq!(field(id("x", "")), "x");
        assert_eq!(field(id("x", "a/b")), "x");
        assert_eq!(field(id("x", &"a".repeat(65))), "x");
        let bad = pb::LatLon { lat: 91.0, lon: 0.0 };
        assert_eq!(field(location("l", Some(&bad))), "l.lat");
        let bad = pb::LatLon { lat: 0.0, lon: f64::NAN };
        assert_eq!(field(location("l", Some(&bad))), "l.lon");
        assert_eq!(field(location("l", None)), "l");
    }

    #[test]
    fn plan_rules() {
        let good = pb::PlanRoutesRequest {
            request_id: "r1".into(),
            date: Some(prost_types::Timestamp { seconds: 1_800_000_000, nanos: 0 }),
            depot_id: "d1".into(),
            threshold: 70.0,
            ..Default::default()
        };
        assert!(plan_routes(&good).is_ok());
        assert_eq!(field(plan_routes(&pb::PlanRoutesRequest { threshold: 0.5, ..good.clone() })), "threshold");
        assert_eq!(
            field(plan_routes(&pb::PlanRoutesRequest { request_id: String::new(), ..good.clone() })),
            "request_id"
        );
        assert_eq!(field(plan_routes(&pb::PlanRoutesRequest { date: None, ..good.clone() })), "date");
        let long = prost_types::Duration { seconds: 61, nanos: 0 };
        assert_eq!(field(plan_routes(&pb::PlanRoutesRequest { time_limit: Some(long), ..good.clone() })), "time_limit");
        let dup = vec!["t1".to_string(), "t1".to_string()];
        assert_eq!(field(plan_routes(&pb::PlanRoutesRequest { truck_ids: dup, ..good })), "truck_ids[1]");
    }
}
