//! The OTLP receivers: gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`, gzip
//! accepted, 32 MiB messages) and HTTP `POST /v1/traces` (protobuf or JSON, gzip accepted).
//! Neither handler is traced: the collector must not feed its own exports back into itself.
//! An export that arrives as protobuf is kept as it came next to its decoding, so that the
//! persistent copy stores those bytes instead of encoding the spans again.

use std::convert::Infallible;
use std::io::Read;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Buf;
use futures::future::BoxFuture;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use tonic::codec::{BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings};

use super::persist::Persister;
use super::store::TraceStore;
use super::wire::{self, Index, WireError};

/// Where received spans go: the live store and, when configured, its persistent copy.
pub struct Sink {
    pub traces: Arc<TraceStore>,
    pub persister: Option<Persister>,
}

/// One received export: its bytes and their index.
#[derive(Debug)]
pub struct Export {
    /// An `ExportTraceServiceRequest`, whose wire format is that of the `TracesData` a persisted
    /// segment holds: the bytes as they arrived when it arrived as protobuf.
    pub encoded: Bytes,
    pub index: Index,
}

impl Export {
    /// An export that arrived as protobuf. Fails where prost's decoder would.
    pub fn decode(encoded: Bytes) -> Result<Self, WireError> {
        let index = wire::index(&encoded)?;
        Ok(Export { encoded, index })
    }

    /// An export that arrived as JSON: encoded, then indexed like one that arrived as protobuf
    /// (which fails only for values nested deeper than prost decodes).
    pub fn encode(resource_spans: Vec<ResourceSpans>) -> Result<Self, WireError> {
        Export::decode(ExportTraceServiceRequest { resource_spans }.encode_to_vec().into())
    }
}

impl Sink {
    /// Takes one export; returns how many spans were rejected.
    pub fn accept(&self, export: Export) -> usize {
        match &self.persister {
            None => self.traces.ingest(export.index),
            Some(persister) => {
                // Saved before it is ingested, so that the writer sees its deletion (when its
                // traces are evicted at once) after it.
                let segment = persister.next_segment();
                let seen = self.traces.now_ns();
                persister.save(segment, super::persist::encode(seen, &export));
                let (rejected, dead) = self.traces.ingest_evicting(export.index, Some(segment), seen);
                persister.delete(dead);
                rejected
            }
        }
    }
}

/// Largest accepted export, decoded.
pub const MAX_EXPORT_BYTES: usize = 32 * 1024 * 1024;

fn response(rejected: usize) -> ExportTraceServiceResponse {
    let partial_success = (rejected > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: rejected as i64,
        error_message: "spans with malformed trace or span ids, or beyond their trace's span limit, were dropped"
            .into(),
    });
    ExportTraceServiceResponse { partial_success }
}

/// The gRPC receiver: `TraceService/Export`, served with [`ExportCodec`] (the service that
/// opentelemetry-proto generates decodes into structs only).
#[derive(Clone)]
pub struct OtlpGrpc {
    pub sink: Arc<Sink>,
}

/// The full name of the OTLP trace service.
const SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";

impl tonic::server::NamedService for OtlpGrpc {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> tower::Service<http::Request<B>> for OtlpGrpc
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path().strip_prefix('/').and_then(|p| p.strip_prefix(SERVICE_NAME)) != Some("/Export") {
            let status = tonic::Status::unimplemented(format!("{SERVICE_NAME} has only the method Export"));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let sink = self.sink.clone();
        Box::pin(async move {
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(ExportCodec)
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(MAX_EXPORT_BYTES), None);
            Ok(grpc.unary(ExportMethod(sink), request).await)
        })
    }
}

/// `Export` itself.
struct ExportMethod(Arc<Sink>);

impl tonic::server::UnaryService<Export> for ExportMethod {
    type Response = ExportTraceServiceResponse;
    type Future = std::future::Ready<Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Export>) -> Self::Future {
        let rejected = self.0.accept(request.into_inner());
        std::future::ready(Ok(tonic::Response::new(response(rejected))))
    }
}

/// Protobuf both ways, indexing each request into an [`Export`] that keeps its bytes.
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Export;
    type Encoder = tonic_prost::ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = ExportDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ExportDecoder
    }
}

struct ExportDecoder;

impl Decoder for ExportDecoder {
    type Item = Export;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Export>, tonic::Status> {
        // Taking the bytes out of tonic's buffer does not copy them.
        let encoded = buf.copy_to_bytes(buf.remaining());
        Export::decode(encoded)
            .map(Some)
            .map_err(|e| tonic::Status::invalid_argument(format!("malformed ExportTraceServiceRequest: {e}")))
    }
}

fn plain(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], message.to_string()).into_response()
}

/// `POST /v1/traces`.
pub async fn http_export(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()) {
        None | Some("identity") => body,
        Some("gzip") => {
            let mut out = Vec::new();
            let decoder = flate2::read::GzDecoder::new(body.as_ref());
            match decoder.take(MAX_EXPORT_BYTES as u64 + 1).read_to_end(&mut out) {
                Ok(n) if n <= MAX_EXPORT_BYTES => Bytes::from(out),
                Ok(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "export larger than 32 MiB"),
                Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("bad gzip body: {e}")),
            }
        }
        Some(other) => {
            return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, &format!("content-encoding {other} not supported"));
        }
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json = content_type.starts_with("application/json");
    let export = if json {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body)
            .map_err(|e| e.to_string())
            .and_then(|r| Export::encode(r.resource_spans).map_err(|e| e.to_string()))
    } else if content_type.starts_with("application/x-protobuf") || content_type.is_empty() {
        Export::decode(body).map_err(|e| e.to_string())
    } else {
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "use application/x-protobuf or application/json");
    };
    let export = match export {
        Ok(e) => e,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("malformed export: {e}")),
    };
    let reply = response(sink.accept(export));
    if json {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&reply).unwrap_or_else(|_| "{}".into()),
        )
            .into_response()
    } else {
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-protobuf")], reply.encode_to_vec()).into_response()
    }
}
