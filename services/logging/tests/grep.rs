//! Correctness against `grep`: generated corpora of five real log formats are pushed (half cut
//! into stored chunks, half still in heads), then for term, regex, negative and chained line
//! filters every query's lines equal what the real `grep` binary prints over the same lines;
//! `count_over_time` totals equal the line counts, and blooms skip chunks that cannot match.
//! On the memory, embedded and 3-member etcd stores.

mod support;

use meshwork_logging::generators::Format;
use meshwork_logging::query::Direction;
use meshwork_logging::service::{QueryParams, QueryResult};
use meshwork_test_support::backends::{Backend, unique};
use meshwork_test_support::on_every_backend;
use support::*;

/// (LogQL pipeline, grep arguments; a second set is applied to the first's output).
const FILTERS: &[(&str, &[&str], &[&str])] = &[
    (r#"|= "Failed password""#, &["-F", "Failed password"], &[]),
    (r#"|= "blk_""#, &["-F", "blk_"], &[]),
    (r#"|= "[error]""#, &["-F", "[error]"], &[]),
    (r#"|= " 404 ""#, &["-F", " 404 "], &[]),
    (r#"|= "10.251.42.84""#, &["-F", "10.251.42.84"], &[]),
    (r#"|= "sshd[""#, &["-F", "sshd["], &[]),
    (r#"|= "session opened""#, &["-F", "session opened"], &[]),
    (r#"|~ "port [0-9]+5 ssh2""#, &["-E", "port [0-9]+5 ssh2"], &[]),
    (r#"|~ "(GET|POST) /api/v1/orders""#, &["-E", "(GET|POST) /api/v1/orders"], &[]),
    (r#"|~ "blk_-?[0-9]+ terminating""#, &["-E", "blk_-?[0-9]+ terminating"], &[]),
    (
        r#"|~ "^[A-Z][a-z]{2} +[0-9]+ [0-9:]+ (combo|LabSZ) ""#,
        &["-E", "^[A-Z][a-z]{2} +[0-9]+ [0-9:]+ (combo|LabSZ) "],
        &[],
    ),
    (r#"!= "INFO""#, &["-v", "-F", "INFO"], &[]),
    (r#"!~ "[0-9]{5}""#, &["-v", "-E", "[0-9]{5}"], &[]),
    (r#"|= "Failed" != "invalid""#, &["-F", "Failed"], &["-v", "-F", "invalid"]),
    (r#"|= "error" |~ "client [0-9.]+\]""#, &["-F", "error"], &["-E", "client [0-9.]+\\]"]),
];

async fn filters_match_grep(backend: Backend) {
    let etcd = backend.store.backend() == "etcd";
    let n = if etcd { 400 } else { 3000 };
    let tenant = unique("grep");
    let logging = logging(backend.store.clone(), config());
    let mut corpora = Vec::new();
    for (i, f) in Format::ALL.into_iter().enumerate() {
        let lines = corpus(f, 100 + i as u64, n);
        // First half, then a flush (stored chunks), then the rest (heads and sealed chunks).
        for (k, part) in lines.chunks(n / 2).enumerate() {
            for batch in part.chunks(500) {
                let o = logging
                    .push(&tenant, vec![stream(&format!(r#"{{job="{}", part="p{k}"}}"#, f.name()), batch)])
                    .await
                    .unwrap();
                assert_eq!((o.accepted, o.rejected_total()), (batch.len() as u64, 0));
            }
            if k == 0 {
                logging.flush().await.unwrap();
            }
        }
        corpora.push((f, lines.into_iter().map(|(_, l)| l).collect::<Vec<String>>()));
    }
    let total: usize = corpora.iter().map(|c| c.1.len()).sum();
    for (f, lines) in &corpora {
        for (pipeline, args, then) in FILTERS {
            let logql = format!(r#"{{job="{}"}} {pipeline}"#, f.name());
            let got = sorted(support::lines(&logging, &tenant, &logql).await.unwrap());
            let mut want = grep(lines, args);
            if !then.is_empty() {
                want = grep(&want, then);
            }
            assert_eq!(
                got.len(),
                want.len(),
                "{logql}: {} lines, grep {args:?} {then:?} gives {}",
                got.len(),
                want.len()
            );
            assert_eq!(got, sorted(want), "{logql}");
        }
        let count = scalar(&logging, &tenant, &format!(r#"sum(count_over_time({{job="{}"}}[1h]))"#, f.name())).await;
        assert_eq!(count as usize, lines.len(), "{f:?}");
        let errors =
            scalar(&logging, &tenant, &format!(r#"sum(count_over_time({{job="{}"}} |= "error" [1h]))"#, f.name()))
                .await;
        assert_eq!(errors as usize, grep(lines, &["-F", "error"]).len(), "{f:?}");
    }
    assert_eq!(scalar(&logging, &tenant, r#"sum(count_over_time({job=~".+"}[1h]))"#).await as usize, total);

    // A term of one format: the other formats' stored chunks are skipped by their blooms, and
    // the answer is still grep's.
    let r = logging
        .query(QueryParams {
            tenant: tenant.clone(),
            logql: r#"{job=~".+"} |= "POSSIBLE BREAK-IN ATTEMPT""#.into(),
            start: Some(now_ns() - 3_600_000_000_000),
            end: Some(now_ns() + 1),
            limit: 50_000,
            direction: Direction::Backward,
            step: None,
            range: true,
        })
        .await
        .unwrap();
    let QueryResult::Streams(streams, stats) = r else { panic!("streams expected") };
    assert!(stats.chunks_skipped_by_bloom > 0, "{stats:?}");
    let got: Vec<(i64, String)> = streams.into_iter().flat_map(|s| s.1).collect();
    let all: Vec<String> = corpora.iter().flat_map(|c| c.1.clone()).collect();
    assert_eq!(got.len(), grep(&all, &["-F", "POSSIBLE BREAK-IN ATTEMPT"]).len());
}

on_every_backend!(filters_match_grep);

/// Without the decompressed-chunk cache every query reads stored chunks from the store, a run
/// of neighbouring chunks per range scan (a bloom-skipped chunk splits a run): the answers are
/// still grep's, and a batched read returns each chunk's bytes in the order asked, a chunk
/// that is gone as `None`.
async fn batched_chunk_reads_match_grep(backend: Backend) {
    use meshwork_logging::chunk::Columns;
    use meshwork_logging::engine::ChunkPart;
    use meshwork_logging::model::ChunkMeta;

    let etcd = backend.store.backend() == "etcd";
    let n = if etcd { 600 } else { 4000 };
    let tenant = unique("runs");
    let config = meshwork_logging::Config { chunk_target_bytes: 4096, chunk_cache_bytes: 0, ..config() };
    let logging = logging(backend.store.clone(), config);
    let mut all = Vec::new();
    for (i, f) in [Format::OpenSsh, Format::Hdfs].into_iter().enumerate() {
        let lines = corpus(f, 7 + i as u64, n);
        for batch in lines.chunks(250) {
            let o = logging.push(&tenant, vec![stream(&format!(r#"{{job="{}"}}"#, f.name()), batch)]).await.unwrap();
            assert_eq!(o.accepted, batch.len() as u64);
        }
        all.extend(lines.into_iter().map(|(_, l)| l));
    }
    logging.flush().await.unwrap();
    for (pipeline, args) in [("", &["-F", ""][..]), (r#"|= "Failed password""#, &["-F", "Failed password"][..])] {
        let got = sorted(support::lines(&logging, &tenant, &format!(r#"{{job=~".+"}} {pipeline}"#)).await.unwrap());
        assert_eq!(got, sorted(grep(&all, args)), "{pipeline}");
    }
    let count = scalar(&logging, &tenant, r#"sum(count_over_time({job=~".+"} |= "blk_" [1h]))"#).await;
    assert_eq!(count as usize, grep(&all, &["-F", "blk_"]).len());

    let engine = logging.engine().await.unwrap();
    let now = now_ns();
    let candidates = engine.candidates(&tenant, &[], now - 3_600_000_000_000, now + 1);
    let c = candidates.iter().find(|c| c.chunks.len() > 3).expect("a stream with several stored chunks");
    // Out of order, with a gap, and a chunk that does not exist.
    let mut metas = vec![c.chunks[2], c.chunks[0], c.chunks[c.chunks.len() - 1]];
    metas.push(ChunkMeta { id: u64::MAX, ..c.chunks[1] });
    let values = engine.chunk_values(&tenant, c.fp, &metas, ChunkPart::Data).await.unwrap();
    assert_eq!(values.len(), 4);
    for (meta, v) in metas.iter().zip(&values).take(3) {
        let one = engine.chunk(&tenant, c.fp, meta).await.unwrap().expect("stored chunk");
        assert_eq!(v.as_ref(), Some(&one));
        let cols = Columns::decompress(&one).unwrap();
        assert_eq!((cols.len() as u32, cols.ts.first().copied()), (meta.count, Some(meta.min_ts)));
    }
    assert_eq!(values[3], None);
}

on_every_backend!(batched_chunk_reads_match_grep);
