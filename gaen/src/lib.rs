//! Google/Apple Exposure Notification (GAEN), as a plain library: the cryptography of the
//! Exposure Notification Cryptography Specification v1.2 ([`crypto`]: TEK -> RPIK -> RPI,
//! AEMK -> AEM), the key export file format clients download ([`export`]: `export.bin` with
//! its `EK Export v1` header and `TemporaryExposureKeyExport`, `export.sig` with its ECDSA
//! P-256 signature, the zip around them), the HMAC that binds an upload to a verification
//! certificate ([`verification`]), and the device side ([`matching`], [`risk`]): match
//! observed RPIs against downloaded keys, build exposure windows and score them with the v2
//! risk model into a per-day verdict ([`exposure_check`]).

#![forbid(unsafe_code)]

pub mod crypto;
pub mod export;
pub mod matching;
pub mod risk;
pub mod verification;

pub use matching::{KeyIndex, Observation, Report, exposure_check};
pub use risk::RiskConfig;

/// What can go wrong reading exports and observations.
#[derive(Debug, thiserror::Error)]
pub enum GaenError {
    /// Reading a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// An archive is not a readable zip.
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// A file is not in the expected format.
    #[error("{0}")]
    Format(String),
    /// A signature does not verify.
    #[error("signature: {0}")]
    Signature(String),
    /// A line of the observed file is malformed.
    #[error("observed file, line {line}: {reason}")]
    Observed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The risk configuration is invalid.
    #[error("risk configuration: {0}")]
    Config(String),
}
