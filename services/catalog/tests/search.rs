//! Search quality on a small fixture catalog, through a real server on the memory store:
//! BM25 ranking (best title match first), stemming, typo tolerance, filters (category prefix,
//! inclusive price bounds, attribute OR within and AND across), sorts, exact facet counts,
//! paging that covers every hit once, and archived products never returned. Expected sets are
//! computed from the fixture itself.

mod catalog_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use catalog_support::*;
use meshwork_common::ManualClock;
use meshwork_proto::pb::catalog::v1 as pb;
use meshwork_test_support::{TestServer, context_with_clock, memory_store};
use pb::catalog_client::CatalogClient;
use tonic::transport::Channel;

/// sku, title, description, category, price, attributes, archived.
type Row = (&'static str, &'static str, &'static str, &'static str, i64, &'static [(&'static str, &'static str)], bool);

const FIXTURE: &[Row] = &[
    (
        "HP-1",
        "Wireless Noise Cancelling Headphones",
        "Over-ear, 30 hours of battery",
        "electronics/audio/headphones",
        19900,
        &[("brand", "acme"), ("color", "black")],
        false,
    ),
    (
        "HP-2",
        "Studio Headphones",
        "Flat response for mixing",
        "electronics/audio/headphones",
        9900,
        &[("brand", "sonic"), ("color", "white")],
        false,
    ),
    (
        "HP-3",
        "Kids Headphones with Volume Limit",
        "Safe for small ears",
        "electronics/audio/headphones",
        2900,
        &[("brand", "acme"), ("color", "red")],
        false,
    ),
    (
        "SPK-1",
        "Bluetooth Speaker",
        "Pairs well with our headphones",
        "electronics/audio/speakers",
        4900,
        &[("brand", "sonic"), ("color", "black")],
        false,
    ),
    (
        "EAR-1",
        "Earbuds",
        "Tiny and light",
        "electronics/audio/earbuds",
        5900,
        &[("brand", "acme"), ("color", "white")],
        false,
    ),
    (
        "LAP-1",
        "Laptop 14 inch",
        "Thin and light notebook",
        "electronics/computers/laptops",
        99900,
        &[("brand", "acme"), ("color", "silver")],
        false,
    ),
    (
        "LAP-2",
        "Gaming Laptop",
        "Fast graphics",
        "electronics/computers/laptops",
        149900,
        &[("brand", "zeta"), ("color", "black")],
        false,
    ),
    (
        "MOU-1",
        "Wireless Mouse",
        "Quiet clicks",
        "electronics/computers/accessories",
        1900,
        &[("brand", "zeta"), ("color", "black")],
        false,
    ),
    (
        "KEY-1",
        "Mechanical Keyboard",
        "Tactile switches",
        "electronics/computers/accessories",
        7900,
        &[("brand", "zeta"), ("color", "white")],
        false,
    ),
    (
        "SHO-1",
        "Runner shoe",
        "Cushioned everyday trainer",
        "sports/shoes/running",
        8900,
        &[("brand", "fleet"), ("color", "blue")],
        false,
    ),
    (
        "SHO-2",
        "Trail running shoes",
        "Grip on rocks and mud",
        "sports/shoes/running",
        12900,
        &[("brand", "fleet"), ("color", "black")],
        false,
    ),
    (
        "SHO-3",
        "Hiking boots",
        "Waterproof leather",
        "sports/shoes/hiking",
        15900,
        &[("brand", "peak"), ("color", "brown")],
        false,
    ),
    (
        "SHO-4",
        "Marathon trainer",
        "Light and fast for long runs",
        "sports/shoes/racing",
        11900,
        &[("brand", "fleet"), ("color", "white")],
        false,
    ),
    (
        "SHO-5",
        "Leather dress shoes",
        "Polished oxfords",
        "fashion/shoes",
        9900,
        &[("brand", "dapper"), ("color", "brown")],
        false,
    ),
    (
        "KIT-1",
        "Espresso Machine",
        "Fifteen bar pump",
        "home/kitchen/coffee",
        29900,
        &[("brand", "brewco"), ("color", "silver")],
        false,
    ),
    (
        "KIT-2",
        "Coffee Grinder",
        "Burr grinder",
        "home/kitchen/coffee",
        5900,
        &[("brand", "brewco"), ("color", "black")],
        false,
    ),
    (
        "KIT-3",
        "French Press",
        "Glass and steel",
        "home/kitchen/coffee",
        2900,
        &[("brand", "brewco"), ("color", "silver")],
        false,
    ),
    (
        "KIT-4",
        "Chef Knife",
        "Forged steel blade",
        "home/kitchen/cutlery",
        4900,
        &[("brand", "edge"), ("color", "silver")],
        false,
    ),
    ("BOOK-1", "The Art of Running", "Essays on distance", "books/sports", 1900, &[("format", "paperback")], false),
    ("BOOK-2", "Coffee Chemistry", "What happens in the cup", "books/food", 2500, &[("format", "hardcover")], false),
    (
        "ARCH-1",
        "Vintage Headphones",
        "Retro wired headphones",
        "electronics/audio/headphones",
        4900,
        &[("brand", "acme"), ("color", "black")],
        true,
    ),
    (
        "ARCH-2",
        "Archived runner shoe",
        "No longer made",
        "sports/shoes/running",
        4900,
        &[("brand", "fleet"), ("color", "blue")],
        true,
    ),
];

fn active() -> impl DoubleEndedIterator<Item = &'static Row> {
    FIXTURE.iter().filter(|r| !r.6)
}

fn set(skus: impl IntoIterator<Item = impl Into<String>>) -> BTreeSet<String> {
    skus.into_iter().map(Into::into).collect()
}

/// Serves the fixture (created one simulated second apart, so `newest` has an order) and
/// waits until the index has every active product.
async fn fixture() -> (TestServer, CatalogClient<Channel>) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let ctx = context_with_clock(memory_store(), clock.clone());
    let server = TestServer::hosting(meshwork_catalog::hosted, &ctx).await;
    let mut client = catalog(&server);
    for (sku, title, description, category, price, attributes, archived) in FIXTURE {
        let mut p = product(sku, title, category, *price, attributes);
        p.description = description.to_string();
        if *archived {
            p.status = pb::ProductStatus::Archived as i32;
        }
        create(&mut client, p).await;
        clock.advance(1_000);
    }
    let all = active().count() as i64;
    let loaded = poll_search(&mut client, &query(""), Duration::from_secs(5), |r| r.total_size == all).await;
    assert!(loaded.is_some(), "the index never held the fixture");
    (server, client)
}

/// Every hit of `req`, page by page (asserting the total stays put and no sku repeats).
async fn all_pages(client: &mut CatalogClient<Channel>, mut req: pb::SearchProductsRequest) -> Vec<pb::SearchHit> {
    let mut hits = Vec::new();
    let mut total = None;
    loop {
        let page = search(client, req.clone()).await;
        assert!(page.hits.len() <= req.page_size.max(1) as usize || req.page_size == 0);
        if let Some(t) = total {
            assert_eq!(page.total_size, t, "total_size changed between pages");
        }
        total = Some(page.total_size);
        hits.extend(page.hits);
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    assert_eq!(hits.len() as i64, total.unwrap_or(0), "paging covered every hit");
    let distinct: BTreeSet<String> = hits.iter().map(|h| h.product.as_ref().unwrap().sku.clone()).collect();
    assert_eq!(distinct.len(), hits.len(), "a hit repeated across pages");
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_quality_on_a_fixture_catalog() {
    let (_server, mut client) = fixture().await;

    // BM25: the best title match first; title matches above a description-only match.
    let r = search(&mut client, query("wireless headphones")).await;
    assert_eq!(skus(&r)[0], "HP-1", "both words in the title: {:?}", skus(&r));
    let r = search(&mut client, query("headphones")).await;
    let order = skus(&r);
    assert_eq!(set(order[..3].to_vec()), set(["HP-1", "HP-2", "HP-3"]), "{order:?}");
    assert_eq!(order[3], "SPK-1", "description-only match after the titles: {order:?}");
    assert!(r.hits.windows(2).all(|w| w[0].score >= w[1].score), "scores descend");
    assert!(r.hits.iter().all(|h| h.score > 0.0));

    // Stemming: "running shoes" finds "Runner shoe" and "long runs".
    let r = search(&mut client, query("running shoes")).await;
    let found = set(skus(&r));
    assert_eq!(skus(&r)[0], "SHO-2", "both stems in the title: {:?}", skus(&r));
    for expected in ["SHO-1", "SHO-4", "BOOK-1", "SHO-5"] {
        assert!(found.contains(expected), "{expected} missing from {found:?}");
    }

    // Typo tolerance: one edit finds the word, and the exact word still ranks first.
    let r = search(&mut client, query("hedphones")).await;
    assert_eq!(set(skus(&r)[..3].to_vec()), set(["HP-1", "HP-2", "HP-3"]), "{:?}", skus(&r));
    let r = search(&mut client, query("studio hedphones")).await;
    assert_eq!(skus(&r)[0], "HP-2");
    let r = search(&mut client, query("mechanicl keybord")).await;
    assert_eq!(skus(&r)[0], "KEY-1", "two typos in long words: {:?}", skus(&r));
    let r = search(&mut client, query("laptop")).await;
    assert_eq!(set(skus(&r)), set(["LAP-1", "LAP-2"]));

    // Archived products never appear, whatever matches them.
    for q in ["vintage", "archived", "retro wired", "runner"] {
        let r = search(&mut client, query(q)).await;
        assert!(!skus(&r).iter().any(|s| s.starts_with("ARCH")), "{q}: {:?}", skus(&r));
    }
    assert!(search(&mut client, query("vintage retro")).await.hits.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_sorts_facets_and_paging() {
    let (_server, mut client) = fixture().await;
    let all_skus = |pred: &dyn Fn(&Row) -> bool| set(active().filter(|r| pred(r)).map(|r| r.0));
    let page = |req: pb::SearchProductsRequest| pb::SearchProductsRequest { page_size: 100, ..req };

    // Category prefix, subcategories included; a sibling with a common prefix is not.
    let r = search(&mut client, page(pb::SearchProductsRequest { category: "electronics/audio".into(), ..query("") }))
        .await;
    assert_eq!(set(skus(&r)), all_skus(&|r| r.3.starts_with("electronics/audio/")));
    assert_eq!(r.total_size, 5);
    let r = search(&mut client, page(pb::SearchProductsRequest { category: "sports/shoes".into(), ..query("") })).await;
    assert_eq!(set(skus(&r)), set(["SHO-1", "SHO-2", "SHO-3", "SHO-4"]));
    let r =
        search(&mut client, page(pb::SearchProductsRequest { category: "electronics/audi".into(), ..query("") })).await;
    assert_eq!(r.total_size, 0);

    // Price bounds are inclusive; 0 means no bound.
    let r = search(
        &mut client,
        page(pb::SearchProductsRequest { min_price_minor: 4900, max_price_minor: 9900, ..query("") }),
    )
    .await;
    assert_eq!(set(skus(&r)), all_skus(&|r| (4900..=9900).contains(&r.4)));
    let r = search(&mut client, page(pb::SearchProductsRequest { min_price_minor: 99900, ..query("") })).await;
    assert_eq!(set(skus(&r)), set(["LAP-1", "LAP-2"]));
    let r = search(&mut client, page(pb::SearchProductsRequest { max_price_minor: 1900, ..query("") })).await;
    assert_eq!(set(skus(&r)), set(["MOU-1", "BOOK-1"]));

    // Attributes: OR within a filter, AND across filters; with a query.
    let filter = |name: &str, values: &[&str]| pb::AttributeFilter {
        name: name.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    let attr = |r: &Row, name: &str| r.5.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).unwrap_or("");
    let r = search(
        &mut client,
        page(pb::SearchProductsRequest { attribute_filters: vec![filter("brand", &["acme", "sonic"])], ..query("") }),
    )
    .await;
    assert_eq!(set(skus(&r)), all_skus(&|r| ["acme", "sonic"].contains(&attr(r, "brand"))));
    let r = search(
        &mut client,
        page(pb::SearchProductsRequest {
            attribute_filters: vec![filter("brand", &["acme"]), filter("color", &["black", "white"])],
            ..query("")
        }),
    )
    .await;
    assert_eq!(set(skus(&r)), set(["HP-1", "EAR-1"]));
    let r = search(
        &mut client,
        page(pb::SearchProductsRequest {
            attribute_filters: vec![filter("color", &["black"])],
            category: "electronics".into(),
            max_price_minor: 20000,
            ..query("wireless")
        }),
    )
    .await;
    assert_eq!(set(skus(&r)), set(["HP-1", "MOU-1"]));

    // Sorts: by price both ways (sku breaks ties), newest first, and relevance without words.
    let sorted = |sort: pb::SearchSort| page(pb::SearchProductsRequest { sort: sort as i32, ..query("") });
    let r = search(&mut client, sorted(pb::SearchSort::PriceAsc)).await;
    let mut expected: Vec<&Row> = active().collect();
    expected.sort_by(|a, b| a.4.cmp(&b.4).then(a.0.cmp(b.0)));
    assert_eq!(skus(&r), expected.iter().map(|r| r.0.to_string()).collect::<Vec<_>>());
    assert!(r.hits.iter().all(|h| h.score == 0.0));
    let r = search(&mut client, sorted(pb::SearchSort::PriceDesc)).await;
    expected.sort_by(|a, b| b.4.cmp(&a.4).then(a.0.cmp(b.0)));
    assert_eq!(skus(&r), expected.iter().map(|r| r.0.to_string()).collect::<Vec<_>>());
    let newest: Vec<String> = active().rev().map(|r| r.0.to_string()).collect();
    assert_eq!(skus(&search(&mut client, sorted(pb::SearchSort::Newest)).await), newest);
    assert_eq!(skus(&search(&mut client, sorted(pb::SearchSort::Relevance)).await), newest);
    let r = search(&mut client, pb::SearchProductsRequest { sort: pb::SearchSort::PriceAsc as i32, ..query("coffee") })
        .await;
    // "coffee" is in two titles and in the category of every coffee product.
    assert_eq!(skus(&r), vec!["BOOK-2", "KIT-3", "KIT-2", "KIT-1"], "only matches, by price");

    // Facets over the whole match set: top-level categories, then children of the filter.
    let r = search(&mut client, pb::SearchProductsRequest { page_size: 1, ..query("") }).await;
    let facet = |r: &pb::SearchProductsResponse, field: &str| -> Vec<(String, i64)> {
        r.facets
            .iter()
            .find(|f| f.field == field)
            .map(|f| f.values.iter().map(|v| (v.value.clone(), v.count)).collect())
            .unwrap_or_default()
    };
    let mut top: BTreeMap<String, i64> = BTreeMap::new();
    for row in active() {
        *top.entry(row.3.split('/').next().unwrap().to_string()).or_default() += 1;
    }
    let mut expected_top: Vec<(String, i64)> = top.into_iter().collect();
    expected_top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(facet(&r, "category"), expected_top);
    let mut brands: BTreeMap<String, i64> = BTreeMap::new();
    for row in active() {
        if !attr(row, "brand").is_empty() {
            *brands.entry(attr(row, "brand").to_string()).or_default() += 1;
        }
    }
    let mut expected_brands: Vec<(String, i64)> = brands.into_iter().collect();
    expected_brands.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(facet(&r, "attributes.brand"), expected_brands);
    assert_eq!(facet(&r, "attributes.format"), vec![("hardcover".into(), 1), ("paperback".into(), 1)]);
    let r = search(&mut client, pb::SearchProductsRequest { category: "electronics".into(), ..query("") }).await;
    assert_eq!(facet(&r, "category"), vec![("electronics/audio".into(), 5), ("electronics/computers".into(), 4)]);
    let r = search(&mut client, query("headphones")).await;
    assert_eq!(facet(&r, "attributes.brand"), vec![("acme".into(), 2), ("sonic".into(), 2)]);
    assert_eq!(facet(&r, "category"), vec![("electronics".into(), 4)]);

    // Paging covers every hit exactly once, for a sort and for relevance.
    let everything =
        all_pages(&mut client, pb::SearchProductsRequest { page_size: 3, ..sorted(pb::SearchSort::PriceAsc) }).await;
    assert_eq!(set(everything.iter().map(|h| h.product.as_ref().unwrap().sku.clone())), all_skus(&|_| true));
    let shoes = all_pages(&mut client, pb::SearchProductsRequest { page_size: 2, ..query("shoes") }).await;
    let one_page = search(&mut client, pb::SearchProductsRequest { page_size: 100, ..query("shoes") }).await;
    assert_eq!(
        shoes.iter().map(|h| h.product.as_ref().unwrap().sku.clone()).collect::<Vec<_>>(),
        skus(&one_page),
        "pages of a relevance search are the one big page in order"
    );

    // A token only continues its own query.
    let first = search(&mut client, pb::SearchProductsRequest { page_size: 2, ..query("") }).await;
    let err = client
        .search_products(pb::SearchProductsRequest { page_token: first.next_page_token, ..query("shoes") })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("page_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_removes_from_search_and_restoring_brings_back() {
    let (_server, mut client) = fixture().await;
    let got = client.get_product(pb::GetProductRequest { sku: "KIT-4".into() }).await.unwrap().into_inner();
    let knife = got.product.unwrap();
    let archived = pb::Product { status: pb::ProductStatus::Archived as i32, ..knife.clone() };
    let updated = client
        .update_product(pb::UpdateProductRequest { product: Some(archived), etag: knife.etag.clone() })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    let gone = poll_search(&mut client, &query("knife"), Duration::from_secs(1), |r| r.hits.is_empty()).await;
    assert!(gone.is_some(), "an archived product left the search within 1 s");
    let restored =
        pb::Product { status: pb::ProductStatus::Active as i32, title: "Chef Knife Deluxe".into(), ..updated.clone() };
    client.update_product(pb::UpdateProductRequest { product: Some(restored), etag: updated.etag }).await.unwrap();
    let back = poll_search(&mut client, &query("deluxe"), Duration::from_secs(1), |r| skus(r) == vec!["KIT-4"]).await;
    assert!(back.is_some(), "a restored product is searchable within 1 s");
}
