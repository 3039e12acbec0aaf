//! End to end: the app store and contact tracing in one real `meshwork up`, through its
//! gateway, with outside clients.
//!
//! - The app store with grpcurl: a developer publishes an app, uploads two releases and rolls
//!   the second out to 50% of production; devices ask for updates (the ones in the rollout get
//!   it, the rest keep the first release, a device below `min_sdk` gets nothing); a halt takes
//!   in no new device; installs show on the store page and in the charts; search finds the
//!   app; bad input names its field.
//! - Contact tracing with the generated Rust client and the `meshwork exposure-check` command:
//!   a health authority (a token with the `health_authority` role) issues a code, the device
//!   verifies it, gets a certificate for the HMAC of its keys and publishes them; the export
//!   batch is downloaded with the signing key, and a device that saw one of the keys' RPIs
//!   long and close enough is told it was exposed while one that did not is not. A reused
//!   code is refused.

mod support;

use std::time::Duration;

use meshwork_proto::pb::appstore::v1 as appstore;
use meshwork_proto::pb::contacttracing::v1 as ct;
use support::Mesh;
use tonic::Request;

/// Runs grpcurl with `body` on `method` and returns (success, stdout JSON or Null, stderr).
fn call(addr: std::net::SocketAddr, method: &str, body: &str) -> (bool, serde_json::Value, String) {
    let (ok, out, err) = support::grpcurl(addr, &["-d", body], &[method]);
    (ok, serde_json::from_str(&out).unwrap_or(serde_json::Value::Null), err)
}

fn app_store_journey(addr: std::net::SocketAddr) {
    let ok = |method: &str, body: &str| {
        let (ok, json, err) = call(addr, &format!("meshwork.appstore.v1.AppStore/{method}"), body);
        assert!(ok, "{method} failed: {err}");
        json
    };
    ok("CreateDeveloper", r#"{"request_id":"dev-1","developer_id":"acme","name":"Acme Apps","owner_user_id":"alice"}"#);
    ok(
        "CreateApp",
        r#"{"request_id":"app-1","app":{"package_name":"com.acme.notes","developer_id":"acme","title":"Acme Notes","category":"PRODUCTIVITY","description":"Quick notes that sync across devices."}}"#,
    );
    for (code, sdk) in [(1, 21), (2, 26)] {
        let body = format!(
            r#"{{"request_id":"rel-{code}","package_name":"com.acme.notes","version_code":{code},"version_name":"{code}.0","min_sdk":{sdk},"artifact_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","size_bytes":5242880}}"#
        );
        ok("UploadRelease", &body);
    }
    // A version code at or below the newest is refused, naming why.
    let (again, _, err) = call(
        addr,
        "meshwork.appstore.v1.AppStore/UploadRelease",
        r#"{"request_id":"rel-1b","package_name":"com.acme.notes","version_code":2,"version_name":"2.0","min_sdk":26,"artifact_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","size_bytes":1}"#,
    );
    assert!(!again && err.contains("AlreadyExists"), "{err}");
    ok(
        "SetTrackRelease",
        r#"{"request_id":"roll-1","package_name":"com.acme.notes","track":"production","version_code":1,"user_fraction":1.0}"#,
    );
    ok(
        "SetTrackRelease",
        r#"{"request_id":"roll-2","package_name":"com.acme.notes","track":"production","version_code":2,"user_fraction":0.5}"#,
    );

    // 200 devices on release 1 ask (the generated Rust client: 400 calls are too many for one
    // grpcurl process each): about half are in the rollout of release 2.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut store =
        runtime.block_on(appstore::app_store_client::AppStoreClient::connect(format!("http://{addr}"))).unwrap();
    let mut check = |device: &str, installed: i64, sdk: i32| {
        let request = appstore::CheckUpdateRequest {
            package_name: "com.acme.notes".into(),
            installed_version_code: installed,
            device_id: device.into(),
            sdk_level: sdk,
            track: String::new(),
        };
        let answer = runtime.block_on(store.check_update(request)).unwrap().into_inner();
        (answer.update_available, answer.release.map_or(0, |r| r.version_code))
    };
    let mut updated = Vec::new();
    for i in 0..200 {
        if check(&format!("dev-{i}"), 1, 34) == (true, 2) {
            updated.push(i);
        }
    }
    assert!((70..=130).contains(&updated.len()), "{} of 200 devices in a 50% rollout", updated.len());
    // Below min_sdk 26 release 2 is skipped; a fresh device gets release 1 instead.
    assert_eq!(check(&format!("dev-{}", updated[0]), 0, 23), (true, 1));

    // Halted: no device that was out comes in; one that updated keeps its version.
    ok("HaltRollout", r#"{"request_id":"halt-2","package_name":"com.acme.notes","track":"production"}"#);
    for i in 0..200 {
        assert_ne!(check(&format!("dev-{i}"), 1, 34).1, 2, "a halted rollout took in dev-{i}");
    }
    assert!(!check(&format!("dev-{}", updated[0]), 2, 34).0, "an updated device keeps its version");

    // Installs show on the store page and in the chart; search finds the app.
    for i in 0..5 {
        let body = format!(r#"{{"package_name":"com.acme.notes","device_id":"inst-{i}","version_code":1}}"#);
        assert_eq!(ok("RecordInstall", &body)["counted"], true);
    }
    let page = ok("GetAppDetails", r#"{"package_name":"com.acme.notes"}"#);
    assert_eq!(page["totalInstalls"], "5", "{page}");
    assert_eq!(page["latestProductionRelease"]["versionCode"], "2", "{page}");
    let chart = ok("TopCharts", r#"{"chart":"CHART_TOP_FREE","category":"PRODUCTIVITY"}"#);
    assert_eq!(chart["entries"][0]["app"]["packageName"], "com.acme.notes", "{chart}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = ok("SearchApps", r#"{"query":"notes sync"}"#);
        if found["hits"][0]["app"]["packageName"] == "com.acme.notes" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "search never found the app: {found}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Bad input: the field is named and nothing changes.
    let (bad, _, err) = call(
        addr,
        "meshwork.appstore.v1.AppStore/CreateApp",
        r#"{"request_id":"app-bad","app":{"package_name":"Notes","developer_id":"acme","title":"x","category":"PRODUCTIVITY"}}"#,
    );
    assert!(!bad && err.contains("InvalidArgument") && err.contains("package_name"), "{err}");
    let listed = ok("SearchApps", r#"{"query":""}"#);
    assert_eq!(listed["total"], "1", "{listed}");
}

fn timestamp(unix_seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: unix_seconds, nanos: 0 }
}

/// Runs `meshwork exposure-check` and returns its JSON report.
fn exposure_check(exports: &std::path::Path, observed: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .args(["exposure-check", "--exports"])
        .arg(exports)
        .arg("--observed")
        .arg(observed)
        .output()
        .expect("run meshwork exposure-check");
    assert!(out.status.success(), "exposure-check failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

async fn contact_tracing_journey(addr: std::net::SocketAddr, data_dir: std::path::PathBuf) {
    let mut client = ct::contact_tracing_client::ContactTracingClient::connect(format!("http://{addr}")).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let issue = ct::IssueCodeRequest {
        request_id: "ha-e2e-1".into(),
        test_type: ct::TestType::Confirmed as i32,
        symptom_onset_time: Some(timestamp(now - 2 * 86_400)),
        geohash: "tdr1vzz".into(),
    };
    // Only a health authority issues codes.
    let anonymous = client.issue_code(issue.clone()).await.unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated, "{anonymous:?}");
    let token =
        tokio::task::spawn_blocking(move || support::token(&data_dir, "health-ministry", &["health_authority"]))
            .await
            .unwrap();
    let mut request = Request::new(issue);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let code = client.issue_code(request).await.unwrap().into_inner().code;
    let verified = client.verify_code(ct::VerifyCodeRequest { code: code.clone() }).await.unwrap().into_inner();

    // Two daily keys of the two days before yesterday: both ended more than a day ago, past the
    // 2-hour embargo at any time of day (yesterday's key ends at midnight UTC, so from 00:00 to
    // 02:00 UTC it would still wait for a later export window).
    let today = meshwork_gaen::crypto::interval_number(now) / 144 * 144;
    let teks: Vec<[u8; 16]> = (0..2).map(|_| rand::random()).collect();
    let starts = [today - 288, today - 432];
    let hmac_key: [u8; 16] = rand::random();
    let hmac_keys: Vec<meshwork_gaen::verification::HmacKey> = teks
        .iter()
        .zip(starts)
        .map(|(tek, start)| meshwork_gaen::verification::HmacKey {
            key_data: tek,
            rolling_start_interval_number: i64::from(start),
            rolling_period: 144,
            transmission_risk: 0,
        })
        .collect();
    let ekey_hmac = meshwork_gaen::verification::tek_hmac_base64(&hmac_key, &hmac_keys);
    let certificate = client
        .get_certificate(ct::GetCertificateRequest { token: verified.token.clone(), ekey_hmac })
        .await
        .unwrap()
        .into_inner()
        .certificate;
    let publish = ct::PublishKeysRequest {
        keys: teks
            .iter()
            .zip(starts)
            .map(|(tek, start)| ct::ExposureKey {
                key_data: tek.to_vec(),
                rolling_start_interval_number: start as i32,
                rolling_period: 144,
                transmission_risk: 0,
            })
            .collect(),
        certificate,
        hmac_key: hmac_key.to_vec(),
        device_id: "phone-e2e".into(),
        ..Default::default()
    };
    let published = client.publish_keys(publish).await.unwrap().into_inner();
    assert_eq!(published.inserted_exposures, 2);
    // The code is single use.
    let reused = client.verify_code(ct::VerifyCodeRequest { code }).await.unwrap_err();
    assert!(matches!(reused.code(), tonic::Code::NotFound | tonic::Code::FailedPrecondition), "{reused:?}");

    // The export batch (windows of 10 s here) closes, and is downloaded with the signing key.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let export = loop {
        let listed = client
            .list_exports(ct::ListExportsRequest { since: Some(timestamp(now - 3600)), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        if let Some(first) = listed.exports.into_iter().next() {
            break first;
        }
        assert!(std::time::Instant::now() < deadline, "no export within 60 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let archive =
        client.get_export(ct::GetExportRequest { export_id: export.export_id.clone() }).await.unwrap().into_inner();
    assert_eq!(archive.key_count, 2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{}.zip", export.export_id)), &archive.archive).unwrap();
    let pem = client.get_signing_key(ct::GetSigningKeyRequest {}).await.unwrap().into_inner().export_public_key_pem;
    std::fs::write(dir.path().join("public_key.pem"), pem).unwrap();

    // A device that was close to the first key's owner for 30 minutes two days ago, and one that
    // saw only strangers.
    let met = starts[0] + 60;
    let exposed_log: String = (0..6)
        .map(|k| {
            let interval = met + k / 2;
            let rpi = meshwork_gaen::crypto::rpi(&teks[0], interval);
            let hex: String = rpi.iter().map(|b| format!("{b:02x}")).collect();
            let time = i64::from(interval) * 600 + (k as i64 % 2) * 300;
            format!("{{\"rpi\":\"{hex}\",\"time\":{time},\"duration_s\":300,\"attenuation_db\":50}}\n")
        })
        .collect();
    let stranger_log: String = (0..6)
        .map(|k| {
            let rpi: [u8; 16] = rand::random();
            let hex: String = rpi.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{{\"rpi\":\"{hex}\",\"time\":{},\"duration_s\":300,\"attenuation_db\":50}}\n",
                i64::from(met + k) * 600
            )
        })
        .collect();
    let (exposed, stranger) = (dir.path().join("exposed.jsonl"), dir.path().join("stranger.jsonl"));
    std::fs::write(&exposed, exposed_log).unwrap();
    std::fs::write(&stranger, stranger_log).unwrap();
    let exports = dir.path().to_path_buf();
    let (yes, no) =
        tokio::task::spawn_blocking(move || (exposure_check(&exports, &exposed), exposure_check(&exports, &stranger)))
            .await
            .unwrap();
    assert_eq!(yes["exposed"], true, "{yes}");
    assert_eq!(yes["matched"], 6, "{yes}");
    assert_eq!(no["exposed"], false, "{no}");
    assert_eq!(no["matched"], 0, "{no}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_store_and_contact_tracing_through_the_gateway() {
    let data = tempfile::tempdir().unwrap();
    let (mesh, _) = Mesh::up_with_args(data.path(), &["--no-traces", "--export-window-secs", "10"]);
    let addr = mesh.addr;
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || app_store_journey(addr)).await.unwrap();
    eprintln!("app store journey: {:?}", started.elapsed());
    let started = std::time::Instant::now();
    contact_tracing_journey(addr, data.path().to_path_buf()).await;
    eprintln!("contact tracing journey: {:?}", started.elapsed());
}
