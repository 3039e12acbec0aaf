//! Shared helpers of the log store's suites: a service on a backend with small chunks (so that
//! every suite crosses chunk cuts, flushes and write-ahead-log truncation), pushes of
//! generated corpora, and `grep` run over the same lines.

#![allow(dead_code)]

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use meshwork_common::{Clock, ServiceResult};
use meshwork_logging::engine::{Config, IncomingEntry, IncomingStream};
use meshwork_logging::generators::{Format, Generator};
use meshwork_logging::labels::LabelSet;
use meshwork_logging::query::Direction;
use meshwork_logging::service::{Logging, QueryParams, QueryResult};
use meshwork_storage::DynStore;

/// A config for tests: 16 KiB chunks, a unique write-ahead-log instance, quick flushes.
pub fn config() -> Config {
    Config {
        instance: meshwork_test_support::backends::unique("i"),
        chunk_target_bytes: 16 * 1024,
        flush_interval: Duration::from_millis(50),
        ..Config::default()
    }
}

/// A service on `store` with the system clock.
pub fn logging(store: DynStore, config: Config) -> Arc<Logging> {
    Logging::new(store, Arc::new(meshwork_common::SystemClock), config)
}

/// Returns now in unix ns.
pub fn now_ns() -> i64 {
    meshwork_common::SystemClock.unix_ns() as i64
}

/// Returns a stream to push.
pub fn stream(labels: &str, entries: &[(i64, String)]) -> IncomingStream {
    IncomingStream {
        labels: LabelSet::parse(labels),
        entries: entries
            .iter()
            .map(|(ts, line)| IncomingEntry { ts: Some(*ts), line: line.clone(), metadata: vec![] })
            .collect(),
    }
}

/// Generates `n` lines of `format` over the last ~30 minutes.
pub fn corpus(format: Format, seed: u64, n: usize) -> Vec<(i64, String)> {
    let start = now_ns() - 30 * 60 * 1_000_000_000;
    Generator::new(format, seed, start, (20 * 60 * 1_000_000_000) / n.max(1) as i64).take(n)
}

/// Runs a log query over the last hour (forward, up to 50,000 lines) and returns its lines.
pub async fn lines(logging: &Logging, tenant: &str, logql: &str) -> ServiceResult<Vec<String>> {
    let r = logging
        .query(QueryParams {
            tenant: tenant.into(),
            logql: logql.into(),
            start: Some(now_ns() - 3_600_000_000_000),
            end: Some(now_ns() + 1),
            limit: 50_000,
            direction: Direction::Forward,
            step: None,
            range: true,
        })
        .await?;
    match r {
        QueryResult::Streams(streams, _) => {
            Ok(streams.into_iter().flat_map(|(_, es)| es.into_iter().map(|(_, l)| l)).collect())
        }
        other => panic!("not streams: {other:?}"),
    }
}

/// Runs an instant metric query at now and returns the single value (0 when empty).
pub async fn scalar(logging: &Logging, tenant: &str, logql: &str) -> f64 {
    let r = logging
        .query(QueryParams {
            tenant: tenant.into(),
            logql: logql.into(),
            end: Some(now_ns() + 1),
            ..QueryParams::default()
        })
        .await
        .unwrap();
    match r {
        QueryResult::Vector(v, _) => v.iter().map(|(_, (_, x))| x).sum(),
        other => panic!("not a vector: {other:?}"),
    }
}

/// Runs the real `grep` with `args` over `lines` written to a temporary file; returns the
/// matching lines.
pub fn grep(lines: &[String], args: &[&str]) -> Vec<String> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        writeln!(file, "{l}").unwrap();
    }
    file.flush().unwrap();
    let out = std::process::Command::new("grep").args(args).arg(file.path()).output().expect("run grep");
    assert!(out.status.code().is_some_and(|c| c <= 1), "grep {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

/// Returns `v` sorted (results compared as multisets).
pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
