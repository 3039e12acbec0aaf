//! End to end: the timeline's durable fan-out survives `kill -9`. The real `meshwork up` on
//! the embedded store: an author with 20,000 followers posts, and while the fan-out workers
//! are writing inboxes the process is SIGKILLed; a new `meshwork up` on the same data dir
//! takes the fan-out up from its checkpoints (after the dead workers' leases run out), and in
//! the end every follower has the post in its inbox exactly once.

mod support;

use std::time::{Duration, Instant};

use meshwork_proto::pb::timeline::v1 as pb;
use pb::timeline_client::TimelineClient;
use support::{Mesh, signal};
use tonic::transport::Channel;

const FOLLOWERS: usize = 20_000;

async fn client(addr: std::net::SocketAddr) -> TimelineClient<Channel> {
    TimelineClient::connect(format!("http://{addr}")).await.unwrap()
}

async fn status(client: &mut TimelineClient<Channel>, post_id: &str) -> pb::GetFanoutStatusResponse {
    client.get_fanout_status(pb::GetFanoutStatusRequest { post_id: post_id.into() }).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_killed_midway_finishes_exactly_once_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    // The follow graph goes straight into the store `meshwork up` is about to open (40,000
    // calls through a debug gateway would take minutes and prove nothing here).
    {
        let store: meshwork_storage::DynStore = std::sync::Arc::new(
            meshwork_storage::embedded::EmbeddedStore::open(&data.path().join("store")).await.unwrap(),
        );
        let graph = meshwork_timeline::Graph::star("kill", FOLLOWERS);
        meshwork_timeline::seed_graph(&store, &meshwork_common::SystemClock, &graph).await.expect("the follow graph");
        store.flush().await.unwrap();
    }
    // Above 20,000 so that the author is fanned out, not pulled.
    let args = ["--no-traces", "--celebrity-threshold", "50000"];
    let (mut mesh, _) = Mesh::up_with_args(data.path(), &args);
    let addr = mesh.addr;

    let mut c = client(addr).await;
    let post = c
        .create_post(pb::CreatePostRequest {
            request_id: "kill-post-1".into(),
            author: "killa".into(),
            text: "to twenty thousand inboxes".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .post
        .unwrap();
    // Kill it while the workers are writing inboxes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let s = status(&mut c, &post.post_id).await;
        if s.planned && s.inboxes_written > 0 && !s.complete {
            break s;
        }
        assert!(!s.complete, "the fan-out finished before it could be killed: {s:?}");
        assert!(Instant::now() < deadline, "the fan-out never started: {s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    signal(&mesh.child, "KILL");
    let _ = mesh.child.wait();
    drop(mesh);
    assert!(before.inboxes_written < FOLLOWERS as i64, "{before:?}");

    // The same data dir: the fan-out resumes and completes.
    let (mesh, _) = Mesh::up_with_args(data.path(), &args);
    let mut c = client(mesh.addr).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let after = loop {
        let s = status(&mut c, &post.post_id).await;
        if s.complete {
            break s;
        }
        assert!(Instant::now() < deadline, "the fan-out did not finish after the restart: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(after.followers_total, FOLLOWERS as i64, "{after:?}");
    assert_eq!(after.inboxes_written, FOLLOWERS as i64, "every inbox once: {after:?}");
    assert_eq!(after.inboxes_pending, 0, "{after:?}");
    // Followers' home timelines show the post once, on top.
    for f in [0, 1, 7_777, FOLLOWERS - 1] {
        let page = c
            .get_home_timeline(pb::GetHomeTimelineRequest {
                user: format!("killf{f}"),
                page_size: 5,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<&str> = page.posts.iter().map(|p| p.post_id.as_str()).collect();
        assert_eq!(ids, vec![post.post_id.as_str()], "follower {f}");
    }
    assert!(mesh.terminate(Duration::from_secs(30)).success());
}
