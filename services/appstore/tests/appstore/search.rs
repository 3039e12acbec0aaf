//! Search as a projection of the store: apps created on one replica become searchable on
//! another (each follows the store's watch), ranked (title above developer above
//! description), filtered by category and paged; a listing change is seen, a release is not a
//! text change.

use std::time::Duration;

use meshwork_proto::pb::appstore::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;

use crate::support::{self, Client};

async fn search(
    client: &mut Client,
    query: &str,
    category: &str,
    page_size: i32,
    page_token: String,
) -> pb::SearchAppsResponse {
    client
        .search_apps(pb::SearchAppsRequest { query: query.into(), category: category.into(), page_size, page_token })
        .await
        .expect("search")
        .into_inner()
}

fn names(r: &pb::SearchAppsResponse) -> Vec<String> {
    r.hits.iter().map(|h| h.app.as_ref().unwrap().title.clone()).collect()
}

async fn search_follows_the_store(backend: Backend) {
    let root = support::root("search");
    let (_a, mut a) = support::replica(&backend.store, &root, support::manual_clock()).await;
    let (_b, mut b) = support::replica(&backend.store, &root, support::manual_clock()).await;
    let dev = support::developer(&mut a, "owner").await;
    for (title, category, description) in [
        ("Galaxy Notes", "PRODUCTIVITY", "write it down"),
        ("Todo Lists", "PRODUCTIVITY", "keeps notes of chores"),
        ("Star Puzzle", "GAME_PUZZLE", "galaxy-themed puzzles"),
        ("Chess Master", "GAME_BOARD", "play chess"),
    ] {
        let mut req = support::app_req(&dev, &support::package("s"), title, category, 0);
        req.app.as_mut().unwrap().description = description.into();
        a.create_app(req).await.expect("app");
    }
    // Replica b sees them through its own projection, within a bounded time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = search(&mut b, "", "", 0, String::new()).await;
        if r.total == 4 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {} apps searchable", r.total);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names(&search(&mut b, "notes", "", 0, String::new()).await), ["Galaxy Notes", "Todo Lists"]);
    assert_eq!(names(&search(&mut b, "galaxy", "", 0, String::new()).await), ["Galaxy Notes", "Star Puzzle"]);
    assert_eq!(names(&search(&mut b, "galaxy", "GAME_PUZZLE", 0, String::new()).await), ["Star Puzzle"]);
    assert_eq!(names(&search(&mut b, "chass", "", 0, String::new()).await), ["Chess Master"], "a typo");
    let studio = search(&mut b, "studio", "", 0, String::new()).await;
    assert_eq!(studio.total, 4, "every app matches its developer's name");
    let first = search(&mut b, "", "PRODUCTIVITY", 1, String::new()).await;
    assert_eq!(first.total, 2);
    let second = search(&mut b, "", "PRODUCTIVITY", 1, first.next_page_token.clone()).await;
    assert_eq!(names(&first).len() + names(&second).len(), 2);
    assert_ne!(names(&first), names(&second));
    assert!(second.next_page_token.is_empty());
    let bad = b
        .search_apps(pb::SearchAppsRequest {
            query: "notes".into(),
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await;
    assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument, "a token of another query");
}

on_every_backend!(search_follows_the_store);
