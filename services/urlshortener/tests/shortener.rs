//! The URL shortener over real gRPC (tonic client -> the common server builder -> service ->
//! store), in-process: concurrency of code allocation and aliases, the bad-input catalogue,
//! expiry, deletion, cross-replica cache coherence and click counts surviving a restart,
//! owners and who may delete or read stats (identities as the gateway sends them, in the
//! `meshwork-identity` metadata), and codes keyed by each deployment's own secret.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use meshwork_common::{Clock, ManualClock, SystemClock};
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::urlshortener::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange};
use meshwork_test_support::{TestServer, context_with_clock};
use meshwork_urlshortener::codes::CodePermutation;
use pb::url_shortener_client::UrlShortenerClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Response};

/// One replica of the service on its own loopback port (the shared test harness), with a client.
struct Replica {
    client: UrlShortenerClient<Channel>,
    server: TestServer,
}

impl Replica {
    async fn start(store: DynStore, clock: Arc<dyn Clock>) -> Replica {
        let server = TestServer::hosting(meshwork_urlshortener::hosted, &context_with_clock(store, clock)).await;
        Replica { client: UrlShortenerClient::new(server.channel.clone()), server }
    }

    /// Stops the server and waits for its shutdown hooks (click flush).
    async fn stop(self) {
        self.server.stop().await;
    }
}

fn shorten(url: &str, alias: &str, ttl: i64) -> pb::ShortenRequest {
    pb::ShortenRequest { long_url: url.into(), custom_alias: alias.into(), ttl_seconds: ttl, ..Default::default() }
}

fn resolve(code: &str) -> pb::ResolveRequest {
    pb::ResolveRequest { code: code.into(), referrer: String::new(), skip_click: false }
}

/// Returns `message` sent as `subject` with `roles`, as the gateway forwards a verified caller.
fn by<T>(subject: &str, roles: &[&str], message: T) -> Request<T> {
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::Jwt);
    let mut request = Request::new(message);
    request.metadata_mut().insert(IDENTITY_HEADER, identity.encode().parse().unwrap());
    request
}

fn delete(code: &str) -> pb::DeleteRequest {
    pb::DeleteRequest { code: code.into() }
}

fn stats(code: &str) -> pb::GetStatsRequest {
    pb::GetStatsRequest { code: code.into(), days: 0, top_referrers: 0 }
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
    let deleted =
        c.shorten(by("alice", &[], shorten("https://example.com/gone", "", 0))).await.unwrap().into_inner().code;
    c.delete(by("alice", &[], delete(&deleted))).await.unwrap();
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
    let status = c.delete(by("alice", &[], delete(&deleted))).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = c.get_stats(by("alice", &[], stats("nosuch1"))).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = c.get_stats(by("root", &["admin"], stats(&deleted))).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    for (req, field) in [
        (pb::GetStatsRequest { code: expiring.clone(), days: 400, top_referrers: 0 }, "days:"),
        (pb::GetStatsRequest { code: expiring.clone(), days: -1, top_referrers: 0 }, "days:"),
        (pb::GetStatsRequest { code: expiring.clone(), days: 0, top_referrers: 101 }, "top_referrers:"),
        (stats("bad code"), "code:"),
        (stats(""), "code:"),
    ] {
        let status = c.get_stats(by("root", &["admin"], req.clone())).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{req:?}");
        assert!(status.message().starts_with(field), "{req:?}: {status:?}");
    }
    for code in ["bad code", "", &"a".repeat(65)] {
        let status = c.delete(by("root", &["admin"], delete(code))).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{code:?}");
        assert!(status.message().starts_with("code:"), "{status:?}");
    }
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
    ca.shorten(by("alice", &[], shorten("https://example.com/fresh", "fresh-1", 0))).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while cb.resolve(resolve("fresh-1")).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "create on A never seen by B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ca.delete(by("alice", &[], delete("fresh-1"))).await.unwrap();
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
        code =
            c.shorten(by("alice", &[], shorten("https://example.com/clicky", "", 0))).await.unwrap().into_inner().code;
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
    // The owner reads the stats.
    let stats = c.get_stats(by("alice", &[], stats(&code))).await.unwrap().into_inner();
    assert_eq!(stats.total_clicks, 30);
    assert_eq!(stats.daily.iter().map(|d| d.clicks).sum::<i64>(), 30);
    assert_eq!(stats.top_referrers[0].referrer, "(direct)");
    assert_eq!(stats.top_referrers[0].clicks, 20);
    assert_eq!(stats.top_referrers[1].referrer, "news.example.org");
    assert_eq!(stats.top_referrers[1].clicks, 10);
    // And the code still resolves after the restart; new clicks are visible to stats at once.
    c.resolve(resolve(&code)).await.unwrap();
    let req = pb::GetStatsRequest { code, days: 1, top_referrers: 1 };
    let stats = c.get_stats(by("alice", &[], req)).await.unwrap().into_inner();
    assert_eq!(stats.total_clicks, 31);
    assert_eq!(stats.top_referrers.len(), 1);
    r.stop().await;
}

#[tokio::test]
async fn only_the_owner_or_an_admin_deletes_or_reads_stats() {
    let store = memory();
    let r = Replica::start(store.clone(), Arc::new(SystemClock)).await;
    let mut c = r.client.clone();
    let made = c.shorten(by("alice", &[], shorten("https://example.com/a", "", 0))).await.unwrap().into_inner();
    let alices = made.code;
    assert_eq!(made.link.unwrap().owner, "alice");
    let second = c.shorten(by("alice", &[], shorten("https://example.com/a2", "alices-2", 0))).await.unwrap();
    assert_eq!(second.into_inner().link.unwrap().owner, "alice");
    let anonymous = c.shorten(shorten("https://example.com/anon", "", 0)).await.unwrap().into_inner();
    assert_eq!(anonymous.link.as_ref().unwrap().owner, "");
    let anonymous = anonymous.code;
    // GetLink is public; the owner shows only to the owner and to admins.
    let link = c.get_link(pb::GetLinkRequest { code: alices.clone() }).await.unwrap().into_inner().link.unwrap();
    assert_eq!(link.owner, "", "an anonymous viewer sees no owner");
    let get = |who: &str, roles: &[&str]| by(who, roles, pb::GetLinkRequest { code: alices.clone() });
    let seen = |r: Response<pb::GetLinkResponse>| r.into_inner().link.unwrap().owner;
    assert_eq!(seen(c.get_link(get("alice", &[])).await.unwrap()), "alice");
    assert_eq!(seen(c.get_link(get("bob", &[])).await.unwrap()), "");
    assert_eq!(seen(c.get_link(get("root", &["admin"])).await.unwrap()), "alice");
    let before = link_count(&store).await;

    // No identity, or a malformed one: UNAUTHENTICATED, whatever the link.
    for code in [&alices, &anonymous, &"nosuch1".to_string()] {
        assert_eq!(c.delete(delete(code)).await.unwrap_err().code(), Code::Unauthenticated, "{code}");
        assert_eq!(c.get_stats(stats(code)).await.unwrap_err().code(), Code::Unauthenticated, "{code}");
    }
    let mut forged = Request::new(delete(&alices));
    forged.metadata_mut().insert(IDENTITY_HEADER, "not-an-identity!".parse().unwrap());
    assert_eq!(c.delete(forged).await.unwrap_err().code(), Code::Unauthenticated);
    let mut forged = Request::new(shorten("https://example.com/x", "", 0));
    forged.metadata_mut().insert(IDENTITY_HEADER, "not-an-identity!".parse().unwrap());
    assert_eq!(c.shorten(forged).await.unwrap_err().code(), Code::Unauthenticated);

    // Someone else: PERMISSION_DENIED, also with other roles; an ownerless link is admin-only.
    for (who, roles) in [("bob", &[][..]), ("bob", &["editor"][..]), ("Alice", &[][..])] {
        let status = c.delete(by(who, roles, delete(&alices))).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{who}: {status:?}");
        let status = c.get_stats(by(who, roles, stats(&alices))).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{who}: {status:?}");
    }
    let status = c.delete(by("alice", &[], delete(&anonymous))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("no owner"), "{status:?}");
    assert_eq!(c.get_stats(by("alice", &[], stats(&anonymous))).await.unwrap_err().code(), Code::PermissionDenied);
    // Nothing changed: every link still resolves.
    assert_eq!(link_count(&store).await, before);
    for code in [&alices, &anonymous] {
        c.resolve(resolve(code)).await.unwrap();
    }

    // The owner reads stats and deletes; an admin does both on any link, ownerless ones too.
    let own = c.get_stats(by("alice", &[], stats(&alices))).await.unwrap().into_inner();
    assert_eq!(own.total_clicks, 1);
    c.get_stats(by("root", &["admin"], stats(&anonymous))).await.unwrap();
    c.get_stats(by("root", &["admin"], stats(&alices))).await.unwrap();
    c.delete(by("alice", &[], delete(&alices))).await.unwrap();
    c.delete(by("root", &["admin"], delete("alices-2"))).await.unwrap();
    c.delete(by("root", &["admin"], delete(&anonymous))).await.unwrap();
    for code in [alices.as_str(), "alices-2", anonymous.as_str()] {
        let status = c.resolve(resolve(code)).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{code}");
    }
    r.stop().await;
}

async fn stored_secret(store: &DynStore) -> [u8; 32] {
    let value = store.get(b"urlshortener/secret/codes").await.unwrap().expect("secret stored").value;
    value.try_into().unwrap()
}

#[tokio::test]
async fn two_deployments_give_different_codes_for_the_same_id() {
    let (one, two) = (memory(), memory());
    let a = Replica::start(one.clone(), Arc::new(SystemClock)).await;
    let b = Replica::start(two.clone(), Arc::new(SystemClock)).await;
    let code_a = a.client.clone().shorten(shorten("https://example.com/x", "", 0)).await.unwrap().into_inner().code;
    let code_b = b.client.clone().shorten(shorten("https://example.com/x", "", 0)).await.unwrap().into_inner().code;
    // Both are the first id (1) of their deployment, mapped by that deployment's own secret.
    let (secret_a, secret_b) = (stored_secret(&one).await, stored_secret(&two).await);
    assert_ne!(secret_a, secret_b);
    assert_eq!(CodePermutation::new(&secret_a).code_for_id(1).as_deref(), Some(code_a.as_str()));
    assert_eq!(CodePermutation::new(&secret_b).code_for_id(1).as_deref(), Some(code_b.as_str()));
    assert_ne!(code_a, code_b);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_secret_survives_a_restart_and_replicas_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let secret;
    {
        let store: DynStore = Arc::new(meshwork_storage::embedded::EmbeddedStore::open(dir.path()).await.unwrap());
        let a = Replica::start(store.clone(), Arc::new(SystemClock)).await;
        let b = Replica::start(store.clone(), Arc::new(SystemClock)).await;
        // Both replicas make their first code at once: one secret wins and both use it.
        let (mut ca, mut cb) = (a.client.clone(), b.client.clone());
        let (ra, rb) = tokio::join!(
            ca.shorten(shorten("https://example.com/a", "", 0)),
            cb.shorten(shorten("https://example.com/b", "", 0))
        );
        secret = stored_secret(&store).await;
        let permutation = CodePermutation::new(&secret);
        // Each replica leased its own block of 1000 ids, so the two codes are ids 1 and 1001.
        let mut ids: Vec<u64> = [ra.unwrap().into_inner().code, rb.unwrap().into_inner().code]
            .iter()
            .map(|code| permutation.id_for_code(code).unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, [1, 1001]);
        a.stop().await;
        b.stop().await;
        store.flush().await.unwrap();
    }
    let store: DynStore = Arc::new(meshwork_storage::embedded::EmbeddedStore::open(dir.path()).await.unwrap());
    let r = Replica::start(store.clone(), Arc::new(SystemClock)).await;
    let code = r.client.clone().shorten(shorten("https://example.com/c", "", 0)).await.unwrap().into_inner().code;
    assert_eq!(stored_secret(&store).await, secret);
    // The next block's first id, under the secret made before the restart.
    assert_eq!(CodePermutation::new(&secret).id_for_code(&code), Some(2001));
    r.stop().await;
}

/// A Shorten with a `request_id` makes one link however often it is sent, from however many
/// replicas at once (the retry a client makes after a lost answer): every call gets the same
/// code, and the store holds one link. The same id with other fields is ALREADY_EXISTS, and a
/// malformed id is refused naming the field; neither writes anything.
async fn one_request_id_makes_one_link(backend: meshwork_test_support::backends::Backend) {
    let store = backend.store;
    let a = Replica::start(store.clone(), Arc::new(SystemClock)).await;
    let b = Replica::start(store.clone(), Arc::new(SystemClock)).await;
    let before = link_count(&store).await;
    let id = meshwork_test_support::backends::unique("shorten-");
    let url = format!("https://example.com/{id}");
    let with_id = |url: &str, alias: &str| pb::ShortenRequest { request_id: id.clone(), ..shorten(url, alias, 0) };
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut client = if i % 2 == 0 { a.client.clone() } else { b.client.clone() };
        let request = with_id(&url, "");
        tasks.push(tokio::spawn(async move { client.shorten(request).await.map(|r| r.into_inner().code) }));
    }
    let mut codes = HashSet::new();
    for t in tasks {
        codes.insert(t.await.unwrap().expect("every duplicate gets the first answer"));
    }
    assert_eq!(codes.len(), 1, "one code for one request_id: {codes:?}");
    assert_eq!(link_count(&store).await, before + 1);
    let code = codes.into_iter().next().unwrap();
    let mut client = a.client.clone();
    assert_eq!(client.resolve(resolve(&code)).await.unwrap().into_inner().long_url, url);

    let reused = client.shorten(with_id("https://example.com/other", "")).await.unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");
    assert!(reused.message().contains("request_id"), "{reused:?}");
    let bad = pb::ShortenRequest { request_id: "no spaces".into(), ..shorten(&url, "", 0) };
    let bad = client.shorten(bad).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("request_id"), "{bad:?}");
    assert_eq!(link_count(&store).await, before + 1, "refused calls write nothing");

    // With an alias: the replay is the first answer, not "the alias is taken".
    let alias_id = meshwork_test_support::backends::unique("alias-");
    let alias = format!("a{}", &alias_id[alias_id.len().saturating_sub(20)..])
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let request = pb::ShortenRequest { request_id: alias_id.clone(), ..shorten(&url, &alias, 0) };
    let first = client.shorten(request.clone()).await.unwrap().into_inner().code;
    let mut other = b.client.clone();
    assert_eq!(other.shorten(request).await.unwrap().into_inner().code, first);
    assert_eq!(first, alias);
    assert_eq!(link_count(&store).await, before + 2);
    a.stop().await;
    b.stop().await;
}

meshwork_test_support::on_every_backend!(one_request_id_makes_one_link);
