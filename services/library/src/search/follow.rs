//! Keeps a replica's search index a projection of the store: read the store's revision, scan
//! every title, build a fresh index and publish it, then follow the store's watch of the titles
//! from the next revision, so no write between the scan and the watch is missed (a write seen
//! by both is applied twice, which is harmless: a document is replaced by ISBN). A title record
//! changes on every checkout and hold; only a change of its text rewrites its document. Changes
//! are committed in batches at most every [`COMMIT_EVERY`], so a new title is searchable well
//! within a second. A watch error (or its end) starts over with a new scan; the old index keeps
//! answering until the new one is published.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meshwork_common::record::Record;
use meshwork_storage::{Direction, DynStore, EventKind, KeyRange, WatchEvent, scan_all};
use tantivy::{IndexWriter, ReloadPolicy};

use super::schema::{self, Fields};
use super::{SearchIndex, Searchable};
use crate::keys::Keys;
use crate::model::TitleRecord;

/// Longest time a seen change waits for its commit.
pub const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// Changes that force a commit before the next tick.
const MAX_BATCH: usize = 2_000;

/// Memory of the index writer's arena (tantivy's minimum is 15 MB).
const WRITER_MEMORY: usize = 20_000_000;

/// Pause before a rescan after a failure; doubled while failures follow each other quickly.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause before a rescan.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// A follow that lasted this long was healthy: the next failure pauses briefly again.
const HEALTHY: Duration = Duration::from_secs(30);

/// Why following stopped (then the index is rebuilt from a scan).
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("store: {0}")]
    Store(#[from] meshwork_storage::StoreError),
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("index task: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the store's watch ended")]
    WatchEnded,
}

/// The text digest of every indexed title, by ISBN.
type Digests = HashMap<String, u64>;

/// Builds `index` from the titles under `keys` and follows them until the task is aborted.
pub async fn run(index: Arc<SearchIndex>, store: DynStore, keys: Keys) {
    let mut pause = RETRY_PAUSE;
    loop {
        let started = tokio::time::Instant::now();
        if let Err(e) = follow_once(&index, &store, &keys).await {
            tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "library search index lost the store; rescanning");
        }
        if started.elapsed() >= HEALTHY {
            pause = RETRY_PAUSE;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// One scan, then the watch until it fails.
async fn follow_once(index: &SearchIndex, store: &DynStore, keys: &Keys) -> Result<(), FollowError> {
    let prefix = keys.titles_prefix();
    let revision = store.current_revision().await?;
    let entries = scan_all(store, KeyRange::prefix(prefix.as_bytes()), Direction::Forward).await?;
    let titles = entries.len();
    let (searchable, mut writer, mut digests) = tokio::task::spawn_blocking(move || build(entries)).await??;
    let searchable = Arc::new(searchable);
    index.publish(searchable.clone());
    tracing::info!(titles, revision, "library search index built from a scan");

    let mut changes = store.watch(prefix.as_bytes(), Some(revision + 1)).await?;
    let mut pending: Vec<WatchEvent> = Vec::new();
    let mut tick = tokio::time::interval(COMMIT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(change)) => {
                    pending.push(change);
                    if pending.len() >= MAX_BATCH {
                        (writer, digests) = apply(writer, digests, searchable.clone(), keys.clone(), std::mem::take(&mut pending)).await?;
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(FollowError::WatchEnded),
            },
            _ = tick.tick() => {
                if !pending.is_empty() {
                    (writer, digests) = apply(writer, digests, searchable.clone(), keys.clone(), std::mem::take(&mut pending)).await?;
                }
            }
        }
    }
}

/// Returns the title of a stored record, or `None` for a record this release cannot read
/// (which is logged and left out of search).
fn decode(key: &[u8], value: &[u8]) -> Option<TitleRecord> {
    match TitleRecord::decode(value) {
        Ok(title) => Some(title),
        Err(e) => {
            tracing::error!(error = %e, key = %String::from_utf8_lossy(key), "unreadable title left out of search");
            None
        }
    }
}

/// Builds a new index from scanned title entries (blocking).
fn build(entries: Vec<meshwork_storage::Entry>) -> Result<(Searchable, IndexWriter, Digests), FollowError> {
    let (index, fields) = schema::new_index();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY)?;
    let mut digests = Digests::new();
    for entry in &entries {
        if let Some(title) = decode(&entry.key, &entry.value) {
            writer.add_document(schema::document(&fields, &title))?;
            digests.insert(title.isbn.clone(), schema::text_digest(&title));
        }
    }
    writer.commit()?;
    let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
    Ok((Searchable { index, reader, fields }, writer, digests))
}

/// Applies a batch of changes, commits and reloads the reader (on the blocking pool).
async fn apply(
    mut writer: IndexWriter,
    mut digests: Digests,
    searchable: Arc<Searchable>,
    keys: Keys,
    changes: Vec<WatchEvent>,
) -> Result<(IndexWriter, Digests), FollowError> {
    tokio::task::spawn_blocking(move || {
        let fields: &Fields = &searchable.fields;
        let mut changed = false;
        for change in &changes {
            let Some(isbn) = keys.isbn_of(&change.key) else { continue };
            let title = match change.kind {
                EventKind::Put => decode(&change.key, &change.value),
                EventKind::Delete => None,
            };
            let digest = title.as_ref().map(schema::text_digest);
            if digest.is_some() && digests.get(isbn) == digest.as_ref() {
                continue;
            }
            writer.delete_term(schema::isbn_term(fields, isbn));
            digests.remove(isbn);
            if let (Some(title), Some(digest)) = (title, digest) {
                writer.add_document(schema::document(fields, &title))?;
                digests.insert(isbn.to_string(), digest);
            }
            changed = true;
        }
        if changed {
            writer.commit()?;
            searchable.reader.reload()?;
        }
        Ok((writer, digests))
    })
    .await?
}
