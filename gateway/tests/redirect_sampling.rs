//! The gateway's redirect span (HTTP short links) under `traceidratio`: a redirect the gateway
//! roots gets the trace id its sampling decision was drawn on, so that every hop deciding on
//! the trace id agrees with it. (Its own process: it installs the process-wide tracer.)

use meshwork_telemetry::sampling::ratio_samples;
use meshwork_telemetry::telemetry::{TelemetryConfig, export_layer};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// Drops what it is given: the test reads the spans' contexts, not their export.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

#[test]
fn a_redirect_rooted_here_is_sampled_exactly_when_its_trace_id_says_so() {
    let vars = [("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.3")];
    let config = TelemetryConfig::from_vars("gateway", None, |name| {
        vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    })
    .unwrap();
    let (otel, guard) = export_layer(&config, Discard);
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(otel));
    let (mut sampled, mut unsampled) = (0, 0);
    for _ in 0..300 {
        // Another redirect decided on this thread before the first one's span is used must not
        // take its trace id.
        let first = meshwork_gateway::trace::redirect_span(&http::HeaderMap::new(), "/{code}", "/sale", true);
        let second = meshwork_gateway::trace::redirect_span(&http::HeaderMap::new(), "/{code}", "/docs", true);
        for span in [first, second] {
            let sc = span.context().span().span_context().clone();
            assert!(sc.is_valid());
            assert_eq!(sc.is_sampled(), ratio_samples(0.3, sc.trace_id()), "{sc:?}");
            if sc.is_sampled() { sampled += 1 } else { unsampled += 1 }
        }
    }
    assert!(sampled > 80 && unsampled > 300, "{sampled} sampled, {unsampled} not");
    guard.shutdown();
}
