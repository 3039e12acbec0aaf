//! The OTLP receivers: gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`, gzip
//! accepted, 32 MiB messages) and HTTP `POST /v1/traces` (protobuf or JSON, gzip accepted).
//! Neither handler is traced: the collector must not feed its own exports back into itself.

use std::io::Read;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;

use super::persist::Persister;
use super::store::TraceStore;

/// Where received spans go: the live store and, when configured, its persistent copy.
pub struct Sink {
    pub traces: Arc<TraceStore>,
    pub persister: Option<Persister>,
}

impl Sink {
    /// Takes one export; returns how many spans were rejected.
    pub fn accept(&self, resource_spans: Vec<ResourceSpans>) -> usize {
        match &self.persister {
            None => self.traces.ingest(resource_spans),
            Some(persister) => {
                // Saved before it is ingested, so that the writer sees its deletion (when its
                // traces are evicted at once) after it.
                let segment = persister.next_segment();
                let seen = super::store::now_ns();
                persister.save(segment, super::persist::encode(seen, &resource_spans));
                let (rejected, dead) = self.traces.ingest_evicting(resource_spans, Some(segment), seen);
                persister.delete(dead);
                rejected
            }
        }
    }
}

/// Largest accepted export, decoded.
pub const MAX_EXPORT_BYTES: usize = 32 * 1024 * 1024;

/// The gRPC receiver.
#[derive(Clone)]
pub struct OtlpGrpc {
    pub sink: Arc<Sink>,
}

fn response(rejected: usize) -> ExportTraceServiceResponse {
    let partial_success = (rejected > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: rejected as i64,
        error_message: "spans with malformed trace or span ids were dropped".into(),
    });
    ExportTraceServiceResponse { partial_success }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let rejected = self.sink.accept(request.into_inner().resource_spans);
        Ok(tonic::Response::new(response(rejected)))
    }
}

fn plain(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], message.to_string()).into_response()
}

/// `POST /v1/traces`.
pub async fn http_export(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()) {
        None | Some("identity") => body.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            let decoder = flate2::read::GzDecoder::new(body.as_ref());
            match decoder.take(MAX_EXPORT_BYTES as u64 + 1).read_to_end(&mut out) {
                Ok(n) if n <= MAX_EXPORT_BYTES => out,
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
    let request = if json {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body).map_err(|e| e.to_string())
    } else if content_type.starts_with("application/x-protobuf") || content_type.is_empty() {
        ExportTraceServiceRequest::decode(body.as_slice()).map_err(|e| e.to_string())
    } else {
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "use application/x-protobuf or application/json");
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("malformed export: {e}")),
    };
    let reply = response(sink.accept(request.resource_spans));
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
