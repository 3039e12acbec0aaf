//! The OTLP exporter (`otlp`) and counting wrappers around the OpenTelemetry pipeline, so that a full queue or a dead
//! collector shows on `/metrics` instead of only in a log line:
//! `meshwork_trace_spans_ended_total` counts sampled spans as they end,
//! `meshwork_trace_spans_dropped_total` those dropped because the export queue was full, and
//! `meshwork_trace_spans_exported_total{result="ok|failed"}` what the exporter shipped or gave
//! up on. What ended and is in none of those is still queued or being exported.
//!
//! The batch processor counts its drops but shows them nowhere (a log line at shutdown), so the
//! queue's bound is kept here, in front of it: [`CountingProcessor`] admits a span only while
//! fewer than the queue's size are admitted and not yet handed to an export (which
//! [`CountingExporter`] sees), and counts the others as dropped. The processor's own queue, of
//! the same size, then never overflows. Only at shutdown can a span go uncounted: one that ends
//! while the processor shuts down, or is still queued when its shutdown times out.

pub mod otlp;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::{IntCounter, IntCounterVec};

use crate::metrics::{counter, single_counter};

static SPANS_ENDED: LazyLock<IntCounter> = LazyLock::new(|| {
    single_counter("meshwork_trace_spans_ended_total", "sampled spans ended (queued for export or dropped)")
});

static SPANS_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    single_counter("meshwork_trace_spans_dropped_total", "sampled spans dropped because the export queue was full")
});

static SPANS_EXPORTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter("meshwork_trace_spans_exported_total", "spans the OTLP exporter shipped, by result", &["result"])
});

/// The spans admitted into the export queue and not yet handed to an export, against the
/// queue's size.
#[derive(Debug)]
pub struct Queue {
    pending: AtomicUsize,
    capacity: usize,
}

impl Queue {
    /// A queue of `capacity` spans (the batch processor's `max_queue_size`).
    pub fn new(capacity: usize) -> Arc<Queue> {
        Arc::new(Queue { pending: AtomicUsize::new(0), capacity })
    }

    /// Takes a place for one span; false when the queue is full.
    fn admit(&self) -> bool {
        self.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1)).is_ok()
    }

    /// Gives back the places of `n` spans handed to an export.
    fn release(&self, n: usize) {
        let _ = self.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| Some(p.saturating_sub(n)));
    }
}

/// Counts spans as they end and drops those the queue has no room for (see the module), in
/// front of `inner` (the batch processor).
#[derive(Debug)]
pub struct CountingProcessor<P> {
    inner: P,
    queue: Arc<Queue>,
}

impl<P> CountingProcessor<P> {
    /// Counts for `inner`, whose queue `queue` accounts for (shared with its [`CountingExporter`]).
    pub fn new(inner: P, queue: Arc<Queue>) -> Self {
        CountingProcessor { inner, queue }
    }
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        SPANS_ENDED.inc();
        if self.queue.admit() {
            self.inner.on_end(span);
        } else {
            SPANS_DROPPED.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts what `inner` (the OTLP exporter) ships and fails to ship, and frees the batch's
/// places in the [`Queue`] as the export starts.
#[derive(Debug)]
pub struct CountingExporter<E> {
    inner: E,
    queue: Arc<Queue>,
}

impl<E> CountingExporter<E> {
    /// Counts for `inner`, freeing places in `queue` (shared with the [`CountingProcessor`]).
    pub fn new(inner: E, queue: Arc<Queue>) -> Self {
        CountingExporter { inner, queue }
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.queue.release(n);
        let result = self.inner.export(batch).await;
        let label = if result.is_ok() { "ok" } else { "failed" };
        SPANS_EXPORTED.with_label_values(&[label]).inc_by(n as u64);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Makes the counters visible (at zero) before the first span.
pub fn register() {
    LazyLock::force(&SPANS_ENDED);
    LazyLock::force(&SPANS_DROPPED);
    for result in ["ok", "failed"] {
        SPANS_EXPORTED.with_label_values(&[result]);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};

    use super::*;

    /// A processor that keeps what it is given.
    #[derive(Debug, Default)]
    struct Kept(Mutex<Vec<SpanData>>);

    impl SpanProcessor for Kept {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.lock().unwrap().push(span);
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    /// The queue's bound is kept in front of the processor: spans beyond it are counted as
    /// dropped, and an export frees the places of its batch.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts_and_an_export_makes_room() {
        // No other test's pipeline runs meanwhile (they hold the same lock): the counters'
        // differences are this test's.
        let _state = crate::telemetry::tests::process_state().await;
        let (ended, dropped) = (SPANS_ENDED.get(), SPANS_DROPPED.get());
        let exported_ok = SPANS_EXPORTED.with_label_values(&["ok"]).get();
        let resource = Resource::builder().with_service_name("queue-test").build();
        let span = || crate::export::otlp::tests::spans(&resource).remove(0);
        let queue = Queue::new(4);
        let processor = CountingProcessor::new(Kept::default(), queue.clone());
        for _ in 0..10 {
            processor.on_end(span());
        }
        assert_eq!(processor.inner.0.lock().unwrap().len(), 4, "the queue holds 4");
        assert_eq!((SPANS_ENDED.get() - ended, SPANS_DROPPED.get() - dropped), (10, 6));

        // An export of 3 of them frees 3 places.
        let kept = Keep::default();
        let exporter = CountingExporter::new(kept.clone(), queue.clone());
        let batch: Vec<SpanData> = processor.inner.0.lock().unwrap().drain(..3).collect();
        exporter.export(batch).await.unwrap();
        assert_eq!(SPANS_EXPORTED.with_label_values(&["ok"]).get() - exported_ok, 3);
        for _ in 0..5 {
            processor.on_end(span());
        }
        assert_eq!(processor.inner.0.lock().unwrap().len(), 4, "one left and three new");
        assert_eq!((SPANS_ENDED.get() - ended, SPANS_DROPPED.get() - dropped), (15, 8));
        assert_eq!(kept.0.lock().unwrap().len(), 3);
    }

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
