//! The device side end to end on files: exports written as signed archives, an observed file
//! in JSON lines, and `exposure_check` over them: RPI matching within ±2 hours only, the AEM
//! path (attenuation from the decrypted transmit power and the RSSI), 30-minute windows,
//! per-day verdicts, signature checking with `public_key.pem`, and line-numbered errors.

use meshwork_gaen::crypto::{self, Metadata, RpiGenerator};
use meshwork_gaen::export::{self, ReportType, TemporaryExposureKey};
use meshwork_gaen::matching::{Observation, PUBLIC_KEY_FILE, hex, parse_observations};
use meshwork_gaen::{GaenError, RiskConfig, exposure_check};

const DAY: u32 = 20_000;

fn key(data: [u8; 16], day: u32, onset_days: Option<i32>, report: ReportType) -> TemporaryExposureKey {
    TemporaryExposureKey {
        key_data: Some(data.to_vec()),
        transmission_risk_level: None,
        rolling_start_interval_number: Some((day * 144) as i32),
        rolling_period: None,
        report_type: Some(report as i32),
        days_since_onset_of_symptoms: onset_days,
    }
}

fn seconds(day: u32, hour: i64) -> i64 {
    i64::from(day) * 86_400 + hour * 3600
}

#[test]
fn exposure_check_on_files() {
    let dir = tempfile::tempdir().unwrap();
    let signer = export::generate_signing_key();
    let info = export::signature_info("v1", "310");
    let (a, b, c) = ([1u8; 16], [2u8; 16], [3u8; 16]);
    let keys = vec![
        key(a, DAY, Some(0), ReportType::ConfirmedTest),
        key(b, DAY + 1, Some(-4), ReportType::SelfReport),
        key(c, DAY + 2, Some(12), ReportType::ConfirmedTest),
    ];
    let archive = export::build_archive(keys, 0, 3600, "US", &signer, &info).unwrap();
    std::fs::write(dir.path().join("batch-1.zip"), &archive).unwrap();
    std::fs::write(dir.path().join(PUBLIC_KEY_FILE), export::public_key_pem(signer.verifying_key()).unwrap()).unwrap();

    let ga = RpiGenerator::for_tek(&a);
    let gb = RpiGenerator::for_tek(&b);
    let gc = RpiGenerator::for_tek(&c);
    let mut lines = vec!["# device 7".to_string(), String::new()];
    let mut push = |o: Observation| lines.push(serde_json::to_string(&o).unwrap());
    // Day DAY, key a (high infectiousness, confirmed): 3 x 5 min immediate (1.5) = 22.5 min.
    for i in 0..3 {
        let t = seconds(DAY, 10) + i * 300;
        push(Observation::new(&ga.rpi(crypto::interval_number(t)), t, 300, 50));
    }
    // The same RPI 3 hours off its interval: outside the 2-hour tolerance, not counted.
    let t = seconds(DAY, 10);
    push(Observation::new(&ga.rpi(crypto::interval_number(t)), t + 3 * 3600, 300, 50));
    // Day DAY+1, key b (standard 0.6, self report 0.8), through the AEM: tx power 8 dBm,
    // RSSI -50 dBm: 58 dB, near (1.0). 30 min -> 14.4 weighted min: not an exposure.
    for i in 0..6 {
        let t = seconds(DAY + 1, 8) + i * 300;
        let rpi = gb.rpi(crypto::interval_number(t));
        let aem = crypto::aem_encrypt(&b, &rpi, &Metadata { major: 1, minor: 0, tx_power_dbm: 8 }.encode());
        let mut o = Observation::new(&rpi, t, 300, 0);
        o.attenuation_db = None;
        o.rssi_dbm = Some(-50);
        o.aem = Some(hex(&aem));
        push(o);
    }
    // Day DAY+2, key c: 12 days after onset, not infectious: no window counts.
    let t = seconds(DAY + 2, 1);
    push(Observation::new(&gc.rpi(crypto::interval_number(t)), t, 1800, 40));
    // Someone not in the exports.
    push(Observation::new(&[9; 16], t, 600, 40));
    let observed = dir.path().join("observed.jsonl");
    std::fs::write(&observed, lines.join("\n")).unwrap();

    let report = exposure_check(dir.path(), &observed, &RiskConfig::default()).unwrap();
    assert_eq!((report.exports, report.keys, report.observations, report.matched), (1, 3, 12, 10));
    assert_eq!(report.exposed_days(), vec![DAY]);
    assert!(report.exposed);
    assert_eq!(report.days.len(), 2, "day DAY+2's window scores 0 and is dropped");
    assert_eq!(report.days[0].score_sum, 1350.0);
    assert!((report.days[1].score_sum - 864.0).abs() < 1e-9, "{}", report.days[1].score_sum);
    assert!(!report.days[1].exposed);
    let attenuations: Vec<u8> = report.windows[1].scan_instances.iter().map(|s| s.typical_attenuation_db).collect();
    assert_eq!(attenuations, vec![58; 6]);
    // A lower daily threshold makes day DAY+1 an exposure too.
    let mut cfg = RiskConfig { daily_threshold_minutes: 14.0, ..RiskConfig::default() };
    let report = exposure_check(dir.path(), &observed, &cfg).unwrap();
    assert_eq!(report.exposed_days(), vec![DAY, DAY + 1]);
    cfg.minimum_window_score = 1000.0;
    let report = exposure_check(dir.path(), &observed, &cfg).unwrap();
    assert_eq!(report.exposed_days(), vec![DAY], "windows under the minimum score are dropped");

    // Another server's key: the archive does not verify.
    let other = export::generate_signing_key();
    std::fs::write(dir.path().join(PUBLIC_KEY_FILE), export::public_key_pem(other.verifying_key()).unwrap()).unwrap();
    let err = exposure_check(dir.path(), &observed, &RiskConfig::default()).unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
}

#[test]
fn observed_lines_are_checked_with_their_line_number() {
    let good = r#"{"rpi":"8be6cd371c5c891604bfbe49df845096","time":1585785600,"attenuation_db":50,"duration_s":300}"#;
    assert_eq!(parse_observations(good).unwrap().len(), 1);
    for (line, words) in [
        (r#"{"rpi":"8be6","time":1,"attenuation_db":50,"duration_s":300}"#, "rpi"),
        (r#"{"rpi":"8be6cd371c5c891604bfbe49df845096","time":-1,"attenuation_db":50,"duration_s":300}"#, "time"),
        (r#"{"rpi":"8be6cd371c5c891604bfbe49df845096","time":1,"attenuation_db":50,"duration_s":0}"#, "duration_s"),
        (r#"{"rpi":"8be6cd371c5c891604bfbe49df845096","time":1,"duration_s":60}"#, "attenuation_db"),
        (r#"{"rpi":"8be6cd371c5c891604bfbe49df845096","time":1,"rssi_dbm":-50,"duration_s":60}"#, "aem"),
        ("not json", "line 2"),
    ] {
        let err = parse_observations(&format!("{good}\n{line}")).unwrap_err();
        assert!(matches!(err, GaenError::Observed { line: 2, .. }), "{err}");
        assert!(err.to_string().contains(words), "{err} lacks {words}");
    }
}
