//! The timeline's domain operations over the Store: users, the follow graph, posts, likes and
//! reposts, the user and home timelines and the home stream. The fan-out machinery (planner,
//! workers, inbox maintenance) is in [`crate::fanout`]; the merge of a home page in
//! [`crate::home`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_common::caller::Caller;
use meshwork_common::clock::Clock;
use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::events::EventLog;
use meshwork_common::fields;
use meshwork_common::idempotency::{Fingerprint, Idempotency};
use meshwork_common::ids::IdAllocator;
use meshwork_common::paging::{PageToken, fingerprint};
use meshwork_common::record::Record;
use meshwork_common::server::ServiceContext;
use meshwork_common::settings::Settings;
use meshwork_proto::pb::timeline::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange, Txn, prefix_end, transact};

use crate::cache::{
    CelebCache, FollowedCelebsCache, NEWEST_KEPT, Newest, NewestCache, PostCache, celeb_cache, followed_celebs_cache,
    newest_cache, post_cache,
};
use crate::counts;
use crate::fanout::FanoutStats;
use crate::home;
use crate::keys;
use crate::model::{FollowRecord, PostRecord, TimelineEvent, UserRecord, event_type};
use crate::snowflake::Snowflake;
use crate::validate;

/// Most follow-graph events a resumed home stream replays to know whom the user followed at
/// its `from_sequence`.
const MAX_RESUME_REPLAY: usize = 100_000;

/// Tunables of the service, read from `timeline.*` settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Authors with at least this many followers are pulled at read time instead of pushed
    /// (`timeline.celebrity_threshold`, default 10,000).
    pub celebrity_threshold: u64,
    /// Entries an inbox keeps (newest first); older pages are pulled.
    pub inbox_limit: usize,
    /// Followers per fan-out task, at least (a big list gets bigger chunks, never more
    /// than [`Config::max_chunks`]).
    pub chunk_size: usize,
    /// Most chunks one post is cut into (each is two writes in the one planning transaction,
    /// with the job, the job's, the post's and the pending mark's conditions and maybe the
    /// mark: 2 x chunks + 5 operations, at most 128 on etcd).
    pub max_chunks: usize,
    /// Inboxes written per store transaction; 0 = as many as the backend allows (62 on etcd,
    /// 500 elsewhere).
    pub batch_size: usize,
    /// Fan-out tasks one replica works on at once (`timeline.fanout_workers`, default 8).
    pub workers: usize,
    /// How long a worker's claim on a task lasts without renewal (`timeline.fanout_lease_ms`,
    /// default 10,000); a crashed worker's task is taken over after it.
    pub lease: Duration,
    /// A pause after each batch (0 in production; tests slow the fan-out down with it to
    /// catch it in the middle).
    pub batch_pause: Duration,
    /// Whether the hosted service runs the event consumer and the fan-out workers.
    pub run_background: bool,
    /// How often idle workers look for work besides the store's watch (leases that ran out).
    pub poll_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            celebrity_threshold: 10_000,
            inbox_limit: 800,
            chunk_size: 500,
            max_chunks: 60,
            batch_size: 0,
            workers: 8,
            lease: Duration::from_secs(10),
            batch_pause: Duration::ZERO,
            run_background: true,
            poll_interval: Duration::from_millis(250),
        }
    }
}

impl Config {
    /// Returns the defaults overridden by `timeline.celebrity_threshold`,
    /// `timeline.fanout_workers`, `timeline.fanout_lease_ms` and
    /// `timeline.fanout_batch_pause_ms` (a pause after each inbox batch, for end-to-end tests
    /// that must catch a fan-out in the middle).
    pub fn from_settings(settings: &Settings) -> Self {
        let d = Config::default();
        Config {
            celebrity_threshold: settings.get_or("timeline.celebrity_threshold", d.celebrity_threshold),
            workers: settings.get_or("timeline.fanout_workers", d.workers).max(1),
            lease: Duration::from_millis(settings.get_or("timeline.fanout_lease_ms", 10_000u64).max(100)),
            batch_pause: Duration::from_millis(settings.get_or("timeline.fanout_batch_pause_ms", 0u64)),
            ..d
        }
    }
}

/// The timeline service's state and operations. Cheap to share (`Arc`).
pub struct Timeline {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) log: EventLog,
    idem: Idempotency,
    pub(crate) config: Config,
    nodes: IdAllocator,
    snowflake: tokio::sync::OnceCell<Snowflake>,
    /// This process's name as a fan-out worker (in task leases).
    pub(crate) worker_id: String,
    pub(crate) stats: FanoutStats,
    /// Posts with their counts, for pages ([`crate::cache`]).
    pub(crate) posts: Arc<PostCache>,
    /// Authors' newest post ids (the pulls), kept by the watch of `timeline/by-author/`.
    pub(crate) newest: Arc<NewestCache>,
    /// The celebrities each user follows, kept by the watch of `timeline/following/`.
    pub(crate) followed: Arc<FollowedCelebsCache>,
    /// The authors pulled at read time ([`crate::cache`]).
    pub(crate) celebs: Arc<CelebCache>,
    /// Handles known to exist (users are never deleted, so this needs no invalidation).
    known_users: moka::sync::Cache<String, ()>,
    /// CreatePost calls waiting to be committed together (see [`Timeline::create_post`]).
    post_queue: PostQueue,
}

/// Most CreatePost batches written at once (one commits while the next reads).
const POST_BATCHES_IN_FLIGHT: usize = 2;

/// Most posts in one batch.
const MAX_POST_BATCH: usize = 64;

/// Store operations one post of a batch may take (conditions and puts), for the backend's
/// per-write limit (etcd: 128).
const OPS_PER_POST: usize = 12;

/// What one CreatePost asks for, checked.
struct PostInput {
    req: pb::CreatePostRequest,
    author: String,
    reply_to: Option<u64>,
    followers: u64,
    pushed: bool,
}

/// One CreatePost waiting for its batch.
struct PostJob {
    input: PostInput,
    answer: tokio::sync::oneshot::Sender<ServiceResult<pb::Post>>,
}

/// The queue of [`PostJob`]s and the permits of the batches writing them.
struct PostQueue {
    jobs: std::sync::Mutex<std::collections::VecDeque<PostJob>>,
    batches: Arc<tokio::sync::Semaphore>,
}

impl Default for PostQueue {
    fn default() -> Self {
        PostQueue {
            jobs: std::sync::Mutex::new(std::collections::VecDeque::new()),
            batches: Arc::new(tokio::sync::Semaphore::new(POST_BATCHES_IN_FLIGHT)),
        }
    }
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline").field("worker_id", &self.worker_id).finish_non_exhaustive()
    }
}

/// Returns PERMISSION_DENIED unless the call is anonymous, made by `user` or by an admin.
pub fn may_act_as(caller: Option<&Caller>, user: &str) -> ServiceResult<()> {
    match caller {
        Some(c) if !c.subject.eq_ignore_ascii_case(user) && !c.is_admin() => Err(ServiceError::PermissionDenied(
            format!("{:?} may not act for {user:?} (needs the admin role)", c.subject),
        )),
        _ => Ok(()),
    }
}

fn lock_queue<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing is left half-done under this lock: a poisoned one is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn token_fingerprint(kind: &str, user: &str) -> u32 {
    fingerprint(&[kind.as_bytes(), user.as_bytes()])
}

/// Decodes a cursor token (the last post id seen, 8 bytes big-endian).
fn decode_cursor(token: &str, fp: u32) -> ServiceResult<Option<u64>> {
    match PageToken::decode(token, fp)? {
        None => Ok(None),
        Some(t) => {
            let bytes: [u8; 8] = t
                .resume_key
                .as_slice()
                .try_into()
                .map_err(|_| ServiceError::invalid("page_token", "is not a token returned by this query"))?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

fn encode_cursor(last: u64, fp: u32) -> String {
    PageToken { resume_key: last.to_be_bytes().to_vec(), fingerprint: fp }.encode()
}

/// Returns the range of `prefix` newest first, starting after the post `cursor` (keys written
/// with [`keys::inv`] end with the inverted id).
pub(crate) fn after_cursor(prefix: Vec<u8>, cursor: Option<u64>) -> KeyRange {
    let mut range = KeyRange::prefix(prefix.clone());
    if let Some(last) = cursor {
        let mut start = prefix;
        start.extend_from_slice(keys::inv(last).as_bytes());
        start.push(0);
        range.start = std::ops::Bound::Included(start);
    }
    range
}

impl Timeline {
    /// Builds the service state on `ctx` with `config`.
    pub fn new(ctx: &ServiceContext, config: Config) -> Self {
        Timeline {
            store: ctx.store.clone(),
            clock: ctx.clock.clone(),
            log: EventLog::new(ctx.store.clone(), keys::SERVICE).with_clock(ctx.clock.clone()),
            idem: Idempotency::new(ctx.store.clone(), keys::SERVICE).with_clock(ctx.clock.clone()),
            config,
            nodes: IdAllocator::new(ctx.store.clone(), keys::node_counter(), 1),
            snowflake: tokio::sync::OnceCell::new(),
            worker_id: meshwork_common::random_id("w", 10),
            stats: FanoutStats::default(),
            posts: Arc::new(post_cache()),
            newest: Arc::new(newest_cache()),
            followed: Arc::new(followed_celebs_cache()),
            celebs: Arc::new(celeb_cache()),
            known_users: moka::sync::Cache::new(1_000_000),
            post_queue: PostQueue::default(),
        }
    }

    /// Returns the post cache (for its hit counts).
    pub fn post_cache(&self) -> &PostCache {
        &self.posts
    }

    /// Returns the tasks that keep the read caches coherent with the Store's watch, for the
    /// hosted service (without them the caches stay bypassed).
    pub fn cache_tasks(&self) -> Vec<futures::future::BoxFuture<'static, ()>> {
        vec![
            Box::pin(self.posts.watch_task(self.store.clone())),
            Box::pin(self.newest.watch_task(self.store.clone())),
            Box::pin(self.followed.watch_task(self.store.clone())),
            Box::pin(self.celebs.watch_task(self.store.clone())),
        ]
    }

    /// Fails with NOT_FOUND unless `handle` exists (known handles are remembered: users are
    /// never deleted).
    async fn require_known_user(&self, handle: &str) -> ServiceResult<()> {
        if self.known_users.contains_key(handle) {
            return Ok(());
        }
        self.require_user(handle, "user").await?;
        self.known_users.insert(handle.to_string(), ());
        Ok(())
    }

    /// Returns the tunables in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Returns what this replica's fan-out workers did.
    pub fn stats(&self) -> &FanoutStats {
        &self.stats
    }

    /// Returns this process's id generator, leasing its node id on first use.
    async fn ids(&self) -> ServiceResult<&Snowflake> {
        self.snowflake.get_or_try_init(|| async { Ok(Snowflake::new(self.nodes.next().await?)) }).await
    }

    async fn user_record(&self, tx: &Txn, handle: &str, what: &str) -> ServiceResult<UserRecord> {
        match tx.get(&keys::user(handle)).await? {
            Some(v) => Ok(UserRecord::decode(&v.value)?),
            None => Err(ServiceError::not_found(format!("{what} {handle:?}"))),
        }
    }

    async fn require_user(&self, handle: &str, what: &str) -> ServiceResult<UserRecord> {
        match self.store.get(&keys::user(handle)).await? {
            Some(v) => Ok(UserRecord::decode(&v.value)?),
            None => Err(ServiceError::not_found(format!("{what} {handle:?}"))),
        }
    }

    async fn wire_user(&self, key: &str, record: UserRecord) -> ServiceResult<pb::User> {
        let prefixes = ["followers", "following", "posts"].map(|kind| keys::user_count_prefix(key, kind));
        let (followers, following, posts) = futures::try_join!(
            counts::sum(&self.store, &prefixes[0]),
            counts::sum(&self.store, &prefixes[1]),
            counts::sum(&self.store, &prefixes[2]),
        )?;
        Ok(pb::User {
            handle: record.handle,
            display_name: record.display_name,
            create_time: Some(fields::timestamp(record.created_ms)),
            follower_count: followers,
            following_count: following,
            post_count: posts,
        })
    }

    /// CreateUser.
    pub async fn create_user(&self, caller: Option<&Caller>, req: &pb::CreateUserRequest) -> ServiceResult<pb::User> {
        let key = validate::create_user(req)?;
        may_act_as(caller, &key)?;
        let record = UserRecord {
            handle: req.handle.clone(),
            display_name: req.display_name.clone(),
            created_ms: self.clock.now_ms(),
        };
        let bytes = record.encode()?;
        transact(&self.store, |tx| {
            let (key, bytes) = (key.clone(), bytes.clone());
            Box::pin(async move {
                if tx.get(&keys::user(&key)).await?.is_some() {
                    return Err(ServiceError::AlreadyExists { what: format!("handle {key:?}") });
                }
                tx.put(keys::user(&key), bytes);
                // The new inbox misses nothing: pages past its end need not pull.
                tx.put(keys::inbox_floor(&key), 0u64.to_be_bytes().to_vec());
                Ok(())
            })
        })
        .await?;
        self.wire_user(&key, record).await
    }

    /// GetUser.
    pub async fn get_user(&self, handle: &str) -> ServiceResult<pb::User> {
        let key = validate::handle("handle", handle)?;
        let record = self.require_user(&key, "user").await?;
        self.wire_user(&key, record).await
    }

    /// Follow: returns whether the follow is new. A new follow backfills the target's recent
    /// posts into the user's inbox (here, and again by the event consumer should this
    /// process die first).
    pub async fn follow(&self, caller: Option<&Caller>, req: &pb::FollowRequest) -> ServiceResult<bool> {
        let (user, target) = validate::follow_pair(&req.user, &req.target)?;
        may_act_as(caller, &user)?;
        let now = self.clock.now_ms();
        let edge = FollowRecord { since_ms: now }.encode()?;
        let payload = TimelineEvent::Followed { user: user.clone(), target: target.clone() }.encode()?;
        let changed = transact(&self.store, |tx| {
            let (user, target, edge, payload) = (user.clone(), target.clone(), edge.clone(), payload.clone());
            Box::pin(async move {
                self.user_record(&tx, &user, "user").await?;
                self.user_record(&tx, &target, "target").await?;
                if tx.get(&keys::following(&user, &target)).await?.is_some() {
                    return Ok::<_, ServiceError>(false);
                }
                tx.put(keys::following(&user, &target), edge.clone());
                tx.put(keys::follower(&target, &user), edge);
                let shard = counts::random_shard();
                counts::add(&tx, &keys::user_count_prefix(&user, "following"), shard, 1).await?;
                counts::add(&tx, &keys::user_count_prefix(&target, "followers"), shard, 1).await?;
                self.log.append(&tx, event_type::FOLLOWED, payload).await?;
                Ok(true)
            })
        })
        .await?;
        if changed {
            // This replica's pages follow the change at once (others through their watch).
            self.followed.invalidate(&user);
        }
        if changed && let Err(e) = self.backfill(&user, &target).await {
            // The event consumer does it again; the follow itself is committed.
            tracing::warn!(error = %e, %user, %target, "backfill after follow failed");
        }
        Ok(changed)
    }

    /// Unfollow: returns whether a follow ended. Removes the target's posts from the inbox.
    pub async fn unfollow(&self, caller: Option<&Caller>, req: &pb::UnfollowRequest) -> ServiceResult<bool> {
        let (user, target) = validate::follow_pair(&req.user, &req.target)?;
        may_act_as(caller, &user)?;
        let payload = TimelineEvent::Unfollowed { user: user.clone(), target: target.clone() }.encode()?;
        let changed = transact(&self.store, |tx| {
            let (user, target, payload) = (user.clone(), target.clone(), payload.clone());
            Box::pin(async move {
                self.user_record(&tx, &user, "user").await?;
                self.user_record(&tx, &target, "target").await?;
                if tx.get(&keys::following(&user, &target)).await?.is_none() {
                    return Ok::<_, ServiceError>(false);
                }
                tx.delete(keys::following(&user, &target));
                tx.delete(keys::follower(&target, &user));
                let shard = counts::random_shard();
                counts::add(&tx, &keys::user_count_prefix(&user, "following"), shard, -1).await?;
                counts::add(&tx, &keys::user_count_prefix(&target, "followers"), shard, -1).await?;
                self.log.append(&tx, event_type::UNFOLLOWED, payload).await?;
                Ok(true)
            })
        })
        .await?;
        if changed {
            // This replica's pages follow the change at once (others through their watch).
            self.followed.invalidate(&user);
        }
        if changed && let Err(e) = self.remove_from_inbox(&user, &target).await {
            tracing::warn!(error = %e, %user, %target, "inbox clean-up after unfollow failed");
        }
        Ok(changed)
    }

    /// ListFollowers (`followers` true) and ListFollowing: handles in key order and the next
    /// page token.
    pub async fn list_edges(
        &self,
        followers: bool,
        user: &str,
        page_size: i32,
        page_token: &str,
    ) -> ServiceResult<(Vec<String>, String)> {
        let (user, size) = validate::list(user, page_size)?;
        let kind = if followers { "followers" } else { "following" };
        let fp = token_fingerprint(kind, &user);
        let token = PageToken::decode(page_token, fp)?;
        self.require_user(&user, "user").await?;
        let prefix = if followers { keys::followers_prefix(&user) } else { keys::following_prefix(&user) };
        let mut range = KeyRange::prefix(prefix.clone());
        if let Some(t) = token {
            if !t.resume_key.starts_with(&prefix) {
                return Err(ServiceError::invalid("page_token", "is not a token returned by this query"));
            }
            range.start = std::ops::Bound::Included(t.resume_key);
        }
        let page = self.store.scan(range, size, Direction::Forward).await?;
        let handles = page.entries.iter().filter_map(|e| keys::last_segment(&e.key).map(str::to_string)).collect();
        let next = page.next.map(|k| PageToken { resume_key: k, fingerprint: fp }.encode()).unwrap_or_default();
        Ok((handles, next))
    }

    /// Returns the follower count of `author` and whether a post now would be pushed.
    async fn push_decision(&self, author: &str) -> ServiceResult<(u64, bool)> {
        let followers = counts::sum(&self.store, &keys::user_count_prefix(author, "followers")).await? as u64;
        Ok((followers, followers < self.config.celebrity_threshold))
    }

    /// Buffers a new post in `tx`: its record, its author index entry, the author's post
    /// count, the celebrity marker of a pulled author and the `post.created` event.
    async fn write_new_post(&self, tx: &Txn, record: &PostRecord) -> ServiceResult<()> {
        tx.put(keys::post(record.id), record.encode()?);
        tx.put(keys::by_author(&record.author, record.id), Vec::new());
        counts::add(tx, &keys::user_count_prefix(&record.author, "posts"), counts::random_shard(), 1).await?;
        if !record.pushed {
            tx.put(keys::celeb(&record.author), Vec::new());
        }
        let event =
            TimelineEvent::PostCreated { post_id: record.id, author: record.author.clone(), pushed: record.pushed };
        self.log.append(tx, event_type::POST_CREATED, event.encode()?).await?;
        Ok(())
    }

    /// CreatePost: writes the post and its event and returns; the fan-out follows
    /// asynchronously. Concurrent calls on this replica are written together: each call queues
    /// its post, and while fewer than [`POST_BATCHES_IN_FLIGHT`] batches are being written, a
    /// waiting call takes what is queued (up to what one store write may hold) and writes it
    /// as ONE transaction: every post with its own idempotency record, author check, counters
    /// and `post.created` event. Every append to the event log holds the log's head until its
    /// commit is durable, so posts written one transaction each queue behind one fsync each;
    /// a batch shares that wait. A post whose own check fails (no such author, a reused
    /// `request_id`) gets its error and the others are written; a conflict reruns the whole
    /// batch, which is idempotent like any transaction.
    pub async fn create_post(
        self: &Arc<Self>,
        caller: Option<&Caller>,
        req: &pb::CreatePostRequest,
    ) -> ServiceResult<pb::Post> {
        let (author, reply_to) = validate::create_post(req)?;
        may_act_as(caller, &author)?;
        self.ids().await?;
        let (followers, pushed) = self.push_decision(&author).await?;
        let (answer, mut rx) = tokio::sync::oneshot::channel();
        let job = PostJob { input: PostInput { req: req.clone(), author, reply_to, followers, pushed }, answer };
        lock_queue(&self.post_queue.jobs).push_back(job);
        let dropped = || ServiceError::Unavailable("the batch writing this post stopped; retry".into());
        loop {
            tokio::select! {
                biased;
                answer = &mut rx => return answer.unwrap_or_else(|_| Err(dropped())),
                permit = self.post_queue.batches.clone().acquire_owned() => {
                    let Ok(permit) = permit else { return Err(dropped()) };
                    let batch: Vec<PostJob> = {
                        let mut jobs = lock_queue(&self.post_queue.jobs);
                        let n = jobs.len().min(self.post_batch_size());
                        jobs.drain(..n).collect()
                    };
                    if batch.is_empty() {
                        // This call's post is in a batch being written.
                        drop(permit);
                        return rx.await.unwrap_or_else(|_| Err(dropped()));
                    }
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.write_posts(batch).await;
                        drop(permit);
                    });
                }
            }
        }
    }

    /// Returns the most posts one batch writes on this backend.
    fn post_batch_size(&self) -> usize {
        (self.store.limits().max_ops_per_write.saturating_sub(8) / OPS_PER_POST).clamp(1, MAX_POST_BATCH)
    }

    /// Writes a batch of posts in one transaction and answers each caller.
    async fn write_posts(&self, jobs: Vec<PostJob>) {
        let (jobs, senders): (Vec<PostInput>, Vec<_>) = jobs.into_iter().map(|j| (j.input, j.answer)).unzip();
        let ids = match self.ids().await {
            Ok(ids) => ids,
            Err(e) => {
                for sender in senders {
                    let _ = sender.send(Err(e.clone()));
                }
                return;
            }
        };
        let outcome = transact(&self.store, |tx| {
            let jobs = &jobs;
            Box::pin(async move {
                let mut answers: Vec<ServiceResult<pb::Post>> = Vec::with_capacity(jobs.len());
                let mut created: Vec<PostRecord> = Vec::new();
                for job in jobs {
                    let effect = async {
                        self.user_record(&tx, &job.author, "author").await?;
                        if let Some(parent) = job.reply_to
                            && tx.get(&keys::post(parent)).await?.is_none()
                        {
                            return Err(ServiceError::not_found(format!("reply_to post {parent}")));
                        }
                        let now = self.clock.now_ms();
                        let record = PostRecord {
                            id: ids.next(now),
                            author: job.author.clone(),
                            text: job.req.text.clone(),
                            reply_to: job.reply_to,
                            repost_of: None,
                            created_ms: now,
                            pushed: job.pushed,
                            followers_at_post: job.followers,
                        };
                        let wire = wire_post(&record, 0, 0);
                        created.push(record);
                        Ok(wire)
                    };
                    let answer =
                        self.idem.run_in_txn(&tx, &job.req.request_id, Fingerprint::of(&job.req), effect).await;
                    match answer {
                        // A stale read: the whole batch runs again.
                        Err(e) if tx.is_stale() => return Err(e),
                        answer => answers.push(answer),
                    }
                }
                for record in &created {
                    self.write_new_post(&tx, record).await?;
                }
                let authors: Vec<String> = created.iter().map(|r| r.author.clone()).collect();
                Ok::<_, ServiceError>((answers, created.iter().any(|r| !r.pushed), authors))
            })
        })
        .await;
        match outcome {
            Ok((answers, pulled, authors)) => {
                if pulled {
                    self.celebs.invalidate(&());
                }
                // This replica's pulls show them at once (others when their watch sees them).
                for author in &authors {
                    self.newest.invalidate(author);
                }
                for (sender, answer) in senders.into_iter().zip(answers) {
                    let _ = sender.send(answer);
                }
            }
            Err(e) => {
                for sender in senders {
                    let _ = sender.send(Err(e.clone()));
                }
            }
        }
    }

    /// Returns a post with its counters, or `None` when it does not exist.
    pub async fn load_post(&self, id: u64) -> ServiceResult<Option<pb::Post>> {
        let page = self.store.scan(KeyRange::prefix(keys::post(id)), 64, Direction::Forward).await?;
        let record_key = keys::post(id);
        let likes = keys::post_count_prefix(id, "likes");
        let reposts = keys::post_count_prefix(id, "reposts");
        let (mut record, mut like_count, mut repost_count) = (None, 0i64, 0i64);
        for entry in &page.entries {
            if entry.key == record_key {
                record = Some(PostRecord::decode(&entry.value)?);
            } else if entry.key.starts_with(&likes) {
                like_count += counts::shard_value(&entry.value)?;
            } else if entry.key.starts_with(&reposts) {
                repost_count += counts::shard_value(&entry.value)?;
            }
        }
        Ok(record.map(|r| wire_post(&r, like_count.max(0), repost_count.max(0))))
    }

    /// Returns the posts of `ids` that still exist, in the order given, through the post
    /// cache (timelines; GetPost reads the Store).
    pub(crate) async fn load_posts(&self, ids: &[u64]) -> ServiceResult<Vec<pb::Post>> {
        let posts = self.posts.get_many(ids, |id| async move { Ok(self.load_post(id).await?.map(Arc::new)) }).await?;
        Ok(posts.into_iter().flatten().map(|p| (*p).clone()).collect())
    }

    /// GetPost.
    pub async fn get_post(&self, post_id: &str) -> ServiceResult<pb::Post> {
        let id = validate::post_id("post_id", post_id)?;
        self.load_post(id).await?.ok_or_else(|| ServiceError::not_found(format!("post {id}")))
    }

    /// DeletePost: the author only (or an admin) when the call carries an identity. The
    /// post's inbox entries, likes and reposts are removed by the event consumer.
    pub async fn delete_post(&self, caller: Option<&Caller>, post_id: &str) -> ServiceResult<()> {
        let id = validate::post_id("post_id", post_id)?;
        // The counter shards are blind-deleted with the record (no one adds to the counters
        // of a post that is gone: Like and Repost read the record in their transaction).
        let shards = self.store.scan(KeyRange::prefix(keys::post(id)), 64, Direction::Forward).await?;
        let (repost_of, author) = transact(&self.store, |tx| {
            let shards = &shards;
            Box::pin(async move {
                let record = match tx.get(&keys::post(id)).await? {
                    Some(v) => PostRecord::decode(&v.value)?,
                    None => return Err(ServiceError::not_found(format!("post {id}"))),
                };
                if let Some(c) = caller
                    && c.subject.to_ascii_lowercase() != record.author
                    && !c.is_admin()
                {
                    return Err(ServiceError::PermissionDenied(format!(
                        "only the author {:?} (or an admin) may delete post {id}",
                        record.author
                    )));
                }
                for entry in &shards.entries {
                    tx.delete(entry.key.clone());
                }
                tx.delete(keys::post(id));
                tx.delete(keys::by_author(&record.author, id));
                counts::add(&tx, &keys::user_count_prefix(&record.author, "posts"), counts::random_shard(), -1).await?;
                if let Some(original) = record.repost_of {
                    tx.delete(keys::repost(original, &record.author));
                    if tx.get(&keys::post(original)).await?.is_some() {
                        let prefix = keys::post_count_prefix(original, "reposts");
                        counts::add(&tx, &prefix, counts::random_shard(), -1).await?;
                    }
                }
                let event = TimelineEvent::PostDeleted { post_id: id, author: record.author.clone() };
                self.log.append(&tx, event_type::POST_DELETED, event.encode()?).await?;
                Ok((record.repost_of, record.author))
            })
        })
        .await?;
        // This replica's pages drop it at once (others when their watch sees the delete).
        self.posts.invalidate(&id);
        self.newest.invalidate(&author);
        if let Some(original) = repost_of {
            self.posts.invalidate(&original);
        }
        Ok(())
    }

    /// Like (`like` true) and Unlike: returns (like count, whether this call changed it).
    pub async fn like(
        &self,
        caller: Option<&Caller>,
        like: bool,
        post_id: &str,
        user: &str,
    ) -> ServiceResult<(i64, bool)> {
        let (id, user) = validate::post_and_user(post_id, user)?;
        may_act_as(caller, &user)?;
        let prefix = keys::post_count_prefix(id, "likes");
        let changed = transact(&self.store, |tx| {
            let (user, prefix) = (user.clone(), prefix.clone());
            Box::pin(async move {
                if tx.get(&keys::post(id)).await?.is_none() {
                    return Err(ServiceError::not_found(format!("post {id}")));
                }
                self.user_record(&tx, &user, "user").await?;
                let existing = tx.get(&keys::like(id, &user)).await?;
                match (like, existing) {
                    (true, Some(_)) | (false, None) => Ok(false),
                    (true, None) => {
                        let shard = counts::random_shard();
                        tx.put(keys::like(id, &user), shard.to_string().into_bytes());
                        counts::add(&tx, &prefix, shard, 1).await?;
                        Ok(true)
                    }
                    (false, Some(v)) => {
                        // Take it back from the shard it went to, so shards stay >= 0.
                        let shard = std::str::from_utf8(&v.value).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                        tx.delete(keys::like(id, &user));
                        counts::add(&tx, &prefix, shard, -1).await?;
                        Ok(true)
                    }
                }
            })
        })
        .await?;
        if changed {
            self.posts.invalidate(&id);
        }
        Ok((counts::sum(&self.store, &prefix).await?, changed))
    }

    /// Repost: returns (the repost, the original's repost count, whether it is new).
    pub async fn repost(
        &self,
        caller: Option<&Caller>,
        post_id: &str,
        user: &str,
    ) -> ServiceResult<(pb::Post, i64, bool)> {
        let (original, user) = validate::post_and_user(post_id, user)?;
        may_act_as(caller, &user)?;
        let ids = self.ids().await?;
        let (followers, pushed) = self.push_decision(&user).await?;
        let prefix = keys::post_count_prefix(original, "reposts");
        let (repost_id, changed) = transact(&self.store, |tx| {
            let (user, prefix) = (user.clone(), prefix.clone());
            Box::pin(async move {
                let source = match tx.get(&keys::post(original)).await? {
                    Some(v) => PostRecord::decode(&v.value)?,
                    None => return Err(ServiceError::not_found(format!("post {original}"))),
                };
                if source.repost_of.is_some() {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "post {original} is a repost; repost the original instead"
                    )));
                }
                self.user_record(&tx, &user, "user").await?;
                if let Some(v) = tx.get(&keys::repost(original, &user)).await? {
                    let id = std::str::from_utf8(&v.value).ok().and_then(|s| keys::parse_hex(s.as_bytes()));
                    let id = id.ok_or_else(|| ServiceError::Internal("corrupt repost marker".into()))?;
                    return Ok((id, false));
                }
                let now = self.clock.now_ms();
                let record = PostRecord {
                    id: ids.next(now),
                    author: user.clone(),
                    text: String::new(),
                    reply_to: None,
                    repost_of: Some(original),
                    created_ms: now,
                    pushed,
                    followers_at_post: followers,
                };
                tx.put(keys::repost(original, &user), keys::hex(record.id).into_bytes());
                counts::add(&tx, &prefix, counts::random_shard(), 1).await?;
                self.write_new_post(&tx, &record).await?;
                Ok((record.id, true))
            })
        })
        .await?;
        if changed {
            self.posts.invalidate(&original);
            self.newest.invalidate(&user);
            if !pushed {
                self.celebs.invalidate(&());
            }
        }
        let repost = self
            .load_post(repost_id)
            .await?
            .ok_or_else(|| ServiceError::Aborted(format!("repost {repost_id} was deleted meanwhile; retry")))?;
        Ok((repost, counts::sum(&self.store, &prefix).await?, changed))
    }

    /// GetUserTimeline: the author's posts newest first and the next page token.
    pub async fn user_timeline(&self, req: &pb::GetUserTimelineRequest) -> ServiceResult<(Vec<pb::Post>, String)> {
        let (user, size) = validate::timeline(&req.user, req.page_size)?;
        let fp = token_fingerprint("user-timeline", &user);
        let cursor = decode_cursor(&req.page_token, fp)?;
        self.require_known_user(&user).await?;
        let page =
            self.store.scan(after_cursor(keys::by_author_prefix(&user), cursor), size, Direction::Forward).await?;
        let ids: Vec<u64> = page.entries.iter().filter_map(|e| keys::id_of_inverted_key(&e.key)).collect();
        let next = match (page.next, ids.last()) {
            (Some(_), Some(last)) => encode_cursor(*last, fp),
            _ => String::new(),
        };
        Ok((self.load_posts(&ids).await?, next))
    }

    /// Returns the celebrities `user` follows (the set of celebrities from its cache).
    pub(crate) async fn followed_celebrities(&self, user: &str) -> ServiceResult<Vec<String>> {
        let names = self
            .celebs
            .get(&(), |()| async {
                let celebs = meshwork_storage::scan_all(
                    &self.store,
                    KeyRange::prefix(keys::celebs_prefix()),
                    Direction::Forward,
                )
                .await?;
                Ok(Arc::new(celebs.iter().filter_map(|e| keys::last_segment(&e.key).map(str::to_string)).collect()))
            })
            .await?;
        let check = |user: String| {
            let names = names.clone();
            async move {
                let checks = futures::future::try_join_all(names.iter().map(|c| {
                    let key = keys::following(&user, c);
                    async move { Ok::<_, ServiceError>(self.store.get(&key).await?.is_some()) }
                }))
                .await?;
                let followed = names.iter().zip(checks).filter(|(_, f)| *f).map(|(n, _)| n.clone()).collect();
                Ok(Arc::new((names, followed)))
            }
        };
        let user = user.to_string();
        let mut known = self.followed.get(&user, check).await?;
        // Computed for another celebrity set: again for this one (and kept).
        if known.0 != names {
            self.followed.invalidate(&user);
            known = self.followed.get(&user, check).await?;
        }
        Ok(known.1.clone())
    }

    /// Returns up to `limit` post ids of `author` older than `cursor`, newest first.
    pub(crate) async fn pull(&self, author: &str, cursor: Option<u64>, limit: usize) -> ServiceResult<Vec<u64>> {
        if limit <= NEWEST_KEPT {
            let newest = self
                .newest
                .get(&author.to_string(), |author| {
                    let prefix = keys::by_author_prefix(&author);
                    async move {
                        let page = self.store.scan(KeyRange::prefix(prefix), NEWEST_KEPT, Direction::Forward).await?;
                        let ids = page.entries.iter().filter_map(|e| keys::id_of_inverted_key(&e.key)).collect();
                        Ok(Arc::new(Newest { ids, complete: page.next.is_none() }))
                    }
                })
                .await?;
            let below: Vec<u64> =
                newest.ids.iter().copied().filter(|id| cursor.is_none_or(|c| *id < c)).take(limit).collect();
            if below.len() == limit || newest.complete {
                return Ok(below);
            }
        }
        let page =
            self.store.scan(after_cursor(keys::by_author_prefix(author), cursor), limit, Direction::Forward).await?;
        Ok(page.entries.iter().filter_map(|e| keys::id_of_inverted_key(&e.key)).collect())
    }

    /// GetHomeTimeline: posts of everyone `user` follows, newest first, from the inbox merged
    /// with pulls of celebrities (and, past the end of an inbox that misses older posts, of
    /// everyone followed). Posts come from the post cache ([`crate::cache`]).
    pub async fn home_timeline(&self, req: &pb::GetHomeTimelineRequest) -> ServiceResult<(Vec<pb::Post>, String)> {
        let (user, size) = validate::timeline(&req.user, req.page_size)?;
        let fp = token_fingerprint("home", &user);
        let cursor = decode_cursor(&req.page_token, fp)?;
        self.require_known_user(&user).await?;
        // One more than a page tells whether the inbox goes on past this page.
        let inbox =
            self.store.scan(after_cursor(keys::inbox_prefix(&user), cursor), size + 1, Direction::Forward).await?;
        let inbox_ids: Vec<u64> = inbox.entries.iter().filter_map(|e| keys::id_of_inverted_key(&e.key)).collect();
        let inbox_exhausted = inbox_ids.len() <= size;
        let celebs = self.followed_celebrities(&user).await?;
        let mut authors: Vec<String> = celebs;
        // Past the end of the inbox of a user whose inbox misses older posts (trimmed, or
        // older than a follow's backfill reached, or a user from before floors existed): pull
        // from everyone followed. The floor is read after the inbox: a trim raises it before
        // it deletes entries.
        if inbox_exhausted && self.inbox_floor(&user).await? > 0 {
            let following = meshwork_storage::scan_all(
                &self.store,
                KeyRange::prefix(keys::following_prefix(&user)),
                Direction::Forward,
            )
            .await?;
            let known: HashSet<String> = authors.iter().cloned().collect();
            authors.extend(
                following
                    .iter()
                    .filter_map(|e| keys::last_segment(&e.key))
                    .filter(|a| !known.contains(*a))
                    .map(str::to_string),
            );
        }
        let mut pulls =
            futures::stream::iter(authors.into_iter().map(|a| async move { self.pull(&a, cursor, size).await }))
                .buffer_unordered(16);
        let mut pulled: Vec<Vec<u64>> = Vec::new();
        while let Some(ids) = pulls.next().await {
            pulled.push(ids?);
        }
        let mut sources = vec![home::Source { ids: inbox_ids, limit: size + 1 }];
        sources.extend(pulled.into_iter().map(|ids| home::Source { ids, limit: size }));
        let page = home::merge(&sources, size);
        let next = match (page.more, page.ids.last()) {
            (true, Some(last)) => encode_cursor(*last, fp),
            _ => String::new(),
        };
        Ok((self.load_posts(&page.ids).await?, next))
    }

    /// StreamHomeTimeline: new posts of everyone `user` follows, as the event log has them,
    /// from `from_sequence` on (0 = from now). The stream keeps its own view of whom `user`
    /// follows, read at the start and updated by the follow events of the same log, so
    /// pushed and celebrity authors alike come through in log order.
    pub async fn stream_home(
        self: &Arc<Self>,
        req: &pb::StreamHomeTimelineRequest,
    ) -> ServiceResult<BoxStream<'static, ServiceResult<pb::HomeTimelineEvent>>> {
        let user = validate::handle("user", &req.user)?;
        self.require_user(&user, "user").await?;
        let from = match req.from_sequence {
            0 => self.log.head().await? + 1,
            n => n,
        };
        let following = meshwork_storage::scan_all(
            &self.store,
            KeyRange::prefix(keys::following_prefix(&user)),
            Direction::Forward,
        )
        .await?;
        let mut set: HashSet<String> =
            following.iter().filter_map(|e| keys::last_segment(&e.key).map(str::to_string)).collect();
        // Resuming: undo the follows and unfollows made since `from`, newest first, so the
        // stream replays with whom the user followed then (and repeats what it sent then).
        let head = self.log.head().await?;
        let mut changes = Vec::new();
        let mut next = from;
        while next <= head && changes.len() < MAX_RESUME_REPLAY {
            let events = self.log.read(next, 500).await?;
            let Some(last) = events.last() else { break };
            next = last.sequence + 1;
            for event in events.into_iter().filter(|e| e.sequence <= head) {
                match TimelineEvent::decode(&event.payload)? {
                    TimelineEvent::Followed { user: u, target } if u == user => changes.push((true, target)),
                    TimelineEvent::Unfollowed { user: u, target } if u == user => changes.push((false, target)),
                    _ => {}
                }
            }
        }
        for (followed, target) in changes.into_iter().rev() {
            if followed {
                set.remove(&target);
            } else {
                set.insert(target);
            }
        }
        let this = self.clone();
        let stream = futures::stream::unfold(
            (this, self.log.follow(from), set, user),
            |(this, mut events, mut set, user)| async move {
                loop {
                    let event = match events.next().await? {
                        Ok(e) => e,
                        Err(e) => return Some((Err(e), (this, events, set, user))),
                    };
                    let decoded = match TimelineEvent::decode(&event.payload) {
                        Ok(d) => d,
                        Err(e) => return Some((Err(e.into()), (this, events, set, user))),
                    };
                    match decoded {
                        TimelineEvent::Followed { user: u, target } if u == user => {
                            set.insert(target);
                        }
                        TimelineEvent::Unfollowed { user: u, target } if u == user => {
                            set.remove(&target);
                        }
                        TimelineEvent::PostCreated { post_id, author, .. } if set.contains(&author) => {
                            match this.load_post(post_id).await {
                                Ok(Some(post)) => {
                                    let item = pb::HomeTimelineEvent { sequence: event.sequence, post: Some(post) };
                                    return Some((Ok(item), (this, events, set, user)));
                                }
                                // Deleted since: nothing to show.
                                Ok(None) => {}
                                Err(e) => return Some((Err(e), (this, events, set, user))),
                            }
                        }
                        _ => {}
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }
}

/// Returns the wire form of a post.
pub fn wire_post(record: &PostRecord, like_count: i64, repost_count: i64) -> pb::Post {
    pb::Post {
        post_id: record.id.to_string(),
        author: record.author.clone(),
        text: record.text.clone(),
        reply_to: record.reply_to.map(|id| id.to_string()).unwrap_or_default(),
        repost_of: record.repost_of.map(|id| id.to_string()).unwrap_or_default(),
        create_time: Some(fields::timestamp(record.created_ms)),
        like_count,
        repost_count,
    }
}

/// Returns the end of the key range of everything under `prefix` (for range scans that stop
/// at a key inside it).
pub(crate) fn end_of(prefix: &[u8]) -> Vec<u8> {
    prefix_end(prefix).unwrap_or_default()
}
