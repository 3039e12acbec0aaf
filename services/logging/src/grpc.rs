//! gRPC glue: decodes requests, calls [`Logging`], encodes responses. No logic.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_common::{ServiceError, ServiceResult};
use meshwork_proto::pb::logging::v1 as pb;
use pb::logging_server::Logging as LoggingApi;
use tonic::{Request, Response, Status, Streaming};

use crate::engine::{IncomingEntry, IncomingStream, PushOutcome};
use crate::labels::LabelSet;
use crate::query::{Direction, Stats};
use crate::service::{Logging, QueryParams, QueryResult, TailMessage};
use crate::validate;

/// The tonic service.
#[derive(Clone)]
pub struct LoggingService {
    inner: Arc<Logging>,
}

impl LoggingService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Logging>) -> Self {
        LoggingService { inner }
    }
}

fn ts_opt(field: &str, ts: &Option<prost_types::Timestamp>) -> ServiceResult<Option<i64>> {
    ts.as_ref().map(|t| validate::timestamp_ns(field, t)).transpose()
}

fn timestamp(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ns.div_euclid(1_000_000_000), nanos: ns.rem_euclid(1_000_000_000) as i32 }
}

/// Converts the proto streams of a push into the engine's input (labels parsed, times in ns).
pub fn incoming(streams: Vec<pb::Stream>) -> Vec<IncomingStream> {
    streams
        .into_iter()
        .map(|s| IncomingStream {
            labels: LabelSet::parse(&s.labels),
            entries: s
                .entries
                .into_iter()
                .map(|e| IncomingEntry {
                    // A timestamp out of the representable range counts as missing.
                    ts: e.timestamp.as_ref().and_then(|t| validate::timestamp_ns("timestamp", t).ok()),
                    line: e.line,
                    metadata: e.structured_metadata.into_iter().map(|l| (l.name, l.value)).collect(),
                })
                .collect(),
        })
        .collect()
}

fn push_response(o: PushOutcome) -> pb::PushResponse {
    pb::PushResponse {
        accepted: o.accepted as i64,
        rejected: o.rejected_total() as i64,
        rejected_by_reason: o.rejected.iter().map(|(k, v)| (k.to_string(), *v as i64)).collect(),
        errors: o.errors,
    }
}

fn labels_pb(l: &LabelSet) -> Vec<pb::Label> {
    l.pairs().iter().map(|(n, v)| pb::Label { name: n.clone(), value: v.clone() }).collect()
}

fn stats_pb(s: &Stats) -> pb::QueryStats {
    pb::QueryStats {
        chunks_total: s.chunks_total as i64,
        chunks_skipped_by_bloom: s.chunks_skipped_by_bloom as i64,
        lines_scanned: s.lines_scanned as i64,
        bytes_scanned: s.bytes_scanned as i64,
        exec_time_ns: s.exec_ns as i64,
    }
}

/// Converts a query result to the proto answer.
pub fn query_response(r: QueryResult) -> pb::QueryResponse {
    match r {
        QueryResult::Streams(streams, stats) => pb::QueryResponse {
            result_type: "streams".into(),
            streams: streams
                .into_iter()
                .map(|(l, es)| pb::Stream {
                    labels: l.to_string(),
                    entries: es
                        .into_iter()
                        .map(|(t, line)| pb::Entry { timestamp: Some(timestamp(t)), line, structured_metadata: vec![] })
                        .collect(),
                })
                .collect(),
            series: vec![],
            stats: Some(stats_pb(&stats)),
        },
        QueryResult::Matrix(series, stats) => pb::QueryResponse {
            result_type: "matrix".into(),
            streams: vec![],
            series: series
                .into_iter()
                .map(|(l, pts)| pb::MetricSeries {
                    metric: labels_pb(&l),
                    points: pts
                        .into_iter()
                        .map(|(t, v)| pb::Point { timestamp: Some(timestamp(t)), value: v })
                        .collect(),
                })
                .collect(),
            stats: Some(stats_pb(&stats)),
        },
        QueryResult::Vector(series, stats) => pb::QueryResponse {
            result_type: "vector".into(),
            streams: vec![],
            series: series
                .into_iter()
                .map(|(l, (t, v))| pb::MetricSeries {
                    metric: labels_pb(&l),
                    points: vec![pb::Point { timestamp: Some(timestamp(t)), value: v }],
                })
                .collect(),
            stats: Some(stats_pb(&stats)),
        },
    }
}

fn direction(d: i32) -> ServiceResult<Direction> {
    match pb::Direction::try_from(d) {
        Ok(pb::Direction::Unspecified | pb::Direction::Backward) => Ok(Direction::Backward),
        Ok(pb::Direction::Forward) => Ok(Direction::Forward),
        Err(_) => Err(ServiceError::invalid("direction", "must be BACKWARD or FORWARD")),
    }
}

#[tonic::async_trait]
impl LoggingApi for LoggingService {
    async fn push(&self, request: Request<pb::PushRequest>) -> Result<Response<pb::PushResponse>, Status> {
        let req = request.into_inner();
        let outcome = self.inner.push(&req.tenant, incoming(req.streams)).await?;
        Ok(Response::new(push_response(outcome)))
    }

    async fn push_stream(
        &self,
        request: Request<Streaming<pb::PushRequest>>,
    ) -> Result<Response<pb::PushResponse>, Status> {
        let mut incoming_msgs = request.into_inner();
        let mut total = PushOutcome::default();
        while let Some(req) = incoming_msgs.next().await {
            let req = req?;
            let o = self.inner.push(&req.tenant, incoming(req.streams)).await?;
            total.accepted += o.accepted;
            for (k, v) in o.rejected {
                *total.rejected.entry(k).or_default() += v;
            }
            for e in o.errors {
                if total.errors.len() < 10 {
                    total.errors.push(e);
                }
            }
        }
        Ok(Response::new(push_response(total)))
    }

    async fn query(&self, request: Request<pb::QueryRequest>) -> Result<Response<pb::QueryResponse>, Status> {
        let r = request.into_inner();
        let params = QueryParams {
            start: ts_opt("start", &r.start)?,
            end: ts_opt("end", &r.end)?,
            tenant: r.tenant,
            logql: r.logql,
            limit: i64::from(r.limit),
            direction: direction(r.direction)?,
            step: None,
            range: false,
        };
        Ok(Response::new(query_response(self.inner.query(params).await?)))
    }

    async fn query_range(
        &self,
        request: Request<pb::QueryRangeRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let r = request.into_inner();
        let step = match &r.step {
            None => None,
            Some(d) if d.seconds < 0 || d.nanos < 0 => {
                return Err(ServiceError::invalid("step", "must be positive").into());
            }
            Some(d) => Some(std::time::Duration::new(d.seconds as u64, d.nanos as u32)).filter(|d| !d.is_zero()),
        };
        let params = QueryParams {
            start: ts_opt("start", &r.start)?,
            end: ts_opt("end", &r.end)?,
            tenant: r.tenant,
            logql: r.logql,
            limit: i64::from(r.limit),
            direction: direction(r.direction)?,
            step,
            range: true,
        };
        Ok(Response::new(query_response(self.inner.query(params).await?)))
    }

    async fn labels(&self, request: Request<pb::LabelsRequest>) -> Result<Response<pb::LabelsResponse>, Status> {
        let r = request.into_inner();
        let values = self.inner.labels(&r.tenant, ts_opt("start", &r.start)?, ts_opt("end", &r.end)?).await?;
        Ok(Response::new(pb::LabelsResponse { values }))
    }

    async fn label_values(
        &self,
        request: Request<pb::LabelValuesRequest>,
    ) -> Result<Response<pb::LabelsResponse>, Status> {
        let r = request.into_inner();
        let values =
            self.inner.label_values(&r.tenant, &r.name, ts_opt("start", &r.start)?, ts_opt("end", &r.end)?).await?;
        Ok(Response::new(pb::LabelsResponse { values }))
    }

    async fn series(&self, request: Request<pb::SeriesRequest>) -> Result<Response<pb::SeriesResponse>, Status> {
        let r = request.into_inner();
        let series =
            self.inner.series(&r.tenant, &r.r#match, ts_opt("start", &r.start)?, ts_opt("end", &r.end)?).await?;
        Ok(Response::new(pb::SeriesResponse {
            series: series.iter().map(|l| pb::LabelSet { labels: labels_pb(l) }).collect(),
        }))
    }

    type TailStream = BoxStream<'static, Result<pb::TailResponse, Status>>;

    async fn tail(&self, request: Request<pb::TailRequest>) -> Result<Response<Self::TailStream>, Status> {
        let r = request.into_inner();
        let start = ts_opt("start", &r.start)?;
        let stream = self.inner.tail(&r.tenant, &r.logql, start, i64::from(r.limit), r.from_sequence).await?;
        Ok(Response::new(stream.map(|m: TailMessage| Ok(tail_response(m))).boxed()))
    }
}

fn tail_response(m: TailMessage) -> pb::TailResponse {
    pb::TailResponse {
        sequence: m.sequence,
        stream: Some(pb::Stream {
            labels: if m.labels.pairs().is_empty() { String::new() } else { m.labels.to_string() },
            entries: m
                .entries
                .into_iter()
                .map(|(t, line)| pb::Entry { timestamp: Some(timestamp(t)), line, structured_metadata: vec![] })
                .collect(),
        }),
        dropped_entries: m.dropped,
    }
}
