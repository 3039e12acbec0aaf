//! End to end: the app store in the real `meshwork up`, through its gateway, with grpcurl as
//! the outside client: a developer publishes an app, uploads two releases and rolls the second
//! out to 50% of production; devices ask for updates (the ones in the rollout get it, the rest
//! keep the first release, a device below `min_sdk` gets nothing); a halt takes in no new
//! device; installs show on the store page and in the charts; search finds the app; bad input
//! names its field.

mod support;

use support::Mesh;

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

    // 200 devices on release 1 ask: about half are in the rollout of release 2.
    let check = |device: &str, installed: i64, sdk: i32| {
        let body = format!(
            r#"{{"package_name":"com.acme.notes","installed_version_code":{installed},"device_id":"{device}","sdk_level":{sdk}}}"#
        );
        ok("CheckUpdate", &body)
    };
    let mut updated = Vec::new();
    for i in 0..200 {
        let answer = check(&format!("dev-{i}"), 1, 34);
        if answer["updateAvailable"] == true {
            assert_eq!(answer["release"]["versionCode"], "2", "{answer}");
            updated.push(i);
        }
    }
    assert!((70..=130).contains(&updated.len()), "{} of 200 devices in a 50% rollout", updated.len());
    // Below min_sdk 26 release 2 is skipped; a fresh device gets release 1 instead.
    let old_phone = check(&format!("dev-{}", updated[0]), 0, 23);
    assert_eq!(old_phone["release"]["versionCode"], "1", "{old_phone}");

    // Halted: no device that was out comes in; one that updated keeps its version.
    ok("HaltRollout", r#"{"request_id":"halt-2","package_name":"com.acme.notes","track":"production"}"#);
    for i in 0..200 {
        let answer = check(&format!("dev-{i}"), 1, 34);
        assert_ne!(answer["release"]["versionCode"], "2", "a halted rollout took in dev-{i}: {answer}");
    }
    let kept = check(&format!("dev-{}", updated[0]), 2, 34);
    assert_ne!(kept["updateAvailable"], true, "{kept}");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_store_through_the_gateway() {
    let data = tempfile::tempdir().unwrap();
    let (mesh, _) = Mesh::up_with_args(data.path(), &["--no-traces"]);
    let addr = mesh.addr;
    tokio::task::spawn_blocking(move || app_store_journey(addr)).await.unwrap();
}
