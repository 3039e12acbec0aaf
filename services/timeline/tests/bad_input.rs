//! The bad-input catalogue of every Timeline RPC, through a real server on every backend:
//! empty, malformed and oversized fields, self-follows, forged and foreign page tokens,
//! unknown users and posts, reused request ids. Each answers its code (with the field named
//! for INVALID_ARGUMENT), and afterwards every key of the test's store is exactly as before.

mod support;

use meshwork_proto::pb::timeline::v1 as pb;
use meshwork_storage::{Direction, DynStore, Entry, KeyRange, scan_all};
use meshwork_test_support::backends::Backend;
use meshwork_test_support::{context, on_every_backend};
use meshwork_timeline::Config;
use support::*;
use tonic::Code;

on_every_backend!(every_rpc_rejects_bad_input_and_changes_nothing);

async fn snapshot(store: &DynStore) -> Vec<Entry> {
    scan_all(store, KeyRange::prefix(Vec::new()), Direction::Forward).await.expect("scan the store")
}

/// Checks one answer: `Err` with `code`, and for INVALID_ARGUMENT a message naming `field`.
fn check<T: std::fmt::Debug>(what: &str, answer: Result<T, tonic::Status>, code: Code, field: &str) {
    match answer {
        Ok(ok) => panic!("{what}: expected {code:?}, got {ok:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            if code == Code::InvalidArgument {
                assert!(
                    status.message().starts_with(&format!("{field}:")),
                    "{what}: {:?} does not name {field}",
                    status.message()
                );
            }
        }
    }
}

async fn every_rpc_rejects_bad_input_and_changes_nothing(backend: Backend) {
    let store = Namespaced::fresh(backend.store.clone());
    // No background work: the store changes only by the calls below.
    let running = serve(&context(store.clone()), Config { run_background: false, ..Config::default() }).await;
    let mut c = running.client();
    let t = tag();
    let (ann, bob, nobody) = (format!("{t}ann"), format!("{t}bob"), format!("{t}zz"));
    user(&mut c, &ann).await;
    user(&mut c, &bob).await;
    c.follow(pb::FollowRequest { user: bob.clone(), target: ann.clone() }).await.unwrap();
    let p = post(&mut c, &ann, "hello").await;
    c.create_post(pb::CreatePostRequest {
        request_id: "used-once".into(),
        author: ann.clone(),
        text: "first".into(),
        reply_to: String::new(),
    })
    .await
    .unwrap();
    let ann_timeline_token = c
        .get_user_timeline(pb::GetUserTimelineRequest { user: ann.clone(), page_size: 1, page_token: String::new() })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!ann_timeline_token.is_empty());
    let before = snapshot(&store).await;
    let inv = Code::InvalidArgument;
    let missing_post = "999999999".to_string();

    // CreateUser.
    let cu = |handle: &str, display_name: &str| pb::CreateUserRequest {
        handle: handle.into(),
        display_name: display_name.into(),
    };
    check("handle empty", c.create_user(cu("", "")).await, inv, "handle");
    check("handle short", c.create_user(cu("ab", "")).await, inv, "handle");
    check("handle long", c.create_user(cu(&"a".repeat(16), "")).await, inv, "handle");
    check("handle space", c.create_user(cu("a b c", "")).await, inv, "handle");
    check("handle slash", c.create_user(cu("ab/cd", "")).await, inv, "handle");
    check("display long", c.create_user(cu("okhandle", &"x".repeat(51))).await, inv, "display_name");
    check("display control", c.create_user(cu("okhandle", "a\u{1}")).await, inv, "display_name");
    check("handle taken", c.create_user(cu(&ann.to_uppercase(), "")).await, Code::AlreadyExists, "");

    // GetUser.
    check("get empty", c.get_user(pb::GetUserRequest { handle: String::new() }).await, inv, "handle");
    check("get unknown", c.get_user(pb::GetUserRequest { handle: nobody.clone() }).await, Code::NotFound, "");

    // Follow and Unfollow.
    let f = |user: &str, target: &str| pb::FollowRequest { user: user.into(), target: target.into() };
    check("follow user", c.follow(f("", &ann)).await, inv, "user");
    check("follow target", c.follow(f(&bob, "x")).await, inv, "target");
    check("follow self", c.follow(f(&ann, &ann.to_uppercase())).await, inv, "target");
    check("follow unknown", c.follow(f(&ann, &nobody)).await, Code::NotFound, "");
    check("follow as unknown", c.follow(f(&nobody, &ann)).await, Code::NotFound, "");
    let u = |user: &str, target: &str| pb::UnfollowRequest { user: user.into(), target: target.into() };
    check("unfollow user", c.unfollow(u("??", &ann)).await, inv, "user");
    check("unfollow self", c.unfollow(u(&bob, &bob)).await, inv, "target");
    check("unfollow unknown", c.unfollow(u(&bob, &nobody)).await, Code::NotFound, "");

    // ListFollowers and ListFollowing.
    let lf = |user: &str, page_size: i32, page_token: &str| pb::ListFollowersRequest {
        user: user.into(),
        page_size,
        page_token: page_token.into(),
    };
    check("followers user", c.list_followers(lf("", 0, "")).await, inv, "user");
    check("followers negative", c.list_followers(lf(&ann, -1, "")).await, inv, "page_size");
    check("followers big", c.list_followers(lf(&ann, 1001, "")).await, inv, "page_size");
    check("followers token", c.list_followers(lf(&ann, 1, "garbage")).await, inv, "page_token");
    check("followers unknown", c.list_followers(lf(&nobody, 1, "")).await, Code::NotFound, "");
    let lg = |user: &str, page_size: i32, page_token: &str| pb::ListFollowingRequest {
        user: user.into(),
        page_size,
        page_token: page_token.into(),
    };
    check("following user", c.list_following(lg("a-b", 0, "")).await, inv, "user");
    check("following big", c.list_following(lg(&bob, 5000, "")).await, inv, "page_size");
    check("following token of a timeline", c.list_following(lg(&ann, 1, &ann_timeline_token)).await, inv, "page_token");

    // CreatePost.
    let cp = |request_id: &str, author: &str, text: &str, reply_to: &str| pb::CreatePostRequest {
        request_id: request_id.into(),
        author: author.into(),
        text: text.into(),
        reply_to: reply_to.into(),
    };
    check("post request_id", c.create_post(cp("", &ann, "x", "")).await, inv, "request_id");
    check("post request_id chars", c.create_post(cp("a b", &ann, "x", "")).await, inv, "request_id");
    check("post author", c.create_post(cp("r1", "", "x", "")).await, inv, "author");
    check("post text empty", c.create_post(cp("r1", &ann, "", "")).await, inv, "text");
    check("post text blank", c.create_post(cp("r1", &ann, " \n ", "")).await, inv, "text");
    check("post text long", c.create_post(cp("r1", &ann, &"é".repeat(281), "")).await, inv, "text");
    check("post text control", c.create_post(cp("r1", &ann, "a\u{0}b", "")).await, inv, "text");
    check("post reply_to", c.create_post(cp("r1", &ann, "x", "abc")).await, inv, "reply_to");
    check("post reply_to unknown", c.create_post(cp("r1", &ann, "x", &missing_post)).await, Code::NotFound, "");
    check("post author unknown", c.create_post(cp("r1", &nobody, "x", "")).await, Code::NotFound, "");
    check("post request_id reused", c.create_post(cp("used-once", &ann, "other", "")).await, Code::AlreadyExists, "");

    // GetPost, DeletePost, GetFanoutStatus.
    for bad in ["", "abc", "0", "-4", "1.5"] {
        check("get post", c.get_post(pb::GetPostRequest { post_id: bad.into() }).await, inv, "post_id");
        check("delete post", c.delete_post(pb::DeletePostRequest { post_id: bad.into() }).await, inv, "post_id");
        check("status", c.get_fanout_status(pb::GetFanoutStatusRequest { post_id: bad.into() }).await, inv, "post_id");
    }
    check(
        "get post unknown",
        c.get_post(pb::GetPostRequest { post_id: missing_post.clone() }).await,
        Code::NotFound,
        "",
    );
    check(
        "delete unknown",
        c.delete_post(pb::DeletePostRequest { post_id: missing_post.clone() }).await,
        Code::NotFound,
        "",
    );
    check(
        "status unknown",
        c.get_fanout_status(pb::GetFanoutStatusRequest { post_id: missing_post.clone() }).await,
        Code::NotFound,
        "",
    );

    // Like, Unlike, Repost.
    let l = |post_id: &str, user: &str| pb::LikeRequest { post_id: post_id.into(), user: user.into() };
    check("like post", c.like(l("x", &bob)).await, inv, "post_id");
    check("like user", c.like(l(&p.post_id, "")).await, inv, "user");
    check("like unknown post", c.like(l(&missing_post, &bob)).await, Code::NotFound, "");
    check("like unknown user", c.like(l(&p.post_id, &nobody)).await, Code::NotFound, "");
    let ul = |post_id: &str, user: &str| pb::UnlikeRequest { post_id: post_id.into(), user: user.into() };
    check("unlike post", c.unlike(ul("", &bob)).await, inv, "post_id");
    check("unlike user", c.unlike(ul(&p.post_id, "x")).await, inv, "user");
    check("unlike unknown post", c.unlike(ul(&missing_post, &bob)).await, Code::NotFound, "");
    let r = |post_id: &str, user: &str| pb::RepostRequest { post_id: post_id.into(), user: user.into() };
    check("repost post", c.repost(r("0", &bob)).await, inv, "post_id");
    check("repost user", c.repost(r(&p.post_id, "no way")).await, inv, "user");
    check("repost unknown post", c.repost(r(&missing_post, &bob)).await, Code::NotFound, "");
    check("repost unknown user", c.repost(r(&p.post_id, &nobody)).await, Code::NotFound, "");

    // GetUserTimeline and GetHomeTimeline.
    let ut = |user: &str, page_size: i32, page_token: &str| pb::GetUserTimelineRequest {
        user: user.into(),
        page_size,
        page_token: page_token.into(),
    };
    check("user timeline user", c.get_user_timeline(ut("", 0, "")).await, inv, "user");
    check("user timeline size", c.get_user_timeline(ut(&ann, 201, "")).await, inv, "page_size");
    check("user timeline negative", c.get_user_timeline(ut(&ann, -5, "")).await, inv, "page_size");
    check("user timeline token", c.get_user_timeline(ut(&ann, 1, "Zm9v")).await, inv, "page_token");
    check(
        "user timeline foreign token",
        c.get_user_timeline(ut(&bob, 1, &ann_timeline_token)).await,
        inv,
        "page_token",
    );
    check("user timeline unknown", c.get_user_timeline(ut(&nobody, 1, "")).await, Code::NotFound, "");
    let ht = |user: &str, page_size: i32, page_token: &str| pb::GetHomeTimelineRequest {
        user: user.into(),
        page_size,
        page_token: page_token.into(),
    };
    check("home user", c.get_home_timeline(ht("a", 0, "")).await, inv, "user");
    check("home size", c.get_home_timeline(ht(&bob, 1000, "")).await, inv, "page_size");
    check(
        "home token of a user timeline",
        c.get_home_timeline(ht(&ann, 1, &ann_timeline_token)).await,
        inv,
        "page_token",
    );
    check("home unknown", c.get_home_timeline(ht(&nobody, 1, "")).await, Code::NotFound, "");

    // StreamHomeTimeline.
    let st = |user: &str| pb::StreamHomeTimelineRequest { user: user.into(), from_sequence: 0 };
    check("stream user", c.stream_home_timeline(st("")).await.map(|_| ()), inv, "user");
    check("stream unknown", c.stream_home_timeline(st(&nobody)).await.map(|_| ()), Code::NotFound, "");

    let after = snapshot(&store).await;
    assert_eq!(before.len(), after.len(), "a rejected call added or removed keys");
    assert!(before == after, "a rejected call changed the store");
}
