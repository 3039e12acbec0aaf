//! The records the app store keeps (versioned JSON, [`Record`]) and their protobuf views.

use std::collections::BTreeMap;

use meshwork_common::fields::timestamp_opt;
use meshwork_common::record::Record;
use meshwork_proto::pb::appstore::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::rollout::{self, Status, Track, TrackRelease};

/// A developer account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeveloperRecord {
    pub developer_id: String,
    pub name: String,
    pub owner_user_id: String,
    pub create_time_ms: i64,
}

impl Record for DeveloperRecord {
    const KIND: &'static str = "developer record";
}

/// An app: its listing and its tracks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub package_name: String,
    pub developer_id: String,
    /// Copied from the developer at creation (developer names do not change).
    pub developer_name: String,
    /// The developer's owner, copied so that a change checks ownership with one read.
    pub owner_user_id: String,
    pub title: String,
    pub category: String,
    pub description: String,
    pub icon_url: String,
    pub price_minor: i64,
    pub currency: String,
    pub create_time_ms: i64,
    /// The highest version code uploaded (0 before any).
    #[serde(default)]
    pub last_version_code: i64,
    /// Tracks by name.
    #[serde(default)]
    pub tracks: BTreeMap<String, Track>,
}

impl Record for AppRecord {
    const KIND: &'static str = "app record";
}

impl AppRecord {
    /// Returns the listing as protobuf.
    pub fn to_pb(&self) -> pb::App {
        pb::App {
            package_name: self.package_name.clone(),
            developer_id: self.developer_id.clone(),
            developer_name: self.developer_name.clone(),
            title: self.title.clone(),
            category: self.category.clone(),
            description: self.description.clone(),
            icon_url: self.icon_url.clone(),
            price_minor: self.price_minor,
            currency: self.currency.clone(),
            create_time: timestamp_opt(self.create_time_ms),
        }
    }

    /// Returns the track `name` as protobuf (empty when it has no releases).
    pub fn track_pb(&self, name: &str) -> pb::Track {
        track_pb(name, self.tracks.get(name))
    }

    /// Returns every track with releases, in track order.
    pub fn tracks_pb(&self) -> Vec<pb::Track> {
        rollout::TRACKS
            .iter()
            .filter_map(|name| self.tracks.get(*name).filter(|t| !t.is_empty()).map(|t| track_pb(name, Some(t))))
            .collect()
    }
}

/// Returns a track as protobuf.
pub fn track_pb(name: &str, track: Option<&Track>) -> pb::Track {
    pb::Track {
        track: name.to_string(),
        releases: track.map(|t| t.releases().map(track_release_pb).collect()).unwrap_or_default(),
    }
}

/// Returns a track release as protobuf.
pub fn track_release_pb(r: &TrackRelease) -> pb::TrackRelease {
    pb::TrackRelease {
        version_code: r.version_code,
        version_name: r.version_name.clone(),
        min_sdk: r.min_sdk,
        status: match r.status {
            Status::InProgress => pb::ReleaseStatus::InProgress,
            Status::Halted => pb::ReleaseStatus::Halted,
            Status::Completed => pb::ReleaseStatus::Completed,
        } as i32,
        user_fraction: rollout::ppm_to_fraction(r.fraction_ppm),
    }
}

/// An uploaded release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub package_name: String,
    pub version_code: i64,
    pub version_name: String,
    pub min_sdk: i32,
    pub artifact_sha256: String,
    pub size_bytes: i64,
    pub notes: String,
    pub upload_time_ms: i64,
}

impl Record for ReleaseRecord {
    const KIND: &'static str = "release record";
}

impl ReleaseRecord {
    /// Returns the release as protobuf.
    pub fn to_pb(&self) -> pb::Release {
        pb::Release {
            package_name: self.package_name.clone(),
            version_code: self.version_code,
            version_name: self.version_name.clone(),
            min_sdk: self.min_sdk,
            artifact_sha256: self.artifact_sha256.clone(),
            size_bytes: self.size_bytes,
            notes: self.notes.clone(),
            upload_time: timestamp_opt(self.upload_time_ms),
        }
    }

    /// Returns the release as it goes on a track (status and fraction set by the track).
    pub fn track_release(&self) -> TrackRelease {
        TrackRelease {
            version_code: self.version_code,
            version_name: self.version_name.clone(),
            min_sdk: self.min_sdk,
            status: Status::InProgress,
            fraction_ppm: 0,
        }
    }
}

/// A device's install state of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub installed: bool,
    pub version_code: i64,
    pub update_time_ms: i64,
}

impl Record for DeviceRecord {
    const KIND: &'static str = "device install record";
}
