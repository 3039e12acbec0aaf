//! The URL shortener over real gRPC (tonic client -> the common server builder -> service ->
//! store), in-process: concurrency of code allocation and aliases, the bad-input catalogue,
//! expiry, deletion, cross-replica cache coherence and click counts surviving a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use meshwork_common::server::{ServiceContext, serve};
use meshwork_common::{Clock, ManualClock, SystemClock};
use meshwork_proto::pb::urlshortener::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange};
use pb::url_shortener_client::UrlShortenerClient;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

struct Replica {
    client: UrlShortenerClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    async fn start(store: DynStore, clock: Arc<dyn Clock>) -> Replica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ctx = ServiceContext { store, clock, public_url: "http://sho.rt".into() };
        let hosted = meshwork_urlshortener::hosted(&ctx);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(listener, vec![hosted], async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        Replica { client: UrlShortenerClient::new(channel), stop: Some(stop), task }
    }

    /// Stops the server and waits for its shutdown hooks (click flush).
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

fn shorten(url: &str, alias: &str, ttl: i64) -> pb::ShortenRequest {
    pb::ShortenRequest { long_url: url.into(), custom_alias: alias.into(), ttl_seconds: ttl }
}

fn resolve(code: &str) -> pb::ResolveRequest {
    pb::ResolveRequest { code: code.into(), referrer: String::new(), skip_click: false }
}

async fn link_count(store: &DynStore) -> usize {
    store.scan(KeyRange::prefix("urlshortener/link/"), 0, Direction::Forward).await.unwrap().entries.len()
}

fn memory() -> DynStore {
    Arc::new(meshwork_storage::memory::MemoryStore::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_shortens_give_thousand_distinct_codes_across_two_replicas() {
    let store = memory();
    let a = Replica::start(store.clone(), Arc::new(SystemClock)).await;
    let b = Replica::start(store.clone(), Arc::new(SystemClock)).await;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let mut client = if i % 2 == 0 { a.client.clone() } else { b.client.clone() };
        tasks.push(tokio::spawn(async move {
            client.shorten(shorten(&format!("https://example.com/{i}"), "", 0)).await.unwrap().into_inner().code
        }));
    }
    let mut codes = HashSet::new();
    for t in tasks {
        let code = t.await.unwrap();
        assert_eq!(code.len(), 7);
        assert!(codes.insert(code), "duplicate code");
    }
    assert_eq!(codes.len(), 1000);
    assert_eq!(link_count(&store).await, 1000);
    // Every code resolves through the other replica too.
    let mut b_client = b.client.clone();
    for code in codes.iter().take(50) {
        assert!(b_client.resolve(resolve(code)).await.is_ok());
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alias_has_exactly_one_winner() {
    let store = memory();
    let a = Replica::start(store.clone(), Arc::new(SystemClock)).await;
    let b = Replica::start(store.clone(), Arc::new(SystemClock)).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut client = if i % 2 == 0 { a.client.clone() } else { b.client.clone() };
        tasks.push(tokio::spawn(async move {
            client.shorten(shorten(&format!("https://example.com/{i}"), "launch", 0)).await.map(|r| r.into_inner())
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.code, "launch");
                winners += 1;
            }
            Err(s) => assert_eq!(s.code(), Code::AlreadyExists, "{s:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(link_count(&store).await, 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_changes_nothing() {
    let store = memory();
    let clock = ManualClock::new(1_800_000_000_000);
    let r = Replica::start(store.clone(), Arc::new(clock.clone())).await;
    let mut c = r.client.clone();
    c.shorten(shorten("https://example.com/taken", "taken", 0)).await.unwrap();
    let expiring = c.shorten(shorten("https://example.com/soon", "", 60)).await.unwrap().into_inner().code;
    let deleted = c.shorten(shorten("https://example.com/gone", "", 0)).await.unwrap().into_inner().code;
    c.delete(pb::DeleteRequest { code: deleted.clone() }).await.unwrap();
    clock.advance(61_000);
    let before = link_count(&store).await;

    let long = format!("https://example.com/{}", "a".repeat(2100));
    let cases: Vec<(pb::ShortenRequest, Code, &str)> = vec![
        (shorten("", "", 0), Code::InvalidArgument, "long_url: must not be empty"),
        (shorten(&long, "", 0), Code::InvalidArgument, "long_url: is 2120 bytes, longer than 2048"),
        (shorten("ftp://example.com/x", "", 0), Code::InvalidArgument, "long_url: scheme \"ftp\""),
        (shorten("javascript:alert(1)", "", 0), Code::InvalidArgument, "long_url: scheme \"javascript\""),
        (shorten("https://bob:secret@example.com/", "", 0), Code::InvalidArgument, "long_url: must not contain a user"),
        (shorten("https://exa$mple..com/", "", 0), Code::InvalidArgument, "long_url:"),
        (shorten("https://example.com/", "taken", 0), Code::AlreadyExists, "custom_alias \"taken\" already exists"),
        (shorten("https://example.com/", "admin", 0), Code::InvalidArgument, "custom_alias: \"admin\" is reserved"),
        (shorten("https://example.com/", "a b!", 0), Code::InvalidArgument, "custom_alias: character ' '"),
        (shorten("https://example.com/", "", -5), Code::InvalidArgument, "ttl_seconds: must not be negative"),
    ];
    for (req, code, message) in cases {
        let status = c.shorten(req.clone()).await.expect_err(&format!("{req:?} must fail"));
        assert_eq!(status.code(), code, "{req:?}: {status:?}");
        assert!(status.message().starts_with(message), "{req:?}: got {:?}, want {message:?}", status.message());
    }
    for (code, state) in [("nosuch1", "unknown"), (deleted.as_str(), "deleted"), (expiring.as_str(), "expired")] {
        let status = c.resolve(resolve(code)).await.expect_err(code);
        assert_eq!(status.code(), Code::NotFound, "{code}");
        let trailer = status.metadata().get("meshwork-link-state").and_then(|v| v.to_str().ok());
        assert_eq!(trailer, Some(state), "{code}");
    }
    let status = c.resolve(resolve("bad code")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("code:"));
    let status = c.delete(pb::DeleteRequest { code: deleted.clone() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = c.get_stats(pb::GetStatsRequest { code: "nosuch1".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = c.get_stats(pb::GetStatsRequest { code: expiring.clone(), days: 400, top_referrers: 0 }).await;
    assert_eq!(status.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(link_count(&store).await, before, "a rejected call changed state");
    // The deleted code is a tombstone: its alias-space stays taken.
    let status = c.shorten(shorten("https://example.com/", &deleted, 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_replica_sees_creates_and_deletes() {
    let store = memory();
    let a = Replica::start(store.clone(), Arc::new(SystemClock)).await;
    let b = Replica::start(store.clone(), Arc::new(SystemClock)).await;
    let (mut ca, mut cb) = (a.client.clone(), b.client.clone());
    // B caches "unknown" first; the create on A must still become visible on B.
    assert_eq!(cb.resolve(resolve("fresh-1")).await.unwrap_err().code(), Code::NotFound);
    ca.shorten(shorten("https://example.com/fresh", "fresh-1", 0)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while cb.resolve(resolve("fresh-1")).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "create on A never seen by B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ca.delete(pb::DeleteRequest { code: "fresh-1".into() }).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while cb.resolve(resolve("fresh-1")).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "delete on A never seen by B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_are_counted_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let code;
    {
        let store: DynStore = Arc::new(meshwork_storage::embedded::EmbeddedStore::open(dir.path()).await.unwrap());
        let r = Replica::start(store.clone(), Arc::new(SystemClock)).await;
        let mut c = r.client.clone();
        code = c.shorten(shorten("https://example.com/clicky", "", 0)).await.unwrap().into_inner().code;
        for i in 0..30 {
            let referrer = if i % 3 == 0 { "https://news.example.org/item" } else { "" };
            let req = pb::ResolveRequest { code: code.clone(), referrer: referrer.into(), skip_click: false };
            assert_eq!(c.resolve(req).await.unwrap().into_inner().long_url, "https://example.com/clicky");
        }
        // A preview does not count.
        c.resolve(pb::ResolveRequest { code: code.clone(), referrer: String::new(), skip_click: true }).await.unwrap();
        // Stopping flushes the buffered clicks.
        r.stop().await;
        store.flush().await.unwrap();
    }
    let store: DynStore = Arc::new(meshwork_storage::embedded::EmbeddedStore::open(dir.path()).await.unwrap());
    let r = Replica::start(store, Arc::new(SystemClock)).await;
    let mut c = r.client.clone();
    let stats = c.get_stats(pb::GetStatsRequest { code: code.clone(), days: 0, top_referrers: 0 }).await.unwrap();
    let stats = stats.into_inner();
    assert_eq!(stats.total_clicks, 30);
    assert_eq!(stats.daily.iter().map(|d| d.clicks).sum::<i64>(), 30);
    assert_eq!(stats.top_referrers[0].referrer, "(direct)");
    assert_eq!(stats.top_referrers[0].clicks, 20);
    assert_eq!(stats.top_referrers[1].referrer, "news.example.org");
    assert_eq!(stats.top_referrers[1].clicks, 10);
    // And the code still resolves after the restart; new clicks are visible to stats at once.
    c.resolve(resolve(&code)).await.unwrap();
    let stats = c.get_stats(pb::GetStatsRequest { code, days: 1, top_referrers: 1 }).await.unwrap().into_inner();
    assert_eq!(stats.total_clicks, 31);
    assert_eq!(stats.top_referrers.len(), 1);
    r.stop().await;
}
