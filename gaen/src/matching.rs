//! The device side: diagnosis keys from downloaded exports are expanded into every RPI they
//! broadcast ([`KeyIndex`], once per download), observed RPIs are looked up in it (accepted
//! when seen within ±2 hours of the RPI's interval, the tolerance of the cryptography
//! specification), the sightings of one key on one day are cut into [`ExposureWindow`]s of at
//! most 30 minutes, and the windows are scored with a [`RiskConfig`] into a per-day verdict
//! ([`Report`]). Everything here is pure, so many devices can be checked in parallel against
//! one index.
//!
//! The observed file is JSON lines, one BLE sighting per line (blank lines and lines starting
//! with `#` are skipped):
//!
//! ```json
//! {"rpi": "8be6cd371c5c891604bfbe49df845096", "time": 1585785900, "attenuation_db": 52, "duration_s": 300}
//! {"rpi": "3c9a1de5dd6b02afa7fded7b570b3e56", "time": 1585786500, "rssi_dbm": -60, "aem": "c29211b1", "duration_s": 240}
//! ```
//!
//! - `rpi`: the 16-byte Rolling Proximity Identifier, hex;
//! - `time`: Unix seconds of the scan;
//! - `duration_s`: seconds the sighting stands for (the scan's `seconds_since_last_scan`),
//!   1 to 3600;
//! - `attenuation_db`: typical attenuation 0 to 255 dB; or, instead, `rssi_dbm` with the
//!   advertised `aem` (4 bytes, hex): the AEM is decrypted with the matched key and the
//!   attenuation is the metadata's transmit power minus the RSSI;
//! - `min_attenuation_db` (optional): the scan's minimum attenuation (default: the typical).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::GaenError;
use crate::crypto::{self, Block, RpiGenerator, TEK_ROLLING_PERIOD};
use crate::export::{ReportType, TemporaryExposureKeyExport};
use crate::risk::{DailySummary, ExposureWindow, RiskConfig, ScanInstance, WINDOW_SECONDS};

/// Intervals an RPI may be seen before or after its own (2 hours).
pub const TOLERANCE_INTERVALS: u32 = 12;

/// A diagnosis key as the device uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosisKey {
    /// The TEK.
    pub key: Block,
    /// First interval of the key.
    pub rolling_start: u32,
    /// Intervals it was used, 1 to 144.
    pub rolling_period: u32,
    /// Why it was published.
    pub report_type: ReportType,
    /// Days from symptom onset to the key's day.
    pub days_since_onset: Option<i32>,
}

impl DiagnosisKey {
    /// Reads a key of an export; None when its data is not 16 bytes or its interval numbers
    /// are out of range (a client skips such keys).
    pub fn from_export(key: &crate::export::TemporaryExposureKey) -> Option<DiagnosisKey> {
        let data: Block = key.key_data.as_deref()?.try_into().ok()?;
        let rolling_start = u32::try_from(key.rolling_start_interval_number?).ok()?;
        let rolling_period =
            u32::try_from(key.rolling_period()).ok().filter(|p| (1..=TEK_ROLLING_PERIOD).contains(p))?;
        let report_type = key.report_type.and_then(|t| ReportType::try_from(t).ok()).unwrap_or(ReportType::Unknown);
        let days_since_onset = key.days_since_onset_of_symptoms.filter(|d| (-14..=14).contains(d));
        Some(DiagnosisKey { key: data, rolling_start, rolling_period, report_type, days_since_onset })
    }
}

/// Every RPI of a set of diagnosis keys, for lookups.
#[derive(Debug, Default)]
pub struct KeyIndex {
    keys: Vec<DiagnosisKey>,
    rpis: HashMap<Block, (u32, u32)>,
    /// Keys of the exports that were not usable.
    pub skipped: usize,
}

impl KeyIndex {
    /// Expands `keys` into their RPIs (one AES block per interval of each key).
    pub fn build(keys: Vec<DiagnosisKey>) -> KeyIndex {
        let mut rpis = HashMap::with_capacity(keys.len() * TEK_ROLLING_PERIOD as usize);
        for (i, key) in keys.iter().enumerate() {
            let generator = RpiGenerator::for_tek(&key.key);
            for interval in key.rolling_start..key.rolling_start.saturating_add(key.rolling_period) {
                rpis.entry(generator.rpi(interval)).or_insert((i as u32, interval));
            }
        }
        KeyIndex { keys, rpis, skipped: 0 }
    }

    /// The index of every usable key of `exports` (new and revised keys; a revoked key is
    /// left out).
    pub fn from_exports(exports: &[TemporaryExposureKeyExport]) -> KeyIndex {
        let mut keys = Vec::new();
        let mut skipped = 0;
        for export in exports {
            for key in export.keys.iter().chain(export.revised_keys.iter()) {
                match DiagnosisKey::from_export(key) {
                    Some(k) if k.report_type != ReportType::Revoked => keys.push(k),
                    Some(_) => {}
                    None => skipped += 1,
                }
            }
        }
        KeyIndex { skipped, ..KeyIndex::build(keys) }
    }

    /// The keys.
    pub fn keys(&self) -> &[DiagnosisKey] {
        &self.keys
    }

    /// The key and interval of `rpi`, if it is one of the index's.
    pub fn lookup(&self, rpi: &Block) -> Option<(&DiagnosisKey, u32)> {
        let (key, interval) = self.rpis.get(rpi)?;
        Some((self.keys.get(*key as usize)?, *interval))
    }
}

/// One BLE sighting (a line of the observed file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The RPI, hex.
    pub rpi: String,
    /// Unix seconds of the scan.
    pub time: i64,
    /// Seconds the sighting stands for.
    pub duration_s: u32,
    /// Typical attenuation, dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attenuation_db: Option<u8>,
    /// Minimum attenuation, dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_attenuation_db: Option<u8>,
    /// Received signal strength, dBm (with `aem`, instead of `attenuation_db`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssi_dbm: Option<i16>,
    /// The Associated Encrypted Metadata advertised with the RPI, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aem: Option<String>,
}

/// A parsed, checked [`Observation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The RPI.
    pub rpi: Block,
    /// Unix seconds.
    pub time: i64,
    /// Seconds it stands for.
    pub duration_s: u32,
    /// Typical attenuation, when given.
    pub attenuation_db: Option<u8>,
    /// Minimum attenuation, when given.
    pub min_attenuation_db: Option<u8>,
    /// RSSI and AEM, when given.
    pub rssi_aem: Option<(i16, [u8; 4])>,
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Observation {
    /// The observation of `rpi` at `time` for `duration_s` at `attenuation_db`.
    pub fn new(rpi: &Block, time: i64, duration_s: u32, attenuation_db: u8) -> Observation {
        Observation {
            rpi: hex(rpi),
            time,
            duration_s,
            attenuation_db: Some(attenuation_db),
            min_attenuation_db: None,
            rssi_dbm: None,
            aem: None,
        }
    }

    /// Checks the fields; the error says which field and why.
    pub fn sighting(&self) -> Result<Sighting, String> {
        let rpi = unhex::<16>(&self.rpi).ok_or("rpi must be 32 hex digits")?;
        if self.time < 0 {
            return Err("time must be Unix seconds, not negative".into());
        }
        if !(1..=3600).contains(&self.duration_s) {
            return Err("duration_s must be 1 to 3600".into());
        }
        let rssi_aem = match (self.rssi_dbm, &self.aem) {
            (Some(rssi), Some(aem)) => Some((rssi, unhex::<4>(aem).ok_or("aem must be 8 hex digits")?)),
            (None, None) => None,
            _ => return Err("rssi_dbm and aem go together".into()),
        };
        if self.attenuation_db.is_none() && rssi_aem.is_none() {
            return Err("give attenuation_db, or rssi_dbm with aem".into());
        }
        Ok(Sighting {
            rpi,
            time: self.time,
            duration_s: self.duration_s,
            attenuation_db: self.attenuation_db,
            min_attenuation_db: self.min_attenuation_db,
            rssi_aem,
        })
    }
}

/// Parses the observed file's text (JSON lines).
pub fn parse_observations(text: &str) -> Result<Vec<Sighting>, GaenError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| GaenError::Observed { line: n + 1, reason };
        let observation: Observation = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        out.push(observation.sighting().map_err(bad)?);
    }
    Ok(out)
}

/// A sighting whose RPI belongs to a diagnosis key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Which key of the index.
    pub key: usize,
    /// The scan.
    pub scan: ScanInstance,
}

/// Looks every sighting up; keeps those of a diagnosis key seen within the tolerance of their
/// interval, with their attenuation (from the AEM when the sighting gives RSSI and AEM).
pub fn match_sightings(index: &KeyIndex, sightings: &[Sighting]) -> Vec<Match> {
    let mut out = Vec::new();
    for s in sightings {
        let Some(&(key, interval)) = index.rpis.get(&s.rpi) else { continue };
        let seen = crypto::interval_number(s.time);
        if seen.abs_diff(interval) > TOLERANCE_INTERVALS {
            continue;
        }
        let attenuation = match (s.attenuation_db, s.rssi_aem) {
            (Some(a), _) => a,
            (None, Some((rssi, aem))) => {
                let Some(k) = index.keys.get(key as usize) else { continue };
                let metadata = crypto::aem_decrypt(&k.key, &s.rpi, &aem);
                let Some(meta) = crypto::Metadata::parse(&metadata) else { continue };
                (i16::from(meta.tx_power_dbm) - rssi).clamp(0, 255) as u8
            }
            (None, None) => continue,
        };
        out.push(Match {
            key: key as usize,
            scan: ScanInstance {
                time: s.time,
                typical_attenuation_db: attenuation,
                min_attenuation_db: s.min_attenuation_db.unwrap_or(attenuation).min(attenuation),
                seconds_since_last_scan: s.duration_s,
            },
        });
    }
    out
}

/// Cuts the matches of each key and day into windows of at most 30 minutes.
pub fn exposure_windows(index: &KeyIndex, mut matches: Vec<Match>, config: &RiskConfig) -> Vec<ExposureWindow> {
    matches.sort_by_key(|m| (m.key, m.scan.time));
    let mut by_key_day: BTreeMap<(usize, u32), Vec<ScanInstance>> = BTreeMap::new();
    for m in matches {
        let day = crypto::day_of_interval(crypto::interval_number(m.scan.time));
        by_key_day.entry((m.key, day)).or_default().push(m.scan);
    }
    let mut windows = Vec::new();
    for ((key, day), scans) in by_key_day {
        let Some(k) = index.keys.get(key) else { continue };
        let report_type = match k.report_type {
            ReportType::Unknown => config.default_report_type,
            other => other,
        };
        let mut current: Vec<ScanInstance> = Vec::new();
        for scan in scans {
            if current.first().is_some_and(|first| scan.time - first.time >= WINDOW_SECONDS) {
                windows.push(window(day, k, report_type, std::mem::take(&mut current), config));
            }
            current.push(scan);
        }
        if !current.is_empty() {
            windows.push(window(day, k, report_type, current, config));
        }
    }
    windows
}

fn window(
    day: u32,
    key: &DiagnosisKey,
    report_type: ReportType,
    scans: Vec<ScanInstance>,
    config: &RiskConfig,
) -> ExposureWindow {
    ExposureWindow {
        day,
        report_type,
        infectiousness: config.infectiousness(key.days_since_onset),
        days_since_onset: key.days_since_onset,
        scan_instances: scans,
        score: 0.0,
    }
}

/// What an exposure check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Export files read.
    pub exports: usize,
    /// Diagnosis keys in them.
    pub keys: usize,
    /// Sightings checked.
    pub observations: usize,
    /// Sightings that matched a diagnosis key.
    pub matched: usize,
    /// The scored windows that count.
    pub windows: Vec<ExposureWindow>,
    /// Per day, oldest first.
    pub days: Vec<DailySummary>,
    /// Whether some day is an exposure.
    pub exposed: bool,
}

impl Report {
    /// The Unix days that are exposures.
    pub fn exposed_days(&self) -> Vec<u32> {
        self.days.iter().filter(|d| d.exposed).map(|d| d.day).collect()
    }
}

/// Checks one device's sightings against an index: match, window, score, per-day verdict.
pub fn check(index: &KeyIndex, sightings: &[Sighting], config: &RiskConfig) -> Report {
    let matches = match_sightings(index, sightings);
    let matched = matches.len();
    let mut windows = exposure_windows(index, matches, config);
    let days = config.daily_summaries(&mut windows);
    let exposed = days.iter().any(|d| d.exposed);
    Report { exports: 0, keys: index.keys.len(), observations: sightings.len(), matched, windows, days, exposed }
}

/// Name of the optional public key file in an exports directory.
pub const PUBLIC_KEY_FILE: &str = "public_key.pem";

/// Reads every `*.zip` export archive of `dir` (in name order). When the directory holds
/// [`PUBLIC_KEY_FILE`] (the key server's PEM public key, as `GetSigningKey` gives it), every
/// archive's signature must verify with it.
pub fn load_exports(dir: &Path) -> Result<Vec<TemporaryExposureKeyExport>, GaenError> {
    let key_path = dir.join(PUBLIC_KEY_FILE);
    let key = if key_path.exists() {
        Some(crate::export::verifying_key_from_pem(&std::fs::read_to_string(&key_path)?)?)
    } else {
        None
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("zip")))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            crate::export::open_archive(&std::fs::read(p)?, key.as_ref())
                .map_err(|e| GaenError::Format(format!("{}: {e}", p.display())))
        })
        .collect()
}

/// `meshwork exposure-check --exports DIR --observed FILE`: loads the export archives of
/// `exports_dir` (verifying them when it holds `public_key.pem`), reads the observed file
/// (JSON lines, see the module documentation) and returns the per-day verdict under `config`.
pub fn exposure_check(exports_dir: &Path, observed: &Path, config: &RiskConfig) -> Result<Report, GaenError> {
    config.validate().map_err(GaenError::Config)?;
    let exports = load_exports(exports_dir)?;
    let index = KeyIndex::from_exports(&exports);
    let sightings = parse_observations(&std::fs::read_to_string(observed)?)?;
    Ok(Report { exports: exports.len(), ..check(&index, &sightings, config) })
}
