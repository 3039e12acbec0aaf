//! Field rules of every parking request, one function per request, checked before the store
//! is touched: INVALID_ARGUMENT naming the field (`lot.levels[1].spots[3].spot_id`) and the
//! reason. Windows are checked against the service clock's `now` and answered rounded outward
//! to quarter hours.

use std::collections::HashSet;

use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::fields;
use meshwork_proto::pb::parking::v1 as pb;

use crate::model::{LevelRecord, LotRecord, SpotKind, SpotRecord};
use crate::rules::{MAX_AHEAD_MS, MAX_LENGTH_MS, ceil_quarter, floor_quarter};

/// Most levels of a lot.
pub const MAX_LEVELS: usize = 100;
/// Most spots of a lot.
pub const MAX_SPOTS: usize = 10_000;
/// Largest hourly price.
pub const MAX_HOURLY_MINOR: i64 = 100_000_000;
/// Free spots listed by a search when the request gives no limit.
pub const DEFAULT_SEARCH_LIMIT: usize = 20;
/// Most free spots listed by a search.
pub const MAX_SEARCH_LIMIT: usize = 100;
/// Random base62 characters after `rsv_` in a reservation id.
pub const RESERVATION_ID_CHARS: usize = 20;
/// Most characters of a cancellation reason.
pub const MAX_REASON_CHARS: usize = 500;

/// Checks an id of `[a-z0-9-]{1,max}`.
fn slug(field: &str, value: &str, max: usize) -> ServiceResult<()> {
    if value.is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if value.len() > max || !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(ServiceError::invalid(field, format!("must match [a-z0-9-]{{1,{max}}}")));
    }
    Ok(())
}

/// Checks a lot id: `[a-z0-9-]{1,40}`.
pub fn lot_id(field: &str, value: &str) -> ServiceResult<()> {
    slug(field, value, 40)
}

/// Checks a spot id: `[a-z0-9-]{1,40}`.
pub fn spot_id(field: &str, value: &str) -> ServiceResult<()> {
    slug(field, value, 40)
}

/// Checks a reservation id: `rsv_` and 20 base62 characters.
pub fn reservation_id(value: &str) -> ServiceResult<()> {
    if value.is_empty() {
        return Err(ServiceError::invalid("reservation_id", "required"));
    }
    if !meshwork_common::is_random_id(value, "rsv_", RESERVATION_ID_CHARS) {
        return Err(ServiceError::invalid("reservation_id", "must be rsv_ and 20 letters or digits"));
    }
    Ok(())
}

/// Returns a spot type that must be given.
fn kind(field: &str, value: i32) -> ServiceResult<SpotKind> {
    match SpotKind::from_pb(value) {
        Some(k) => Ok(k),
        None if value == 0 => Err(ServiceError::invalid(field, "required: COMPACT, REGULAR, LARGE, EV or ACCESSIBLE")),
        None => Err(ServiceError::invalid(field, format!("unknown spot type {value}"))),
    }
}

/// Returns a spot type that may be UNSPECIFIED (`None`).
fn kind_opt(field: &str, value: i32) -> ServiceResult<Option<SpotKind>> {
    if value == 0 { Ok(None) } else { kind(field, value).map(Some) }
}

/// Returns a plate normalised (upper-case letters and digits): spaces and dashes dropped, 2 to
/// 10 characters left.
pub fn plate(field: &str, value: &str) -> ServiceResult<String> {
    if value.trim().is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if value.len() > 20 || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-') {
        return Err(ServiceError::invalid(field, "must be letters, digits, spaces or dashes (at most 20 characters)"));
    }
    let normal: String = value.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).collect();
    if !(2..=10).contains(&normal.len()) {
        return Err(ServiceError::invalid(field, "must have 2 to 10 letters and digits"));
    }
    Ok(normal)
}

/// Returns a time window `[start, end)` rounded outward to quarter hours, from either an
/// absolute start or a delay from `now`, and either an end or a length: the start no earlier
/// than the current quarter hour and at most 30 days ahead, the length at most 7 days.
pub fn window(
    start_time: Option<&prost_types::Timestamp>,
    start_in: Option<&prost_types::Duration>,
    end_time: Option<&prost_types::Timestamp>,
    length: Option<&prost_types::Duration>,
    now: i64,
) -> ServiceResult<(i64, i64)> {
    let raw_start = match (start_time, start_in) {
        (Some(_), Some(_)) => return Err(ServiceError::invalid("start_in", "give start_time or start_in, not both")),
        (None, None) => return Err(ServiceError::invalid("start_time", "required (or start_in)")),
        (Some(t), None) => fields::millis("start_time", t)?,
        (None, Some(d)) => {
            let d = fields::duration("start_in", d)?;
            if d.as_millis() > MAX_AHEAD_MS as u128 {
                return Err(ServiceError::invalid("start_in", "at most 30 days"));
            }
            now.saturating_add(d.as_millis() as i64)
        }
    };
    let field = if start_time.is_some() { "start_time" } else { "start_in" };
    let start = floor_quarter(raw_start);
    if start < floor_quarter(now) {
        return Err(ServiceError::invalid(field, "is in the past"));
    }
    if start > now.saturating_add(MAX_AHEAD_MS) {
        return Err(ServiceError::invalid(field, "at most 30 days ahead"));
    }
    let raw_end = match (end_time, length) {
        (Some(_), Some(_)) => return Err(ServiceError::invalid("duration", "give end_time or duration, not both")),
        (None, None) => return Err(ServiceError::invalid("end_time", "required (or duration)")),
        (Some(t), None) => fields::millis("end_time", t)?,
        (None, Some(d)) => {
            let d = fields::duration("duration", d)?;
            if d.is_zero() {
                return Err(ServiceError::invalid("duration", "must be positive"));
            }
            if d.as_millis() > MAX_LENGTH_MS as u128 {
                return Err(ServiceError::invalid("duration", "at most 7 days"));
            }
            raw_start.saturating_add(d.as_millis() as i64)
        }
    };
    let field = if end_time.is_some() { "end_time" } else { "duration" };
    let end = ceil_quarter(raw_end);
    if end <= start || raw_end <= raw_start {
        return Err(ServiceError::invalid(field, "must end after the start"));
    }
    if end - start > MAX_LENGTH_MS {
        return Err(ServiceError::invalid(field, "at most 7 days after the start"));
    }
    Ok((start, end))
}

/// Checks a CreateLot request and returns the lot it creates (blocks expanded into spots).
pub fn create_lot(req: &pb::CreateLotRequest, now: i64) -> ServiceResult<LotRecord> {
    meshwork_common::validate_request_id(&req.request_id)?;
    let Some(lot) = &req.lot else {
        return Err(ServiceError::invalid("lot", "required"));
    };
    lot_id("lot.lot_id", &lot.lot_id)?;
    fields::text("lot.name", &lot.name, 100, true)?;
    fields::currency("lot.currency", &lot.currency)?;
    let mut prices = Vec::with_capacity(lot.prices.len());
    for (i, p) in lot.prices.iter().enumerate() {
        let k = kind(&format!("lot.prices[{i}].type"), p.r#type)?;
        if prices.iter().any(|(seen, _)| *seen == k) {
            return Err(ServiceError::invalid(
                format!("lot.prices[{i}].type"),
                format!("{} is priced twice", k.name()),
            ));
        }
        if !(0..=MAX_HOURLY_MINOR).contains(&p.hourly_minor) {
            return Err(ServiceError::invalid(format!("lot.prices[{i}].hourly_minor"), "must be 0 to 100,000,000"));
        }
        prices.push((k, p.hourly_minor));
    }
    if lot.levels.is_empty() {
        return Err(ServiceError::invalid("lot.levels", "at least one level"));
    }
    if lot.levels.len() > MAX_LEVELS {
        return Err(ServiceError::invalid("lot.levels", "at most 100 levels"));
    }
    let mut level_ids = HashSet::new();
    let mut spot_ids = HashSet::new();
    let mut total = 0usize;
    let mut levels = Vec::with_capacity(lot.levels.len());
    for (li, level) in lot.levels.iter().enumerate() {
        let at = format!("lot.levels[{li}]");
        slug(&format!("{at}.level_id"), &level.level_id, 20)?;
        if !level_ids.insert(level.level_id.as_str()) {
            return Err(ServiceError::invalid(format!("{at}.level_id"), "appears twice"));
        }
        fields::text(&format!("{at}.name"), &level.name, 100, false)?;
        let priced = |field: String, k: SpotKind| -> ServiceResult<()> {
            if prices.iter().any(|(p, _)| *p == k) {
                Ok(())
            } else {
                Err(ServiceError::invalid(field, format!("the lot has no price for {}", k.name())))
            }
        };
        let mut spots = Vec::new();
        for (si, spot) in level.spots.iter().enumerate() {
            let field = format!("{at}.spots[{si}]");
            spot_id(&format!("{field}.spot_id"), &spot.spot_id)?;
            let k = kind(&format!("{field}.type"), spot.r#type)?;
            priced(format!("{field}.type"), k)?;
            if !spot_ids.insert(spot.spot_id.clone()) {
                return Err(ServiceError::invalid(format!("{field}.spot_id"), "appears twice in the lot"));
            }
            spots.push(SpotRecord { id: spot.spot_id.clone(), kind: k });
        }
        for (bi, block) in level.blocks.iter().enumerate() {
            let field = format!("{at}.blocks[{bi}]");
            let k = kind(&format!("{field}.type"), block.r#type)?;
            priced(format!("{field}.type"), k)?;
            if !(1..=MAX_SPOTS as i32).contains(&block.count) {
                return Err(ServiceError::invalid(format!("{field}.count"), "must be 1 to 10,000"));
            }
            if total + spots.len() + block.count as usize > MAX_SPOTS {
                return Err(ServiceError::invalid(format!("{field}.count"), "the lot would have over 10,000 spots"));
            }
            let mut n = 0;
            let mut made = 0;
            while made < block.count {
                n += 1;
                let id = format!("{}-{}{n}", level.level_id, k.letter());
                if spot_ids.insert(id.clone()) {
                    spots.push(SpotRecord { id, kind: k });
                    made += 1;
                }
            }
        }
        total += spots.len();
        if total > MAX_SPOTS {
            return Err(ServiceError::invalid(format!("{at}.spots"), "the lot would have over 10,000 spots"));
        }
        levels.push(LevelRecord { id: level.level_id.clone(), name: level.name.clone(), spots });
    }
    if total == 0 {
        return Err(ServiceError::invalid("lot.levels", "the lot needs at least one spot"));
    }
    Ok(LotRecord {
        id: lot.lot_id.clone(),
        name: lot.name.clone(),
        currency: lot.currency.clone(),
        prices,
        levels,
        create_ms: now,
    })
}

/// Checks a GetLot request.
pub fn get_lot(req: &pb::GetLotRequest) -> ServiceResult<()> {
    lot_id("lot_id", &req.lot_id)
}

/// A checked SearchAvailability.
#[derive(Debug, Clone)]
pub struct Search {
    pub kind: Option<SpotKind>,
    pub start: i64,
    pub end: i64,
    pub limit: usize,
}

/// Checks a SearchAvailability request.
pub fn search(req: &pb::SearchAvailabilityRequest, now: i64) -> ServiceResult<Search> {
    lot_id("lot_id", &req.lot_id)?;
    let kind = kind_opt("type", req.r#type)?;
    let (start, end) =
        window(req.start_time.as_ref(), req.start_in.as_ref(), req.end_time.as_ref(), req.duration.as_ref(), now)?;
    let limit = fields::page_size_within("limit", req.limit, DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT)?;
    Ok(Search { kind, start, end, limit })
}

/// What a reservation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any free spot of a type.
    Kind(SpotKind),
    /// This spot.
    Spot(String),
}

/// A checked Reserve.
#[derive(Debug, Clone)]
pub struct Reserve {
    pub target: Target,
    pub start: i64,
    pub end: i64,
    pub plate: String,
}

/// Checks a Reserve request.
pub fn reserve(req: &pb::ReserveRequest, now: i64) -> ServiceResult<Reserve> {
    meshwork_common::validate_request_id(&req.request_id)?;
    lot_id("lot_id", &req.lot_id)?;
    let target = match (req.r#type, req.spot_id.is_empty()) {
        (0, true) => return Err(ServiceError::invalid("type", "required (or spot_id)")),
        (t, false) if t != 0 => return Err(ServiceError::invalid("spot_id", "give type or spot_id, not both")),
        (t, true) => Target::Kind(kind("type", t)?),
        (_, false) => {
            spot_id("spot_id", &req.spot_id)?;
            Target::Spot(req.spot_id.clone())
        }
    };
    let (start, end) =
        window(req.start_time.as_ref(), req.start_in.as_ref(), req.end_time.as_ref(), req.duration.as_ref(), now)?;
    let plate = plate("plate", &req.plate)?;
    if !req.user_id.is_empty() {
        fields::user_id("user_id", &req.user_id)?;
    }
    Ok(Reserve { target, start, end, plate })
}

/// Checks a CancelReservation request.
pub fn cancel(req: &pb::CancelReservationRequest) -> ServiceResult<()> {
    reservation_id(&req.reservation_id)?;
    fields::text("reason", &req.reason, MAX_REASON_CHARS, false)
}

/// Whose reservations a listing reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListBy {
    Plate(String),
    Lot(String),
}

/// A checked ListReservations.
#[derive(Debug, Clone)]
pub struct List {
    pub by: ListBy,
    /// Starts from (inclusive).
    pub from: i64,
    /// Starts before (exclusive).
    pub to: i64,
    pub page_size: usize,
}

/// Checks a ListReservations request (the page token is checked against the query later).
pub fn list(req: &pb::ListReservationsRequest) -> ServiceResult<List> {
    let by = match (req.plate.is_empty(), req.lot_id.is_empty()) {
        (true, true) => return Err(ServiceError::invalid("plate", "give plate or lot_id")),
        (false, false) => return Err(ServiceError::invalid("lot_id", "give plate or lot_id, not both")),
        (false, true) => ListBy::Plate(plate("plate", &req.plate)?),
        (true, false) => {
            lot_id("lot_id", &req.lot_id)?;
            ListBy::Lot(req.lot_id.clone())
        }
    };
    let from = match &req.start_time {
        Some(t) => fields::millis("start_time", t)?.max(0),
        None => 0,
    };
    let to = match &req.end_time {
        Some(t) => fields::millis("end_time", t)?,
        None => i64::MAX,
    };
    if to <= from {
        return Err(ServiceError::invalid("end_time", "must be after start_time"));
    }
    let page_size = fields::page_size("page_size", req.page_size)?;
    Ok(List { by, from, to, page_size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{HOUR_MS, QUARTER_MS};
    use meshwork_common::fields::timestamp;

    const NOW: i64 = 1_800_000_000_000 - 1_800_000_000_000 % QUARTER_MS + 7 * 60 * 1000;

    fn field<T: std::fmt::Debug>(r: ServiceResult<T>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    fn secs(s: i64) -> prost_types::Duration {
        prost_types::Duration { seconds: s, nanos: 0 }
    }

    #[test]
    fn windows_round_outward_and_stay_in_bounds() {
        let start = timestamp(NOW + HOUR_MS);
        let (s, e) = window(Some(&start), None, None, Some(&secs(3600)), NOW).unwrap();
        assert_eq!((s % QUARTER_MS, e % QUARTER_MS), (0, 0));
        assert!(s <= NOW + HOUR_MS && e >= NOW + 2 * HOUR_MS && e - s == HOUR_MS + QUARTER_MS);
        let (s, _) = window(None, Some(&secs(0)), None, Some(&secs(60)), NOW).unwrap();
        assert_eq!(s, floor_quarter(NOW), "now is the current quarter hour");
        assert_eq!(field(window(None, None, None, Some(&secs(60)), NOW)), "start_time");
        assert_eq!(field(window(Some(&start), Some(&secs(1)), None, Some(&secs(60)), NOW)), "start_in");
        assert_eq!(field(window(Some(&timestamp(NOW - HOUR_MS)), None, None, Some(&secs(60)), NOW)), "start_time");
        assert_eq!(field(window(None, Some(&secs(31 * 86400)), None, Some(&secs(60)), NOW)), "start_in");
        assert_eq!(field(window(None, Some(&secs(-1)), None, Some(&secs(60)), NOW)), "start_in");
        assert_eq!(field(window(Some(&start), None, None, None, NOW)), "end_time");
        assert_eq!(field(window(Some(&start), None, Some(&start), None, NOW)), "end_time");
        assert_eq!(field(window(Some(&start), None, None, Some(&secs(0)), NOW)), "duration");
        assert_eq!(field(window(Some(&start), None, None, Some(&secs(8 * 86400)), NOW)), "duration");
        assert_eq!(field(window(Some(&start), None, Some(&start), Some(&secs(60)), NOW)), "duration");
        let far = timestamp(NOW + 8 * 86_400_000);
        assert_eq!(field(window(Some(&start), None, Some(&far), None, NOW)), "end_time");
    }

    #[test]
    fn plates_normalise() {
        assert_eq!(plate("p", "ab-12 cd").unwrap(), "AB12CD");
        assert_eq!(field(plate("p", "")), "p");
        assert_eq!(field(plate("p", "a")), "p");
        assert_eq!(field(plate("p", "AB/12")), "p");
        assert_eq!(field(plate("p", "ABCDEFGHIJK")), "p");
    }

    #[test]
    fn lots_expand_their_blocks() {
        let req = pb::CreateLotRequest {
            request_id: "r".into(),
            lot: Some(pb::Lot {
                lot_id: "main".into(),
                name: "Main".into(),
                currency: "USD".into(),
                prices: vec![pb::Price { r#type: pb::SpotType::Regular as i32, hourly_minor: 400 }],
                levels: vec![pb::Level {
                    level_id: "l1".into(),
                    name: String::new(),
                    spots: vec![pb::Spot {
                        spot_id: "l1-r2".into(),
                        r#type: pb::SpotType::Regular as i32,
                        level_id: String::new(),
                    }],
                    blocks: vec![pb::SpotBlock { r#type: pb::SpotType::Regular as i32, count: 3 }],
                }],
                ..Default::default()
            }),
        };
        let lot = create_lot(&req, NOW).unwrap();
        let ids: Vec<&str> = lot.spots().map(|(_, s)| s.id.as_str()).collect();
        assert_eq!(ids, ["l1-r2", "l1-r1", "l1-r3", "l1-r4"]);
        let mut ev = req.clone();
        if let Some(l) = ev.lot.as_mut() {
            l.levels[0].blocks[0].r#type = pb::SpotType::Ev as i32;
        }
        assert_eq!(field(create_lot(&ev, NOW)), "lot.levels[0].blocks[0].type");
    }
}
