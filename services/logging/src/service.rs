//! The log store's operations, shared by the gRPC API ([`crate::grpc`]), the Loki HTTP API
//! ([`crate::loki`]), the OTLP receiver ([`crate::otlp`]) and the self-logs layer
//! ([`crate::selflog`]). The engine is opened (streams loaded, write-ahead log replayed) on
//! first use; `hosted` starts that at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_common::{Clock, ServiceError, ServiceResult};
use meshwork_storage::DynStore;
use tokio::sync::{OnceCell, broadcast};

use crate::engine::{Config, Engine, EngineError, IncomingStream, PushOutcome};
use crate::labels::LabelSet;
use crate::logql::ast::LogQuery;
use crate::logql::metric::Points;
use crate::logql::pipeline::Pipeline;
use crate::logql::{Query, parse_selector};
use crate::query::{self, Direction, Stats, StreamsResult};
use crate::validate;

/// The result of a query.
#[derive(Debug, Clone)]
pub enum QueryResult {
    /// Log lines (`resultType: streams`).
    Streams(StreamsResult, Stats),
    /// A metric over steps (`resultType: matrix`).
    Matrix(Vec<(LabelSet, Points)>, Stats),
    /// A metric at one time (`resultType: vector`).
    Vector(Vec<(LabelSet, (i64, f64))>, Stats),
}

/// A query as the APIs take it, times in unix ns.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    /// The tenant.
    pub tenant: String,
    /// The LogQL text.
    pub logql: String,
    /// Start of the range (log queries and range queries).
    pub start: Option<i64>,
    /// End of the range, or the evaluation time of an instant metric query.
    pub end: Option<i64>,
    /// Line limit (0 = default).
    pub limit: i64,
    /// Line order.
    pub direction: Direction,
    /// Step of a range metric query.
    pub step: Option<Duration>,
    /// True for QueryRange (a metric gives a matrix), false for Query (a vector).
    pub range: bool,
}

/// One message of a tail.
#[derive(Debug, Clone, PartialEq)]
pub struct TailMessage {
    /// Gapless from 1.
    pub sequence: u64,
    /// The lines' labels.
    pub labels: LabelSet,
    /// (ts, line) in push order.
    pub entries: Vec<(i64, String)>,
    /// Batches dropped because the client read too slowly.
    pub dropped: u64,
}

/// The log store service.
pub struct Logging {
    store: DynStore,
    clock: Arc<dyn Clock>,
    config: Config,
    engine: OnceCell<Arc<Engine>>,
}

fn engine_error(e: EngineError) -> ServiceError {
    match e {
        EngineError::RateLimited { .. } => ServiceError::ResourceExhausted(e.to_string()),
        EngineError::Store(s) => s.into(),
        EngineError::Stopped => ServiceError::Unavailable(e.to_string()),
    }
}

impl Logging {
    /// Returns the service over `store`; the engine opens on first use.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, config: Config) -> Arc<Logging> {
        Arc::new(Logging { store, clock, config, engine: OnceCell::new() })
    }

    /// Returns the engine, opening it (and replaying the write-ahead log) on first use.
    pub async fn engine(&self) -> ServiceResult<&Arc<Engine>> {
        self.engine
            .get_or_try_init(|| Engine::open(self.store.clone(), self.clock.clone(), self.config.clone()))
            .await
            .map_err(engine_error)
    }

    /// Stores streams for `tenant` (partial success by entry).
    pub async fn push(&self, tenant: &str, streams: Vec<IncomingStream>) -> ServiceResult<PushOutcome> {
        validate::tenant("tenant", tenant)?;
        let n: usize = streams.iter().map(|s| s.entries.len()).sum();
        if n > validate::MAX_PUSH_ENTRIES {
            return Err(ServiceError::invalid(
                "streams",
                format!("{n} entries, more than the {} allowed in one push", validate::MAX_PUSH_ENTRIES),
            ));
        }
        let engine = self.engine().await?;
        engine.push(tenant, streams).await.map_err(engine_error)
    }

    /// Runs a LogQL query.
    pub async fn query(&self, p: QueryParams) -> ServiceResult<QueryResult> {
        validate::tenant("tenant", &p.tenant)?;
        let q = validate::logql(&p.logql)?;
        let limit = validate::limit("limit", p.limit)?;
        let engine = self.engine().await?;
        let now = engine.now_ns();
        match q {
            Query::Log(lq) => {
                let (start, end) = validate::range(p.start, p.end, now, Duration::from_secs(3600))?;
                let (streams, stats) = query::log_query(engine, &p.tenant, lq, start, end, limit, p.direction)
                    .await
                    .map_err(engine_error)?;
                Ok(QueryResult::Streams(streams, stats))
            }
            Query::Metric(mq) if p.range => {
                let (start, end) = validate::range(p.start, p.end, now, Duration::from_secs(3600))?;
                let step = validate::step(p.step, start, end)?;
                let steps: Vec<i64> = (0..).map(|i| start + i * step).take_while(|t| *t <= end).collect();
                let (series, stats) =
                    query::metric_query(engine, &p.tenant, &mq, &steps).await.map_err(engine_error)?;
                Ok(QueryResult::Matrix(series, stats))
            }
            Query::Metric(mq) => {
                let at = p.end.unwrap_or(now);
                let (series, stats) = query::metric_query(engine, &p.tenant, &mq, &[at]).await.map_err(engine_error)?;
                let vector = series.into_iter().filter_map(|(l, pts)| pts.first().map(|p| (l, *p))).collect();
                Ok(QueryResult::Vector(vector, stats))
            }
        }
    }

    async fn streams_in(
        &self,
        tenant: &str,
        start: Option<i64>,
        end: Option<i64>,
    ) -> ServiceResult<Vec<Arc<LabelSet>>> {
        validate::tenant("tenant", tenant)?;
        let engine = self.engine().await?;
        let (start, end) = validate::range(start, end, engine.now_ns(), Duration::from_secs(6 * 3600))?;
        let start = start.max(engine.retention_floor(tenant));
        Ok(if start < end { engine.stream_labels(tenant, start, end) } else { Vec::new() })
    }

    /// Returns the label names of the tenant's streams with data in the range.
    pub async fn labels(&self, tenant: &str, start: Option<i64>, end: Option<i64>) -> ServiceResult<Vec<String>> {
        let mut names: Vec<String> = self
            .streams_in(tenant, start, end)
            .await?
            .iter()
            .flat_map(|l| l.pairs().iter().map(|(n, _)| n.clone()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Returns the values of label `name` in the tenant's streams with data in the range.
    pub async fn label_values(
        &self,
        tenant: &str,
        name: &str,
        start: Option<i64>,
        end: Option<i64>,
    ) -> ServiceResult<Vec<String>> {
        if !crate::labels::valid_name(name) {
            return Err(ServiceError::invalid("name", "must be a label name [a-zA-Z_][a-zA-Z0-9_]*"));
        }
        let mut values: Vec<String> =
            self.streams_in(tenant, start, end).await?.iter().filter_map(|l| l.get(name).map(str::to_string)).collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// Returns the label sets of the streams matching any selector, with data in the range.
    pub async fn series(
        &self,
        tenant: &str,
        selectors: &[String],
        start: Option<i64>,
        end: Option<i64>,
    ) -> ServiceResult<Vec<LabelSet>> {
        if selectors.is_empty() {
            return Err(ServiceError::invalid("match", "at least one stream selector is required"));
        }
        let mut parsed = Vec::new();
        for s in selectors {
            parsed.push(parse_selector(s).map_err(|e| {
                let full = e.to_string();
                ServiceError::invalid("match", full.strip_prefix("logql: ").unwrap_or(&full).to_string())
            })?);
        }
        let streams = self.streams_in(tenant, start, end).await?;
        Ok(streams
            .iter()
            .filter(|l| parsed.iter().any(|ms| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or("")))))
            .map(|l| (**l).clone())
            .collect())
    }

    /// Follows the lines matching a LogQL log query: first those stored since `start` (at most
    /// `limit`), then every line pushed after the call, in push order. Messages are numbered
    /// from 1; those up to `from_sequence` are skipped (resuming with the same `start`).
    pub async fn tail(
        &self,
        tenant: &str,
        logql: &str,
        start: Option<i64>,
        limit: i64,
        from_sequence: u64,
    ) -> ServiceResult<BoxStream<'static, TailMessage>> {
        validate::tenant("tenant", tenant)?;
        let Query::Log(lq) = validate::logql(logql)? else {
            return Err(ServiceError::invalid("logql", "a tail takes a log query, not a metric query"));
        };
        let limit = match limit {
            0 => 100,
            n if (1..=5000).contains(&n) => n as usize,
            _ => return Err(ServiceError::invalid("limit", "must be 0 to 5000")),
        };
        let engine = self.engine().await?.clone();
        // Subscribe before replaying, so that no line falls between the two.
        let rx = engine.subscribe(tenant);
        let mut pending = VecDeque::new();
        if let Some(start) = start {
            let end = engine.now_ns() + 1;
            if start < end {
                let (streams, _) = query::log_query(&engine, tenant, lq.clone(), start, end, limit, Direction::Forward)
                    .await
                    .map_err(engine_error)?;
                let mut hits: Vec<(i64, LabelSet, String)> = streams
                    .into_iter()
                    .flat_map(|(l, es)| es.into_iter().map(move |(t, line)| (t, l.clone(), line)))
                    .collect();
                hits.sort_by_key(|h| h.0);
                for (t, l, line) in hits {
                    pending.push_back(TailMessage { sequence: 0, labels: l, entries: vec![(t, line)], dropped: 0 });
                }
            }
        }
        struct St {
            rx: broadcast::Receiver<Arc<crate::engine::TailItem>>,
            query: Arc<LogQuery>,
            pending: VecDeque<TailMessage>,
            seq: u64,
            from: u64,
        }
        let st = St { rx, query: Arc::new(lq), pending, seq: 0, from: from_sequence };
        let stream = futures::stream::unfold(st, |mut st| async move {
            loop {
                if let Some(mut m) = st.pending.pop_front() {
                    st.seq += 1;
                    if st.seq <= st.from {
                        continue;
                    }
                    m.sequence = st.seq;
                    return Some((m, st));
                }
                let (item, dropped) = match st.rx.recv().await {
                    Ok(item) => (item, 0),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        st.pending.push_back(TailMessage {
                            sequence: 0,
                            labels: LabelSet::default(),
                            entries: Vec::new(),
                            dropped: n,
                        });
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                let q = st.query.clone();
                if !q.matchers.iter().all(|m| m.matches(item.labels.get(&m.name).unwrap_or(""))) {
                    continue;
                }
                let mut groups: Vec<(LabelSet, Vec<(i64, String)>)> = Vec::new();
                Pipeline::new(&q).scan(&item.labels, &item.cols, i64::MIN, i64::MAX, |h| {
                    let labels = h.labels.unwrap_or_else(|| (*item.labels).clone());
                    match groups.iter_mut().find(|g| g.0 == labels) {
                        Some(g) => g.1.push((h.ts, h.line)),
                        None => groups.push((labels, vec![(h.ts, h.line)])),
                    }
                });
                for (labels, entries) in groups {
                    st.pending.push_back(TailMessage { sequence: 0, labels, entries, dropped });
                }
            }
        });
        Ok(stream.boxed())
    }

    /// Cuts every head and writes it as a chunk (the shutdown hook).
    pub async fn flush(&self) -> ServiceResult<()> {
        match self.engine.get() {
            Some(e) => e.flush().await.map_err(engine_error),
            None => Ok(()),
        }
    }
}

/// One service per store in the process, so that the gRPC service, the Loki HTTP listener,
/// the OTLP receiver and the self-logs layer share one engine.
static INSTANCES: Mutex<Vec<(usize, Weak<Logging>)>> = Mutex::new(Vec::new());

/// Returns the process's log store over `ctx.store` (created with the settings
/// `logging.retention_hours`, `logging.rate_mb` and `logging.instance` (the write-ahead log's
/// name: one engine per name on a store) on first call).
pub fn instance(ctx: &meshwork_common::ServiceContext) -> Arc<Logging> {
    let key = Arc::as_ptr(&ctx.store) as *const () as usize;
    let mut all = INSTANCES.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|(_, w)| w.strong_count() > 0);
    if let Some(l) = all.iter().find(|(k, _)| *k == key).and_then(|(_, w)| w.upgrade()) {
        return l;
    }
    let mut config = Config::default();
    if let Some(instance) = ctx.settings.raw("logging.instance").filter(|i| !i.is_empty() && !i.contains('/')) {
        config.instance = instance.to_string();
    }
    let hours: f64 = ctx.settings.get_or("logging.retention_hours", 7.0 * 24.0);
    if hours > 0.0 {
        config.default_retention = Duration::from_secs_f64(hours * 3600.0);
    }
    let mb: f64 = ctx.settings.get_or("logging.rate_mb", 256.0);
    if mb > 0.0 {
        config.rate_bytes_per_sec = mb * 1024.0 * 1024.0;
        config.burst_bytes = 2.0 * config.rate_bytes_per_sec;
    }
    let l = Logging::new(ctx.store.clone(), ctx.clock.clone(), config);
    all.push((key, Arc::downgrade(&l)));
    l
}
