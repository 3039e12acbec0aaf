//! Shared helpers of the timeline suites: a store view that puts every key of one test under
//! a namespace of its own (the etcd cluster is shared by every test of the run, and the
//! timeline's event log, consumer checkpoint and fan-out queue have fixed keys), servers,
//! clients and polling.

#![allow(dead_code)]

use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_common::server::ServiceContext;
use meshwork_proto::pb::timeline::v1 as pb;
use meshwork_storage::{
    Condition, Direction, DynStore, Entry, KeyRange, Limits, Mutation, Page, Result, Store, Versioned, WatchEvent,
};
use meshwork_test_support::TestServer;
use meshwork_timeline::{Config, Timeline};
use pb::timeline_client::TimelineClient;
use rand::Rng;
use tonic::transport::Channel;

/// A view of a store where every key lives under `<namespace>/`.
pub struct Namespaced {
    inner: DynStore,
    ns: Vec<u8>,
}

impl Namespaced {
    /// Returns a fresh namespace of `inner`.
    pub fn fresh(inner: DynStore) -> DynStore {
        let ns = format!("t{}/", tag()).into_bytes();
        Arc::new(Namespaced { inner, ns })
    }

    fn wrap(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.ns.clone();
        k.extend_from_slice(key);
        k
    }

    fn strip(&self, key: Vec<u8>) -> Vec<u8> {
        key.strip_prefix(self.ns.as_slice()).map(<[u8]>::to_vec).unwrap_or(key)
    }

    fn bound(&self, b: Bound<Vec<u8>>, start: bool) -> Bound<Vec<u8>> {
        match b {
            Bound::Included(k) => Bound::Included(self.wrap(&k)),
            Bound::Excluded(k) => Bound::Excluded(self.wrap(&k)),
            Bound::Unbounded if start => Bound::Included(self.ns.clone()),
            Bound::Unbounded => match meshwork_storage::prefix_end(&self.ns) {
                Some(end) => Bound::Excluded(end),
                None => Bound::Unbounded,
            },
        }
    }

    fn condition(&self, c: Condition) -> Condition {
        match c {
            Condition::Absent(k) => Condition::Absent(self.wrap(&k)),
            Condition::Version(k, v) => Condition::Version(self.wrap(&k), v),
            Condition::ValueEquals(k, v) => Condition::ValueEquals(self.wrap(&k), v),
        }
    }

    fn mutation(&self, m: Mutation) -> Mutation {
        match m {
            Mutation::Put { key, value, ttl } => Mutation::Put { key: self.wrap(&key), value, ttl },
            Mutation::Delete { key } => Mutation::Delete { key: self.wrap(&key) },
        }
    }
}

#[async_trait::async_trait]
impl Store for Namespaced {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        self.inner.get(&self.wrap(key)).await
    }

    async fn scan(&self, range: KeyRange, limit: usize, direction: Direction) -> Result<Page> {
        let range = KeyRange { start: self.bound(range.start, true), end: self.bound(range.end, false) };
        let page = self.inner.scan(range, limit, direction).await?;
        Ok(Page {
            entries: page
                .entries
                .into_iter()
                .map(|e| Entry { key: self.strip(e.key), value: e.value, version: e.version })
                .collect(),
            next: page.next.map(|k| self.strip(k)),
        })
    }

    async fn write(&self, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Result<u64> {
        let conditions = conditions.into_iter().map(|c| self.condition(c)).collect();
        let mutations = mutations.into_iter().map(|m| self.mutation(m)).collect();
        self.inner.write(conditions, mutations).await
    }

    async fn watch(&self, prefix: &[u8], from: Option<u64>) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        let ns = self.ns.clone();
        let events = self.inner.watch(&self.wrap(prefix), from).await?;
        Ok(events
            .map(move |e| {
                e.map(|mut e| {
                    if let Some(k) = e.key.strip_prefix(ns.as_slice()) {
                        e.key = k.to_vec();
                    }
                    e
                })
            })
            .boxed())
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
}

/// Returns 5 random characters of `[a-z0-9]`: handles of one test never meet another's.
pub fn tag() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..5).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

/// A timeline server and its state.
pub struct Running {
    pub server: TestServer,
    pub timeline: Arc<Timeline>,
}

impl Running {
    pub fn client(&self) -> TimelineClient<Channel> {
        TimelineClient::new(self.server.channel.clone())
    }
}

/// Serves a timeline built with `config` on `ctx`.
pub async fn serve(ctx: &ServiceContext, config: Config) -> Running {
    let (hosted, timeline) = meshwork_timeline::build(ctx, config);
    Running { server: TestServer::start(vec![hosted]).await, timeline }
}

/// Creates `handle`.
pub async fn user(client: &mut TimelineClient<Channel>, handle: &str) {
    client
        .create_user(pb::CreateUserRequest { handle: handle.into(), display_name: format!("User {handle}") })
        .await
        .expect("create user");
}

/// Posts `text` as `author` and returns the post.
pub async fn post(client: &mut TimelineClient<Channel>, author: &str, text: &str) -> pb::Post {
    let request_id = format!("r-{}-{}", tag(), tag());
    client
        .create_post(pb::CreatePostRequest {
            request_id,
            author: author.into(),
            text: text.into(),
            reply_to: String::new(),
        })
        .await
        .expect("create post")
        .into_inner()
        .post
        .expect("post")
}

/// Returns the fan-out status of `post_id`.
pub async fn status(client: &mut TimelineClient<Channel>, post_id: &str) -> pb::GetFanoutStatusResponse {
    client
        .get_fanout_status(pb::GetFanoutStatusRequest { post_id: post_id.into() })
        .await
        .expect("fan-out status")
        .into_inner()
}

/// Waits until the fan-out of `post_id` is complete, at most `within`; returns how long it took.
pub async fn until_fanned_out(client: &mut TimelineClient<Channel>, post_id: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let s = status(client, post_id).await;
        if s.complete && (s.planned || s.mode == pb::FanoutMode::Pull as i32) {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "fan-out of {post_id} not complete after {within:?}: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Returns one page of `user`'s home timeline.
pub async fn home_page(
    client: &mut TimelineClient<Channel>,
    user: &str,
    page_size: i32,
    page_token: &str,
) -> pb::GetHomeTimelineResponse {
    client
        .get_home_timeline(pb::GetHomeTimelineRequest { user: user.into(), page_size, page_token: page_token.into() })
        .await
        .expect("home timeline")
        .into_inner()
}

/// Returns every post id of `user`'s home timeline, page by page.
pub async fn whole_home(client: &mut TimelineClient<Channel>, user: &str, page_size: i32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = home_page(client, user, page_size, &token).await;
        ids.extend(page.posts.into_iter().map(|p| p.post_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}
