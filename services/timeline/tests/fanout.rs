//! The hybrid fan-out on every backend (memory, embedded fjall, the shared 3-member etcd
//! cluster), through real servers: a 5,000-follower fan-out lands in every home timeline
//! within 5 s; a celebrity's post is on every follower's first page at once and in no inbox;
//! home pages read while 1,000 posts arrive show no duplicate and no gap (past the bounded
//! inbox too); 100 concurrent likes count 100 and a repeated like once; a worker killed in the
//! middle of a fan-out is taken over from its checkpoint and every follower gets the post
//! exactly once; two replicas on one store share a fan-out without writing any inbox twice; a
//! restarted replica scans the pending markers from the persisted mark, and finds a marker
//! another replica (its clock an hour behind) put below that mark.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use meshwork_common::clock::{Clock, ManualClock, SystemClock};
use meshwork_proto::pb::timeline::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange, scan_all};
use meshwork_test_support::backends::Backend;
use meshwork_test_support::{context, context_with_clock, on_every_backend};
use meshwork_timeline::{Config, Graph, keys, seed_graph};
use support::*;

on_every_backend!(
    five_thousand_followers_get_the_post_within_five_seconds,
    a_celebrity_post_is_pulled_at_once_and_in_no_inbox,
    home_pages_stay_stable_while_a_thousand_posts_arrive,
    concurrent_likes_count_exactly,
    a_killed_worker_is_taken_over_and_every_follower_gets_the_post_once,
    two_replicas_share_a_fan_out_without_writing_any_inbox_twice,
    a_restarted_replica_scans_from_the_pending_mark_and_finds_a_marker_put_below_it,
);

/// Returns how many of `graph`'s users have post `id` in their inbox (each at most once: the
/// key holds the post id), by one scan of the test's own inboxes.
async fn inboxes_with(store: &DynStore, graph: &Graph, id: u64) -> usize {
    let entries = scan_all(store, KeyRange::prefix(b"timeline/inbox/".to_vec()), Direction::Forward).await.unwrap();
    let users: HashSet<&str> = graph.users.iter().map(String::as_str).collect();
    entries
        .iter()
        .filter(|e| keys::id_of_inverted_key(&e.key) == Some(id))
        .filter(|e| {
            let rest = &e.key[b"timeline/inbox/".len()..];
            let user = rest.split(|b| *b == b'/').next().and_then(|u| std::str::from_utf8(u).ok());
            user.is_some_and(|u| users.contains(u))
        })
        .count()
}

async fn five_thousand_followers_get_the_post_within_five_seconds(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let graph = Graph::star(&tag(), 5_000);
    seed_graph(&store, &SystemClock, &graph).await.expect("seed the graph");
    let running = serve(&context(store.clone()), Config::default()).await;
    let mut client = running.client();
    let author = graph.users[0].clone();

    let posted = Instant::now();
    let p = post(&mut client, &author, "hello, 5,000 followers").await;
    let id: u64 = p.post_id.parse().unwrap();
    let took = until_fanned_out(&mut client, &p.post_id, Duration::from_secs(5)).await;
    let s = status(&mut client, &p.post_id).await;
    assert_eq!(
        (s.mode, s.followers_total, s.inboxes_written, s.inboxes_pending),
        (pb::FanoutMode::Push as i32, 5_000, 5_000, 0)
    );
    let lag = s.fanout_lag.expect("the lag of a complete fan-out");
    assert!(lag.seconds < 5, "fan-out lag {lag:?}");
    eprintln!("[{}] 5,000-follower fan-out complete {took:?} after CreatePost returned (lag {lag:?})", store.backend());
    assert_eq!(inboxes_with(&store, &graph, id).await, 5_000);
    // Home timelines have it on top, read through the API (every 10th follower: 500 reads).
    let reads = futures::stream::iter(graph.users[1..].iter().step_by(10).map(|u| {
        let mut client = running.client();
        async move { home_page(&mut client, u, 1, "").await.posts.first().map(|p| p.post_id.clone()) }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    assert!(reads.iter().all(|top| top.as_deref() == Some(p.post_id.as_str())), "a follower misses the post");
    assert_eq!(reads.len(), 500);
    eprintln!("[{}] and 500 home timelines read {:?} after the post", store.backend(), posted.elapsed());
}

async fn a_celebrity_post_is_pulled_at_once_and_in_no_inbox(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let t = tag();
    // The celebrity (60 followers, over the threshold of 50) and an ordinary author followed
    // by one of them.
    let mut graph = Graph::star(&t, 60);
    graph.users.push(format!("{t}o"));
    graph.edges.push((1, 61));
    seed_graph(&store, &SystemClock, &graph).await.expect("seed the graph");
    let config = Config { celebrity_threshold: 50, ..Config::default() };
    let running = serve(&context(store.clone()), config).await;
    let mut client = running.client();

    let p = post(&mut client, &graph.users[0], "celebrity news").await;
    // At once: no waiting for any fan-out.
    for follower in &graph.users[1..61] {
        let page = home_page(&mut client, follower, 10, "").await;
        assert_eq!(page.posts.first().map(|p| p.post_id.as_str()), Some(p.post_id.as_str()), "{follower}");
    }
    let s = status(&mut client, &p.post_id).await;
    assert_eq!((s.mode, s.complete, s.followers_total), (pb::FanoutMode::Pull as i32, true, 60));
    // The consumer handles events in order: once the ordinary post after it is fanned out,
    // the celebrity's event has been handled too, and it wrote no inbox.
    let ordinary = post(&mut client, &graph.users[61], "an ordinary post").await;
    until_fanned_out(&mut client, &ordinary.post_id, Duration::from_secs(10)).await;
    let inboxes = scan_all(&store, KeyRange::prefix(b"timeline/inbox/".to_vec()), Direction::Forward).await.unwrap();
    let celeb_id: u64 = p.post_id.parse().unwrap();
    assert!(
        inboxes.iter().all(|e| keys::id_of_inverted_key(&e.key) != Some(celeb_id)),
        "the celebrity post is in an inbox"
    );
    assert_eq!(inboxes.len(), 1, "only the ordinary post, in its one follower's inbox");
    assert!(store.get(&keys::job(celeb_id)).await.unwrap().is_none(), "no fan-out was planned");
}

async fn home_pages_stay_stable_while_a_thousand_posts_arrive(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let t = tag();
    // The reader follows 10 ordinary authors and one celebrity (threshold 5, 6 followers).
    let mut users = vec![format!("{t}r")];
    users.extend((0..10).map(|i| format!("{t}a{i}")));
    users.push(format!("{t}c"));
    users.extend((0..5).map(|i| format!("{t}x{i}")));
    let mut edges: Vec<(u32, u32)> = (1..=11).map(|a| (0, a)).collect();
    edges.extend((12..17).map(|x| (x, 11)));
    let graph = Graph { users, edges };
    seed_graph(&store, &SystemClock, &graph).await.expect("seed the graph");
    // A small inbox, so that paging runs past it into the pull fallback.
    let config = Config { celebrity_threshold: 5, inbox_limit: 60, ..Config::default() };
    let running = serve(&context(store.clone()), config).await;
    let mut client = running.client();
    let reader = graph.users[0].clone();
    let authors: Vec<String> = graph.users[1..=11].to_vec();

    let phase = Instant::now();
    let before: Vec<pb::Post> = futures::stream::iter(0..120usize)
        .map(|i| {
            let (mut client, author) = (running.client(), authors[i % authors.len()].clone());
            async move { post(&mut client, &author, &format!("before {i}")).await }
        })
        .buffered(8)
        .collect()
        .await;
    for p in &before {
        until_fanned_out(&mut client, &p.post_id, Duration::from_secs(20)).await;
    }
    eprintln!("[{}] 120 posts written and fanned out in {:?}", store.backend(), phase.elapsed());
    let trimmed = running.timeline.trim_inbox(&reader).await.expect("trim");
    assert!(trimmed > 0, "the inbox was over its limit");

    // 1,000 new posts arrive while the reader pages through.
    let writer = {
        let (client, authors) = (running.client(), authors.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..1_000usize)
                .for_each_concurrent(8, |i| {
                    let (mut client, author) = (client.clone(), authors[i % authors.len()].clone());
                    async move {
                        post(&mut client, &author, &format!("during {i}")).await;
                    }
                })
                .await;
        })
    };
    // Let some arrive first.
    while running.timeline.stats().inbox_writes() < 160 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut seen: Vec<u64> = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = home_page(&mut client, &reader, 15, &token).await;
        seen.extend(page.posts.iter().map(|p| p.post_id.parse::<u64>().unwrap()));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "pages repeat or go back in time");
    let seen_set: HashSet<u64> = seen.iter().copied().collect();
    let missing: Vec<&str> =
        before.iter().filter(|p| !seen_set.contains(&p.post_id.parse().unwrap())).map(|p| p.post_id.as_str()).collect();
    assert!(missing.is_empty(), "gaps: {} posts from before the reading are missing", missing.len());
    assert!(pages > 120 / 15, "{pages} pages");
    eprintln!("[{}] {pages} pages read in {:?}", store.backend(), phase.elapsed());
    writer.await.expect("writer");
    eprintln!("[{}] 1,000 more posts written by {:?}", store.backend(), phase.elapsed());

    // Once the last fan-outs are done, everything exactly once.
    let started = Instant::now();
    let mut all = whole_home(&mut client, &reader, 200).await;
    while all.len() < 1_120 && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        all = whole_home(&mut client, &reader, 200).await;
    }
    assert_eq!(all.len(), 1_120);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 1_120);
}

async fn concurrent_likes_count_exactly(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let graph = Graph::star(&tag(), 100);
    seed_graph(&store, &SystemClock, &graph).await.expect("seed the graph");
    let running = serve(&context(store.clone()), Config::default()).await;
    let mut client = running.client();
    let p = post(&mut client, &graph.users[0], "like me").await;

    let results = futures::future::join_all(graph.users[1..].iter().map(|u| {
        let mut client = running.client();
        let request = pb::LikeRequest { post_id: p.post_id.clone(), user: u.clone() };
        async move { client.like(request).await.expect("like").into_inner() }
    }))
    .await;
    assert!(results.iter().all(|r| r.changed));
    let get = |mut client: pb::timeline_client::TimelineClient<_>, id: String| async move {
        client.get_post(pb::GetPostRequest { post_id: id }).await.unwrap().into_inner().post.unwrap()
    };
    assert_eq!(get(running.client(), p.post_id.clone()).await.like_count, 100);
    let again =
        client.like(pb::LikeRequest { post_id: p.post_id.clone(), user: graph.users[7].clone() }).await.unwrap();
    assert_eq!((again.get_ref().like_count, again.get_ref().changed), (100, false));
    let un =
        client.unlike(pb::UnlikeRequest { post_id: p.post_id.clone(), user: graph.users[7].clone() }).await.unwrap();
    assert_eq!((un.get_ref().like_count, un.get_ref().changed), (99, true));
    let un =
        client.unlike(pb::UnlikeRequest { post_id: p.post_id.clone(), user: graph.users[7].clone() }).await.unwrap();
    assert_eq!((un.get_ref().like_count, un.get_ref().changed), (99, false));
    assert_eq!(get(running.client(), p.post_id.clone()).await.like_count, 99);
}

/// A config whose fan-out is slow enough to be caught in the middle and whose background
/// work the test starts and kills itself.
fn slow_config() -> Config {
    Config {
        chunk_size: 250,
        batch_size: 25,
        batch_pause: Duration::from_millis(15),
        workers: 2,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(50),
        run_background: false,
        ..Config::default()
    }
}

async fn a_killed_worker_is_taken_over_and_every_follower_gets_the_post_once(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let graph = Graph::star(&tag(), 1_000);
    seed_graph(&store, &SystemClock, &graph).await.expect("seed the graph");
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let ctx = context_with_clock(store.clone(), clock.clone());
    let first = serve(&ctx, slow_config()).await;
    let consumer = tokio::spawn({
        let t = first.timeline.clone();
        async move { t.run_consumer().await }
    });
    let worker = tokio::spawn(first.timeline.clone().run_workers());
    let mut client = first.client();
    let p = post(&mut client, &graph.users[0], "survive a crash").await;
    let id: u64 = p.post_id.parse().unwrap();

    // Kill the worker in the middle of the fan-out.
    let started = Instant::now();
    while first.timeline.stats().inbox_writes() < 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "the fan-out does not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    worker.abort();
    let _ = worker.await;
    let halfway = status(&mut client, &p.post_id).await;
    assert!(!halfway.complete && halfway.inboxes_written > 0 && halfway.inboxes_pending > 0, "{halfway:?}");

    // A new worker (another process, same store) waits for the dead one's lease to lapse...
    let second = serve(&ctx, slow_config()).await;
    let resumed = tokio::spawn(second.timeline.clone().run_workers());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(second.timeline.stats().takeovers(), 0, "took over a live lease");
    // ... and takes over from the checkpoints once it has.
    clock.advance(31_000);
    until_fanned_out(&mut client, &p.post_id, Duration::from_secs(25)).await;
    let done = status(&mut client, &p.post_id).await;
    assert_eq!((done.inboxes_written, done.inboxes_pending), (1_000, 0), "{done:?}");
    assert!(second.timeline.stats().takeovers() > 0);
    // Exactly once: the batches the two workers committed add up to one write per follower.
    let (a, b) = (first.timeline.stats().inbox_writes(), second.timeline.stats().inbox_writes());
    assert!(a + b <= 1_000 && b > 0, "first {a} + second {b} inbox writes for 1,000 followers");
    assert_eq!(inboxes_with(&store, &graph, id).await, 1_000);
    resumed.abort();
    consumer.abort();
}

async fn two_replicas_share_a_fan_out_without_writing_any_inbox_twice(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let graph = Graph::star(&tag(), 3_000);
    seed_graph(&store, &SystemClock, &graph).await.expect("seed the graph");
    let config = Config { chunk_size: 100, batch_pause: Duration::from_millis(5), ..slow_config() };
    let ctx = context(store.clone());
    let (a, b) = (serve(&ctx, config.clone()).await, serve(&ctx, config).await);
    let mut tasks = Vec::new();
    for r in [&a, &b] {
        let t = r.timeline.clone();
        tasks.push(tokio::spawn(async move {
            let _ = t.run_consumer().await;
        }));
        tasks.push(tokio::spawn(r.timeline.clone().run_workers()));
    }
    let mut client = a.client();
    let p = post(&mut client, &graph.users[0], "shared work").await;
    let id: u64 = p.post_id.parse().unwrap();
    let mut other = b.client();
    until_fanned_out(&mut other, &p.post_id, Duration::from_secs(25)).await;
    let (sa, sb) = (a.timeline.stats(), b.timeline.stats());
    // The status shows the last task done once its write commits; the worker counts it just
    // after.
    let counted = Instant::now();
    while sa.tasks_done() + sb.tasks_done() < 30 && counted.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        sa.tasks_done() > 0 && sb.tasks_done() > 0,
        "one replica did all: {} / {} tasks",
        sa.tasks_done(),
        sb.tasks_done()
    );
    assert_eq!(sa.tasks_done() + sb.tasks_done(), 30);
    assert_eq!(sa.inbox_writes() + sb.inbox_writes(), 3_000, "an inbox was written twice (or not at all)");
    assert_eq!(inboxes_with(&store, &graph, id).await, 3_000);
    for t in tasks {
        t.abort();
    }
}

/// Starts a replica's consumer and/or workers; returns their tasks.
fn start(r: &Running, consumer: bool, workers: bool) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if consumer {
        let t = r.timeline.clone();
        tasks.push(tokio::spawn(async move {
            let _ = t.run_consumer().await;
        }));
    }
    if workers {
        tasks.push(tokio::spawn(r.timeline.clone().run_workers()));
    }
    tasks
}

async fn stop(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        t.abort();
        let _ = t.await;
    }
}

/// Waits until the persisted pending mark is above `key`.
async fn until_mark_above(running: &Running, key: &[u8]) -> Vec<u8> {
    let started = Instant::now();
    loop {
        let mark = running.timeline.pending_mark().await.unwrap();
        if mark.as_slice() > key {
            return mark;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the pending mark stays at {:?}",
            String::from_utf8_lossy(&mark)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_restarted_replica_scans_from_the_pending_mark_and_finds_a_marker_put_below_it(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let graph = Graph::star(&tag(), 3);
    seed_graph(&store, &SystemClock, &graph).await.expect("seed the graph");
    let config = Config { batch_pause: Duration::ZERO, ..slow_config() };
    let author = graph.users[0].clone();

    // Replica A fans out 40 posts: 40 done markers (tombstones) behind the mark it advances.
    let a = serve(&context(store.clone()), config.clone()).await;
    let tasks = start(&a, true, true);
    let mut client = a.client();
    let mut last = String::new();
    for i in 0..40 {
        last = post(&mut client, &author, &format!("post {i}")).await.post_id;
    }
    until_fanned_out(&mut client, &last, Duration::from_secs(20)).await;
    let last_marker = keys::pending(last.parse().unwrap(), 0);
    let mark = until_mark_above(&a, &last_marker).await;
    assert!(a.timeline.stats().mark_advances() > 0);
    stop(tasks).await;
    let pending = scan_all(&store, KeyRange::prefix(keys::pending_prefix()), Direction::Forward).await.unwrap();
    assert!(pending.is_empty(), "{} markers live", pending.len());

    // (b) A restarted replica's first scan starts at the mark, above every done marker.
    let b = serve(&context(store.clone()), config.clone()).await;
    let tasks = start(&b, false, true);
    let started = Instant::now();
    while b.timeline.stats().first_scan_from().is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "no scan");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.timeline.stats().first_scan_from(), Some(mark.as_slice()), "the first scan starts at the mark");
    stop(tasks).await;

    // (a) A replica whose clock is an hour behind posts (its planner puts the marker below
    // the mark) and dies before any worker of its own runs: the marker and the lowered mark
    // went in together.
    let behind = Arc::new(ManualClock::new(SystemClock.now_ms() - 3_600_000));
    let old = serve(&context_with_clock(store.clone(), behind), config.clone()).await;
    let tasks = start(&old, true, false);
    let mut old_client = old.client();
    let p = post(&mut old_client, &author, "from an old clock").await;
    let old_marker = keys::pending(p.post_id.parse().unwrap(), 0);
    assert!(old_marker < mark, "the old clock's marker is below the mark");
    let started = Instant::now();
    while store.get(&old_marker).await.unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "not planned");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop(tasks).await;
    let lowered = old.timeline.pending_mark().await.unwrap();
    assert!(lowered <= old_marker, "the mark was not lowered to the marker below it");

    // A restarted replica (right clock) finds it and fans it out.
    let c = serve(&context(store.clone()), config).await;
    let tasks = start(&c, true, true);
    let mut client = c.client();
    until_fanned_out(&mut client, &p.post_id, Duration::from_secs(20)).await;
    assert_eq!(c.timeline.stats().first_scan_from(), Some(lowered.as_slice()));
    assert_eq!(inboxes_with(&store, &graph, p.post_id.parse().unwrap()).await, 3);
    // And the mark goes back up once it is done.
    until_mark_above(&c, &old_marker).await;
    stop(tasks).await;
}
