//! Query execution: picks streams by the label index, chunks by time and by bloom (a stream's
//! blooms read in batches), then reads the remaining stored chunks a run of neighbours per
//! range scan (a stream's chunk keys sort by time) rather than one read per chunk, and
//! decompresses and runs the pipeline over them in parallel (a bounded number of runs and
//! in-memory blocks at once, each on a blocking thread), merging lines by time or samples into
//! metric series. A stored chunk's text is searched for the query's leading `|=` term before its
//! columns (timestamps, line offsets, metadata) are decoded: a chunk wholly in the range without
//! a match is done after one `memmem` pass over its text (and is not cached). Chunks are
//! decompressed one per core at a time, into buffers a query reuses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;

use crate::chunk::{Bloom, Columns, CorruptChunk, RawBlock};
use crate::engine::{Candidate, ChunkPart, Engine, EngineError};
use crate::labels::LabelSet;
use crate::logql::ast::{LogQuery, MetricQuery};
use crate::logql::metric::{Points, evaluate};
use crate::logql::pipeline::{Hit, Pipeline, ScanStats};
use crate::model::ChunkMeta;

/// Order of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Newest first.
    #[default]
    Backward,
    /// Oldest first.
    Forward,
}

/// What a query did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Chunks overlapping the range (stored and in memory).
    pub chunks_total: u64,
    /// Chunks skipped by their bloom filter.
    pub chunks_skipped_by_bloom: u64,
    /// Lines examined.
    pub lines_scanned: u64,
    /// Bytes examined.
    pub bytes_scanned: u64,
    /// Time spent.
    pub exec_ns: u64,
}

/// Log lines grouped by label set; entries are (ts, line) in the requested order.
pub type StreamsResult = Vec<(LabelSet, Vec<(i64, String)>)>;

/// Work of a scan: a block in memory (a head, a sealed block or a cached chunk), or stored
/// chunks of one stream next to each other in the store, read with one range scan.
enum Unit {
    Mem(Arc<LabelSet>, Arc<Columns>),
    Stored(Arc<LabelSet>, u64, Vec<ChunkMeta>),
}

/// Most chunks one read fetches, and most stored bytes: large enough that a read costs little
/// beside the bytes it moves, small enough to keep both cores busy and a response small.
const RUN_CHUNKS: usize = 8;
const RUN_BYTES: u64 = 8 << 20;

/// Splits a stream's blocks into units: the bloom filters (read in batches) drop chunks that
/// cannot hold a required term, cached chunks are taken from the cache, and the rest are
/// grouped into runs of neighbouring chunks. Returns the units and how many chunks the blooms
/// skipped.
async fn plan(
    engine: &Engine,
    tenant: &str,
    candidate: Candidate,
    terms: &[String],
    max_run_bytes: u64,
) -> Result<(Vec<Unit>, u64), EngineError> {
    let Candidate { labels, fp, chunks, mem } = candidate;
    let mut units: Vec<Unit> = mem.into_iter().map(|m| Unit::Mem(labels.clone(), m)).collect();
    let mut keep = vec![true; chunks.len()];
    let mut skipped = 0;
    if terms.iter().any(|t| t.len() >= 4) {
        let mut blooms: Vec<Option<Arc<Bloom>>> = chunks.iter().map(|m| engine.cached_bloom(tenant, fp, m)).collect();
        let missing: Vec<usize> = (0..chunks.len()).filter(|&i| blooms[i].is_none()).collect();
        for group in missing.chunks(64) {
            let metas: Vec<ChunkMeta> = group.iter().map(|&i| chunks[i]).collect();
            let values = engine.chunk_values(tenant, fp, &metas, ChunkPart::Bloom).await?;
            for ((&i, meta), v) in group.iter().zip(&metas).zip(values) {
                if let Some(b) = v.and_then(|v| Bloom::decode(&v).ok()).map(Arc::new) {
                    engine.cache_bloom(tenant, fp, meta, b.clone());
                    blooms[i] = Some(b);
                }
            }
        }
        for (k, b) in keep.iter_mut().zip(&blooms) {
            if let Some(b) = b
                && !terms.iter().all(|t| b.may_contain(t.as_bytes()))
            {
                *k = false;
                skipped += 1;
            }
        }
    }
    let mut run: Vec<ChunkMeta> = Vec::new();
    let mut run_bytes = 0;
    for (meta, keep) in chunks.into_iter().zip(keep) {
        let cached = if keep { engine.cached_chunk(tenant, fp, &meta) } else { None };
        // A run holds neighbours only: a skipped or cached chunk ends it.
        if !keep || cached.is_some() || run.len() >= RUN_CHUNKS || run_bytes + meta.stored_bytes > max_run_bytes {
            if !run.is_empty() {
                units.push(Unit::Stored(labels.clone(), fp, std::mem::take(&mut run)));
            }
            run_bytes = 0;
        }
        if let Some(c) = cached {
            units.push(Unit::Mem(labels.clone(), c));
        } else if keep {
            run_bytes += meta.stored_bytes;
            run.push(meta);
        }
    }
    if !run.is_empty() {
        units.push(Unit::Stored(labels, fp, run));
    }
    Ok((units, skipped))
}

type ScanFn<R> = dyn Fn(&LogQuery, &LabelSet, &Columns, i64, i64) -> (R, ScanStats) + Send + Sync;

/// Runs `f` over every block of the streams matching `query` in `[start, end)` (after the
/// retention floor), `parallelism` units at once (each read, then decompressed and scanned on
/// a blocking thread); returns the results and the stats.
async fn scan_blocks<R: Send + 'static>(
    engine: &Arc<Engine>,
    tenant: &str,
    query: &Arc<LogQuery>,
    start: i64,
    end: i64,
    f: impl Fn(&LogQuery, &LabelSet, &Columns, i64, i64) -> (R, ScanStats) + Send + Sync + 'static,
) -> Result<(Vec<R>, Stats), EngineError> {
    let started = Instant::now();
    let start = start.max(engine.retention_floor(tenant));
    let mut stats = Stats::default();
    if start >= end {
        return Ok((Vec::new(), stats));
    }
    let candidates = engine.candidates(tenant, &query.matchers, start, end);
    stats.chunks_total = candidates.iter().map(|c| (c.chunks.len() + c.mem.len()) as u64).sum();
    let terms: Vec<String> = query.required_terms().into_iter().map(str::to_string).collect();
    let parallelism = engine.config().query_parallelism.max(1);
    // A run's response must fit what the store serves comfortably (etcd: a request's size).
    let max_run_bytes = RUN_BYTES.min(engine.store().limits().max_write_bytes as u64).max(1);
    let plans: Vec<Result<(Vec<Unit>, u64), EngineError>> = futures::stream::iter(candidates)
        .map(|c| plan(engine, tenant, c, &terms, max_run_bytes))
        .buffer_unordered(parallelism)
        .collect()
        .await;
    let mut units = Vec::new();
    for p in plans {
        let (u, skipped) = p?;
        units.extend(u);
        stats.chunks_skipped_by_bloom += skipped;
    }
    let f: Arc<ScanFn<R>> = Arc::new(f);
    // Decompressing is the CPU-bound part of a cold scan: one chunk per core at a time (the
    // reads of other runs go on meanwhile), each into a buffer of `buffers`, so that a scan
    // reuses as many ~1 MiB buffers as there are cores, mapped and in cache, instead of one
    // fresh allocation per chunk (up to 8 per run in flight, times `parallelism` runs), each
    // faulted in and zeroed again by the kernel (see `RawBlock::decompress_in`).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let decoders = Arc::new(tokio::sync::Semaphore::new(cores));
    let buffers: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let results: Vec<Result<Vec<(R, ScanStats)>, EngineError>> = futures::stream::iter(units)
        .map(|unit| {
            let engine = engine.clone();
            let tenant = tenant.to_string();
            let query = query.clone();
            let f = f.clone();
            let (decoders, buffers) = (decoders.clone(), buffers.clone());
            async move {
                match unit {
                    Unit::Mem(labels, cols) => {
                        tokio::task::spawn_blocking(move || vec![f(&query, &labels, &cols, start, end)])
                            .await
                            .map_err(|_| EngineError::Stopped)
                    }
                    Unit::Stored(labels, fp, metas) => {
                        let values = engine.chunk_values(&tenant, fp, &metas, ChunkPart::Data).await?;
                        // Each chunk of the run is decompressed and scanned on a blocking
                        // thread of its own, so that both cores share a run's work.
                        let scans = metas.into_iter().zip(values).filter_map(|(meta, data)| {
                            // Gone: deleted by retention meanwhile.
                            let data = data?;
                            let (engine, tenant, labels, query, f) =
                                (engine.clone(), tenant.clone(), labels.clone(), query.clone(), f.clone());
                            let (decoders, buffers) = (decoders.clone(), buffers.clone());
                            Some(async move {
                                let permit = decoders.acquire_owned().await.map_err(|_| EngineError::Stopped)?;
                                tokio::task::spawn_blocking(move || {
                                    let _permit = permit;
                                    let chunk = (fp, meta, data.as_slice());
                                    scan_stored(&engine, &tenant, &labels, &query, &*f, chunk, &buffers, start, end)
                                        .inspect_err(
                                            |e| tracing::error!(error = %e, "log store: corrupt chunk skipped"),
                                        )
                                        .ok()
                                })
                                .await
                                .map_err(|_| EngineError::Stopped)
                            })
                        });
                        let mut out = Vec::new();
                        for r in futures::future::join_all(scans).await {
                            out.extend(r?);
                        }
                        Ok(out)
                    }
                }
            }
        })
        .buffer_unordered(parallelism)
        .collect()
        .await;
    let mut out = Vec::new();
    for r in results {
        for (r, s) in r? {
            stats.lines_scanned += s.lines;
            stats.bytes_scanned += s.bytes;
            out.push(r);
        }
    }
    stats.exec_ns = started.elapsed().as_nanos() as u64;
    Ok((out, stats))
}

fn lock_buffers(m: &Mutex<Vec<Vec<u8>>>) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
    // A panic while holding the lock leaves a list of spare buffers, any of which is fine.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Decompresses a stored chunk (stream, metadata, stored bytes) into a buffer of `buffers` and
/// runs `f` over it. A chunk wholly in the range whose text holds no match of the leading `|=`
/// term has no line to emit: its columns are not decoded (nor is it cached), its lines all count
/// as scanned, and the buffer goes back for the next chunk. Otherwise the buffer becomes the
/// decoded chunk's text, which is cached.
#[allow(clippy::too_many_arguments)]
fn scan_stored<R>(
    engine: &Engine,
    tenant: &str,
    labels: &LabelSet,
    query: &LogQuery,
    f: &ScanFn<R>,
    (fp, meta, data): (u64, ChunkMeta, &[u8]),
    buffers: &Mutex<Vec<Vec<u8>>>,
    start: i64,
    end: i64,
) -> Result<(R, ScanStats), CorruptChunk> {
    let buf = lock_buffers(buffers).pop().unwrap_or_default();
    let block = RawBlock::decompress_in(data, buf)?;
    if meta.min_ts >= start && meta.max_ts < end && !Pipeline::new(query).may_match_text(block.text()) {
        let (none, _) = f(query, labels, &Columns::default(), start, end);
        let stats = ScanStats { lines: u64::from(meta.count), bytes: block.text().len() as u64 };
        lock_buffers(buffers).push(block.into_buffer());
        return Ok((none, stats));
    }
    let c = Arc::new(block.decode()?);
    let out = f(query, labels, &c, start, end);
    engine.cache_chunk(tenant, fp, &meta, c);
    Ok(out)
}

/// Runs a log query: at most `limit` lines in `[start, end)` in `direction`, grouped by their
/// label sets (streams sorted by labels).
pub async fn log_query(
    engine: &Arc<Engine>,
    tenant: &str,
    query: LogQuery,
    start: i64,
    end: i64,
    limit: usize,
    direction: Direction,
) -> Result<(StreamsResult, Stats), EngineError> {
    let query = Arc::new(query);
    let (parts, stats) = scan_blocks(engine, tenant, &query, start, end, move |q, labels, cols, s, e| {
        let mut hits: Vec<Hit> = Vec::new();
        let st = Pipeline::new(q).scan(labels, cols, s, e, |mut h| {
            if h.labels.is_none() {
                h.labels = Some(labels.clone());
            }
            hits.push(h)
        });
        // Only the block's best `limit` can be among the overall best.
        sort_hits(&mut hits, direction);
        hits.truncate(limit);
        (hits, st)
    })
    .await?;
    let mut all: Vec<Hit> = parts.into_iter().flatten().collect();
    sort_hits(&mut all, direction);
    all.truncate(limit);
    let mut grouped: HashMap<LabelSet, Vec<(i64, String)>> = HashMap::new();
    for h in all {
        grouped.entry(h.labels.unwrap_or_default()).or_default().push((h.ts, h.line));
    }
    let mut out: StreamsResult = grouped.into_iter().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, stats))
}

fn sort_hits(hits: &mut [Hit], direction: Direction) {
    match direction {
        Direction::Forward => hits.sort_by_key(|h| h.ts),
        Direction::Backward => hits.sort_by_key(|h| std::cmp::Reverse(h.ts)),
    }
}

/// Runs a metric query at `steps` (unix ns, ascending).
pub async fn metric_query(
    engine: &Arc<Engine>,
    tenant: &str,
    query: &MetricQuery,
    steps: &[i64],
) -> Result<(Vec<(LabelSet, Points)>, Stats), EngineError> {
    let (log, range) = query.source();
    let (Some(&first), Some(&last)) = (steps.first(), steps.last()) else { return Ok((Vec::new(), Stats::default())) };
    let range_ns = i64::try_from(range.as_nanos()).unwrap_or(i64::MAX);
    let start = first.saturating_sub(range_ns).saturating_add(1);
    let end = last.saturating_add(1);
    let log = Arc::new(log.clone());
    let (parts, stats) = scan_blocks(engine, tenant, &log, start, end, |q, labels, cols, s, e| {
        let mut samples: HashMap<LabelSet, Vec<(i64, u64)>> = HashMap::new();
        let st = Pipeline::new(q).scan(labels, cols, s, e, |h| {
            let key = h.labels.unwrap_or_else(|| labels.clone());
            samples.entry(key).or_default().push((h.ts, h.line.len() as u64));
        });
        (samples, st)
    })
    .await?;
    let mut samples: HashMap<LabelSet, Vec<(i64, u64)>> = HashMap::new();
    for part in parts {
        for (k, mut v) in part {
            samples.entry(k).or_default().append(&mut v);
        }
    }
    Ok((evaluate(query, &samples, steps), stats))
}
