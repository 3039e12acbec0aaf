//! The pure rules of tracks and staged rollouts, shaped like the Play Developer API's
//! tracks/releases: a track holds at most one completed release and, on top of it, one rollout
//! (`inProgress` or `halted`) of a newer release to a `userFraction` of the devices.
//!
//! **Bucketing.** A device's bucket for a release is the first 8 bytes (big-endian) of
//! SHA-256(`"meshwork-appstore-rollout-v1"`, 0, device id, 0, package, 0, version code in
//! decimal): stable across processes, machines and releases of this service (never Rust's
//! `DefaultHasher`, whose keys are random per process). The device is in a rollout of fraction
//! `f` (kept as parts per million, `ppm`) when `bucket * 1_000_000 < ppm * 2^64`. Widening a
//! rollout only raises the threshold, so every device that was in stays in; the share of
//! devices in is `f` since SHA-256's output is uniform. The release is part of the hash, so
//! each release picks its own devices (the same 10% do not get every risky build first).
//!
//! **Eligibility.** A device on track `T` sees `T` and the tracks after it in
//! `internal > alpha > beta > production` (a beta tester also gets production releases when
//! they are newer, as on Play). Of the releases on those tracks it may have: a completed one,
//! a rollout in progress whose bucket takes it in, never a halted one (a halted rollout takes
//! in no new device). Releases whose `min_sdk` is above the device's level are skipped. The
//! answer is the eligible release with the highest version code, an update when it is above
//! the installed one; a device already on a halted release (installed >= its version code) is
//! never offered anything older, so it keeps its version.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The tracks, most exclusive first.
pub const TRACKS: [&str; 4] = ["internal", "alpha", "beta", "production"];

/// One million: fractions are parts per million.
pub const PPM: u32 = 1_000_000;

/// The domain separation prefix of the bucket hash (its version: changing it reshuffles devices).
const BUCKET_DOMAIN: &[u8] = b"meshwork-appstore-rollout-v1";

/// Status of a release on a track (Play's `inProgress`, `halted`, `completed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InProgress,
    Halted,
    Completed,
}

/// A release on a track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackRelease {
    pub version_code: i64,
    pub version_name: String,
    pub min_sdk: i32,
    pub status: Status,
    /// The fraction of devices, parts per million (1..=1_000_000); `PPM` when completed.
    pub fraction_ppm: u32,
}

/// A track's releases: the completed one (if any) and the rollout on top of it (if any).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    #[serde(default)]
    pub completed: Option<TrackRelease>,
    #[serde(default)]
    pub rollout: Option<TrackRelease>,
}

/// Why a track change is refused (mapped to FAILED_PRECONDITION by the service).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error("the track has no rollout in progress or halted")]
    NoRollout,
    #[error("the rollout is {0:?}; this needs it in progress")]
    NotInProgress(Status),
    #[error("the rollout is not halted")]
    NotHalted,
    #[error("user_fraction can only go up: the rollout is at {current_ppm} ppm, asked {asked_ppm} ppm")]
    FractionDown { current_ppm: u32, asked_ppm: u32 },
    #[error("version {version_code} is not newer than the track's completed release {completed}")]
    NotNewer { version_code: i64, completed: i64 },
}

/// Returns the index of `track` in [`TRACKS`], or `None` for an unknown name.
pub fn track_index(track: &str) -> Option<usize> {
    TRACKS.iter().position(|t| *t == track)
}

/// Returns the tracks a device enrolled in `track` sees, most exclusive first.
pub fn visible_tracks(track: &str) -> &'static [&'static str] {
    match track_index(track) {
        Some(i) => &TRACKS[i..],
        None => &TRACKS[TRACKS.len() - 1..],
    }
}

/// Converts a user fraction in (0, 1] to parts per million (rounded, at least 1); `None` when
/// out of range or not a number.
pub fn fraction_to_ppm(fraction: f64) -> Option<u32> {
    if !fraction.is_finite() || fraction <= 0.0 || fraction > 1.0 {
        return None;
    }
    Some(((fraction * f64::from(PPM)).round() as u32).clamp(1, PPM))
}

/// Returns the fraction of `ppm`.
pub fn ppm_to_fraction(ppm: u32) -> f64 {
    f64::from(ppm) / f64::from(PPM)
}

/// Returns the device's stable 64-bit bucket for a release (see the module docs).
pub fn bucket(device_id: &str, package: &str, version_code: i64) -> u64 {
    let mut h = Sha256::new();
    h.update(BUCKET_DOMAIN);
    h.update([0]);
    h.update(device_id.as_bytes());
    h.update([0]);
    h.update(package.as_bytes());
    h.update([0]);
    h.update(version_code.to_string().as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Returns true when `bucket` is inside a rollout of `ppm` parts per million.
pub fn in_fraction(bucket: u64, ppm: u32) -> bool {
    // bucket / 2^64 < ppm / 1e6, in exact integer arithmetic.
    (u128::from(bucket) * u128::from(PPM)) < (u128::from(ppm) << 64)
}

/// Returns true when the device is in the rollout of `release` (completed: every device).
pub fn device_in(device_id: &str, package: &str, release: &TrackRelease) -> bool {
    match release.status {
        Status::Completed => true,
        Status::Halted => false,
        Status::InProgress => in_fraction(bucket(device_id, package, release.version_code), release.fraction_ppm),
    }
}

/// What a device asks.
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    pub device_id: &'a str,
    pub installed_version_code: i64,
    pub sdk_level: i32,
    /// The enrolled track (validated; empty = production).
    pub track: &'a str,
}

/// The answer: the newest release the device may have, and its track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer<'a> {
    pub release: &'a TrackRelease,
    pub track: &'static str,
    /// True when the release is newer than the installed version.
    pub update: bool,
}

/// Returns the newest release `device` may have among `tracks` (looked up by name), or `None`
/// when none is eligible.
pub fn check<'a>(package: &str, device: &Device<'_>, tracks: impl Fn(&str) -> Option<&'a Track>) -> Option<Offer<'a>> {
    let mut best: Option<Offer<'a>> = None;
    for name in visible_tracks(device.track) {
        let Some(track) = tracks(name) else { continue };
        for release in [track.completed.as_ref(), track.rollout.as_ref()].into_iter().flatten() {
            if release.min_sdk > device.sdk_level || !device_in(device.device_id, package, release) {
                continue;
            }
            if best.as_ref().is_none_or(|b| release.version_code > b.release.version_code) {
                best = Some(Offer { release, track: name, update: false });
            }
        }
    }
    best.map(|mut offer| {
        offer.update = offer.release.version_code > device.installed_version_code;
        offer
    })
}

impl Track {
    /// Puts `release` on the track at `ppm`: completed at [`PPM`] (replacing everything),
    /// otherwise a rollout in progress replacing any earlier rollout. It must be newer than the
    /// completed release.
    pub fn set(&mut self, mut release: TrackRelease, ppm: u32) -> Result<(), RolloutError> {
        if let Some(done) = &self.completed
            && release.version_code <= done.version_code
        {
            return Err(RolloutError::NotNewer { version_code: release.version_code, completed: done.version_code });
        }
        release.fraction_ppm = ppm;
        if ppm >= PPM {
            release.status = Status::Completed;
            release.fraction_ppm = PPM;
            self.completed = Some(release);
            self.rollout = None;
        } else {
            release.status = Status::InProgress;
            self.rollout = Some(release);
        }
        Ok(())
    }

    /// Raises the rollout in progress to `ppm` (completing it at [`PPM`]).
    pub fn update(&mut self, ppm: u32) -> Result<(), RolloutError> {
        let rollout = self.rollout.as_mut().ok_or(RolloutError::NoRollout)?;
        if rollout.status != Status::InProgress {
            return Err(RolloutError::NotInProgress(rollout.status));
        }
        if ppm < rollout.fraction_ppm {
            return Err(RolloutError::FractionDown { current_ppm: rollout.fraction_ppm, asked_ppm: ppm });
        }
        rollout.fraction_ppm = ppm;
        if ppm >= PPM {
            self.complete()?;
        }
        Ok(())
    }

    /// Halts the rollout in progress.
    pub fn halt(&mut self) -> Result<(), RolloutError> {
        let rollout = self.rollout.as_mut().ok_or(RolloutError::NoRollout)?;
        if rollout.status != Status::InProgress {
            return Err(RolloutError::NotInProgress(rollout.status));
        }
        rollout.status = Status::Halted;
        Ok(())
    }

    /// Resumes a halted rollout at its fraction.
    pub fn resume(&mut self) -> Result<(), RolloutError> {
        let rollout = self.rollout.as_mut().ok_or(RolloutError::NoRollout)?;
        if rollout.status != Status::Halted {
            return Err(RolloutError::NotHalted);
        }
        rollout.status = Status::InProgress;
        Ok(())
    }

    /// Completes the rollout (in progress or halted): it becomes the completed release.
    pub fn complete(&mut self) -> Result<(), RolloutError> {
        let mut rollout = self.rollout.take().ok_or(RolloutError::NoRollout)?;
        rollout.status = Status::Completed;
        rollout.fraction_ppm = PPM;
        self.completed = Some(rollout);
        Ok(())
    }

    /// Returns the newest release on the track (the rollout, else the completed one).
    pub fn newest(&self) -> Option<&TrackRelease> {
        self.rollout.as_ref().or(self.completed.as_ref())
    }

    /// Returns the releases, completed first.
    pub fn releases(&self) -> impl Iterator<Item = &TrackRelease> {
        [self.completed.as_ref(), self.rollout.as_ref()].into_iter().flatten()
    }

    /// Returns true when the track holds nothing.
    pub fn is_empty(&self) -> bool {
        self.completed.is_none() && self.rollout.is_none()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn release(version_code: i64, min_sdk: i32) -> TrackRelease {
        TrackRelease {
            version_code,
            version_name: format!("v{version_code}"),
            min_sdk,
            status: Status::Completed,
            fraction_ppm: PPM,
        }
    }

    fn device<'a>(id: &'a str, installed: i64, sdk: i32, track: &'a str) -> Device<'a> {
        Device { device_id: id, installed_version_code: installed, sdk_level: sdk, track }
    }

    #[test]
    fn the_bucket_is_a_documented_sha256_prefix() {
        // SHA-256("meshwork-appstore-rollout-v1\0d\0com.a.b\07"), first 8 bytes: fixed forever.
        let mut h = Sha256::new();
        h.update(b"meshwork-appstore-rollout-v1\0d\0com.a.b\x007");
        let d = h.finalize();
        assert_eq!(bucket("d", "com.a.b", 7), u64::from_be_bytes(d[..8].try_into().unwrap()));
        assert_ne!(bucket("d", "com.a.b", 7), bucket("d", "com.a.b", 8));
        assert_ne!(bucket("d", "com.a.b", 7), bucket("e", "com.a.b", 7));
    }

    #[test]
    fn fractions_are_exact_thresholds() {
        assert!(in_fraction(0, 1));
        assert!(!in_fraction(0, 0));
        assert!(in_fraction(u64::MAX, PPM));
        // Half: the top bit decides.
        assert!(in_fraction((1 << 63) - 1, PPM / 2));
        assert!(!in_fraction(1 << 63, PPM / 2));
        assert_eq!(fraction_to_ppm(0.1), Some(100_000));
        assert_eq!(fraction_to_ppm(1.0), Some(PPM));
        assert_eq!(fraction_to_ppm(1e-9), Some(1));
        for bad in [0.0, -0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert_eq!(fraction_to_ppm(bad), None, "{bad}");
        }
    }

    #[test]
    fn widening_keeps_every_device_and_shares_match() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("device-{i}")).collect();
        let at = |ppm| ids.iter().filter(|d| in_fraction(bucket(d, "com.x.y", 3), ppm)).cloned().collect::<Vec<_>>();
        let ten = at(100_000);
        let twenty = at(200_000);
        assert!(ten.iter().all(|d| twenty.contains(d)));
        let share = ten.len() as f64 / ids.len() as f64;
        assert!((share - 0.1).abs() < 0.01, "{share}");
    }

    #[test]
    fn track_transitions() {
        let mut t = Track::default();
        assert_eq!(t.halt(), Err(RolloutError::NoRollout));
        t.set(release(1, 1), PPM).unwrap();
        assert_eq!(t.completed.as_ref().unwrap().status, Status::Completed);
        t.set(release(2, 1), 100_000).unwrap();
        assert_eq!(t.rollout.as_ref().unwrap().status, Status::InProgress);
        assert_eq!(t.update(50_000), Err(RolloutError::FractionDown { current_ppm: 100_000, asked_ppm: 50_000 }));
        t.update(200_000).unwrap();
        t.halt().unwrap();
        assert_eq!(t.update(300_000), Err(RolloutError::NotInProgress(Status::Halted)));
        assert_eq!(t.halt(), Err(RolloutError::NotInProgress(Status::Halted)));
        t.resume().unwrap();
        assert_eq!(t.resume(), Err(RolloutError::NotHalted));
        t.update(PPM).unwrap();
        assert_eq!(t.completed.as_ref().unwrap().version_code, 2);
        assert!(t.rollout.is_none());
        assert_eq!(t.set(release(2, 1), PPM), Err(RolloutError::NotNewer { version_code: 2, completed: 2 }));
    }

    #[test]
    fn eligibility_picks_the_newest_visible_release() {
        let mut prod = Track::default();
        prod.set(release(10, 21), PPM).unwrap();
        let mut beta = Track::default();
        beta.set(release(9, 21), PPM).unwrap();
        let mut alpha = Track::default();
        alpha.set(release(12, 30), PPM).unwrap();
        let tracks: HashMap<&str, Track> = [("production", prod), ("beta", beta), ("alpha", alpha)].into();
        let look = |n: &str| tracks.get(n);
        // A beta tester gets production's newer 10 over beta's 9.
        let o = check("com.a.b", &device("d", 1, 25, "beta"), look).unwrap();
        assert_eq!((o.release.version_code, o.track, o.update), (10, "production", true));
        // Alpha's 12 needs SDK 30: skipped on 25, taken on 30.
        assert_eq!(check("com.a.b", &device("d", 1, 25, "alpha"), look).unwrap().release.version_code, 10);
        assert_eq!(check("com.a.b", &device("d", 1, 30, "alpha"), look).unwrap().release.version_code, 12);
        // Production devices never see beta or alpha.
        assert_eq!(check("com.a.b", &device("d", 1, 30, ""), look).unwrap().release.version_code, 10);
        // Too old a device: nothing.
        assert!(check("com.a.b", &device("d", 1, 20, "alpha"), look).is_none());
        // Already current: no update.
        assert!(!check("com.a.b", &device("d", 10, 25, ""), look).unwrap().update);
    }

    #[test]
    fn a_halt_takes_no_new_device_and_never_downgrades() {
        let mut prod = Track::default();
        prod.set(release(1, 1), PPM).unwrap();
        prod.set(release(2, 1), 500_000).unwrap();
        let ids: Vec<String> = (0..2_000).map(|i| format!("h{i}")).collect();
        let inside: Vec<&String> = ids.iter().filter(|d| device_in(d, "p.q", prod.rollout.as_ref().unwrap())).collect();
        assert!(!inside.is_empty());
        prod.halt().unwrap();
        for d in &ids {
            let o = check("p.q", &device(d, 1, 5, "production"), |n| (n == "production").then_some(&prod)).unwrap();
            assert_eq!(o.release.version_code, 1);
            assert!(!o.update, "a halted rollout takes in no new device");
        }
        // A device already on the halted version 2 is offered nothing older.
        let o = check("p.q", &device(inside[0], 2, 5, ""), |n| (n == "production").then_some(&prod)).unwrap();
        assert!(!o.update);
    }
}
