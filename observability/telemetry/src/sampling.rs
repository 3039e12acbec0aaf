//! Head sampling decided before any span is built.
//!
//! A root span built through `tracing` costs the same whether the OpenTelemetry SDK samples it or
//! not: the registry entry, the OTel span builder and every attribute are made, and the decision
//! comes only when the span starts. A proxy that roots every trace pays that on every call. So a
//! root decides first with [`draw_root`]: when the trace is not sampled it builds no span at all
//! and sends a `traceparent` with flags `00` upstream ([`unsampled_traceparent`]) so that the rest
//! of the call skips its spans too; when it is sampled, it builds its span with the attribute
//! [`SAMPLING_PRIORITY`] = 1, which [`RootSampler`] (the SDK sampler installed by
//! [`crate::telemetry::init`]) honours, so the decision is not drawn twice.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::{Link, SpanId, SpanKind, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

/// The span attribute that forces a root span to be sampled (the OpenTracing convention Jaeger
/// also understands). Spans built after [`draw_root`] said yes carry it.
pub const SAMPLING_PRIORITY: &str = "sampling.priority";

/// The share of new traces this process samples, as `f64` bits. 1 until telemetry init sets
/// the configured ratio: without an exporter, spans still serve the logs.
static ROOT_RATIO: AtomicU64 = AtomicU64::new(1.0f64.to_bits());

/// Whether a call with a valid caller context follows the caller's decision (the
/// `parentbased_*` samplers, the default) or draws its own on the trace id (`always_on`,
/// `always_off`, `traceidratio`).
static FOLLOW_PARENT: AtomicBool = AtomicBool::new(true);

/// Sets the share of new traces sampled by [`draw_root`] (done by telemetry init).
pub(crate) fn set_root_ratio(ratio: f64) {
    ROOT_RATIO.store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
}

/// Sets whether calls follow their caller's decision (done by telemetry init).
pub(crate) fn set_follow_parent(follow: bool) {
    FOLLOW_PARENT.store(follow, Ordering::Relaxed);
}

/// Whether calls follow their caller's decision (see [`decide`]).
pub fn follows_parent() -> bool {
    FOLLOW_PARENT.load(Ordering::Relaxed)
}

/// The share of new traces sampled by [`draw_root`].
pub fn root_ratio() -> f64 {
    f64::from_bits(ROOT_RATIO.load(Ordering::Relaxed))
}

/// Draws a new trace's id and decides whether it is sampled: the SDK's trace-id ratio rule on
/// that id with the process's configured ratio. Every hop that decides on the trace id
/// (`traceidratio`) thus agrees with the root. The SDK's root span takes the same id
/// ([`DecidedIds`]).
pub fn draw_root() -> (TraceId, bool) {
    let trace_id = random_trace_id();
    (trace_id, ratio_samples(root_ratio(), trace_id))
}

fn random_trace_id() -> TraceId {
    loop {
        let id = u128::from(next_random()) << 64 | u128::from(next_random());
        if id != 0 {
            return TraceId::from(id);
        }
    }
}

fn random_span_id() -> SpanId {
    loop {
        let id = next_random();
        if id != 0 {
            return SpanId::from(id);
        }
    }
}

/// Returns the `traceparent` of trace `trace_id`, not sampled (flags `00`, a fresh span id), for
/// a new trace that [`draw_root`] turned down. Sent upstream, it tells every later hop to build
/// no spans for this call.
pub fn unsampled_traceparent(trace_id: TraceId) -> http::HeaderValue {
    crate::propagation::traceparent(trace_id, random_span_id(), false)
}

/// A local, unsampled parent in trace `trace_id` (a fresh span id), for a span that must exist
/// although its trace was turned down (the gateway's redirect span, whose context the call it
/// makes carries): the SDK sampler drops spans under it whatever the configured sampler (a
/// remote parent is followed by the parent-based samplers only), and their context goes on with
/// flags `00`.
pub fn unsampled_parent(trace_id: TraceId) -> Context {
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    let local = SpanContext::new(trace_id, random_span_id(), TraceFlags::default(), false, TraceState::default());
    Context::new().with_remote_span_context(local)
}

thread_local! {
    /// The trace id of this thread's last sampled root decision, until the SDK builds the root
    /// span (right after the decision, on the same thread) and takes it ([`DecidedIds`]).
    static DECIDED_ROOT: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// The SDK's id generator, installed by [`crate::telemetry::init`]: a root span takes the trace
/// id its sampling decision was drawn on ([`decide`]), else a random one.
#[derive(Debug, Default)]
pub struct DecidedIds;

impl opentelemetry_sdk::trace::IdGenerator for DecidedIds {
    fn new_trace_id(&self) -> TraceId {
        DECIDED_ROOT.with(Cell::take).unwrap_or_else(random_trace_id)
    }

    fn new_span_id(&self) -> SpanId {
        random_span_id()
    }
}

/// Reads the sampled flag of a `traceparent` in its canonical form (version 00, lowercase hex,
/// non-zero ids: what every W3C implementation sends), without building a context. `None` for
/// any other form, which the full parse of [`crate::propagation::extract`] then judges.
fn canonical_sampled_flag(value: &[u8]) -> Option<bool> {
    let lower_hex = |bytes: &[u8]| bytes.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let non_zero = |bytes: &[u8]| bytes.iter().any(|&b| b != b'0');
    let canonical = value.len() == 55
        && value.starts_with(b"00-")
        && value[35] == b'-'
        && value[52] == b'-'
        && lower_hex(&value[3..35])
        && lower_hex(&value[36..52])
        && lower_hex(&value[53..55])
        && non_zero(&value[3..35])
        && non_zero(&value[36..52]);
    // The sampled bit is the lowest bit of the flags' second hex digit.
    canonical.then(|| char::from(value[54]).to_digit(16).is_some_and(|d| d & 1 == 1))
}

/// The head-sampling decision for a call arriving with `headers`, taken before any span exists.
#[derive(Debug)]
pub enum Head {
    /// The caller sent a `traceparent` that is not sampled: build no span; the header travels
    /// upstream unchanged, so the hops below build none either.
    CallerUnsampled,
    /// A new trace, with this id, that the root sampler turned down: build no span.
    RootUnsampled(TraceId),
    /// The caller's trace, turned down by a sampler that does not follow the caller (`always_off`,
    /// `traceidratio`): build no span; the calls made for it carry this `traceparent` (the
    /// caller's trace, a fresh span id, flags `00`) instead of the caller's, as the SDK's
    /// non-recording span would.
    Declined(http::HeaderValue),
    /// Sampled: build the span and [`adopt`] it (`Some`: child of the caller's context; `None`:
    /// a new root chosen here).
    Sampled(Option<Context>),
}

/// Decides how a call arriving with `headers` is traced. By default (the `parentbased_*`
/// samplers) it follows a valid caller `traceparent`; a sampler that does not follow the caller
/// decides on the caller's trace id, as the SDK's `TraceIdRatioBased` does. Without a valid
/// caller context it is a new trace and [`draw_root`] draws.
pub fn decide(headers: &http::HeaderMap) -> Head {
    use opentelemetry::trace::TraceContextExt;
    if let Some(traceparent) = headers.get(&crate::propagation::TRACEPARENT) {
        let follow = follows_parent();
        // Most calls arrive with a canonical unsampled `traceparent`: decided without a parse.
        if follow && canonical_sampled_flag(traceparent.as_bytes()) == Some(false) {
            return Head::CallerUnsampled;
        }
        let parent = crate::propagation::extract(headers);
        // Read out, not cloned: a clone would copy the caller's tracestate.
        let (valid, sampled, trace_id) = {
            let span = parent.span();
            let sc = span.span_context();
            (sc.is_valid(), sc.is_sampled(), sc.trace_id())
        };
        if valid {
            return match (follow, sampled) {
                (true, true) => Head::Sampled(Some(parent)),
                (true, false) => Head::CallerUnsampled,
                (false, _) if ratio_samples(root_ratio(), trace_id) => Head::Sampled(Some(parent)),
                (false, _) => Head::Declined(unsampled_traceparent(trace_id)),
            };
        }
    }
    match draw_root() {
        (trace_id, true) => {
            DECIDED_ROOT.with(|decided| decided.set(Some(trace_id)));
            Head::Sampled(None)
        }
        (trace_id, false) => Head::RootUnsampled(trace_id),
    }
}

/// Ties a span built after [`decide`] said [`Head::Sampled`] to its decision: child of the
/// caller's context, or a root marked with [`SAMPLING_PRIORITY`] so that the SDK sampler does
/// not draw again.
pub fn adopt(span: &tracing::Span, parent: Option<Context>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() {
        return;
    }
    match parent {
        Some(parent) => {
            let _ = span.set_parent(parent);
        }
        None => {
            span.record(SAMPLING_PRIORITY, 1i64);
        }
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// Each thread's generator starts from `rand`'s OS-seeded thread generator.
fn seed() -> u64 {
    rand::random::<u64>()
}

/// splitmix64: fast, well distributed, per thread.
pub(crate) fn next_random() -> u64 {
    RNG.with(|state| {
        let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// The SDK sampler that [`crate::telemetry::init`] installs. A span with a local parent follows
/// it, and so does one with a remote parent when `follow_remote` (the `parentbased_*` samplers:
/// this is then the SDK's `ParentBased`). Any other span is sampled when it carries
/// [`SAMPLING_PRIORITY`] > 0 (a root that [`draw_root`] already chose), else by the configured
/// ratio on its trace id (the same rule [`decide`] applies to a caller's trace, so both agree).
#[derive(Clone, Debug)]
pub struct RootSampler {
    pub ratio: f64,
    pub follow_remote: bool,
}

impl ShouldSample for RootSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        use opentelemetry::trace::TraceContextExt;
        // Borrowed, not cloned: only the list is copied, into the result.
        let span = parent_context.map(|cx| cx.span());
        let parent = span.as_ref().map(|span| span.span_context()).filter(|sc| sc.is_valid());
        let sampled = match parent {
            Some(sc) if self.follow_remote || !sc.is_remote() => sc.is_sampled(),
            _ => {
                let forced = attributes.iter().any(|kv| {
                    kv.key.as_str() == SAMPLING_PRIORITY && matches!(kv.value, opentelemetry::Value::I64(p) if p > 0)
                });
                forced || ratio_samples(self.ratio, trace_id)
            }
        };
        SamplingResult {
            decision: if sampled { SamplingDecision::RecordAndSample } else { SamplingDecision::Drop },
            attributes: Vec::new(),
            // A child keeps its trace's list, as the SDK's samplers do.
            trace_state: parent.map(|sc| sc.trace_state().clone()).unwrap_or_default(),
        }
    }
}

/// The trace-id ratio rule of the OpenTelemetry SDK: the low 63 bits of the id below
/// `ratio * 2^63`.
pub fn ratio_samples(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let bytes = trace_id.to_bytes();
    let low = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) >> 1;
    low < (ratio * (1u64 << 63) as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceState;

    #[test]
    fn root_decisions_follow_the_ratio() {
        let _state = crate::telemetry::tests::process_state_blocking();
        set_root_ratio(0.1);
        let sampled = (0..100_000).filter(|_| draw_root().1).count();
        assert!((9_000..=11_000).contains(&sampled), "{sampled} of 100000 sampled at 0.1");
        set_root_ratio(0.0);
        assert!(!(0..1000).any(|_| draw_root().1));
        set_root_ratio(1.0);
        assert!((0..1000).all(|_| draw_root().1));
        // The decision is the SDK's rule on the id drawn, so hops deciding on the id agree.
        set_root_ratio(0.3);
        assert!((0..10_000).map(|_| draw_root()).all(|(id, sampled)| sampled == ratio_samples(0.3, id)));
    }

    #[test]
    fn the_canonical_flag_reading_agrees_with_the_full_parse() {
        use opentelemetry::trace::TraceContextExt;
        // `decide` reads whether the process follows the caller.
        let _state = crate::telemetry::tests::process_state_blocking();
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let span = "00f067aa0ba902b7";
        let cases = [
            format!("00-{id}-{span}-00"),
            format!("00-{id}-{span}-01"),
            format!("00-{id}-{span}-02"),
            format!("00-{id}-{span}-03"),
            format!("00-{id}-{span}-ff"),
            format!("00-{}-{span}-00", "0".repeat(32)),
            format!("00-{id}-{}-00", "0".repeat(16)),
            format!("00-{}-{span}-00", id.to_uppercase()),
            format!("00-{id}-{span}-0A"),
            format!("01-{id}-{span}-00"),
            format!("01-{id}-{span}-00-extra"),
            format!("ff-{id}-{span}-00"),
            format!(" 00-{id}-{span}-00"),
            format!("00-{id}-{span}-00 "),
            format!("00-{id}x{span}-00"),
            format!("00-{}-{span}-00", &id[1..]),
            format!("00-{id}g-{span}-0"),
            "garbage".to_string(),
            String::new(),
        ];
        for case in cases {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", http::HeaderValue::from_str(&case).unwrap());
            let sc = crate::propagation::extract(&headers).span().span_context().clone();
            let parsed = sc.is_valid().then(|| sc.is_sampled());
            // Where the fast reading answers, it agrees; where it does not, the full parse decides.
            if let Some(sampled) = canonical_sampled_flag(case.as_bytes()) {
                assert_eq!(Some(sampled), parsed, "{case:?}");
            }
            let expected = match parsed {
                Some(false) => "CallerUnsampled",
                Some(true) => "Sampled",
                None => "root",
            };
            let got = match decide(&headers) {
                Head::CallerUnsampled => "CallerUnsampled",
                Head::Declined(_) => "Declined",
                Head::Sampled(Some(_)) => "Sampled",
                Head::Sampled(None) | Head::RootUnsampled(_) => "root",
            };
            assert_eq!(got, expected, "{case:?}");
        }
    }

    /// `always_on`, `always_off` and `traceidratio` decide on the caller's trace id, whatever
    /// the caller decided; the `parentbased_*` samplers follow it.
    #[test]
    fn samplers_that_do_not_follow_the_caller_decide_on_its_trace_id() {
        use opentelemetry::trace::TraceContextExt;
        let _state = crate::telemetry::tests::process_state_blocking();
        let caller = |id: u128, sampled: bool| {
            let mut headers = http::HeaderMap::new();
            let value = crate::propagation::traceparent(TraceId::from(id), SpanId::from(7), sampled);
            headers.insert("traceparent", value);
            headers
        };
        let kind = |head: Head| match head {
            Head::CallerUnsampled => "CallerUnsampled".to_string(),
            Head::RootUnsampled(_) => "RootUnsampled".to_string(),
            Head::Sampled(Some(_)) => "child".to_string(),
            Head::Sampled(None) => "root".to_string(),
            Head::Declined(tp) => {
                let mut headers = http::HeaderMap::new();
                headers.insert("traceparent", tp);
                let sc = crate::propagation::extract(&headers).span().span_context().clone();
                format!(
                    "Declined {:032x} {} {}",
                    u128::from_be_bytes(sc.trace_id().to_bytes()),
                    sc.span_id() != SpanId::from(7),
                    sc.is_sampled()
                )
            }
        };
        // always_on: an unsampled caller's trace is sampled here.
        set_follow_parent(false);
        set_root_ratio(1.0);
        assert_eq!(kind(decide(&caller(5, false))), "child");
        // always_off: a sampled caller's trace is declined: its id goes on, unsampled, from a new span id.
        set_root_ratio(0.0);
        assert_eq!(kind(decide(&caller(5, true))), format!("Declined {:032x} true false", 5));
        assert_eq!(kind(decide(&http::HeaderMap::new())), "RootUnsampled");
        // traceidratio: the rule the SDK sampler applies to the same trace id.
        set_root_ratio(0.5);
        let (mut sampled, mut declined) = (0, 0);
        for i in 1..=2_000u64 {
            let id = (u128::from(i) << 64) | u128::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let want = ratio_samples(0.5, TraceId::from(id));
            for caller_sampled in [false, true] {
                match decide(&caller(id, caller_sampled)) {
                    Head::Sampled(Some(_)) if want => sampled += 1,
                    Head::Declined(_) if !want => declined += 1,
                    other => panic!("trace {id:x}: {other:?}, the SDK rule says {want}"),
                }
            }
        }
        assert!(sampled > 1_500 && declined > 1_500, "{sampled} sampled, {declined} declined");
        // parentbased_*: the caller decides.
        set_follow_parent(true);
        set_root_ratio(0.0);
        assert_eq!(kind(decide(&caller(5, true))), "child");
        set_root_ratio(1.0);
        assert_eq!(kind(decide(&caller(5, false))), "CallerUnsampled");
    }

    #[test]
    fn the_sdk_sampler_follows_local_parents_and_remote_ones_when_parent_based() {
        use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags};
        let id = TraceId::from(u128::MAX); // the ratio rule turns it down below 1
        let state = TraceState::from_key_value([("vendor", "x")]).unwrap();
        let parent = |sampled: bool, remote: bool| {
            let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
            Context::new().with_remote_span_context(SpanContext::new(id, SpanId::from(3), flags, remote, state.clone()))
        };
        let decide = |sampler: &RootSampler, cx: &Context| {
            let result = sampler.should_sample(Some(cx), id, "x", &SpanKind::Internal, &[], &[]);
            (result.decision == SamplingDecision::RecordAndSample, result.trace_state.header())
        };
        for follow_remote in [true, false] {
            for ratio in [0.0, 1.0] {
                let sampler = RootSampler { ratio, follow_remote };
                for sampled in [true, false] {
                    // A local parent is always followed; its trace's list is kept.
                    assert_eq!(decide(&sampler, &parent(sampled, false)), (sampled, "vendor=x".to_string()));
                    let remote = decide(&sampler, &parent(sampled, true)).0;
                    assert_eq!(remote, if follow_remote { sampled } else { ratio == 1.0 }, "{follow_remote} {ratio}");
                }
            }
        }
    }

    #[test]
    fn unsampled_traceparent_parses_as_unsampled() {
        let mut headers = http::HeaderMap::new();
        let value = unsampled_traceparent(TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736));
        assert_eq!(value.len(), 55);
        headers.insert("traceparent", value.clone());
        assert!(crate::propagation::is_unsampled(&crate::propagation::extract(&headers)));
        assert_eq!(canonical_sampled_flag(value.as_bytes()), Some(false), "read without a parse");
        assert!(value.to_str().unwrap().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{value:?}");
        let again = unsampled_traceparent(TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736));
        assert_ne!(value, again, "span ids must differ per call");
        assert!(value.is_sensitive(), "a per-call value must stay out of the HPACK table");
    }

    #[test]
    fn root_sampler_honours_priority_then_ratio() {
        let sampler = RootSampler { ratio: 0.0, follow_remote: true };
        let id = TraceId::from_bytes([7; 16]);
        let decide = |attrs: &[KeyValue]| sampler.should_sample(None, id, "x", &SpanKind::Server, attrs, &[]).decision;
        assert_eq!(decide(&[KeyValue::new(SAMPLING_PRIORITY, 1i64)]), SamplingDecision::RecordAndSample);
        assert_eq!(decide(&[KeyValue::new(SAMPLING_PRIORITY, 0i64)]), SamplingDecision::Drop);
        assert_eq!(decide(&[]), SamplingDecision::Drop);
        let all = RootSampler { ratio: 1.0, follow_remote: true };
        assert_eq!(
            all.should_sample(None, id, "x", &SpanKind::Server, &[], &[]).decision,
            SamplingDecision::RecordAndSample
        );
        let ids = (0u64..10_000).map(|i| {
            TraceId::from_bytes(
                [(i >> 8) as u8; 8]
                    .into_iter()
                    .chain(i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes())
                    .collect::<Vec<_>>()
                    .try_into()
                    .unwrap(),
            )
        });
        let tenth = RootSampler { ratio: 0.1, follow_remote: true };
        let n = ids
            .filter(|id| {
                tenth.should_sample(None, *id, "x", &SpanKind::Server, &[], &[]).decision
                    == SamplingDecision::RecordAndSample
            })
            .count();
        assert!((800..=1200).contains(&n), "{n} of 10000 at 0.1");
    }
}
