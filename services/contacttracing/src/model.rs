//! Stored records (JSON through the kit's [`Record`] encoding).

use meshwork_common::Record;
use serde::{Deserialize, Serialize};

/// The signing keys, raw P-256 scalars in hex (`contacttracing/signing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningRecord {
    /// Signs exports.
    pub export_key_hex: String,
    /// Signs certificates.
    pub certificate_key_hex: String,
    /// When they were made.
    pub create_time_ms: i64,
}

impl Record for SigningRecord {
    const KIND: &'static str = "signing keys";
}

/// A verification code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    /// The code's id: the certificate's `jti`.
    pub code_id: String,
    /// The proto TestType.
    pub test_type: i32,
    /// Symptom onset interval, 0 when unknown.
    pub onset_interval: u32,
    /// Geohash-5 cell of the patient's area.
    pub cell: String,
    /// Who issued it.
    pub issuer: String,
    pub issue_time_ms: i64,
    pub expire_time_ms: i64,
    /// Whether VerifyCode took it.
    pub used: bool,
}

impl Record for CodeRecord {
    const KIND: &'static str = "verification code";
}

/// A verification token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub code_id: String,
    pub test_type: i32,
    pub onset_interval: u32,
    pub cell: String,
    pub expire_time_ms: i64,
    /// The HMAC the certificate was issued for, once issued.
    pub ekey_hmac: Option<String>,
    /// The certificate, once issued (a retry with the same HMAC answers it again).
    pub certificate: Option<String>,
    pub certificate_expire_ms: i64,
}

impl Record for TokenRecord {
    const KIND: &'static str = "verification token";
}

/// The one upload of a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub revision_token: String,
    pub inserted: i32,
    pub device_id: String,
    pub upload_time_ms: i64,
}

impl Record for UploadRecord {
    const KIND: &'static str = "upload";
}

/// A stored diagnosis key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// The 16-byte key, hex.
    pub key_hex: String,
    pub rolling_start: u32,
    pub rolling_period: u32,
    pub transmission_risk: i32,
    /// GAEN ReportType number.
    pub report_type: i32,
    /// Days since symptom onset, when known.
    pub days_since_onset: Option<i32>,
    /// When the key stops being served (14 days after its last interval).
    pub expire_time_ms: i64,
}

impl Record for StoredKey {
    const KIND: &'static str = "diagnosis key";
}
