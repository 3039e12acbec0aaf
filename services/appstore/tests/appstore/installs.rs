//! Installs and charts: 100 devices installing one app at once on two replicas are counted
//! exactly (the counters are batched, the devices' keys distinct), repeated installs count
//! nothing, uninstalls lower the active count; the charts rank free and paid apps by installs
//! and trending apps by smoothed 7-day growth on a manual clock, with paging.

use futures::future::join_all;
use meshwork_proto::pb::appstore::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;

use crate::support::{self, Client};

async fn install(client: &Client, package: &str, device: String) -> bool {
    let mut c = client.clone();
    c.record_install(pb::RecordInstallRequest { package_name: package.into(), device_id: device, version_code: 1 })
        .await
        .expect("install")
        .into_inner()
        .counted
}

async fn details(client: &mut Client, package: &str) -> pb::GetAppDetailsResponse {
    client
        .get_app_details(pb::GetAppDetailsRequest { package_name: package.into() })
        .await
        .expect("details")
        .into_inner()
}

async fn hundred_concurrent_installs_are_exact(backend: Backend) {
    let root = support::root("inst");
    let clock = support::manual_clock();
    let (_a, mut a) = support::replica(&backend.store, &root, clock.clone()).await;
    let (_b, mut b) = support::replica(&backend.store, &root, clock).await;
    let package = support::app(&mut a, "owner").await;
    let calls = (0..100).map(|i| {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let package = package.clone();
        async move { install(&client, &package, format!("dev-{i}")).await }
    });
    assert!(join_all(calls).await.into_iter().all(|counted| counted));
    // Each replica flushes its own pending counts when it answers: read both.
    details(&mut a, &package).await;
    let d = details(&mut b, &package).await;
    assert_eq!((d.total_installs, d.active_installs), (100, 100));
    // Installing again (an update) counts nothing; uninstalls lower the active count once.
    let again = (0..100).map(|i| install(&a, &package, format!("dev-{i}")));
    assert!(join_all(again).await.into_iter().all(|counted| !counted));
    for i in 0..10 {
        for _ in 0..2 {
            b.record_uninstall(pb::RecordUninstallRequest {
                package_name: package.clone(),
                device_id: format!("dev-{i}"),
            })
            .await
            .expect("uninstall");
        }
    }
    details(&mut a, &package).await;
    let d = details(&mut b, &package).await;
    assert_eq!((d.total_installs, d.active_installs), (100, 90));
}

async fn charts_rank_by_installs_and_growth(backend: Backend) {
    let root = support::root("chart");
    let clock = support::manual_clock();
    let (_s, mut client) = support::replica(&backend.store, &root, clock.clone()).await;
    let dev = support::developer(&mut client, "owner").await;
    let mut packages = Vec::new();
    for (tag, price) in [("steady", 0), ("rising", 0), ("fresh", 0), ("paid", 99)] {
        let p = support::package(tag);
        client.create_app(support::app_req(&dev, &p, tag, "TOOLS", price)).await.expect("app");
        packages.push(p);
    }
    let (steady, rising, fresh, paid) = (&packages[0], &packages[1], &packages[2], &packages[3]);
    let mut n = 0;
    let mut installs = |package: &str, count: usize| {
        let devices: Vec<String> = (0..count)
            .map(|_| {
                n += 1;
                format!("d{n}")
            })
            .collect();
        let client = client.clone();
        let package = package.to_string();
        async move { join_all(devices.into_iter().map(|d| install(&client, &package, d))).await }
    };
    // Prior week (10 days ago): steady 20, rising 5. This week: steady 20, rising 15, fresh 3, paid 4.
    installs(steady, 20).await;
    installs(rising, 5).await;
    clock.advance(10 * 86_400_000);
    installs(steady, 20).await;
    installs(rising, 15).await;
    installs(fresh, 3).await;
    installs(paid, 4).await;

    let chart = |chart: pb::Chart, page_size: i32, page_token: String| pb::TopChartsRequest {
        category: "TOOLS".into(),
        chart: chart as i32,
        page_size,
        page_token,
    };
    let names = |r: &pb::TopChartsResponse| {
        r.entries.iter().map(|e| e.app.as_ref().unwrap().package_name.clone()).collect::<Vec<_>>()
    };
    let free = client.top_charts(chart(pb::Chart::TopFree, 0, String::new())).await.expect("free").into_inner();
    assert_eq!(names(&free), [steady.clone(), rising.clone(), fresh.clone()]);
    assert_eq!(free.entries[0].total_installs, 40);
    let top = client.top_charts(chart(pb::Chart::TopPaid, 0, String::new())).await.expect("paid").into_inner();
    assert_eq!(names(&top), std::slice::from_ref(paid));
    // Trending: rising (15-5)/(5+10) = 0.67, paid 4/10, fresh 3/10, steady 0/30.
    let trending = client.top_charts(chart(pb::Chart::Trending, 2, String::new())).await.expect("trend").into_inner();
    assert_eq!(names(&trending), [rising.clone(), paid.clone()]);
    assert!((trending.entries[0].trending_score - 10.0 / 15.0).abs() < 1e-9);
    assert_eq!((trending.entries[0].installs_last_7_days, trending.entries[0].installs_prior_7_days), (15, 5));
    let rest =
        client.top_charts(chart(pb::Chart::Trending, 2, trending.next_page_token)).await.expect("p2").into_inner();
    assert_eq!(names(&rest), [fresh.clone(), steady.clone()]);
    assert_eq!(rest.entries[0].rank, 3);
    assert!(rest.next_page_token.is_empty());
    // Another category is empty.
    let none = client
        .top_charts(pb::TopChartsRequest {
            category: "GAME_PUZZLE".into(),
            chart: pb::Chart::TopFree as i32,
            ..Default::default()
        })
        .await
        .expect("other category")
        .into_inner();
    assert!(none.entries.is_empty());
}

on_every_backend!(hundred_concurrent_installs_are_exact, charts_rank_by_installs_and_growth);
