//! The search index is a projection of the store on every replica: two `hosted` instances on
//! one store (two servers), a write through replica A is searchable on replica B within 1 s
//! (polled with a 1 s budget), also while writes come in concurrently, for updates and for
//! archiving; a replica started later finds earlier products through its scan. On the memory,
//! embedded and etcd stores.

mod catalog_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use catalog_support::*;
use meshwork_proto::pb::catalog::v1 as pb;
use meshwork_test_support::backends::{Backend, unique};
use meshwork_test_support::{TestServer, context, on_every_backend};

const BUDGET: Duration = Duration::from_secs(1);

fn first_is(r: &pb::SearchProductsResponse, sku: &str) -> bool {
    skus(r).first().map(String::as_str) == Some(sku)
}

async fn writes_on_one_replica_are_searchable_on_another(backend: Backend) {
    let ctx = context(backend.store.clone());
    let a = TestServer::hosting(meshwork_catalog::hosted, &ctx).await;
    let mut on_a = catalog(&a);
    let word = unique("fresh");
    let category = format!("fresh/{}", word);

    // Written before replica B starts: B's scan finds it.
    let early = sku("EARLY");
    create(&mut on_a, product(&early, &format!("{word}early lamp"), &category, 100, &[])).await;
    let b = TestServer::hosting(meshwork_catalog::hosted, &ctx).await;
    let mut on_b = catalog(&b);
    let found = poll_search(&mut on_b, &query(&format!("{word}early")), Duration::from_secs(10), |r| {
        skus(r) == vec![early.clone()]
    })
    .await;
    assert!(found.is_some(), "replica B's scan found the earlier product");

    // One at a time, then 20 at once: each is on B within 1 s of its acknowledgement.
    for i in 0..5 {
        let s = sku("ONE");
        create(&mut on_a, product(&s, &format!("{word}one{i} desk"), &category, 100, &[])).await;
        // Earlier products are one typo away (fuzzy matches): the exact one ranks first.
        let lag = poll_search(&mut on_b, &query(&format!("{word}one{i}")), BUDGET, |r| first_is(r, &s)).await;
        assert!(lag.is_some(), "product {i} was not searchable on B within 1 s");
    }
    // 20 concurrent writers; one poller of B's category records when each sku shows up.
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let writers: Vec<_> = (0..20)
        .map(|i| {
            let (mut on_a, acked) = (on_a.clone(), acked.clone());
            let (word, category) = (word.clone(), category.clone());
            tokio::spawn(async move {
                let s = sku("LOAD");
                create(&mut on_a, product(&s, &format!("{word}load{i} chair"), &category, 100, &[])).await;
                acked.lock().unwrap().insert(s, Instant::now());
            })
        })
        .collect();
    let in_category = pb::SearchProductsRequest { category: category.clone(), page_size: 100, ..query("") };
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 26 && Instant::now() < deadline {
        let r = search(&mut on_b, in_category.clone()).await;
        for s in skus(&r) {
            seen.entry(s).or_insert_with(Instant::now);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for writer in writers {
        writer.await.expect("writer task");
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 20);
    for (s, at) in &acked {
        let shown = seen.get(s).unwrap_or_else(|| panic!("{s} never showed up on B"));
        let lag = shown.saturating_duration_since(*at);
        assert!(lag <= BUDGET, "{s} showed up on B {lag:?} after its write was acknowledged");
    }

    // An update replaces the document; archiving removes it: both seen on B within 1 s.
    let s = sku("UPD");
    let p = create(&mut on_a, product(&s, &format!("{word}before sofa"), &category, 100, &[])).await;
    let renamed = pb::Product { title: format!("{word}after sofa"), ..p.clone() };
    let p = on_a
        .update_product(pb::UpdateProductRequest { product: Some(renamed), etag: p.etag.clone() })
        .await
        .expect("update")
        .into_inner()
        .product
        .expect("product");
    let lag = poll_search(&mut on_b, &query(&format!("{word}after")), BUDGET, |r| skus(r) == vec![s.clone()]).await;
    assert!(lag.is_some(), "the update was not searchable on B within 1 s");
    let r = search(&mut on_b, query(&format!("{word}before"))).await;
    assert!(r.hits.is_empty(), "the old title still matched: {:?}", skus(&r));
    let archived = pb::Product { status: pb::ProductStatus::Archived as i32, ..p.clone() };
    on_a.update_product(pb::UpdateProductRequest { product: Some(archived), etag: p.etag }).await.expect("archive");
    let lag = poll_search(&mut on_b, &query(&format!("{word}after")), BUDGET, |r| r.hits.is_empty()).await;
    assert!(lag.is_some(), "the archived product was still found on B after 1 s");

    // Both replicas agree on the whole category.
    let on_a_hits = poll_search(&mut on_a, &in_category, BUDGET, |r| r.total_size == 26).await;
    assert!(on_a_hits.is_some(), "replica A sees its own writes");
    assert_eq!(search(&mut on_b, in_category.clone()).await.total_size, 26);
    a.stop().await;
    b.stop().await;
}

on_every_backend!(writes_on_one_replica_are_searchable_on_another);
