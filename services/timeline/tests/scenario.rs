//! The load scenario `loadtest/scenarios/timeline.toml` runs, briefly and scaled down (200
//! users instead of 10,000, the same three tiers), against a real server: its setup builds
//! the graph and the posts, and every call of the mix answers OK (the JSON bodies match the
//! proto, and no setup call is a self-follow).

use meshwork_loadtest::scenario::{self, Scenario};
use meshwork_test_support::{TestServer, context, memory_store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_load_scenario_runs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../loadtest/scenarios/timeline.toml");
    let text = std::fs::read_to_string(path).expect("scenario file");
    // 10,000 users -> 200, the long tail's halves split at 150 instead of 5,000.
    let scaled = text.replace("10000", "200").replace("5000", "150");
    let mut s = Scenario::parse(&scaled).expect("scenario parses");
    for step in &mut s.setup {
        step.count = step.count.min(300);
    }
    s.duration = Some("1s".into());
    s.concurrency = 8;
    s.connections = 2;
    let ctx = context(memory_store());
    let ctx = meshwork_common::server::ServiceContext {
        settings: ctx.settings.clone().with("timeline.celebrity_threshold", 40),
        ..ctx
    };
    let server = TestServer::hosting(meshwork_timeline::hosted, &ctx).await;
    let outcome = scenario::run(&s, &server.addr.to_string(), None).await.expect("scenario runs");
    assert_eq!(outcome.setup.len(), 7);
    let total = outcome.reports.last().expect("total report");
    assert!(total.count > 0);
    assert_eq!(total.status_code_distribution.keys().collect::<Vec<_>>(), ["OK"], "{:?}", total.error_distribution);
}
