//! The log store's own embedded database, for a mesh whose store is the embedded one.
//!
//! The log store writes every pushed line twice by design (a write-ahead-log record, then the
//! chunk that holds it), both already LZ4-compressed by the engine. In the mesh's shared
//! embedded database each of those writes was then compressed again by fjall's journal and
//! written a second time as the store's changelog entry (what `watch` replays from a past
//! revision), which the log store never reads: it watches nothing, its replay after a crash is
//! its own write-ahead log. [`open_embedded`] therefore opens a database of its own with
//! [`embedded_options`]: no changelog and no journal compression, and **fsync on every commit
//! as before**, so a push is still acknowledged only once its records are on disk.
//!
//! `meshwork up` opens it in `<data-dir>/logs` and moves in, once, what an earlier version left
//! in the shared store ([`adopt`]). With `memory:` or etcd the log store stays in the mesh's
//! store (with etcd, replicas must share it).

use std::path::Path;
use std::sync::Arc;

use meshwork_storage::embedded::{EmbeddedOptions, EmbeddedStore};
use meshwork_storage::{Direction, DynStore, KeyRange, Mutation, Result};

/// Every key the log store writes starts with this.
pub const KEY_PREFIX: &str = "logging/";

/// Options of the log store's own embedded database: no changelog (`watch` replays nothing of
/// it: nothing watches it), no LZ4 in the journal (the values are LZ4 chunks and write-ahead-log
/// records already; the tables they are flushed into still compress their blocks), and an fsync
/// before every acknowledgement (the default, spelled out: the log store's durability rests on
/// it).
pub fn embedded_options() -> EmbeddedOptions {
    EmbeddedOptions { history_revisions: 0, journal_compression: false, fsync: true, ..EmbeddedOptions::default() }
}

/// Opens (creating if needed) the log store's own embedded database in `dir` with
/// [`embedded_options`], traced like the mesh's store (storage spans and metrics).
pub async fn open_embedded(dir: &Path) -> Result<DynStore> {
    let store: DynStore = Arc::new(EmbeddedStore::open_with(dir, embedded_options()).await?);
    Ok(Arc::new(meshwork_storage::traced::TracedStore::new(store)))
}

/// Keys read by one scan of [`adopt`] (chunks are up to ~1 MiB each).
const ADOPT_PAGE: usize = 64;
/// Most keys and bytes moved by one write of [`adopt`] (under every backend's limits).
const ADOPT_BATCH_KEYS: usize = 256;
const ADOPT_BATCH_BYTES: usize = 8 << 20;

/// Moves every log store key (`logging/...`) from `from` into `to`, then deletes them from
/// `from`, and returns how many keys moved. Call it before the engine opens on `to`. Safe to
/// repeat after a crash at any point: keys are copied with their values unchanged (a copy made
/// twice writes the same value), and they are deleted from `from` only once all of them are in
/// `to`, so `to` holds everything whichever step a crash interrupted.
pub async fn adopt(from: &DynStore, to: &DynStore) -> Result<usize> {
    let range = KeyRange::prefix(KEY_PREFIX);
    let mut moved = Vec::new();
    // Copy.
    let mut next = range.clone();
    loop {
        let page = from.scan(next.clone(), ADOPT_PAGE, Direction::Forward).await?;
        let mut muts = Vec::new();
        let mut bytes = 0;
        for e in page.entries {
            bytes += e.key.len() + e.value.len();
            moved.push(e.key.clone());
            muts.push(Mutation::put(e.key, e.value));
            if muts.len() >= ADOPT_BATCH_KEYS || bytes >= ADOPT_BATCH_BYTES {
                to.write(Vec::new(), std::mem::take(&mut muts)).await?;
                bytes = 0;
            }
        }
        if !muts.is_empty() {
            to.write(Vec::new(), muts).await?;
        }
        match page.next {
            Some(key) => next = KeyRange { start: std::ops::Bound::Included(key), end: range.end.clone() },
            None => break,
        }
    }
    // Then delete.
    for keys in moved.chunks(ADOPT_BATCH_KEYS) {
        from.write(Vec::new(), keys.iter().map(|k| Mutation::delete(k.clone())).collect()).await?;
    }
    Ok(moved.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshwork_storage::memory::MemoryStore;

    #[tokio::test]
    async fn adopt_moves_every_log_key_and_nothing_else() {
        let from: DynStore = Arc::new(MemoryStore::new());
        let to: DynStore = Arc::new(MemoryStore::new());
        let mut muts = vec![Mutation::put("other/a", "keep"), Mutation::put("logginx", "keep")];
        for i in 0..700 {
            muts.push(Mutation::put(format!("logging/t/a/c/{i:05}"), vec![i as u8; 3000]));
        }
        from.write(Vec::new(), muts).await.unwrap();
        assert_eq!(adopt(&from, &to).await.unwrap(), 700);
        let left = meshwork_storage::scan_all(&from, KeyRange::prefix(""), Direction::Forward).await.unwrap();
        let left: Vec<_> = left.into_iter().map(|e| String::from_utf8(e.key).unwrap()).collect();
        assert_eq!(left, ["logginx", "other/a"]);
        let got = meshwork_storage::scan_all(&to, KeyRange::prefix(KEY_PREFIX), Direction::Forward).await.unwrap();
        assert_eq!(got.len(), 700);
        assert!(got.iter().enumerate().all(|(i, e)| e.value == vec![i as u8; 3000]));
        // Nothing left to move the second time.
        assert_eq!(adopt(&from, &to).await.unwrap(), 0);
    }
}
