//! Products through a real server: create is idempotent by `request_id` and skus are unique;
//! updates are optimistic (a stale etag is ABORTED, and of concurrent updates with one etag
//! exactly one wins, on every backend); listing by category covers subcategories in sku order
//! with paging and archived products only on request; the category tree's ACTIVE counts stay
//! exact through moves and archiving; every change is in the event log; writes need a role
//! when a caller is known.

mod catalog_support;

use catalog_support::*;
use meshwork_catalog::keys;
use meshwork_common::events::EventLog;
use meshwork_proto::pb::catalog::v1 as pb;
use meshwork_test_support::backends::{Backend, unique};
use meshwork_test_support::{TestServer, context, memory_store, on_every_backend};
use prost::Message;
use tonic::Code;

async fn one_of_concurrent_updates_with_one_etag_wins(backend: Backend) {
    let server = TestServer::hosting(meshwork_catalog::hosted, &context(backend.store.clone())).await;
    let mut client = catalog(&server);
    let s = sku("RACE");
    let p = create(&mut client, product(&s, "Race lamp", "home/lighting", 1000, &[])).await;

    // A stale etag is ABORTED and changes nothing.
    let first = client
        .update_product(pb::UpdateProductRequest {
            product: Some(pb::Product { price_minor: 1100, ..p.clone() }),
            etag: p.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_ne!(first.etag, p.etag);
    let stale =
        pb::UpdateProductRequest { product: Some(pb::Product { price_minor: 1, ..p.clone() }), etag: p.etag.clone() };
    let err = client.update_product(stale).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    let now = client.get_product(pb::GetProductRequest { sku: s.clone() }).await.unwrap().into_inner().product.unwrap();
    assert_eq!(now, first);

    // 10 concurrent updates from the same etag: exactly one wins, the rest are ABORTED.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let mut client = client.clone();
            let update = pb::UpdateProductRequest {
                product: Some(pb::Product { price_minor: 2000 + i, ..first.clone() }),
                etag: first.etag.clone(),
            };
            tokio::spawn(async move { client.update_product(update).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(answer) => winners.push(answer.into_inner().product.unwrap()),
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update wins");
    let now = client.get_product(pb::GetProductRequest { sku: s.clone() }).await.unwrap().into_inner().product.unwrap();
    assert_eq!(now, winners[0]);
    assert_eq!(now.create_time, p.create_time);
}

async fn create_is_idempotent_and_skus_are_unique(backend: Backend) {
    let server = TestServer::hosting(meshwork_catalog::hosted, &context(backend.store.clone())).await;
    let mut client = catalog(&server);
    let s = sku("IDEM");
    let request_id = unique("req");
    let req =
        pb::CreateProductRequest { request_id: request_id.clone(), product: Some(product(&s, "Idem", "x/y", 5, &[])) };
    let first = client.create_product(req.clone()).await.unwrap().into_inner();
    let again = client.create_product(req.clone()).await.unwrap().into_inner();
    assert_eq!(first, again, "the same request_id answers the first answer");
    let mut other = req.clone();
    other.product.as_mut().unwrap().title = "Other".into();
    assert_eq!(client.create_product(other).await.unwrap_err().code(), Code::AlreadyExists);
    let dup = pb::CreateProductRequest { request_id: unique("req"), ..req };
    assert_eq!(client.create_product(dup).await.unwrap_err().code(), Code::AlreadyExists);
}

on_every_backend!(one_of_concurrent_updates_with_one_etag_wins, create_is_idempotent_and_skus_are_unique);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_categories_and_events() {
    let store = memory_store();
    let server = TestServer::hosting(meshwork_catalog::hosted, &context(store.clone())).await;
    let mut client = catalog(&server);
    let rows = [
        ("A-01", "electronics/audio/headphones"),
        ("A-02", "electronics/audio/speakers"),
        ("A-03", "electronics/audio"),
        ("A-04", "electronics/computers"),
        ("A-05", "electronics-outlet"),
        ("A-06", "garden"),
        ("A-07", "electronics/audio/headphones"),
    ];
    let mut created = Vec::new();
    for (s, category) in rows {
        created.push(create(&mut client, product(s, &format!("Item {s}"), category, 100, &[])).await);
    }
    // Archive A-07, move A-02 to garden/tools.
    let a07 = &created[6];
    let archived = pb::Product { status: pb::ProductStatus::Archived as i32, ..a07.clone() };
    client.update_product(pb::UpdateProductRequest { product: Some(archived), etag: a07.etag.clone() }).await.unwrap();
    let a02 = &created[1];
    let moved = pb::Product { category: "garden/tools".into(), ..a02.clone() };
    client.update_product(pb::UpdateProductRequest { product: Some(moved), etag: a02.etag.clone() }).await.unwrap();

    let list = |category: &str, include_archived: bool, page_size: i32, page_token: String| pb::ListProductsRequest {
        category: category.into(),
        include_archived,
        page_size,
        page_token,
    };
    let skus_of = |r: &pb::ListProductsResponse| r.products.iter().map(|p| p.sku.clone()).collect::<Vec<_>>();
    let r = client.list_products(list("electronics", false, 0, String::new())).await.unwrap().into_inner();
    assert_eq!(skus_of(&r), vec!["A-01", "A-03", "A-04"], "subcategories, by sku, not the sibling prefix");
    assert!(r.next_page_token.is_empty());
    let r = client.list_products(list("electronics", true, 0, String::new())).await.unwrap().into_inner();
    assert_eq!(skus_of(&r), vec!["A-01", "A-03", "A-04", "A-07"]);
    let r = client.list_products(list("garden", false, 0, String::new())).await.unwrap().into_inner();
    assert_eq!(skus_of(&r), vec!["A-02", "A-06"]);
    // Pages of 2 over everything (archived skipped), then with archived.
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let r = client.list_products(list("", false, 2, token)).await.unwrap().into_inner();
        assert!(r.products.len() <= 2);
        all.extend(skus_of(&r));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(all, vec!["A-01", "A-02", "A-03", "A-04", "A-05", "A-06"]);
    let r = client.list_products(list("", false, 6, String::new())).await.unwrap().into_inner();
    assert!(r.next_page_token.is_empty(), "no token when the rest is archived");
    let first = client.list_products(list("", false, 2, String::new())).await.unwrap().into_inner();
    let err = client.list_products(list("garden", false, 2, first.next_page_token)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a token of another listing");

    // The tree with ACTIVE counts.
    let tree = client.list_categories(pb::ListCategoriesRequest { parent: String::new() }).await.unwrap().into_inner();
    let flat = |c: &[pb::Category]| c.iter().map(|c| (c.path.clone(), c.product_count)).collect::<Vec<_>>();
    assert_eq!(
        flat(&tree.categories),
        vec![("electronics".into(), 3), ("electronics-outlet".into(), 1), ("garden".into(), 2)]
    );
    let electronics = &tree.categories[0];
    assert_eq!(flat(&electronics.children), vec![("electronics/audio".into(), 2), ("electronics/computers".into(), 1)]);
    assert_eq!(flat(&electronics.children[0].children), vec![("electronics/audio/headphones".into(), 1)]);
    assert_eq!(electronics.children[0].children[0].name, "headphones");
    let sub = client.list_categories(pb::ListCategoriesRequest { parent: "garden".into() }).await.unwrap().into_inner();
    assert_eq!(flat(&sub.categories), vec![("garden/tools".into(), 1)]);

    // Every change is in the event log, in order.
    let events = EventLog::new(store.clone(), keys::EVENT_LOG_SERVICE).read(1, 100).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    let mut expected = vec!["catalog.product_created"; 7];
    expected.extend(["catalog.product_updated"; 2]);
    assert_eq!(types, expected);
    let last = pb::Product::decode(events[8].payload.as_slice()).unwrap();
    assert_eq!((last.sku.as_str(), last.category.as_str()), ("A-02", "garden/tools"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_writes_need_a_role_when_a_caller_is_known() {
    let server = TestServer::hosting(meshwork_catalog::hosted, &context(memory_store())).await;
    let mut client = catalog(&server);
    let create_req = |s: &str| pb::CreateProductRequest {
        request_id: format!("r-{s}"),
        product: Some(product(s, "Lamp", "home", 10, &[])),
    };
    let err = client.create_product(as_caller(create_req("NOROLE-1"), "bob", &["buyer"])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        client.get_product(pb::GetProductRequest { sku: "NOROLE-1".into() }).await.unwrap_err().code(),
        Code::NotFound
    );
    let p = client
        .create_product(as_caller(create_req("ROLE-1"), "cat", &["catalog"]))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    client.create_product(as_caller(create_req("ROLE-2"), "root", &["admin"])).await.unwrap();
    let update = pb::UpdateProductRequest { product: Some(pb::Product { price_minor: 11, ..p.clone() }), etag: p.etag };
    let err = client.update_product(as_caller(update.clone(), "bob", &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    client.update_product(as_caller(update, "cat", &["catalog"])).await.unwrap();
}
