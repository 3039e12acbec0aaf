//! The record codec: records round-trip with their format version; corrupt values and values of
//! a newer release are refused with their own error, an INTERNAL status that says what is wrong
//! (never a panic, also on arbitrary bytes); older versions are read through `upgrade`; plain
//! JSON from before versions is read only by types that opt in; and a release from before
//! versions (plain serde_json) still reads what this one writes.

use meshwork_common::record::{CodecError, Record};
use meshwork_common::{ServiceError, ServiceResult};
use serde::{Deserialize, Serialize};

/// Version 1 of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeatV1 {
    row: String,
    number: u32,
    #[serde(default)]
    held_by: String,
}

impl Record for SeatV1 {
    const KIND: &'static str = "seat record";
}

/// Version 2: the row and number became one label, which version 1 would misread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeatV2 {
    label: String,
    #[serde(default)]
    held_by: String,
}

impl Record for SeatV2 {
    const KIND: &'static str = "seat record";
    const VERSION: u32 = 2;

    fn upgrade(version: u32, json: &[u8]) -> Result<Self, serde_json::Error> {
        assert_eq!(version, 1, "only version 1 is older");
        let old: SeatV1 = serde_json::from_slice(json)?;
        Ok(SeatV2 { label: format!("{}{}", old.row, old.number), held_by: old.held_by })
    }
}

/// A type whose prefix holds plain JSON from before versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Legacy {
    name: String,
}

impl Record for Legacy {
    const KIND: &'static str = "legacy record";
    const UNVERSIONED_JSON: bool = true;
}

fn seat() -> SeatV1 {
    SeatV1 { row: "K".into(), number: 12, held_by: String::new() }
}

/// Returns the INTERNAL message a service would send for `e`.
fn status_of(e: CodecError) -> tonic::Status {
    tonic::Status::from(ServiceError::from(e))
}

#[test]
fn records_round_trip_with_their_version_first() {
    let bytes = seat().encode().unwrap();
    assert_eq!(bytes, br#"{"_v":1,"row":"K","number":12,"held_by":""}"#);
    assert_eq!(SeatV1::decode(&bytes).unwrap(), seat());
    let v2 = SeatV2 { label: "K12".into(), held_by: "ann".into() };
    let bytes = v2.encode().unwrap();
    assert!(bytes.starts_with(br#"{"_v":2,"#));
    assert_eq!(SeatV2::decode(&bytes).unwrap(), v2);
}

#[test]
fn corrupt_values_are_internal_errors_that_say_what_is_wrong() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "corrupt seat record: the stored value is empty"),
        (b"\x00\x01garbage", "corrupt seat record: no format version"),
        (br#"{"row":"K","number":12}"#, "corrupt seat record: no format version"),
        (br#"{"_v":x,"row":"K"}"#, "corrupt seat record: unreadable format version"),
        (br#"{"_v":0,"row":"K"}"#, "corrupt seat record: unreadable format version"),
        (br#"{"_v":1,"row":"K""#, "corrupt seat record (format version 1): EOF while parsing"),
        (br#"{"_v":1,"row":"K","number":"twelve"}"#, "corrupt seat record (format version 1): invalid type"),
        (br#"{"_v":1,"number":12}"#, "corrupt seat record (format version 1): missing field `row`"),
    ];
    for (bytes, message) in cases {
        let err = SeatV1::decode(bytes).unwrap_err();
        let status = status_of(err);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(
            status.message().starts_with(&format!("internal error: {message}")),
            "{:?} gave {:?}",
            String::from_utf8_lossy(bytes),
            status.message()
        );
    }
}

#[test]
fn a_newer_release_s_record_is_refused_not_misread() {
    let newer = SeatV2 { label: "K12".into(), held_by: String::new() }.encode().unwrap();
    let err = SeatV1::decode(&newer).unwrap_err();
    assert!(matches!(err, CodecError::FutureVersion { version: 2, supported: 1, .. }), "{err:?}");
    assert_eq!(
        status_of(err).message(),
        "internal error: seat record has format version 2, newer than 1 (the newest this release reads)"
    );
}

#[test]
fn older_versions_are_read_through_upgrade() {
    let old = seat().encode().unwrap();
    assert_eq!(SeatV2::decode(&old).unwrap(), SeatV2 { label: "K12".into(), held_by: String::new() });
    // A corrupt old record is still a clear error, with its version.
    let err = SeatV2::decode(br#"{"_v":1,"row":7}"#).unwrap_err();
    assert!(err.to_string().starts_with("corrupt seat record (format version 1): invalid type"), "{err}");
}

#[test]
fn plain_json_from_before_versions_is_read_only_by_types_that_opt_in() {
    let plain = br#"{"name":"old"}"#;
    assert_eq!(Legacy::decode(plain).unwrap(), Legacy { name: "old".into() });
    assert!(matches!(SeatV1::decode(br#"{"row":"K","number":1}"#), Err(CodecError::NoVersion { .. })));
    // What this release writes, a release from before versions reads (it ignores `_v`).
    let bytes = Legacy { name: "new".into() }.encode().unwrap();
    assert_eq!(serde_json::from_slice::<Legacy>(&bytes).unwrap(), Legacy { name: "new".into() });
    assert!(matches!(Legacy::decode(b"[1,2]"), Err(CodecError::NoVersion { .. })));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic generator: every prefix, every single-byte change and random
    // strings around a valid record.
    let valid = seat().encode().unwrap();
    let mut inputs: Vec<Vec<u8>> = (0..=valid.len()).map(|n| valid[..n].to_vec()).collect();
    for i in 0..valid.len() {
        for b in [0u8, b'"', b'}', b'{', b',', b'9', 0xff] {
            let mut changed = valid.clone();
            changed[i] = b;
            inputs.push(changed);
        }
    }
    let alphabet = b"0123456789{}[]\",:_vrownumbe \xff";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..5_000 {
        let len = (x % 40) as usize;
        let mut bytes = br#"{"_v":"#.to_vec();
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        inputs.push(bytes);
    }
    for bytes in &inputs {
        let outcome: ServiceResult<SeatV2> = SeatV2::decode(bytes).map_err(ServiceError::from);
        if let Err(e) = outcome {
            assert!(matches!(e, ServiceError::Internal(_)));
        }
        let _ = Legacy::decode(bytes);
    }
}
