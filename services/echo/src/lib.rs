//! The mesh's diagnostic service (`meshwork.echo.v1.Echo`), as httpbin is for HTTP: it answers
//! with what it received and can be asked to wait or to fail, so that the gateway's routing,
//! deadlines and retries, the identity it passes on and trace propagation can be seen from any
//! client. It is also the smallest complete service: a `.proto`, this crate and one line in the
//! binary's service table (README, "Adding a service").

#![forbid(unsafe_code)]

mod validate;

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::echo::v1 as pb;
use pb::echo_server::{Echo, EchoServer};
use tonic::{Code, Request, Response, Status};

/// The service's entry in the mesh's table.
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "echo",
        about: "diagnostics: echoes a message and the metadata that reached it, waits or fails on request",
        grpc_services: vec![grpc_name::<EchoServer<EchoService>>()],
        hosted,
        http_routes: Vec::new(),
        idempotent_methods: vec!["Echo", "EchoStream"],
    }
}

/// Builds the service (it keeps no state).
pub fn hosted(_ctx: &ServiceContext) -> HostedService {
    HostedService::builder("echo").grpc(EchoServer::new(EchoService)).build()
}

/// The tonic service.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoService;

/// Returns the metadata entries that show how a call arrived.
fn seen_metadata(metadata: &tonic::metadata::MetadataMap) -> HashMap<String, String> {
    metadata
        .iter()
        .filter_map(|entry| match entry {
            tonic::metadata::KeyAndValueRef::Ascii(key, value) => Some((key.as_str(), value)),
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        })
        .filter(|(key, _)| {
            matches!(*key, "traceparent" | "tracestate" | "grpc-timeout" | "meshwork-identity") || key.starts_with("x-")
        })
        .filter_map(|(key, value)| Some((key.to_string(), value.to_str().ok()?.to_string())))
        .collect()
}

type EchoStreamOut = Pin<Box<dyn Stream<Item = Result<pb::EchoResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(&self, request: Request<pb::EchoRequest>) -> Result<Response<pb::EchoResponse>, Status> {
        let metadata = seen_metadata(request.metadata());
        let req = request.into_inner();
        validate::echo(&req)?;
        if req.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(u64::from(req.delay_ms))).await;
        }
        if req.fail_with_code != 0 {
            return Err(Status::new(Code::from_i32(req.fail_with_code as i32), req.message));
        }
        Ok(Response::new(pb::EchoResponse { message: req.message, sequence: 1, metadata }))
    }

    type EchoStreamStream = EchoStreamOut;

    async fn echo_stream(&self, request: Request<pb::EchoStreamRequest>) -> Result<Response<EchoStreamOut>, Status> {
        let metadata = seen_metadata(request.metadata());
        let req = request.into_inner();
        validate::echo_stream(&req)?;
        let interval = Duration::from_millis(u64::from(req.interval_ms));
        let stream = futures::stream::unfold(1u64, move |sequence| {
            let (message, metadata) = (req.message.clone(), metadata.clone());
            async move {
                if sequence > u64::from(req.count) {
                    return None;
                }
                if sequence > 1 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                Some((Ok(pb::EchoResponse { message, sequence, metadata }), sequence + 1))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
