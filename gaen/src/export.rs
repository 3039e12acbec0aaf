//! The Exposure Key Export file format, as Google's and Apple's clients read it: a zip archive
//! holding `export.bin` (the 16-byte header `EK Export v1` right-padded with spaces, then a
//! serialized `TemporaryExposureKeyExport`) and `export.sig` (a serialized `TEKSignatureList`
//! whose `TEKSignature.signature` is the ECDSA P-256 / SHA-256 signature of the whole of
//! `export.bin`, in X9.62 form: an ASN.1 DER SEQUENCE of two INTEGERs). The messages are the
//! proto2 definitions of `export.proto` (google/exposure-notifications-server and Apple's
//! "Setting Up a Key Server"), with their field numbers, as prost structs.

use std::io::{Cursor, Read, Write};

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use prost::Message;

use crate::GaenError;

/// The 16-byte header of `export.bin`: `EK Export v1` right-padded with spaces.
pub const EXPORT_HEADER: &[u8; 16] = b"EK Export v1    ";
/// The ASN.1 OID of ECDSA with SHA-256, the one algorithm clients accept.
pub const SIGNATURE_ALGORITHM: &str = "1.2.840.10045.4.3.2";
/// Name of the key file inside the archive.
pub const BIN_NAME: &str = "export.bin";
/// Name of the signature file inside the archive.
pub const SIG_NAME: &str = "export.sig";

/// `TemporaryExposureKeyExport`: one batch of diagnosis keys.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TemporaryExposureKeyExport {
    /// Start of the time window of the keys in this file (arrival at the server), UTC seconds.
    #[prost(fixed64, optional, tag = "1")]
    pub start_timestamp: Option<u64>,
    /// End of that window, UTC seconds.
    #[prost(fixed64, optional, tag = "2")]
    pub end_timestamp: Option<u64>,
    /// Region the keys come from (e.g. a country code).
    #[prost(string, optional, tag = "3")]
    pub region: Option<String>,
    /// Ordinal of this file in its batch, 1-based (clients want 1).
    #[prost(int32, optional, tag = "4")]
    pub batch_num: Option<i32>,
    /// Files in the batch (clients want 1).
    #[prost(int32, optional, tag = "5")]
    pub batch_size: Option<i32>,
    /// The signatures that come with the file.
    #[prost(message, repeated, tag = "6")]
    pub signature_infos: Vec<SignatureInfo>,
    /// New keys.
    #[prost(message, repeated, tag = "7")]
    pub keys: Vec<TemporaryExposureKey>,
    /// Keys whose status changed since an earlier file (revisions, revocations).
    #[prost(message, repeated, tag = "8")]
    pub revised_keys: Vec<TemporaryExposureKey>,
}

/// `SignatureInfo` (fields 1 and 2, `app_bundle_id` and `android_package`, are reserved).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SignatureInfo {
    /// Version of the signing key, for rotation (e.g. `v1`).
    #[prost(string, optional, tag = "3")]
    pub verification_key_version: Option<String>,
    /// Alias of the public key clients verify with (`[a-zA-Z0-9_.]`, e.g. a mobile country code).
    #[prost(string, optional, tag = "4")]
    pub verification_key_id: Option<String>,
    /// [`SIGNATURE_ALGORITHM`].
    #[prost(string, optional, tag = "5")]
    pub signature_algorithm: Option<String>,
}

/// `TemporaryExposureKey.ReportType`: why a key was published.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[repr(i32)]
pub enum ReportType {
    /// Never returned by the client API.
    Unknown = 0,
    /// A confirmed test.
    ConfirmedTest = 1,
    /// A clinical diagnosis.
    ConfirmedClinicalDiagnosis = 2,
    /// A self report.
    SelfReport = 3,
    /// Reserved.
    Recursive = 4,
    /// A revoked key.
    Revoked = 5,
}

/// `TemporaryExposureKey`: a diagnosis key.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct TemporaryExposureKey {
    /// The 16-byte key.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub key_data: Option<Vec<u8>>,
    /// Deprecated transmission risk, 0-8.
    #[prost(int32, optional, tag = "2")]
    pub transmission_risk_level: Option<i32>,
    /// ENIntervalNumber at which the key starts.
    #[prost(int32, optional, tag = "3")]
    pub rolling_start_interval_number: Option<i32>,
    /// Intervals the key is valid (default 144, 24 hours).
    #[prost(int32, optional, tag = "4", default = "144")]
    pub rolling_period: Option<i32>,
    /// Why the key was published.
    #[prost(enumeration = "ReportType", optional, tag = "5")]
    pub report_type: Option<i32>,
    /// Days from symptom onset to the key's day, -14 to 14.
    #[prost(sint32, optional, tag = "6")]
    pub days_since_onset_of_symptoms: Option<i32>,
}

/// `TEKSignatureList`: the content of `export.sig`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TekSignatureList {
    /// One signature per signing key.
    #[prost(message, repeated, tag = "1")]
    pub signatures: Vec<TekSignature>,
}

/// `TEKSignature`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TekSignature {
    /// Which key signed.
    #[prost(message, optional, tag = "1")]
    pub signature_info: Option<SignatureInfo>,
    /// As in the export (1).
    #[prost(int32, optional, tag = "2")]
    pub batch_num: Option<i32>,
    /// As in the export (1).
    #[prost(int32, optional, tag = "3")]
    pub batch_size: Option<i32>,
    /// ECDSA P-256 SHA-256 signature of `export.bin`, ASN.1 DER (X9.62).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub signature: Option<Vec<u8>>,
}

/// Returns `export.bin`: the header and the serialized export.
pub fn encode_bin(export: &TemporaryExposureKeyExport) -> Vec<u8> {
    let mut out = Vec::with_capacity(EXPORT_HEADER.len() + export.encoded_len());
    out.extend_from_slice(EXPORT_HEADER);
    export.encode(&mut out).unwrap_or_default();
    out
}

/// Parses `export.bin`: the header must be [`EXPORT_HEADER`].
pub fn decode_bin(bin: &[u8]) -> Result<TemporaryExposureKeyExport, GaenError> {
    let body = bin
        .strip_prefix(EXPORT_HEADER.as_slice())
        .ok_or_else(|| GaenError::Format("export.bin does not start with the header \"EK Export v1\"".into()))?;
    TemporaryExposureKeyExport::decode(body).map_err(|e| GaenError::Format(format!("export.bin: {e}")))
}

/// The `SignatureInfo` of a signing key with this version and id.
pub fn signature_info(key_version: &str, key_id: &str) -> SignatureInfo {
    SignatureInfo {
        verification_key_version: Some(key_version.to_string()),
        verification_key_id: Some(key_id.to_string()),
        signature_algorithm: Some(SIGNATURE_ALGORITHM.to_string()),
    }
}

/// Returns `export.sig` for `bin`: one `TEKSignature` by `key`, DER-encoded.
pub fn sign_bin(bin: &[u8], key: &SigningKey, info: &SignatureInfo) -> TekSignatureList {
    let signature: DerSignature = key.sign(bin);
    TekSignatureList {
        signatures: vec![TekSignature {
            signature_info: Some(info.clone()),
            batch_num: Some(1),
            batch_size: Some(1),
            signature: Some(signature.as_bytes().to_vec()),
        }],
    }
}

/// Verifies `export.bin` against `export.sig` with `key`: some signature of the list, with the
/// ECDSA-SHA256 algorithm, must verify.
pub fn verify_bin(bin: &[u8], sig: &TekSignatureList, key: &VerifyingKey) -> Result<(), GaenError> {
    let mut seen = 0;
    for entry in &sig.signatures {
        let algorithm = entry.signature_info.as_ref().and_then(|i| i.signature_algorithm.as_deref());
        if algorithm.is_some_and(|a| a != SIGNATURE_ALGORITHM) {
            continue;
        }
        let Some(der) = entry.signature.as_deref() else { continue };
        seen += 1;
        if let Ok(signature) = Signature::from_der(der)
            && key.verify(bin, &signature).is_ok()
        {
            return Ok(());
        }
    }
    Err(GaenError::Signature(format!("none of the {seen} ECDSA-SHA256 signatures of export.sig verifies")))
}

/// Returns the zip archive of `export.bin` and `export.sig`.
pub fn write_archive(bin: &[u8], sig: &TekSignatureList) -> Result<Vec<u8>, GaenError> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(BIN_NAME, options)?;
    zip.write_all(bin)?;
    zip.start_file(SIG_NAME, options)?;
    zip.write_all(&sig.encode_to_vec())?;
    Ok(zip.finish()?.into_inner())
}

/// Largest `export.bin` or `export.sig` read out of an archive (the `export.bin` of 1M keys is
/// about 30 MiB): an entry that inflates past it (a zip bomb) is refused instead of filling
/// memory.
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Reads `export.bin` and `export.sig` (parsed) out of an archive.
pub fn read_archive(archive: &[u8]) -> Result<(Vec<u8>, TekSignatureList), GaenError> {
    read_archive_capped(archive, MAX_FILE_BYTES)
}

fn read_archive_capped(archive: &[u8], cap: u64) -> Result<(Vec<u8>, TekSignatureList), GaenError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(archive))?;
    let mut read = |name: &str| -> Result<Vec<u8>, GaenError> {
        let file = zip.by_name(name).map_err(|e| GaenError::Format(format!("{name}: {e}")))?;
        let mut out = Vec::new();
        file.take(cap + 1).read_to_end(&mut out)?;
        if out.len() as u64 > cap {
            return Err(GaenError::Format(format!("{name}: more than {cap} bytes uncompressed")));
        }
        Ok(out)
    };
    let bin = read(BIN_NAME)?;
    let sig = TekSignatureList::decode(read(SIG_NAME)?.as_slice())
        .map_err(|e| GaenError::Format(format!("{SIG_NAME}: {e}")))?;
    Ok((bin, sig))
}

/// Builds, signs and zips one export: `keys` are sorted by key bytes, so the file reveals
/// nothing of upload order or of which keys came together.
pub fn build_archive(
    mut keys: Vec<TemporaryExposureKey>,
    start_seconds: u64,
    end_seconds: u64,
    region: &str,
    key: &SigningKey,
    info: &SignatureInfo,
) -> Result<Vec<u8>, GaenError> {
    keys.sort_by(|a, b| a.key_data.cmp(&b.key_data));
    let export = TemporaryExposureKeyExport {
        start_timestamp: Some(start_seconds),
        end_timestamp: Some(end_seconds),
        region: Some(region.to_string()),
        batch_num: Some(1),
        batch_size: Some(1),
        signature_infos: vec![info.clone()],
        keys,
        revised_keys: vec![],
    };
    let bin = encode_bin(&export);
    let sig = sign_bin(&bin, key, info);
    write_archive(&bin, &sig)
}

/// Opens an archive: verifies its signature when `key` is given, and parses `export.bin`.
pub fn open_archive(archive: &[u8], key: Option<&VerifyingKey>) -> Result<TemporaryExposureKeyExport, GaenError> {
    let (bin, sig) = read_archive(archive)?;
    if let Some(key) = key {
        verify_bin(&bin, &sig, key)?;
    }
    decode_bin(&bin)
}

/// Returns a new random P-256 signing key.
pub fn generate_signing_key() -> SigningKey {
    use rand::RngCore;
    loop {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        // A random 256-bit string is a valid scalar except with probability ~2^-32.
        if let Ok(key) = SigningKey::from_bytes(&bytes.into()) {
            return key;
        }
    }
}

/// Returns the public key of `key` as a PEM SubjectPublicKeyInfo (what clients are given).
pub fn public_key_pem(key: &VerifyingKey) -> Result<String, GaenError> {
    key.to_public_key_pem(LineEnding::LF).map_err(|e| GaenError::Format(format!("public key: {e}")))
}

/// Parses a PEM SubjectPublicKeyInfo P-256 key.
pub fn verifying_key_from_pem(pem: &str) -> Result<VerifyingKey, GaenError> {
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| GaenError::Format(format!("public key PEM: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8, start: i32) -> TemporaryExposureKey {
        TemporaryExposureKey {
            key_data: Some(vec![byte; 16]),
            transmission_risk_level: Some(0),
            rolling_start_interval_number: Some(start),
            rolling_period: Some(144),
            report_type: Some(ReportType::ConfirmedTest as i32),
            days_since_onset_of_symptoms: Some(-2),
        }
    }

    #[test]
    fn archive_round_trips_and_its_signature_verifies() {
        let signer = generate_signing_key();
        let info = signature_info("v1", "310");
        let archive = build_archive(vec![key(9, 2_650_000), key(1, 2_650_144)], 10, 20, "US", &signer, &info).unwrap();
        let (bin, sig) = read_archive(&archive).unwrap();
        assert_eq!(&bin[..16], b"EK Export v1    ");
        let export = open_archive(&archive, Some(signer.verifying_key())).unwrap();
        assert_eq!(export.keys.len(), 2);
        assert_eq!(export.keys[0].key_data, Some(vec![1; 16]), "sorted by key bytes");
        assert_eq!((export.start_timestamp, export.end_timestamp, export.batch_num), (Some(10), Some(20), Some(1)));
        assert_eq!(export.keys[1].days_since_onset_of_symptoms, Some(-2));
        // DER: SEQUENCE of two INTEGERs.
        let der = sig.signatures[0].signature.as_ref().unwrap();
        assert_eq!(der[0], 0x30);
        // The PEM round-trips; another key or a changed byte does not verify.
        let pem = public_key_pem(signer.verifying_key()).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let public = verifying_key_from_pem(&pem).unwrap();
        assert!(verify_bin(&bin, &sig, &public).is_ok());
        let other = generate_signing_key();
        assert!(open_archive(&archive, Some(other.verifying_key())).is_err());
        let mut tampered = bin.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(verify_bin(&tampered, &sig, &public).is_err());
        assert!(decode_bin(b"EK Export v2    ").is_err());
    }

    #[test]
    fn an_entry_inflating_past_the_cap_is_refused() {
        // 1 MiB of zeros deflates to about 1 KiB: the ratio of a zip bomb, whose memory the
        // reader used to allocate in full.
        let archive = write_archive(&vec![0; 1 << 20], &TekSignatureList::default()).unwrap();
        assert!(archive.len() < 16 << 10);
        let e = read_archive_capped(&archive, (1 << 20) - 1).unwrap_err();
        assert!(e.to_string().contains("export.bin: more than"), "{e}");
        let (bin, _) = read_archive_capped(&archive, 1 << 20).unwrap();
        assert_eq!(bin.len(), 1 << 20);
    }

    #[test]
    fn rolling_period_defaults_to_144_on_the_wire() {
        let wire = TemporaryExposureKey { key_data: Some(vec![0; 16]), ..Default::default() }.encode_to_vec();
        let decoded = TemporaryExposureKey::decode(wire.as_slice()).unwrap();
        assert_eq!(decoded.rolling_period(), 144);
        // sint32 zig-zag: -1 encodes as 1.
        let neg = TemporaryExposureKey { days_since_onset_of_symptoms: Some(-1), ..Default::default() }.encode_to_vec();
        assert_eq!(neg, vec![6 << 3, 1]);
    }
}
