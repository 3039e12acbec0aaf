//! Process-wide tracing setup: a log layer (human or JSON lines on stderr, each carrying the
//! current `trace_id` and `span_id`) and, when an OTLP endpoint is configured, an
//! OpenTelemetry layer exporting meshwork's own spans through a bounded batch processor.
//!
//! Configuration follows the OpenTelemetry SDK variables: `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`
//! (`always_on`, `always_off`, `traceidratio`, which decide on the trace id whatever the caller
//! decided, and `parentbased_*`, which follow the caller; default `parentbased_always_on`),
//! `OTEL_TRACES_SAMPLER_ARG` (the ratio), `OTEL_SDK_DISABLED=true`, `OTEL_BSP_MAX_QUEUE_SIZE`,
//! `OTEL_BSP_SCHEDULE_DELAY` (milliseconds between exports; 500 unless set),
//! `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` and `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION` (`gzip`);
//! for an `https://` endpoint `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE` (CA certificates trusted
//! instead of the system's) and `..._CLIENT_CERTIFICATE` with `..._CLIENT_KEY` (mutual TLS), read
//! only with an endpoint variable (a flag counts as one: see [`TelemetryConfig::from_vars`]).
//! Spans are dropped, never waited for, when the queue is full or the collector is down.

use std::fmt;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, format};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Errors of telemetry setup.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    #[error("{variable}={value:?}: {reason}")]
    BadVariable { variable: &'static str, value: String, reason: String },
}

/// How a process traces.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `service.name` of this process.
    pub service_name: String,
    /// OTLP/gRPC endpoint (`http://host:4317`); `None` exports nothing.
    pub otlp_endpoint: Option<String>,
    /// The sampler of root spans (children follow their parent).
    pub sampler: SamplerConfig,
    /// Log filter when `RUST_LOG` is not set.
    pub default_log_filter: String,
    /// Most spans queued for export before new ones are dropped.
    pub max_queue_size: usize,
    /// Most spans in one export (at most `max_queue_size`).
    pub max_export_batch_size: usize,
    /// The longest one export may take, retries included, before its spans are given up.
    pub export_timeout: Duration,
    /// The longest a span waits in the queue before it is exported (sooner when a batch fills).
    pub schedule_delay: Duration,
    /// Headers and compression of the exports.
    pub exporter: crate::export::otlp::ExporterSettings,
}

/// Which spans are sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerConfig {
    /// `parentbased_always_on` (the default): the caller decides; every new trace is sampled.
    AlwaysOn,
    /// `parentbased_always_off`: the caller decides; no new trace is sampled.
    AlwaysOff,
    /// `parentbased_traceidratio`: the caller decides; this share of new traces is sampled.
    Ratio(f64),
    /// `always_on` (1), `always_off` (0), `traceidratio`: this share of every trace is sampled,
    /// decided on its trace id whatever the caller decided.
    IgnoreParent(f64),
}

impl TelemetryConfig {
    /// Returns the configuration for `service_name` from the `OTEL_*` environment, with
    /// `default_endpoint` used when no endpoint variable is set.
    pub fn from_env(service_name: &str, default_endpoint: Option<String>) -> Result<Self, TelemetryError> {
        Self::from_vars(service_name, default_endpoint, |name| std::env::var(name).ok())
    }

    /// [`TelemetryConfig::from_env`] with the variables read through `lookup`. A command-line
    /// endpoint is given as `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` by the lookup, so that the TLS
    /// variables are read with it.
    pub fn from_vars(
        service_name: &str,
        default_endpoint: Option<String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TelemetryError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        // The traces-only variable of an exporter setting, else the one for every signal.
        let otlp_var = |traces: &'static str, all: &'static str| {
            var(traces).map(|v| (traces, v)).or_else(|| var(all).map(|v| (all, v)))
        };
        let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let chosen = otlp_var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT").map(|(_, v)| v);
        // The TLS variables go with an endpoint the user chose, not with the embedded collector
        // that `meshwork up` exports to by default (plaintext, on loopback).
        let tls = match &chosen {
            Some(_) if !disabled => exporter_tls(&otlp_var)?,
            _ => crate::export::otlp::ExporterTls::default(),
        };
        let endpoint = if disabled { None } else { chosen.or(default_endpoint) };
        let endpoint = endpoint.map(|e| normalise_endpoint(&e));
        let ratio = match var("OTEL_TRACES_SAMPLER_ARG") {
            None => 1.0,
            Some(v) => match v.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    return Err(TelemetryError::BadVariable {
                        variable: "OTEL_TRACES_SAMPLER_ARG",
                        value: v,
                        reason: "must be a number from 0 to 1".into(),
                    });
                }
            },
        };
        let sampler = match var("OTEL_TRACES_SAMPLER").as_deref() {
            None if ratio < 1.0 => SamplerConfig::Ratio(ratio),
            None | Some("parentbased_always_on") => SamplerConfig::AlwaysOn,
            Some("parentbased_always_off") => SamplerConfig::AlwaysOff,
            Some("parentbased_traceidratio") => SamplerConfig::Ratio(ratio),
            Some("always_on") => SamplerConfig::IgnoreParent(1.0),
            Some("always_off") => SamplerConfig::IgnoreParent(0.0),
            Some("traceidratio") => SamplerConfig::IgnoreParent(ratio),
            Some(other) => {
                return Err(TelemetryError::BadVariable {
                    variable: "OTEL_TRACES_SAMPLER",
                    value: other.into(),
                    reason: "use always_on, always_off, traceidratio or a parentbased_ variant".into(),
                });
            }
        };
        let named = |variable: &'static str| var(variable).map(|value| (variable, value));
        const COUNT: &str = "must be a positive integer";
        const MILLISECONDS: &str = "must be a positive number of milliseconds";
        let max_queue_size = positive::<usize>(named("OTEL_BSP_MAX_QUEUE_SIZE"), COUNT)?.unwrap_or(2048);
        let max_export_batch_size =
            positive::<usize>(named("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), COUNT)?.unwrap_or(512.min(max_queue_size));
        if max_export_batch_size > max_queue_size {
            return Err(TelemetryError::BadVariable {
                variable: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                value: max_export_batch_size.to_string(),
                reason: format!("must be at most OTEL_BSP_MAX_QUEUE_SIZE ({max_queue_size})"),
            });
        }
        let export_timeout =
            positive::<u64>(otlp_var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"), MILLISECONDS)?
                .map_or(DEFAULT_EXPORT_TIMEOUT, Duration::from_millis);
        let schedule_delay = positive::<u64>(named("OTEL_BSP_SCHEDULE_DELAY"), MILLISECONDS)?
            .map_or(DEFAULT_SCHEDULE_DELAY, Duration::from_millis);
        let headers = match otlp_var("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") {
            None => Vec::new(),
            Some((variable, value)) => crate::export::otlp::parse_headers(&value)
                .map_err(|reason| TelemetryError::BadVariable { variable, value, reason })?,
        };
        let gzip = match otlp_var("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION") {
            None => false,
            Some((_, value)) if value.trim() == "none" => false,
            Some((_, value)) if value.trim() == "gzip" => true,
            Some((variable, value)) => {
                let reason = "is not a compression this exporter has (gzip, none)".into();
                return Err(TelemetryError::BadVariable { variable, value, reason });
            }
        };
        Ok(TelemetryConfig {
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| service_name.to_string()),
            otlp_endpoint: endpoint,
            sampler,
            default_log_filter: "info".into(),
            max_queue_size,
            max_export_batch_size,
            export_timeout,
            schedule_delay,
            exporter: crate::export::otlp::ExporterSettings { headers, gzip, tls },
        })
    }
}

/// Reads `setting` (a variable and its value, when set) as a positive integer; an error names
/// the variable, its value and `reason`.
fn positive<T: std::str::FromStr + Default + PartialOrd>(
    setting: Option<(&'static str, String)>,
    reason: &str,
) -> Result<Option<T>, TelemetryError> {
    let Some((variable, value)) = setting else { return Ok(None) };
    match value.parse::<T>() {
        Ok(n) if n > T::default() => Ok(Some(n)),
        _ => Err(TelemetryError::BadVariable { variable, value, reason: reason.into() }),
    }
}

/// Reads and checks the exporter's TLS files, named by `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`,
/// `..._CLIENT_CERTIFICATE` and `..._CLIENT_KEY` (`otlp_var` looks a setting up). Errors name
/// the variable and the file.
fn exporter_tls(
    otlp_var: &impl Fn(&'static str, &'static str) -> Option<(&'static str, String)>,
) -> Result<crate::export::otlp::ExporterTls, TelemetryError> {
    use crate::export::otlp::ExporterTls;
    use meshwork_identity::tls::{PemError, TlsFile, TlsIdentity, parse_roots, read_pem};
    use std::path::Path;
    let ca = otlp_var("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE");
    let cert = otlp_var("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE");
    let key = otlp_var("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY");
    let bad = |(variable, value): (&'static str, String), reason: String| TelemetryError::BadVariable {
        variable,
        value,
        reason,
    };
    let ca_pem = match ca {
        Some(setting) => {
            // tonic would drop a CA certificate rustls cannot trust without a word (and the
            // exports would fail later with a handshake error): parsed here.
            let pem = read_pem(Path::new(&setting.1)).and_then(|pem| parse_roots(&pem).map(|_| pem));
            Some(pem.map_err(|problem| bad(setting, problem.to_string()))?)
        }
        None => None,
    };
    let identity = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let identity = TlsIdentity::from_files(Path::new(&cert.1), Path::new(&key.1), None);
            Some(identity.map_err(|e| match (e.file, e.problem) {
                (TlsFile::Key, PemError::KeyMismatch) => {
                    bad(key, "the key does not belong to the client certificate".into())
                }
                (TlsFile::Key, problem) => bad(key, problem.to_string()),
                (_, problem) => bad(cert, problem.to_string()),
            })?)
        }
        (Some(alone), None) | (None, Some(alone)) => {
            let reason = "a client certificate and its key go together (..._CLIENT_CERTIFICATE, ..._CLIENT_KEY)";
            return Err(bad(alone, reason.into()));
        }
    };
    Ok(ExporterTls { ca_pem, identity })
}

/// How long a span waits for export at most when `OTEL_BSP_SCHEDULE_DELAY` is not set. Shorter
/// than the SDK's 5 s: the trace view shows a call half a second after it ends.
pub const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_millis(500);

/// How long one export may take when `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` is not set: the
/// specification's 10 s.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Adds `http://` to a schemeless endpoint: in opentelemetry-otlp 0.33 a schemeless endpoint
/// means https, which a loopback collector does not speak.
pub fn normalise_endpoint(endpoint: &str) -> String {
    if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") }
}

/// The tracer of the installed export pipeline, for spans built on the OpenTelemetry API
/// directly rather than through `tracing` (see [`tracer`]).
static TRACER: RwLock<Option<SdkTracer>> = RwLock::new(None);

/// Whether [`TRACER`] is set, readable without the lock (checked on every call).
static EXPORTING: AtomicBool = AtomicBool::new(false);

fn set_tracer(tracer: Option<SdkTracer>) {
    let mut slot = TRACER.write().unwrap_or_else(|e| e.into_inner());
    EXPORTING.store(tracer.is_some(), Ordering::Relaxed);
    *slot = tracer;
}

/// Returns whether spans are exported (a [`tracer`] is installed), without taking its lock or
/// cloning it: the check a call that may not be sampled makes first.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Returns the tracer spans are exported with, `None` when nothing is exported. For spans that
/// are never entered, such as the gateway's per-call spans, which live in the request context
/// across many proxy hooks: built on the OpenTelemetry API, they skip the `tracing` registry,
/// its layer callbacks and the span builder copy (a sampled gateway call: 3.0 µs instead of 6.5
/// in the `trace_spans` bench, 24 instead of 36 with cold caches).
pub fn tracer() -> Option<SdkTracer> {
    TRACER.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Keeps the exporter alive; [`TelemetryGuard::shutdown`] flushes queued spans.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops the exporter, waiting at most 5 seconds (a dead collector must not
    /// hold up the process's exit). Blocks: call it from a blocking thread (for example
    /// `tokio::task::spawn_blocking`), never from a current-thread runtime.
    pub fn shutdown(mut self) {
        set_tracer(None);
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("meshwork: flushing traces: {e}");
        }
    }

    /// Returns true when spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

/// Targets whose spans are exported: meshwork's own crates only (h2, hyper, tonic and the
/// embedded collector's own handlers stay out, or every export would trace itself).
fn exported_targets() -> Targets {
    Targets::new()
        .with_target("meshwork_collector", LevelFilter::OFF)
        .with_target("meshwork::storage", LevelFilter::INFO)
        .with_target("meshwork", LevelFilter::INFO)
}

fn log_filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Installs logging only (no export), for commands that do not serve (e.g. `meshwork load`).
pub fn init_logs_only(default_filter: &str) {
    let _ = tracing_subscriber::registry().with(log_layer().with_filter(log_filter(default_filter))).try_init();
}

/// Installs the global subscriber. Must run inside a Tokio runtime that outlives the returned
/// guard (the OTLP exporter's connection lives on it).
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    init_with(config, None)
}

/// A layer that sees every event beside the process's own log and trace layers (`meshwork up`
/// ships its log lines into its own log store with one).
pub type ExtraLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// [`init`] with one more layer, `extra`, which filters what it takes itself.
pub fn init_with(config: &TelemetryConfig, extra: Option<ExtraLayer>) -> Result<TelemetryGuard, TelemetryError> {
    let logs = log_layer().with_filter(log_filter(&config.default_log_filter));
    let Some(endpoint) = &config.otlp_endpoint else {
        let _ = tracing_subscriber::registry().with(extra).with(logs).try_init();
        return Ok(TelemetryGuard { provider: None });
    };
    let exporter = crate::export::otlp::OtlpExporter::new(endpoint, config.export_timeout, &config.exporter)
        .map_err(TelemetryError::Exporter)?;
    crate::export::register();
    let (otel, guard) = export_layer(config, exporter);
    let _ = tracing_subscriber::registry().with(extra).with(logs).with(otel).try_init();
    Ok(guard)
}

/// The OpenTelemetry layer of [`init`] (meshwork's span targets, the configured sampler, a
/// bounded batch processor) exporting through `exporter`; it also sets the head-sampling ratio
/// of [`crate::sampling::draw_root`]. Public so that benchmarks can build the same pipeline
/// around an exporter of their own.
pub fn export_layer<S, E>(
    config: &TelemetryConfig,
    exporter: E,
) -> (impl Layer<S> + Send + Sync + 'static, TelemetryGuard)
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
{
    let queue = crate::export::Queue::new(config.max_queue_size);
    let batch = BatchSpanProcessor::builder(crate::export::CountingExporter::new(exporter, queue.clone()))
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(config.max_queue_size)
                .with_max_export_batch_size(config.max_export_batch_size.min(config.max_queue_size))
                .with_scheduled_delay(config.schedule_delay)
                .build(),
        )
        .build();
    let (ratio, follow_remote) = match config.sampler {
        SamplerConfig::AlwaysOn => (1.0, true),
        SamplerConfig::AlwaysOff => (0.0, true),
        SamplerConfig::Ratio(r) => (r, true),
        SamplerConfig::IgnoreParent(r) => (r, false),
    };
    crate::sampling::set_root_ratio(ratio);
    crate::sampling::set_follow_parent(follow_remote);
    let sampler = crate::sampling::RootSampler { ratio, follow_remote };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(crate::export::CountingProcessor::new(batch, queue))
        .with_sampler(sampler)
        .with_id_generator(crate::sampling::DecidedIds)
        .with_resource(Resource::builder().with_service_name(config.service_name.clone()).build())
        .build();
    let tracer = provider.tracer("meshwork");
    set_tracer(Some(tracer.clone()));
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(exported_targets());
    (otel, TelemetryGuard { provider: Some(provider) })
}

fn log_layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let json = std::env::var("MESHWORK_LOG_FORMAT").is_ok_and(|v| v == "json");
    // Colours only for a terminal: logs redirected to a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    log_layer_to(std::io::stderr, json, ansi)
}

/// The log layer writing to `writer`: plain lines, or JSON lines when `json`.
pub(crate) fn log_layer_to<S, W>(writer: W, json: bool, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer().with_writer(writer).with_span_events(FmtSpan::NONE).with_ansi(ansi);
    if json {
        // JSON lines get top-level "trace_id" and "span_id" keys.
        base.json().event_format(TraceIds { inner: format().json(), json: true }).boxed()
    } else {
        base.event_format(TraceIds { inner: format(), json: false }).boxed()
    }
}

/// Adds the `trace_id` and `span_id` of the span an event was logged in to its line: a
/// `trace_id=... span_id=...` prefix, or two top-level keys of a JSON line.
struct TraceIds<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for TraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        // The OpenTelemetry context the tracing layer activated when the span was entered
        // (`tracing::Span::current()` cannot serve here: inside an event callback the dispatcher
        // is not re-entered, so it is always the empty span).
        let ids = {
            let cx = opentelemetry::Context::current();
            let sc = cx.span().span_context().clone();
            sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
        };
        let Some((trace_id, span_id)) = ids else { return self.inner.format_event(ctx, writer, event) };
        if !self.json {
            write!(writer, "trace_id={trace_id} span_id={span_id} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        // Format the JSON object aside, then open it with the two ids.
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Held by the tests that change process-wide tracing state (the installed tracer, the root
    /// sampling ratio, whether calls follow their caller), which the test threads of this crate
    /// share. Taken through [`process_state`] or [`process_state_blocking`], whose guard puts
    /// that state back.
    static PROCESS_STATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// The process-wide tracing state, held: its head-sampling state is as it is without
    /// telemetry when taken, and is put back so when dropped (also when the test fails), before
    /// the next test takes it. A test that forgot to restore what it set made another one fail
    /// now and then, depending on which of them took the lock first.
    pub(crate) struct ProcessState(#[allow(dead_code)] tokio::sync::MutexGuard<'static, ()>);

    impl ProcessState {
        fn new(guard: tokio::sync::MutexGuard<'static, ()>) -> Self {
            reset_sampling();
            ProcessState(guard)
        }
    }

    impl Drop for ProcessState {
        fn drop(&mut self) {
            reset_sampling();
        }
    }

    fn reset_sampling() {
        crate::sampling::set_root_ratio(1.0);
        crate::sampling::set_follow_parent(true);
    }

    /// Takes the process-wide tracing state, in async tests (held across their awaits).
    pub(crate) async fn process_state() -> ProcessState {
        ProcessState::new(PROCESS_STATE.lock().await)
    }

    /// Takes the process-wide tracing state, in tests that are not async.
    pub(crate) fn process_state_blocking() -> ProcessState {
        ProcessState::new(PROCESS_STATE.blocking_lock())
    }

    /// Collects what the log layer writes.
    #[derive(Clone, Default)]
    pub(crate) struct Buffer(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    /// Logs one line inside a sampled span and one outside; returns the output and the span's ids.
    fn log_in_span(json: bool) -> (String, String, String) {
        let buffer = Buffer::default();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(log_layer_to(buffer.clone(), json, false))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("call");
            let ids = {
                let sc = span.context().span().span_context().clone();
                (sc.trace_id().to_string(), sc.span_id().to_string())
            };
            span.in_scope(|| tracing::info!(answer = 42, "inside"));
            tracing::info!("outside");
            ids
        });
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        (out, trace_id, span_id)
    }

    fn config(vars: &[(&str, &str)]) -> Result<TelemetryConfig, TelemetryError> {
        let vars: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TelemetryConfig::from_vars("svc", None, |name| vars.get(name).cloned())
    }

    #[test]
    fn batch_settings_come_from_the_standard_variables() {
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.schedule_delay, DEFAULT_SCHEDULE_DELAY);
        assert_eq!(defaults.max_queue_size, 2048);
        assert_eq!(defaults.max_export_batch_size, 512);
        assert_eq!(defaults.otlp_endpoint, None);
        let set = config(&[
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4317"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ])
        .unwrap();
        assert_eq!(set.schedule_delay, Duration::from_millis(50));
        assert_eq!(set.max_queue_size, 64);
        assert_eq!(set.max_export_batch_size, 64, "the default batch is cut to a smaller queue");
        let batch = config(&[("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100")]).unwrap();
        assert_eq!((batch.max_queue_size, batch.max_export_batch_size), (2048, 100));
        assert_eq!(set.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        assert_eq!(set.sampler, SamplerConfig::Ratio(0.1));
        // Each standard sampler name; only the parentbased_ ones follow the caller.
        let sampler = |name: &str, arg: &str| {
            let mut vars = vec![("OTEL_TRACES_SAMPLER_ARG", arg)];
            vars.extend((!name.is_empty()).then_some(("OTEL_TRACES_SAMPLER", name)));
            config(&vars).unwrap().sampler
        };
        assert_eq!(sampler("", "1"), SamplerConfig::AlwaysOn);
        assert_eq!(sampler("", "0.25"), SamplerConfig::Ratio(0.25));
        assert_eq!(sampler("parentbased_always_on", "0.25"), SamplerConfig::AlwaysOn);
        assert_eq!(sampler("parentbased_always_off", "1"), SamplerConfig::AlwaysOff);
        assert_eq!(sampler("parentbased_traceidratio", "0.25"), SamplerConfig::Ratio(0.25));
        assert_eq!(sampler("always_on", "0.25"), SamplerConfig::IgnoreParent(1.0));
        assert_eq!(sampler("always_off", "1"), SamplerConfig::IgnoreParent(0.0));
        assert_eq!(sampler("traceidratio", "0.25"), SamplerConfig::IgnoreParent(0.25));
        let err = config(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]).unwrap_err().to_string();
        assert!(err.contains("OTEL_TRACES_SAMPLER") && err.contains("jaeger_remote"), "{err}");
        for bad in ["0", "-5", "soon"] {
            let err = config(&[("OTEL_BSP_SCHEDULE_DELAY", bad)]).unwrap_err().to_string();
            assert!(err.starts_with("OTEL_BSP_SCHEDULE_DELAY="), "{err}");
            assert!(err.contains("positive number of milliseconds"), "{err}");
        }
        for variable in ["OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] {
            for bad in ["0", "-1", "many"] {
                let err = config(&[(variable, bad)]).unwrap_err().to_string();
                assert!(err.starts_with(&format!("{variable}={bad:?}")) && err.contains("positive integer"), "{err}");
            }
        }
        let vars = [("OTEL_BSP_MAX_QUEUE_SIZE", "64"), ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100")];
        let err = config(&vars).unwrap_err().to_string();
        assert!(err.starts_with("OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"100\"") && err.contains("at most"), "{err}");
    }

    #[test]
    fn exporter_settings_come_from_the_standard_variables_and_bad_ones_are_named() {
        assert_eq!(config(&[]).unwrap().exporter, Default::default());
        assert_eq!(config(&[]).unwrap().export_timeout, Duration::from_secs(10));
        let timeout = |vars: &[(&str, &str)]| config(vars).map(|c| c.export_timeout);
        assert_eq!(timeout(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")]).unwrap(), Duration::from_millis(2500));
        let both = [("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"), ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700")];
        assert_eq!(timeout(&both).unwrap(), Duration::from_millis(700), "the traces-only variable wins");
        for bad in ["0", "-1", "10s"] {
            let err = timeout(&[("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", bad)]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT={bad:?}")), "{err}");
            assert!(err.contains("positive number of milliseconds"), "{err}");
        }
        let set = config(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=blue"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ])
        .unwrap();
        assert!(set.exporter.gzip);
        // The traces-only variable wins over the one for every signal.
        assert_eq!(set.exporter.headers.len(), 1);
        assert_eq!(set.exporter.headers[0].0.as_str(), "x-tenant");
        // A blank variable is unset, as for the other variables.
        let blank = config(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", " "), ("OTEL_EXPORTER_OTLP_HEADERS", "k=v")]);
        assert_eq!(blank.unwrap().exporter.headers[0].0.as_str(), "k");
        let err = config(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]).unwrap_err().to_string();
        assert!(err.contains("OTEL_EXPORTER_OTLP_COMPRESSION") && err.contains("zstd"), "{err}");
        let err = config(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x")]).unwrap_err().to_string();
        assert!(err.contains("OTEL_EXPORTER_OTLP_TRACES_HEADERS"), "{err}");
    }

    #[test]
    fn plain_lines_inside_a_span_start_with_its_ids() {
        let (out, trace_id, span_id) = log_in_span(false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with(&format!("trace_id={trace_id} span_id={span_id} ")), "{out}");
        assert!(lines[0].contains("inside") && lines[0].contains("answer=42"), "{out}");
        assert!(!lines[1].contains("trace_id="), "{out}");
    }

    #[test]
    fn json_lines_inside_a_span_carry_its_ids_as_keys() {
        let (out, trace_id, span_id) = log_in_span(true);
        let lines: Vec<serde_json::Value> =
            out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["trace_id"], trace_id.as_str());
        assert_eq!(lines[0]["span_id"], span_id.as_str());
        assert_eq!(lines[0]["fields"]["message"], "inside");
        assert_eq!(lines[0]["fields"]["answer"], 42);
        assert!(lines[1].get("trace_id").is_none(), "{out}");
    }
}
