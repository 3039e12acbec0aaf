//! End to end: waste collection in the real `meshwork up`, through its gateway, with grpcurl
//! as the outside client: a depot, a landfill, two trucks and 30 bins with fill telemetry; a
//! plan over the bins at or above the threshold (every full bin on exactly one route, capacity
//! kept); a route executed with pickups and one skipped stop, watched as a server stream; the
//! next plan takes the skipped bin again; bad input names its field.

mod support;

use std::collections::BTreeSet;

use support::Mesh;

/// Runs grpcurl with `body` on `method` and returns (success, stdout JSON or Null, stderr).
fn call(addr: std::net::SocketAddr, method: &str, body: &str) -> (bool, serde_json::Value, String) {
    let (ok, out, err) = support::grpcurl(addr, &["-d", body], &[method]);
    (ok, serde_json::from_str(&out).unwrap_or(serde_json::Value::Null), err)
}

/// Runs a server-streaming call and returns every message grpcurl printed.
fn stream(addr: std::net::SocketAddr, method: &str, body: &str, max_time: &str) -> Vec<serde_json::Value> {
    let (_, out, _) = support::grpcurl(addr, &["-max-time", max_time, "-d", body], &[method]);
    serde_json::Deserializer::from_str(&out).into_iter::<serde_json::Value>().map_while(Result::ok).collect()
}

fn waste_journey(addr: std::net::SocketAddr) {
    let ok = |method: &str, body: &str| {
        let (ok, json, err) = call(addr, &format!("meshwork.waste.v1.Waste/{method}"), body);
        assert!(ok, "{method} failed: {err}");
        json
    };
    ok(
        "CreateSite",
        r#"{"site":{"site_id":"depot-n","kind":"SITE_KIND_DEPOT","name":"North depot","location":{"lat":52.52,"lon":13.40}}}"#,
    );
    ok(
        "CreateSite",
        r#"{"site":{"site_id":"fill-n","kind":"SITE_KIND_LANDFILL","name":"North landfill","location":{"lat":52.60,"lon":13.30}}}"#,
    );
    for truck in ["truck-1", "truck-2"] {
        let body = format!(
            r#"{{"truck":{{"truck_id":"{truck}","depot_id":"depot-n","capacity_litres":2400,"shift_start_minute":360,"shift_end_minute":840}}}}"#
        );
        ok("CreateTruck", &body);
    }
    // 30 bins in a small grid; the even ones are nearly full.
    let mut full = BTreeSet::new();
    for i in 0..30 {
        let (lat, lon) = (52.50 + (i / 6) as f64 * 0.01, 13.35 + (i % 6) as f64 * 0.01);
        let body = format!(
            r#"{{"bin":{{"bin_id":"bin-{i}","location":{{"lat":{lat},"lon":{lon}}},"capacity_litres":240,"waste_type":"WASTE_TYPE_GENERAL"}}}}"#
        );
        ok("CreateBin", &body);
        let fill = if i % 2 == 0 { 92.0 } else { 15.0 };
        if i % 2 == 0 {
            full.insert(format!("bin-{i}"));
        }
        ok("ReportFill", &format!(r#"{{"bin_id":"bin-{i}","fill_percent":{fill},"time":"2026-12-07T05:00:00Z"}}"#));
    }
    let listed = ok("ListBins", r#"{"min_predicted_fill":80,"at":"2026-12-07T06:00:00Z"}"#);
    let listed: BTreeSet<String> = listed["bins"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|b| b["binId"].as_str().map(String::from))
        .collect();
    assert!(full.is_subset(&listed), "every full bin is listed: {listed:?}");

    let plan_body = r#"{"request_id":"plan-d1","date":"2026-12-07T07:00:00Z","depot_id":"depot-n","threshold":80,"time_limit":"1s"}"#;
    let plan = ok("PlanRoutes", plan_body);
    let planned: Vec<String> = plan["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .flat_map(|r| r["stops"].as_array().cloned().unwrap_or_default())
        .map(|s| s["binId"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<String> = planned.iter().cloned().collect();
    assert_eq!(unique.len(), planned.len(), "a bin on two routes: {planned:?}");
    assert!(full.is_subset(&unique), "every full bin is collected: {unique:?}");
    // The same request_id answers the same plan.
    assert_eq!(ok("PlanRoutes", plan_body)["planId"], plan["planId"]);
    let plan_id = plan["planId"].as_str().unwrap().to_string();
    assert_eq!(ok("GetPlan", &format!(r#"{{"plan_id":"{plan_id}"}}"#))["planId"], plan["planId"]);

    // Execute the first route: every stop picked up but one, skipped.
    let route = &plan["routes"][0];
    let route_id = route["routeId"].as_str().unwrap().to_string();
    let stops: Vec<String> =
        route["stops"].as_array().unwrap().iter().map(|s| s["binId"].as_str().unwrap().into()).collect();
    assert!(stops.len() >= 2, "{route}");
    ok("StartRoute", &format!(r#"{{"route_id":"{route_id}"}}"#));
    let skipped = stops[0].clone();
    ok("SkipStop", &format!(r#"{{"route_id":"{route_id}","bin_id":"{skipped}","reason":"blocked by a parked car"}}"#));
    for (n, bin) in stops.iter().enumerate().skip(1) {
        let body = format!(r#"{{"request_id":"pick-{n}","route_id":"{route_id}","bin_id":"{bin}","weight_kg":31.5}}"#);
        ok("RecordPickup", &body);
    }
    let events = stream(
        addr,
        "meshwork.waste.v1.Waste/WatchRoute",
        &format!(r#"{{"route_id":"{route_id}","from_sequence":"1"}}"#),
        "3",
    );
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"ROUTE_EVENT_TYPE_STARTED"), "{events:?}");
    assert!(kinds.contains(&"ROUTE_EVENT_TYPE_SKIPPED"), "{events:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "ROUTE_EVENT_TYPE_COLLECTED").count(), stops.len() - 1, "{events:?}");
    let sequences: Vec<u64> = events.iter().filter_map(|e| e["sequence"].as_str()?.parse().ok()).collect();
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "gapless sequence: {sequences:?}");
    // A pickup resets the bin's fill.
    let picked = ok("GetBin", &format!(r#"{{"bin_id":"{}"}}"#, stops[1]));
    assert!(picked["bin"]["fillPercent"].as_f64().unwrap_or(0.0) < 1.0, "{picked}");

    // The next day's plan takes the skipped bin again.
    let next = ok(
        "PlanRoutes",
        r#"{"request_id":"plan-d2","date":"2026-12-08T07:00:00Z","depot_id":"depot-n","threshold":80,"time_limit":"1s"}"#,
    );
    assert!(next.to_string().contains(&format!("\"{skipped}\"")), "the skipped bin is planned again: {next}");

    // Bad input: the field is named, nothing changes.
    let (bad, _, err) = call(addr, "meshwork.waste.v1.Waste/ReportFill", r#"{"bin_id":"bin-1","fill_percent":140}"#);
    assert!(!bad && err.contains("InvalidArgument") && err.contains("fill_percent"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waste_collection_through_the_gateway() {
    let data = tempfile::tempdir().unwrap();
    let (mesh, _) = Mesh::up_with_args(data.path(), &["--no-traces"]);
    let addr = mesh.addr;
    tokio::task::spawn_blocking(move || waste_journey(addr)).await.unwrap();
}
