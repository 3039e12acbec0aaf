//! The stored link record and what a lookup finds.

use serde::{Deserialize, Serialize};

use meshwork_common::Record;

/// A link as stored under `urlshortener/link/<code>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub long_url: String,
    pub created_at_ms: i64,
    /// 0 when the link never expires.
    #[serde(default)]
    pub expires_at_ms: i64,
    #[serde(default)]
    pub custom_alias: bool,
    /// Set when deleted: the record stays as a tombstone so the code is never handed out again.
    #[serde(default)]
    pub deleted_at_ms: i64,
    /// Subject of the caller that created the link; empty when it was created anonymously
    /// (and in records written before owners existed). Kept in tombstones.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
}

/// Stored with the kit's versioned encoding; links written before versions existed are plain
/// JSON and decode as version 0.
impl Record for LinkRecord {
    const KIND: &'static str = "link record";
    const UNVERSIONED_JSON: bool = true;
}

impl LinkRecord {
    /// Returns what a lookup at `now_ms` finds.
    pub fn state_at(&self, now_ms: i64) -> LinkState {
        if self.deleted_at_ms != 0 {
            LinkState::Deleted
        } else if self.expires_at_ms != 0 && now_ms >= self.expires_at_ms {
            LinkState::Expired
        } else {
            LinkState::Active
        }
    }
}

/// The state of a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Active,
    Expired,
    Deleted,
    Unknown,
}

impl LinkState {
    /// Returns the name sent in the `meshwork-link-state` trailer of a NOT_FOUND.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Active => "active",
            LinkState::Expired => "expired",
            LinkState::Deleted => "deleted",
            LinkState::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_round_trip() {
        let mut r = LinkRecord {
            long_url: "https://e.com/".into(),
            created_at_ms: 10,
            expires_at_ms: 100,
            custom_alias: false,
            deleted_at_ms: 0,
            owner: "alice".into(),
        };
        assert_eq!(LinkRecord::decode(&r.encode().unwrap()).unwrap(), r);
        assert_eq!(r.state_at(99), LinkState::Active);
        assert_eq!(r.state_at(100), LinkState::Expired);
        r.deleted_at_ms = 50;
        assert_eq!(r.state_at(60), LinkState::Deleted);
        assert!(LinkRecord::decode(b"{").is_err());
    }

    #[test]
    fn records_carry_a_version_that_releases_from_before_versions_ignore() {
        let r = LinkRecord {
            long_url: "https://e.com/".into(),
            created_at_ms: 10,
            expires_at_ms: 0,
            custom_alias: true,
            deleted_at_ms: 0,
            owner: "alice".into(),
        };
        let bytes = r.encode().unwrap();
        assert!(bytes.starts_with(br#"{"_v":1,"long_url":"#), "{}", String::from_utf8_lossy(&bytes));
        // A replica of the release before versions read links with plain serde_json.
        assert_eq!(serde_json::from_slice::<LinkRecord>(&bytes).unwrap(), r);
        assert!(LinkRecord::decode(br#"{"_v":2,"long_url":"https://e.com/","created_at_ms":1}"#).is_err());
    }

    #[test]
    fn records_from_before_owners_decode_as_ownerless() {
        let old = br#"{"long_url":"https://e.com/","created_at_ms":10,"expires_at_ms":0,"custom_alias":true,"deleted_at_ms":0}"#;
        let r = LinkRecord::decode(old).unwrap();
        assert_eq!(r.owner, "");
        assert!(r.custom_alias);
        // An ownerless record is written as before, so older replicas read it unchanged.
        assert!(!String::from_utf8(r.encode().unwrap()).unwrap().contains("owner"));
    }
}
