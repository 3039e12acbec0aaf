//! The ingest and query benchmark the lead runs for `docs/BENCHMARKS.md`: durable pushes of
//! batches of 1,000 generated lines of about 150 bytes into the embedded store (lines/s, MB/s,
//! push p95), storage bytes per line against raw and gzip, a filter query over every stored line
//! (lines/s) beside `rg` and `grep` over the same lines as a plain text file, and a
//! label-narrowed query's p95. The pushes are generated before the timed window (as load tools
//! such as ghz prepare their requests), so the ingest figures are the log store's work alone. Run
//! it with
//! `cargo run --release -p meshwork-logging --example logging_bench -- [lines] [concurrency]`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshwork_storage::{DynStore, KeyRange};

use crate::engine::{Config, IncomingEntry, IncomingStream};
use crate::generators::{Format, Generator};
use crate::labels::LabelSet;
use crate::query::Direction;
use crate::service::{Logging, QueryParams, QueryResult};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Lines ingested (and then scanned): default 10,000,000.
    pub lines: usize,
    /// Lines per push (default 1,000).
    pub batch: usize,
    /// Concurrent pushers (default 8).
    pub concurrency: usize,
    /// Directory for the embedded store and the plain-text copy (deleted afterwards).
    pub dir: PathBuf,
    /// Committer tasks ([`Config::writer_shards`]; `None`: the default).
    pub writer_shards: Option<usize>,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Lines pushed.
    pub lines: u64,
    /// Raw line bytes pushed.
    pub raw_bytes: u64,
    /// Ingest wall time.
    pub ingest: Duration,
    /// Ingest wall time including the final flush: every line in a stored chunk (the chunk
    /// cutting, compression and blooms that the acknowledged-rate window may leave behind).
    pub ingest_flushed: Duration,
    /// Push latency p50 and p95 (ms).
    pub push_p50_ms: f64,
    /// Push latency p95 (ms).
    pub push_p95_ms: f64,
    /// Stored bytes (chunk data + bloom + metadata) after the final flush.
    pub stored_bytes: u64,
    /// Bytes of the same lines gzip-compressed (level 6, one stream; the ratio of the first
    /// million lines applied to all).
    pub gzip_bytes: u64,
    /// The filter query's LogQL.
    pub filter_query: String,
    /// Lines in the filter query's range and its time.
    pub filter_lines: u64,
    /// Time of the filter query.
    pub filter_time: Duration,
    /// Matches.
    pub filter_matches: u64,
    /// Chunks skipped by bloom / total.
    pub filter_chunks: (u64, u64),
    /// A scan every chunk must take (a term in every format): lines and time.
    pub scan_query: String,
    /// Time to read every chunk's compressed bytes from the store (a scan, no decompression).
    pub store_read_time: Duration,
    /// Time of the full scan query (cold: every chunk read and decompressed).
    pub scan_time: Duration,
    /// Time of the same scan again (warm only for chunks in the decompressed-chunk cache: since
    /// the third pass, a chunk whose text holds no match of the term is not decoded nor cached).
    pub scan_warm_time: Duration,
    /// `rg -c` over the same text: time, or why not.
    pub rg: Result<Duration, String>,
    /// `grep -c -F` over the same text.
    pub grep: Result<Duration, String>,
    /// Label-narrowed query p50/p95 (ms).
    pub narrow_p50_ms: f64,
    /// Label-narrowed query p95 (ms).
    pub narrow_p95_ms: f64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.ingest.as_secs_f64().max(1e-9);
        writeln!(f, "ingest: {} lines, {:.1} MB raw, {:.2} s", self.lines, self.raw_bytes as f64 / 1e6, secs)?;
        writeln!(
            f,
            "ingest rate: {:.0} lines/s, {:.1} MB/s (durable: fsynced group commits); push p50 {:.1} ms, p95 {:.1} ms",
            self.lines as f64 / secs,
            self.raw_bytes as f64 / 1e6 / secs,
            self.push_p50_ms,
            self.push_p95_ms
        )?;
        let fsecs = self.ingest_flushed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "ingest until every line is in a stored chunk (final flush included): {:.2} s = {:.0} lines/s",
            fsecs,
            self.lines as f64 / fsecs
        )?;
        let per = |b: u64| b as f64 / self.lines.max(1) as f64;
        writeln!(
            f,
            "bytes per line: raw {:.1}, stored {:.1} ({:.1}x smaller), gzip -6 {:.1} ({:.1}x)",
            per(self.raw_bytes),
            per(self.stored_bytes),
            self.raw_bytes as f64 / self.stored_bytes.max(1) as f64,
            per(self.gzip_bytes),
            self.raw_bytes as f64 / self.gzip_bytes.max(1) as f64
        )?;
        let st = self.scan_time.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "full scan `{}`: {} lines in {:.3} s = {:.0} lines/s",
            self.scan_query,
            self.filter_lines,
            st,
            self.filter_lines as f64 / st
        )?;
        writeln!(
            f,
            "reading every stored chunk from the store alone (scan, no decompression): {:.3} s",
            self.store_read_time.as_secs_f64()
        )?;
        let wt = self.scan_warm_time.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "full scan again (a chunk stays cached decompressed only if its text held a match): {:.3} s = {:.0} lines/s",
            wt,
            self.filter_lines as f64 / wt
        )?;
        let ft = self.filter_time.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "filter `{}`: {} matches, {} of {} chunks skipped by bloom, {:.3} s = {:.0} lines/s over the range",
            self.filter_query,
            self.filter_matches,
            self.filter_chunks.0,
            self.filter_chunks.1,
            ft,
            self.filter_lines as f64 / ft
        )?;
        for (name, r) in [("rg -c -F", &self.rg), ("grep -c -F", &self.grep)] {
            match r {
                Ok(d) => writeln!(
                    f,
                    "{name} over the same {} lines as text: {:.3} s = {:.0} lines/s (full scan cold {:.2}x, warm {:.2}x its rate)",
                    self.lines,
                    d.as_secs_f64(),
                    self.lines as f64 / d.as_secs_f64().max(1e-9),
                    d.as_secs_f64() / st,
                    d.as_secs_f64() / wt
                )?,
                Err(e) => writeln!(f, "{name}: {e}")?,
            }
        }
        writeln!(f, "label-narrowed query p50 {:.2} ms, p95 {:.2} ms", self.narrow_p50_ms, self.narrow_p95_ms)
    }
}

const FORMATS: [Format; 4] = [Format::ApacheAccess, Format::Hdfs, Format::OpenSsh, Format::Syslog];

fn time_command(program: &str, args: &[&str], file: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    let out = std::process::Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .map_err(|e| format!("not run ({program}: {e})"))?;
    if !out.status.success() && out.status.code() != Some(1) {
        return Err(format!("{program} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(started.elapsed())
}

fn percentile(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs the benchmark on a fresh embedded store under `opts.dir`.
pub async fn run(opts: BenchOptions) -> Result<BenchReport, String> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| e.to_string())?;
    let store_dir = opts.dir.join("store");
    let text_path = opts.dir.join("lines.txt");
    // The log store's own database, as `meshwork up` opens it (no changelog, no journal LZ4,
    // fsync per commit); not wrapped in storage spans, which record nothing outside a call.
    let store: DynStore = Arc::new(
        meshwork_storage::embedded::EmbeddedStore::open_with(&store_dir, crate::store::embedded_options())
            .await
            .map_err(|e| e.to_string())?,
    );
    let clock: Arc<dyn meshwork_common::Clock> = Arc::new(meshwork_common::SystemClock);
    let now = clock.unix_ns() as i64;
    // A decompressed-chunk cache large enough for the whole corpus, for the warm scan.
    let defaults = Config::default();
    let config = Config {
        rate_bytes_per_sec: 1e12,
        burst_bytes: 1e12,
        chunk_cache_bytes: 3 << 30,
        writer_shards: opts.writer_shards.unwrap_or(defaults.writer_shards),
        ..defaults
    };
    let logging = Logging::new(store.clone(), clock, config);
    logging.engine().await.map_err(|e| e.to_string())?;

    // Lines span about 45 minutes of the last hour; each pusher owns some streams (format x host).
    let per_task = opts.lines / opts.concurrency.max(1);
    let step = (45 * 60 * 1_000_000_000i64) / per_task.max(1) as i64;
    let tasks_n = opts.concurrency.max(1);
    let start_ns = now - 58 * 60 * 1_000_000_000;
    // The load is generated before the timed window, as load tools such as ghz do with their
    // requests: each pusher's batches of entries are built here (with the same lines written
    // as plain text for rg/grep, and gzip of the first million for the ratio), so that neither
    // the line formatting nor the text file competes with the ingest for the two cores.
    let (gzip_sample_raw, gzip_sample, loads) = {
        let file = std::fs::File::create(&text_path).map_err(|e| e.to_string())?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        // Buffered: the encoder zero-fills its output buffer on every write call.
        let mut gz = std::io::BufWriter::with_capacity(
            1 << 20,
            flate2::write::GzEncoder::new(CountingSink(0), flate2::Compression::new(6)),
        );
        let mut sample_raw = 0u64;
        let sample_per_task = 1_000_000 / tasks_n;
        let mut loads: Vec<(u64, Vec<Vec<IncomingEntry>>)> = Vec::with_capacity(tasks_n);
        for t in 0..tasks_n {
            let mut generator = Generator::new(FORMATS[t % FORMATS.len()], t as u64, start_ns, step);
            let mut raw = 0u64;
            let mut batches = Vec::with_capacity(per_task.div_ceil(opts.batch.max(1)));
            let mut i = 0;
            while i < per_task {
                let n = opts.batch.max(1).min(per_task - i);
                let mut entries = Vec::with_capacity(n);
                for (ts, l) in generator.take(n) {
                    out.write_all(l.as_bytes()).and_then(|_| out.write_all(b"\n")).map_err(|e| e.to_string())?;
                    if i < sample_per_task {
                        sample_raw += l.len() as u64;
                        gz.write_all(l.as_bytes()).and_then(|_| gz.write_all(b"\n")).map_err(|e| e.to_string())?;
                    }
                    raw += l.len() as u64;
                    i += 1;
                    entries.push(IncomingEntry { ts: Some(ts), line: l, metadata: vec![] });
                }
                batches.push(entries);
            }
            loads.push((raw, batches));
        }
        out.flush().map_err(|e| e.to_string())?;
        let gz = gz.into_inner().map_err(|e| e.to_string())?;
        (sample_raw, gz.finish().map_err(|e| e.to_string())?.0, loads)
    };
    phase_mark("ingest");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (t, (raw, batches)) in loads.into_iter().enumerate() {
        let logging = logging.clone();
        tasks.push(tokio::spawn(async move {
            let format = FORMATS[t % FORMATS.len()];
            let labels = LabelSet::from_pairs([
                ("job".to_string(), format.name().to_string()),
                ("host".to_string(), format!("h{t}")),
            ]);
            let mut hist = hdrhistogram::Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
            for entries in batches {
                let t0 = Instant::now();
                let o = logging
                    .push("bench", vec![IncomingStream { labels: labels.clone(), entries }])
                    .await
                    .map_err(|e| e.to_string())?;
                hist.record(t0.elapsed().as_micros() as u64).map_err(|e| e.to_string())?;
                if o.rejected_total() > 0 {
                    return Err(format!("rejected: {:?}", o.errors));
                }
            }
            Ok::<_, String>((raw, hist))
        }));
    }
    let mut report = BenchReport {
        lines: 0,
        raw_bytes: 0,
        ingest: Duration::ZERO,
        ingest_flushed: Duration::ZERO,
        push_p50_ms: 0.0,
        push_p95_ms: 0.0,
        stored_bytes: 0,
        gzip_bytes: 0,
        filter_query: String::new(),
        filter_lines: 0,
        filter_time: Duration::ZERO,
        filter_matches: 0,
        filter_chunks: (0, 0),
        scan_query: String::new(),
        scan_time: Duration::ZERO,
        store_read_time: Duration::ZERO,
        scan_warm_time: Duration::ZERO,
        rg: Err("not run".into()),
        grep: Err("not run".into()),
        narrow_p50_ms: 0.0,
        narrow_p95_ms: 0.0,
    };
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    for t in tasks {
        let (raw, h) = t.await.map_err(|e| e.to_string())??;
        report.raw_bytes += raw;
        hist.add(h).map_err(|e| e.to_string())?;
    }
    report.ingest = started.elapsed();
    report.lines = (per_task * opts.concurrency.max(1)) as u64;
    report.push_p50_ms = percentile(&hist, 0.5);
    report.push_p95_ms = percentile(&hist, 0.95);
    // gzip bytes per raw byte of the sample, scaled to the whole corpus.
    report.gzip_bytes = (gzip_sample as f64 / gzip_sample_raw.max(1) as f64 * report.raw_bytes as f64) as u64;
    logging.flush().await.map_err(|e| e.to_string())?;
    report.ingest_flushed = started.elapsed();
    phase_mark("stored");
    for prefix in ["logging/t/bench/c/", "logging/t/bench/b/", "logging/t/bench/m/"] {
        let t0 = Instant::now();
        let mut range = KeyRange::prefix(prefix);
        loop {
            let page =
                store.scan(range.clone(), 64, meshwork_storage::Direction::Forward).await.map_err(|e| e.to_string())?;
            report.stored_bytes += page.entries.iter().map(|e| (e.key.len() + e.value.len()) as u64).sum::<u64>();
            match page.next {
                Some(n) => range.start = std::ops::Bound::Included(n),
                None => break,
            }
        }
        if prefix.ends_with("/c/") {
            report.store_read_time = t0.elapsed();
        }
    }

    let query = |logql: String, limit: i64| QueryParams {
        tenant: "bench".into(),
        logql,
        start: Some(now - 3_600_000_000_000),
        end: Some(now + 1),
        limit,
        direction: Direction::Backward,
        step: None,
        range: true,
    };
    // A term of one format only: the blooms skip the other formats' chunks.
    report.filter_query = r#"{job=~".+"} |= "POSSIBLE BREAK-IN ATTEMPT""#.into();
    let t0 = Instant::now();
    let r = logging.query(query(report.filter_query.clone(), 100)).await.map_err(|e| e.to_string())?;
    report.filter_time = t0.elapsed();
    if let QueryResult::Streams(s, stats) = &r {
        report.filter_matches = s.iter().map(|x| x.1.len() as u64).sum();
        report.filter_chunks = (stats.chunks_skipped_by_bloom, stats.chunks_total);
    }
    phase_mark("cold scan");
    // A count of a term absent from every line scans every line of every chunk.
    report.scan_query = r#"sum(count_over_time({job=~".+"} |= "zq" [1h]))"#.into();
    let t0 = Instant::now();
    let r = logging
        .query(QueryParams { range: false, end: Some(now + 1), ..query(report.scan_query.clone(), 0) })
        .await
        .map_err(|e| e.to_string())?;
    report.scan_time = t0.elapsed();
    phase_mark("after cold scan");
    report.filter_lines = match &r {
        QueryResult::Vector(_, stats) | QueryResult::Matrix(_, stats) | QueryResult::Streams(_, stats) => {
            stats.lines_scanned
        }
    };
    let t0 = Instant::now();
    logging
        .query(QueryParams { range: false, end: Some(now + 1), ..query(report.scan_query.clone(), 0) })
        .await
        .map_err(|e| e.to_string())?;
    report.scan_warm_time = t0.elapsed();
    report.rg = time_command("rg", &["-c", "-F", "zq"], &text_path);
    report.grep = time_command("grep", &["-c", "-F", "zq"], &text_path);

    let mut h = hdrhistogram::Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    for i in 0..100 {
        let logql = format!(
            r#"{{job="openssh", host="h{}"}} |= "Accepted password""#,
            2 + 4 * (i % (opts.concurrency / 4).max(1))
        );
        let t0 = Instant::now();
        logging
            .query(QueryParams { start: Some(now - 1_200_000_000_000), ..query(logql, 100) })
            .await
            .map_err(|e| e.to_string())?;
        h.record(t0.elapsed().as_micros() as u64).map_err(|e| e.to_string())?;
    }
    report.narrow_p50_ms = percentile(&h, 0.5);
    report.narrow_p95_ms = percentile(&h, 0.95);
    let _ = std::fs::remove_file(&text_path);
    Ok(report)
}

/// Marks the start of a phase. It does nothing, but is never inlined, so that
/// `valgrind --tool=callgrind --dump-before='*phase_mark*'` writes one profile per phase
/// (set-up, ingest and final flush, the filter query, the cold scan, the rest).
#[inline(never)]
fn phase_mark(name: &str) {
    std::hint::black_box(name);
}

struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
