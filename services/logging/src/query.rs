//! Query execution: picks streams by the label index, chunks by time and by bloom, then
//! decompresses and runs the pipeline over the chunks in parallel (a bounded number at once,
//! each on a blocking thread), merging lines by time or samples into metric series.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use crate::chunk::Columns;
use crate::engine::{Candidate, Engine, EngineError};
use crate::labels::LabelSet;
use crate::logql::ast::{LogQuery, MetricQuery};
use crate::logql::metric::{Points, evaluate};
use crate::logql::pipeline::{Hit, Pipeline};
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

enum Block {
    Stored(ChunkMeta),
    Mem(Arc<Columns>),
}

struct Task {
    labels: Arc<LabelSet>,
    fp: u64,
    block: Block,
}

fn tasks(candidates: Vec<Candidate>) -> Vec<Task> {
    let mut out = Vec::new();
    for c in candidates {
        for m in c.chunks {
            out.push(Task { labels: c.labels.clone(), fp: c.fp, block: Block::Stored(m) });
        }
        for m in c.mem {
            out.push(Task { labels: c.labels.clone(), fp: c.fp, block: Block::Mem(m) });
        }
    }
    out
}

/// A block ready to scan: in memory, or a stored chunk's compressed bytes.
enum Loaded {
    Mem(Arc<Columns>),
    Compressed(Vec<u8>),
}

/// Loads a task's block, unless its bloom rules out a required term. Returns `None` when
/// skipped (or gone: deleted by retention meanwhile), and whether the bloom skipped it.
async fn load(
    engine: &Engine,
    tenant: &str,
    task: &Task,
    terms: &[String],
) -> Result<(Option<Loaded>, bool), EngineError> {
    match &task.block {
        Block::Mem(c) => Ok((Some(Loaded::Mem(c.clone())), false)),
        Block::Stored(meta) => {
            if terms.iter().any(|t| t.len() >= 4)
                && let Some(bloom) = engine.bloom(tenant, task.fp, meta).await?
                && !terms.iter().all(|t| bloom.may_contain(t.as_bytes()))
            {
                return Ok((None, true));
            }
            if let Some(cols) = engine.cached_chunk(tenant, task.fp, meta) {
                return Ok((Some(Loaded::Mem(cols)), false));
            }
            Ok((engine.chunk(tenant, task.fp, meta).await?.map(Loaded::Compressed), false))
        }
    }
}

/// Runs `f` over every block of the streams matching `query` in `[start, end)` (after the
/// retention floor), `parallelism` blocks at once; returns the results and the stats.
async fn scan_blocks<R: Send + 'static>(
    engine: &Arc<Engine>,
    tenant: &str,
    query: &Arc<LogQuery>,
    start: i64,
    end: i64,
    f: impl Fn(&LogQuery, &LabelSet, &Columns, i64, i64) -> (R, crate::logql::pipeline::ScanStats) + Send + Sync + 'static,
) -> Result<(Vec<R>, Stats), EngineError> {
    let started = Instant::now();
    let start = start.max(engine.retention_floor(tenant));
    let mut stats = Stats::default();
    if start >= end {
        return Ok((Vec::new(), stats));
    }
    let candidates = engine.candidates(tenant, &query.matchers, start, end);
    let tasks = tasks(candidates);
    stats.chunks_total = tasks.len() as u64;
    let terms: Arc<Vec<String>> = Arc::new(query.required_terms().into_iter().map(str::to_string).collect());
    let f = Arc::new(f);
    let parallelism = engine.config().query_parallelism.max(1);
    let results: Vec<Result<Option<(R, crate::logql::pipeline::ScanStats)>, EngineError>> =
        futures::stream::iter(tasks)
            .map(|task| {
                let engine = engine.clone();
                let tenant = tenant.to_string();
                let terms = terms.clone();
                let query = query.clone();
                let f = f.clone();
                async move {
                    let (cols, skipped) = load(&engine, &tenant, &task, &terms).await?;
                    let Some(cols) = cols else {
                        return Ok(if skipped { None } else { Some(None) });
                    };
                    // Decompression and scan in one blocking task.
                    let out = tokio::task::spawn_blocking(move || {
                        let cols = match cols {
                            Loaded::Mem(c) => c,
                            Loaded::Compressed(data) => match Columns::decompress(&data) {
                                Ok(c) => {
                                    let c = Arc::new(c);
                                    if let Block::Stored(meta) = &task.block {
                                        engine.cache_chunk(&tenant, task.fp, meta, c.clone());
                                    }
                                    c
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "log store: corrupt chunk skipped");
                                    return None;
                                }
                            },
                        };
                        Some(f(&query, &task.labels, &cols, start, end))
                    })
                    .await
                    .map_err(|_| EngineError::Stopped)?;
                    Ok(Some(out))
                }
            })
            .buffer_unordered(parallelism)
            .map(|r: Result<Option<Option<_>>, EngineError>| r.map(Option::flatten))
            .collect()
            .await;
    let mut out = Vec::new();
    let mut scanned = 0u64;
    for r in results {
        if let Some((r, s)) = r? {
            stats.lines_scanned += s.lines;
            stats.bytes_scanned += s.bytes;
            scanned += 1;
            out.push(r);
        }
    }
    stats.chunks_skipped_by_bloom = stats.chunks_total.saturating_sub(scanned);
    stats.exec_ns = started.elapsed().as_nanos() as u64;
    Ok((out, stats))
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
