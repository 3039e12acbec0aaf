//! Keeps a replica's search index a projection of the store: read the store's revision, scan
//! every product, build a fresh index and publish it, then follow the store's watch of the
//! products from the next revision, so no write between the scan and the watch is missed (a
//! write seen by both is applied twice, which is harmless: a document is replaced by sku).
//! Changes are applied in batches committed at most every [`COMMIT_EVERY`], and the reader is
//! reloaded after each commit, so a write is searchable well within a second. A watch error
//! (or its end, or a compacted revision) starts over with a new scan; the old index keeps
//! answering until the new one is published.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meshwork_common::record::Record;
use meshwork_storage::{Direction, DynStore, EventKind, KeyRange, WatchEvent, scan_all};
use tantivy::{IndexWriter, ReloadPolicy, TantivyDocument};

use super::schema::{self, Fields};
use super::{SearchIndex, Searchable};
use crate::keys;
use crate::model::ProductRecord;

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

/// Builds `index` from the store and follows it until the task is aborted.
pub async fn run(index: Arc<SearchIndex>, store: DynStore) {
    let mut pause = RETRY_PAUSE;
    loop {
        let started = tokio::time::Instant::now();
        if let Err(e) = follow_once(&index, &store).await {
            tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "search index lost the store; rescanning");
        }
        if started.elapsed() >= HEALTHY {
            pause = RETRY_PAUSE;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// One scan, then the watch until it fails.
async fn follow_once(index: &SearchIndex, store: &DynStore) -> Result<(), FollowError> {
    let revision = store.current_revision().await?;
    let entries = scan_all(store, KeyRange::prefix(keys::PRODUCTS), Direction::Forward).await?;
    let products = entries.len();
    let (searchable, mut writer) = tokio::task::spawn_blocking(move || build(entries)).await??;
    let searchable = Arc::new(searchable);
    index.publish(searchable.clone());
    tracing::info!(products, revision, "search index built from a scan");

    let mut changes = store.watch(keys::PRODUCTS.as_bytes(), Some(revision + 1)).await?;
    let mut pending: Vec<WatchEvent> = Vec::new();
    let mut tick = tokio::time::interval(COMMIT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(change)) => {
                    pending.push(change);
                    if pending.len() >= MAX_BATCH {
                        writer = apply(writer, searchable.clone(), std::mem::take(&mut pending)).await?;
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(FollowError::WatchEnded),
            },
            _ = tick.tick() => {
                if !pending.is_empty() {
                    writer = apply(writer, searchable.clone(), std::mem::take(&mut pending)).await?;
                }
            }
        }
    }
}

/// Returns the document of a stored product, or `None` when it is not searchable (archived,
/// or a record this release cannot read, which is logged).
fn searchable_doc(fields: &Fields, key: &[u8], value: &[u8]) -> Option<TantivyDocument> {
    match ProductRecord::decode(value) {
        Ok(product) if product.is_active() => Some(schema::document(fields, &product, value)),
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, key = %String::from_utf8_lossy(key), "unreadable product left out of search");
            None
        }
    }
}

/// Builds a new index from scanned product entries (blocking).
fn build(entries: Vec<meshwork_storage::Entry>) -> Result<(Searchable, IndexWriter), FollowError> {
    let (index, fields) = schema::new_index();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY)?;
    for entry in &entries {
        if let Some(doc) = searchable_doc(&fields, &entry.key, &entry.value) {
            writer.add_document(doc)?;
        }
    }
    writer.commit()?;
    let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
    Ok((Searchable { index, reader, fields }, writer))
}

/// Applies a batch of changes, commits and reloads the reader (on the blocking pool).
async fn apply(
    mut writer: IndexWriter,
    searchable: Arc<Searchable>,
    changes: Vec<WatchEvent>,
) -> Result<IndexWriter, FollowError> {
    tokio::task::spawn_blocking(move || {
        let fields = &searchable.fields;
        for change in &changes {
            let Some(sku) = keys::sku_of(&change.key) else { continue };
            // Replace by sku: the delete covers every earlier document of the product.
            writer.delete_term(schema::sku_term(fields, sku));
            if change.kind == EventKind::Put
                && let Some(doc) = searchable_doc(fields, &change.key, &change.value)
            {
                writer.add_document(doc)?;
            }
        }
        writer.commit()?;
        searchable.reader.reload()?;
        Ok(writer)
    })
    .await?
}
