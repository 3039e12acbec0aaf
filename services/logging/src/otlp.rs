//! An OTLP logs receiver with Loki's OTLP mapping: the resource attributes Loki indexes by
//! default (`service.name`, `service.namespace`, `service.instance.id`,
//! `deployment.environment`, `cloud.region`, `k8s.*.name`, ...) become stream labels with dots
//! turned into underscores (`service.name` -> `service_name`, `unknown_service` when absent);
//! every other resource, scope and record attribute, the trace and span ids, and the severity
//! (`severity_text`, `detected_level`) become structured metadata; the body is the line.
//! [`OtlpLogsService`] serves `opentelemetry.proto.collector.logs.v1.LogsService/Export` and
//! [`otlp_http_router`] serves `POST /v1/logs` (protobuf or JSON).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

use crate::engine::{IncomingEntry, IncomingStream};
use crate::labels::{LabelSet, MAX_VALUE_BYTES, sanitize_name};
use crate::loki::DEFAULT_TENANT;
use crate::service::Logging;

/// Resource attributes Loki turns into index labels by default.
pub const INDEX_ATTRIBUTES: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// Most structured-metadata pairs kept per record (the rest is dropped).
const MAX_METADATA: usize = 32;

/// Renders an attribute value as text (maps and arrays as JSON).
pub fn any_value_string(v: &AnyValue) -> String {
    fn json(v: &AnyValue) -> serde_json::Value {
        match &v.value {
            Some(any_value::Value::StringValue(s)) => serde_json::Value::String(s.clone()),
            Some(any_value::Value::BoolValue(b)) => serde_json::Value::Bool(*b),
            Some(any_value::Value::IntValue(i)) => serde_json::Value::from(*i),
            Some(any_value::Value::DoubleValue(d)) => serde_json::Value::from(*d),
            Some(any_value::Value::ArrayValue(a)) => serde_json::Value::Array(a.values.iter().map(json).collect()),
            Some(any_value::Value::KvlistValue(kv)) => serde_json::Value::Object(
                kv.values
                    .iter()
                    .map(|p| (p.key.clone(), p.value.as_ref().map(json).unwrap_or(serde_json::Value::Null)))
                    .collect(),
            ),
            Some(any_value::Value::BytesValue(b)) => {
                serde_json::Value::String(b.iter().map(|x| format!("{x:02x}")).collect())
            }
            // Dictionary-encoded strings (profiles only) have no dictionary in a logs export.
            Some(any_value::Value::StringValueStrindex(i)) => serde_json::Value::from(*i),
            None => serde_json::Value::Null,
        }
    }
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => match json(v) {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        },
    }
}

fn kv_string(kv: &KeyValue) -> String {
    kv.value.as_ref().map(any_value_string).unwrap_or_default()
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Returns the level Loki detects from an OTLP severity (text first, then number).
pub fn detected_level(text: &str, number: i32) -> &'static str {
    match text.to_ascii_lowercase().as_str() {
        t if t.starts_with("trace") => "trace",
        t if t.starts_with("debug") => "debug",
        t if t.starts_with("info") => "info",
        t if t.starts_with("warn") => "warn",
        t if t.starts_with("err") => "error",
        t if t.starts_with("fatal") || t.starts_with("crit") => "fatal",
        _ => match number {
            1..=4 => "trace",
            5..=8 => "debug",
            9..=12 => "info",
            13..=16 => "warn",
            17..=20 => "error",
            21..=24 => "fatal",
            _ => "unknown",
        },
    }
}

/// Converts an OTLP export into push streams with Loki's OTLP mapping. `now_ns` stamps
/// records that carry neither a time nor an observed time.
pub fn otlp_to_streams(req: &ExportLogsServiceRequest, now_ns: i64) -> Vec<IncomingStream> {
    let mut streams: Vec<IncomingStream> = Vec::new();
    let mut index: HashMap<LabelSet, usize> = HashMap::new();
    for rl in &req.resource_logs {
        let attrs = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        let mut labels: Vec<(String, String)> = Vec::new();
        let mut resource_meta: Vec<(String, String)> = Vec::new();
        for kv in attrs {
            let value = truncate(kv_string(kv), MAX_VALUE_BYTES);
            if INDEX_ATTRIBUTES.contains(&kv.key.as_str()) {
                if !value.is_empty() {
                    labels.push((sanitize_name(&kv.key), value));
                }
            } else {
                resource_meta.push((sanitize_name(&kv.key), value));
            }
        }
        if !labels.iter().any(|(n, _)| n == "service_name") {
            labels.push(("service_name".into(), "unknown_service".into()));
        }
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        let label_set = LabelSet::from_pairs(labels);
        for sl in &rl.scope_logs {
            let mut scope_meta = Vec::new();
            if let Some(scope) = &sl.scope {
                if !scope.name.is_empty() {
                    scope_meta.push(("scope_name".to_string(), truncate(scope.name.clone(), MAX_VALUE_BYTES)));
                }
                if !scope.version.is_empty() {
                    scope_meta.push(("scope_version".to_string(), scope.version.clone()));
                }
                for kv in &scope.attributes {
                    scope_meta.push((sanitize_name(&kv.key), truncate(kv_string(kv), MAX_VALUE_BYTES)));
                }
            }
            for r in &sl.log_records {
                let ts = [r.time_unix_nano, r.observed_time_unix_nano]
                    .into_iter()
                    .find(|t| *t > 0)
                    .map(|t| t as i64)
                    .unwrap_or(now_ns);
                let line = r.body.as_ref().map(any_value_string).unwrap_or_default();
                let mut metadata: Vec<(String, String)> = Vec::new();
                for kv in &r.attributes {
                    metadata.push((sanitize_name(&kv.key), truncate(kv_string(kv), MAX_VALUE_BYTES)));
                }
                if !r.trace_id.is_empty() {
                    metadata.push(("trace_id".into(), hex(&r.trace_id)));
                }
                if !r.span_id.is_empty() {
                    metadata.push(("span_id".into(), hex(&r.span_id)));
                }
                if !r.severity_text.is_empty() {
                    metadata.push(("severity_text".into(), truncate(r.severity_text.clone(), MAX_VALUE_BYTES)));
                }
                if r.severity_number != 0 {
                    metadata.push(("severity_number".into(), r.severity_number.to_string()));
                }
                metadata.push(("detected_level".into(), detected_level(&r.severity_text, r.severity_number).into()));
                metadata.extend(scope_meta.iter().cloned());
                metadata.extend(resource_meta.iter().cloned());
                metadata.retain(|(_, v)| !v.is_empty());
                let mut seen = std::collections::HashSet::new();
                metadata.retain(|(k, _)| seen.insert(k.clone()));
                metadata.truncate(MAX_METADATA);
                let entry = IncomingEntry { ts: Some(ts), line, metadata };
                match &label_set {
                    Ok(l) => {
                        let i = *index.entry(l.clone()).or_insert_with(|| {
                            streams.push(IncomingStream { labels: Ok(l.clone()), entries: Vec::new() });
                            streams.len() - 1
                        });
                        streams[i].entries.push(entry);
                    }
                    Err(e) => streams.push(IncomingStream { labels: Err(e.clone()), entries: vec![entry] }),
                }
            }
        }
    }
    streams
}

/// The OTLP gRPC logs service over the log store (tenant from `X-Scope-OrgID` metadata, else
/// `fake`).
#[derive(Clone)]
pub struct OtlpLogsService {
    logging: Arc<Logging>,
}

impl OtlpLogsService {
    /// Wraps `logging`.
    pub fn new(logging: Arc<Logging>) -> Self {
        OtlpLogsService { logging }
    }

    /// Returns the tonic server, ready to add to the collector's OTLP gRPC port.
    pub fn server(logging: Arc<Logging>) -> LogsServiceServer<OtlpLogsService> {
        LogsServiceServer::new(OtlpLogsService::new(logging))
    }
}

async fn export(
    logging: &Logging,
    tenant: &str,
    req: &ExportLogsServiceRequest,
) -> Result<ExportLogsServiceResponse, meshwork_common::ServiceError> {
    let now = logging.engine().await?.now_ns();
    let outcome = logging.push(tenant, otlp_to_streams(req, now)).await?;
    let rejected = outcome.rejected_total() as i64;
    Ok(ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: rejected,
            error_message: outcome.errors.join("; "),
        }),
    })
}

#[tonic::async_trait]
impl LogsService for OtlpLogsService {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let tenant = request
            .metadata()
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_TENANT)
            .to_string();
        Ok(tonic::Response::new(export(&self.logging, &tenant, request.get_ref()).await?))
    }
}

/// Returns the router of `POST /v1/logs` (OTLP/HTTP, `application/x-protobuf` or
/// `application/json`).
pub fn otlp_http_router(logging: Arc<Logging>) -> Router {
    Router::new().route("/v1/logs", post(http_export)).with_state(logging)
}

async fn http_export(State(logging): State<Arc<Logging>>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let req: Result<ExportLogsServiceRequest, String> = if json {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        ExportLogsServiceRequest::decode(body.as_ref()).map_err(|e| e.to_string())
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("undecodable OTLP logs request: {e}")).into_response(),
    };
    let tenant = headers
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_TENANT)
        .to_string();
    match export(&logging, &tenant, &req).await {
        Ok(resp) if json => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&resp).unwrap_or_else(|_| "{}".into()),
        )
            .into_response(),
        Ok(resp) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-protobuf")], resp.encode_to_vec()).into_response()
        }
        Err(meshwork_common::ServiceError::ResourceExhausted(m)) => (StatusCode::TOO_MANY_REQUESTS, m).into_response(),
        Err(e @ meshwork_common::ServiceError::InvalidArgument { .. }) => {
            (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    #[test]
    fn maps_resources_to_labels_and_the_rest_to_metadata() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "checkout"), kv("k8s.pod.name", "p-1"), kv("host.name", "h1")],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: 42,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue { value: Some(any_value::Value::StringValue("payment failed".into())) }),
                        attributes: vec![kv("http.method", "POST")],
                        trace_id: vec![0xab; 16],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let streams = otlp_to_streams(&req, 7);
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].labels.as_ref().unwrap().to_string(), r#"{k8s_pod_name="p-1", service_name="checkout"}"#);
        let e = &streams[0].entries[0];
        assert_eq!((e.ts, e.line.as_str()), (Some(42), "payment failed"));
        let meta: HashMap<_, _> = e.metadata.iter().cloned().collect();
        assert_eq!(meta["http_method"], "POST");
        assert_eq!(meta["host_name"], "h1");
        assert_eq!(meta["detected_level"], "error");
        assert_eq!(meta["trace_id"], "ab".repeat(16));
        let none = otlp_to_streams(
            &ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: req.resource_logs[0].scope_logs.clone(),
                    ..Default::default()
                }],
            },
            7,
        );
        assert_eq!(none[0].labels.as_ref().unwrap().get("service_name"), Some("unknown_service"));
    }
}
