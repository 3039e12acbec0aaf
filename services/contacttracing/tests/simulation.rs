//! The whole system, on every backend: 1,000 virtual devices with their own daily Temporary
//! Exposure Keys meet at random (seeded) for known durations at known attenuations and record
//! each other's Rolling Proximity Identifiers; 20 of them test positive and upload their keys
//! through the full verification flow (IssueCode -> VerifyCode -> GetCertificate ->
//! PublishKeys) on a real server; the exports are downloaded and verified, and every device
//! runs the device-side exposure check on them. Each device's per-day verdict must equal the
//! ground truth computed from the encounters alone (duration x attenuation weight x
//! infectiousness weight, against the daily threshold): no false negatives, no false positives.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use meshwork_gaen::crypto::{self, RpiGenerator};
use meshwork_gaen::matching::{self, KeyIndex, Observation, PUBLIC_KEY_FILE};
use meshwork_gaen::{RiskConfig, exposure_check};
use meshwork_proto::pb::contacttracing::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::*;

const DEVICES: usize = 1000;
const POSITIVES: usize = 20;
const ENCOUNTERS: usize = 6000;
const SEED: u64 = 20_261_207;
/// Days of keys each device keeps (today and the 13 before).
const KEY_DAYS: u32 = 14;

/// Two devices near each other for `minutes` from `start_s`, at `attenuation_db`.
struct Encounter {
    a: usize,
    b: usize,
    day: u32,
    start_s: i64,
    minutes: u32,
    attenuation_db: u8,
}

on_every_backend!(thousand_devices_get_the_verdict_of_their_ground_truth);

async fn thousand_devices_get_the_verdict_of_their_ground_truth(backend: Backend) {
    let begin = Instant::now();
    let svc = start(backend.store.clone()).await;
    let mut c = svc.client.clone();
    let config = RiskConfig::default();
    let mut rng = StdRng::seed_from_u64(SEED);
    let today = (START_MS / DAY_MS) as u32;
    let first_day = today - (KEY_DAYS - 1);
    // teks[device][i]: the key of day first_day + i.
    let teks: Vec<Vec<[u8; 16]>> = (0..DEVICES).map(|_| (0..KEY_DAYS).map(|_| rng.random()).collect()).collect();
    let encounters: Vec<Encounter> = (0..ENCOUNTERS)
        .map(|_| {
            let a = rng.random_range(0..DEVICES);
            let b = (a + rng.random_range(1..DEVICES)) % DEVICES;
            let day = today - rng.random_range(1..KEY_DAYS);
            let minutes = rng.random_range(1..=40u32);
            let start_s = i64::from(day) * 86_400 + rng.random_range(0..86_400 - i64::from(minutes) * 60);
            Encounter { a, b, day, start_s, minutes, attenuation_db: rng.random_range(40..=80) }
        })
        .collect();
    let mut positives: BTreeMap<usize, u32> = BTreeMap::new();
    while positives.len() < POSITIVES {
        positives.insert(rng.random_range(0..DEVICES), today - rng.random_range(0..=7));
    }

    // What each device recorded: the other's RPI every 5 minutes of each encounter.
    let mut generators: HashMap<(usize, u32), RpiGenerator> = HashMap::new();
    let mut observed: Vec<Vec<Observation>> = vec![Vec::new(); DEVICES];
    for e in &encounters {
        for (seer, seen) in [(e.a, e.b), (e.b, e.a)] {
            let generator = generators
                .entry((seen, e.day))
                .or_insert_with(|| RpiGenerator::for_tek(&teks[seen][(e.day - first_day) as usize]));
            let total = e.minutes * 60;
            let mut offset = 0;
            while offset < total {
                let time = e.start_s + i64::from(offset);
                let duration = (total - offset).min(300);
                let rpi = generator.rpi(crypto::interval_number(time));
                observed[seer].push(Observation::new(&rpi, time, duration, e.attenuation_db));
                offset += duration;
            }
        }
    }

    // Ground truth from the encounters alone: weighted seconds per device and day.
    let mut truth_seconds: Vec<BTreeMap<u32, f64>> = vec![BTreeMap::new(); DEVICES];
    let mut met_positive = vec![false; DEVICES];
    for e in &encounters {
        for (seer, seen) in [(e.a, e.b), (e.b, e.a)] {
            let Some(onset_day) = positives.get(&seen) else { continue };
            met_positive[seer] = true;
            let days_since_onset = e.day as i32 - *onset_day as i32;
            let weight = config.attenuation_weight(e.attenuation_db)
                * config.infectiousness_weight(config.infectiousness(Some(days_since_onset)))
                * config.report_type_weight(meshwork_gaen::export::ReportType::ConfirmedTest);
            *truth_seconds[seer].entry(e.day).or_default() += f64::from(e.minutes * 60) * weight;
        }
    }
    let threshold = config.daily_threshold_minutes * 60.0;
    let truth: Vec<Vec<u32>> = truth_seconds
        .iter()
        .map(|days| days.iter().filter(|(_, s)| **s + 1e-9 >= threshold).map(|(d, _)| *d).collect())
        .collect();
    let setup = begin.elapsed();

    // The 20 positives upload through the whole verification flow.
    let uploads = Instant::now();
    for (device, onset_day) in &positives {
        let keys: Vec<pb::ExposureKey> =
            (0..KEY_DAYS).map(|i| tek(teks[*device][i as usize], ((first_day + i) * 144) as i32)).collect();
        let onset_ms = i64::from(*onset_day) * DAY_MS + 8 * 3_600_000;
        let answer = upload(&mut c, &keys, "tdr1v", Some(onset_ms), &format!("device-{device}")).await;
        assert_eq!(answer.inserted_exposures, KEY_DAYS as i32);
    }
    let uploads = uploads.elapsed();

    // An hour later the batch is out: download it and the public key, as a device would.
    svc.clock.advance(3_600_000);
    let dir = tempfile::tempdir().unwrap();
    let signing = c.get_signing_key(pb::GetSigningKeyRequest {}).await.unwrap().into_inner();
    std::fs::write(dir.path().join(PUBLIC_KEY_FILE), &signing.export_public_key_pem).unwrap();
    let listed = c.list_exports(pb::ListExportsRequest::default()).await.unwrap().into_inner().exports;
    assert_eq!(listed.len(), 1);
    for info in &listed {
        let export = c.get_export(pb::GetExportRequest { export_id: info.export_id.clone() }).await.unwrap();
        std::fs::write(dir.path().join(format!("export-{}.zip", info.export_id)), &export.into_inner().archive)
            .unwrap();
    }

    // Every device checks its sightings against the verified exports, in parallel.
    let checks = Instant::now();
    let index = KeyIndex::from_exports(&matching::load_exports(dir.path()).unwrap());
    // Today's keys are still in use: they wait for a later export (the embargo).
    assert_eq!(index.keys().len(), POSITIVES * (KEY_DAYS as usize - 1));
    let reports: Vec<matching::Report> = std::thread::scope(|scope| {
        let chunks: Vec<_> = observed
            .chunks(DEVICES / 4)
            .map(|chunk| {
                let (index, config) = (&index, &config);
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|obs| {
                            let sightings: Vec<_> = obs.iter().map(|o| o.sighting().unwrap()).collect();
                            matching::check(index, &sightings, config)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        chunks.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let checks = checks.elapsed();

    let exposed = truth.iter().filter(|t| !t.is_empty()).count();
    let near_misses = (0..DEVICES).filter(|d| met_positive[*d] && truth[*d].is_empty()).count();
    for device in 0..DEVICES {
        let report = &reports[device];
        assert_eq!(report.exposed_days(), truth[device], "device {device}: verdict against ground truth");
        // Not only the verdict: each day's score is the ground truth's weighted seconds.
        let scores: Vec<(u32, f64)> = report.days.iter().map(|d| (d.day, d.score_sum)).collect();
        let want: Vec<(u32, f64)> =
            truth_seconds[device].iter().filter(|(_, s)| **s > 0.0).map(|(d, s)| (*d, *s)).collect();
        assert_eq!(scores.len(), want.len(), "device {device}: days with a score {scores:?} against {want:?}");
        for ((day, got), (want_day, want_score)) in scores.iter().zip(&want) {
            assert!(day == want_day && (got - want_score).abs() < 1e-6, "device {device}: {scores:?} against {want:?}");
        }
    }
    // The thresholds matter: some devices are exposed, some met a positive and are not.
    assert!(exposed >= 20, "only {exposed} exposed devices");
    assert!(near_misses >= 20, "only {near_misses} devices under the threshold");

    // A sample of devices runs the very command (`meshwork exposure-check`) on files.
    let sample: BTreeSet<usize> = (0..DEVICES)
        .filter(|d| !truth[*d].is_empty())
        .take(3)
        .chain((0..DEVICES).filter(|d| met_positive[*d] && truth[*d].is_empty()).take(2))
        .chain((0..DEVICES).filter(|d| !met_positive[*d]).take(1))
        .collect();
    for device in sample {
        let file = dir.path().join(format!("observed-{device}.jsonl"));
        let lines: Vec<String> = observed[device].iter().map(|o| serde_json::to_string(o).unwrap()).collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let report = exposure_check(dir.path(), &file, &config).unwrap();
        assert_eq!(report.exports, 1);
        assert_eq!(report.exposed_days(), truth[device], "device {device} through exposure_check");
        assert_eq!(report.exposed, !truth[device].is_empty());
    }
    eprintln!(
        "simulation on {}: setup {setup:?}, {POSITIVES} uploads {uploads:?}, {DEVICES} checks {checks:?}, \
         {exposed} exposed, {near_misses} under the threshold, total {:?}",
        backend.store.backend(),
        begin.elapsed()
    );
}
