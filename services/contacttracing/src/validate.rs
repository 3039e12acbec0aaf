//! Request checks, before anything is read or written: each error names the field and says
//! what it accepts. The checks against the clock take `now` explicitly.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use meshwork_common::fields::millis;
use meshwork_common::{ServiceError, ServiceResult, is_random_id, validate_request_id};
use meshwork_gaen::crypto::{INTERVAL_SECONDS, TEK_ROLLING_PERIOD};
use meshwork_proto::pb::contacttracing::v1 as pb;

/// Days back a key, an onset or an export may reach.
pub const RETENTION_DAYS: i64 = 14;
/// Intervals in [`RETENTION_DAYS`].
pub const RETENTION_INTERVALS: i64 = RETENTION_DAYS * TEK_ROLLING_PERIOD as i64;
/// Most keys in one upload.
pub const MAX_KEYS: usize = 30;
/// The geohash alphabet.
pub const GEOHASH_ALPHABET: &str = "0123456789bcdefghjkmnpqrstuvwxyz";
/// Prefix and random characters of a token.
pub const TOKEN_PREFIX: &str = "vt_";
/// Random characters of a token.
pub const TOKEN_CHARS: usize = 32;
/// Prefix of a revision token.
pub const REVISION_PREFIX: &str = "rv_";
/// Random characters of a revision token.
pub const REVISION_CHARS: usize = 24;

/// The ENIntervalNumber of `ms` (Unix milliseconds).
pub fn interval_of_ms(ms: i64) -> i64 {
    ms.div_euclid(1000 * INTERVAL_SECONDS)
}

fn is_geohash(s: &str) -> bool {
    s.chars().all(|c| GEOHASH_ALPHABET.contains(c))
}

/// What IssueCode keeps of its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub test_type: pb::TestType,
    pub onset_interval: u32,
    pub cell: String,
}

/// Checks IssueCode.
pub fn issue_code(req: &pb::IssueCodeRequest, now_ms: i64) -> ServiceResult<Issue> {
    validate_request_id(&req.request_id)?;
    let test_type = match pb::TestType::try_from(req.test_type) {
        Ok(t @ (pb::TestType::Confirmed | pb::TestType::Likely)) => t,
        Ok(pb::TestType::Negative) => {
            return Err(ServiceError::invalid("test_type", "a NEGATIVE test cannot publish keys"));
        }
        _ => return Err(ServiceError::invalid("test_type", "must be TEST_TYPE_CONFIRMED or TEST_TYPE_LIKELY")),
    };
    let onset_interval = match &req.symptom_onset_time {
        None => 0,
        Some(ts) => onset("symptom_onset_time", interval_of_ms(millis("symptom_onset_time", ts)?), now_ms)?,
    };
    if !(5..=12).contains(&req.geohash.len()) || !is_geohash(&req.geohash) {
        return Err(ServiceError::invalid(
            "geohash",
            "must be 5 to 12 characters of the geohash alphabet (0-9, b-z without a, i, l, o)",
        ));
    }
    Ok(Issue { test_type, onset_interval, cell: req.geohash[..5].to_string() })
}

fn onset(field: &str, interval: i64, now_ms: i64) -> ServiceResult<u32> {
    let now = interval_of_ms(now_ms);
    if interval > now {
        return Err(ServiceError::invalid(field, "is in the future"));
    }
    if interval < now - RETENTION_INTERVALS {
        return Err(ServiceError::invalid(field, "is more than 14 days back"));
    }
    u32::try_from(interval).map_err(|_| ServiceError::invalid(field, "is before 1970"))
}

/// Checks a verification code: 8 digits.
pub fn code(code: &str) -> ServiceResult<()> {
    if code.len() != 8 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ServiceError::invalid("code", "must be the 8 digits of IssueCode"));
    }
    Ok(())
}

/// Checks GetCertificate; returns the HMAC's bytes.
pub fn get_certificate(req: &pb::GetCertificateRequest) -> ServiceResult<Vec<u8>> {
    if !is_random_id(&req.token, TOKEN_PREFIX, TOKEN_CHARS) {
        return Err(ServiceError::invalid("token", "must be the token of VerifyCode (vt_ and 32 base62 characters)"));
    }
    match STANDARD.decode(&req.ekey_hmac) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(ServiceError::invalid("ekey_hmac", "must be the standard base64 of a 32-byte HMAC-SHA256")),
    }
}

/// One key of an upload, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadKey {
    pub key: [u8; 16],
    pub rolling_start: u32,
    pub rolling_period: u32,
    pub transmission_risk: i32,
}

/// Checks the fields of PublishKeys that need no clock.
pub fn publish_fields(req: &pb::PublishKeysRequest) -> ServiceResult<Vec<UploadKey>> {
    if req.keys.is_empty() || req.keys.len() > MAX_KEYS {
        return Err(ServiceError::invalid("keys", format!("must hold 1 to {MAX_KEYS} keys")));
    }
    let mut keys = Vec::with_capacity(req.keys.len());
    for (i, k) in req.keys.iter().enumerate() {
        let key: [u8; 16] = k
            .key_data
            .as_slice()
            .try_into()
            .map_err(|_| ServiceError::invalid(format!("keys[{i}].key_data"), "must be exactly 16 bytes"))?;
        let rolling_start = u32::try_from(k.rolling_start_interval_number).map_err(|_| {
            ServiceError::invalid(format!("keys[{i}].rolling_start_interval_number"), "must not be negative")
        })?;
        let rolling_period = match k.rolling_period {
            0 => TEK_ROLLING_PERIOD,
            p if (1..=TEK_ROLLING_PERIOD as i32).contains(&p) => p as u32,
            _ => return Err(ServiceError::invalid(format!("keys[{i}].rolling_period"), "must be 1 to 144")),
        };
        if !(0..=8).contains(&k.transmission_risk) {
            return Err(ServiceError::invalid(format!("keys[{i}].transmission_risk"), "must be 0 to 8"));
        }
        keys.push(UploadKey { key, rolling_start, rolling_period, transmission_risk: k.transmission_risk });
    }
    if req.certificate.is_empty() || req.certificate.len() > 8192 {
        return Err(ServiceError::invalid("certificate", "must be the certificate of GetCertificate"));
    }
    if !(16..=64).contains(&req.hmac_key.len()) {
        return Err(ServiceError::invalid("hmac_key", "must be 16 to 64 bytes"));
    }
    if req.symptom_onset_interval < 0 {
        return Err(ServiceError::invalid("symptom_onset_interval", "must not be negative"));
    }
    if !req.revision_token.is_empty() && !is_random_id(&req.revision_token, REVISION_PREFIX, REVISION_CHARS) {
        return Err(ServiceError::invalid(
            "revision_token",
            "must be empty or the revision_token of an earlier answer",
        ));
    }
    if req.device_id.is_empty() || req.device_id.len() > 128 || req.device_id.chars().any(|c| c.is_control()) {
        return Err(ServiceError::invalid("device_id", "must be 1 to 128 printable characters"));
    }
    Ok(keys)
}

/// Checks the upload against the clock: no key in the future, none ending more than 14 days
/// back, no two periods overlapping; the onset within 14 days. Returns the onset interval (0:
/// none given).
pub fn publish_times(req: &pb::PublishKeysRequest, keys: &[UploadKey], now_ms: i64) -> ServiceResult<u32> {
    let now = interval_of_ms(now_ms);
    for (i, k) in keys.iter().enumerate() {
        let field = format!("keys[{i}].rolling_start_interval_number");
        if i64::from(k.rolling_start) > now {
            return Err(ServiceError::invalid(field, "is in the future"));
        }
        if i64::from(k.rolling_start) + i64::from(k.rolling_period) <= now - RETENTION_INTERVALS {
            return Err(ServiceError::invalid(field, "ends more than 14 days back"));
        }
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|i| keys[*i].rolling_start);
    for pair in order.windows(2) {
        let (a, b) = (&keys[pair[0]], &keys[pair[1]]);
        if a.rolling_start + a.rolling_period > b.rolling_start {
            return Err(ServiceError::invalid(
                format!("keys[{}].rolling_start_interval_number", pair[1]),
                format!("overlaps the period of keys[{}]", pair[0]),
            ));
        }
    }
    if req.symptom_onset_interval == 0 {
        return Ok(0);
    }
    onset("symptom_onset_interval", i64::from(req.symptom_onset_interval), now_ms)
}

/// Checks an export id: the digits of a window start (a multiple of `window_s`).
pub fn export_id(id: &str, window_s: u64) -> ServiceResult<u64> {
    match id.parse::<u64>() {
        Ok(start) if !id.starts_with('+') && start % window_s == 0 => Ok(start),
        _ => Err(ServiceError::invalid("export_id", "must be an export_id of ListExports")),
    }
}

/// Checks AreaCounts' prefix.
pub fn geohash_prefix(prefix: &str) -> ServiceResult<()> {
    if !(1..=5).contains(&prefix.len()) || !is_geohash(prefix) {
        return Err(ServiceError::invalid(
            "geohash_prefix",
            "must be 1 to 5 characters of the geohash alphabet (0-9, b-z without a, i, l, o)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(start: i32, period: i32) -> pb::ExposureKey {
        pb::ExposureKey {
            key_data: vec![1; 16],
            rolling_start_interval_number: start,
            rolling_period: period,
            transmission_risk: 0,
        }
    }

    #[test]
    fn upload_times() {
        let now_ms = 2_650_000 * 600_000 + 5;
        let req = |keys: Vec<pb::ExposureKey>| pb::PublishKeysRequest {
            keys,
            certificate: "c".into(),
            hmac_key: vec![0; 16],
            device_id: "d".into(),
            ..Default::default()
        };
        let ok = req(vec![key(2_650_000 - 144, 144), key(2_650_000, 0)]);
        let keys = publish_fields(&ok).unwrap();
        assert_eq!(keys[1].rolling_period, 144);
        assert_eq!(publish_times(&ok, &keys, now_ms), Ok(0));
        let future = req(vec![key(2_650_001, 144)]);
        let err = publish_times(&future, &publish_fields(&future).unwrap(), now_ms).unwrap_err();
        assert!(err.to_string().contains("keys[0].rolling_start_interval_number: is in the future"), "{err}");
        let old = req(vec![key(2_650_000 - 15 * 144, 144)]);
        let err = publish_times(&old, &publish_fields(&old).unwrap(), now_ms).unwrap_err();
        assert!(err.to_string().contains("14 days"), "{err}");
        let overlap = req(vec![key(2_650_000 - 100, 144), key(2_650_000 - 200, 144)]);
        let err = publish_times(&overlap, &publish_fields(&overlap).unwrap(), now_ms).unwrap_err();
        assert!(
            err.to_string().contains("keys[0].rolling_start_interval_number: overlaps the period of keys[1]"),
            "{err}"
        );
        assert_eq!(export_id("7200", 3600), Ok(7200));
        assert!(export_id("7201", 3600).is_err() && export_id("x", 3600).is_err() && export_id("+7200", 3600).is_err());
        assert!(geohash_prefix("tdr1v").is_ok() && geohash_prefix("tdr1va").is_err() && geohash_prefix("ab").is_err());
    }
}
