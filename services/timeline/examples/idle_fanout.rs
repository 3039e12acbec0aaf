//! The idle cost of the fan-out workers on an embedded store that has fanned out many posts
//! (every done task leaves a pending-marker tombstone behind), for callgrind.
//!
//! ```text
//! # 1. Fill a data dir: POSTS posts of an author with 20 followers, all fanned out.
//! cargo run --release -p meshwork-timeline --example idle_fanout -- populate /tmp/tl 5000
//! # 2. Start the timeline alone on it (a restarted replica) and idle; under callgrind:
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/tl.cg \
//!     target/release/examples/idle_fanout idle /tmp/tl 600 &
//! # after "ready": callgrind_control -z; sleep 20; callgrind_control -d; kill %1
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshwork_proto::pb::timeline::v1 as pb;
use meshwork_storage::embedded::EmbeddedStore;
use meshwork_storage::{Direction, DynStore, KeyRange};
use meshwork_timeline::{Config, Graph, Timeline, keys, seed_graph};

async fn open(dir: &Path) -> (DynStore, Arc<Timeline>) {
    let store: DynStore = Arc::new(EmbeddedStore::open(dir).await.expect("open the embedded store"));
    let ctx = meshwork_test_support::context(store.clone());
    let timeline = Arc::new(Timeline::new(&ctx, Config::default()));
    let consumer = timeline.clone();
    tokio::spawn(async move {
        let _ = consumer.run_consumer().await;
    });
    tokio::spawn(timeline.clone().run_workers());
    (store, timeline)
}

async fn pending(store: &DynStore) -> usize {
    meshwork_storage::scan_all(store, KeyRange::prefix(keys::pending_prefix()), Direction::Forward)
        .await
        .expect("scan the pending markers")
        .len()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, dir, n) = match args.as_slice() {
        [mode, dir, n] => (mode.as_str(), Path::new(dir), n.parse::<u64>().expect("a number")),
        _ => panic!("usage: idle_fanout populate DIR POSTS | idle DIR SECONDS"),
    };
    match mode {
        "populate" => {
            let (store, timeline) = open(dir).await;
            let graph = Graph::star("idl", 20);
            seed_graph(&store, &meshwork_common::SystemClock, &graph).await.expect("seed");
            let started = Instant::now();
            for i in 0..n {
                let req = pb::CreatePostRequest {
                    request_id: format!("idle-{i}"),
                    author: graph.users[0].clone(),
                    text: format!("post {i}"),
                    reply_to: String::new(),
                };
                timeline.create_post(None, &req).await.expect("post");
            }
            while pending(&store).await > 0 || timeline.stats().tasks_done() < n {
                assert!(started.elapsed() < Duration::from_secs(600), "fan-out not done");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            store.flush().await.expect("flush");
            println!("populated: {n} posts fanned out in {:?}", started.elapsed());
        }
        "idle" => {
            let (_store, timeline) = open(dir).await;
            // Start-up (the first scans) is done well within this.
            tokio::time::sleep(Duration::from_secs(5)).await;
            println!("ready (tasks done {})", timeline.stats().tasks_done());
            tokio::time::sleep(Duration::from_secs(n)).await;
        }
        _ => panic!("unknown mode {mode}"),
    }
}
