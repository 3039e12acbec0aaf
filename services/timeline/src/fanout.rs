//! The fan-out of pushed posts, durable and shared between replicas, and the upkeep of home
//! inboxes.
//!
//! 1. `CreatePost` commits the post with a `post.created` event (the kit's transactional
//!    outbox) and returns.
//! 2. The event consumer ([`Timeline::run_consumer`], one per replica; its handlers are
//!    idempotent) plans each pushed post: it cuts the author's follower list into chunks and
//!    writes, in ONE conditional write (the job key must be absent and the post unchanged),
//!    the job, one task per chunk and a pending marker per task. A crash before that write
//!    leaves no plan (the event is handled again); after it, the plan is whole.
//! 3. Workers on every replica ([`Timeline::run_workers`]) scan the pending markers and claim
//!    a task by compare-and-set on its record: owner and lease expiry (the service clock), so
//!    a crashed worker's task is taken over once its lease runs out. A worker writes its
//!    chunk batch by batch; each batch is one store write that puts the batch's inbox entries
//!    AND advances the task's checkpoint (last follower written, count written, lease renewed)
//!    under the condition that the task record is still at the version this worker last wrote
//!    and that each follower still follows. So a batch lands exactly once: a worker that lost
//!    its lease (or was killed) cannot write a batch another worker redoes, and one that
//!    resumes starts after the checkpoint committed with the last batch. The last batch marks
//!    the task done and deletes its pending marker in the same write.
//! 4. An inbox entry's key holds the post id (`timeline/inbox/<user>/<inverted id>`), so the
//!    follow backfill, a redone event and the fan-out all write the same key: a follower has
//!    a post at most once whatever the interleaving.
//!
//! An inbox misses nothing its owner follows (up to the fan-out's lag) until it is trimmed or
//! a follow backfills only the newest [`Config::inbox_limit`](crate::Config) posts of a
//! prolific author; both raise the inbox's floor (`timeline/inbox-floor/<user>`, 0 from
//! CreateUser on, raised before the trim deletes anything), and only a page that reaches past
//! the inbox's entries of a user whose floor is above 0 (or who has none: made before floors
//! existed) pulls from everyone followed.
//!
//! Deletion cancels the post's unfinished tasks (compare-and-set, so their workers stop at
//! their next batch) and then deletes the post's entry from every follower's inbox. Inboxes
//! keep their newest [`Config::inbox_limit`](crate::Config) entries: a worker trims an inbox
//! after about one write in [`TRIM_EVERY`] to it, so an inbox is bounded without a read per
//! write.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::events::Event;
use meshwork_common::record::Record;
use meshwork_proto::pb::timeline::v1 as pb;
use meshwork_storage::{
    Condition, Direction, Entry, EventKind, KeyRange, Mutation, StoreError, WatchEvent, scan_stream, transact,
};
use tokio::task::JoinSet;

use crate::keys;
use crate::model::{FanoutJob, FanoutTask, PostRecord, TimelineEvent};
use crate::service::{Timeline, end_of};
use crate::validate;

/// An inbox is trimmed after about one write in this many to it.
pub const TRIM_EVERY: u64 = 128;

/// Most inbox entries one fan-out batch writes.
const MAX_BATCH: usize = 500;

/// A worker loop advances the persisted pending mark at most once in this long.
const MARK_EVERY: Duration = Duration::from_secs(1);

/// What this replica's fan-out workers did (for tests, logs and benchmarks).
#[derive(Debug, Default)]
pub struct FanoutStats {
    inbox_writes: AtomicU64,
    batches: AtomicU64,
    tasks_done: AtomicU64,
    takeovers: AtomicU64,
    mark_advances: AtomicU64,
    first_scan_from: OnceLock<Vec<u8>>,
}

impl FanoutStats {
    /// Returns the inbox entries this replica's workers committed.
    pub fn inbox_writes(&self) -> u64 {
        self.inbox_writes.load(Ordering::Relaxed)
    }

    /// Returns the batches (store writes) this replica's workers committed.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Returns the tasks this replica's workers finished.
    pub fn tasks_done(&self) -> u64 {
        self.tasks_done.load(Ordering::Relaxed)
    }

    /// Returns the tasks this replica's workers took over from another worker's lapsed lease.
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Ordering::Relaxed)
    }

    /// Returns how often this replica's workers raised the persisted pending mark.
    pub fn mark_advances(&self) -> u64 {
        self.mark_advances.load(Ordering::Relaxed)
    }

    /// Returns the key this replica's first scan of the pending markers started at (the
    /// persisted mark it read at start, or the prefix), once it has scanned.
    pub fn first_scan_from(&self) -> Option<&[u8]> {
        self.first_scan_from.get().map(Vec::as_slice)
    }
}

/// Returns whether writing post `id` to `user`'s inbox should trigger a trim of that inbox.
fn trim_due(user: &str, id: u64) -> bool {
    let h = user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (h ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15)).rotate_left(17).is_multiple_of(TRIM_EVERY)
}

fn exclusive_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

impl Timeline {
    /// Returns the inbox entries written per store transaction on this backend.
    pub(crate) fn batch_size(&self) -> usize {
        if self.config.batch_size > 0 {
            return self.config.batch_size;
        }
        // Each follower costs a condition and a put; four more operations go with a batch.
        let ops = self.store.limits().max_ops_per_write;
        (ops.saturating_sub(4) / 2).clamp(1, MAX_BATCH)
    }

    /// Writes (without conditions) as many `mutations` per store write as the backend allows.
    async fn write_batched(&self, mutations: Vec<Mutation>, conditions: &[Condition]) -> ServiceResult<()> {
        let per = self.store.limits().max_ops_per_write.saturating_sub(conditions.len() + 1).clamp(1, 1000);
        let mut rest = mutations;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(per));
            self.store.write(conditions.to_vec(), std::mem::replace(&mut rest, tail)).await?;
        }
        Ok(())
    }

    /// Follows the event log forever (plans fan-outs, cleans up after deletions, backfills
    /// and cleans inboxes after follows). Returns only on an error retrying cannot fix.
    pub async fn run_consumer(&self) -> ServiceResult<()> {
        self.log.consumer("fanout").run(|event| Box::pin(async move { self.handle_event(&event).await })).await
    }

    async fn handle_event(&self, event: &Event) -> ServiceResult<()> {
        let decoded = match TimelineEvent::decode(&event.payload) {
            Ok(d) => d,
            Err(e) => {
                // Retrying cannot fix it; skipping keeps the other events flowing.
                tracing::error!(error = %e, sequence = event.sequence, "undecodable timeline event skipped");
                return Ok(());
            }
        };
        match decoded {
            TimelineEvent::PostCreated { post_id, author, pushed: true } => self.plan(post_id, &author).await,
            TimelineEvent::PostCreated { .. } => Ok(()),
            TimelineEvent::PostDeleted { post_id, author } => self.unfan(post_id, &author).await,
            TimelineEvent::Followed { user, target } => self.backfill(&user, &target).await,
            TimelineEvent::Unfollowed { user, target } => self.remove_from_inbox(&user, &target).await,
        }
    }

    /// Plans the fan-out of post `id` (idempotent: a planned post is left alone).
    pub async fn plan(&self, id: u64, author: &str) -> ServiceResult<()> {
        for _ in 0..16 {
            if self.store.get(&keys::job(id)).await?.is_some() {
                return Ok(());
            }
            let Some(post) = self.store.get(&keys::post(id)).await? else {
                return Ok(()); // deleted before its fan-out began
            };
            let followers = meshwork_storage::scan_all(
                &self.store,
                KeyRange::prefix(keys::followers_prefix(author)),
                Direction::Forward,
            )
            .await?;
            let names: Vec<&str> = followers.iter().filter_map(|e| keys::last_segment(&e.key)).collect();
            let per = self.config.chunk_size.max(names.len().div_ceil(self.config.max_chunks.max(1))).max(1);
            let chunks: Vec<&[&str]> = names.chunks(per).collect();
            let job = FanoutJob {
                post_id: id,
                author: author.to_string(),
                followers: names.len() as u64,
                chunks: chunks.len() as u32,
                planned_ms: self.clock.now_ms(),
            };
            let mut mutations = vec![Mutation::put(keys::job(id), job.encode()?)];
            let lowest = (!chunks.is_empty()).then(|| keys::pending(id, 0));
            for (i, chunk) in chunks.iter().enumerate() {
                let task = FanoutTask {
                    post_id: id,
                    chunk: i as u32,
                    author: author.to_string(),
                    start: chunk.first().map(|s| s.to_string()).unwrap_or_default(),
                    end: chunks.get(i + 1).and_then(|next| next.first()).map(|s| s.to_string()),
                    total: chunk.len() as u64,
                    written: 0,
                    checkpoint: None,
                    done: false,
                    cancelled: false,
                    owner: String::new(),
                    lease_until_ms: 0,
                    takeovers: 0,
                    done_ms: 0,
                };
                mutations.push(Mutation::put(keys::task(id, i as u32), task.encode()?));
                mutations.push(Mutation::put(keys::pending(id, i as u32), Vec::new()));
            }
            let conditions = vec![Condition::Absent(keys::job(id)), Condition::Version(keys::post(id), post.version)];
            // The markers go in with the pending mark's condition (see [`PendingMark`]); a
            // conflict on the mark alone (a worker advanced it) retries just the write.
            for _ in 0..16 {
                let (mut conditions, mut mutations) = (conditions.clone(), mutations.clone());
                let mut version = 0;
                if let Some(lowest) = &lowest {
                    let mark;
                    (mark, version) = PendingMark::read(&self.store).await?;
                    conditions.push(PendingMark::condition(version));
                    if let Some(lowered) = mark.lowered_for(lowest) {
                        mutations.push(Mutation::put(keys::pending_mark(), lowered.encode()));
                    }
                }
                match self.store.write(conditions, mutations).await {
                    Ok(_) => {
                        tracing::debug!(post = id, followers = job.followers, chunks = job.chunks, "fan-out planned");
                        return Ok(());
                    }
                    Err(StoreError::Conflict { .. }) => {
                        if lowest.is_some() && PendingMark::read(&self.store).await?.1 != version {
                            continue;
                        }
                        break; // planned by another replica, or the post changed: look again
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(ServiceError::Aborted(format!("could not plan the fan-out of post {id}")))
    }

    /// Undoes the fan-out of a deleted post: cancels its unfinished tasks, then deletes its
    /// entry from every follower's inbox and its likes and repost markers.
    pub async fn unfan(&self, id: u64, author: &str) -> ServiceResult<()> {
        let tasks =
            meshwork_storage::scan_all(&self.store, KeyRange::prefix(keys::tasks_prefix(id)), Direction::Forward)
                .await?;
        for entry in tasks {
            transact(&self.store, |tx| {
                let key = entry.key.clone();
                Box::pin(async move {
                    let Some(v) = tx.get(&key).await? else { return Ok::<_, ServiceError>(()) };
                    let mut task = FanoutTask::decode(&v.value)?;
                    if task.done {
                        return Ok(());
                    }
                    task.done = true;
                    task.cancelled = true;
                    tx.put(key, task.encode()?);
                    tx.delete(keys::pending(task.post_id, task.chunk));
                    Ok(())
                })
            })
            .await?;
        }
        let mut followers =
            scan_stream(self.store.clone(), KeyRange::prefix(keys::followers_prefix(author)), Direction::Forward, 0);
        let mut deletes = Vec::new();
        while let Some(entry) = followers.next().await {
            if let Some(user) = keys::last_segment(&entry?.key) {
                deletes.push(Mutation::delete(keys::inbox(user, id)));
            }
        }
        for prefix in [keys::likes_prefix(id), keys::reposts_prefix(id)] {
            let entries = meshwork_storage::scan_all(&self.store, KeyRange::prefix(prefix), Direction::Forward).await?;
            deletes.extend(entries.into_iter().map(|e| Mutation::delete(e.key)));
        }
        self.write_batched(deletes, &[]).await
    }

    /// Writes `target`'s newest posts into `user`'s inbox while `user` follows `target` (each
    /// batch is conditional on the follow, so a backfill racing an unfollow writes nothing
    /// after it). Celebrities are pulled at read time: nothing to write.
    pub async fn backfill(&self, user: &str, target: &str) -> ServiceResult<()> {
        let Some(edge) = self.store.get(&keys::following(user, target)).await? else { return Ok(()) };
        if self.store.get(&keys::celeb(target)).await?.is_some() {
            return Ok(());
        }
        let ids = self.pull(target, None, self.config.inbox_limit).await?;
        if ids.len() >= self.config.inbox_limit
            && let Some(oldest) = ids.last()
        {
            // The target's older posts stay out of the inbox: readers past this point pull.
            self.raise_inbox_floor(user, *oldest).await?;
        }
        let puts: Vec<Mutation> =
            ids.iter().map(|id| Mutation::put(keys::inbox(user, *id), target.as_bytes().to_vec())).collect();
        match self.write_batched(puts, &[Condition::Version(keys::following(user, target), edge.version)]).await {
            Ok(()) | Err(ServiceError::Aborted(_)) => {}
            Err(e) => return Err(e),
        }
        self.trim_inbox(user).await.map(|_| ())
    }

    /// Deletes `target`'s posts from `user`'s inbox while `user` does not follow `target`.
    pub async fn remove_from_inbox(&self, user: &str, target: &str) -> ServiceResult<()> {
        let entries =
            meshwork_storage::scan_all(&self.store, KeyRange::prefix(keys::inbox_prefix(user)), Direction::Forward)
                .await?;
        let deletes: Vec<Mutation> =
            entries.into_iter().filter(|e| e.value == target.as_bytes()).map(|e| Mutation::delete(e.key)).collect();
        match self.write_batched(deletes, &[Condition::Absent(keys::following(user, target))]).await {
            // Followed again meanwhile: the entries stay.
            Ok(()) | Err(ServiceError::Aborted(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the entries of `user`'s inbox past the newest [`Config::inbox_limit`](crate::Config).
    pub async fn trim_inbox(&self, user: &str) -> ServiceResult<u64> {
        let mut entries = scan_stream(
            self.store.clone(),
            KeyRange::prefix(keys::inbox_prefix(user)),
            Direction::Forward,
            self.config.inbox_limit + 200,
        )
        .skip(self.config.inbox_limit);
        let mut deletes = Vec::new();
        while let Some(entry) = entries.next().await {
            deletes.push(Mutation::delete(entry?.key));
        }
        // The floor first: a reader that finds the entries gone then finds the floor raised.
        if let Some(newest) = deletes.first().and_then(|m| keys::id_of_inverted_key(m.key())) {
            self.raise_inbox_floor(user, newest).await?;
        }
        let n = deletes.len() as u64;
        self.write_batched(deletes, &[]).await?;
        Ok(n)
    }

    /// Raises `user`'s inbox floor to at least `id`: from now on, a reader that runs past the
    /// inbox's entries pulls from everyone followed (see [`Timeline::inbox_floor`]).
    pub async fn raise_inbox_floor(&self, user: &str, id: u64) -> ServiceResult<()> {
        let key = keys::inbox_floor(user);
        transact(&self.store, |tx| {
            let key = key.clone();
            Box::pin(async move {
                // No floor: a user from before floors existed, whose inbox may have been cut
                // anywhere; it stays unknown (every page past the inbox pulls).
                let Some(found) = tx.get(&key).await? else { return Ok::<_, ServiceError>(()) };
                let current = found.value.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
                if current < id {
                    tx.put(key, id.to_be_bytes().to_vec());
                }
                Ok::<_, ServiceError>(())
            })
        })
        .await
    }

    /// Returns `user`'s inbox floor: post ids at or below it may be missing from the inbox
    /// (trimmed, or older than a follow's backfill reached), so a page that reaches past the
    /// inbox's entries must pull from everyone followed; 0 when the inbox misses nothing, and
    /// `u64::MAX` for a user from before floors existed (anything may be missing).
    pub async fn inbox_floor(&self, user: &str) -> ServiceResult<u64> {
        Ok(match self.store.get(&keys::inbox_floor(user)).await? {
            Some(v) => v.value.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX),
            None => u64::MAX,
        })
    }

    /// Runs this replica's fan-out workers forever: claims pending tasks (up to
    /// [`Config::workers`](crate::Config) at once) and writes them. Woken by the store's watch
    /// of the pending markers, and every poll interval for leases that ran out.
    pub async fn run_workers(self: Arc<Self>) {
        let mut running: JoinSet<()> = JoinSet::new();
        let mut mine: HashSet<Vec<u8>> = HashSet::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let mut watch = None;
        let mut floor = PendingFloor::default();
        // The persisted mark as this replica last read or wrote it, and when it last tried to
        // advance it.
        let mut mark = PendingMark::default();
        let mut mark_tried = Instant::now();
        loop {
            while let Ok(key) = done_rx.try_recv() {
                mine.remove(&key);
            }
            while running.try_join_next().is_some() {}
            if watch.is_none() {
                floor = PendingFloor::default();
                watch = self.store.watch(&keys::pending_prefix(), None).await.ok();
                // Read after the watch is open: a marker put below the mark after this read
                // comes through the watch; one put before it lowered the mark it was put with.
                if watch.is_some() {
                    match PendingMark::read(&self.store).await {
                        Ok((m, _)) => {
                            floor = PendingFloor::starting_at(m.confirmed.clone());
                            mark = m;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the pending mark failed; scanning from the start")
                        }
                    }
                }
            }
            let mut claimed = 0;
            let range = floor.range();
            if let std::ops::Bound::Included(start) = &range.start {
                // Recorded once: the key is cloned only by the first scan.
                self.stats.first_scan_from.get_or_init(|| start.clone());
            }
            match self.store.scan(range, 256, Direction::Forward).await {
                Ok(page) => {
                    floor.scanned(&page.entries);
                    // Also now and then when it is not above the mark this worker knows: another
                    // replica may have lowered the mark since.
                    if let Some(target) =
                        floor.floor.clone().filter(|f| *f > mark.confirmed || mark_tried.elapsed() >= 10 * MARK_EVERY)
                        && mark_tried.elapsed() >= MARK_EVERY
                    {
                        mark_tried = Instant::now();
                        match self.advance_pending_mark(target).await {
                            Ok(m) => mark = m,
                            Err(e) => tracing::debug!(error = %e, "advancing the pending mark failed"),
                        }
                    }
                    for entry in page.entries {
                        if running.len() >= self.config.workers {
                            break;
                        }
                        let Some((id, chunk)) = keys::parse_pending(&entry.key) else { continue };
                        let key = keys::task(id, chunk);
                        if mine.contains(&key) {
                            continue;
                        }
                        match self.try_claim(&key).await {
                            Ok(Some((task, version))) => {
                                claimed += 1;
                                mine.insert(key.clone());
                                let (this, done_tx) = (self.clone(), done_tx.clone());
                                running.spawn(async move {
                                    if let Err(e) = this.work(&key, task, version).await {
                                        tracing::warn!(error = %e, "fan-out task stopped; its lease will lapse");
                                        // Not straight back at a store that just failed.
                                        tokio::time::sleep(Duration::from_millis(200)).await;
                                    }
                                    let _ = done_tx.send(key);
                                });
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "claiming a fan-out task failed"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "scanning pending fan-out tasks failed"),
            }
            if claimed > 0 && running.len() < self.config.workers {
                continue;
            }
            // Wait for a change of the pending markers, a finished task or the poll interval.
            let poll = tokio::time::sleep(self.config.poll_interval);
            tokio::select! {
                changed = async {
                    match watch.as_mut() {
                        Some(w) => w.next().await,
                        None => futures::future::pending().await,
                    }
                } => {
                    // This change and the others already delivered, then one scan.
                    let mut next = Some(changed);
                    while let Some(changed) = next.take() {
                        match changed {
                            Some(Ok(event)) => floor.changed(&event),
                            _ => {
                                watch = None;
                                break;
                            }
                        }
                        next = watch.as_mut().and_then(|w| w.next().now_or_never());
                    }
                }
                Some(key) = done_rx.recv() => { mine.remove(&key); }
                _ = poll => {}
            }
        }
    }

    /// Raises the persisted pending mark towards `target` (a key below which this worker's
    /// floor knows no live marker) as far as is safe, in two steps (see [`PendingMark`]):
    /// propose `target`, then scan from the confirmed mark up to it and confirm the first live
    /// marker found, or `target` itself, unless a planner touched the mark meanwhile. Returns
    /// the mark as it now stands (as far as this worker knows).
    pub(crate) async fn advance_pending_mark(&self, target: Vec<u8>) -> ServiceResult<PendingMark> {
        match self.propose_pending_mark(&target).await? {
            (current, Some(proposed)) => self.confirm_pending_mark(current, target, proposed).await,
            (current, None) => Ok(current),
        }
    }

    /// The first step of [`Timeline::advance_pending_mark`]: returns the mark as read and
    /// the version of the proposal written, or no version when the mark is at `target` already.
    async fn propose_pending_mark(&self, target: &[u8]) -> ServiceResult<(PendingMark, Option<u64>)> {
        let (current, version) = PendingMark::read(&self.store).await?;
        if current.confirmed.as_slice() >= target {
            return Ok((current, None));
        }
        let proposal = PendingMark { confirmed: current.confirmed.clone(), proposed: Some(target.to_vec()) };
        let proposed = self
            .store
            .write(vec![PendingMark::condition(version)], vec![Mutation::put(keys::pending_mark(), proposal.encode())])
            .await?;
        Ok((current, Some(proposed)))
    }

    /// The second step of [`Timeline::advance_pending_mark`].
    async fn confirm_pending_mark(
        &self,
        current: PendingMark,
        target: Vec<u8>,
        proposed: u64,
    ) -> ServiceResult<PendingMark> {
        // Every marker put before the proposal is visible to this scan; every one put after
        // it (below the target) was written with the proposal's version and rewrote the mark.
        let page = self
            .store
            .scan(KeyRange::between(current.confirmed.clone(), target.clone()), 1, Direction::Forward)
            .await?;
        let confirmed = match page.entries.into_iter().next() {
            Some(live) => live.key,
            None => target,
        };
        let mark = PendingMark { confirmed: confirmed.max(current.confirmed), proposed: None };
        self.store
            .write(
                vec![Condition::Version(keys::pending_mark(), proposed)],
                vec![Mutation::put(keys::pending_mark(), mark.encode())],
            )
            .await?;
        self.stats.mark_advances.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(mark = %String::from_utf8_lossy(&mark.confirmed), "pending mark advanced");
        Ok(mark)
    }

    /// Returns the persisted pending mark: no live pending marker lies below this key (the
    /// prefix when there is no mark yet).
    pub async fn pending_mark(&self) -> ServiceResult<Vec<u8>> {
        Ok(PendingMark::read(&self.store).await?.0.confirmed)
    }

    /// Claims the task at `key` when it is not done and nobody holds a live lease on it;
    /// returns it with the version this claim wrote.
    async fn try_claim(&self, key: &[u8]) -> ServiceResult<Option<(FanoutTask, u64)>> {
        let Some(found) = self.store.get(key).await? else { return Ok(None) };
        let mut task = FanoutTask::decode(&found.value)?;
        let now = self.clock.now_ms();
        if task.done || (!task.owner.is_empty() && task.owner != self.worker_id && task.lease_until_ms > now) {
            return Ok(None);
        }
        let takeover = !task.owner.is_empty() && task.owner != self.worker_id;
        if takeover {
            task.takeovers += 1;
        }
        task.owner = self.worker_id.clone();
        task.lease_until_ms = now + self.config.lease.as_millis() as i64;
        match self
            .store
            .write(
                vec![Condition::Version(key.to_vec(), found.version)],
                vec![Mutation::put(key.to_vec(), task.encode()?)],
            )
            .await
        {
            Ok(version) => {
                if takeover {
                    self.stats.takeovers.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(post = task.post_id, chunk = task.chunk, "took over a lapsed fan-out task");
                }
                Ok(Some((task, version)))
            }
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a claimed task's chunk, batch by batch, from its checkpoint on.
    async fn work(&self, key: &[u8], mut task: FanoutTask, mut version: u64) -> ServiceResult<()> {
        let batch = self.batch_size();
        let prefix = keys::followers_prefix(&task.author);
        let end = match &task.end {
            Some(e) => keys::follower(&task.author, e),
            None => end_of(&prefix),
        };
        let mut conflicts = 0u32;
        loop {
            if !self.config.batch_pause.is_zero() {
                tokio::time::sleep(self.config.batch_pause).await;
            }
            let start = match &task.checkpoint {
                Some(last) => exclusive_after(&keys::follower(&task.author, last)),
                None => keys::follower(&task.author, &task.start),
            };
            let page = self.store.scan(KeyRange::between(start, end.clone()), batch, Direction::Forward).await?;
            let finished = page.next.is_none();
            let mut next = task.clone();
            let mut conditions = vec![Condition::Version(key.to_vec(), version)];
            let mut mutations = Vec::with_capacity(page.entries.len() + 2);
            let mut users = Vec::with_capacity(page.entries.len());
            for entry in &page.entries {
                let Some(user) = keys::last_segment(&entry.key) else { continue };
                conditions.push(Condition::Version(entry.key.clone(), entry.version));
                mutations.push(Mutation::put(keys::inbox(user, task.post_id), task.author.as_bytes().to_vec()));
                users.push(user.to_string());
            }
            next.written += users.len() as u64;
            if let Some(last) = users.last() {
                next.checkpoint = Some(last.clone());
            }
            next.lease_until_ms = self.clock.now_ms() + self.config.lease.as_millis() as i64;
            if finished {
                next.done = true;
                next.done_ms = self.clock.now_ms();
                mutations.push(Mutation::delete(keys::pending(task.post_id, task.chunk)));
            }
            mutations.push(Mutation::put(key.to_vec(), next.encode()?));
            match self.store.write(conditions, mutations).await {
                Ok(v) => {
                    version = v;
                    task = next;
                    conflicts = 0;
                    self.stats.inbox_writes.fetch_add(users.len() as u64, Ordering::Relaxed);
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    if finished {
                        self.stats.tasks_done.fetch_add(1, Ordering::Relaxed);
                    }
                    for user in users.iter().filter(|u| trim_due(u, task.post_id)) {
                        if let Err(e) = self.trim_inbox(user).await {
                            tracing::warn!(error = %e, %user, "inbox trim failed");
                        }
                    }
                    if finished {
                        return Ok(());
                    }
                }
                Err(StoreError::Conflict { .. }) => {
                    // Either the task moved on without us (lease lost, cancelled) or a
                    // follower of this batch unfollowed: look at the task to know which.
                    let current = self.store.get(key).await?;
                    match current {
                        Some(v) if v.version == version => {
                            conflicts += 1;
                            if conflicts > 32 {
                                return Err(ServiceError::Aborted("the follower list keeps changing".into()));
                            }
                        }
                        _ => return Ok(()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// GetFanoutStatus.
    pub async fn fanout_status(&self, post_id: &str) -> ServiceResult<pb::GetFanoutStatusResponse> {
        let id = validate::post_id("post_id", post_id)?;
        let post = match self.store.get(&keys::post(id)).await? {
            Some(v) => Some(PostRecord::decode(&v.value)?),
            None => None,
        };
        let job = match self.store.get(&keys::job(id)).await? {
            Some(v) => Some(FanoutJob::decode(&v.value)?),
            None => None,
        };
        let mut status = pb::GetFanoutStatusResponse { post_id: id.to_string(), ..Default::default() };
        match (&post, &job) {
            (None, None) => return Err(ServiceError::not_found(format!("post {id}"))),
            (Some(p), _) if !p.pushed => {
                status.mode = pb::FanoutMode::Pull as i32;
                status.followers_total = p.followers_at_post as i64;
                status.complete = true;
                return Ok(status);
            }
            _ => status.mode = pb::FanoutMode::Push as i32,
        }
        let Some(job) = job else {
            return Ok(status); // not planned yet
        };
        status.planned = true;
        status.followers_total = job.followers as i64;
        status.chunks_total = i64::from(job.chunks);
        let tasks =
            meshwork_storage::scan_all(&self.store, KeyRange::prefix(keys::tasks_prefix(id)), Direction::Forward)
                .await?;
        let mut last_done = 0i64;
        for entry in tasks {
            let task = FanoutTask::decode(&entry.value)?;
            last_done = last_done.max(task.done_ms);
            status.inboxes_written += task.written as i64;
            if task.done {
                status.chunks_done += 1;
            } else {
                status.inboxes_pending += task.total.saturating_sub(task.written) as i64;
            }
        }
        status.complete = status.chunks_done == status.chunks_total;
        if status.complete {
            let created = post.map_or(job.planned_ms, |p| p.created_ms);
            let end = if last_done > 0 { last_done } else { job.planned_ms };
            let lag = std::time::Duration::from_millis(end.saturating_sub(created).max(0) as u64);
            status.fanout_lag =
                Some(prost_types::Duration { seconds: lag.as_secs() as i64, nanos: lag.subsec_nanos() as i32 });
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_come_about_once_in_trim_every_writes() {
        let hits = (0..100_000u64).filter(|i| trim_due("someone", i * 4096 + 17)).count() as u64;
        let expected = 100_000 / TRIM_EVERY;
        assert!(hits > expected / 2 && hits < expected * 2, "{hits} trims, expected about {expected}");
    }
}

/// The pending markers' persisted low-water mark (`timeline/fanout/pending-mark`), shared by
/// every replica, so that a replica starting up scans from it instead of from the start of
/// the prefix, over every done task's tombstone. Invariant: no live marker lies below
/// `confirmed` (an absent mark stands for the prefix).
///
/// - A planner reads the mark and writes its markers under the condition that the mark is
///   still at that version (or still absent). When its lowest marker is below `confirmed`
///   (a replica whose clock is behind, an old event planned late) or below a `proposed`
///   key, the same write lowers `confirmed` to it and drops the proposal. The marker and the
///   lowered mark land together or not at all: no crash in between.
/// - A worker advances it in two conditional writes, at most once per [`MARK_EVERY`]: it
///   writes `proposed` = the key it wants (its floor), then scans `[confirmed, proposed)`,
///   and writes `confirmed` = the first live marker found, or `proposed` if none, under the
///   condition that the mark is still at the proposal's version. A marker committed before
///   the proposal is seen by that scan (reads are linearizable on every backend); a planner
///   that commits after it was conditioned on the proposal's version or a later one, so it saw
///   the proposal and, its marker being below it, rewrote the mark: the confirmation fails.
///   A crash between the two writes leaves a proposal nobody confirmed, which changes
///   nothing (`confirmed` is what starting replicas read).
///
/// Workers' floors keep lowering themselves on watched puts as before; the mark only sets
/// where a fresh floor starts (read after the watch is open).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PendingMark {
    confirmed: Vec<u8>,
    proposed: Option<Vec<u8>>,
}

impl PendingMark {
    /// Reads the mark and its version (0 = absent; an unreadable mark counts as the prefix).
    async fn read(store: &meshwork_storage::DynStore) -> ServiceResult<(PendingMark, u64)> {
        Ok(match store.get(&keys::pending_mark()).await? {
            Some(v) => (PendingMark::decode(&v.value), v.version),
            None => (PendingMark { confirmed: keys::pending_prefix(), proposed: None }, 0),
        })
    }

    /// The condition that the mark is still as read (version 0: absent).
    fn condition(version: u64) -> Condition {
        match version {
            0 => Condition::Absent(keys::pending_mark()),
            v => Condition::Version(keys::pending_mark(), v),
        }
    }

    /// `confirmed`, then a newline and `proposed` if any (keys hold no newline).
    fn encode(&self) -> Vec<u8> {
        let mut v = self.confirmed.clone();
        if let Some(p) = &self.proposed {
            v.push(b'\n');
            v.extend_from_slice(p);
        }
        v
    }

    fn decode(value: &[u8]) -> PendingMark {
        let (prefix, end) = (keys::pending_prefix(), end_of(&keys::pending_prefix()));
        let mut parts = value.splitn(2, |b| *b == b'\n');
        let confirmed = parts.next().filter(|c| *c >= prefix.as_slice() && *c <= end.as_slice());
        match confirmed {
            Some(c) => PendingMark { confirmed: c.to_vec(), proposed: parts.next().map(<[u8]>::to_vec) },
            None => PendingMark { confirmed: prefix, proposed: None },
        }
    }

    /// Returns the mark to write with a marker at `lowest`, if that marker is below it.
    fn lowered_for(&self, lowest: &[u8]) -> Option<PendingMark> {
        let below = lowest < self.confirmed.as_slice() || self.proposed.as_deref().is_some_and(|p| lowest < p);
        below.then(|| PendingMark { confirmed: self.confirmed.as_slice().min(lowest).to_vec(), proposed: None })
    }
}

/// Where the workers' next scan of the pending markers starts. A marker is deleted when its
/// task is done, and since marker keys grow with post ids, the tombstones of done tasks sit
/// below the live markers: a scan from the start of the prefix steps over every fan-out not yet
/// compacted away (about 6 M instructions a scan after a few thousand posts, four times a
/// second and once per change). The floor keeps this invariant: no live marker lies below it.
/// It starts at the persisted [`PendingMark`] read after the watch opened, or the prefix (and
/// again whenever the watch restarts); a scan that finds markers raises it to the first; a
/// scan that finds none raises it past every key this worker has seen (all of them done), or
/// to the end of the prefix when it has seen none; a marker put below it (another replica's
/// clock behind, a retry) lowers it again, through the watch that was open before the scan.
#[derive(Debug, Default)]
struct PendingFloor {
    floor: Option<Vec<u8>>,
    highest_seen: Option<Vec<u8>>,
}

impl PendingFloor {
    fn starting_at(key: Vec<u8>) -> Self {
        PendingFloor { floor: Some(key), highest_seen: None }
    }

    fn range(&self) -> KeyRange {
        let prefix = keys::pending_prefix();
        let end = end_of(&prefix);
        KeyRange::between(self.floor.clone().unwrap_or(prefix), end)
    }

    fn saw(&mut self, key: &[u8]) {
        if self.highest_seen.as_deref().is_none_or(|h| key > h) {
            self.highest_seen = Some(key.to_vec());
        }
    }

    fn scanned(&mut self, entries: &[Entry]) {
        for e in entries {
            self.saw(&e.key);
        }
        self.floor = match entries.first() {
            Some(first) => Some(first.key.clone()),
            // Nothing live: past everything seen (the key right after the highest), or past the
            // whole prefix when nothing was seen (every marker put from now on is watched).
            None => {
                let past = match &self.highest_seen {
                    Some(h) => [h.as_slice(), &[0]].concat(),
                    None => end_of(&keys::pending_prefix()),
                };
                Some(match self.floor.take() {
                    Some(f) => f.max(past),
                    None => past,
                })
            }
        };
    }

    fn changed(&mut self, event: &WatchEvent) {
        self.saw(&event.key);
        if event.kind == EventKind::Put && self.floor.as_deref().is_some_and(|f| event.key.as_slice() < f) {
            self.floor = Some(event.key.clone());
        }
    }
}

#[cfg(test)]
mod floor_tests {
    use super::*;

    fn entry(key: &[u8]) -> Entry {
        Entry { key: key.to_vec(), value: Vec::new(), version: 1 }
    }

    fn event(kind: EventKind, key: &[u8]) -> WatchEvent {
        WatchEvent { kind, key: key.to_vec(), value: Vec::new(), revision: 1 }
    }

    #[test]
    fn the_floor_never_passes_a_live_marker() {
        let (a, b, c) = (keys::pending(10, 0), keys::pending(20, 0), keys::pending(30, 0));
        let mut f = PendingFloor::default();
        assert!(f.range().contains(&a), "starts at the prefix");
        f.scanned(&[entry(&b), entry(&c)]);
        assert!(!f.range().contains(&a) && f.range().contains(&b));
        // b and c done (deleted), nothing live: past c.
        f.changed(&event(EventKind::Delete, &b));
        f.changed(&event(EventKind::Delete, &c));
        f.scanned(&[]);
        assert!(!f.range().contains(&c));
        // A new marker below the floor (a clock behind) lowers it.
        f.changed(&event(EventKind::Put, &a));
        assert!(f.range().contains(&a));
        // One above it is in range anyway.
        let d = keys::pending(40, 1);
        f.changed(&event(EventKind::Put, &d));
        assert!(f.range().contains(&a) && f.range().contains(&d));
    }

    #[test]
    fn a_floor_from_the_mark_goes_past_the_prefix_when_nothing_is_live_and_comes_back_on_a_put() {
        let (a, b) = (keys::pending(10, 0), keys::pending(20, 0));
        let mut f = PendingFloor::starting_at(b.clone());
        assert!(!f.range().contains(&a) && f.range().contains(&b), "starts at the mark");
        f.scanned(&[]);
        assert!(!f.range().contains(&b), "nothing seen, nothing live: past the prefix");
        f.changed(&event(EventKind::Put, &a));
        assert!(f.range().contains(&a) && f.range().contains(&b));
    }

    #[test]
    fn a_marker_below_the_mark_or_its_proposal_lowers_it() {
        let (a, b, c) = (keys::pending(10, 0), keys::pending(20, 0), keys::pending(30, 0));
        let mark = PendingMark { confirmed: b.clone(), proposed: None };
        assert_eq!(mark.lowered_for(&c), None);
        assert_eq!(mark.lowered_for(&a), Some(PendingMark { confirmed: a.clone(), proposed: None }));
        // Between the confirmed mark and a proposal: the proposal goes, the mark stays.
        let proposing = PendingMark { confirmed: a.clone(), proposed: Some(c.clone()) };
        assert_eq!(proposing.lowered_for(&b), Some(PendingMark { confirmed: a.clone(), proposed: None }));
        assert_eq!(PendingMark::decode(&proposing.encode()), proposing);
        // Nonsense reads as the prefix (scan everything), never as a key past the markers.
        for junk in [&b"zzz"[..], b"", b"timeline/a"] {
            assert_eq!(PendingMark::decode(junk).confirmed, keys::pending_prefix());
        }
        let end = end_of(&keys::pending_prefix());
        assert_eq!(PendingMark::decode(&end).confirmed, end);
    }
}

#[cfg(test)]
mod mark_tests {
    use std::sync::Arc;

    use meshwork_common::clock::{Clock, ManualClock, SystemClock};
    use meshwork_storage::DynStore;

    use super::*;
    use crate::{Config, Graph, seed_graph};

    async fn post(t: &Arc<Timeline>, author: &str, text: &str) -> u64 {
        let req = pb::CreatePostRequest {
            request_id: format!("r-{text}"),
            author: author.into(),
            text: text.into(),
            reply_to: String::new(),
        };
        t.create_post(None, &req).await.unwrap().post_id.parse().unwrap()
    }

    /// A planner that commits between a worker's proposal and its confirmation, with a marker
    /// below the proposal, lowers the mark and makes the confirmation fail; one that commits
    /// before the proposal is found by the confirmation's scan.
    #[tokio::test]
    async fn a_marker_planned_during_an_advance_is_never_left_below_the_mark() {
        let store: DynStore = meshwork_test_support::memory_store();
        let graph = Graph::star("mk", 2);
        seed_graph(&store, &SystemClock, &graph).await.unwrap();
        let now = SystemClock.now_ms();
        let replica = |ms: i64| {
            let ctx = meshwork_test_support::context_with_clock(store.clone(), Arc::new(ManualClock::new(ms)));
            Arc::new(Timeline::new(&ctx, Config { run_background: false, ..Config::default() }))
        };
        let (fresh, behind) = (replica(now), replica(now - 3_600_000));
        let author = &graph.users[0];
        let end = end_of(&keys::pending_prefix());

        // A proposal past everything, then a planner (clock behind) puts a marker below it.
        let (current, proposed) = fresh.propose_pending_mark(&end).await.unwrap();
        let old = post(&behind, author, "old").await;
        behind.plan(old, author).await.unwrap();
        let marker = keys::pending(old, 0);
        assert!(fresh.confirm_pending_mark(current, end.clone(), proposed.unwrap()).await.is_err());
        assert!(fresh.pending_mark().await.unwrap() <= marker, "the mark passed a live marker");

        // A marker committed before the proposal: the confirmation stops at it.
        let newer = post(&fresh, author, "new").await;
        fresh.plan(newer, author).await.unwrap();
        let mark = fresh.advance_pending_mark(end.clone()).await.unwrap();
        assert_eq!(mark.confirmed, marker, "stops at the first live marker");
        // Both done: the mark goes past the prefix.
        store.write(vec![], vec![Mutation::delete(marker), Mutation::delete(keys::pending(newer, 0))]).await.unwrap();
        assert_eq!(fresh.advance_pending_mark(end.clone()).await.unwrap().confirmed, end);
        // And a new marker (any clock) lowers it again in its own write.
        let another = post(&fresh, author, "another").await;
        fresh.plan(another, author).await.unwrap();
        assert_eq!(fresh.pending_mark().await.unwrap(), keys::pending(another, 0));
    }
}
