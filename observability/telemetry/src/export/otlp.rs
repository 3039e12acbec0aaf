//! The OTLP/gRPC span exporter: encodes a batch of [`SpanData`] straight into the bytes of an
//! `ExportTraceServiceRequest` and sends them to `TraceService/Export`.
//!
//! opentelemetry-otlp's exporter copies every batch, converts it into opentelemetry-proto's
//! structs (a `String` or `Vec` per id, name and attribute) and lets prost encode those, which
//! computes the length of every nested message once per level above it. Under callgrind that
//! was about 14,000 instructions per exported span, most of what 100% sampling costs a process
//! (docs/benchmarks/tracing.md). Here a span is written once into a buffer, and the resource and scope,
//! the same for a whole batch, are converted by opentelemetry-proto and encoded once per batch;
//! a unit test checks that the bytes decode to what opentelemetry-proto's conversion gives.
//!
//! Like opentelemetry-otlp: the timeout bounds an export with its retries (and connecting, which
//! tonic's own request timeout leaves out); retryable statuses
//! (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `ABORTED`, `CANCELLED`, `DEADLINE_EXCEEDED`,
//! `OUT_OF_RANGE`, `DATA_LOSS`) are retried up to 3 times with jittered exponential backoff from
//! 100 ms; `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` and `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION`
//! (`gzip` or `none`) are honoured ([`ExporterSettings`]). A retry resends the same bytes.
//!
//! An `https://` endpoint is reached over TLS (rustls): the server's certificate must chain to
//! `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE` when it is set, to the system's roots otherwise, and
//! `..._CLIENT_CERTIFICATE` with `..._CLIENT_KEY` make it mutual TLS ([`ExporterTls`]).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes};
use meshwork_identity::tls::TlsIdentity;
use opentelemetry::trace::{SpanId, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope as ProtoScope;
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tokio_util::task::AbortOnDropHandle;
use tonic::codec::{BufferSettings, Codec, CompressionEncoding, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const MAX_RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Sends encoded batches to an OTLP/gRPC endpoint.
#[derive(Debug)]
pub struct OtlpExporter {
    client: tonic::client::Grpc<Channel>,
    /// The runtime the exporter was made in, which its connection lives on. Exports run there:
    /// the batch processor calls them from a thread of its own, without Tokio's timers.
    runtime: tokio::runtime::Handle,
    timeout: Duration,
    headers: MetadataMap,
    /// The batch's `ResourceSpans` fields `resource` (1) and `schema_url` (3), encoded once.
    resource: Vec<u8>,
}

/// A gRPC metadata entry.
pub type Header = (MetadataKey<Ascii>, MetadataValue<Ascii>);

/// How the exporter talks to its endpoint, from `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`,
/// `..._COMPRESSION` and the TLS variables (read with the other variables by
/// [`crate::TelemetryConfig::from_env`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExporterSettings {
    /// Sent with every export (an API key, a tenant).
    pub headers: Vec<Header>,
    /// Exports are gzipped.
    pub gzip: bool,
    /// The CA and client identity files, for an `https://` endpoint.
    pub tls: ExporterTls,
}

/// The exporter's TLS settings: the CA's PEM text and the client identity, read and checked when
/// the configuration is.
#[derive(Clone, Default, PartialEq)]
pub struct ExporterTls {
    /// CA certificates trusted instead of the system's (`OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`).
    pub ca_pem: Option<Vec<u8>>,
    /// The certificate chain and private key this process presents, for a collector that asks
    /// for client certificates (`..._CLIENT_CERTIFICATE`, `..._CLIENT_KEY`).
    pub identity: Option<TlsIdentity>,
}

impl ExporterTls {
    /// Whether any TLS setting is given (they need an `https://` endpoint).
    pub fn is_set(&self) -> bool {
        self.ca_pem.is_some() || self.identity.is_some()
    }
}

impl std::fmt::Debug for ExporterTls {
    // Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExporterTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

/// Whether `endpoint` asks for TLS (the scheme is case-insensitive).
fn is_https(endpoint: &str) -> bool {
    endpoint.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

impl OtlpExporter {
    /// An exporter to `endpoint` (`http://host:port`, or `https://` for TLS); connects lazily, on
    /// the Tokio runtime it is made in. Fails outside a runtime, for an endpoint that is not a
    /// URI, and for TLS settings with an endpoint that is not `https://`.
    pub fn new(endpoint: &str, timeout: Duration, settings: &ExporterSettings) -> Result<Self, String> {
        let mut channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?;
        if is_https(endpoint) {
            // The CA file replaces the system's roots, as in the other OpenTelemetry SDKs (a
            // private collector should not be vouched for by every public CA).
            let mut tls = match &settings.tls.ca_pem {
                Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            if let Some(identity) = &settings.tls.identity {
                tls = tls.identity(Identity::from_pem(identity.cert_pem(), identity.key_pem()));
            }
            channel = channel.tls_config(tls).map_err(|e| format!("endpoint {endpoint:?}: TLS: {e}"))?;
        } else if settings.tls.is_set() {
            return Err(format!(
                "endpoint {endpoint:?}: TLS settings (OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE, \
                 ..._CLIENT_CERTIFICATE, ..._CLIENT_KEY) need an https:// endpoint"
            ));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| format!("endpoint {endpoint:?}: the exporter must be made inside a Tokio runtime"))?;
        let channel = channel.connect_timeout(timeout).timeout(timeout).connect_lazy();
        Ok(Self::on_channel(channel, runtime, timeout, settings))
    }

    /// An exporter sending over `channel`, which lives on `runtime`.
    fn on_channel(
        channel: Channel,
        runtime: tokio::runtime::Handle,
        timeout: Duration,
        settings: &ExporterSettings,
    ) -> Self {
        let mut client = tonic::client::Grpc::new(channel);
        if settings.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let mut headers = MetadataMap::new();
        for (key, value) in &settings.headers {
            headers.insert(key.clone(), value.clone());
        }
        OtlpExporter {
            client,
            runtime,
            timeout,
            headers,
            resource: encode_resource(&Resource::builder_empty().build()),
        }
    }

    /// Sends `body`, retrying, within the export's timeout; on the exporter's runtime, whichever
    /// thread asks.
    async fn send(&self, body: Bytes) -> Result<(), tonic::Status> {
        // The export's time starts now, not when a busy runtime first polls the task.
        let deadline = Instant::now() + self.timeout;
        let (client, headers, timeout) = (self.client.clone(), self.headers.clone(), self.timeout);
        // Aborted if this export is dropped (the caller gave up): it must not go on alone.
        let task = AbortOnDropHandle::new(self.runtime.spawn(send(client, headers, timeout, deadline, body)));
        match task.await {
            Ok(result) => result,
            Err(e) => Err(tonic::Status::cancelled(format!("the export's task ended: {e}"))),
        }
    }
}

/// Sends `body` to `TraceService/Export`, retrying retryable statuses, and gives up at
/// `deadline` (the export's `timeout` after it was asked for).
async fn send(
    mut client: tonic::client::Grpc<Channel>,
    headers: MetadataMap,
    timeout: Duration,
    deadline: Instant,
    body: Bytes,
) -> Result<(), tonic::Status> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut request = tonic::Request::new(body.clone());
        *request.metadata_mut() = headers.clone();
        // The collector is told the time left (`grpc-timeout`), and the attempt is held to it
        // here, connecting included: the channel's own timeout starts once it is connected.
        request.set_timeout(left);
        let call = async {
            client.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            client.unary(request, PathAndQuery::from_static(EXPORT_PATH), BytesCodec).await.map(|_| ())
        };
        let result = tokio::time::timeout(left, call).await.unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(format!("no answer within the export's {timeout:?}")))
        });
        match result {
            Err(status) if attempt < MAX_RETRIES && retryable(status.code()) => {
                // Half the step and a random part of the other half, so that the processes
                // a collector outage hit together do not retry together.
                let half = backoff / 2;
                let jitter = Duration::from_nanos(crate::sampling::next_random() % (half.as_nanos() as u64).max(1));
                let pause = half + jitter;
                if Instant::now() + pause >= deadline {
                    return Err(status);
                }
                tokio::time::sleep(pause).await;
                backoff *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl SpanExporter for OtlpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let body = Bytes::from(encode_request(&self.resource, &batch));
        self.send(body).await.map_err(|status| {
            OTelSdkError::InternalFailure(format!("OTLP export failed: {:?} {}", status.code(), status.message()))
        })
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = encode_resource(resource);
    }
}

/// Statuses worth another try (the OTLP specification's retryable codes).
fn retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(code, Unavailable | ResourceExhausted | Aborted | Cancelled | DeadlineExceeded | OutOfRange | DataLoss)
}

/// Parses `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs separated by commas, values
/// percent-encoded (W3C baggage format). The values are marked sensitive.
pub(crate) fn parse_headers(text: &str) -> Result<Vec<Header>, String> {
    let mut headers = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not key=value"))?;
        let key = MetadataKey::from_bytes(key.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("{:?} is not a header name", key.trim()))?;
        let value = percent_decode(value.trim()).ok_or_else(|| format!("{pair:?} has a bad percent-encoding"))?;
        let mut value =
            MetadataValue::try_from(value.as_str()).map_err(|_| format!("{pair:?} is not a header value"))?;
        // Often an API key: never printed by `Debug`, and sent never indexed (RFC 7541 7.1.3),
        // so that it stays out of HPACK tables.
        value.set_sensitive(true);
        headers.push((key, value));
    }
    Ok(headers)
}

/// Decodes `%XX` escapes (`percent-encoding`, which leaves a malformed escape as it is: such a
/// value is refused here instead); `None` for a bad escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let escapes_ok = text
        .match_indices('%')
        .all(|(i, _)| text.get(i + 1..i + 3).is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
    escapes_ok.then(|| percent_encoding::percent_decode_str(text).decode_utf8().ok().map(|s| s.into_owned())).flatten()
}

/// Sends bytes already encoded; decodes the reply with prost.
struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = BytesEncoder;
    type Decoder = tonic_prost::ProstDecoder<ExportTraceServiceResponse>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(BufferSettings::default())
    }
}

struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

/// `ResourceSpans.resource` and `.schema_url` of `resource`, as opentelemetry-proto converts it
/// (what [`encode_request`] takes).
pub fn encode_resource(resource: &Resource) -> Vec<u8> {
    let converted = ResourceAttributesWithSchema::from(resource);
    let proto = ProtoResource { attributes: converted.attributes.0, dropped_attributes_count: 0, entity_refs: vec![] };
    let mut out = Vec::new();
    prost::encoding::message::encode(1, &proto, &mut out);
    put_str(3, converted.schema_url.as_deref().unwrap_or_default(), &mut out);
    out
}

/// The bytes of an `ExportTraceServiceRequest` holding `batch`: one `ResourceSpans` (with the
/// encoded `resource`), one `ScopeSpans` per instrumentation scope in order of first appearance.
pub fn encode_request(resource: &[u8], batch: &[SpanData]) -> Vec<u8> {
    let mut scopes: Vec<(&InstrumentationScope, Vec<&SpanData>)> = Vec::new();
    for span in batch {
        match scopes.iter_mut().find(|(scope, _)| **scope == span.instrumentation_scope) {
            Some((_, spans)) => spans.push(span),
            None => scopes.push((&span.instrumentation_scope, vec![span])),
        }
    }
    let mut scope_spans = Vec::with_capacity(batch.len() * 256);
    let mut one_scope = Vec::new();
    let mut one_span = Vec::with_capacity(512);
    for (scope, spans) in scopes {
        one_scope.clear();
        let proto: ProtoScope = (scope, None).into();
        prost::encoding::message::encode(1, &proto, &mut one_scope);
        for span in spans {
            one_span.clear();
            encode_span(span, &mut one_span);
            put_len_delimited(2, &one_span, &mut one_scope);
        }
        put_str(3, scope.schema_url().unwrap_or_default(), &mut one_scope);
        put_len_delimited(2, &one_scope, &mut scope_spans);
    }
    let resource_spans_len = resource.len() + scope_spans.len();
    let mut out = Vec::with_capacity(resource_spans_len + 16);
    encode_key(1, WireType::LengthDelimited, &mut out);
    encode_varint(resource_spans_len as u64, &mut out);
    // `ResourceSpans`: resource (1) and scope_spans (2); the schema url (3) goes with the
    // resource bytes, and field order does not matter to a decoder.
    out.extend_from_slice(resource);
    out.extend_from_slice(&scope_spans);
    out
}

/// One `Span`, as opentelemetry-proto's conversion fills it.
fn encode_span(span: &SpanData, out: &mut Vec<u8>) {
    let context = &span.span_context;
    put_bytes(1, &context.trace_id().to_bytes(), out);
    put_bytes(2, &context.span_id().to_bytes(), out);
    put_str(3, &context.trace_state().header(), out);
    if span.parent_span_id != SpanId::INVALID {
        put_bytes(4, &span.parent_span_id.to_bytes(), out);
    }
    put_str(5, &span.name, out);
    put_uint(6, span_kind(&span.span_kind), out);
    put_fixed64(7, nanos(span.start_time), out);
    put_fixed64(8, nanos(span.end_time), out);
    put_attributes(9, &span.attributes, out);
    put_uint(10, span.dropped_attributes_count.into(), out);
    for event in span.events.iter() {
        let len = fixed64_len(1, nanos(event.timestamp))
            + str_len(2, &event.name)
            + attributes_len(3, &event.attributes)
            + uint_len(4, event.dropped_attributes_count.into());
        put_header(11, len, out);
        put_fixed64(1, nanos(event.timestamp), out);
        put_str(2, &event.name, out);
        put_attributes(3, &event.attributes, out);
        put_uint(4, event.dropped_attributes_count.into(), out);
    }
    put_uint(12, span.events.dropped_count.into(), out);
    for link in span.links.iter() {
        let link_context = &link.span_context;
        let state = link_context.trace_state().header();
        let flags = span_flags(link_context.is_remote(), link_context.trace_flags().to_u8());
        // Both ids always have their full length; the flags are never 0.
        let len = message_len(1, 16)
            + message_len(2, 8)
            + str_len(3, &state)
            + attributes_len(4, &link.attributes)
            + uint_len(5, link.dropped_attributes_count.into())
            + key_len(6)
            + 4;
        put_header(13, len, out);
        put_bytes(1, &link_context.trace_id().to_bytes(), out);
        put_bytes(2, &link_context.span_id().to_bytes(), out);
        put_str(3, &state, out);
        put_attributes(4, &link.attributes, out);
        put_uint(5, link.dropped_attributes_count.into(), out);
        put_fixed32(6, flags, out);
    }
    put_uint(14, span.links.dropped_count.into(), out);
    let (code, message) = match &span.status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error { description } => (2, description.as_ref()),
    };
    put_header(15, str_len(2, message) + uint_len(3, code), out);
    put_str(2, message, out);
    put_uint(3, code, out);
    put_fixed32(16, span_flags(span.parent_span_is_remote, span.span_context.trace_flags().to_u8()), out);
}

/// `SpanFlags`: the W3C trace flags, "has is-remote" (0x100) and "is remote" (0x200).
fn span_flags(remote: bool, trace_flags: u8) -> u32 {
    u32::from(trace_flags) | 0x100 | if remote { 0x200 } else { 0 }
}

fn span_kind(kind: &opentelemetry::trace::SpanKind) -> u64 {
    use opentelemetry::trace::SpanKind::*;
    match kind {
        Internal => 1,
        Server => 2,
        Client => 3,
        Producer => 4,
        Consumer => 5,
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

fn put_header(tag: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

fn put_len_delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_header(tag, bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// A proto3 `bytes` field: absent when empty.
fn put_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    if !bytes.is_empty() {
        put_len_delimited(tag, bytes, out);
    }
}

fn put_str(tag: u32, text: &str, out: &mut Vec<u8>) {
    put_bytes(tag, text.as_bytes(), out);
}

fn str_len(tag: u32, text: &str) -> usize {
    if text.is_empty() { 0 } else { key_len(tag) + encoded_len_varint(text.len() as u64) + text.len() }
}

fn put_uint(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value, out);
    }
}

fn uint_len(tag: u32, value: u64) -> usize {
    if value == 0 { 0 } else { key_len(tag) + encoded_len_varint(value) }
}

fn put_fixed64(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.put_u64_le(value);
    }
}

fn fixed64_len(tag: u32, value: u64) -> usize {
    if value == 0 { 0 } else { key_len(tag) + 8 }
}

fn put_fixed32(tag: u32, value: u32, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::ThirtyTwoBit, out);
        out.put_u32_le(value);
    }
}

/// Repeated `KeyValue` field `tag`.
fn put_attributes(tag: u32, attributes: &[KeyValue], out: &mut Vec<u8>) {
    for kv in attributes {
        let value_len = any_value_len(&kv.value);
        put_header(tag, str_len(1, kv.key.as_str()) + message_len(2, value_len), out);
        put_str(1, kv.key.as_str(), out);
        put_header(2, value_len, out);
        put_any_value(&kv.value, out);
    }
}

fn attributes_len(tag: u32, attributes: &[KeyValue]) -> usize {
    attributes
        .iter()
        .map(|kv| message_len(tag, str_len(1, kv.key.as_str()) + message_len(2, any_value_len(&kv.value))))
        .sum()
}

/// A present message field whose content is `len` bytes long.
fn message_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// The content of an `AnyValue`: its one `value` field, always present (a oneof).
fn put_any_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Bool(b) => {
            encode_key(2, WireType::Varint, out);
            encode_varint(u64::from(*b), out);
        }
        Value::I64(i) => {
            encode_key(3, WireType::Varint, out);
            encode_varint(*i as u64, out);
        }
        Value::F64(f) => {
            encode_key(4, WireType::SixtyFourBit, out);
            out.put_f64_le(*f);
        }
        Value::String(s) => {
            put_header(1, s.as_str().len(), out);
            out.extend_from_slice(s.as_str().as_bytes());
        }
        Value::Array(array) => {
            put_header(5, array_len(array), out);
            for_each_array_value(array, |v| {
                put_header(1, any_value_len(&v), out);
                put_any_value(&v, out);
            });
        }
        // A kind of value this exporter does not know: an empty AnyValue.
        _ => {}
    }
}

fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Bool(_) => 2,
        Value::I64(i) => 1 + encoded_len_varint(*i as u64),
        Value::F64(_) => 9,
        Value::String(s) => message_len(1, s.as_str().len()),
        Value::Array(array) => message_len(5, array_len(array)),
        _ => 0,
    }
}

/// The content of an `ArrayValue`: one `AnyValue` (field 1) per element.
fn array_len(array: &Array) -> usize {
    let mut len = 0;
    for_each_array_value(array, |v| len += message_len(1, any_value_len(&v)));
    len
}

fn for_each_array_value(array: &Array, mut f: impl FnMut(Value)) {
    match array {
        Array::Bool(values) => values.iter().for_each(|v| f(Value::Bool(*v))),
        Array::I64(values) => values.iter().for_each(|v| f(Value::I64(*v))),
        Array::F64(values) => values.iter().for_each(|v| f(Value::F64(*v))),
        Array::String(values) => values.iter().for_each(|v| f(Value::String(v.clone()))),
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry::trace::{
        Link, SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer, TracerProvider,
    };
    use opentelemetry::{Context, StringValue};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use prost::Message;
    use std::sync::{Arc, Mutex};

    use crate::export::tests::Keep;

    /// Spans of every shape the SDK makes: all value kinds, events, links, statuses, remote and
    /// local parents, trace state, two scopes, dropped counts.
    pub(crate) fn spans(resource: &Resource) -> Vec<SpanData> {
        let keep = Keep::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(keep.clone())
            .with_resource(resource.clone())
            .with_span_limits(opentelemetry_sdk::trace::SpanLimits { max_attributes_per_span: 9, ..Default::default() })
            .build();
        let tracer = provider.tracer("meshwork");
        let other = provider.tracer_with_scope(
            InstrumentationScope::builder("other").with_version("1.2").with_schema_url("https://s").build(),
        );
        let remote = SpanContext::new(
            TraceId::from(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            SpanId::from(0x1112_1314_1516_1718),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "x:1")]).unwrap(),
        );
        let parent = Context::new().with_remote_span_context(remote.clone());
        let attributes = vec![
            KeyValue::new("s", "text"),
            KeyValue::new("empty", ""),
            KeyValue::new("b", true),
            KeyValue::new("f", false),
            KeyValue::new("i", -7_i64),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("d", 2.5),
            KeyValue::new("strings", Value::Array(Array::String(vec![StringValue::from("a"), StringValue::from("")]))),
            KeyValue::new("ints", Value::Array(Array::I64(vec![1, -2]))),
            KeyValue::new("over the limit", 1_i64),
        ];
        let mut server = tracer
            .span_builder("GET /x")
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .with_links(vec![Link::new(remote.clone(), vec![KeyValue::new("l", 1_i64)], 0)])
            .start_with_context(&tracer, &parent);
        opentelemetry::trace::Span::add_event(
            &mut server,
            "ev",
            vec![KeyValue::new("bools", Value::Array(Array::Bool(vec![true])))],
        );
        opentelemetry::trace::Span::set_status(&mut server, Status::error("it broke"));
        let local = Context::new().with_span(server);
        let mut child = other.start_with_context("child", &local);
        opentelemetry::trace::Span::set_status(&mut child, Status::Ok);
        opentelemetry::trace::Span::add_event(
            &mut child,
            "",
            vec![KeyValue::new("floats", Value::Array(Array::F64(vec![0.5])))],
        );
        drop(child);
        drop(local);
        let mut root = tracer.start("root");
        opentelemetry::trace::Span::set_attribute(&mut root, KeyValue::new("unicode", "żółw"));
        drop(root);
        provider.force_flush().unwrap();
        let spans = keep.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 3);
        spans
    }

    #[test]
    fn the_bytes_decode_to_what_opentelemetry_proto_converts() {
        let resource = Resource::builder().with_service_name("gw").with_schema_url([], "https://r").build();
        let batch = spans(&resource);
        assert!(batch.iter().any(|s| s.dropped_attributes_count == 1), "the limit case must drop one attribute");
        let ours =
            ExportTraceServiceRequest::decode(encode_request(&encode_resource(&resource), &batch).as_slice()).unwrap();
        let theirs = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &ResourceAttributesWithSchema::from(&resource)),
        };
        assert_eq!(ours, theirs);
        assert_eq!(ours.resource_spans[0].scope_spans.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_reaches_a_collector_with_its_headers_gzipped_and_a_dead_one_fails_in_time() {
        use meshwork_collector::otlp::{OtlpGrpc, Sink};
        use meshwork_collector::store::{StoreLimits, TraceStore};
        let traces = Arc::new(TraceStore::new(StoreLimits::default()));
        let sink = Arc::new(Sink { traces: traces.clone(), persister: None });
        let seen = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let record = seen.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .layer(tonic::service::InterceptorLayer::new(move |request: tonic::Request<()>| {
                let metadata = request.metadata();
                let mut record = record.lock().unwrap();
                for key in ["api-key", "grpc-encoding"] {
                    if let Some(value) = metadata.get(key) {
                        record.push((key.to_string(), value.to_str().unwrap_or("?").to_string()));
                    }
                }
                Ok(request)
            }))
            .add_service(OtlpGrpc { sink })
            .serve_with_incoming(crate::grpc::incoming(listener));
        tokio::spawn(server);
        let settings =
            ExporterSettings { headers: parse_headers("api-key=s3cret").unwrap(), gzip: true, ..Default::default() };
        let mut exporter = OtlpExporter::new(&format!("http://{addr}"), Duration::from_secs(3), &settings).unwrap();
        let resource = Resource::builder().with_service_name("exporter-test").build();
        exporter.set_resource(&resource);
        exporter.export(spans(&resource)).await.unwrap();
        assert_eq!(traces.span_count(), 3);
        assert_eq!(traces.services(), vec!["exporter-test".to_string()]);
        let seen = seen.lock().unwrap().clone();
        assert!(seen.contains(&("api-key".into(), "s3cret".into())), "{seen:?}");
        assert!(seen.contains(&("grpc-encoding".into(), "gzip".into())), "{seen:?}");

        // Nothing listens: the export fails, after its retries, within its timeout.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let dead =
            OtlpExporter::new(&format!("http://{closed}"), Duration::from_millis(800), &ExporterSettings::default())
                .unwrap();
        let started = Instant::now();
        assert!(dead.export(spans(&resource)).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    /// An export is held to its timeout from its first attempt on, connecting included: a
    /// collector reached after a slow connect that then never answers fails the export in time.
    /// The export is made as the batch processor makes it, from a thread outside the runtime.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connecting_counts_against_the_export_timeout() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut accepted = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                accepted.push(stream);
            }
        });
        let timeout = Duration::from_secs(2);
        // Connects after 1.6 s of the export's 2.
        let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| async move {
            tokio::time::sleep(Duration::from_millis(1600)).await;
            tokio::net::TcpStream::connect(addr).await.map(hyper_util::rt::TokioIo::new)
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_with_connector_lazy(connector);
        let exporter =
            OtlpExporter::on_channel(channel, tokio::runtime::Handle::current(), timeout, &ExporterSettings::default());
        let resource = Resource::builder().with_service_name("exporter-test").build();
        let batch = spans(&resource);
        let (result, took) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result =
                std::thread::spawn(move || futures::executor::block_on(exporter.export(batch))).join().unwrap();
            (result, started.elapsed())
        })
        .await
        .unwrap();
        let error = result.unwrap_err().to_string();
        assert!(error.contains("DeadlineExceeded") || error.contains("Cancelled"), "{error}");
        assert!(took >= Duration::from_millis(1900) && took < Duration::from_millis(3000), "took {took:?}");
        held.abort();
    }

    /// An export its caller drops is not left running: its stream is reset at once, not when
    /// its own timeout ends. The collector here is a bare TCP listener that reads the HTTP/2
    /// frames and answers nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_export_stops_its_request() {
        use tokio::io::AsyncReadExt;
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        // Reports when a RST_STREAM frame (type 3) arrives.
        let (reset_tx, reset_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = silent.accept().await.unwrap();
            let mut preface = [0u8; 24];
            stream.read_exact(&mut preface).await.unwrap();
            loop {
                let mut head = [0u8; 9];
                if stream.read_exact(&mut head).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; len];
                if stream.read_exact(&mut payload).await.is_err() {
                    return;
                }
                if head[3] == 3 {
                    let _ = reset_tx.send(Instant::now());
                    return;
                }
            }
        });
        let exporter =
            OtlpExporter::new(&format!("http://{addr}"), Duration::from_secs(10), &ExporterSettings::default())
                .unwrap();
        let resource = Resource::builder().with_service_name("exporter-test").build();
        let given_up = tokio::time::timeout(Duration::from_millis(500), exporter.export(spans(&resource))).await;
        assert!(given_up.is_err(), "the silent collector answered");
        let dropped = Instant::now();
        let reset = tokio::time::timeout(Duration::from_secs(5), reset_rx).await;
        let reset = reset.expect("no RST_STREAM within 5 s of the drop").unwrap();
        assert!(reset.duration_since(dropped) < Duration::from_secs(2));
    }

    #[test]
    fn headers_follow_the_baggage_format() {
        let headers = parse_headers("api-key=s%20e%2Ccret, X-Tenant = blue ,").unwrap();
        let get = |key: &str| headers.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v.to_str().unwrap());
        assert_eq!(get("api-key"), Some("s e,cret"));
        assert_eq!(get("x-tenant"), Some("blue"));
        assert!(headers.iter().all(|(_, v)| v.is_sensitive()));
        let settings = format!("{:?}", ExporterSettings { headers, ..Default::default() });
        assert!(!settings.contains("cret") && settings.contains("api-key"), "{settings}");
        assert!(parse_headers("novalue").unwrap_err().contains("key=value"));
        assert!(parse_headers("k=%zz").unwrap_err().contains("percent"));
        assert!(parse_headers("k=%+1").unwrap_err().contains("percent"));
    }
}
