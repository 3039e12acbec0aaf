//! The load scenario `loadtest/scenarios/warehouse.toml` runs, briefly, against a real server:
//! its setup makes the warehouse and its 160 bins, and every call of the mix answers OK (the
//! JSON bodies match the proto, the bin codes exist).

use meshwork_loadtest::scenario::{self, Scenario};
use meshwork_test_support::{TestServer, context, memory_store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_load_scenario_runs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../loadtest/scenarios/warehouse.toml");
    let text = std::fs::read_to_string(path).expect("scenario file");
    let mut s = Scenario::parse(&text).expect("scenario parses");
    s.duration = Some("1s".into());
    s.concurrency = 8;
    s.connections = 2;
    let ctx = context(memory_store());
    let server = TestServer::hosting(meshwork_warehouse::hosted, &ctx).await;
    let outcome = scenario::run(&s, &server.addr.to_string(), None).await.expect("scenario runs");
    assert_eq!(outcome.setup.len(), 3);
    let total = outcome.reports.last().expect("total report");
    assert!(total.count > 0);
    assert_eq!(total.status_code_distribution.keys().collect::<Vec<_>>(), ["OK"], "{:?}", total.error_distribution);
}
