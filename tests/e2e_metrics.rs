//! End to end: the admin port of the real `meshwork up` serves Prometheus metrics of real
//! traffic (RED per method, storage latency, cache outcomes), and every metric the Grafana
//! dashboard in `observability/dashboards/` queries is one of them.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{Mesh, grpcurl, http_get, json_field, metric_sample as sample};

const SVC: &str = "meshwork.urlshortener.v1.UrlShortener";

/// Returns every `meshwork_*` metric name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|token| token.starts_with("meshwork_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn metrics_of_real_traffic_and_the_dashboard_queries_them() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = Mesh::up(dir.path());
    let admin = mesh.admin.unwrap();
    let (ok, out, err) =
        grpcurl(mesh.addr, &["-d", r#"{"long_url":"https://example.com/m"}"#], &[&format!("{SVC}/Shorten")]);
    assert!(ok, "{err}");
    let code = json_field(&out, "code").unwrap();
    for _ in 0..3 {
        let (ok, _, err) =
            grpcurl(mesh.addr, &["-d", &format!("{{\"code\":\"{code}\"}}")], &[&format!("{SVC}/Resolve")]);
        assert!(ok, "{err}");
    }
    let (ok, _, _) = grpcurl(mesh.addr, &["-d", r#"{"code":"absent1"}"#], &[&format!("{SVC}/Resolve")]);
    assert!(!ok);

    let (status, _, body) = http_get(admin, "/ready", &[]);
    assert_eq!((status, body.as_str()), (200, "ready"));
    // The gateway counts a call once it has logged it, just after the answer went out: poll.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (status, headers, metrics) = loop {
        let (status, headers, metrics) = http_get(admin, "/metrics", &[]);
        let resolves =
            format!("meshwork_gateway_calls_total{{service=\"{SVC}\",method=\"Resolve\",grpc_status=\"0\"}} 3");
        if metrics.contains(&resolves) || std::time::Instant::now() > deadline {
            break (status, headers, metrics);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200);
    assert!(support::header(&headers, "content-type").is_some_and(|c| c.starts_with("text/plain")));
    let calls = |method: &str, code: &str| {
        sample(
            &metrics,
            &format!("meshwork_grpc_server_requests_total{{code=\"{code}\",method=\"{method}\",service=\"{SVC}\"}}"),
        )
    };
    assert_eq!(calls("Shorten", "OK"), Some(1.0), "{metrics}");
    assert_eq!(calls("Resolve", "OK"), Some(3.0), "{metrics}");
    assert_eq!(calls("Resolve", "NOT_FOUND"), Some(1.0), "{metrics}");
    assert!(metrics.contains("meshwork_grpc_server_duration_seconds_bucket{method=\"Resolve\""));
    assert!(
        metrics.contains("meshwork_storage_operation_duration_seconds_count{backend=\"embedded\",operation=\"write\"}")
    );
    // The gateway's own metrics are on the same port.
    let through_gateway = sample(
        &metrics,
        &format!("meshwork_gateway_calls_total{{service=\"{SVC}\",method=\"Resolve\",grpc_status=\"0\"}}"),
    );
    assert_eq!(through_gateway, Some(3.0), "{metrics}");
    let hits = sample(&metrics, "meshwork_cache_requests_total{cache=\"urlshortener_links\",result=\"hit\"}");
    assert!(hits.is_some_and(|h| h >= 3.0), "{metrics}");

    let families: BTreeSet<&str> =
        metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_whitespace().next()).collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../observability/dashboards/meshwork.json")).expect("dashboard JSON");
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            for name in metric_names(target["expr"].as_str().expect("expr")) {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix).filter(|base| families.contains(base)))
                    .unwrap_or(&name);
                assert!(families.contains(family), "panel {} queries {name}, which /metrics lacks", panel["title"]);
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "the dashboard was barely checked ({checked} names)");
    assert!(mesh.terminate(Duration::from_secs(30)).success());
}
