//! The timeline's behaviour through a real server on every backend: users and handles, the
//! follow graph with its backfill and clean-up, user timelines, replies, reposts, deletion
//! from every inbox, callers acting for themselves, and the home stream (pushed and celebrity
//! authors alike, resumable by sequence), the read caches across two replicas, and
//! concurrent posts written together.

mod support;

use std::time::Duration;

use futures::StreamExt;
use meshwork_common::clock::SystemClock;
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::timeline::v1 as pb;
use meshwork_storage::{Direction, KeyRange, scan_all};
use meshwork_test_support::backends::Backend;
use meshwork_test_support::{context, on_every_backend};
use meshwork_timeline::{Config, Graph, keys, seed_graph};
use support::*;
use tonic::Code;

on_every_backend!(
    celebrity_posts_and_follows_made_on_another_replica_reach_pages,
    users_follows_and_counts,
    follow_backfills_and_unfollow_cleans_the_inbox,
    user_timelines_replies_reposts_and_deletion,
    callers_act_for_themselves_unless_admin,
    the_home_stream_carries_pushed_and_celebrity_posts_and_resumes,
    pages_see_likes_and_deletes_made_on_another_replica,
    concurrent_posts_are_written_together_and_once_each,
    pages_past_the_inbox_pull_only_when_the_inbox_may_miss_posts,
);

async fn next(s: &mut tonic::Streaming<pb::HomeTimelineEvent>) -> pb::HomeTimelineEvent {
    tokio::time::timeout(Duration::from_secs(10), s.next()).await.expect("a stream event").unwrap().unwrap()
}

fn as_caller<T>(message: T, subject: &str, roles: &[&str]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::Jwt).encode();
    request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().unwrap());
    request
}

async fn users_follows_and_counts(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let running = serve(&context(store.clone()), Config::default()).await;
    let mut c = running.client();
    let t = tag();
    let (ann, bob, cid) = (format!("{t}_Ann"), format!("{t}_bob"), format!("{t}_cid"));
    for h in [&ann, &bob, &cid] {
        user(&mut c, h).await;
    }
    let dup = c.create_user(pb::CreateUserRequest { handle: ann.to_uppercase(), display_name: String::new() }).await;
    assert_eq!(dup.unwrap_err().code(), Code::AlreadyExists, "handles are case-insensitive");
    let got = c.get_user(pb::GetUserRequest { handle: ann.to_lowercase() }).await.unwrap().into_inner().user.unwrap();
    assert_eq!(got.handle, ann, "the handle keeps its letter case");

    let follow = |user: &str, target: &str| pb::FollowRequest { user: user.into(), target: target.into() };
    assert!(c.follow(follow(&bob, &ann)).await.unwrap().into_inner().changed);
    assert!(!c.follow(follow(&bob, &ann.to_uppercase())).await.unwrap().into_inner().changed, "idempotent");
    assert!(c.follow(follow(&cid, &ann)).await.unwrap().into_inner().changed);
    assert!(c.follow(follow(&ann, &bob)).await.unwrap().into_inner().changed);
    post(&mut c, &ann, "one").await;
    let ann_now = c.get_user(pb::GetUserRequest { handle: ann.clone() }).await.unwrap().into_inner().user.unwrap();
    assert_eq!((ann_now.follower_count, ann_now.following_count, ann_now.post_count), (2, 1, 1));

    let page = c
        .list_followers(pb::ListFollowersRequest { user: ann.clone(), page_size: 1, page_token: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.handles, vec![bob.to_lowercase()]);
    let rest = c
        .list_followers(pb::ListFollowersRequest { user: ann.clone(), page_size: 1, page_token: page.next_page_token })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.handles, vec![cid.to_lowercase()]);
    let following =
        c.list_following(pb::ListFollowingRequest { user: bob.clone(), ..Default::default() }).await.unwrap();
    assert_eq!(following.into_inner().handles, vec![ann.to_lowercase()]);

    let unfollow = pb::UnfollowRequest { user: bob.clone(), target: ann.clone() };
    assert!(c.unfollow(unfollow.clone()).await.unwrap().into_inner().changed);
    assert!(!c.unfollow(unfollow).await.unwrap().into_inner().changed, "idempotent");
    let ann_now = c.get_user(pb::GetUserRequest { handle: ann.clone() }).await.unwrap().into_inner().user.unwrap();
    assert_eq!(ann_now.follower_count, 1);
}

async fn follow_backfills_and_unfollow_cleans_the_inbox(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let running = serve(&context(store.clone()), Config::default()).await;
    let mut c = running.client();
    let t = tag();
    let (author, reader, other) = (format!("{t}a"), format!("{t}r"), format!("{t}o"));
    for h in [&author, &reader, &other] {
        user(&mut c, h).await;
    }
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(post(&mut c, &author, &format!("old {i}")).await.post_id);
    }
    c.follow(pb::FollowRequest { user: reader.clone(), target: other.clone() }).await.unwrap();
    let mine = post(&mut c, &other, "other").await;
    until_fanned_out(&mut c, &mine.post_id, Duration::from_secs(10)).await;
    // Following backfills the author's earlier posts at once.
    c.follow(pb::FollowRequest { user: reader.clone(), target: author.clone() }).await.unwrap();
    let inbox = scan_all(&store, KeyRange::prefix(keys::inbox_prefix(&reader)), Direction::Forward).await.unwrap();
    assert_eq!(inbox.len(), 6, "five backfilled and the other author's post");
    let home = whole_home(&mut c, &reader, 3).await;
    let mut want: Vec<String> = written.iter().rev().cloned().collect();
    want.insert(0, mine.post_id.clone());
    assert_eq!(home, want, "newest first across pages of 3");
    // Unfollowing removes them, and only them.
    c.unfollow(pb::UnfollowRequest { user: reader.clone(), target: author.clone() }).await.unwrap();
    let inbox = scan_all(&store, KeyRange::prefix(keys::inbox_prefix(&reader)), Direction::Forward).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(whole_home(&mut c, &reader, 50).await, vec![mine.post_id]);
}

async fn user_timelines_replies_reposts_and_deletion(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let graph = Graph::star(&tag(), 20);
    seed_graph(&store, &SystemClock, &graph).await.unwrap();
    let running = serve(&context(store.clone()), Config::default()).await;
    let mut c = running.client();
    let author = graph.users[0].clone();
    let fan = graph.users[1].clone();
    let first = post(&mut c, &author, "first").await;
    let reply = c
        .create_post(pb::CreatePostRequest {
            request_id: format!("reply-{}", tag()),
            author: author.clone(),
            text: "a reply".into(),
            reply_to: first.post_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .post
        .unwrap();
    assert_eq!(reply.reply_to, first.post_id);
    // The same request_id gives the first answer.
    let request = pb::CreatePostRequest {
        request_id: "same-id".into(),
        author: author.clone(),
        text: "once".into(),
        reply_to: String::new(),
    };
    let once = c.create_post(request.clone()).await.unwrap().into_inner().post.unwrap();
    assert_eq!(c.create_post(request.clone()).await.unwrap().into_inner().post.unwrap(), once);
    let reused = c.create_post(pb::CreatePostRequest { text: "different".into(), ..request }).await;
    assert_eq!(reused.unwrap_err().code(), Code::AlreadyExists);

    let timeline = c
        .get_user_timeline(pb::GetUserTimelineRequest { user: author.clone(), page_size: 2, page_token: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        timeline.posts.iter().map(|p| p.post_id.as_str()).collect::<Vec<_>>(),
        vec![once.post_id.as_str(), reply.post_id.as_str()]
    );
    let rest = c
        .get_user_timeline(pb::GetUserTimelineRequest {
            user: author.clone(),
            page_size: 2,
            page_token: timeline.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.posts.len(), 1);
    assert!(rest.next_page_token.is_empty());

    // A repost counts once per user and reaches the reposter's followers.
    let repost =
        c.repost(pb::RepostRequest { post_id: first.post_id.clone(), user: fan.clone() }).await.unwrap().into_inner();
    assert_eq!((repost.repost_count, repost.changed), (1, true));
    let again =
        c.repost(pb::RepostRequest { post_id: first.post_id.clone(), user: fan.clone() }).await.unwrap().into_inner();
    assert_eq!(
        (again.repost_count, again.changed, again.repost.as_ref().map(|p| &p.post_id)),
        (1, false, repost.repost.as_ref().map(|p| &p.post_id))
    );
    let of_repost = c.repost(pb::RepostRequest { post_id: repost.repost.unwrap().post_id, user: author.clone() }).await;
    assert_eq!(of_repost.unwrap_err().code(), Code::FailedPrecondition);

    // Deleting removes the post from every inbox it reached.
    until_fanned_out(&mut c, &first.post_id, Duration::from_secs(10)).await;
    let id: u64 = first.post_id.parse().unwrap();
    let holders = |store: meshwork_storage::DynStore| async move {
        let all = scan_all(&store, KeyRange::prefix(b"timeline/inbox/".to_vec()), Direction::Forward).await.unwrap();
        all.iter().filter(|e| keys::id_of_inverted_key(&e.key) == Some(id)).count()
    };
    assert_eq!(holders(store.clone()).await, 20);
    c.delete_post(pb::DeletePostRequest { post_id: first.post_id.clone() }).await.unwrap();
    assert_eq!(
        c.get_post(pb::GetPostRequest { post_id: first.post_id.clone() }).await.unwrap_err().code(),
        Code::NotFound
    );
    let started = std::time::Instant::now();
    while holders(store.clone()).await > 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "inbox entries of a deleted post remain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let home = whole_home(&mut c, &fan, 50).await;
    assert!(!home.contains(&first.post_id));
    let author_now =
        c.get_user(pb::GetUserRequest { handle: author.clone() }).await.unwrap().into_inner().user.unwrap();
    assert_eq!(author_now.post_count, 2);
}

async fn callers_act_for_themselves_unless_admin(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let running = serve(&context(store.clone()), Config::default()).await;
    let mut c = running.client();
    let t = tag();
    let (ann, bob) = (format!("{t}ann"), format!("{t}bob"));
    user(&mut c, &ann).await;
    user(&mut c, &bob).await;
    let follow = pb::FollowRequest { user: ann.clone(), target: bob.clone() };
    let denied = c.follow(as_caller(follow.clone(), &bob, &[])).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    c.follow(as_caller(follow.clone(), &ann, &[])).await.unwrap();
    let p = post(&mut c, &ann, "mine").await;
    let delete = pb::DeletePostRequest { post_id: p.post_id.clone() };
    assert_eq!(c.delete_post(as_caller(delete.clone(), &bob, &[])).await.unwrap_err().code(), Code::PermissionDenied);
    assert!(
        c.get_post(pb::GetPostRequest { post_id: p.post_id.clone() }).await.is_ok(),
        "a refused delete changes nothing"
    );
    c.delete_post(as_caller(delete.clone(), &ann.to_uppercase(), &[])).await.unwrap();
    let q = post(&mut c, &ann, "moderated").await;
    c.delete_post(as_caller(pb::DeletePostRequest { post_id: q.post_id }, "root", &["admin"])).await.unwrap();
    let like = pb::LikeRequest { post_id: p.post_id.clone(), user: ann.clone() };
    assert_eq!(c.like(as_caller(like, &bob, &[])).await.unwrap_err().code(), Code::PermissionDenied);
}

async fn the_home_stream_carries_pushed_and_celebrity_posts_and_resumes(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let t = tag();
    // A celebrity (3 followers, threshold 3), an ordinary author, the reader and a stranger.
    let users =
        vec![format!("{t}c"), format!("{t}o"), format!("{t}r"), format!("{t}x"), format!("{t}y"), format!("{t}s")];
    let graph = Graph { users, edges: vec![(2, 0), (3, 0), (4, 0), (2, 1)] };
    seed_graph(&store, &SystemClock, &graph).await.unwrap();
    let running = serve(&context(store.clone()), Config { celebrity_threshold: 3, ..Config::default() }).await;
    let mut c = running.client();
    let reader = graph.users[2].clone();
    let mut stream = c
        .stream_home_timeline(pb::StreamHomeTimelineRequest { user: reader.clone(), from_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let a = post(&mut c, &graph.users[0], "from the celebrity").await;
    post(&mut c, &graph.users[5], "from a stranger").await;
    let b = post(&mut c, &graph.users[1], "from the ordinary author").await;
    let e1 = next(&mut stream).await;
    let e2 = next(&mut stream).await;
    assert_eq!(e1.post.as_ref().unwrap().post_id, a.post_id);
    assert_eq!(e2.post.as_ref().unwrap().post_id, b.post_id);
    assert!(e2.sequence > e1.sequence);
    // A new follow shows up in the same stream.
    let s = graph.users[5].clone();
    c.follow(pb::FollowRequest { user: reader.clone(), target: s.clone() }).await.unwrap();
    let d = post(&mut c, &s, "followed now").await;
    let e3 = next(&mut stream).await;
    assert_eq!(e3.post.as_ref().unwrap().post_id, d.post_id);
    // Resuming after the first event gives the second and third again, nothing before.
    let mut resumed = c
        .stream_home_timeline(pb::StreamHomeTimelineRequest { user: reader.clone(), from_sequence: e1.sequence + 1 })
        .await
        .unwrap()
        .into_inner();
    let r2 = next(&mut resumed).await;
    let r3 = next(&mut resumed).await;
    assert_eq!((r2.sequence, r3.sequence), (e2.sequence, e3.sequence));
    assert!(tokio::time::timeout(Duration::from_millis(300), resumed.next()).await.is_err(), "nothing more");
}

/// Waits until `running`'s read caches follow the store's watch.
async fn caches_live(running: &Running) {
    let started = std::time::Instant::now();
    while !running.timeline.post_cache().is_live() {
        assert!(started.elapsed() < Duration::from_secs(10), "the post cache's watch never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `user`'s first home page from `c` until `done` holds for it, at most 3 s (well under
/// the cache's time-to-live: what changes it is the watch); returns how long that took.
async fn home_until(
    c: &mut pb::timeline_client::TimelineClient<tonic::transport::Channel>,
    user: &str,
    what: &str,
    done: impl Fn(&[pb::Post]) -> bool,
) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let page = home_page(c, user, 10, "").await;
        if done(&page.posts) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(3), "{what}: still {:?}", page.posts);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn pages_see_likes_and_deletes_made_on_another_replica(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let ctx = context(store.clone());
    let (a, b) = (serve(&ctx, Config::default()).await, serve(&ctx, Config::default()).await);
    caches_live(&a).await;
    caches_live(&b).await;
    let (mut ca, mut cb) = (a.client(), b.client());
    let t = tag();
    let (author, reader) = (format!("{t}a"), format!("{t}r"));
    user(&mut ca, &author).await;
    user(&mut ca, &reader).await;
    ca.follow(pb::FollowRequest { user: reader.clone(), target: author.clone() }).await.unwrap();
    let one = post(&mut ca, &author, "one").await;
    let two = post(&mut ca, &author, "two").await;
    until_fanned_out(&mut ca, &one.post_id, Duration::from_secs(10)).await;
    until_fanned_out(&mut ca, &two.post_id, Duration::from_secs(10)).await;
    let ids = |posts: &[pb::Post]| posts.iter().map(|p| p.post_id.clone()).collect::<Vec<_>>();
    let likes = |posts: &[pb::Post]| posts.iter().map(|p| p.like_count).collect::<Vec<_>>();
    let page = home_page(&mut ca, &reader, 10, "").await;
    assert_eq!(ids(&page.posts), vec![two.post_id.clone(), one.post_id.clone()]);
    assert_eq!(likes(&page.posts), vec![0, 0]);
    // Later reads are served from the cache (a fill skipped because a change of the post's
    // stripe of ids arrived while it read is retried by the next read).
    let mut served = false;
    for _ in 0..5 {
        let (hits, _) = a.timeline.post_cache().counts();
        home_page(&mut ca, &reader, 10, "").await;
        if a.timeline.post_cache().counts().0 == hits + 2 {
            served = true;
            break;
        }
    }
    assert!(served, "no page was served from the post cache");

    // This replica's own like shows on its very next page.
    ca.like(pb::LikeRequest { post_id: one.post_id.clone(), user: reader.clone() }).await.unwrap();
    assert_eq!(likes(&home_page(&mut ca, &reader, 10, "").await.posts), vec![0, 1]);
    // The other replica's like and delete show once the watch brings them.
    cb.like(pb::LikeRequest { post_id: two.post_id.clone(), user: reader.clone() }).await.unwrap();
    let liked = home_until(&mut ca, &reader, "a like on the other replica", |p| likes(p) == vec![1, 1]).await;
    cb.delete_post(pb::DeletePostRequest { post_id: two.post_id.clone() }).await.unwrap();
    let want = vec![one.post_id.clone()];
    let gone = home_until(&mut ca, &reader, "a delete on the other replica", |p| ids(p) == want).await;
    eprintln!("[{}] another replica's like seen after {liked:?}, its delete after {gone:?}", store.backend());
    // GetPost reads the store: exact at once on either replica.
    let got = cb.get_post(pb::GetPostRequest { post_id: one.post_id.clone() }).await.unwrap().into_inner();
    assert_eq!(got.post.unwrap().like_count, 1);
}

/// The pull caches (an author's newest ids, the celebrities a user follows) are dropped by the
/// replica that changes them at once, and by the others when their watch brings the change.
async fn celebrity_posts_and_follows_made_on_another_replica_reach_pages(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let ctx = context(store.clone());
    // One follower makes a celebrity: every post here is pulled at read time.
    let config = Config { celebrity_threshold: 1, ..Config::default() };
    let (a, b) = (serve(&ctx, config.clone()).await, serve(&ctx, config).await);
    caches_live(&a).await;
    caches_live(&b).await;
    let (mut ca, mut cb) = (a.client(), b.client());
    let t = tag();
    let (c1, c2, reader) = (format!("{t}c1"), format!("{t}c2"), format!("{t}r"));
    for u in [&c1, &c2, &reader] {
        user(&mut ca, u).await;
    }
    ca.follow(pb::FollowRequest { user: reader.clone(), target: c1.clone() }).await.unwrap();
    ca.follow(pb::FollowRequest { user: c1.clone(), target: c2.clone() }).await.unwrap();
    let ids = |posts: &[pb::Post]| posts.iter().map(|p| p.post_id.clone()).collect::<Vec<_>>();
    let first = post(&mut ca, &c1, "first").await;
    let elsewhere = post(&mut ca, &c2, "c2 news").await;
    assert_eq!(status(&mut ca, &first.post_id).await.mode, pb::FanoutMode::Pull as i32);
    // At once on the replica that wrote it; the reader does not follow c2.
    assert_eq!(ids(&home_page(&mut ca, &reader, 10, "").await.posts), vec![first.post_id.clone()]);
    // A post through the other replica, the pull of c1 cached here.
    let second = post(&mut cb, &c1, "second").await;
    let want = vec![second.post_id.clone(), first.post_id.clone()];
    let posted = home_until(&mut ca, &reader, "a celebrity post on the other replica", |p| ids(p) == want).await;
    // A follow and an unfollow through the other replica, the reader's celebrities cached here.
    cb.follow(pb::FollowRequest { user: reader.clone(), target: c2.clone() }).await.unwrap();
    let want = vec![elsewhere.post_id.clone(), second.post_id.clone(), first.post_id.clone()];
    let want_sorted = {
        let mut w = want.clone();
        w.sort_by_key(|id| std::cmp::Reverse(id.parse::<u64>().unwrap()));
        w
    };
    let followed = home_until(&mut ca, &reader, "a follow on the other replica", |p| ids(p) == want_sorted).await;
    cb.unfollow(pb::UnfollowRequest { user: reader.clone(), target: c2.clone() }).await.unwrap();
    let unfollowed = home_until(&mut ca, &reader, "an unfollow on the other replica", |p| {
        !ids(p).contains(&elsewhere.post_id) && ids(p).len() == 2
    })
    .await;
    eprintln!(
        "[{}] another replica's celebrity post seen after {posted:?}, follow after {followed:?}, unfollow after {unfollowed:?}",
        store.backend()
    );
    // And this replica's own follow shows on its very next page.
    ca.follow(pb::FollowRequest { user: reader.clone(), target: c2.clone() }).await.unwrap();
    assert_eq!(ids(&home_page(&mut ca, &reader, 10, "").await.posts), want_sorted);
}

async fn concurrent_posts_are_written_together_and_once_each(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let running = serve(&context(store.clone()), Config::default()).await;
    let mut c = running.client();
    let t = tag();
    let author = format!("{t}a");
    user(&mut c, &author).await;
    let requests: Vec<pb::CreatePostRequest> = (0..60)
        .map(|i| pb::CreatePostRequest {
            request_id: format!("burst-{t}-{i}"),
            author: author.clone(),
            text: format!("post {i}"),
            reply_to: String::new(),
        })
        .collect();
    // Every request twice at once, and a post by nobody in the same burst.
    let mut calls: Vec<pb::CreatePostRequest> = requests.iter().flat_map(|r| [r.clone(), r.clone()]).collect();
    calls.push(pb::CreatePostRequest {
        request_id: format!("burst-{t}-nobody"),
        author: format!("{t}nobody"),
        text: "lost".into(),
        reply_to: String::new(),
    });
    let answers = futures::future::join_all(calls.into_iter().map(|r| {
        let mut c = running.client();
        async move { c.create_post(r).await.map(|a| a.into_inner().post.unwrap()) }
    }))
    .await;
    assert_eq!(answers.last().unwrap().as_ref().unwrap_err().code(), Code::NotFound);
    let posts: Vec<pb::Post> = answers[..120].iter().map(|a| a.clone().expect("create post")).collect();
    for (i, pair) in posts.chunks(2).enumerate() {
        assert_eq!(pair[0], pair[1], "a repeated request_id gives the first answer");
        assert_eq!(pair[0].text, format!("post {i}"));
    }
    let distinct: std::collections::HashSet<&str> = posts.iter().map(|p| p.post_id.as_str()).collect();
    assert_eq!(distinct.len(), 60);
    let timeline = c
        .get_user_timeline(pb::GetUserTimelineRequest {
            user: author.clone(),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.posts.len(), 60, "each post written once");
    let me = c.get_user(pb::GetUserRequest { handle: author.clone() }).await.unwrap().into_inner().user.unwrap();
    assert_eq!(me.post_count, 60);
    // A request_id reused with another text is refused, and changes nothing.
    let reused = c.create_post(pb::CreatePostRequest { text: "other".into(), ..requests[0].clone() }).await;
    assert_eq!(reused.unwrap_err().code(), Code::AlreadyExists);
    let me = c.get_user(pb::GetUserRequest { handle: author }).await.unwrap().into_inner().user.unwrap();
    assert_eq!(me.post_count, 60);
}

async fn pages_past_the_inbox_pull_only_when_the_inbox_may_miss_posts(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    let running = serve(&context(store.clone()), Config::default()).await;
    let mut c = running.client();
    let t = tag();
    let (author, reader) = (format!("{t}a"), format!("{t}r"));
    user(&mut c, &author).await;
    user(&mut c, &reader).await;
    c.follow(pb::FollowRequest { user: reader.clone(), target: author.clone() }).await.unwrap();
    let p = post(&mut c, &author, "hello").await;
    until_fanned_out(&mut c, &p.post_id, Duration::from_secs(10)).await;
    let floor = store.get(&keys::inbox_floor(&reader)).await.unwrap().expect("CreateUser writes the floor");
    assert_eq!(floor.value, 0u64.to_be_bytes().to_vec());
    assert_eq!(whole_home(&mut c, &reader, 10).await, vec![p.post_id.clone()]);
    // An entry gone from an inbox whose floor is 0 stays gone: such an inbox is trusted.
    let id: u64 = p.post_id.parse().unwrap();
    store.write(vec![], vec![meshwork_storage::Mutation::delete(keys::inbox(&reader, id))]).await.unwrap();
    assert!(whole_home(&mut c, &reader, 10).await.is_empty());
    // A floor at or above the post (a trim went that far) makes pages past the inbox pull.
    running.timeline.raise_inbox_floor(&reader, id).await.unwrap();
    assert_eq!(whole_home(&mut c, &reader, 10).await, vec![p.post_id.clone()]);
    // So does no floor at all (a user from before floors), which a trim leaves unknown.
    store.write(vec![], vec![meshwork_storage::Mutation::delete(keys::inbox_floor(&reader))]).await.unwrap();
    running.timeline.raise_inbox_floor(&reader, 7).await.unwrap();
    assert!(store.get(&keys::inbox_floor(&reader)).await.unwrap().is_none());
    assert_eq!(whole_home(&mut c, &reader, 10).await, vec![p.post_id]);
}
