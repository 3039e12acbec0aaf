//! The key server over the Store, independent of gRPC. The verification flow (IssueCode ->
//! VerifyCode -> GetCertificate) keeps one record per code and per token, each taken once in a
//! read-modify-write transaction, so a code or a token is used once under any concurrency.
//! PublishKeys checks everything it can before touching the store (fields, times, the
//! certificate's signature and its HMAC over the keys), then in one transaction: the code's
//! upload record (a second upload under the same certificate replays the first answer: the
//! idempotent retry), the device's daily counter (RESOURCE_EXHAUSTED past the limit), the keys
//! with their expiry index, the export windows' markers and the area report. A key goes into
//! the export window of its arrival, or, while it is still in use (today's key), into the
//! window 2 hours after its rolling period ends ([`EMBARGO_MS`]). Exports are built
//! on demand from the keys that arrived in a closed window and have not expired, sorted by key
//! bytes and signed with RFC 6979 (deterministic) ECDSA, so every replica serves the same
//! bytes. The signing keys are made by the first replica that needs them and kept in the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use meshwork_common::caller::{ADMIN_ROLE, Caller};
use meshwork_common::fields::{millis, page_size_within, timestamp};
use meshwork_common::settings::Settings;
use meshwork_common::{Clock, Fingerprint, Idempotency, Record, ServiceError, ServiceResult, random_id};
use meshwork_gaen::crypto::TEK_ROLLING_PERIOD;
use meshwork_gaen::export::{self as gx, ReportType};
use meshwork_gaen::verification::{HmacKey, verify_tek_hmac};
use meshwork_proto::pb::contacttracing::v1 as pb;
use meshwork_storage::{Condition, Direction, DynStore, KeyRange, Mutation, StoreError, scan_all, transact};
use p256::ecdsa::SigningKey;
use rand::Rng;

use crate::certificate::{self, Claims};
use crate::keys::{self, Keys};
use crate::model::{CodeRecord, SigningRecord, StoredKey, TokenRecord, UploadRecord};
use crate::validate::{self, RETENTION_DAYS, UploadKey};

/// The role that may issue verification codes (besides `admin`).
pub const HEALTH_AUTHORITY_ROLE: &str = "health_authority";
/// How long a code is accepted.
pub const CODE_LIFETIME_MS: i64 = 60 * 60 * 1000;
/// How long a token is accepted.
pub const TOKEN_LIFETIME_MS: i64 = 60 * 60 * 1000;
/// How long a certificate is accepted.
pub const CERTIFICATE_LIFETIME_S: i64 = 15 * 60;
const DAY_MS: i64 = 86_400_000;
const RETENTION_MS: i64 = RETENTION_DAYS * DAY_MS;
/// A key is exported no earlier than this long after the end of its rolling period (Apple's
/// key server requirements: at least 2 hours).
pub const EMBARGO_MS: i64 = 2 * 60 * 60 * 1000;
/// Entries the sweeper handles per pass.
const SWEEP_BATCH: usize = 200;

/// Tunables (settings `contacttracing.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Length of an export window (`contacttracing.export_window_s`, default 3600).
    pub export_window_s: u64,
    /// Uploads one device may make per UTC day (`contacttracing.uploads_per_device_per_day`,
    /// default 3).
    pub uploads_per_device_per_day: u32,
    /// The exports' region (`contacttracing.region`, default `IN`).
    pub region: String,
    /// SignatureInfo.verification_key_id (`contacttracing.key_id`, default `404`, India's MCC).
    pub verification_key_id: String,
    /// SignatureInfo.verification_key_version (`contacttracing.key_version`, default `v1`).
    pub verification_key_version: String,
    /// How often each replica sweeps expired keys (`contacttracing.sweep_interval_s`, 60).
    pub sweep_interval: Duration,
    /// The key root (default `contacttracing`; a test may give each case a root of its own).
    pub root: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            export_window_s: 3600,
            uploads_per_device_per_day: 3,
            region: "IN".into(),
            verification_key_id: "404".into(),
            verification_key_version: "v1".into(),
            sweep_interval: Duration::from_secs(60),
            root: keys::SERVICE.into(),
        }
    }
}

impl Config {
    /// Reads the `contacttracing.*` settings over the defaults.
    pub fn from_settings(settings: &Settings) -> Config {
        let d = Config::default();
        Config {
            export_window_s: settings.get_or("contacttracing.export_window_s", d.export_window_s).clamp(10, 86_400),
            uploads_per_device_per_day: settings
                .get_or("contacttracing.uploads_per_device_per_day", d.uploads_per_device_per_day)
                .max(1),
            region: settings.get_or("contacttracing.region", d.region),
            verification_key_id: settings.get_or("contacttracing.key_id", d.verification_key_id),
            verification_key_version: settings.get_or("contacttracing.key_version", d.verification_key_version),
            sweep_interval: Duration::from_secs(settings.get_or("contacttracing.sweep_interval_s", 60u64).max(1)),
            root: d.root,
        }
    }
}

/// The two signing keys.
#[derive(Clone)]
pub struct Signers {
    /// Signs export batches.
    pub export: SigningKey,
    /// Signs certificates.
    pub certificate: SigningKey,
}

/// The key server.
pub struct ContactTracing {
    store: DynStore,
    clock: Arc<dyn Clock>,
    config: Config,
    keys: Keys,
    idempotency: Idempotency,
    signers: tokio::sync::OnceCell<Signers>,
}

impl std::fmt::Debug for ContactTracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactTracing").field("config", &self.config).finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

fn signing_key(text: &str) -> ServiceResult<SigningKey> {
    unhex(text)
        .and_then(|b| SigningKey::from_slice(&b).ok())
        .ok_or_else(|| ServiceError::Internal("the stored signing key is unreadable".into()))
}

fn ttl_until(expire_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(expire_ms - now_ms).unwrap_or(0).max(1000))
}

fn test_type(t: i32) -> pb::TestType {
    pb::TestType::try_from(t).unwrap_or(pb::TestType::Unspecified)
}

fn onset_time(interval: u32) -> Option<prost_types::Timestamp> {
    (interval > 0).then(|| timestamp(i64::from(interval) * 600_000))
}

impl ContactTracing {
    /// Returns the service on `store`, timed by `clock`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, config: Config) -> Self {
        ContactTracing {
            idempotency: Idempotency::new(store.clone(), &config.root).with_clock(clock.clone()),
            keys: Keys::new(config.root.clone()),
            store,
            clock,
            config,
            signers: tokio::sync::OnceCell::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The signing keys: the stored ones, or new ones stored by the first replica to get here.
    pub async fn signers(&self) -> ServiceResult<&Signers> {
        self.signers
            .get_or_try_init(|| async {
                for _ in 0..3 {
                    if let Some(stored) = self.store.get(&self.keys.signing()).await? {
                        let record = SigningRecord::decode(&stored.value)?;
                        return Ok(Signers {
                            export: signing_key(&record.export_key_hex)?,
                            certificate: signing_key(&record.certificate_key_hex)?,
                        });
                    }
                    let record = SigningRecord {
                        export_key_hex: hex(&gx::generate_signing_key().to_bytes()),
                        certificate_key_hex: hex(&gx::generate_signing_key().to_bytes()),
                        create_time_ms: self.clock.now_ms(),
                    };
                    let write = self
                        .store
                        .write(
                            vec![Condition::Absent(self.keys.signing())],
                            vec![Mutation::put(self.keys.signing(), record.encode()?)],
                        )
                        .await;
                    match write {
                        // Another replica stored its keys first: read them on the next turn.
                        Ok(_) | Err(StoreError::Conflict { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(ServiceError::Unavailable("the signing keys could not be read or made; retry".into()))
            })
            .await
    }

    /// IssueCode: a fresh 8-digit code, valid 1 h, for a health-authority caller.
    pub async fn issue_code(
        &self,
        req: &pb::IssueCodeRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::IssueCodeResponse> {
        let caller = caller.ok_or_else(|| {
            ServiceError::Unauthenticated("IssueCode needs the API key or token of a health-authority user".into())
        })?;
        if !caller.has_role(HEALTH_AUTHORITY_ROLE) && !caller.has_role(ADMIN_ROLE) {
            return Err(ServiceError::PermissionDenied(format!(
                "IssueCode needs the role \"{HEALTH_AUTHORITY_ROLE}\" (or \"{ADMIN_ROLE}\")"
            )));
        }
        let now = self.clock.now_ms();
        let issue = validate::issue_code(req, now)?;
        self.idempotency
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                let issue = issue.clone();
                let issuer = caller.subject.clone();
                Box::pin(async move {
                    let code = format!("{:08}", rand::rng().random_range(0..100_000_000u32));
                    let key = self.keys.code(&code);
                    // Another live code with these digits makes this a conflict: a rerun draws anew.
                    tx.require(Condition::Absent(key.clone()));
                    let record = CodeRecord {
                        code_id: random_id("cd_", 20),
                        test_type: issue.test_type as i32,
                        onset_interval: issue.onset_interval,
                        cell: issue.cell,
                        issuer,
                        issue_time_ms: now,
                        expire_time_ms: now + CODE_LIFETIME_MS,
                        used: false,
                    };
                    tx.put_with_ttl(key, record.encode()?, ttl_until(record.expire_time_ms + DAY_MS, now));
                    Ok(pb::IssueCodeResponse { code, expire_time: Some(timestamp(record.expire_time_ms)) })
                })
            })
            .await
    }

    /// VerifyCode: takes the code (once) and answers a token.
    pub async fn verify_code(&self, req: &pb::VerifyCodeRequest) -> ServiceResult<pb::VerifyCodeResponse> {
        validate::code(&req.code)?;
        let now = self.clock.now_ms();
        transact(&self.store, |tx| {
            Box::pin(async move {
                let key = self.keys.code(&req.code);
                let Some(stored) = tx.get(&key).await? else {
                    return Err(ServiceError::not_found(format!("verification code {}", req.code)));
                };
                let mut code = CodeRecord::decode(&stored.value)?;
                if code.used {
                    return Err(ServiceError::FailedPrecondition(
                        "code: this verification code was used already (a code is single use)".into(),
                    ));
                }
                if code.expire_time_ms <= now {
                    return Err(ServiceError::FailedPrecondition("code: this verification code expired".into()));
                }
                code.used = true;
                tx.put_with_ttl(key, code.encode()?, ttl_until(code.expire_time_ms + DAY_MS, now));
                let token = random_id(validate::TOKEN_PREFIX, validate::TOKEN_CHARS);
                let record = TokenRecord {
                    code_id: code.code_id.clone(),
                    test_type: code.test_type,
                    onset_interval: code.onset_interval,
                    cell: code.cell.clone(),
                    expire_time_ms: now + TOKEN_LIFETIME_MS,
                    ekey_hmac: None,
                    certificate: None,
                    certificate_expire_ms: 0,
                };
                tx.require(Condition::Absent(self.keys.token(&token)));
                tx.put_with_ttl(
                    self.keys.token(&token),
                    record.encode()?,
                    ttl_until(record.expire_time_ms + DAY_MS, now),
                );
                Ok(pb::VerifyCodeResponse {
                    token,
                    test_type: code.test_type,
                    symptom_onset_time: onset_time(code.onset_interval),
                    expire_time: Some(timestamp(record.expire_time_ms)),
                })
            })
        })
        .await
    }

    /// GetCertificate: takes the token (once; the same HMAC again answers the same
    /// certificate) and answers a certificate over the HMAC.
    pub async fn get_certificate(&self, req: &pb::GetCertificateRequest) -> ServiceResult<pb::GetCertificateResponse> {
        let hmac = validate::get_certificate(req)?;
        let tekhmac = STANDARD.encode(&hmac);
        let signers = self.signers().await?;
        let now = self.clock.now_ms();
        transact(&self.store, |tx| {
            let tekhmac = tekhmac.clone();
            Box::pin(async move {
                let key = self.keys.token(&req.token);
                let Some(stored) = tx.get(&key).await? else {
                    return Err(ServiceError::not_found("verification token"));
                };
                let mut token = TokenRecord::decode(&stored.value)?;
                if let Some(certificate) = &token.certificate {
                    if token.ekey_hmac.as_deref() == Some(tekhmac.as_str()) && token.certificate_expire_ms > now {
                        return Ok(pb::GetCertificateResponse {
                            certificate: certificate.clone(),
                            expire_time: Some(timestamp(token.certificate_expire_ms)),
                        });
                    }
                    return Err(ServiceError::FailedPrecondition(
                        "token: this token was used already for another HMAC (a token is single use)".into(),
                    ));
                }
                if token.expire_time_ms <= now {
                    return Err(ServiceError::FailedPrecondition("token: this token expired".into()));
                }
                let now_s = now.div_euclid(1000);
                let claims = Claims {
                    iss: certificate::ISSUER.into(),
                    aud: certificate::AUDIENCE.into(),
                    iat: now_s,
                    exp: now_s + CERTIFICATE_LIFETIME_S,
                    jti: token.code_id.clone(),
                    tekhmac: tekhmac.clone(),
                    report_type: if test_type(token.test_type) == pb::TestType::Likely {
                        "likely"
                    } else {
                        "confirmed"
                    }
                    .into(),
                    symptom_onset_interval: token.onset_interval,
                    area: token.cell.clone(),
                };
                let signed = certificate::sign(&claims, &signers.certificate);
                token.certificate = Some(signed.clone());
                token.ekey_hmac = Some(tekhmac);
                token.certificate_expire_ms = claims.exp * 1000;
                tx.put_with_ttl(key, token.encode()?, ttl_until(token.expire_time_ms + DAY_MS, now));
                Ok(pb::GetCertificateResponse {
                    certificate: signed,
                    expire_time: Some(timestamp(token.certificate_expire_ms)),
                })
            })
        })
        .await
    }

    /// PublishKeys: see the module documentation for the checks and the one transaction.
    pub async fn publish_keys(&self, req: &pb::PublishKeysRequest) -> ServiceResult<pb::PublishKeysResponse> {
        let keys = validate::publish_fields(req)?;
        let now = self.clock.now_ms();
        let onset = validate::publish_times(req, &keys, now)?;
        let signers = self.signers().await?;
        let claims = certificate::verify(&req.certificate, signers.certificate.verifying_key(), now.div_euclid(1000))
            .map_err(|e| ServiceError::PermissionDenied(format!("certificate: {e}")))?;
        let expected = STANDARD
            .decode(&claims.tekhmac)
            .map_err(|_| ServiceError::PermissionDenied("certificate: its tekhmac is not base64".into()))?;
        let hmac_keys: Vec<HmacKey<'_>> = keys
            .iter()
            .map(|k| HmacKey {
                key_data: &k.key,
                rolling_start_interval_number: i64::from(k.rolling_start),
                rolling_period: i64::from(k.rolling_period),
                transmission_risk: i64::from(k.transmission_risk),
            })
            .collect();
        if !verify_tek_hmac(&req.hmac_key, &hmac_keys, &expected) {
            return Err(ServiceError::PermissionDenied(
                "certificate: its tekhmac is not the HMAC of these keys under hmac_key".into(),
            ));
        }
        let onset = if onset != 0 { onset } else { claims.symptom_onset_interval };
        let report_type = if claims.report_type == "likely" {
            ReportType::ConfirmedClinicalDiagnosis
        } else {
            ReportType::ConfirmedTest
        };
        let day = u32::try_from(now.div_euclid(DAY_MS)).unwrap_or(0);
        let limit = self.config.uploads_per_device_per_day;
        transact(&self.store, |tx| {
            let keys = &keys;
            let claims = &claims;
            Box::pin(async move {
                if let Some(stored) = tx.get(&self.keys.upload(&claims.jti)).await? {
                    let upload = UploadRecord::decode(&stored.value)?;
                    if !req.revision_token.is_empty() && req.revision_token != upload.revision_token {
                        return Err(ServiceError::FailedPrecondition(
                            "revision_token: it is not the revision token of this certificate's upload".into(),
                        ));
                    }
                    return Ok(pb::PublishKeysResponse {
                        inserted_exposures: upload.inserted,
                        revision_token: upload.revision_token,
                    });
                }
                if !req.revision_token.is_empty() {
                    return Err(ServiceError::FailedPrecondition(
                        "revision_token: no upload of this certificate has it (revising keys under a new \
                         certificate is not supported)"
                            .into(),
                    ));
                }
                let rate_key = self.keys.rate(&req.device_id, day);
                let used = match tx.get(&rate_key).await? {
                    Some(v) => v.value.as_slice().try_into().map(u32::from_be_bytes).unwrap_or(0),
                    None => 0,
                };
                if used >= limit {
                    return Err(ServiceError::ResourceExhausted(format!(
                        "device_id: this device made {used} uploads today, the limit is {limit}; try tomorrow"
                    )));
                }
                tx.put_with_ttl(rate_key, (used + 1).to_be_bytes().to_vec(), Duration::from_millis(2 * DAY_MS as u64));
                let mut windows = std::collections::BTreeSet::new();
                for k in keys.iter() {
                    let stored = stored_key(k, onset, report_type);
                    // A key still in use (today's) waits for the export window after its end
                    // plus the embargo, so that no one can follow the device with it.
                    let end_ms = i64::from(k.rolling_start + k.rolling_period) * 600_000;
                    let window_s = self.window_of(now.max(end_ms + EMBARGO_MS));
                    windows.insert(window_s);
                    let id = random_id("", 16);
                    let ttl = ttl_until(stored.expire_time_ms, now);
                    tx.put_with_ttl(self.keys.expiry(stored.expire_time_ms, window_s, &id), Vec::new(), ttl);
                    tx.put_with_ttl(self.keys.diagnosis_key(window_s, &id), stored.encode()?, ttl);
                }
                let keep = Duration::from_millis((RETENTION_MS + 2 * DAY_MS) as u64);
                for window_s in windows {
                    tx.put_with_ttl(self.keys.window(window_s), Vec::new(), keep);
                }
                if claims.area.len() == 5 {
                    tx.put_with_ttl(self.keys.area(&claims.area, day, &claims.jti), Vec::new(), keep);
                }
                let upload = UploadRecord {
                    revision_token: random_id(validate::REVISION_PREFIX, validate::REVISION_CHARS),
                    inserted: keys.len() as i32,
                    device_id: req.device_id.clone(),
                    upload_time_ms: now,
                };
                tx.put_with_ttl(self.keys.upload(&claims.jti), upload.encode()?, keep);
                tx.put_with_ttl(self.keys.revision(&upload.revision_token), claims.jti.clone().into_bytes(), keep);
                Ok(pb::PublishKeysResponse {
                    inserted_exposures: upload.inserted,
                    revision_token: upload.revision_token,
                })
            })
        })
        .await
    }

    /// The start (Unix seconds) of the export window `ms` falls in.
    pub fn window_of(&self, ms: i64) -> u64 {
        let s = u64::try_from(ms.div_euclid(1000)).unwrap_or(0);
        s - s % self.config.export_window_s
    }

    fn export_info(&self, start_s: u64) -> pb::ExportInfo {
        let w = self.config.export_window_s;
        pb::ExportInfo {
            export_id: start_s.to_string(),
            start_time: Some(timestamp(start_s as i64 * 1000)),
            end_time: Some(timestamp((start_s + w) as i64 * 1000)),
        }
    }

    /// ListExports: the closed windows that hold keys, end after `since` and are not older
    /// than the retention, oldest first.
    pub async fn list_exports(&self, req: &pb::ListExportsRequest) -> ServiceResult<pb::ListExportsResponse> {
        let page = page_size_within("page_size", req.page_size, 100, 500)?;
        let since_ms = match &req.since {
            Some(ts) => millis("since", ts)?,
            None => 0,
        };
        let now = self.clock.now_ms();
        let w = self.config.export_window_s;
        // Windows ending after `since` and after the retention horizon, and already closed.
        let from = self.window_of(since_ms.max(now - RETENTION_MS - (w as i64) * 1000));
        let until = self.window_of(now);
        if from >= until {
            return Ok(pb::ListExportsResponse { exports: vec![] });
        }
        let range = KeyRange::between(self.keys.window(from), self.keys.window(until));
        let found = self.store.scan(range, page, Direction::Forward).await?;
        let exports =
            found.entries.iter().filter_map(|e| self.keys.window_of(&e.key)).map(|s| self.export_info(s)).collect();
        Ok(pb::ListExportsResponse { exports })
    }

    /// Reads the unexpired keys of a window as GAEN keys.
    pub async fn window_keys(&self, start_s: u64) -> ServiceResult<Vec<gx::TemporaryExposureKey>> {
        let now = self.clock.now_ms();
        let entries =
            scan_all(&self.store, KeyRange::prefix(self.keys.window_keys_prefix(start_s)), Direction::Forward).await?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let key = StoredKey::decode(&entry.value)?;
            if key.expire_time_ms <= now {
                continue;
            }
            out.push(gx::TemporaryExposureKey {
                key_data: unhex(&key.key_hex),
                transmission_risk_level: Some(key.transmission_risk),
                rolling_start_interval_number: i32::try_from(key.rolling_start).ok(),
                rolling_period: i32::try_from(key.rolling_period).ok(),
                report_type: Some(key.report_type),
                days_since_onset_of_symptoms: key.days_since_onset,
            });
        }
        Ok(out)
    }

    /// GetExport: the signed archive of one closed window.
    pub async fn get_export(&self, req: &pb::GetExportRequest) -> ServiceResult<pb::GetExportResponse> {
        let w = self.config.export_window_s;
        let start = validate::export_id(&req.export_id, w)?;
        let now = self.clock.now_ms();
        if start + w > self.window_of(now) {
            return Err(ServiceError::FailedPrecondition(format!(
                "export_id: the window of export {start} is still open (it closes at {} s)",
                start + w
            )));
        }
        let keys = self.window_keys(start).await?;
        if keys.is_empty() && self.store.get(&self.keys.window(start)).await?.is_none() {
            return Err(ServiceError::not_found(format!("export {start}")));
        }
        let key_count = keys.len() as i32;
        let signer = self.signers().await?.export.clone();
        let info = gx::signature_info(&self.config.verification_key_version, &self.config.verification_key_id);
        let region = self.config.region.clone();
        // Sorting, encoding, hashing and zipping a large batch is CPU work: off the runtime.
        let archive =
            tokio::task::spawn_blocking(move || gx::build_archive(keys, start, start + w, &region, &signer, &info))
                .await
                .map_err(|e| ServiceError::Internal(format!("export build: {e}")))?
                .map_err(|e| ServiceError::Internal(format!("export build: {e}")))?;
        Ok(pb::GetExportResponse { export: Some(self.export_info(start)), archive, key_count })
    }

    /// GetSigningKey: the public keys.
    pub async fn get_signing_key(&self) -> ServiceResult<pb::GetSigningKeyResponse> {
        let signers = self.signers().await?;
        let pem = |key: &SigningKey| {
            gx::public_key_pem(key.verifying_key()).map_err(|e| ServiceError::Internal(e.to_string()))
        };
        Ok(pb::GetSigningKeyResponse {
            export_public_key_pem: pem(&signers.export)?,
            verification_key_id: self.config.verification_key_id.clone(),
            verification_key_version: self.config.verification_key_version.clone(),
            signature_algorithm: gx::SIGNATURE_ALGORITHM.into(),
            certificate_public_key_pem: pem(&signers.certificate)?,
        })
    }

    /// AreaCounts: reports per geohash-5 cell under the prefix over the last 14 days, cells
    /// with fewer than 10 left out.
    pub async fn area_counts(&self, req: &pb::AreaCountsRequest) -> ServiceResult<pb::AreaCountsResponse> {
        validate::geohash_prefix(&req.geohash_prefix)?;
        let today = self.clock.now_ms().div_euclid(DAY_MS);
        let first_day = today - (RETENTION_DAYS - 1);
        let entries =
            scan_all(&self.store, KeyRange::prefix(self.keys.area_prefix(&req.geohash_prefix)), Direction::Forward)
                .await?;
        let mut cells: BTreeMap<String, i64> = BTreeMap::new();
        for entry in entries {
            if let Some((cell, day)) = self.keys.area_of(&entry.key)
                && (first_day..=today).contains(&i64::from(day))
            {
                *cells.entry(cell).or_default() += 1;
            }
        }
        let cells = cells
            .into_iter()
            .filter(|(_, n)| *n >= MIN_REPORTS_SHOWN)
            .map(|(geohash, reports)| pb::AreaCount { geohash, reports })
            .collect();
        Ok(pb::AreaCountsResponse { cells })
    }

    /// Deletes the keys whose expiry passed (and their index entries) and the window markers
    /// older than the retention; returns how many entries it handled (at most one batch).
    pub async fn sweep_once(&self) -> ServiceResult<usize> {
        let now = self.clock.now_ms();
        let due = KeyRange::between(self.keys.expiry_prefix(), self.keys.expiry_after(now));
        let page = self.store.scan(due, SWEEP_BATCH, Direction::Forward).await?;
        let mut handled = page.entries.len();
        // 50 entries, 100 deletes per write: under etcd's 128 operations per transaction.
        for chunk in page.entries.chunks(50) {
            let mut deletes = Vec::with_capacity(chunk.len() * 2);
            for entry in chunk {
                if let Some(key) = self.keys.key_of_expiry(&entry.key) {
                    deletes.push(Mutation::delete(key));
                }
                deletes.push(Mutation::delete(entry.key.clone()));
            }
            self.store.write(vec![], deletes).await?;
        }
        let w = self.config.export_window_s as i64;
        let horizon = self.window_of(now - RETENTION_MS - w * 1000);
        let old = KeyRange::between(self.keys.window_prefix(), self.keys.window(horizon));
        let windows = self.store.scan(old, 100, Direction::Forward).await?;
        if !windows.entries.is_empty() {
            handled += windows.entries.len();
            self.store.write(vec![], windows.entries.iter().map(|e| Mutation::delete(e.key.clone())).collect()).await?;
        }
        Ok(handled)
    }

    /// Runs the sweeper forever.
    pub async fn sweep_task(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.sweep_interval).await;
            loop {
                match self.sweep_once().await {
                    Ok(n) if n >= SWEEP_BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "contact-tracing sweep failed; trying again later");
                        break;
                    }
                }
            }
        }
    }
}

/// Cells with fewer reports than this are not shown.
pub const MIN_REPORTS_SHOWN: i64 = 10;

/// The stored form of an uploaded key: days since onset from the onset interval (when known,
/// clamped to GAEN's -14..=14), expiry 14 days after the key's last interval.
fn stored_key(k: &UploadKey, onset_interval: u32, report_type: ReportType) -> StoredKey {
    let days_since_onset = (onset_interval > 0).then(|| {
        let days = i64::from(k.rolling_start / TEK_ROLLING_PERIOD) - i64::from(onset_interval / TEK_ROLLING_PERIOD);
        days.clamp(-14, 14) as i32
    });
    let end_ms = i64::from(k.rolling_start + k.rolling_period) * 600_000;
    StoredKey {
        key_hex: hex(&k.key),
        rolling_start: k.rolling_start,
        rolling_period: k.rolling_period,
        transmission_risk: k.transmission_risk,
        report_type: report_type as i32,
        days_since_onset,
        expire_time_ms: end_ms + RETENTION_MS,
    }
}
