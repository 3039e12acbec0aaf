//! Dogfooding: ships the mesh's own log lines into the log store, in-process, under tenant
//! `meshwork` with labels `service` and `level` (and the line's `trace_id`, when it has one, as
//! structured metadata, so a line links to its trace). [`SelfLogs`] is a
//! `tracing_subscriber::Layer` and also a small sink ([`SelfLogs::log`]) for lines built by hand
//! (the gateway's access log). It never blocks the caller: lines go into a bounded queue
//! (dropped and counted when full) that a background task pushes in batches.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshwork_common::Clock;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

use crate::engine::{IncomingEntry, IncomingStream};
use crate::labels::LabelSet;
use crate::service::Logging;

/// The tenant the mesh's own logs land under.
pub const TENANT: &str = "meshwork";
/// Lines queued at most before new ones are dropped.
const QUEUE: usize = 65_536;
/// Most lines per push.
const BATCH: usize = 2_000;
/// Longest wait before a partial batch is pushed.
const LINGER: Duration = Duration::from_millis(200);

struct Line {
    ts: i64,
    service: String,
    level: &'static str,
    line: String,
    trace_id: Option<String>,
}

/// The self-logs layer and sink. Cheap to clone.
#[derive(Clone)]
pub struct SelfLogs {
    tx: mpsc::Sender<Line>,
    clock: Arc<dyn Clock>,
    default_service: &'static str,
    dropped: Arc<AtomicU64>,
}

/// Starts shipping into `logging` (the shipper runs on the current runtime until every
/// [`SelfLogs`] handle is dropped). Events whose target names no meshwork crate are labelled
/// `service=<default_service>`.
pub fn self_logs(logging: Arc<Logging>, clock: Arc<dyn Clock>, default_service: &'static str) -> SelfLogs {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(ship(logging, rx));
    SelfLogs { tx, clock, default_service, dropped: Arc::new(AtomicU64::new(0)) }
}

impl SelfLogs {
    /// Queues one line (never blocks; dropped and counted when the queue is full).
    pub fn log(&self, service: &str, level: &'static str, line: String, trace_id: Option<String>) {
        let l = Line { ts: self.clock.unix_ns() as i64, service: service.to_string(), level, line, trace_id };
        if self.tx.try_send(l).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns how many lines were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Returns the service a `tracing` target belongs to (`meshwork_orders::service` -> `orders`).
pub fn service_of(target: &str) -> Option<&str> {
    let krate = target.split("::").next()?;
    krate.strip_prefix("meshwork_").filter(|s| !s.is_empty())
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    trace_id: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "trace_id" => self.trace_id = Some(value.to_string()),
            name => {
                let _ = write!(self.rest, " {name}={}", logfmt_value(value));
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, &text);
    }
}

fn logfmt_value(v: &str) -> String {
    if v.is_empty() || v.contains([' ', '"', '=']) { crate::labels::quote(v) } else { v.to_string() }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SelfLogs {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        // The log store's own lines would feed back into it.
        if meta.target().starts_with("meshwork_logging") {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.trace_id.is_none() {
            // The trace the event was logged in: the OpenTelemetry context the tracing layer
            // activated on entering the span (as the telemetry crate's log lines read it).
            use opentelemetry::trace::TraceContextExt;
            let cx = opentelemetry::Context::current();
            let sc = cx.span().span_context().clone();
            if sc.is_valid() {
                fields.trace_id = Some(sc.trace_id().to_string());
            }
        }
        let level = match *meta.level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        let line =
            format!("level={level} msg={}{} target={}", logfmt_value(&fields.message), fields.rest, meta.target());
        let service = service_of(meta.target()).unwrap_or(self.default_service).to_string();
        self.log(&service, level, line, fields.trace_id);
    }
}

async fn ship(logging: Arc<Logging>, mut rx: mpsc::Receiver<Line>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(l)) => batch.push(l),
                _ => break,
            }
        }
        let mut streams: BTreeMap<(String, &'static str), Vec<IncomingEntry>> = BTreeMap::new();
        for l in batch {
            let metadata = l.trace_id.map(|t| vec![("trace_id".to_string(), t)]).unwrap_or_default();
            streams.entry((l.service, l.level)).or_default().push(IncomingEntry {
                ts: Some(l.ts),
                line: l.line,
                metadata,
            });
        }
        let streams = streams
            .into_iter()
            .map(|((service, level), entries)| IncomingStream {
                labels: LabelSet::from_pairs([
                    ("service".to_string(), service),
                    ("level".to_string(), level.to_string()),
                ]),
                entries,
            })
            .collect();
        // A failed push loses these lines; logging it would only add more of them.
        let _ = logging.push(TENANT, streams).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_from_targets() {
        assert_eq!(service_of("meshwork_orders::service"), Some("orders"));
        assert_eq!(service_of("meshwork_gateway"), Some("gateway"));
        assert_eq!(service_of("h2::proto"), None);
    }
}
