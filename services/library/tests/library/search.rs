//! SearchCatalog finds titles by title, author and subject words (stemmed, ranked), with the
//! availability counts read from the store, and follows new titles through the store's watch.

use std::sync::Arc;
use std::time::Duration;

use meshwork_proto::pb::library::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;

use crate::support::*;

async fn search_isbns(client: &mut Client, query: &str) -> Vec<String> {
    let req = pb::SearchCatalogRequest { query: query.into(), ..Default::default() };
    client
        .search_catalog(req)
        .await
        .expect("search")
        .into_inner()
        .hits
        .into_iter()
        .filter_map(|h| h.title)
        .map(|t| t.isbn)
        .collect()
}

async fn search_finds_by_title_author_and_subject(backend: Backend) {
    let clock = clock();
    let root = root("search");
    let mut r = replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let (garden, cook, weeds) = (isbn(30), isbn(31), isbn(32));
    add_title(&mut r.client, &garden, "The Garden Book", &["Ann Lee"], &["horticulture"]).await;
    add_title(&mut r.client, &cook, "Cooking at Home", &["Sam Gardner"], &["food"]).await;
    add_title(&mut r.client, &weeds, "Weeds", &["Bo Young"], &["gardens", "botany"]).await;
    add_copy(&mut r.client, "GARD-1", &garden, 1000).await;
    add_copy(&mut r.client, "GARD-2", &garden, 1000).await;
    register(&mut r.client, "m", pb::MemberType::Adult).await;
    checkout(&mut r.client, "m", "GARD-1").await.unwrap();

    let found = eventually(Duration::from_secs(10), || {
        let mut c = r.client.clone();
        let weeds = weeds.clone();
        async move { search_isbns(&mut c, "botany").await == vec![weeds] }
    })
    .await;
    assert!(found, "the titles become searchable");
    // By title word first (boosted), then the subject "gardens" (stemmed to garden).
    assert_eq!(search_isbns(&mut r.client, "garden").await, vec![garden.clone(), weeds.clone()]);
    assert_eq!(search_isbns(&mut r.client, "gardner").await, vec![cook.clone()], "by author");
    assert_eq!(search_isbns(&mut r.client, "horticulture").await, vec![garden.clone()], "by subject");
    assert_eq!(search_isbns(&mut r.client, "youngg").await, vec![weeds.clone()], "a typo");
    assert!(search_isbns(&mut r.client, "astronomy").await.is_empty());

    let req = pb::SearchCatalogRequest { query: "garden book".into(), ..Default::default() };
    let answer = r.client.search_catalog(req).await.unwrap().into_inner();
    let top = answer.hits[0].title.clone().unwrap();
    assert_eq!((top.isbn.as_str(), top.total_copies, top.available_copies), (garden.as_str(), 2, 1));

    // Every title by ISBN without words, paged.
    let page = pb::SearchCatalogRequest { query: String::new(), page_size: 2, ..Default::default() };
    let first = r.client.search_catalog(page.clone()).await.unwrap().into_inner();
    assert_eq!(first.total_size, 3);
    let next = pb::SearchCatalogRequest { page_token: first.next_page_token.clone(), ..page };
    let second = r.client.search_catalog(next).await.unwrap().into_inner();
    let mut all: Vec<String> =
        first.hits.iter().chain(&second.hits).filter_map(|h| h.title.clone()).map(|t| t.isbn).collect();
    assert!(second.next_page_token.is_empty());
    let mut sorted = vec![garden, cook, weeds];
    sorted.sort();
    all.dedup();
    assert_eq!(all, sorted);
}

on_every_backend!(search_finds_by_title_author_and_subject);
