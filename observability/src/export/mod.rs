//! The OTLP exporter (`otlp`) and counting wrappers around the OpenTelemetry pipeline, so that a full queue or a dead
//! collector shows on `/metrics` instead of only in a log line:
//! `meshwork_trace_spans_ended_total` counts sampled spans handed to the batch processor,
//! `meshwork_trace_spans_exported_total{result="ok|failed"}` counts what the exporter shipped.
//! Spans dropped because the queue was full are `ended - exported{ok} - exported{failed}`
//! (minus the few still queued).

pub mod otlp;

use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::{IntCounter, IntCounterVec, Opts};

static SPANS_ENDED: LazyLock<IntCounter> = LazyLock::new(|| {
    let c = IntCounter::new("meshwork_trace_spans_ended_total", "sampled spans handed to the export queue")
        .unwrap_or_else(|e| unreachable!("metric: {e}"));
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
});

static SPANS_EXPORTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let opts = Opts::new("meshwork_trace_spans_exported_total", "spans the OTLP exporter shipped, by result");
    let c = IntCounterVec::new(opts, &["result"]).unwrap_or_else(|e| unreachable!("metric: {e}"));
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
});

/// Counts spans on their way into `inner` (the batch processor).
#[derive(Debug)]
pub struct CountingProcessor<P>(pub P);

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        SPANS_ENDED.inc();
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Counts what `inner` (the OTLP exporter) ships and fails to ship.
#[derive(Debug)]
pub struct CountingExporter<E>(pub E);

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.0.export(batch).await;
        let label = if result.is_ok() { "ok" } else { "failed" };
        SPANS_EXPORTED.with_label_values(&[label]).inc_by(n);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Makes the counters visible (at zero) before the first span.
pub fn register() {
    LazyLock::force(&SPANS_ENDED);
    for result in ["ok", "failed"] {
        SPANS_EXPORTED.with_label_values(&[result]);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SpanData, SpanExporter};

    /// An exporter that keeps what it is given, for tests that look at the spans made.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Keep(pub(crate) Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Keep {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }
}
