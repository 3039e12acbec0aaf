//! The encoding of every record a service keeps in the Store (its `model.rs` types): JSON with
//! serde, carrying a format version, decoded with a clear INTERNAL error when the bytes are
//! corrupt or were written by a newer release. Never a panic.
//!
//! A record is a JSON object whose first member is the format version: `{"_v":1,...}`. The
//! version sits inside the JSON, rather than in a byte before it, so that a record stays
//! readable with `etcdctl get`, and so that a replica of a release from before versions (which
//! reads plain JSON and ignores unknown members) still reads the records a newer replica
//! writes during a rolling upgrade. The member name `_v` is reserved: a record type must not
//! have a field of that name, nor `#[serde(deny_unknown_fields)]`.
//!
//! When a record changes shape, a change that only adds fields with `#[serde(default)]`
//! keeps [`Record::VERSION`]; one that an older release would misread raises it, and
//! [`Record::upgrade`] reads the older versions. A release refuses versions above its own
//! ([`CodecError::FutureVersion`]) instead of guessing. Records written before versions existed
//! (plain JSON, as the URL shortener stored its links) decode as version 0 when the type opts in
//! with [`Record::UNVERSIONED_JSON`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ServiceError;

/// The reserved member that carries the format version, as it starts an encoded record.
const VERSION_MEMBER: &[u8] = b"{\"_v\":";

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The stored value is empty.
    #[error("corrupt {kind}: the stored value is empty")]
    Empty { kind: &'static str },
    /// The stored value does not start with a format version (and is not accepted as a record
    /// from before versions).
    #[error("corrupt {kind}: no format version (the value starts with {start:?})")]
    NoVersion { kind: &'static str, start: String },
    /// The format version is not a number from 1 to `u32::MAX`.
    #[error("corrupt {kind}: unreadable format version")]
    BadVersion { kind: &'static str },
    /// The record was written by a newer release, in a format this one cannot read.
    #[error("{kind} has format version {version}, newer than {supported} (the newest this release reads)")]
    FutureVersion { kind: &'static str, version: u32, supported: u32 },
    /// The JSON of the record does not match its type.
    #[error("corrupt {kind} (format version {version}): {source}")]
    Corrupt {
        kind: &'static str,
        version: u32,
        #[source]
        source: serde_json::Error,
    },
    /// The record could not be serialized (a bug in its type: a map with non-string keys, a
    /// failing `Serialize`).
    #[error("cannot encode {kind}: {source}")]
    Unencodable {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The record does not serialize as a JSON object (a bug in its type).
    #[error("cannot encode {kind}: it does not serialize as a JSON object")]
    NotAnObject { kind: &'static str },
}

impl From<CodecError> for ServiceError {
    fn from(e: CodecError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

/// A record a service stores. Implement it with the constants; [`Record::encode`] and
/// [`Record::decode`] are provided.
///
/// ```
/// use meshwork_common::record::Record;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Order { item: String, #[serde(default)] note: String }
/// impl Record for Order {
///     const KIND: &'static str = "order record";
/// }
/// let bytes = Order { item: "tea".into(), note: String::new() }.encode().unwrap();
/// assert!(bytes.starts_with(br#"{"_v":1,"item":"tea""#));
/// assert_eq!(Order::decode(&bytes).unwrap().item, "tea");
/// ```
pub trait Record: Serialize + DeserializeOwned {
    /// What the record is, for error messages (`"link record"`).
    const KIND: &'static str;

    /// The format version this release writes (at least 1). Raise it when older releases would
    /// misread the new shape, and read the old shapes in [`Record::upgrade`].
    const VERSION: u32 = 1;

    /// True when the records' key prefix may hold plain JSON objects written before versions
    /// existed; they decode as version 0. False for every type that never wrote those.
    const UNVERSIONED_JSON: bool = false;

    /// Decodes the JSON of a record stored with an older format `version` (0 for a record from
    /// before versions). The default reads it as the current shape, which is right while
    /// changes only add fields with `#[serde(default)]`.
    fn upgrade(version: u32, json: &[u8]) -> Result<Self, serde_json::Error> {
        let _ = version;
        serde_json::from_slice(json)
    }

    /// Returns the record's stored form: `{"_v":VERSION,` followed by its JSON members.
    fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let json = serde_json::to_vec(self).map_err(|source| CodecError::Unencodable { kind: Self::KIND, source })?;
        let Some(members) = json.strip_prefix(b"{") else {
            return Err(CodecError::NotAnObject { kind: Self::KIND });
        };
        const { assert!(Self::VERSION >= 1, "Record::VERSION starts at 1 (0 means a record from before versions)") };
        let version = Self::VERSION.to_string();
        let mut out = Vec::with_capacity(VERSION_MEMBER.len() + version.len() + json.len());
        out.extend_from_slice(VERSION_MEMBER);
        out.extend_from_slice(version.as_bytes());
        if members != b"}" {
            out.push(b',');
        }
        out.extend_from_slice(members);
        Ok(out)
    }

    /// Decodes a stored record: refuses empty or unversioned values, versions newer than
    /// [`Record::VERSION`] and JSON that does not match the type, each with its own
    /// [`CodecError`] (an INTERNAL [`ServiceError`] with `?`).
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let version = stored_version(bytes, Self::KIND, Self::UNVERSIONED_JSON)?;
        let supported = Self::VERSION;
        if version > supported {
            return Err(CodecError::FutureVersion { kind: Self::KIND, version, supported });
        }
        let decoded = if version == supported { serde_json::from_slice(bytes) } else { Self::upgrade(version, bytes) };
        decoded.map_err(|source| CodecError::Corrupt { kind: Self::KIND, version, source })
    }
}

/// Returns the format version a stored record declares (0 for accepted unversioned JSON).
fn stored_version(bytes: &[u8], kind: &'static str, unversioned_json: bool) -> Result<u32, CodecError> {
    if bytes.is_empty() {
        return Err(CodecError::Empty { kind });
    }
    let Some(rest) = bytes.strip_prefix(VERSION_MEMBER) else {
        if unversioned_json && bytes[0] == b'{' {
            return Ok(0);
        }
        let start = String::from_utf8_lossy(&bytes[..bytes.len().min(16)]).into_owned();
        return Err(CodecError::NoVersion { kind, start });
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let terminated = matches!(rest.get(digits), Some(b',' | b'}'));
    // No leading zeros: a version has one spelling, as `encode` writes it.
    if digits == 0 || !terminated || (digits > 1 && rest[0] == b'0') {
        return Err(CodecError::BadVersion { kind });
    }
    // At most 10 ASCII digits parse as u64 without overflow; the u32 check follows.
    let version = std::str::from_utf8(&rest[..digits.min(11)])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v >= 1);
    version.ok_or(CodecError::BadVersion { kind })
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Empty {}

    impl Record for Empty {
        const KIND: &'static str = "empty record";
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Wrapped(u32);

    impl Record for Wrapped {
        const KIND: &'static str = "wrapped record";
    }

    #[test]
    fn an_empty_object_round_trips() {
        let bytes = Empty {}.encode().unwrap();
        assert_eq!(bytes, br#"{"_v":1}"#);
        assert_eq!(Empty::decode(&bytes).unwrap(), Empty {});
    }

    #[test]
    fn a_record_that_is_not_an_object_is_refused_when_encoded() {
        assert!(matches!(Wrapped(3).encode(), Err(CodecError::NotAnObject { .. })));
    }

    #[test]
    fn version_spellings() {
        let v = |b: &[u8]| stored_version(b, "r", false);
        assert_eq!(v(br#"{"_v":7,"a":1}"#).unwrap(), 7);
        assert_eq!(v(br#"{"_v":4294967295}"#).unwrap(), u32::MAX);
        for bad in [
            &br#"{"_v":0}"#[..],
            br#"{"_v":07}"#,
            br#"{"_v":}"#,
            br#"{"_v":1"#,
            br#"{"_v":-1}"#,
            br#"{"_v":4294967296}"#,
            br#"{"_v":99999999999999999999}"#,
            br#"{"_v":"1"}"#,
        ] {
            assert!(matches!(v(bad), Err(CodecError::BadVersion { .. })), "{}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(v(b""), Err(CodecError::Empty { .. })));
        assert!(matches!(v(b"{}"), Err(CodecError::NoVersion { .. })));
        assert_eq!(stored_version(b"{}", "r", true).unwrap(), 0);
        assert!(matches!(stored_version(b"[1]", "r", true), Err(CodecError::NoVersion { .. })));
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sample {
        name: String,
        count: i64,
        tags: Vec<String>,
        nested: Option<(u32, bool)>,
    }

    impl Record for Sample {
        const KIND: &'static str = "sample record";
    }

    /// The codec's laws over arbitrary values: every record round-trips and its bytes start
    /// with the version member; any bytes at all decode to a record or an error, never a panic.
    #[test]
    fn records_round_trip_and_any_bytes_decode_without_panic() {
        fn round_trip(name: String, count: i64, tags: Vec<String>, nested: Option<(u32, bool)>) -> bool {
            let record = Sample { name, count, tags, nested };
            let bytes = record.encode().unwrap();
            bytes.starts_with(br#"{"_v":1,"#) && Sample::decode(&bytes).unwrap() == record
        }
        fn any_bytes(bytes: Vec<u8>, prefix: bool) -> bool {
            let input = if prefix { [br#"{"_v":"#.as_slice(), &bytes].concat() } else { bytes };
            let _ = Sample::decode(&input);
            let _ = Empty::decode(&input);
            true
        }
        quickcheck::QuickCheck::new()
            .tests(500)
            .quickcheck(round_trip as fn(String, i64, Vec<String>, Option<(u32, bool)>) -> bool);
        quickcheck::QuickCheck::new().tests(2_000).quickcheck(any_bytes as fn(Vec<u8>, bool) -> bool);
    }
}
