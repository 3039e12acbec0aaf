//! GAEN v2 risk scoring ("Exposure Windows" API): a matched key's sightings form
//! [`ExposureWindow`]s of [`ScanInstance`]s; each window is scored from its scans' durations
//! weighted by attenuation bucket, times the weight of the key's infectiousness (from its days
//! since symptom onset) and of its report type; windows below a minimum score are dropped;
//! scores add up per day into [`DailySummary`]s, and a day whose score reaches the daily
//! threshold is an exposure. [`RiskConfig`] holds the weights, with this crate's defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::export::ReportType;

/// How infectious the positive was on the day of a key (GAEN `Infectiousness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Infectiousness {
    /// Not infectious: windows of such keys are dropped.
    None,
    /// Standard infectiousness.
    Standard,
    /// High infectiousness.
    High,
}

/// One scan in which a matched RPI was seen (GAEN `ScanInstance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanInstance {
    /// Unix seconds of the scan.
    pub time: i64,
    /// Typical attenuation of the scan, dB.
    pub typical_attenuation_db: u8,
    /// Minimum attenuation of the scan, dB.
    pub min_attenuation_db: u8,
    /// Seconds this scan stands for (since the last scan).
    pub seconds_since_last_scan: u32,
}

/// Sightings of one key within one day, at most [`WINDOW_SECONDS`] long (GAEN `ExposureWindow`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExposureWindow {
    /// Unix day (days since 1970-01-01 UTC) of the window.
    pub day: u32,
    /// The key's report type.
    pub report_type: ReportType,
    /// The key's infectiousness.
    pub infectiousness: Infectiousness,
    /// The key's days since symptom onset, when the export carries them.
    pub days_since_onset: Option<i32>,
    /// The scans.
    pub scan_instances: Vec<ScanInstance>,
    /// The window's score ([`RiskConfig::window_score`]), weighted seconds.
    pub score: f64,
}

/// Longest span of one exposure window, seconds (30 minutes, as GAEN's windows).
pub const WINDOW_SECONDS: i64 = 30 * 60;

/// The day's sum over its windows (GAEN `DailySummary`), and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailySummary {
    /// Unix day.
    pub day: u32,
    /// The highest window score of the day, weighted seconds.
    pub maximum_score: f64,
    /// The sum of the window scores of the day, weighted seconds.
    pub score_sum: f64,
    /// Attenuation-weighted seconds alone (no infectiousness or report type weights).
    pub weighted_duration_seconds: f64,
    /// Windows counted.
    pub windows: usize,
    /// Whether `score_sum` reaches [`RiskConfig::daily_threshold_minutes`].
    pub exposed: bool,
}

/// The v2 risk configuration, in the shape of GAEN's `DailySummariesConfig` and
/// `DiagnosisKeysDataMapping`. The defaults ([`RiskConfig::default`]) are:
///
/// - attenuation buckets: immediate ≤ 55 dB, near ≤ 63 dB, medium ≤ 70 dB, other above, with
///   weights 1.5, 1.0, 0.5 and 0.0 (so a contact beyond ~8 m never counts);
/// - infectiousness by days since symptom onset: high from -2 to +5 days, standard from -5 to
///   -3 and +6 to +9, none otherwise; standard when the export gives no onset; weights 1.0 (high)
///   and 0.6 (standard);
/// - report types: confirmed test and clinical diagnosis 1.0, self report 0.8, recursive 0.0;
///   a key without a report type is taken as a confirmed test;
/// - no minimum window score; a day is an exposure from 15 weighted minutes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RiskConfig {
    /// Upper bounds (inclusive) of the immediate, near and medium buckets, dB, increasing.
    pub attenuation_thresholds_db: [u8; 3],
    /// Weights of the immediate, near, medium and other buckets.
    pub attenuation_weights: [f64; 4],
    /// Infectiousness for days since onset -14..=14 (index 0 is -14).
    pub infectiousness_by_days_since_onset: Vec<Infectiousness>,
    /// Infectiousness of keys whose export gives no days since onset.
    pub infectiousness_when_onset_unknown: Infectiousness,
    /// Weight of standard infectiousness.
    pub standard_infectiousness_weight: f64,
    /// Weight of high infectiousness.
    pub high_infectiousness_weight: f64,
    /// Weights of the report types confirmed test, clinical diagnosis, self report, recursive.
    pub report_type_weights: [f64; 4],
    /// The report type of keys that carry none.
    pub default_report_type: ReportType,
    /// Windows scoring below this many weighted seconds are dropped.
    pub minimum_window_score: f64,
    /// A day whose window scores add up to this many weighted minutes is an exposure.
    pub daily_threshold_minutes: f64,
}

impl Default for RiskConfig {
    fn default() -> Self {
        let infectiousness_by_days_since_onset = (-14..=14)
            .map(|d| match d {
                -2..=5 => Infectiousness::High,
                -5..=-3 | 6..=9 => Infectiousness::Standard,
                _ => Infectiousness::None,
            })
            .collect();
        RiskConfig {
            attenuation_thresholds_db: [55, 63, 70],
            attenuation_weights: [1.5, 1.0, 0.5, 0.0],
            infectiousness_by_days_since_onset,
            infectiousness_when_onset_unknown: Infectiousness::Standard,
            standard_infectiousness_weight: 0.6,
            high_infectiousness_weight: 1.0,
            report_type_weights: [1.0, 1.0, 0.8, 0.0],
            default_report_type: ReportType::ConfirmedTest,
            minimum_window_score: 0.0,
            daily_threshold_minutes: 15.0,
        }
    }
}

impl RiskConfig {
    /// The weight of a scan at `attenuation_db`.
    pub fn attenuation_weight(&self, attenuation_db: u8) -> f64 {
        let [immediate, near, medium] = self.attenuation_thresholds_db;
        let bucket = if attenuation_db <= immediate {
            0
        } else if attenuation_db <= near {
            1
        } else if attenuation_db <= medium {
            2
        } else {
            3
        };
        self.attenuation_weights[bucket]
    }

    /// The infectiousness of a key with these days since onset.
    pub fn infectiousness(&self, days_since_onset: Option<i32>) -> Infectiousness {
        match days_since_onset {
            None => self.infectiousness_when_onset_unknown,
            Some(d) => usize::try_from(d + 14)
                .ok()
                .and_then(|i| self.infectiousness_by_days_since_onset.get(i).copied())
                .unwrap_or(Infectiousness::None),
        }
    }

    /// The weight of an infectiousness.
    pub fn infectiousness_weight(&self, infectiousness: Infectiousness) -> f64 {
        match infectiousness {
            Infectiousness::None => 0.0,
            Infectiousness::Standard => self.standard_infectiousness_weight,
            Infectiousness::High => self.high_infectiousness_weight,
        }
    }

    /// The weight of a report type (unknown: the default type's; revoked: 0).
    pub fn report_type_weight(&self, report_type: ReportType) -> f64 {
        match report_type {
            ReportType::Unknown => match self.default_report_type {
                ReportType::Unknown => 0.0,
                other => self.report_type_weight(other),
            },
            ReportType::ConfirmedTest => self.report_type_weights[0],
            ReportType::ConfirmedClinicalDiagnosis => self.report_type_weights[1],
            ReportType::SelfReport => self.report_type_weights[2],
            ReportType::Recursive => self.report_type_weights[3],
            ReportType::Revoked => 0.0,
        }
    }

    /// Attenuation-weighted seconds of `scans`.
    pub fn weighted_seconds(&self, scans: &[ScanInstance]) -> f64 {
        scans
            .iter()
            .map(|s| f64::from(s.seconds_since_last_scan) * self.attenuation_weight(s.typical_attenuation_db))
            .sum()
    }

    /// The score of a window: its weighted seconds times its infectiousness and report type
    /// weights.
    pub fn window_score(&self, window: &ExposureWindow) -> f64 {
        self.weighted_seconds(&window.scan_instances)
            * self.infectiousness_weight(window.infectiousness)
            * self.report_type_weight(window.report_type)
    }

    /// Checks the configuration: thresholds increasing, weights finite and non-negative, 29
    /// infectiousness entries.
    pub fn validate(&self) -> Result<(), String> {
        let [a, b, c] = self.attenuation_thresholds_db;
        if !(a <= b && b <= c) {
            return Err("attenuation_thresholds_db must increase".into());
        }
        let others = [self.standard_infectiousness_weight, self.high_infectiousness_weight, self.minimum_window_score];
        let mut weights = self.attenuation_weights.iter().chain(self.report_type_weights.iter()).chain(others.iter());
        if weights.any(|w| !w.is_finite() || *w < 0.0) {
            return Err("weights must be finite and not negative".into());
        }
        if self.infectiousness_by_days_since_onset.len() != 29 {
            return Err("infectiousness_by_days_since_onset needs 29 entries (-14..=14)".into());
        }
        if !self.daily_threshold_minutes.is_finite() || self.daily_threshold_minutes <= 0.0 {
            return Err("daily_threshold_minutes must be above 0".into());
        }
        Ok(())
    }

    /// Scores `windows` (setting each score), drops those below the minimum, and sums them per
    /// day, oldest day first.
    pub fn daily_summaries(&self, windows: &mut Vec<ExposureWindow>) -> Vec<DailySummary> {
        for window in windows.iter_mut() {
            window.score = self.window_score(window);
        }
        windows.retain(|w| w.score > 0.0 && w.score >= self.minimum_window_score);
        let mut days: BTreeMap<u32, DailySummary> = BTreeMap::new();
        for window in windows.iter() {
            let day = days.entry(window.day).or_insert_with(|| DailySummary {
                day: window.day,
                maximum_score: 0.0,
                score_sum: 0.0,
                weighted_duration_seconds: 0.0,
                windows: 0,
                exposed: false,
            });
            day.maximum_score = day.maximum_score.max(window.score);
            day.score_sum += window.score;
            day.weighted_duration_seconds += self.weighted_seconds(&window.scan_instances);
            day.windows += 1;
        }
        let threshold = self.daily_threshold_minutes * 60.0;
        days.into_values()
            .map(|mut d| {
                // A tolerance for float sums that land a hair under an exact threshold.
                d.exposed = d.score_sum + 1e-9 >= threshold;
                d
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(att: u8, secs: u32) -> ScanInstance {
        ScanInstance { time: 0, typical_attenuation_db: att, min_attenuation_db: att, seconds_since_last_scan: secs }
    }

    #[test]
    fn buckets_weights_and_the_daily_threshold() {
        let c = RiskConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(
            [c.attenuation_weight(40), c.attenuation_weight(55), c.attenuation_weight(56), c.attenuation_weight(70)],
            [1.5, 1.5, 1.0, 0.5]
        );
        assert_eq!(c.attenuation_weight(71), 0.0);
        assert_eq!(c.infectiousness(Some(0)), Infectiousness::High);
        assert_eq!(c.infectiousness(Some(-4)), Infectiousness::Standard);
        assert_eq!(c.infectiousness(Some(12)), Infectiousness::None);
        assert_eq!(c.infectiousness(Some(40)), Infectiousness::None);
        assert_eq!(c.infectiousness(None), Infectiousness::Standard);
        assert_eq!(c.report_type_weight(ReportType::Unknown), 1.0);
        assert_eq!(c.report_type_weight(ReportType::Revoked), 0.0);
        let window = |day, scans: Vec<ScanInstance>, inf| ExposureWindow {
            day,
            report_type: ReportType::ConfirmedTest,
            infectiousness: inf,
            days_since_onset: None,
            scan_instances: scans,
            score: 0.0,
        };
        // 10 minutes immediate (15 weighted) on day 1: exposed; day 2 standard: 9 minutes.
        let mut windows = vec![
            window(1, vec![scan(50, 300), scan(50, 300)], Infectiousness::High),
            window(2, vec![scan(60, 900)], Infectiousness::Standard),
            window(2, vec![scan(80, 900)], Infectiousness::High),
            window(3, vec![scan(40, 900)], Infectiousness::None),
        ];
        let days = c.daily_summaries(&mut windows);
        assert_eq!(windows.len(), 2, "zero-score windows are dropped");
        assert_eq!(days.len(), 2);
        assert_eq!((days[0].day, days[0].score_sum, days[0].exposed), (1, 900.0, true));
        assert_eq!((days[1].day, days[1].score_sum, days[1].exposed), (2, 540.0, false));
        assert_eq!(days[1].weighted_duration_seconds, 900.0);
    }
}
